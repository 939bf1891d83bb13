"""The invoice memo tag (terminal.core.memo): always fits Flash's limit and always parses back."""

from __future__ import annotations

import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.memo import MAX_MEMO_BYTES, _without_controls, parse_memo_tag, sale_memo

terminal_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
sale_ids = st.uuids().map(lambda u: u.hex)


# The memo never exceeds Flash's byte limit, has no control characters, and names its sale.
@given(st.text(), terminal_ids, sale_ids)
def test_memo_fits_and_parses_back(text: str, terminal_id: str, sale_id: str) -> None:
    memo = sale_memo(text, terminal_id=terminal_id, sale_id=sale_id)
    assert len(memo.encode()) <= MAX_MEMO_BYTES
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in memo)
    tag = parse_memo_tag(memo)
    assert tag is not None and (tag.terminal_id, tag.sale_id) == (terminal_id, sale_id)


def test_foreign_memos_carry_no_tag() -> None:
    assert parse_memo_tag(None) is None
    assert parse_memo_tag("Coffee") is None
    assert parse_memo_tag("[ft x notahexid]") is None


def test_a_tag_that_cannot_be_written_is_refused() -> None:
    with pytest.raises(ValueError):
        sale_memo("x", terminal_id="has space", sale_id=uuid.uuid4().hex)


# Property: the memo's control-character filter (a C check first, the per-character category
# lookup only when something is not printable) keeps exactly the non-C* characters.
@given(st.text(max_size=80))
def test_control_characters_are_dropped_and_nothing_else(text: str) -> None:
    expected = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    assert _without_controls(text) == expected


def test_printable_text_is_kept_as_it_is() -> None:
    assert _without_controls("Café au lait\u00a0x 2") == "Café au lait\u00a0x 2"
    assert _without_controls("a\x00b\u200bc\u2028d") == "abc\u2028d"
