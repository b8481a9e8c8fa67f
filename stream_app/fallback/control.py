"""The channel-control view: which channels are closed, for whom, until when (CONTRACT.md v1.1).

A plain, immutable value: the runtime keeps the current one (built from the whole compacted
``channel-control`` topic with :meth:`ControlView.apply`), and hands it to :func:`decide` with every
input, so the decision is a function of (state, input, control view, now) and a replay that feeds
the same control records in the same order builds the same view and decides the same.

Only CLOSED entries are kept: an OPEN record or a tombstone removes the key's entry. A channel is
closed for a message when it is closed for the message's tenant or for all (``tenant`` null), and
``until`` (if any) has not passed: ``until`` reopens it by itself, with no record and no timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from stream_app.contracts import Channel, ChannelControl, ChannelState, InFlight, control_key, to_ms


@dataclass(frozen=True, slots=True)
class Closure:
    """One CLOSED entry of the view."""

    channel: Channel
    tenant: str | None
    until_ms: int | None
    in_flight: InFlight
    reason: str | None = None
    at_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or now_ms < self.until_ms


@dataclass(frozen=True, slots=True)
class ControlView:
    """Key (``CHANNEL`` or ``tenant/CHANNEL``) -> its CLOSED entry."""

    closures: Mapping[str, Closure] = field(default_factory=lambda: MappingProxyType({}))

    def closed(self, channel: Channel, tenant: str | None, now_ms: int) -> bool:
        """Whether a step on ``channel`` of a message of ``tenant`` must be skipped at ``now_ms``."""
        if not self.closures:
            return False  # the usual case, on the hot path of every issued step
        return self.closing(channel, tenant, now_ms) is not None

    def closing(self, channel: Channel, tenant: str | None, now_ms: int) -> tuple[str, Closure] | None:
        """The entry (its key and closure) that closes ``channel`` for ``tenant`` at ``now_ms``, if any.

        The closure for all is named first, as :meth:`closed` looks at it first; ``explain`` names
        the record that skipped a step with it.
        """
        everyone = self.closures.get(channel)
        if everyone is not None and everyone.active(now_ms):
            return str(channel), everyone
        if tenant is None:
            return None
        key = control_key(channel, tenant)
        own = self.closures.get(key)
        return (key, own) if own is not None and own.active(now_ms) else None

    def cutting(self, channel: Channel, tenant: str | None, now_ms: int) -> tuple[str, Closure] | None:
        """The entry that ends an open attempt on ``channel`` of a message of ``tenant`` at ``now_ms``,
        if any: a closure in force for it (for all, or for its tenant) saying ``inFlight: FALLBACK``."""
        if not self.closures:
            return None
        keys = [str(channel)] if tenant is None else [str(channel), control_key(channel, tenant)]
        for key in keys:
            closure = self.closures.get(key)
            if closure is not None and closure.in_flight is InFlight.FALLBACK and closure.active(now_ms):
                return key, closure
        return None

    def apply(self, key: str, record: ChannelControl | None) -> ControlView:
        """The view after the record ``record`` (``None``: a tombstone) under ``key``."""
        entries = dict(self.closures)
        if record is None or record.state is ChannelState.OPEN:
            entries.pop(key, None)
        else:
            entries[key] = Closure(
                channel=record.channel,
                tenant=record.tenant,
                until_ms=None if record.until is None else to_ms(record.until),
                in_flight=record.in_flight,
                reason=record.reason,
                at_ms=None if record.at is None else to_ms(record.at),
            )
        return ControlView(MappingProxyType(entries))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ControlView) and dict(self.closures) == dict(other.closures)

    def __hash__(self) -> int:
        return hash(frozenset(self.closures.items()))


#: The view with nothing closed: what :func:`decide` uses when given none.
NO_CONTROLS = ControlView()
