"""Generates ``topics/``: the catalogue, one JSON Schema per record, and the AsyncAPI 3.0 document.

Run ``python -m stream_app.contracts.schema`` (or ``stream-app topics generate``) after changing a
model or the catalogue; ``--check`` exits 1 when the files differ from what the code says, and
``tests/unit/topics`` fails on the same drift. Output is deterministic (sorted keys, two-space indent,
trailing newline) so a regeneration with no model change is an empty diff.

Schema modes: input records (what upstream produces) are described in *validation* mode, what the
processor accepts; output records (what it writes) in *serialization* mode, what a consumer reads.
Both use the camelCase wire names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from stream_app.contracts.catalogue import (
    CATALOGUE,
    DEAD_LETTER_HEADERS,
    DEFAULT_PARTITIONS,
    TRACE_HEADER,
    TopicSpec,
)
from stream_app.contracts.codec import decode_control, decode_request, decode_status, to_json
from stream_app.contracts.models import (
    SCHEMA_VERSION,
    AttemptEnd,
    AttemptSummary,
    CancelRequest,
    Channel,
    ChannelControl,
    CommandReason,
    DeliveryStatus,
    LateStatus,
    Outcome,
    PreviousAttempt,
    Result,
    RetryCommand,
    SendRequest,
    Status,
    SuccessStatus,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Version of the kafka bindings object of AsyncAPI 3.0 that knows topicConfiguration.
KAFKA_BINDING_VERSION = "0.5.0"
# The repository's topics/ folder, next to the stream_app package in a source checkout.
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "topics"

_CASE_NOTE = " Channel and status names are read case-insensitively (`WhatsApp` is `WHATSAPP`)."

#: record name -> (model, schema mode, description shown to upstream / analytics teams).
RECORDS: dict[str, tuple[type[BaseModel], JsonSchemaMode, str]] = {
    "SendRequest": (
        SendRequest,
        "validation",
        "A message to deliver through an ordered fallback chain of channels, on send-requests."
        + _CASE_NOTE
        + " Give `ttl` or `expiresAt`, not both. Unknown fields are ignored. `sendWindow` (v1.1, "
        "optional): quiet hours; a step falling due outside the window is issued at its next opening "
        "(`from` > `to` crosses midnight, `days` name the day a window opens, `appliesTo` FALLBACK "
        "by default or ALL); a bad window is a bad request.",
    ),
    "CancelRequest": (
        CancelRequest,
        "validation",
        "Stops a message that has not ended; it ends CANCELLED. On send-requests, keyed by messageId.",
    ),
    "DeliveryStatus": (
        DeliveryStatus,
        "validation",
        "A delivery status of one attempt (submit acknowledgement or DLR), on delivery-status."
        + _CASE_NOTE
        + " Without `attempt` it belongs to the latest attempt on `channel`. `gatewayStatus` (v1.1, "
        "optional) keeps the gateway's own word, e.g. `RECEIVED` for a `status` of `SENT`.",
    ),
    "ChannelControl": (
        ChannelControl,
        "validation",
        "v1.1: closes or opens a channel for one tenant or for all (`tenant` null), on the compacted "
        "channel-control topic, keyed `CHANNEL` or `tenant/CHANNEL` (a record under another key is "
        "dead-lettered). While CLOSED (until `until`, if given) a step on the channel is not issued: "
        "it ends SKIPPED and the chain moves on; `inFlight` FALLBACK also ends attempts already issued "
        "on it (TIMEOUT). Channel names are read case-insensitively.",
    ),
    "RetryCommand": (
        RetryCommand,
        "serialization",
        "One channel attempt to send, on retry-commands. `commandId` is `<messageId>:<attempt>`; "
        "drop a repeat by it. Absent optional fields are left out, never null. `reason` SKIPPED (v1.1): "
        "the previous step's channel was closed; `deferredFrom` (v1.1): the moment the step fell due "
        "when a send window held it back.",
    ),
    "Outcome": (
        Outcome,
        "serialization",
        "The one final outcome of a message, on outcomes. Absent optional fields are left out, never null. "
        "Each of `attempts` may carry (v1.1) `statusTimes`, the `occurredAt` of the first report of each "
        "progress status of that attempt, and `reasons`, the gateway's reasons of its first failure report "
        "that gave any (at most 4, each at most 200 characters). v1.1: an attempt may end SKIPPED (its "
        "channel was closed; no command), and `reason` is OUTSIDE_SEND_WINDOW on an EXPIRED outcome "
        "whose next step's window opened too late, CHANNELS_CLOSED on a FAILED one whose remaining "
        "steps were all closed, or a cancel's reason.",
    ),
    "LateStatus": (
        LateStatus,
        "serialization",
        "A success status for a message that has already ended, on outcomes; `doubleDelivery` says the "
        "person got the message twice.",
    ),
}


class _WireSchema(GenerateJsonSchema):
    """Pydantic's generator without per-field titles (``Messageid``): the wire name says it all."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _copy_formats(target: Any, source: Any) -> None:
    """Give serialization-mode strings the ``format`` their validation-mode twin has.

    A timestamp's custom serializer only declares ``str``; the validation schema knows it is a
    ``date-time``, and that is what a consumer should be told.
    """
    if isinstance(target, dict) and isinstance(source, dict):
        if target.get("type") == "string" and "format" not in target and "format" in source:
            target["format"] = source["format"]
        for key, value in target.items():
            if key in source:
                _copy_formats(value, source[key])
        if "anyOf" in source and target.get("type") == "string" and "format" not in target:
            for option in source["anyOf"]:
                if isinstance(option, dict) and option.get("type") == "string" and "format" in option:
                    target["format"] = option["format"]
    elif isinstance(target, list) and isinstance(source, list):
        for t_item, s_item in zip(target, source, strict=False):
            _copy_formats(t_item, s_item)


