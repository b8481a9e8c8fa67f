"""Where each owned input partition must be read from next: the guard against skipping an input.

The processor commits an input offset only past records it processed in the current generation
(DESIGN.md rule 3). That is safe only if the records it processes follow each other with no hole:
a ``getmany()`` whose records were fetched but not processed moves the consumer's fetch position
past them, and the next turn would then commit past records nobody processed (issue 14: inputs lost
at rebalances). So every owned partition has an expected next offset, set when its store is
restored (the committed offset) and moved after each processed batch (the fetch position, which
already steps over transaction markers inside a fetch). A batch that starts past it is a gap:

1. the first time, the partition is rewound to the expected offset and the gap remembered;
2. if the same gap comes back after the rewind, it holds no record this consumer can read
   (transaction markers, aborted records, retention): it is accepted, with a log line;
3. if instead records come back from the expected offset, records had been skipped: that is a bug
   of the reading side, logged as an error, and the rewind has just repaired it.

Pure bookkeeping, no client: the processor asks :meth:`Positions.check` and does the seek.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from aiokafka.structs import TopicPartition


class Check(Enum):
    """What to do with a batch, by where it starts against the expected offset."""

    PROCESS = "process"  # starts where expected
    UNOWNED = "unowned"  # no expected offset: the partition's store is not restored in this generation
    REWIND = "rewind"  # starts past the expected offset, first sighting: seek back to it
    GAP_CONFIRMED = "gap_confirmed"  # the same gap again after a rewind: nothing readable there
    GAP_REPAIRED = "gap_repaired"  # after a rewind, records from the expected offset: they were skipped
    OVERLAP = "overlap"  # starts before the expected offset: those records were processed already


@dataclass(slots=True)
class Positions:
    """Expected next offset per owned input partition, and the gap each one has been rewound for."""

    expected: dict[TopicPartition, int] = field(default_factory=dict)
    rewound: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)

    def start(self, tp: TopicPartition, offset: int) -> None:
        """The partition is owned and will be read from ``offset`` (its committed offset)."""
        self.expected[tp] = offset
        self.rewound.pop(tp, None)

    def forget(self, tp: TopicPartition) -> None:
        """The partition is no longer processed (store closed, revoked, or a turn is retried)."""
        self.expected.pop(tp, None)
        self.rewound.pop(tp, None)

    def clear(self) -> None:
        self.expected.clear()
        self.rewound.clear()

    def check(self, tp: TopicPartition, first: int) -> tuple[Check, int]:
        """What to do with a batch of ``tp`` whose first record is at ``first``, and the expected offset.

        REWIND, OVERLAP and UNOWNED leave the state as it is apart from remembering the rewound gap;
        the caller seeks (REWIND) or drops the records below the expected offset (OVERLAP).
        """
        expected = self.expected.get(tp)
        if expected is None:
            return Check.UNOWNED, -1
        rewound = self.rewound.pop(tp, None)
        if first == expected:
            return (Check.PROCESS if rewound is None else Check.GAP_REPAIRED), expected
        if first < expected:
            return Check.OVERLAP, expected
        if rewound == (expected, first):
            return Check.GAP_CONFIRMED, expected
        self.rewound[tp] = (expected, first)
        return Check.REWIND, expected

    def advance(self, tp: TopicPartition, offset: int) -> None:
        """A batch of ``tp`` was processed; the next one must start at ``offset``."""
        if tp in self.expected:
            self.expected[tp] = offset
