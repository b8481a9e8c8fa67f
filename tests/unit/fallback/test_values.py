"""The core's per-record values are never changed once built (what ``frozen=True`` used to enforce).

They are plain dataclasses for speed (see ``fallback.state.VALUES``), so these tests hold the rule:
no code assigns one of their fields, and ``decide()`` leaves the state it was given as it was.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from stream_app.fallback import RequestEvent, StatusEvent, TimerEvent, decide, encode_state
from stream_app.fallback.state import VALUES, FlowState
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