def record_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one record, by wire (camelCase) names."""
    model, mode, description = RECORDS[name]
    schema = model.model_json_schema(by_alias=True, mode=mode, schema_generator=_WireSchema)
    if mode == "serialization":
        validation = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WireSchema)
        _copy_formats(schema, validation)
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = f"{name}.schema.json"
    schema["description"] = description
    schema["x-schema-mode"] = mode
    return schema


def catalogue_document() -> dict[str, Any]:
    """``topics/catalogue.json``: every topic with its key, records, partitioning and configs."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "nameTemplate": "{prefix}{stem}; prefix from STREAM_APP_TOPIC_PREFIX, {appId} from STREAM_APP_APP_ID",
        "defaultPartitions": DEFAULT_PARTITIONS,
        "partitionsSetting": "STREAM_APP_PARTITIONS",
        "partitioner": "murmur2 of the UTF-8 key (the Java client's default)",
        "topics": [
            {
                "id": t.id,
                "name": t.stem,
                "direction": t.direction,
                "key": t.key,
                "values": [f"schemas/{v}.schema.json" for v in t.values],
                "valueFormat": t.value_format,
                "headers": list(t.headers),
                "partitions": "N" if t.co_partitioned else "any",
                "coPartitioned": t.co_partitioned,
                "configs": dict(t.configs),
                "description": t.description,
            }
            for t in CATALOGUE
        ],
    }


# ------------------------------------------------------------------------------------------ AsyncAPI


def _camel(stem: str) -> str:
    parts = stem.replace("{appId}", "app").split("-")
    return parts[0] + "".join(p.capitalize() for p in parts[1:])


def _topic_binding(t: TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": [t.configs["cleanup.policy"]]}
    for key in ("retention.ms", "delete.retention.ms"):  # both known to the 0.5.0 binding
        if key in t.configs:
            config[key] = int(t.configs[key])
    binding: dict[str, Any] = {"bindingVersion": KAFKA_BINDING_VERSION, "topicConfiguration": config}
    if t.co_partitioned:
        binding["partitions"] = DEFAULT_PARTITIONS
    return binding


def _message_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{name}"}


def _key_binding(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "bindingVersion": KAFKA_BINDING_VERSION,
            "key": {"type": "string", "description": description},
        }
    }


#: Key of each record whose key is not the messageId.
_KEYS = {"ChannelControl": "`CHANNEL` or `tenant/CHANNEL`, UTF-8: compaction keeps the last record of each"}


