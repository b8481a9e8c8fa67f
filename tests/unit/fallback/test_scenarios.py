"""The real-world scenarios of the seed pages, replayed through ``decide()`` with a test-driven clock."""

from __future__ import annotations

from stream_app.contracts import AttemptEnd, Channel, CommandReason, Result, Status, format_ms, to_ms
from tests.unit.fallback.driver import HOUR, MINUTE, SECOND, T0, Driver, commands_of, request, status


def test_fashion_outlet_promo_not_delivered_on_whatsapp_goes_to_sms_after_two_hours() -> None:
    # UC-027: the winter-sales promo is accepted and SENT on WhatsApp but never DELIVERED (user without
    # WhatsApp); promotional messages wait 2 hours before the SMS.
    d = Driver()
    d.send(
        request(
            "fo-saldi-001",
            tenant="fashion-outlet",
            campaignId="saldi-inverno-2026",
            channels=[
                {
                    "channel": "WHATSAPP",
                    "fallbackAfter": 7200,
                    "content": {"templateName": "promo_saldi_inverno"},
                },
                {"channel": "SMS", "content": {"sender": "FashionOut", "body": "Ciao Marco! Saldi -30%"}},
            ],
        )
    )
    assert [c.channel for c in d.commands] == [Channel.WHATSAPP]
    d.advance(2 * SECOND)
    d.report(status("WHATSAPP", "ACCEPTED", 0, "fo-saldi-001", providerMessageId="b8f3a21c"))
    d.report(status("WHATSAPP", "SENT", 0, "fo-saldi-001"))
    assert not d.advance(2 * HOUR - 2 * SECOND - 1)  # one millisecond before the 2 h: nothing yet
    effects = d.advance(1)
    (sms,) = commands_of(effects)
    assert (sms.command_id, sms.channel, sms.reason) == ("fo-saldi-001:1", Channel.SMS, CommandReason.TIMEOUT)
    assert sms.previous is not None and sms.previous.status == Status.SENT
    assert sms.content == {"sender": "FashionOut", "body": "Ciao Marco! Saldi -30%"}
    assert format_ms(d.now) == "2026-04-09T10:15:00Z"
    d.advance(5 * SECOND)
    d.report(status("SMS", "DELIVERED", 1, "fo-saldi-001"))
    out = d.outcome
    assert (out.result, out.channel, out.status) == (Result.SUCCEEDED, Channel.SMS, Status.DELIVERED)
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.TIMEOUT, AttemptEnd.SUCCEEDED]
    assert out.attempts[0].provider_message_id == "b8f3a21c"
    assert (out.tenant, out.campaign_id) == ("fashion-outlet", "saldi-inverno-2026")


def test_clinica_salute_reminder_stuck_in_sent_gets_a_backup_sms() -> None:
    # UC-027 is app-managed: the clinic sent the WhatsApp itself (initialAttempt), the processor only
    # watches it and sends the backup SMS when it is still SENT after 2 hours.
    sent_at = T0 - 10 * MINUTE
    d = Driver()
    d.report(status("WHATSAPP", "SENT", 0, "cs-reminder-7", providerMessageId="b8f3a21c"))  # DLR first
    d.advance(SECOND)
    d.send(
        request(
            "cs-reminder-7",
            tenant="clinica-salute",
            initialAttempt={"providerMessageId": "b8f3a21c", "sentAt": format_ms(sent_at)},
            channels=[
                {"channel": "WHATSAPP", "fallbackAfter": 7200, "successStatus": "DELIVERED"},
                {"channel": "SMS", "content": {"sender": "Clinica", "text": "Promemoria visita"}},
            ],
        )
    )
    assert d.commands == []  # upstream already sent step 0
    effects = d.run_until(sent_at + 2 * HOUR)
    (sms,) = commands_of(effects)
    assert (sms.attempt, sms.reason, to_ms(sms.issued_at)) == (1, CommandReason.TIMEOUT, sent_at + 2 * HOUR)
    assert sms.previous is not None and (sms.previous.attempt, sms.previous.status) == (0, Status.SENT)
    d.report(status("SMS", "DELIVERED", message_id="cs-reminder-7"))
    out = d.outcome
    assert (out.result, out.channel) == (Result.SUCCEEDED, Channel.SMS)
    assert to_ms(out.attempts[0].issued_at) == sent_at
    assert out.attempt_count == 2


