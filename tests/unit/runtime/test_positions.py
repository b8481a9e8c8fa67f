"""The skip guard's bookkeeping (:mod:`stream_app.runtime.positions`), every transition."""

from __future__ import annotations

from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from stream_app.runtime.positions import Check, Positions

TP = TopicPartition("t", 0)


def started(offset: int = 10) -> Positions:
    p = Positions()
    p.start(TP, offset)
    return p


def test_unowned_until_started_and_after_forget() -> None:
    p = Positions()
    assert p.check(TP, 0) == (Check.UNOWNED, -1)
    p.start(TP, 0)
    p.forget(TP)
    assert p.check(TP, 0)[0] is Check.UNOWNED


def test_a_batch_where_expected_is_processed_and_advances() -> None:
    p = started(10)
    assert p.check(TP, 10) == (Check.PROCESS, 10)
    p.advance(TP, 15)
    assert p.check(TP, 15) == (Check.PROCESS, 15)


def test_a_gap_is_rewound_then_repaired_when_records_come_back() -> None:
    p = started(10)
    assert p.check(TP, 14) == (Check.REWIND, 10)
    assert p.check(TP, 10) == (Check.GAP_REPAIRED, 10)
    assert p.check(TP, 10) == (Check.PROCESS, 10)  # the rewind is forgotten once repaired


def test_the_same_gap_after_a_rewind_is_confirmed() -> None:
    p = started(10)
    assert p.check(TP, 12) == (Check.REWIND, 10)
    assert p.check(TP, 12) == (Check.GAP_CONFIRMED, 10)
    assert p.check(TP, 12) == (Check.REWIND, 10)  # a new sighting of a gap is rewound again


def test_a_different_gap_after_a_rewind_is_rewound_again() -> None:
    p = started(10)
    assert p.check(TP, 12)[0] is Check.REWIND
    assert p.check(TP, 13) == (Check.REWIND, 10)


def test_records_before_expected_are_an_overlap() -> None:
    assert started(10).check(TP, 7) == (Check.OVERLAP, 10)


def test_advance_of_an_unowned_partition_is_ignored() -> None:
    p = Positions()
    p.advance(TP, 5)
    assert p.check(TP, 5)[0] is Check.UNOWNED


def test_start_and_clear_drop_a_pending_rewind() -> None:
    p = started(10)
    p.check(TP, 12)
    p.start(TP, 10)
    assert p.check(TP, 12)[0] is Check.REWIND
    p.clear()
    assert p.check(TP, 12)[0] is Check.UNOWNED


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=60))
def test_never_processes_past_a_hole_without_seeing_it_twice(firsts: list[int]) -> None:
    """Whatever batches arrive, a batch past the expected offset is processed only when the very same
    gap was seen right before (confirmed), never on first sight."""
    p = started(0)
    last: tuple[int, int] | None = None
    for first in firsts:
        verdict, expected = p.check(TP, first)
        if first > expected:
            assert verdict in (Check.REWIND, Check.GAP_CONFIRMED)
            if verdict is Check.GAP_CONFIRMED:
                assert last == (expected, first)
        last = (expected, first) if verdict is Check.REWIND else None
        if verdict in (Check.PROCESS, Check.GAP_REPAIRED, Check.GAP_CONFIRMED):
            p.advance(TP, first + 1)
