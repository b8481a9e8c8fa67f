"""``topics/`` must say what the code does: regenerate in memory and compare with the committed files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.config import Settings, Topics
from stream_app.contracts import (
    decode_command,
    decode_control,
    decode_outcome,
    decode_request,
    decode_status,
    schema,
    to_json,
)
from stream_app.contracts.catalogue import CATALOGUE, DEAD_LETTER_HEADERS, DEFAULT_PARTITIONS, topic_names
from stream_app.runtime.restore import STALE_STORE_MS

TOPICS_DIR = Path(__file__).resolve().parents[3] / "topics"
REGENERATE = "run `python -m stream_app.contracts.schema` and commit topics/"


def load(rel: str) -> Any:
    return orjson.loads((TOPICS_DIR / rel).read_bytes())


@pytest.mark.parametrize("rel", sorted(schema.render()))
def test_committed_file_matches_the_models(rel: str) -> None:
    path = TOPICS_DIR / rel
    assert path.is_file(), f"{rel} is missing; {REGENERATE}"
    assert path.read_text(encoding="utf-8") == schema.render()[rel], (
        f"{rel} drifted from the models; {REGENERATE}"
    )


def test_no_stray_schema_files() -> None:
    assert schema.drift(TOPICS_DIR) == []


def test_drift_is_detected_and_write_repairs_it(tmp_path: Path) -> None:
    """The check itself can fail: a changed, a missing and a stray file are all reported."""
    assert schema.write(tmp_path) == sorted(schema.render(), key=list(schema.render()).index)
    assert schema.drift(tmp_path) == []
    (tmp_path / "schemas" / "Outcome.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "asyncapi.json").unlink()
    (tmp_path / "schemas" / "Gone.schema.json").write_text("{}\n", encoding="utf-8")
    assert sorted(schema.drift(tmp_path)) == [
        "asyncapi.json",
        "schemas/Gone.schema.json",
        "schemas/Outcome.schema.json",
    ]
    assert schema.main(["--check", "--out", str(tmp_path)]) == 1
    assert schema.main(["--out", str(tmp_path)]) == 0
    assert schema.main(["--check", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "schemas" / "Gone.schema.json").exists()


def test_output_is_deterministic_sorted_and_ends_with_a_newline() -> None:
    first, second = schema.render(), schema.render()
    assert first == second
    for rel, text in first.items():
        assert text.endswith("}\n") and not text.endswith("\n\n"), rel
        assert text == schema.dumps(orjson.loads(text)), f"{rel}: keys not sorted"


# ------------------------------------------------------------------------------------------ catalogue


def test_catalogue_names_agree_with_settings() -> None:
    for prefix, app_id in [("", "fallback-processor"), ("prod.", "fp-eu")]:
        topics = Topics.of(prefix, app_id)
        assert topic_names(prefix, app_id) == {t.id: getattr(topics, t.id) for t in CATALOGUE}
    assert {t.id for t in CATALOGUE} == set(Topics.__dataclass_fields__)


def test_default_partitions_agree_with_settings() -> None:
    assert Settings().partitions == DEFAULT_PARTITIONS
    assert load("catalogue.json")["defaultPartitions"] == DEFAULT_PARTITIONS


def test_changelogs_are_compacted_and_the_rest_expire() -> None:
    by_id = {t["id"]: t for t in load("catalogue.json")["topics"]}
    compacted_ids = ("changelog", "sentlog", "channel_control")  # flows, sends, the control table
    for compacted in compacted_ids:
        assert by_id[compacted]["configs"]["cleanup.policy"] == "compact"
        assert "retention.ms" not in by_id[compacted]["configs"]  # compaction alone bounds them
    for topic_id, entry in by_id.items():
        if topic_id not in compacted_ids:
            assert entry["configs"]["cleanup.policy"] == "delete", topic_id
            assert int(entry["configs"]["retention.ms"]) >= 3 * 24 * 3600 * 1000, (
                topic_id
            )  # > max flow (72 h)


def test_the_changelog_keeps_tombstones_longer_than_a_kept_store_may_stay_away_regression() -> None:
    """A kept store flushed within STALE_STORE_MS replays only the changelog's tail, which must still
    hold every tombstone written since; a broker configured with a shorter delete.retention.ms than
    the 24 h the store assumed dropped them, and the ended flows came back. The catalogue pins it."""
    changelog = {t["id"]: t for t in load("catalogue.json")["topics"]}["changelog"]
    kept = int(changelog["configs"]["delete.retention.ms"])
    assert kept == 24 * 3600 * 1000
    assert kept >= 2 * STALE_STORE_MS  # half of it is room for the clocks of broker and instances


def test_co_partitioning_matches_the_contract() -> None:
    by_id = {t["id"]: t for t in load("catalogue.json")["topics"]}
    same_n = {"send_requests", "delivery_status", "retry_commands", "outcomes", "changelog", "sentlog"}
    assert {i for i, t in by_id.items() if t["partitions"] == "N"} == same_n
    assert by_id["dead_letters"]["partitions"] == "any"
    assert by_id["channel_control"]["partitions"] == "any"  # a global table: read whole by everyone


def test_catalogue_values_point_at_existing_schemas() -> None:
    for entry in load("catalogue.json")["topics"]:
        for rel in entry["values"]:
            assert (TOPICS_DIR / rel).is_file(), rel


def test_dead_letter_headers_follow_kafka_connect() -> None:
    dead = next(t for t in load("catalogue.json")["topics"] if t["id"] == "dead_letters")
    assert dead["headers"] == ["traceparent", *DEAD_LETTER_HEADERS]
    assert DEAD_LETTER_HEADERS == (
        "__error.reason",
        "__error.source.topic",
        "__error.source.partition",
        "__error.source.offset",
        "__error.class",
    )


# -------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("name", sorted(schema.RECORDS))
def test_schema_properties_are_the_wire_names(name: str) -> None:
    model, _, _ = schema.RECORDS[name]
    doc = load(f"schemas/{name}.schema.json")
    wire = {f.alias or n for n, f in model.model_fields.items()}
    assert set(doc["properties"]) == wire
    assert set(doc["required"]) <= wire
    assert all(p[0].islower() and "_" not in p for p in wire)


def test_input_schemas_are_validation_mode_and_outputs_serialization_mode() -> None:
    modes = {name: load(f"schemas/{name}.schema.json")["x-schema-mode"] for name in schema.RECORDS}
    assert modes == {
        "SendRequest": "validation",
        "CancelRequest": "validation",
        "DeliveryStatus": "validation",
        "ChannelControl": "validation",
        "RetryCommand": "serialization",
        "Outcome": "serialization",
        "LateStatus": "serialization",
    }


def test_required_fields_of_the_contract() -> None:
    assert load("schemas/SendRequest.schema.json")["required"] == ["messageId", "destination", "channels"]
    assert load("schemas/DeliveryStatus.schema.json")["required"] == ["messageId", "channel", "status"]
    assert set(load("schemas/CancelRequest.schema.json")["required"]) == {"type", "messageId"}


def test_output_timestamps_are_date_time_strings() -> None:
    props = load("schemas/Outcome.schema.json")["properties"]
    assert props["completedAt"] == {"format": "date-time", "type": "string"}
    assert props["requestedAt"] == {"format": "date-time", "type": "string"}
    assert load("schemas/RetryCommand.schema.json")["properties"]["issuedAt"]["format"] == "date-time"
    assert load("schemas/Outcome.schema.json")["properties"]["schemaVersion"]["const"] == 1


# ------------------------------------------------------------------------------------------- AsyncAPI


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_is_version_3_and_every_ref_resolves() -> None:
    doc = load("asyncapi.json")
    assert doc["asyncapi"] == "3.0.0"
    refs = _refs(doc)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(doc, ref)
        else:
            assert (TOPICS_DIR / ref).is_file(), ref


def test_asyncapi_has_a_channel_per_topic_with_its_address() -> None:
    doc = load("asyncapi.json")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {"{prefix}" + t.stem for t in CATALOGUE}
    changelog = next(c for c in doc["channels"].values() if "changelog" in c["address"])
    assert changelog["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    assert set(changelog["parameters"]) == {"prefix", "appId"}


def test_asyncapi_operations_are_the_processors_view() -> None:
    doc = load("asyncapi.json")
    actions = {
        doc["channels"][op["channel"]["$ref"].split("/")[-1]]["title"]: op["action"]
        for op in doc["operations"].values()
        if "changelog" not in op["channel"]["$ref"].lower() and "sentlog" not in op["channel"]["$ref"].lower()
    }
    assert actions == {
        "send-requests": "receive",
        "delivery-status": "receive",
        "channel-control": "receive",
        "retry-commands": "send",
        "outcomes": "send",
        "dead-letters": "send",
    }
    changelog_actions = {
        op["action"] for op in doc["operations"].values() if "Changelog" in op["channel"]["$ref"]
    }
    assert changelog_actions == {"send", "receive"}  # written on every change, read back on restore
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"]
        for message in op["messages"]:
            assert message["$ref"].startswith(channel + "/messages/")


def test_asyncapi_messages_carry_key_and_headers() -> None:
    messages = load("asyncapi.json")["components"]["messages"]
    schemas = load("asyncapi.json")["components"]["schemas"]
    for name in schema.RECORDS:
        msg = messages[name]
        assert msg["payload"] == {"$ref": f"schemas/{name}.schema.json"}
        assert msg["headers"] == {"$ref": "#/components/schemas/TraceHeaders"}
        key = msg["bindings"]["kafka"]["key"]["description"]
        if name == "ChannelControl":
            assert "tenant/CHANNEL" in key
        else:
            assert "messageId" in key
    assert "traceparent" in schemas["TraceHeaders"]["properties"]
    dead_headers = schemas["DeadLetterHeaders"]["properties"]
    assert set(DEAD_LETTER_HEADERS) | {"traceparent"} == set(dead_headers)


def test_asyncapi_examples_are_valid_records() -> None:
    """Every message example is what the processor accepts (inputs) or writes (outputs)."""
    messages = load("asyncapi.json")["components"]["messages"]
    decoders = {
        "SendRequest": decode_request,
        "CancelRequest": decode_request,
        "DeliveryStatus": decode_status,
        "RetryCommand": decode_command,
        "Outcome": decode_outcome,
        "LateStatus": decode_outcome,
    }
    [control] = messages["ChannelControl"]["examples"]
    assert control["summary"] == "key: 'WHATSAPP'"
    assert decode_control(orjson.dumps(control["payload"]), b"WHATSAPP").state == "CLOSED"
    for name, decode in decoders.items():
        [example] = messages[name]["examples"]
        record = decode(orjson.dumps(example["payload"]))
        assert type(record).__name__ == name
        assert example["summary"] == f"key: {record.message_id!r}"
        assert example["headers"]["traceparent"].startswith("00-")
        if name in ("RetryCommand", "Outcome", "LateStatus"):
            assert example["payload"] == to_json(record)  # outputs exactly as encoded
