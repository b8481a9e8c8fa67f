"""What one turn of the processor stages before it completes: outputs, state changes, input offsets.

Plain slots dataclasses, grouped by the input partition they belong to, because the commit protocol
works partition by partition (one transaction per partition under exactly_once).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka.structs import TopicPartition

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Change:
    """The latest state of one key in the current batch, and the inputs that led to it."""

    record: bytes | None  # the changelog value (state and timer) the store staged; None: deleted
    req_offset: int = -1
    status_offset: int = -1


@dataclass(slots=True)
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None  # None: the producer's murmur2 of the key


@dataclass(slots=True)
class Work:
    """Everything one turn produces, grouped by the partition it belongs to."""

    outputs: dict[int, list[Out]] = field(default_factory=lambda: defaultdict(list))
    changes: dict[int, dict[bytes, Change]] = field(default_factory=lambda: defaultdict(dict))
    offsets: dict[int, dict[TopicPartition, int]] = field(default_factory=lambda: defaultdict(dict))

    def empty(self) -> bool:
        return not (self.outputs or self.changes or self.offsets)
