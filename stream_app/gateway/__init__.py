"""The gateway side: httpx client, dispatcher, status ingest (webhook, poller) and a simulator.

Entry points usable in-process, importable from here (loaded on first use, so importing the package
stays cheap for commands that need none of them)::

    from stream_app.gateway import run_dispatcher, run_poller, run_simulator, run_webhook
"""

from __future__ import annotations

import importlib
from typing import Any

_ENTRY_POINTS = {
    "run_dispatcher": "stream_app.gateway.dispatcher",
    "run_poller": "stream_app.gateway.poller",
    "run_simulator": "stream_app.gateway.simulator",
    "run_webhook": "stream_app.gateway.webhook",
    "GatewayClient": "stream_app.gateway.client",
    "GatewaySettings": "stream_app.gateway.settings",
    "gateway_from_env": "stream_app.gateway.settings",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
