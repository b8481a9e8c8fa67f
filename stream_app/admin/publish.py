"""Build send/cancel requests from a file or from flags, validate them, and publish them.

Everything is validated with the contracts' own decoder before anything is produced, so a request
the processor would dead-letter is refused here with the same one-line reason. Records are keyed by
messageId and partitioned by aiokafka's default partitioner, murmur2 of the key: the same partition
the Java client and the processor's other producers choose (CONTRACT.md).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_app.admin.errors import InvalidInput, KafkaFailure
from stream_app.config import Settings
from stream_app.contracts import (
    CancelRequest,
    InvalidRecord,
    SendRequest,
    decode_request,
    encode,
)
from stream_app.kafka.connect import REQUEST_TIMEOUT_MS, start_or_unreachable
from stream_app.kafka.topics import require_topics

Request = SendRequest | CancelRequest


@dataclass(frozen=True, slots=True)
class Published:
    """Where one record landed."""

    message_id: str
    kind: str
    topic: str
    partition: int
    offset: int


# ------------------------------------------------------------------------------------------- parsing


def validate(body: Any, where: str = "request") -> Request:
    """A request from a decoded JSON value, by the contract's rules; InvalidInput names ``where``."""
    try:
        return decode_request(orjson.dumps(body))
    except InvalidRecord as exc:
        raise InvalidInput(f"{where}: {exc.reason}") from None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated request and the value to publish for it: the JSON as given, compacted.

    Publishing what the user wrote (not our re-encoding) keeps fields this version does not know,
    which a newer processor may read (CONTRACT.md: unknown fields are ignored, forward compatibility).
    """

    request: Request
    value: bytes


def _prepare(body: Any, where: str) -> Prepared:
    return Prepared(validate(body, where), orjson.dumps(body))


def parse_requests(text: str | bytes, source: str = "input") -> list[Request]:
    """Requests from text: one JSON object, a JSON array of objects, or JSON Lines (one per line)."""
    return [p.request for p in parse_records(text, source)]


def parse_records(text: str | bytes, source: str = "input") -> list[Prepared]:
    """Like :func:`parse_requests`, keeping each request's own JSON as the value to publish."""
    raw = text.encode() if isinstance(text, str) else text
    if not raw.strip():
        raise InvalidInput(f"{source}: empty, expected a JSON request object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as whole_error:
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise InvalidInput(f"{source}: not valid JSON: {whole_error}") from None
        bodies: list[tuple[str, Any]] = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                bodies.append((f"{source} line {number}", orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"{source} line {number}: not valid JSON: {exc}") from None
        return [_prepare(body, where) for where, body in bodies]
    if isinstance(value, list):
        if not value:
            raise InvalidInput(f"{source}: empty array, expected at least one request")
        return [_prepare(body, f"{source} item {i}") for i, body in enumerate(value)]
    return [_prepare(value, source)]


def parse_chain(chain: str) -> list[dict[str, Any]]:
    """Steps from ``CHANNEL[:FALLBACK_AFTER[:SUCCESS_STATUS]]`` items joined by commas.

    ``WHATSAPP:600:DELIVERED,RCS:300,SMS`` is WhatsApp (fall back after 600 s unless DELIVERED),
    then RCS (after 300 s), then SMS. An empty or ``-`` FALLBACK_AFTER means "only a failure moves on"
    (``SMS::SENT``). Names and numbers are checked by the contract afterwards.
    """
    steps: list[dict[str, Any]] = []
    for number, item in enumerate(chain.split(",")):
        parts = [p.strip() for p in item.split(":")]
        if not parts[0] or len(parts) > 3:
            raise InvalidInput(
                f"--chain step {number} {item.strip()!r}: expected CHANNEL[:FALLBACK_AFTER[:SUCCESS_STATUS]]"
            )
        step: dict[str, Any] = {"channel": parts[0]}
        if len(parts) > 1 and parts[1] not in ("", "-"):
            try:
                after = float(parts[1])
            except ValueError:
                after = math.nan
            # nan and inf too: orjson writes them as null, which the contract reads as "absent", so
            # WHATSAPP:nan lost its fallbackAfter without a word.
            if not math.isfinite(after):
                raise InvalidInput(
                    f"--chain step {number}: fallbackAfter {parts[1]!r} is not a number of seconds"
                )
            step["fallbackAfter"] = after
        if len(parts) > 2 and parts[2]:
            step["successStatus"] = parts[2]
        steps.append(step)
    return steps


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{option}: must be a JSON object")
    return value


def apply_contents(steps: list[dict[str, Any]], contents: Sequence[str]) -> None:
    """Attach ``--content-json`` values to steps.

    ``JSON`` applies to every step, ``CHANNEL=JSON`` to every step on that channel (any case), and
    ``N=JSON`` to step N (0-based); a more specific value wins whatever the order given.
    """
    everywhere: dict[str, Any] | None = None
    by_channel: dict[str, dict[str, Any]] = {}
    by_index: dict[int, dict[str, Any]] = {}
    for text in contents:
        head, sep, tail = text.partition("=")
        if sep and not head.lstrip().startswith("{"):
            name = head.strip()
            value = _json_object(tail, f"--content-json {name}=")
            if name.isdigit():
                if int(name) >= len(steps):
                    raise InvalidInput(f"--content-json {name}=: the chain has no step {name}")
                by_index[int(name)] = value
            else:
                if not any(s["channel"].upper() == name.upper() for s in steps):
                    raise InvalidInput(f"--content-json {name}=: no step of the chain uses channel {name}")
                by_channel[name.upper()] = value
        else:
            everywhere = _json_object(text, "--content-json")
    for i, step in enumerate(steps):
        content = by_index.get(i) or by_channel.get(step["channel"].upper()) or everywhere
        if content is not None:
            step["content"] = content


def request_from_flags(
    *,
    message_id: str | None,
    destination: str | None,
    chain: str | None,
    contents: Sequence[str] = (),
    ttl: float | None = None,
    expires_at: str | None = None,
    tenant: str | None = None,
    campaign_id: str | None = None,
    simulation: bool = False,
    metadata_json: str | None = None,
    now: datetime | None = None,
) -> SendRequest:
    """A SendRequest from command-line flags, validated like any input record.

    Without ``message_id`` a unique ``cli-<hex>`` id is made; ``requestedAt`` is now.
    """
    if not destination or not chain:
        missing = [flag for flag, value in (("--destination", destination), ("--chain", chain)) if not value]
        raise InvalidInput(f"{' and '.join(missing)} required (or give the request with --file)")
    if ttl is not None and not math.isfinite(ttl):  # orjson would write null: the ttl silently gone
        raise InvalidInput(f"--ttl: must be a number of seconds, got {ttl}")
    steps = parse_chain(chain)
    apply_contents(steps, contents)
    body: dict[str, Any] = {
        "type": "send",
        "messageId": message_id or f"cli-{uuid.uuid4().hex[:16]}",
        "destination": destination,
        "channels": steps,
        "simulation": simulation,
        "requestedAt": (now or datetime.now(UTC)).isoformat(),
    }
    optional = {"ttl": ttl, "expiresAt": expires_at, "tenant": tenant, "campaignId": campaign_id}
    body.update({k: v for k, v in optional.items() if v is not None})
    if metadata_json is not None:
        body["metadata"] = _json_object(metadata_json, "--metadata-json")
    request = validate(body, "request")
    if not isinstance(request, SendRequest):  # cannot happen: type "send" is fixed above
        raise InvalidInput("request: not a send request")
    return request


def cancel_request(message_id: str, reason: str | None = None) -> CancelRequest:
    body: dict[str, Any] = {"type": "cancel", "messageId": message_id}
    if reason:
        body["reason"] = reason
    request = validate(body, "cancel")
    if not isinstance(request, CancelRequest):  # cannot happen: type "cancel" is fixed above
        raise InvalidInput("cancel: not a cancel request")
    return request


# ------------------------------------------------------------------------------------------ producing


async def publish_requests(
    settings: Settings, requests: Sequence[Request | Prepared], *, traceparent: str | None = None
) -> list[Published]:
    """Produce requests to ``send-requests`` keyed by messageId; returns where each landed, in order.

    A :class:`Prepared` request is published with its own JSON, a bare request in the canonical
    encoding (``encode``).

    Refuses (TopicsMissing) when the topic does not exist rather than letting an auto-creating broker
    make it with a default partition count that breaks co-partitioning.
    """
    topic = settings.topics.send_requests
    headers = [("traceparent", traceparent.encode())] if traceparent else None
    prepared = [r if isinstance(r, Prepared) else Prepared(r, encode(r)) for r in requests]
    records = [(p.request.message_id.encode(), p.value) for p in prepared]
    positions = await produce(settings, topic, records, headers=headers)
    return [
        Published(p.request.message_id, p.request.type, topic, partition, offset)
        for p, (partition, offset) in zip(prepared, positions, strict=True)
    ]


async def produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None]],
    *,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> list[tuple[int, int]]:
    """Produce (key, value) records to an existing topic and wait for every acknowledgement.

    Returns (partition, offset) per record, in order. ``acks=all`` so "sent" means durable on the
    broker. No idempotent producer: the local Tansu broker does not grant producer ids.
    """
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        client_id="stream-app-cli",
        acks="all",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    await start_or_unreachable(producer.start, producer.stop, settings.bootstrap_servers)
    try:
        try:
            cluster = await producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise KafkaFailure(f"reading topic metadata failed: {exc}") from None
        require_topics(
            {name: len(cluster.partitions_for_topic(name) or ()) for name in cluster.topics()},
            settings.bootstrap_servers,
            [topic],
        )
        try:
            futures = [
                await producer.send(topic, value, key=key, headers=list(headers) if headers else None)
                for key, value in records
            ]
            metas = [await f for f in futures]
        except KafkaError as exc:
            raise KafkaFailure(f"producing to {topic} failed: {exc}") from None
        return [(m.partition, m.offset) for m in metas]
    finally:
        await producer.stop()
