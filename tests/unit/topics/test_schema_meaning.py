"""The input schemas in ``topics/`` refuse what the processor refuses, rule by rule.

An upstream team validates its records against ``topics/schemas/`` before producing: a schema that
accepts a record the processor dead-letters misleads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as s

from stream_app.contracts import InvalidRecord, decode_request

TOPICS_DIR = Path(__file__).resolve().parents[3] / "topics"


def load(rel: str) -> Any:
    return orjson.loads((TOPICS_DIR / rel).read_bytes())


def _accepted(destination: str) -> bool:
    body = {"messageId": "m", "destination": destination, "channels": [{"channel": "SMS"}]}
    try:
        decode_request(orjson.dumps(body))
    except InvalidRecord:
        return False
    return True


@given(s.text(alphabet="+0123456789 \n-a", max_size=18))
def test_the_destination_schema_refuses_what_the_processor_refuses_regression(destination: str) -> None:
    """CONTRACT.md: "`destination`: E.164 (`+` and 8 to 15 digits). Anything else is a bad request."
    The schema said only ``"type": "string"``: ``"hello"`` passed it and was dead-lettered."""
    prop = load("schemas/SendRequest.schema.json")["properties"]["destination"]
    assert "pattern" in prop
    # JSON Schema patterns are ECMA 262, whose ``$`` is Python's ``\Z`` (no trailing newline).
    pattern = prop["pattern"]
    assert pattern.endswith("$")
    assert (re.search(pattern[:-1] + r"\Z", destination) is not None) == _accepted(destination)


def test_input_schemas_name_the_one_schema_version_the_processor_reads_regression() -> None:
    """CONTRACT.md: "input without it is read as version 1"; another version is dead-lettered, while
    the schemas said any integer."""
    for name in ("SendRequest", "CancelRequest", "DeliveryStatus", "ChannelControl"):
        prop = load(f"schemas/{name}.schema.json")["properties"]["schemaVersion"]
        assert prop.get("const") == 1, name


def test_the_step_content_schema_refuses_the_gateway_fallback_keys_regression() -> None:
    """A step whose content holds ``fallbackRcs`` / ``fallbackSms`` is dead-lettered (docs/contract.md);
    the schema let any object through."""
    content = load("schemas/SendRequest.schema.json")["$defs"]["ChannelStep"]["properties"]["content"]
    refused = content.get("not", {}).get("anyOf", [])
    assert sorted(r["required"] for r in refused) == [["fallbackRcs"], ["fallbackSms"]]
    for key in ("fallbackRcs", "fallbackSms"):
        body = {
            "messageId": "m",
            "destination": "+393401234567",
            "channels": [{"channel": "SMS", "content": {key: 1}}],
        }
        with pytest.raises(InvalidRecord):
            decode_request(orjson.dumps(body))


def test_the_send_window_days_schema_refuses_a_repeated_day_regression() -> None:
    """A day named twice is a bad request; the schema allowed it."""
    days = load("schemas/SendRequest.schema.json")["$defs"]["SendWindow"]["properties"]["days"]
    assert days.get("uniqueItems") is True
