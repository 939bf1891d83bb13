"""Text from outside the terminal (a server's message, an issuer's reason, a hotlist's entry) made
fit for a screen, a log line or stdout: the one cleaner, each caller choosing its length."""

from __future__ import annotations

import re
import unicodedata

# Terminal escape sequences (CSI, OSC, two-byte ESC, 8-bit CSI): removed whole, not just their ESC,
# so "\x1b[31mred" reads "red", not "[31mred".
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]"
                      r"|\x9b[0-?]*[ -/]*[@-~]")


def clean_text(value: object, limit: int) -> str:
    """Printable, one line: escape sequences removed; control, format and separator characters
    (newlines, bidi overrides, NUL) become single spaces; at most `limit` characters ("…" marks
    a cut). Anything that is not a string becomes ""."""
    if not isinstance(value, str):
        return ""
    text = _ANSI_RE.sub(" ", value[: limit * 4])  # bound the work before cleaning
    text = "".join(ch if unicodedata.category(ch)[0] not in "CZ" else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