def _messages() -> dict[str, Any]:
    key = "messageId, UTF-8; murmur2-partitioned so all records of a message share a partition number"
    messages: dict[str, Any] = {
        name: {
            "name": name,
            "title": name,
            "summary": description.split(". ")[0].rstrip(".") + ".",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/TraceHeaders"},
            "payload": {"$ref": f"schemas/{name}.schema.json"},
            "bindings": _key_binding(_KEYS.get(name, key)),
            "examples": [_example(name)],
        }
        for name, (_, _, description) in RECORDS.items()
    }
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "An input record that could not be processed, with the reason in headers.",
        "description": (
            "The original key and value bytes, untouched (the value may not even be JSON), unless the "
            "record is too large to produce whole: then what does not fit is left out and the reason "
            "says so. "
            "Headers follow Kafka Connect's dead-letter convention."
        ),
        "contentType": "application/octet-stream",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"description": "the original value bytes"},
        "bindings": _key_binding("the original record's key, untouched"),
    }
    messages["FlowState"] = {
        "name": "FlowState",
        "title": "FlowState",
        "summary": "The processor's state of one message (internal, compact binary, versioned).",
        "contentType": "application/octet-stream",
        "payload": {"description": "internal binary state; a null value (tombstone) deletes the flow"},
        "bindings": _key_binding(key),
    }
    return messages


# ------------------------------------------------------------------------------------------- examples

_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_MID = "txn-notifica-20260409-001"

#: Input examples as an upstream team writes them (CONTRACT.md), checked by the decoder when the
#: document is generated, so an example the processor would refuse cannot be published.
_INPUT_EXAMPLES: dict[str, dict[str, Any]] = {
    "SendRequest": {
        "type": "send",
        "messageId": _MID,
        "tenant": "banca-adriatica",
        "destination": "+393401234567",
        "channels": [
            {
                "channel": "WHATSAPP",
                "fallbackAfter": 600,
                "successStatus": "DELIVERED",
                "content": {"phoneNumberId": 5, "template": {"id": 42}, "placeholders": {"nome": "Giulia"}},
            },
            {"channel": "RCS", "fallbackAfter": 300, "content": {"agentId": 1, "templateId": 10}},
            {"channel": "SMS", "content": {"sender": "BancaAdri", "text": "Gentile Giulia, ..."}},
        ],
        "ttl": 3600,
        "simulation": False,
        "campaignId": "txn-2026-04",
        "metadata": {"anything": "copied to the outcome"},
        "requestedAt": "2026-04-09T10:15:00+02:00",
    },
    "CancelRequest": {"type": "cancel", "messageId": _MID, "reason": "paid"},
    "DeliveryStatus": {
        "messageId": _MID,
        "attempt": 1,
        "channel": "RCS",
        "status": "ERROR",
        "statusCode": 6,
        "reasons": ["AGENT_NOT_REACHABLE"],
        "providerMessageId": "c9a4b32d-5f1e-4c1b-9a57-0d6f1c2b7e11",
        "occurredAt": "2026-04-09T10:15:04+02:00",
    },
    "ChannelControl": {
        "type": "channel-control",
        "channel": "WHATSAPP",
        "tenant": None,
        "state": "CLOSED",
        "reason": "provider outage",
        "until": "2026-04-09T12:00:00Z",
        "inFlight": "WAIT",
        "at": "2026-04-09T10:00:00Z",
    },
}
#: Keys of the input examples that are not keyed by messageId.
_EXAMPLE_KEYS = {"ChannelControl": "WHATSAPP"}


