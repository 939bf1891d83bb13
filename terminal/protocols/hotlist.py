"""Hotlist documents and LNbits card lists, as the terminal reads them (pure, no I/O).

The hotlist format (version 1), served by an issuer or the merchant as `application/json`:

    {
      "version": 1,
      "cards": [
        {"card_id": "7d3c…(32 hex)", "reason": "reported lost"},
        {"uid": "04a1b2c3d4e5f6", "reason": "stolen"}
      ]
    }

- `cards` (required, may be empty) lists every card the source blocks *now*: the list is a
  snapshot, so a card missing from a later fetch is no longer blocked by that source;
- each entry names the card by `card_id` (the keyed card id, as `flash-terminal card list` and
  history show it: 32 hex) or by `uid` (the 7-byte UID, 14 hex; the terminal maps it to card ids
  through the configured issuers' keys and keeps only the card ids);
- `reason` (optional) is shown to the cashier, cleaned of control characters and cut to 120
  characters; `version` (optional) must be 1; unknown keys are ignored (room to grow);
- at most `MAX_ENTRIES` entries. A document that breaks any rule is refused as a whole: a damaged
  or truncated list must never unblock cards, so the last good one stays in force.

LNbits boltcards (`GET /boltcards/api/v1/cards`, `X-Api-Key`: the card wallet's invoice key)
answers a JSON list of the wallet's cards. Only `uid`, `enable`, `tx_limit`, `daily_limit` (sats)
and `counter` are read; the card keys in the same answer are never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from terminal.core.text import clean_text as _clean

VERSION = 1
MAX_ENTRIES = 100_000
REASON_MAX_CHARS = 120
DEFAULT_REASON = "listed by its issuer"
LNBITS_DISABLED_REASON = "disabled at its issuer (LNbits)"
MAX_SATS = 21_000_000 * 100_000_000

_CARD_ID = re.compile(r"[0-9a-fA-F]{32}")
_UID = re.compile(r"[0-9a-fA-F]{14}")


class HotlistFormatError(ValueError):
    """The document is not a hotlist (or an LNbits card list) this terminal can trust."""


class HotlistUnavailable(Exception):
    """A source could not be asked (refused by the URL policy, unreachable, too large)."""


@dataclass(frozen=True)
class HotlistEntry:
    card_id: str | None  # lower-case hex
    uid: bytes | None
    reason: str


@dataclass(frozen=True)
class LnbitsCard:
    uid: bytes
    enabled: bool
    tx_limit_sats: int  # 0: none set
    daily_limit_sats: int  # 0: none set
    counter: int


def clean_text(value: object, limit: int = REASON_MAX_CHARS) -> str:
    """Printable, one line, at most `limit` characters ("" for anything but text)."""
    return _clean(value, limit)


def parse_hotlist(payload: object) -> list[HotlistEntry]:
    """The entries of a hotlist document (see the module docstring); raises HotlistFormatError."""
    if not isinstance(payload, dict):
        raise HotlistFormatError("a hotlist is a JSON object with a \"cards\" list")
    version = payload.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise HotlistFormatError(f"hotlist version {_short(version)} is not supported (1 is)")
    cards = payload.get("cards")
    if not isinstance(cards, list):
        raise HotlistFormatError("\"cards\" must be a list")
    if len(cards) > MAX_ENTRIES:
        raise HotlistFormatError(f"more than {MAX_ENTRIES:,} entries")
    return [_entry(n, item) for n, item in enumerate(cards)]


def _entry(n: int, item: object) -> HotlistEntry:
    if not isinstance(item, dict):
        raise HotlistFormatError(f"cards[{n}] is not an object")
    card_id, uid = item.get("card_id"), item.get("uid")
    if (card_id is None) == (uid is None):
        raise HotlistFormatError(f"cards[{n}] must name exactly one of card_id or uid")
    reason = item.get("reason", DEFAULT_REASON)
    if not isinstance(reason, str):
        raise HotlistFormatError(f"cards[{n}].reason must be text")
    text = clean_text(reason) or DEFAULT_REASON
    if card_id is not None:
        if not isinstance(card_id, str) or not _CARD_ID.fullmatch(card_id):
            raise HotlistFormatError(f"cards[{n}].card_id must be 32 hex characters")
        return HotlistEntry(card_id.lower(), None, text)
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise HotlistFormatError(f"cards[{n}].uid must be 14 hex characters (7 bytes)")
    return HotlistEntry(None, bytes.fromhex(uid), text)


def parse_lnbits_cards(payload: object) -> list[LnbitsCard]:
    """The cards of an LNbits `GET /boltcards/api/v1/cards` answer; raises HotlistFormatError."""
    if not isinstance(payload, list):
        raise HotlistFormatError("the LNbits card list is not a JSON list")
    if len(payload) > MAX_ENTRIES:
        raise HotlistFormatError(f"more than {MAX_ENTRIES:,} cards")
    return [_lnbits_card(n, item) for n, item in enumerate(payload)]


def _lnbits_card(n: int, item: object) -> LnbitsCard:
    if not isinstance(item, dict):
        raise HotlistFormatError(f"card [{n}] is not an object")
    uid, enable = item.get("uid"), item.get("enable")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise HotlistFormatError(f"card [{n}]: uid must be 14 hex characters")
    if not isinstance(enable, bool):
        raise HotlistFormatError(f"card [{n}]: enable must be true or false")
    return LnbitsCard(bytes.fromhex(uid), enable, _sats(item, "tx_limit", n),
                      _sats(item, "daily_limit", n), _count(item, "counter", n))


def _sats(item: dict[str, object], key: str, n: int) -> int:
    value = item.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SATS:
        raise HotlistFormatError(f"card [{n}]: {key} must be a whole number of sats")
    return value


def _count(item: dict[str, object], key: str, n: int) -> int:
    value = item.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFF:
        raise HotlistFormatError(f"card [{n}]: {key} must be a 24-bit counter")
    return value


def _short(value: object) -> str:
    text = clean_text(repr(value), 40)
    return text or "?"
