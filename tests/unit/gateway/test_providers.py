"""The provider-id index: pairs learnt from delivery-status, held callbacks, all surviving a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.contracts import Channel, DeliveryStatus, Status
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.providers import Attempt, ProviderIndex


def _status(
    mid: str, attempt: int | None, pid: str | None, status: Status = Status.ACCEPTED
) -> DeliveryStatus:
    return DeliveryStatus(
        message_id=mid, attempt=attempt, channel=Channel.WHATSAPP, status=status, provider_message_id=pid
    )


def test_pairs_and_positions_survive_a_reopen(tmp_path: Path) -> None:
    index = ProviderIndex.open(tmp_path)
    learnt = index.learn(
        [
            (_status("m1", 0, "gw-1"), 1_000),
            (_status("m2", None, "gw-2"), 1_000),  # no attempt: nothing to place a callback on
            (_status("m3", 1, None), 1_000),  # no provider id
            (_status("m4", 2, "gw-4", Status.DELIVERED), 2_000),  # a DELIVERY callback's status counts
        ],
        {0: 17, 2: 5},
    )
    assert learnt == 2
    index.close()
    index = ProviderIndex.open(tmp_path)
    assert index.lookup("gw-1") == Attempt("m1", 0, Channel.WHATSAPP)
    assert index.lookup("gw-4") == Attempt("m4", 2, Channel.WHATSAPP)
    assert index.lookup("gw-2") is None
    assert index.positions() == {0: 17, 2: 5}
    assert index.prune(1_500) == 1 and index.lookup("gw-1") is None and index.lookup("gw-4") is not None
    index.close()


def test_held_callbacks_survive_a_reopen_and_are_released_one_by_one(tmp_path: Path) -> None:
    index = ProviderIndex.open(tmp_path)
    index.hold("gw-9", b'{"eventType": "READ"}', 10)
    index.hold("gw-9", b'{"eventType": "READ", "again": 1}', 20)
    index.hold("gw-8", b"{}", 30)
    index.close()
    index = ProviderIndex.open(tmp_path)
    assert index.held_count == 3
    held = index.held()
    assert [(h.provider_id, h.at_ms) for h in held] == [("gw-8", 30), ("gw-9", 10), ("gw-9", 20)]
    index.release(held[1])
    index.hold("gw-7", b"{}", 40)  # sequence numbers go on after a reopen: nothing overwritten
    assert index.held_count == 3
    assert sorted(h.body for h in index.held()) == sorted(
        [b"{}", b'{"eventType": "READ", "again": 1}', b"{}"]
    )
    index.close()


def test_a_second_opener_gets_a_clear_error(tmp_path: Path) -> None:
    index = ProviderIndex.open(tmp_path)
    try:
        with pytest.raises(GatewayConfigError, match="another webhook receiver"):
            ProviderIndex.open(tmp_path)
    finally:
        index.close()
