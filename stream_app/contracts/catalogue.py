"""The topic catalogue of CONTRACT.md: every topic, its key, its records, partitions and configs.

This module is the one source of truth; ``topics/catalogue.json`` is generated from it
(``python -m stream_app.contracts.schema``) and ``stream-app topics create`` creates from it, so the
document and the broker cannot disagree. Like the rest of contracts it imports nothing else of the
project; ``id`` is the matching field of :class:`stream_app.config.Topics`, and a test checks that
both spell every name the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# Retention, in milliseconds, and why:
# - 7 days on the input and command topics: far longer than a flow may stay open (72 h by default,
#   STREAM_APP_MAX_FLOW_SECONDS), so a processor that was down over a weekend, or a replay to explain a
#   decision, still finds every record; it is also Kafka's own default, which operators expect.
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
# - 30 days on outcomes and dead-letters: they are read by people and analytics jobs, which run
#   monthly reports and investigate bad records days later; both topics are small (one outcome per
#   message, dead letters are rare), so the extra retention is cheap.
THIRTY_DAYS_MS = 30 * 24 * 3600 * 1000
# - 24 hours of tombstones on the changelog (delete.retention.ms): Kafka's broker default, pinned so
#   that a cluster configured lower cannot break the store's rule that a kept store last flushed more
#   than half of it ago is rebuilt (runtime/restore.py): a tombstone written while a partition was
#   away must still be on the topic when the partition comes back, or the ended flow comes back too.
CHANGELOG_TOMBSTONE_MS = 24 * 3600 * 1000

#: Partitions per co-partitioned topic when STREAM_APP_PARTITIONS is not set. 12 divides evenly among
#: 1, 2, 3, 4, 6 or 12 processor instances, so common fleet sizes get equal shares.
DEFAULT_PARTITIONS = 12

Direction = Literal["in", "out", "internal"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic of the contract.

    ``id`` is the field of :class:`stream_app.config.Topics` holding its full name; ``stem`` is that
    name without prefix (``{appId}`` stands for ``STREAM_APP_APP_ID``). ``co_partitioned`` topics must
    all have the same partition count N (the processor owns partition p of each of them together);
    the others may have any count, and ``topics create`` gives them N as well.
    """

    id: str
    stem: str
    direction: Direction
    key: str
    values: tuple[str, ...]
    co_partitioned: bool
    configs: Mapping[str, str]
    description: str
    headers: tuple[str, ...] = ("traceparent",)
    value_format: str = "application/json"

    def name(self, prefix: str = "", app_id: str = "fallback-processor") -> str:
        """The full topic name under ``STREAM_APP_TOPIC_PREFIX`` and ``STREAM_APP_APP_ID``."""
        return prefix + self.stem.replace("{appId}", app_id)


DEAD_LETTER_HEADERS: tuple[str, ...] = (
    "__error.reason",
    "__error.source.topic",
    "__error.source.partition",
    "__error.source.offset",
    "__error.class",
)

TRACE_HEADER = "traceparent"