def _output_examples() -> dict[str, BaseModel]:
    """Output examples built from the models, so they are exactly what the processor writes."""
    issued = datetime(2026, 4, 9, 8, 15, tzinfo=UTC)
    attempts = [
        AttemptSummary(
            attempt=0,
            channel=Channel.WHATSAPP,
            issued_at=issued,
            last_status=Status.REJECTED,
            ended_by=AttemptEnd.FAILED,
            reasons=["template: not approved"],
        ),
        AttemptSummary(
            attempt=1,
            channel=Channel.RCS,
            issued_at=issued + timedelta(seconds=1),
            last_status=Status.ERROR,
            ended_by=AttemptEnd.FAILED,
            provider_message_id="c9a4b32d-5f1e-4c1b-9a57-0d6f1c2b7e11",
            status_times={SuccessStatus.ACCEPTED: issued + timedelta(seconds=1, milliseconds=180)},
            reasons=["AGENT_NOT_REACHABLE"],
        ),
        AttemptSummary(
            attempt=2,
            channel=Channel.SMS,
            issued_at=issued + timedelta(seconds=5),
            last_status=Status.DELIVERED,
            ended_by=AttemptEnd.SUCCEEDED,
            provider_message_id="sms-7f3e2a",
            status_times={
                SuccessStatus.ACCEPTED: issued + timedelta(seconds=5, milliseconds=210),
                SuccessStatus.SENT: issued + timedelta(seconds=6),
                SuccessStatus.DELIVERED: issued + timedelta(seconds=12, milliseconds=300),
            },
        ),
    ]
    return {
        "RetryCommand": RetryCommand(
            command_id=f"{_MID}:1",
            message_id=_MID,
            attempt=1,
            channel=Channel.RCS,
            destination="+393401234567",
            content={"agentId": 1, "templateId": 10},
            reason=CommandReason.FAILED,
            previous=PreviousAttempt(attempt=0, channel=Channel.WHATSAPP, status=Status.REJECTED),
            issued_at=issued + timedelta(seconds=1),
            not_after=issued + timedelta(hours=1),
            tenant="banca-adriatica",
            campaign_id="txn-2026-04",
        ),
        "Outcome": Outcome(
            message_id=_MID,
            tenant="banca-adriatica",
            campaign_id="txn-2026-04",
            result=Result.SUCCEEDED,
            channel=Channel.SMS,
            status=Status.DELIVERED,
            attempt_count=3,
            attempts=attempts,
            requested_at=issued,
            completed_at=issued + timedelta(seconds=12, milliseconds=345),
            duration_ms=12_345,
            metadata={"anything": "copied to the outcome"},
        ),
        "LateStatus": LateStatus(
            message_id=_MID,
            attempt=0,
            channel=Channel.WHATSAPP,
            status=Status.DELIVERED,
            occurred_at=issued + timedelta(minutes=20),
            double_delivery=True,
        ),
    }


def _example(name: str) -> dict[str, Any]:
    """The AsyncAPI Message Example of a record (key in the summary: examples have no key field)."""
    if name in _INPUT_EXAMPLES:
        payload = _INPUT_EXAMPLES[name]
        # InvalidRecord here means the example broke the contract
        if name == "DeliveryStatus":
            decode_status(orjson.dumps(payload))
        elif name == "ChannelControl":
            decode_control(orjson.dumps(payload), _EXAMPLE_KEYS[name].encode())
        else:
            decode_request(orjson.dumps(payload))
    else:
        payload = to_json(_output_examples()[name])
    return {
        "name": f"{name[0].lower()}{name[1:]}Example",
        "summary": f"key: {_EXAMPLE_KEYS.get(name, payload.get('messageId'))!r}",
        "headers": {TRACE_HEADER: _TRACE},
        "payload": payload,
    }


