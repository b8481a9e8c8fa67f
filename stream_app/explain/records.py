"""The records ``explain`` works on, and which topic of the contract each one comes from.

A message's story is spread over several topics: its inputs (``send-requests``, ``delivery-status``,
and ``channel-control``, global: keyed by channel) and what the processor published for it
(``retry-commands``, ``outcomes``). :data:`INPUT_IDS` and :data:`PUBLISHED_IDS` name them by the
catalogue's ``id`` (the field of :class:`stream_app.config.Topics`), so a new input kind is one more
id here plus its feeder in :mod:`stream_app.explain.replay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_app.config import Settings
from stream_app.contracts.catalogue import CATALOGUE

#: Input topics, in the order records of the same millisecond are replayed (a request before its
#: statuses, as the core would rather see them; it holds statuses that come first anyway).
INPUT_IDS: tuple[str, ...] = tuple(
    i for i in ("channel_control", "send_requests", "delivery_status") if any(s.id == i for s in CATALOGUE)
)
#: Topics the processor publishes a message's decisions on.
PUBLISHED_IDS: tuple[str, ...] = ("retry_commands", "outcomes")
#: Every topic ``explain`` reads, and what ``--export`` writes.
EXPLAIN_IDS: tuple[str, ...] = (*INPUT_IDS, *PUBLISHED_IDS)
#: Input topics NOT keyed by messageId (``channel-control`` is keyed by channel): read whole, every
#: partition and key, and their records apply to every message (CONTRACT.md v1.1).
GLOBAL_IDS: frozenset[str] = frozenset({"channel_control"})
#: Topics a message's story needs; the others (``channel-control``) are read when they exist.
REQUIRED_IDS: tuple[str, ...] = ("send_requests", "delivery_status", "retry_commands", "outcomes")

_STEMS = {s.id: s.stem for s in CATALOGUE}


@dataclass(frozen=True, slots=True)
class Record:
    """One record as it is on its topic. ``kind`` is the catalogue id of the topic it came from."""

    kind: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()  # None: a header without a value (Kafka allows one)

    @property
    def keyed(self) -> bool:
        """Whether the record belongs to one message (its key), not to all (a global input)."""
        return self.kind not in GLOBAL_IDS

    @property
    def where(self) -> str:
        """``send-requests[3]@17``: where the record is, as the other commands write it."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def topic_names(settings: Settings) -> dict[str, str]:
    """Catalogue id -> full topic name under the settings' prefix, for every topic explain reads."""
    return {i: settings.topic_prefix + _STEMS[i] for i in EXPLAIN_IDS}


def kind_of(topic: str, settings: Settings) -> str | None:
    """The catalogue id of ``topic``: its full name under the settings' prefix, or any prefix + stem.

    An export taken with one ``STREAM_APP_TOPIC_PREFIX`` (``prod.outcomes``) replays without setting
    the same prefix; the longest matching stem wins, so no stem is mistaken for another's suffix.
    """
    names = topic_names(settings)
    for i, name in names.items():
        if topic == name:
            return i
    best: tuple[int, str] | None = None
    for i in EXPLAIN_IDS:
        stem = _STEMS[i]
        if topic.endswith(stem) and (best is None or len(stem) > best[0]):
            best = (len(stem), i)
    return best[1] if best is not None else None
