"""The invoice memo: what the payer's wallet shows, and a tag that finds the sale again.

Flash keeps no metadata on an invoice but its memo, so the memo carries a tag naming the terminal
and the sale: `recover` and the purged-invoice cross-check find a payment by it in the wallet's
transactions. Flash refuses memos over 639 UTF-8 bytes ("Memo is too long"); the tag is kept whole
and the merchant's text is shortened instead.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_MEMO_BYTES = 639  # Flash: "Memo is too long" above this (UTF-8 bytes)
TERMINAL_ID_RE = r"[A-Za-z0-9._-]{1,64}"
SALE_ID_RE = r"[0-9a-f]{32}"
_TAG_RE = re.compile(rf"\[ft (?P<terminal>{TERMINAL_ID_RE}) (?P<sale>{SALE_ID_RE})\]\s*$")


@dataclass(frozen=True)
class MemoTag:
    terminal_id: str
    sale_id: str


def tag_text(terminal_id: str, sale_id: str) -> str:
    tag = f"[ft {terminal_id} {sale_id}]"
    if not _TAG_RE.fullmatch(tag):
        raise ValueError("terminal id or sale id cannot be written into a memo tag")
    return tag


def sale_memo(text: str, *, terminal_id: str, sale_id: str,
              max_bytes: int = MAX_MEMO_BYTES) -> str:
    """`text` (cleaned of control characters, shortened to fit) followed by the terminal's tag."""
    tag = tag_text(terminal_id, sale_id)
    clean = " ".join(_without_controls(text).split())
    room = max_bytes - len(tag.encode()) - 1
    encoded = clean.encode()
    if len(encoded) > room:
        clean = encoded[: max(0, room - 3)].decode("utf-8", "ignore").rstrip() + "..."
    return f"{clean} {tag}" if clean else tag


def _without_controls(text: str) -> str:
    """`text` without its characters of Unicode category C* (control, format, unassigned...).
    A printable text has none (`str.isprintable` is False only for C*, and Z* but the space):
    checked in C, the per-character lookup only for the rest."""
    if text.isprintable():
        return text
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def parse_memo_tag(memo: str | None) -> MemoTag | None:
    """The terminal and sale a memo names, or None for a memo this terminal did not write."""
    if not memo:
        return None
    match = _TAG_RE.search(memo)
    if match is None:
        return None
    return MemoTag(match.group("terminal"), match.group("sale"))