def test_banca_sicura_payment_notice_failing_on_whatsapp_goes_to_sms_at_once() -> None:
    # Payment notices escalate to SMS within 30 minutes; a definitive ERROR (statusCode 6) moves at once.
    d = Driver()
    d.send(
        request(
            "bs-scadenza-42",
            channels=[
                {"channel": "WHATSAPP", "fallbackAfter": 1800},
                {"channel": "SMS", "content": {"sender": "BancaSic", "text": "Pagamento in scadenza"}},
            ],
        )
    )
    d.advance(40 * SECOND)
    effects = d.report(status("WHATSAPP", "ERROR", 0, "bs-scadenza-42", statusCode=6))
    (sms,) = commands_of(effects)
    assert sms.reason == CommandReason.FAILED and to_ms(sms.issued_at) == T0 + 40 * SECOND
    assert d.now - T0 < 30 * MINUTE
    d.report(status("SMS", "DELIVERED", 1, "bs-scadenza-42"))
    assert d.outcome.result == Result.SUCCEEDED
    assert [a.ended_by for a in d.outcome.attempts] == [AttemptEnd.FAILED, AttemptEnd.SUCCEEDED]


def test_banca_sicura_without_any_report_still_reaches_sms_at_thirty_minutes() -> None:
    d = Driver()
    d.send(request("bs-2", channels=[{"channel": "WHATSAPP", "fallbackAfter": 1800}, {"channel": "SMS"}]))
    effects = d.advance(30 * MINUTE)
    assert [c.channel for c in commands_of(effects)] == [Channel.SMS]


def test_banca_adriatica_whatsapp_rcs_agent_not_reachable_sms_delivered_in_two_parts() -> None:
    # UC-005 / CONTRACT.md's own example request, verbatim.
    d = Driver(now=T0 + SECOND)
    d.send(
        request(
            "txn-notifica-20260409-001",
            tenant="banca-adriatica",
            channels=[
                {
                    "channel": "WHATSAPP",
                    "fallbackAfter": 600,
                    "successStatus": "DELIVERED",
                    "content": {
                        "phoneNumberId": 5,
                        "template": {"id": 42},
                        "placeholders": {"nome": "Giulia"},
                    },
                },
                {"channel": "RCS", "fallbackAfter": 300, "content": {"agentId": 1, "templateId": 10}},
                {"channel": "SMS", "content": {"sender": "BancaAdri", "text": "Gentile Giulia, ..."}},
            ],
            ttl=3600,
            simulation=False,
            campaignId="txn-2026-04",
            metadata={"anything": "copied to the outcome"},
            requestedAt="2026-04-09T10:15:00+02:00",
        )
    )
    mid = "txn-notifica-20260409-001"
    d.report(status("WhatsApp", "REJECTED", 0, mid))
    d.advance(3 * SECOND)
    d.report(
        status(
            "RCS", "ERROR", 1, mid, statusCode=6, reasons=["AGENT_NOT_REACHABLE"], providerMessageId="c9a4"
        )
    )
    d.report(status("SMS", "ACCEPTED", 2, mid, reasons=[]))
    d.report(status("SMS", "DELIVERED", 2, mid, occurredAt="2026-04-09T10:15:04+02:00"))
    rcs = d.commands[1]
    assert rcs.command_id == f"{mid}:1" and rcs.content == {"agentId": 1, "templateId": 10}
    assert rcs.previous is not None and (rcs.previous.channel, rcs.previous.status) == (
        Channel.WHATSAPP,
        Status.REJECTED,
    )
    assert format_ms(to_ms(rcs.issued_at)) == "2026-04-09T08:15:01Z"
    assert rcs.not_after is not None and format_ms(to_ms(rcs.not_after)) == "2026-04-09T09:15:00Z"
    assert [c.reason for c in d.commands] == [
        CommandReason.INITIAL,
        CommandReason.FAILED,
        CommandReason.FAILED,
    ]
    out = d.outcome
    assert (out.result, out.channel, out.status, out.attempt_count) == (
        Result.SUCCEEDED,
        Channel.SMS,
        Status.DELIVERED,
        3,
    )
    assert [(a.channel, a.last_status, a.ended_by) for a in out.attempts] == [
        (Channel.WHATSAPP, Status.REJECTED, AttemptEnd.FAILED),
        (Channel.RCS, Status.ERROR, AttemptEnd.FAILED),
        (Channel.SMS, Status.DELIVERED, AttemptEnd.SUCCEEDED),
    ]
    assert out.metadata == {"anything": "copied to the outcome"}
    assert out.duration_ms == 4 * SECOND


