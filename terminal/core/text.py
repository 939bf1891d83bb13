"""Text from outside the terminal (a server's message, an issuer's reason, a hotlist's entry) made
fit for a screen, a log line or stdout: the one cleaner, each caller choosing its length."""

from __future__ import annotations

import unicodedata


def clean_text(value: object, limit: int) -> str:
    """Printable, one line: control, format and separator characters (newlines, bidi overrides,
    NUL) become single spaces, at most `limit` characters ("…" marks a cut). Anything that is
    not a string becomes ""."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch if unicodedata.category(ch)[0] not in "CZ" else " " for ch in value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
