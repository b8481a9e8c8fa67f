"""The report's fast reader: the contract's records read the same as the contract's decoder reads them,
and every kind of bad record is one line naming the field and the rule."""

from __future__ import annotations

import orjson
import pytest

from stream_app.contracts import LateStatus, Outcome, decode_outcome, to_ms
from stream_app.report import BadRecord, parse
from stream_app.report.read import LateRow, OutcomeRow
from tests.support.outcomes import hand_built_lines


@pytest.mark.parametrize("line", hand_built_lines(), ids=lambda b: orjson.loads(b)["messageId"])
def test_rows_agree_with_the_contract_decoder(line: bytes) -> None:
    model = decode_outcome(line)
    row = parse(line)
    if isinstance(model, LateStatus):
        assert isinstance(row, LateRow)
        assert (row.message_id, row.attempt, row.channel, row.status, row.double_delivery) == (
            model.message_id,
            model.attempt,
            model.channel.value,
            model.status.value,
            model.double_delivery,
        )
        assert row.occurred_ms == to_ms(model.occurred_at)
        return
    assert isinstance(model, Outcome) and isinstance(row, OutcomeRow)
    assert (row.result, row.tenant, row.campaign_id, row.duration_ms, row.reason) == (
        model.result.value,
        model.tenant,
        model.campaign_id,
        model.duration_ms,
        model.reason,
    )
    assert row.completed_ms == to_ms(model.completed_at)
    for a, m in zip(row.attempts, model.attempts, strict=True):
        assert (a.attempt, a.channel, a.issued_ms) == (m.attempt, m.channel.value, to_ms(m.issued_at))
        assert a.last_status == (m.last_status.value if m.last_status else None)
        assert a.ended_by == (m.ended_by.value if m.ended_by else None)
        assert a.times == {k.value: to_ms(v) for k, v in (m.status_times or {}).items()}
        assert a.reasons == m.reasons


GOOD = orjson.loads(hand_built_lines()[2])  # m3: two attempts, reasons, statusTimes


def with_(path: str, value: object) -> bytes:
    record = orjson.loads(orjson.dumps(GOOD))
    target = record
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    target[int(last) if last.isdigit() else last] = value
    return orjson.dumps(record)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"type": "outcome", "messageId": ', "not JSON (unexpected end of data)"),
        (b"[1, 2]", "must be a JSON object, got [1,2]"),
        (b'{"type": "command", "messageId": "x"}', 'type: must be outcome or late-status, got "command"'),
        (with_("messageId", 7), "messageId: must be a string, got 7"),
        (with_("result", "WON"), 'result: must be one of CANCELLED, EXPIRED, FAILED, SUCCEEDED, got "WON"'),
        (with_("durationMs", "5s"), 'durationMs: must be an integer, got "5s"'),
        (with_("durationMs", True), "durationMs: must be an integer, got true"),
        (
            with_("completedAt", 1712650000),
            "completedAt: must be an RFC 3339 timestamp with an offset, got 1712650000",
        ),
        (
            with_("completedAt", "2026-04-09T08:00:00"),
            'completedAt: must be an RFC 3339 timestamp with an offset, got "2026-04-09T08:00:00"',
        ),
        (with_("attempts", "many"), 'attempts: must be a list, got "many"'),
        (with_("attempts.1", 3), "attempts[1]: must be an object, got 3"),
        (
            with_("attempts.1.channel", "PIGEON"),
            'attempts[1].channel: must be one of RCS, SMS, VIBER, WHATSAPP, got "PIGEON"',
        ),
        (
            with_("attempts.1.statusTimes", {"LOST": "2026-04-09T08:00:00Z"}),
            "attempts[1].statusTimes: 'LOST' is not one of",
        ),
        (with_("attempts.0.reasons", "nope"), 'attempts[0].reasons: must be a list of strings, got "nope"'),
        (with_("attempts.1.attempt", 1_000_000_000), "attempts[1].attempt: must be 0 to 7, got 1000000000"),
        (with_("attempts.1.attempt", -1), "attempts[1].attempt: must be 0 to 7, got -1"),
    ],
)
def test_bad_records_say_which_field_and_why(data: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        parse(data)
    assert caught.value.reason.startswith(reason)
    assert "\n" not in caught.value.reason


def test_a_late_status_with_a_wrong_flag_is_refused() -> None:
    late = orjson.loads(hand_built_lines()[5])
    late["doubleDelivery"] = "yes"
    with pytest.raises(BadRecord, match='doubleDelivery: must be true or false, got "yes"'):
        parse(orjson.dumps(late))
