"""The changelog record's input header, and the rule a restore skips records by."""

from __future__ import annotations

from stream_app.store import INPUT_HEADER, input_header, input_offsets, uncommitted


def test_the_header_names_the_input_offsets() -> None:
    assert input_offsets([("other", b"1"), input_header(4, -1)]) == (4, -1)
    assert input_offsets([]) is None


def test_an_unreadable_header_reads_as_none_and_is_not_skipped() -> None:
    for value in (b"", b"4", b"a,b", b"4;5"):
        assert input_offsets([(INPUT_HEADER, value)]) is None, value
        assert not uncommitted([(INPUT_HEADER, value)], 0, 0)


def test_a_header_without_a_value_reads_as_none_regression() -> None:
    # Kafka allows a header without a value (aiokafka gives None): the compiled build raised a
    # TypeError in the restore, the pure one an AttributeError. It is unreadable, like any other.
    assert input_offsets([(INPUT_HEADER, None)]) is None
    assert not uncommitted([("other", None), (INPUT_HEADER, None)], 0, 0)


def test_a_change_from_an_uncommitted_input_is_skipped() -> None:
    assert uncommitted([input_header(4, -1)], 4, 0)  # the request at offset 4 is not committed
    assert not uncommitted([input_header(4, -1)], 5, 0)
    assert uncommitted([input_header(-1, 7)], 0, 7)