def test_telco_mobile_whatsapp_expired_on_channel_falls_back_to_sms() -> None:
    # Billing reminder WhatsApp -> SMS; the WhatsApp TTL ran out on the channel (EXPIRED, statusCode 8).
    d = Driver()
    d.send(
        request(
            "tm-fattura-15",
            tenant="telco-mobile",
            channels=[
                {"channel": "WHATSAPP", "fallbackAfter": 3600, "content": {"template": {"id": 55}}},
                {"channel": "SMS", "content": {"sender": "TelcoMob", "text": "La sua fattura scade"}},
            ],
        )
    )
    d.report(status("WHATSAPP", "ACCEPTED", 0, "tm-fattura-15"))
    d.advance(20 * MINUTE)
    effects = d.report(status("WHATSAPP", "EXPIRED", 0, "tm-fattura-15", statusCode=8))
    assert [(c.channel, c.reason) for c in commands_of(effects)] == [(Channel.SMS, CommandReason.FAILED)]
    d.report(status("SMS", "DELIVERED", 1, "tm-fattura-15"))
    assert (d.outcome.result, d.outcome.channel) == (Result.SUCCEEDED, Channel.SMS)
    assert d.outcome.attempts[0].last_status == Status.EXPIRED


def test_all_channels_rejected_invalid_destination_ends_failed() -> None:
    d = Driver()
    mid = "txn-notifica-20260409-002"
    d.send(request(mid, channels=[{"channel": "WHATSAPP"}, {"channel": "RCS"}, {"channel": "SMS"}]))
    d.report(status("WHATSAPP", "REJECTED", 0, mid))
    d.report(status("RCS", "REJECTED", 1, mid, reasons=["AGENT_NOT_REACHABLE"]))
    d.report(status("SMS", "REJECTED", 2, mid, reasons=["INVALID_DESTINATION"]))
    assert [c.attempt for c in d.commands] == [0, 1, 2]
    out = d.outcome
    assert (out.result, out.channel, out.status) == (Result.FAILED, None, None)
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.FAILED] * 3
    d.drain()  # the cleanup timer forgets the ended state (no effect: timers are state, not effects)
    assert d.state is None and len(d.commands) == 3


def test_8x8_whatsapp_read_viber_delivered_then_sms() -> None:
    d = Driver()
    d.send(
        request(
            channels=[
                {"channel": "WhatsApp", "fallbackAfter": 60, "successStatus": "Read"},
                {"channel": "Viber", "fallbackAfter": 60, "successStatus": "Delivered"},
                {"channel": "SMS"},
            ],
        )
    )
    d.advance(10 * SECOND)
    d.report(status("WHATSAPP", "DELIVERED", 0))  # delivered but not read: not enough
    assert len(d.commands) == 1
    viber = commands_of(d.advance(50 * SECOND))
    assert [(c.channel, c.reason) for c in viber] == [(Channel.VIBER, CommandReason.TIMEOUT)]
    d.report(status("VIBER", "SENT", 1))
    sms = commands_of(d.advance(60 * SECOND))
    assert [(c.channel, c.reason, c.attempt) for c in sms] == [(Channel.SMS, CommandReason.TIMEOUT, 2)]
    d.report(status("SMS", "DELIVERED", 2))
    assert (d.outcome.result, d.outcome.channel) == (Result.SUCCEEDED, Channel.SMS)


def test_8x8_whatsapp_accepted_is_enough_and_no_sms_is_sent() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "WhatsApp", "successStatus": "Accepted"}, {"channel": "SMS"}]))
    d.report(status("WHATSAPP", "ACCEPTED", 0))
    assert (d.outcome.result, d.outcome.status) == (Result.SUCCEEDED, Status.ACCEPTED)
    d.drain()
    assert [c.channel for c in d.commands] == [Channel.WHATSAPP]


def test_8x8_whatsapp_accepted_falls_back_to_sms_only_on_rejection() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "WhatsApp", "successStatus": "Accepted"}, {"channel": "SMS"}]))
    assert not d.advance(24 * HOUR)  # no fallbackAfter: time alone never moves the chain
    d.report(status("WHATSAPP", "REJECTED", 0))
    assert [c.channel for c in d.commands] == [Channel.WHATSAPP, Channel.SMS]


def test_8x8_single_whatsapp_step() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "WhatsApp"}]))
    d.report(status("WHATSAPP", "SENT"))
    d.report(status("WHATSAPP", "DELIVERED"))
    assert (d.outcome.result, d.outcome.channel, d.outcome.attempt_count) == (
        Result.SUCCEEDED,
        Channel.WHATSAPP,
        1,
    )


def test_8x8_single_whatsapp_step_never_delivered_expires_at_max_flow() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "WhatsApp"}]))
    d.report(status("WHATSAPP", "SENT"))
    d.drain()
    assert d.outcome.result == Result.EXPIRED
    assert to_ms(d.outcome.completed_at) == T0 + 72 * HOUR
    assert d.outcome.attempts[0].ended_by == AttemptEnd.EXPIRED
