"""Create and inspect the topics of the catalogue (``stream-app topics create|list``, the demo).

Creation is idempotent: a topic that exists is reported, not an error. Co-partitioning is checked,
because the processor owns partition p of several topics together: when existing co-partitioned
topics already agree on a count, missing ones are created with that count, with a warning saying how
to repair it when that is not the count asked for (or the default); when they disagree, nothing is
created and the error says how to repair it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from stream_app.admin.errors import KafkaFailure, PartitionMismatch, TopicCreateFailed
from stream_app.config import Settings
from stream_app.contracts.catalogue import CATALOGUE, TopicSpec
from stream_app.kafka.connect import REQUEST_TIMEOUT_MS, start_or_unreachable

#: Kafka's error code for "Topic with this name already exists" (a concurrent create won the race).
TOPIC_ALREADY_EXISTS = 36
#: Replication factor when none is given: 3 (the usual production choice: survives one broker down
#: while still accepting writes with min.insync.replicas=2), capped at the number of brokers so a
#: single local broker gets 1.
PREFERRED_REPLICATION = 3
#: ``min.insync.replicas`` of topics created with at least PREFERRED_REPLICATION replicas. Every
#: producer of the project writes with acks=all, which waits for the in-sync replicas only: with the
#: brokers' default of 1, a leader whose followers fell behind acknowledges alone, and losing it then
#: loses acknowledged commands, outcomes and state. 2 of 3 is Kafka's documented pairing with acks=all
#: (one broker may be down and writes go on). Fewer replicas keep the broker's default: 2 of 2 would
#: stop every write while one broker is down.
MIN_INSYNC_REPLICAS = 2
#: Seconds to wait for created topics to appear in metadata; brokers answer in milliseconds, a
#: KRaft controller under load in a few seconds.
LISTED_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class TopicState:
    """One catalogue topic as found on the broker (``partitions`` None: it does not exist)."""

    spec: TopicSpec
    name: str
    partitions: int | None


@dataclass(slots=True)
class CreateReport:
    """What ``create_topics`` did: created names, existing (name, partitions), the count used, warnings."""

    partitions: int
    replication_factor: int
    created: list[str] = field(default_factory=list)
    existing: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class TopicAdmin:
    """An admin client bound to the settings' broker, prefix and app id. Use ``async with``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = AIOKafkaAdminClient(
            **settings.kafka_client_kwargs(),
            client_id="stream-app-admin",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )

    async def __aenter__(self) -> TopicAdmin:
        await start_or_unreachable(self._admin.start, self._admin.close, self.settings.bootstrap_servers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    def names(self) -> list[tuple[TopicSpec, str]]:
        s = self.settings
        return [(spec, spec.name(s.topic_prefix, s.app_id)) for spec in CATALOGUE]

    async def list_names(self) -> set[str]:
        """Every topic on the broker (a Metadata request for all topics never auto-creates one)."""
        try:
            return set(await self._admin.list_topics())
        except KafkaError as exc:
            raise KafkaFailure(f"listing topics failed: {exc}") from None

    async def partition_counts(self, names: Sequence[str]) -> dict[str, int]:
        """Partition count of each named topic. Only ask for topics that exist: some brokers
        (Tansu, Kafka with auto.create.topics.enable) create a topic that metadata asks about."""
        if not names:
            return {}
        try:
            described: list[dict[str, Any]] = await self._admin.describe_topics(list(names))
        except KafkaError as exc:
            raise KafkaFailure(f"describing topics failed: {exc}") from None
        return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}

    async def states(self) -> list[TopicState]:
        """Every catalogue topic with its partition count on the broker (None when missing)."""
        present = await self.list_names()
        wanted = self.names()
        counts = await self.partition_counts([n for _, n in wanted if n in present])
        return [TopicState(spec, name, counts.get(name)) for spec, name in wanted]

    async def topic_configs(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """The configs of each named (existing) topic as the broker describes them (set or default)."""
        if not names:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        try:
            responses: list[Any] = await self._admin.describe_configs(resources)
        except KafkaError as exc:
            raise KafkaFailure(f"describing topic configs failed: {exc}") from None
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for error_code, _, _, name, entries in response.resources:
                if error_code == 0:
                    configs[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
        return configs

    async def replication_factor(self) -> int:
        try:
            cluster: dict[str, Any] = await self._admin.describe_cluster()
        except KafkaError as exc:
            raise KafkaFailure(f"describing the cluster failed: {exc}") from None
        return max(1, min(PREFERRED_REPLICATION, len(cluster.get("brokers") or [])))

    async def create(
        self, partitions: int | None = None, replication_factor: int | None = None
    ) -> CreateReport:
        """Create every missing catalogue topic; see the module docstring for the partition rules.

        ``partitions`` is the count the user asked for; None means "not asked": new topics get
        ``settings.partitions`` unless co-partitioned topics exist already, whose count is then used,
        with a warning when it differs (only "left as they are" needs a count that was asked for).
        """
        wanted = partitions or self.settings.partitions
        states = await self.states()
        co: dict[str, int] = {
            st.name: st.partitions for st in states if st.spec.co_partitioned and st.partitions is not None
        }
        if len(set(co.values())) > 1:
            raise PartitionMismatch(co)
        count = wanted
        warnings: list[str] = []
        if co and (existing := next(iter(co.values()))) != wanted:
            count = existing
            missing_co = [st.name for st in states if st.spec.co_partitioned and st.partitions is None]
            if missing_co:
                # Loud even when no count was asked for: the existing topics may be accidents (a broker
                # that auto-creates topics, a service started before this command), and following them
                # silently would make every new topic wrong too (issue 13).
                warnings.append(_followed(co, existing, wanted, missing_co))
            elif partitions is not None:
                warnings.append(
                    f"topics exist with {existing} partitions (asked for {wanted}); left as they are"
                )
        warnings += await self._config_warnings([st for st in states if st.partitions is not None])
        rf = replication_factor if replication_factor is not None else await self.replication_factor()
        report = CreateReport(partitions=count, replication_factor=rf, warnings=warnings)
        report.existing = [(st.name, st.partitions) for st in states if st.partitions is not None]
        to_create = [st for st in states if st.partitions is None]
        if to_create:
            new = [NewTopic(st.name, count, rf, topic_configs=_configs(st.spec, rf)) for st in to_create]
            try:
                response = await self._admin.create_topics(new)
            except KafkaError as exc:
                raise TopicCreateFailed(f"creating topics failed: {exc}") from None
            failures = []
            for name, code, message in _topic_errors(response):
                if code == 0:
                    report.created.append(name)
                elif code == TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else: fine
                    report.existing.append((name, count))
                else:
                    failures.append(f"{name}: {message or f'error code {code}'}")
            if failures:
                raise TopicCreateFailed(f"the broker refused to create {'; '.join(failures)}")
            await self._wait_listed(report.created)
        return report

    async def _config_warnings(self, existing: Sequence[TopicState]) -> list[str]:
        """A warning per existing topic whose cleanup.policy is not the catalogue's, or whose
        delete.retention.ms is below it.

        Existing topics are never altered (an operator may have reasons), but a changelog that is
        not compacted loses flow state once its retention passes, and one whose tombstones go sooner
        than the store's restore assumes can bring an ended flow back: neither may go unnoticed.
        """
        described = await self.topic_configs([st.name for st in existing])
        warnings = []
        for st in existing:
            actual = described.get(st.name, {})
            for key, expected in st.spec.configs.items():
                found = actual.get(key) or ("delete" if key == "cleanup.policy" else None)
                if found is None or not _falls_short(key, found, expected):
                    continue
                warnings.append(
                    f"{st.name} has {key}={found}, the catalogue says {expected}; existing topics "
                    f"are left as they are: change it with kafka-configs.sh --alter --entity-type topics "
                    f"--entity-name {st.name} --add-config {key}={expected}"
                )
        return warnings

    async def _wait_listed(self, names: Sequence[str]) -> None:
        deadline = time.monotonic() + LISTED_TIMEOUT
        while set(names) - await self.list_names():
            if time.monotonic() > deadline:
                missing = sorted(set(names) - await self.list_names())
                raise TopicCreateFailed(
                    f"created topics not listed after {LISTED_TIMEOUT:g} s: {', '.join(missing)}"
                )
            await asyncio.sleep(0.1)


#: Configs an existing topic may exceed but not fall below (more tombstone time is only safer).
_AT_LEAST = frozenset({"delete.retention.ms"})


def _falls_short(key: str, found: str, expected: str) -> bool:
    """Whether an existing topic's value of a catalogue config is one to warn about."""
    if key == "cleanup.policy":
        return found != expected
    if key in _AT_LEAST:
        try:
            return int(found) < int(expected)
        except ValueError:
            return True
    return False  # retention.ms and the like: an operator's choice, not a correctness risk


def _configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """The configs a new topic is created with: the catalogue's, and min.insync.replicas when replicated."""
    configs = dict(spec.configs)
    if replication_factor >= PREFERRED_REPLICATION:
        configs["min.insync.replicas"] = str(MIN_INSYNC_REPLICAS)
    return configs


def _followed(co: dict[str, int], existing: int, wanted: int, missing: Sequence[str]) -> str:
    """The warning of a create that follows existing co-partitioned topics, with the two ways out."""
    return (
        f"existing co-partitioned topics have {existing} partitions, not {wanted}: creating "
        f"{', '.join(missing)} with {existing} to keep them co-partitioned. If {', '.join(co)} were "
        "created by accident (a broker that auto-creates topics, a service started before `stream-app "
        "topics create`), delete them (their records are lost) and run `stream-app topics create` again; "
        f"to keep {existing} and silence this, run it with --partitions {existing}"
    )


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of a CreateTopics response (its versions differ in shape)."""
    rows = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((name, code, message))
    return rows


async def create_topics(
    settings: Settings, partitions: int | None = None, replication_factor: int | None = None
) -> CreateReport:
    """Create every topic of the catalogue (idempotent). For the demo and scripts."""
    async with TopicAdmin(settings) as admin:
        return await admin.create(partitions, replication_factor)


async def topic_states(settings: Settings) -> list[TopicState]:
    """Every catalogue topic with its partition count on the broker (None when it does not exist)."""
    async with TopicAdmin(settings) as admin:
        return await admin.states()
