"""The start-up check of the topics a service or command uses: they exist, and agree where they must.

Every service runs it before it produces anything: a producer sending to a missing topic makes an
auto-creating broker (Tansu, Kafka with ``auto.create.topics.enable``) create it with the broker's
default partition count, so a mistyped ``--topic-prefix`` would run happily and leave behind a topic
that a later ``stream-app topics create`` then follows (issue 13).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stream_app.kafka.errors import TopicsMissing, TopicsNotCoPartitioned


def require_topics(
    counts: Mapping[str, int],
    bootstrap_servers: str,
    needed: Sequence[str],
    *,
    together: Sequence[str] = (),
) -> None:
    """Refuse, in one line, when a ``needed`` topic is missing or the ``together`` ones disagree.

    ``counts`` is every topic on the broker with its partition count (``kafka.metadata``);
    ``together`` names topics that must share one partition count (each is also needed).
    """
    missing = [name for name in dict.fromkeys([*needed, *together]) if name not in counts]
    if missing:
        raise TopicsMissing(missing, bootstrap_servers)
    if len({counts[name] for name in together}) > 1:
        raise TopicsNotCoPartitioned({name: counts[name] for name in together})
