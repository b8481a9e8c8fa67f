"""The demo's outage act: WhatsApp goes down mid-run, the dispatcher's breaker closes it, the chain
skips it, and it comes back (issue 12; CONTRACT.md v1.1, "Channel control").

It plays after the seed scenarios, against the same services:

1. The simulator takes WhatsApp down (every WhatsApp call answers 503) and two promotions are
   published. Their WhatsApp sends fail and are retried; the breaker counts the failures and publishes
   ``CLOSED`` on ``channel-control``. Those two were already issued on WhatsApp (``inFlight: WAIT``),
   so they wait out their own ``fallbackAfter`` and go by SMS.
2. A message published while the channel is closed skips WhatsApp at once (``SKIPPED``) and goes by
   SMS without waiting.
3. Once the first two have given up their WhatsApp retries (their ``notAfter``, so a late retry can
   never deliver a second copy), WhatsApp recovers; the breaker's probe after ``until`` succeeds and
   it publishes ``OPEN``. A last message goes by WhatsApp again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_app.admin.follow import read_topic
from stream_app.config import Settings
from stream_app.contracts import (
    Channel,
    ChannelControl,
    InvalidRecord,
    decode_control,
    decode_status,
)
from stream_app.demo.errors import DemoFailed
from stream_app.demo.scenarios import Scenario, _timeline
from stream_app.gateway.dispatcher import NOT_SENT_BEFORE_NOT_AFTER
from stream_app.gateway.settings import BreakerConfig

#: The demo's breaker: small numbers, so an outage of a few messages trips it in a second or two.
#: 4 calls (two messages' first retries), a 30 s window (the act's first part), closed 15 s before
#: the first probe: room for the "while closed" message to be skipped before the channel reopens by
#: itself at ``until``, and for the caught messages to reach their notAfter (about 10 s after they
#: were sent) so WhatsApp recovers before the probe; if it is later, the probe fails and closes it
#: 30 s more, and the act just takes longer.
DEMO_BREAKER = BreakerConfig(
    failure_ratio=0.5, window_seconds=30, min_calls=4, open_seconds=15, max_open_seconds=30
)
#: How long the act waits for each of its steps (the breaker's trip, its reopening, an outcome).
STEP_TIMEOUT = 60.0
#: Between seeing CLOSED on the topic and publishing the next message: the processor reads
#: ``channel-control`` on its own consumer, and a request that overtook the record would not be
#: skipped. A second is far more than that read takes on one machine.
CONTROL_SETTLE_S = 1.0

_WA = {"phoneNumberId": 5, "template": {"id": 77}}
_DELIVERED = _timeline(("SENT", 0.2), ("DELIVERED", 0.8))


def _promo(key: str, name: str, story: str, expect_channel: str, ended: tuple[str, ...]) -> Scenario:
    return Scenario(
        key=key,
        name=name,
        story=story,
        channels=[
            {"channel": "WHATSAPP", "fallbackAfter": 7200, "successStatus": "DELIVERED", "content": _WA},
            {
                "channel": "SMS",
                "content": {"sender": "ModaViva", "text": "Flash sale: -40% fino a mezzanotte"},
            },
        ],
        rules=[
            {"destinationSuffix": key, "channel": "WHATSAPP", "statuses": _DELIVERED},
            {"destinationSuffix": key, "channel": "SMS", "statuses": _DELIVERED},
        ],
        expect_result="SUCCEEDED",
        expect_channel=expect_channel,
        expect_ended=ended,
    )


#: Published right after WhatsApp goes down: their failing sends trip the breaker.
CAUGHT = (
    _promo(
        "21",
        "ModaViva flash sale (1)",
        "WhatsApp down when it was sent: retried, then SMS after its 2 h (scaled) wait",
        "SMS",
        ("TIMEOUT", "SUCCEEDED"),
    ),
    _promo(
        "22",
        "ModaViva flash sale (2)",
        "the same: the two together trip the dispatcher's circuit breaker",
        "SMS",
        ("TIMEOUT", "SUCCEEDED"),
    ),
)
#: Published once channel-control says WHATSAPP CLOSED.
SKIPPING = _promo(
    "23",
    "ModaViva flash sale (3)",
    "sent while WhatsApp is CLOSED: WhatsApp SKIPPED, SMS at once",
    "SMS",
    ("SKIPPED", "SUCCEEDED"),
)
#: Published once channel-control says WHATSAPP OPEN again.
RECOVERED = _promo(
    "24",
    "ModaViva flash sale (4)",
    "after the breaker's probe reopened WhatsApp: delivered on WhatsApp",
    "WHATSAPP",
    ("SUCCEEDED",),
)
OUTAGE_SCENARIOS: tuple[Scenario, ...] = (*CAUGHT, SKIPPING, RECOVERED)


@dataclass
class ControlLog:
    """Every ChannelControl record seen on the topic, in order, as the act waits on them."""

    records: list[ChannelControl] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def last(self, channel: Channel) -> ChannelControl | None:
        return next((r for r in reversed(self.records) if r.channel is channel and r.tenant is None), None)

    async def wait_for(self, channel: Channel, state: str, what: str) -> ChannelControl:
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            last = self.last(channel)
            if last is not None and last.state.value == state:
                return last
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoFailed(
                    f"{what}: channel-control did not say {channel.value} {state} within {STEP_TIMEOUT:g} s"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))


async def watch_control(
    settings: Settings, log: ControlLog, stop: asyncio.Event, say: Callable[[str], None], started: float
) -> None:
    """Follow ``channel-control`` from the start, printing each record as it lands."""
    async for raw in read_topic(
        settings, settings.topics.channel_control, follow=True, from_beginning=True, stop=stop
    ):
        if raw.value is None:
            continue
        try:
            record = decode_control(raw.value, raw.key)
        except InvalidRecord:
            continue
        log.records.append(record)
        log.changed.set()
        until = f" until {record.until:%H:%M:%SZ}" if record.until else ""
        say(
            f"  [{time.monotonic() - started:5.1f}s] channel-control: {record.channel.value} "
            f"{record.state.value}{until} ({record.reason or 'no reason'})"
        )


async def wait_gave_up(settings: Settings, message_ids: set[str], stop: asyncio.Event) -> None:
    """Until the dispatcher has given up the WhatsApp sends of ``message_ids`` at their notAfter
    (REJECTED NOT_SENT_BEFORE_NOT_AFTER on delivery-status): none of them can be sent any more."""
    waiting = set(message_ids)
    async for raw in read_topic(
        settings, settings.topics.delivery_status, follow=True, from_beginning=True, stop=stop
    ):
        try:
            status = decode_status(raw.value or b"")
        except InvalidRecord:
            continue
        if status.message_id in waiting and NOT_SENT_BEFORE_NOT_AFTER in status.reasons:
            waiting.discard(status.message_id)
            if not waiting:
                return


#: A caught message's ttl past its scaled WhatsApp wait: room for its SMS (about 1 s) and no more,
#: so its WhatsApp retries stop at its notAfter soon after; the act waits for that before WhatsApp
#: recovers, so a late retry can never deliver a second copy.
TTL_MARGIN_S = 4.0


def outage_request(scenario: Scenario, message_id: str, speed: float) -> dict[str, Any]:
    """The scenario's request at ``speed``, with a ttl just past its WhatsApp wait."""
    body = scenario.request(message_id, speed)
    body["ttl"] = body["channels"][0]["fallbackAfter"] + TTL_MARGIN_S
    return body


def simulator_rules() -> list[dict[str, Any]]:
    return [r for s in OUTAGE_SCENARIOS for r in s.rules]