def _header_schemas() -> dict[str, Any]:
    trace = {
        "type": "string",
        "description": (
            "W3C trace context (https://www.w3.org/TR/trace-context/). Copied from an input record onto "
            "every record it causes."
        ),
        "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    }
    dead: dict[str, Any] = {
        "__error.reason": {
            "type": "string",
            "description": "one line naming the field and the rule it broke (`destination: must be E.164`)",
        },
        "__error.source.topic": {"type": "string", "description": "topic of the original record"},
        "__error.source.partition": {"type": "string", "description": "its partition, decimal"},
        "__error.source.offset": {"type": "string", "description": "its offset, decimal"},
        "__error.class": {
            "type": "string",
            "description": "the kind of failure: the name of the error class that refused the record",
        },
    }
    dead = {name: dead[name] for name in DEAD_LETTER_HEADERS}  # the catalogue's order and set
    return {
        "TraceHeaders": {
            "type": "object",
            "description": "Kafka record headers (UTF-8 values).",
            "properties": {TRACE_HEADER: trace},
        },
        "DeadLetterHeaders": {
            "type": "object",
            "description": "Kafka record headers (UTF-8 values), Kafka Connect's dead-letter convention.",
            "properties": {TRACE_HEADER: trace, **dead},
            "required": [
                "__error.reason",
                "__error.source.topic",
                "__error.source.partition",
                "__error.source.offset",
            ],
        },
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, from the fallback processor's point of view."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for t in CATALOGUE:
        cid = _camel(t.stem)
        names = list(t.values) or (["DeadLetter"] if t.id == "dead_letters" else ["FlowState"])
        parameters: dict[str, Any] = {
            "prefix": {"description": "STREAM_APP_TOPIC_PREFIX (may be empty), e.g. `prod.`"}
        }
        if "{appId}" in t.stem:
            parameters["appId"] = {
                "description": "STREAM_APP_APP_ID, the processor's consumer group",
                "default": "fallback-processor",
            }
        partitioning = (
            f"Co-partitioned: the same partition count N (default {DEFAULT_PARTITIONS}) as send-requests."
            if t.co_partitioned
            else "Any partition count."
        )
        channels[cid] = {
            "address": "{prefix}" + t.stem,
            "title": t.stem,
            "description": f"{t.description} Key: {t.key}. {partitioning}",
            "parameters": parameters,
            "messages": {n[0].lower() + n[1:]: _message_ref(n) for n in names},
            "bindings": {"kafka": _topic_binding(t)},
        }
        actions = {"in": ["receive"], "out": ["send"], "internal": ["send", "receive"]}[t.direction]
        for action in actions:
            operations[f"{action}{cid[0].upper()}{cid[1:]}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": _operation_summary(action, t),
                "messages": [{"$ref": f"#/channels/{cid}/messages/{n[0].lower() + n[1:]}"} for n in names],
            }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:stream-app:fallback-processor",
        "info": {
            "title": "stream_app fallback processor",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Kafka-native multi-channel fallback (WhatsApp -> RCS -> SMS). Operations are seen from the "
                "processor: it receives send-requests, delivery-status and channel-control and sends "
                "retry-commands, outcomes and dead-letters. JSON values are camelCase, carry "
                "`schemaVersion: 1` on output, and write timestamps as RFC 3339 UTC (`Z`); unknown input "
                "fields are ignored. See topics/README.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "KAFKA_BOOTSTRAP_SERVERS; `stream-app broker` runs a local one here",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": _messages(), "schemas": _header_schemas()},
    }


def _operation_summary(action: str, t: TopicSpec) -> str:
    if t.direction == "internal":
        return "Writes every state change." if action == "send" else "Reads it back to restore a partition."
    if action == "receive":
        return f"Reads {t.stem} (upstream produces here)."
    return f"Writes {t.stem} (consumers read here)."


# ------------------------------------------------------------------------------------------- writing


def dumps(document: Any) -> str:
    """Deterministic JSON text: sorted keys, two-space indent, trailing newline."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode() + "\n"


def render() -> dict[str, str]:
    """Every generated file, relative path -> text."""
    files = {
        "catalogue.json": dumps(catalogue_document()),
        "asyncapi.json": dumps(asyncapi_document()),
    }
    for name in RECORDS:
        files[f"schemas/{name}.schema.json"] = dumps(record_schema(name))
    return files


def drift(out: Path, files: Mapping[str, str] | None = None) -> list[str]:
    """Relative paths whose file under ``out`` is missing or differs from the models, plus strays."""
    files = render() if files is None else files
    changed = [
        rel
        for rel, text in files.items()
        if not (out / rel).is_file() or (out / rel).read_text(encoding="utf-8") != text
    ]
    schemas = out / "schemas"
    if schemas.is_dir():
        changed += sorted(
            f"schemas/{p.name}" for p in schemas.glob("*.schema.json") if f"schemas/{p.name}" not in files
        )
    return changed


def write(out: Path) -> list[str]:
    """Write the generated files under ``out``; returns the relative paths that changed."""
    files = render()
    changed = drift(out, files)
    (out / "schemas").mkdir(parents=True, exist_ok=True)
    for rel in changed:
        target = out / rel
        if rel in files:
            target.write_text(files[rel], encoding="utf-8")
        else:
            target.unlink()  # a schema of a record that no longer exists
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stream_app.contracts.schema",
        description="Regenerate topics/ (catalogue, JSON Schemas, AsyncAPI) from the contract models.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"target folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files drifted")
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.out)
        for rel in stale:
            print(f"out of date: {args.out / rel}", file=sys.stderr)
        return 1 if stale else 0
    for rel in write(args.out):
        print(f"wrote {args.out / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
