"""The changelog value layout: round trips and a one-line refusal for each kind of bad input."""

from __future__ import annotations

import pytest

from stream_app.store import InvalidChangelogRecord, InvalidDeadline, changelog_value, parse_changelog_value
from stream_app.store.codec import MAX_DEADLINE_MS, decode_meta, encode_meta, index_key, split_index_key


@pytest.mark.parametrize("deadline", [None, 0, 1, 1_700_000_000_123, MAX_DEADLINE_MS])
@pytest.mark.parametrize("value", [b"", b"x", bytes(range(256))])
def test_round_trip(value: bytes, deadline: int | None) -> None:
    assert parse_changelog_value(changelog_value(value, deadline)) == (value, deadline)


def test_layout_is_versioned_and_compact() -> None:
    assert changelog_value(b"v", None) == b"\x10v"
    assert changelog_value(b"v", 1) == b"\x11" + (1).to_bytes(8, "big") + b"v"


@pytest.mark.parametrize("deadline", [-1, MAX_DEADLINE_MS + 1])
def test_deadline_out_of_range_is_refused(deadline: int) -> None:
    with pytest.raises(InvalidDeadline, match="outside"):
        changelog_value(b"v", deadline)


def test_non_int_deadline_is_refused() -> None:
    with pytest.raises(InvalidDeadline, match="must be an int"):
        changelog_value(b"v", 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"", "empty value"),
        (b"\x11\x00\x00", "too short"),
        (b"\x20abc", "unknown layout byte 0x20"),
        (b'{"json": 1}', "unknown layout byte 0x7b"),
        (b"\x11" + (2**64 - 1).to_bytes(8, "big"), "outside"),
    ],
)
def test_bad_record_gives_one_line_reason(record: bytes, reason: str) -> None:
    with pytest.raises(InvalidChangelogRecord, match=reason) as info:
        parse_changelog_value(record)
    assert "\n" not in str(info.value)


def test_index_key_orders_by_deadline_then_key() -> None:
    keys = [index_key(d, k) for d, k in [(2, b"a"), (1, b"zz"), (1, b"a"), (256, b""), (255, b"\xff")]]
    expected = [(1, b"a"), (1, b"zz"), (2, b"a"), (255, b"\xff"), (256, b"")]
    assert [split_index_key(k) for k in sorted(keys)] == expected


def test_meta_round_trip_and_refusal() -> None:
    assert decode_meta(encode_meta(None, 0)) == (None, 0)
    assert decode_meta(encode_meta(123, 45)) == (123, 45)
    with pytest.raises(InvalidChangelogRecord, match="unreadable store meta"):
        decode_meta(b"\x02" + bytes(16))
