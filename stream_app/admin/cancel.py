"""Publish a cancel and say what it did: a cancel of an unknown or ended message changes nothing,
produces nothing, and so used to look exactly like a cancel that worked (issue 13).

What a cancel did can only be seen on ``outcomes``: a CANCELLED outcome for the message, another
outcome (it ended first), or nothing (unknown, or the processor is stopped or behind). So the watch
starts before the cancel is published, and an outcome from before the cancel is looked up too, on
the one partition the messageId is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from stream_app.admin.follow import Raw, _decode, read_topic
from stream_app.admin.publish import Published, publish_requests
from stream_app.config import Settings
from stream_app.contracts import CancelRequest, Outcome, Result


@dataclass(frozen=True, slots=True)
class CancelReport:
    """Where the cancel landed, whether it cancelled the message, and one line saying what happened."""

    published: Published
    cancelled: bool
    text: str


async def cancel_and_watch(
    settings: Settings, cancel: CancelRequest, wait: float, *, traceparent: str | None = None
) -> CancelReport:
    """Publish ``cancel`` and watch ``outcomes`` for up to ``wait`` seconds for what it did."""
    mid = cancel.message_id
    key = mid.encode()
    stop = asyncio.Event()
    ready = asyncio.Event()
    topic = settings.topics.outcomes
    # The cancel goes to send-requests: a missing one is named with a missing outcomes, in one error.
    needs = [settings.topics.send_requests]
    follow = read_topic(
        settings, topic, follow=True, stop=stop, on_ready=ready.set, key=key, also_needs=needs
    )
    watch = asyncio.create_task(_first_outcome(follow))
    try:
        started = asyncio.create_task(ready.wait())
        await asyncio.wait({watch, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if watch.done():  # it failed before it was ready (no topic, no broker): say that
            watch.result()
        earlier = await _first_outcome(read_topic(settings, topic, key=key))
        [published] = await publish_requests(settings, [cancel], traceparent=traceparent)
        if earlier is not None:
            when = earlier.completed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            return CancelReport(
                published,
                False,
                f"{mid} had already ended {_ended(earlier)} at {when}: a cancel changes nothing for an "
                "ended message",
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(watch), wait)
        stop.set()
        outcome = await watch
    finally:
        stop.set()
        if not watch.done():
            watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    if outcome is None:
        return CancelReport(
            published,
            False,
            f"no outcome for {mid} within {wait:g} s: no message {mid} is running (a cancel for an unknown "
            "messageId changes nothing), or the processor is stopped or behind; look again with "
            f"`stream-app outcomes --message-id {mid}`",
        )
    if outcome.result is Result.CANCELLED:
        reason = f" ({outcome.reason})" if outcome.reason else ""
        return CancelReport(published, True, f"cancelled {mid}: its outcome is CANCELLED{reason}")
    text = f"{mid} ended {_ended(outcome)} before the cancel was read: the cancel changed nothing"
    return CancelReport(published, False, text)


def _ended(outcome: Outcome) -> str:
    if outcome.channel is None or outcome.status is None:
        return outcome.result.value
    return f"{outcome.result.value} on {outcome.channel.value} {outcome.status.value}"


async def _first_outcome(records: AsyncGenerator[Raw, None]) -> Outcome | None:
    """The first Outcome (not a LateStatus, not an undecodable record) of ``records``, or None."""
    try:
        async for raw in records:
            record = _decode(raw.partition, raw.offset, raw.key, raw.value).record
            if isinstance(record, Outcome):
                return record
        return None
    finally:
        await records.aclose()
