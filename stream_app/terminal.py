"""Text from outside, made safe to print on an operator's terminal.

Reasons come from the gateway and messageIds, tenants and campaign ids from upstream producers: any
of them can hold control characters. Printed as they are, an escape sequence (``ESC [ 2 J``) clears
or recolours the screen or rewrites what a line says, and a newline inside a messageId forges a
line of its own. The text renderings of ``outcomes``, ``dead-letters``, ``channel list``, ``report``
and ``explain`` pass their output through :func:`printable`; JSON escapes such characters itself,
and CSV and HTML keep the data as it is (a spreadsheet and a browser do not run terminal escapes).
"""

from __future__ import annotations

import unicodedata


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x1b``).

    ``lines=True`` keeps ``\\n``: the renderer's own line breaks, for a text that is many lines
    (outside values in it are one line already). Tabs are escaped too: they are never the
    renderers' own, which align with spaces.
    """
    if text.isprintable():  # the common case, at C speed
        return text
    out = []
    for ch in text:
        if ch == "\n" and lines:
            out.append(ch)
        elif unicodedata.category(ch) == "Cc":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
