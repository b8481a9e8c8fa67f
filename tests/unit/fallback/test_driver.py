"""The test driver runs the processor's own step, and its checks catch a step that goes wrong.

Every other test of this package asserts on the core's effects through :class:`Driver`; these show
that the records, the store and the timer index behind those effects are checked too: each fault
below is injected into the runtime's step or its store (not into the core) and must fail the driver.
The faults go in through the store, the checkpoint and the driver's own classes, never by patching
the runtime modules' names, so the tests mean the same when the hot path is compiled (mypyc).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_app.contracts import Channel
from stream_app.fallback import Decision, decode_state
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.control import ControlTable
from stream_app.store import PartitionStore
from tests.unit.fallback.driver import MINUTE, Driver, ObservedTask, closing, request, status

CHAIN: list[dict[str, Any]] = [{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}]


def test_the_state_and_its_timer_are_the_stores() -> None:
    for roundtrip in (True, False):
        d = Driver(roundtrip=roundtrip)
        d.send(request(channels=CHAIN))
        raw = d.task.store.get(b"msg-1")
        assert raw is not None and decode_state(raw) == d.state
        assert d.state is not None and d.task.store.next_deadline() == d.state.deadline_ms
        d.advance(MINUTE)  # fired from the store's due index
        assert [c.channel for c in d.commands] == ["WHATSAPP", "SMS"]


def test_a_store_is_lent_to_one_driver_at_a_time_and_emptied_between() -> None:
    first = Driver()
    first.send(request())
    other = Driver()
    assert other.task.store is not first.task.store and other.task.store.get(b"msg-1") is None
    store = first.task.store
    del first
    again = Driver()
    assert again.task.store is store
    assert store.get(b"msg-1") is None and store.next_deadline() is None


def _after_each_step(monkeypatch: pytest.MonkeyPatch, fault: Callable[[Checkpoint], None]) -> None:
    """Damage what each step staged (the step itself may be compiled: its module is not patched)."""
    real = ObservedTask.step

    def step(task: ObservedTask, *args: Any) -> Decision | None:
        decision = real(task, *args)
        fault(args[3])  # the checkpoint
        return decision

    monkeypatch.setattr(ObservedTask, "step", step)


def test_published_bytes_other_than_the_effects_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    def other_reason(ck: Checkpoint) -> None:
        out = ck.outputs[0][-1]
        out.value = (out.value or b"").replace(b'"reason":"INITIAL"', b'"reason":"TIMEOUT"')

    _after_each_step(monkeypatch, other_reason)
    with pytest.raises(AssertionError, match="staged other records than the core's effects"):
        Driver().send(request())


def test_a_lost_traceparent_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def untraced(ck: Checkpoint) -> None:
        ck.outputs[0][-1].headers = []

    _after_each_step(monkeypatch, untraced)
    with pytest.raises(AssertionError, match="staged other records than the core's effects"):
        Driver().send(request())


def _corrupt(d: Driver) -> None:
    """A stored state the codec refuses, its timer kept: the step's decode fails inside the task."""
    assert d.state is not None
    d.task.store.put(b"msg-1", b"\xff not a state", d.state.deadline_ms)


def test_a_step_that_fails_on_an_input_is_named() -> None:
    """The task dead-letters the input with the error; the driver says which."""
    d = Driver()
    d.send(request(channels=CHAIN))
    _corrupt(d)
    with pytest.raises(AssertionError, match="processor: StateDecodeError"):
        d.report(status("WHATSAPP", "SENT", 0))


def test_a_step_that_fails_on_a_timer_fails() -> None:
    """The task disarms the timer (logged, no decision): a change the core did not decide."""
    d = Driver()
    d.send(request(channels=CHAIN))
    _corrupt(d)
    with pytest.raises(AssertionError, match="changed without a decision"):
        d.advance(MINUTE)


def test_a_timer_the_store_did_not_index_fails(tmp_path: Path) -> None:
    # A subclass handed to the task, not a patched method: a compiled store's callers would not see one.
    class Unindexed(PartitionStore):
        def put(self, key: bytes, value: bytes, deadline_ms: int | None) -> bytes:
            return super().put(key, value, None)

    d = Driver()
    with Unindexed.open(tmp_path, "changelog", 0) as store:
        d.task.store = store
        with pytest.raises(AssertionError, match="the record's timer is the state's deadline"):
            d.send(request(channels=CHAIN))


def test_a_fallback_closure_reaches_the_flow_through_the_tables_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not by handing the core a ControlEvent: the table's view, then its sweep, as a live instance."""
    sweeps: list[int] = []
    real = ControlTable.run_sweeps

    def spy(table: ControlTable, tasks: Any, now: int, ck: Any) -> int:
        sweeps.append(now)
        return real(table, tasks, now, ck)

    monkeypatch.setattr(ControlTable, "run_sweeps", spy)
    d = Driver()
    d.send(request(channels=CHAIN))
    d.control(closing("SMS"))  # WAIT: into the view only, no sweep
    assert sweeps == [] and d.controls.closed(Channel.SMS, None, d.now)
    d.control(closing("WHATSAPP", inFlight="FALLBACK"))
    assert sweeps == [d.now]
    assert [c.channel for c in d.commands] == ["WHATSAPP"]  # SMS, the next step, is closed
    assert d.outcome.reason == "CHANNELS_CLOSED"
