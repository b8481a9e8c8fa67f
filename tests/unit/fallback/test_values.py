"""The core's per-record values are never changed once built (what ``frozen=True`` used to enforce).

They are plain dataclasses for speed (see ``fallback.state.VALUES``), so these tests hold the rule:
no code assigns one of their fields, and ``decide()`` leaves the state it was given as it was.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from stream_app.contracts import AttemptEnd, Channel, CommandReason, Status
from stream_app.fallback import RequestEvent, StatusEvent, TimerEvent, decide, encode_state
from stream_app.fallback.state import (
    VALUES,
    Attempt,
    DeadLetter,
    Decision,
    Deferred,
    FlowState,
    Held,
    Phase,
    Signal,
    Step,
)
from stream_app.fallback.window import Window
from tests.unit.fallback.driver import HOUR, LIMITS, MINUTE, T0, request, status

PACKAGE = Path(__file__).resolve().parents[3] / "stream_app"
FIELDS = {f.name for cls in VALUES for f in dataclasses.fields(cls)}
#: Field names that other classes of the package also have, and assign on themselves (``self.x``).
STATE_FIELDS = {f.name for f in dataclasses.fields(FlowState)}


def _assigned_fields(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, field) of every ``x.field = ...`` / ``x.field += ...`` / ``setattr(x, "field", ...)``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("setattr", "__setattr__")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[1].value)))
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and not (
                    isinstance(sub.value, ast.Name) and sub.value.id == "self"
                ):
                    found.append((sub.lineno, sub.attr))
    return found


def test_no_code_of_the_core_or_the_step_assigns_a_field_of_a_value() -> None:
    sources = [*sorted((PACKAGE / "fallback").glob("*.py")), PACKAGE / "runtime" / "task.py"]
    offences = [
        f"{path.name}:{line}: .{name} ="
        for path in sources
        for line, name in _assigned_fields(ast.parse(path.read_text()))
        if name in FIELDS and name not in STATE_FIELDS
    ]
    assert offences == [], "a value is changed in place; build a new one instead"


def test_the_guard_sees_an_assignment() -> None:
    tree = ast.parse("a.ended_by = 1\nb.reasons += ()\nsetattr(c, 'issued_ms', 2)\nself.status = 3\n")
    assert [name for _, name in _assigned_fields(tree)] == ["ended_by", "reasons", "issued_ms"]


def test_decide_leaves_the_state_it_was_given_as_it_was() -> None:
    """A flow through every kind of change (issue, progress, timeout, fail-over, success, forget)."""
    chain = [
        {"channel": "WHATSAPP", "fallbackAfter": 60},
        {"channel": "RCS", "fallbackAfter": 60},
        {"channel": "SMS"},
    ]
    now, state = T0, None
    inputs = [
        (0, RequestEvent(request(channels=chain))),
        (1_000, StatusEvent(status("WHATSAPP", "SENT", attempt=0))),
        (MINUTE + 1_000, TimerEvent()),  # WhatsApp timed out: RCS
        (MINUTE + 2_000, StatusEvent(status("RCS", "ERROR", attempt=1, reasons=["no agent"]))),  # SMS
        (MINUTE + 3_000, StatusEvent(status("SMS", "DELIVERED", attempt=2))),  # the outcome
        (MINUTE + 4_000, StatusEvent(status("WHATSAPP", "DELIVERED", attempt=0))),  # a late status
        (100 * HOUR, TimerEvent()),  # forgotten
    ]
    for at, event in inputs:
        now = T0 + at
        before = encode_state(state) if state is not None else None
        snapshot = dataclasses.replace(state, attempts=list(state.attempts)) if state is not None else None
        decision = decide(state, event, now, LIMITS)
        if state is not None:
            assert encode_state(state) == before
            assert state == snapshot
        state = decision.state
    assert state is None


def _two_apart() -> list[tuple[object, object]]:
    """For each value whose methods are written out (see fallback/state.py), two instances that
    differ in every field."""
    a1 = Attempt(1, Status.SENT, AttemptEnd.FAILED, "p1", (1, None, None, None), ("r1",))
    a2 = Attempt(2, Status.DELIVERED, AttemptEnd.SUCCEEDED, "p2", (2, 3, None, None), ("r2",))
    s1 = Signal(0, Channel.SMS, Status.SENT, "p1", 10, ("r1",))
    s2 = Signal(1, Channel.RCS, Status.ERROR, "p2", 20, ("r2",))
    step1 = Step(Channel.SMS, None, 1)
    step2 = Step(Channel.RCS, 60_000, 3)
    return [
        (step1, step2),
        (a1, a2),
        (s1, s2),
        (
            FlowState(
                Phase.RUNNING,
                "m1",
                1,
                b"f1",
                "+1",
                "t1",
                "c1",
                False,
                1,
                2,
                3,
                (step1,),
                [a1],
                [Held(s1, 5)],
                b"o1",
                Window("Europe/Rome", 1, 0, 60, False),
                Deferred(1, 2, CommandReason.FAILED),
            ),
            FlowState(
                Phase.ENDED,
                "m2",
                2,
                b"f2",
                "+2",
                "t2",
                "c2",
                True,
                4,
                5,
                6,
                (step2,),
                [a2],
                [Held(s2, 6)],
                b"o2",
                Window("UTC", 2, 1, 61, True),
                Deferred(3, 4, CommandReason.TIMEOUT),
            ),
        ),
        # Only Decision's __init__ is written out; its __eq__ is @dataclass's.
        (Decision(None, ()), Decision(FlowState(Phase.RUNNING, "m"), (DeadLetter("r"),))),
    ]


@pytest.mark.parametrize("one, other", _two_apart(), ids=lambda v: type(v).__name__)
def test_written_out_methods_cover_every_field(one: object, other: object) -> None:
    # A field added to the class but not to __init__ fails replace(); one left out of __eq__ or
    # __hash__ makes the mixed copy compare (or hash) equal to the original.
    # A FlowState is not hashable, nor a Decision holding one.
    hashable = type(one) not in (FlowState, Decision)
    same = dataclasses.replace(one)  # type: ignore[type-var]
    assert same == one
    if hashable:
        assert hash(same) == hash(one)
    for f in dataclasses.fields(one):  # type: ignore[arg-type]
        mixed = dataclasses.replace(one, **{f.name: getattr(other, f.name)})  # type: ignore[type-var]
        assert getattr(mixed, f.name) == getattr(other, f.name), f.name
        assert mixed != one, f"__eq__ ignores {f.name}"
        if hashable:
            assert hash(mixed) != hash(one), f"__hash__ ignores {f.name}"


def test_a_flow_state_is_not_hashable() -> None:
    with pytest.raises(TypeError, match="unhashable"):
        hash(FlowState(Phase.RUNNING, "m"))
