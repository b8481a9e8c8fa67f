"""Outside text printed on a terminal: control characters escaped, everything else as it was."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from stream_app.terminal import printable


def test_escapes_and_line_breaks_from_outside_are_written_out() -> None:
    assert printable("red \x1b[31mtext\x07") == "red \\x1b[31mtext\\x07"
    assert printable("forged\nline\ttab\x7f\x9b") == "forged\\x0aline\\x09tab\\x7f\\x9b"


def test_a_renderers_own_line_breaks_stay_when_asked() -> None:
    assert printable("one\ntwo\x1b", lines=True) == "one\ntwo\\x1b"


def test_printable_text_is_untouched_letters_of_any_script_included() -> None:
    text = "Città: 東京 — ok ✓ +39 340"
    assert printable(text) is text


@given(st.text(), st.booleans())
def test_nothing_printed_is_a_control_character_but_a_kept_newline(text: str, lines: bool) -> None:
    out = printable(text, lines=lines)
    assert all(unicodedata.category(ch) != "Cc" or (lines and ch == "\n") for ch in out)
    if text.isprintable():
        assert out == text
