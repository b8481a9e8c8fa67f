"""The gateway's documented payloads of ``tests/data/gateway`` (see its README for each source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).resolve().parent.parent / "data" / "gateway"


def payload(name: str, **ids: Any) -> dict[str, Any]:
    """The documented payload ``name`` (without ``.json``), with ``ids`` (e.g. customerMessageId) set."""
    body: dict[str, Any] = orjson.loads((DATA / f"{name}.json").read_bytes())
    body.update(ids)
    return body


def raw(name: str, **ids: Any) -> bytes:
    return orjson.dumps(payload(name, **ids))