_DELETE_7D = {"cleanup.policy": "delete", "retention.ms": str(SEVEN_DAYS_MS)}
_DELETE_30D = {"cleanup.policy": "delete", "retention.ms": str(THIRTY_DAYS_MS)}

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        id="send_requests",
        stem="send-requests",
        direction="in",
        key="messageId (UTF-8)",
        values=("SendRequest", "CancelRequest"),
        co_partitioned=True,
        configs=_DELETE_7D,
        description=(
            "Send requests and cancels from upstream systems, discriminated by `type` "
            "(`send`, the default, or `cancel`)."
        ),
    ),
    TopicSpec(
        id="delivery_status",
        stem="delivery-status",
        direction="in",
        key="messageId (UTF-8)",
        values=("DeliveryStatus",),
        co_partitioned=True,
        configs=_DELETE_7D,
        description=(
            "Delivery statuses (submit acknowledgements and DLRs) of each attempt, from the dispatcher "
            "and status ingest."
        ),
    ),
    TopicSpec(
        id="retry_commands",
        stem="retry-commands",
        direction="out",
        key="messageId (UTF-8)",
        values=("RetryCommand",),
        co_partitioned=True,
        configs=_DELETE_7D,
        description=(
            "One command per channel attempt, attempt 0 included; `commandId` (`<messageId>:<attempt>`) "
            "is deterministic so a consumer drops repeats."
        ),
    ),
    TopicSpec(
        id="outcomes",
        stem="outcomes",
        direction="out",
        key="messageId (UTF-8)",
        values=("Outcome", "LateStatus"),
        co_partitioned=True,
        configs=_DELETE_30D,
        description=(
            "Exactly one Outcome per accepted message, and LateStatus records for success statuses that "
            "arrive after the end; discriminated by `type` (`outcome` or `late-status`)."
        ),
    ),
    TopicSpec(
        id="dead_letters",
        stem="dead-letters",
        direction="out",
        key="the original record's key, untouched",
        values=(),
        co_partitioned=False,
        configs=_DELETE_30D,
        description=(
            "Input records that are not a valid request or status (or conflict with an earlier request): "
            "the original key and value bytes, untouched (unless too large to produce whole: then what does "
            "not fit is left out, and the reason says so); the reason is in the `__error.*` headers "
            "(Kafka Connect's convention)."
        ),
        headers=(TRACE_HEADER, *DEAD_LETTER_HEADERS),
        value_format="application/octet-stream",
    ),
    TopicSpec(
        id="channel_control",
        stem="channel-control",
        direction="in",
        key="`CHANNEL` or `tenant/CHANNEL` (UTF-8)",
        values=("ChannelControl",),
        co_partitioned=False,
        # Compacted: a global table, the last record per channel (and tenant) is its state; every
        # processor instance reads all of it, from the start, whatever the partition count.
        configs={"cleanup.policy": "compact"},
        description=(
            "v1.1: operators (`stream-app channel`) and the dispatcher's circuit breaker close and open "
            "channels, for one tenant or for all. A global table: every processor instance reads every "
            "partition of it, from the beginning, before it issues anything."
        ),
        headers=(),
    ),
    TopicSpec(
        id="changelog",
        stem="{appId}-flows-changelog",
        direction="internal",
        key="messageId (UTF-8)",
        values=(),
        co_partitioned=True,
        # Compacted: only the latest state per message matters for a restore; a tombstone (null value)
        # deletes an ended flow. No retention.ms: compaction alone bounds the topic. Tombstones stay
        # CHANGELOG_TOMBSTONE_MS, which a kept store's restore relies on (see above).
        configs={"cleanup.policy": "compact", "delete.retention.ms": str(CHANGELOG_TOMBSTONE_MS)},
        description=(
            "The processor's own flow state (compact binary, versioned), one record per state change; "
            "restores a partition on another instance. Internal: do not produce or depend on its format."
        ),
        headers=(),
        value_format="application/octet-stream",
    ),
    TopicSpec(
        id="sentlog",
        stem="{appId}-dispatcher-sentlog",
        direction="internal",
        key="commandId (UTF-8)",
        values=(),
        # Co-partitioned with retry-commands: partition p holds what the dispatcher owning partition p
        # of retry-commands has sent, and moves with it on a rebalance.
        co_partitioned=True,
        # Compacted: only the latest state per commandId matters; old DONE entries get tombstones.
        configs={"cleanup.policy": "compact"},
        description=(
            "The dispatchers' record of each commandId's send (intent, answer, published), one record per "
            "change; restored by whichever dispatcher owns the partition, so a commandId reaches the "
            "gateway at most once across rebalances. Internal: do not produce or depend on its format."
        ),
        headers=(),
        value_format="application/octet-stream",
    ),
)


def spec(topic_id: str) -> TopicSpec:
    """The catalogue entry with this ``id``."""
    for entry in CATALOGUE:
        if entry.id == topic_id:
            return entry
    raise KeyError(topic_id)


def topic_names(prefix: str = "", app_id: str = "fallback-processor") -> dict[str, str]:
    """``id`` -> full topic name, in catalogue order."""
    return {entry.id: entry.name(prefix, app_id) for entry in CATALOGUE}
