"""The seed pages' real-world scenarios (``../shared/seeds/``), as requests plus gateway behaviour.

Each scenario is one SendRequest with the timeouts the seed pages suggest (2 h for a promotion, 30
minutes for a payment notice...) and the simulator rule that makes the gateway behave as the page
tells. The demo divides every ``fallbackAfter`` by its ``speed`` so hours play in seconds; the
gateway's own status timelines are already in seconds and are played as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Every scenario's destination ends in its own two digits, which key its simulator rules.
_DEST = "+3934012345"
#: The gateway simulator plays its status timelines in real seconds (about 1 s to DELIVERED), so a
#: message's whole lifetime must not scale below them: 10 s leaves room for three attempts on a busy
#: machine while a 1 h ttl at the default speed (3 s) would expire a chain that is still working.
MIN_TTL_SECONDS = 10.0
#: Likewise a step's scaled fallbackAfter: a refusal travels dispatcher -> gateway -> delivery-status
#: -> processor in a few hundred ms, so RCS's 300 s at speed 1200 (0.25 s) timed out before its
#: AGENT_NOT_REACHABLE landed. 2 s keeps every story as the seed page tells it on a loaded machine.
MIN_FALLBACK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str  # two digits: the destination suffix the simulator rules match on
    name: str
    story: str
    channels: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    expect_result: str
    expect_channel: str | None
    ttl: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Each attempt's ``endedBy``, in order, when the story is about how the chain moved (the
    #: outage act: ``SKIPPED``); None: only the result and channel are checked.
    expect_ended: tuple[str, ...] | None = None

    @property
    def destination(self) -> str:
        return _DEST + self.key

    def request(self, message_id: str, speed: float) -> dict[str, Any]:
        """The SendRequest JSON of this scenario, its timeouts divided by ``speed``."""
        chain = []
        for step in self.channels:
            s = dict(step)
            if "fallbackAfter" in s:
                s["fallbackAfter"] = max(s["fallbackAfter"] / speed, MIN_FALLBACK_SECONDS)
            chain.append(s)
        body: dict[str, Any] = {
            "type": "send",
            "messageId": message_id,
            "tenant": self.name.split(" ")[0].lower(),
            "destination": self.destination,
            "channels": chain,
            "campaignId": f"demo-{self.key}",
            "metadata": {"scenario": self.name},
        }
        if self.ttl is not None:
            body["ttl"] = max(self.ttl / speed, MIN_TTL_SECONDS)
        body.update(self.extra)
        return body


def _timeline(*pairs: tuple[str, float], **extra: Any) -> list[dict[str, Any]]:
    return [{"status": s, "after": a, **extra} for s, a in pairs]


_WA = {"phoneNumberId": 5, "template": {"id": 42}}
_DELIVERED = _timeline(("SENT", 0.2), ("DELIVERED", 0.8))

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="11",
        name="FashionOutlet winter promo",
        story="WhatsApp never delivered (no WhatsApp on the phone): SMS after 2 h",
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 7200, "successStatus": "DELIVERED", "content": _WA},
            {
                "channel": "SMS",
                "content": {"sender": "FashionOut", "text": "Saldi invernali: -30% fino al 15 aprile"},
            },
        ],
        rules=[
            {"destinationSuffix": "11", "channel": "WHATSAPP", "statuses": _timeline(("SENT", 0.2))},
            {"destinationSuffix": "11", "channel": "SMS", "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel="SMS",
    ),
    Scenario(
        key="12",
        name="ClinicaSalute reminder",
        story="appointment reminder stuck in SENT for over 2 h: backup SMS",
        channels=[
            {"channel": "WhatsApp", "fallbackAfter": 7200, "successStatus": "Delivered", "content": _WA},
            {
                "channel": "sms",
                "content": {"sender": "Clinica", "text": "Promemoria: visita domani alle 9:30"},
            },
        ],
        rules=[
            {"destinationSuffix": "12", "channel": "WHATSAPP", "statuses": _timeline(("SENT", 0.3))},
            {"destinationSuffix": "12", "channel": "SMS", "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel="SMS",
    ),
    Scenario(
        key="13",
        name="BancaSicura payment notice",
        story="WhatsApp fails with ERROR (statusCode 6): SMS at once, well within 30 min",
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 1800, "content": _WA},
            {
                "channel": "SMS",
                "content": {"sender": "BancaSicura", "text": "Avviso: rata in scadenza il 15/04"},
            },
        ],
        rules=[
            {
                "destinationSuffix": "13",
                "channel": "WHATSAPP",
                "statuses": [
                    {"status": "SENT", "after": 0.2},
                    {"status": "ERROR", "after": 0.8, "statusCode": 6},
                ],
            },
            {"destinationSuffix": "13", "channel": "SMS", "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel="SMS",
    ),
    Scenario(
        key="14",
        name="Banca Adriatica transaction",
        story="WhatsApp refused, RCS AGENT_NOT_REACHABLE, SMS DELIVERED in 2 parts",
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 600, "successStatus": "DELIVERED", "content": _WA},
            {"channel": "RCS", "fallbackAfter": 300, "content": {"agentId": 1, "templateId": 10}},
            {
                "channel": "SMS",
                "content": {
                    "sender": "BancaAdri",
                    "text": "Gentile Giulia, e stata registrata una transazione di EUR 1.250,00 in data "
                    "09/04/2026. Se non riconosci questa operazione, chiama il numero verde 800.123.456.",
                },
            },
        ],
        rules=[
            {"destinationSuffix": "14", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
            {"destinationSuffix": "14", "channel": "RCS", "reject": ["AGENT_NOT_REACHABLE"]},
            {"destinationSuffix": "14", "channel": "SMS", "parts": 2, "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel="SMS",
        ttl=3600,
    ),
    Scenario(
        key="15",
        name="TelcoMobile billing reminder",
        story="WhatsApp EXPIRED on the channel (statusCode 8): straight to SMS",
        channels=[
            {
                "channel": "WHATSAPP",
                "fallbackAfter": 3600,
                "content": {"phoneNumberId": 5, "template": {"id": 55}},
            },
            {
                "channel": "SMS",
                "content": {"sender": "TelcoMob", "text": "La sua fattura di EUR 89,90 scade il 15/04"},
            },
        ],
        rules=[
            {
                "destinationSuffix": "15",
                "channel": "WHATSAPP",
                "statuses": [
                    {"status": "SENT", "after": 0.2},
                    {"status": "EXPIRED", "after": 1.0, "statusCode": 8},
                ],
            },
            {"destinationSuffix": "15", "channel": "SMS", "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel="SMS",
    ),
    Scenario(
        key="16",
        name="FarmaExpress order ready",
        story="WhatsApp delivered and read: no fallback needed",
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 3600, "successStatus": "DELIVERED", "content": _WA},
            {"channel": "SMS", "content": {"sender": "FarmaExp", "text": "Ordine pronto al ritiro"}},
        ],
        rules=[
            {
                "destinationSuffix": "16",
                "channel": "WHATSAPP",
                "statuses": _timeline(("SENT", 0.2), ("DELIVERED", 0.8), ("READ", 1.5)),
            },
        ],
        expect_result="SUCCEEDED",
        expect_channel="WHATSAPP",
    ),
    Scenario(
        key="17",
        name="All channels fail",
        story="WhatsApp refused, RCS AGENT_NOT_REACHABLE, SMS INVALID_DESTINATION: ends FAILED",
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 600, "content": _WA},
            {"channel": "RCS", "fallbackAfter": 300, "content": {"agentId": 1, "templateId": 10}},
            {"channel": "SMS", "content": {"sender": "Notify", "text": "Avviso importante"}},
        ],
        rules=[
            {"destinationSuffix": "17", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
            {"destinationSuffix": "17", "channel": "RCS", "reject": ["AGENT_NOT_REACHABLE"]},
            {"destinationSuffix": "17", "channel": "SMS", "reject": ["INVALID_DESTINATION"]},
        ],
        expect_result="FAILED",
        expect_channel=None,
    ),
)


def simulator_rules() -> dict[str, Any]:
    """The simulator rules of every scenario, with a catch-all delivered timeline last."""
    rules: list[dict[str, Any]] = [r for s in SCENARIOS for r in s.rules]
    rules.append({"destinationSuffix": "", "statuses": _DELIVERED})
    return {"rules": rules}
