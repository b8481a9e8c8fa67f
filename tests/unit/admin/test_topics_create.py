"""``TopicAdmin.create`` against a fake admin client: the configs new topics are created with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from stream_app.admin.topics import TopicAdmin
from stream_app.config import Settings


class FakeAdmin:
    """An empty cluster of ``brokers`` brokers that records the topics it is asked to create."""

    def __init__(self, brokers: int) -> None:
        self.brokers = brokers
        self.topics: dict[str, int] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.created: list[NewTopic] = []

    async def list_topics(self) -> list[str]:
        return list(self.topics)

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"topic": n, "error_code": 0, "partitions": [{}] * self.topics[n]} for n in names]

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        """One response in aiokafka's shape: (error, message, type, name, [(key, value, ...)])."""
        described = [
            (
                0,
                None,
                2,
                r.name,
                [(k, v, False, 5, False, []) for k, v in self.configs.get(r.name, {}).items()],
            )
            for r in resources
        ]
        return [SimpleNamespace(resources=described)]

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": i} for i in range(self.brokers)]}

    async def create_topics(self, new: list[NewTopic]) -> Any:
        self.created += new
        for topic in new:
            self.topics[topic.name] = topic.num_partitions

        class Response:
            topic_errors = [(topic.name, 0, None) for topic in new]

        return Response()


def _admin(fake: FakeAdmin) -> TopicAdmin:
    admin = TopicAdmin.__new__(TopicAdmin)  # no real client: nothing to connect or close
    admin.settings = Settings(state_dir=Path("unused"))
    admin._admin = fake  # type: ignore[assignment]
    return admin


@pytest.mark.parametrize(("brokers", "given", "expected"), [(3, None, "2"), (5, None, "2"), (5, 4, "2")])
async def test_replicated_topics_get_min_insync_replicas_two_regression(
    brokers: int, given: int | None, expected: str
) -> None:
    """With replication 3 and acks=all, the broker's default min.insync.replicas=1 lets a write be
    acknowledged by the leader alone (the ISR shrunk to it): that leader's loss loses an acknowledged
    command, outcome or changelog record. Kafka's documented setup is replication 3 with
    min.insync.replicas=2; ``topics create`` said so in a comment but never set it."""
    fake = FakeAdmin(brokers)
    report = await _admin(fake).create(replication_factor=given)
    assert report.created and len(fake.created) == len(report.created)
    for topic in fake.created:
        assert topic.topic_configs.get("min.insync.replicas") == expected, topic.name


@pytest.mark.parametrize(("brokers", "given"), [(1, None), (2, None), (3, 1), (3, 2)])
async def test_less_replicated_topics_keep_the_broker_default_min_insync_replicas(
    brokers: int, given: int | None
) -> None:
    """Below replication 3, 2 in-sync replicas would stop every write while one broker is down."""
    fake = FakeAdmin(brokers)
    await _admin(fake).create(replication_factor=given)
    assert fake.created
    for topic in fake.created:
        assert "min.insync.replicas" not in topic.topic_configs, topic.name


async def test_catalogue_configs_pass_through() -> None:
    fake = FakeAdmin(1)
    await _admin(fake).create()
    configs = {topic.name: topic.topic_configs for topic in fake.created}
    assert configs["fallback-processor-flows-changelog"]["cleanup.policy"] == "compact"
    assert configs["send-requests"]["cleanup.policy"] == "delete"


def _existing_changelog(configs: dict[str, str]) -> FakeAdmin:
    fake = FakeAdmin(1)
    fake.topics["fallback-processor-flows-changelog"] = 12
    fake.configs["fallback-processor-flows-changelog"] = configs
    return fake


async def test_an_existing_changelog_keeping_tombstones_too_short_is_warned_about() -> None:
    """Tombstones the changelog drops sooner than the kept stores assume bring ended flows back."""
    fake = _existing_changelog({"cleanup.policy": "compact", "delete.retention.ms": "3600000"})
    report = await _admin(fake).create()
    assert report.warnings == [
        "fallback-processor-flows-changelog has delete.retention.ms=3600000, the catalogue says 86400000; "
        "existing topics are left as they are: change it with kafka-configs.sh --alter --entity-type topics "
        "--entity-name fallback-processor-flows-changelog --add-config delete.retention.ms=86400000"
    ]


@pytest.mark.parametrize("kept", ["86400000", "604800000"])
async def test_an_existing_changelog_keeping_tombstones_long_enough_is_not_warned_about(kept: str) -> None:
    fake = _existing_changelog(
        {"cleanup.policy": "compact", "delete.retention.ms": kept, "retention.ms": "1"}
    )
    assert (await _admin(fake).create()).warnings == []


async def test_an_existing_changelog_without_compaction_is_warned_about() -> None:
    fake = _existing_changelog({"delete.retention.ms": "86400000"})  # no policy described: Kafka's delete
    [warning] = (await _admin(fake).create()).warnings
    assert warning.startswith(
        "fallback-processor-flows-changelog has cleanup.policy=delete, the catalogue says compact;"
    )


async def test_new_changelogs_pin_their_tombstone_retention() -> None:
    fake = FakeAdmin(1)
    await _admin(fake).create()
    configs = {topic.name: topic.topic_configs for topic in fake.created}
    assert configs["fallback-processor-flows-changelog"]["delete.retention.ms"] == "86400000"
