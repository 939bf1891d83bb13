"""The card policy as a service: the hotlist, per-card limits and unknown cards, over the books.

`CardPolicy.check` is checkout's one hook, called right after a tap's SUN was checked locally and
before any network call or the offline policy; it answers None (go on) or a `CardRefusal` (the
decision itself is `terminal.core.card_policy`). The same object serves the manager: block and
unblock (Admin > Cards, `flash-terminal card block|unblock`), the card list, and the fetched
hotlists' snapshots (`terminal.services.hotlists` fetches them).

Kept in the books (ledger meta), so they survive restarts and hold offline:
- `cards.blocks`: the terminal's own blocks, `{card_id: {"reason", "since"}}`;
- `cards.hotlist:<name>`: each configured hotlist's last good content (what it blocks, the limits
  its issuer publishes per card), rewritten only when it changes;
- `cards.hotlist-status:<name>`: when it was last fetched and tried, and the last error.
Raw UIDs are never stored: a UID (a hotlist entry, `--uid`) is mapped to card ids through the
configured issuers' keys, and only the card ids are kept.

Queued offline payouts of a card that becomes blocked are not held back or dropped (the customer
has the goods; the issuer decides): they are *flagged* — an event in the books when the block
lands, the count on the status bar (`flagged_payouts`), and a `doctor` line — so the merchant knows
which queued money is at risk before the sync worker sends it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from terminal.core.card_limits import CardLimits, CardSpend, card_spend
from terminal.core.card_policy import CardRefusal, UnknownCardPolicy, decide_card
from terminal.core.history import SaleQuery
from terminal.core.hotlist import TERMINAL_SOURCE, Block, Hotlist, HotlistSnapshot
from terminal.core.ports.books import CardBooks
from terminal.core.records import PayoutStatus, QueuedPayout, short_card_id
from terminal.core.totals import is_taken, local_day
from terminal.protocols import lnurl
from terminal.protocols.boltcard import TapReason, TapVerification
from terminal.protocols.hotlist import REASON_MAX_CHARS, clean_text

log = logging.getLogger(__name__)

BLOCKS_META = "cards.blocks"
HOTLIST_META_PREFIX = "cards.hotlist:"  # what a source lists (written when it changes)
STATUS_META_PREFIX = "cards.hotlist-status:"  # when it was fetched, the last error
DEFAULT_BLOCK_REASON = "blocked by the manager"
OWED = (PayoutStatus.QUEUED, PayoutStatus.SUBMITTING)

CardIds = Callable[[bytes], list[tuple[str, str]]]  # UID -> [(issuer, card id)]: Keyring.card_ids


@dataclass(frozen=True)
class CardPolicySettings:
    """From the configuration (`[cards]`, `[[issuers]] unknown_cards`)."""

    defaults: CardLimits = CardLimits()
    per_card: Mapping[str, CardLimits] = field(default_factory=dict)  # whole, not overlays
    unknown_by_host: Mapping[str, UnknownCardPolicy] = field(default_factory=dict)
    unknown_default: UnknownCardPolicy = UnknownCardPolicy.ONLINE_ONLY
    known_uids: Mapping[str, str] = field(default_factory=dict, repr=False)  # card id -> UID hex
    sources: tuple[str, ...] = ()  # the configured hotlists' names

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_card", MappingProxyType(
            {k.lower(): v for k, v in self.per_card.items()}))
        object.__setattr__(self, "unknown_by_host", MappingProxyType(
            {k.lower().rstrip("."): v for k, v in self.unknown_by_host.items()}))

    def unknown_policy(self, host: str) -> UnknownCardPolicy:
        return self.unknown_by_host.get(host.lower().rstrip("."), self.unknown_default)


@dataclass(frozen=True)
class CardRow:
    """One line of `flash-terminal card list --json` (the contract's keys)."""

    card_id: str
    uid: str | None
    blocked: bool
    reason: str | None
    last_counter: int | None
    last_seen: float | None
    sales: int
    total_msat: int
    limits: CardLimits

    def to_json(self) -> dict[str, object]:
        return {
            "card_id": self.card_id,
            "uid": self.uid,
            "blocked": self.blocked,
            "reason": self.reason,
            "last_counter": self.last_counter,
            "last_seen": self.last_seen,
            "sales": self.sales,
            "total_msat": self.total_msat,
            "limits": self.limits.to_json(),
        }


class UnknownCard(ValueError):
    """A card id that is not 32 hex characters."""


def check_card_id(card_id: str) -> str:
    text = card_id.strip().lower()
    if len(text) != 32 or any(ch not in "0123456789abcdef" for ch in text):
        raise UnknownCard("a card id is 32 hex characters (as `card list` shows it)")
    return text


def tap_host(url: str) -> str:
    """The host a tap URL points to ("" when it cannot be read): unknown cards' policy key."""
    try:
        return (urlsplit(lnurl.decode_lnurl(url)).hostname or "").lower().rstrip(".")
    except (lnurl.LnurlError, ValueError):
        return ""


class CardPolicy:
    def __init__(
        self,
        books: CardBooks,
        settings: CardPolicySettings | None = None,
        *,
        card_ids: CardIds | None = None,
        clock: Callable[[], float] = time.time,
        tz: dt.tzinfo | None = None,
    ) -> None:
        self.books = books
        self.settings = settings or CardPolicySettings()
        self.card_ids = card_ids
        self.clock = clock
        self.tz = tz
        self._local: dict[str, Block] = self._load_local()
        self._snapshots: dict[str, HotlistSnapshot] = {
            name: self._load_snapshot(name) for name in self.settings.sources}
        self.hotlist = Hotlist(self._local, self._snapshots.values())
        self._listeners: list[Callable[[], None]] = []

    # -- checkout's hook ----------------------------------------------------------------------
    def issuer_decides(self, url: str) -> bool:
        """Whether a tap this terminal cannot verify goes to its issuer (the host is
        `online-only`). There, a failed local CMAC is not proof of a forgery: under one issuer's
        K1 another key set's card decrypts to a well-formed header one tap in 256, and then its
        CMAC fails. The issuer checks it; it is never accepted offline."""
        host = tap_host(url)
        return bool(host) and self.settings.unknown_policy(host) is UnknownCardPolicy.ONLINE_ONLY

    def check(self, verification: TapVerification, url: str, *, amount_msat: int | None,
              online: bool) -> CardRefusal | None:
        """Right after the SUN check: may this card go on? Never raises for a tap."""
        card = verification.card
        if card is None and verification.reason is not TapReason.UNKNOWN_ISSUER:
            return None  # malformed or forged: checkout refuses it on its own grounds
        host = tap_host(url) if card is None else ""
        card_id = card.card_id if card is not None else None
        block = self.hotlist.block_of(card_id) if card_id else None
        limits = self.limits_for(card_id) if card_id and block is None else CardLimits()
        spend = CardSpend()
        if card_id and not limits.unlimited:
            spend = self.spend(card_id)
        refusal = decide_card(
            verified_card_id=card_id, host=host, online=online,
            unknown_policy=self.settings.unknown_policy(host), block=block, limits=limits,
            spend=spend, amount_msat=amount_msat)
        if refusal is not None:
            who = short_card_id(card_id) if card_id else f"unknown card on {host or '?'}"
            log.info("card refused (%s): %s", refusal.code, who)
            self._event("card-refused", f"{refusal.code} {who}")
        return refusal

    # -- limits -------------------------------------------------------------------------------
    def limits_for(self, card_id: str) -> CardLimits:
        """The card's own limits if configured (else the defaults), and the limits its issuer
        publishes on top (the stricter wins)."""
        limits = self.settings.per_card.get(card_id, self.settings.defaults)
        issuer = self.hotlist.issuer_limits(card_id)
        return limits if issuer is None else limits.tighter(issuer)

    def spend(self, card_id: str, now: float | None = None) -> CardSpend:
        """What the card spent today and how often it paid in the last hour (from the books)."""
        now = self.clock() if now is None else now
        day = local_day(now, self.tz)
        day_start = dt.datetime.combine(day, dt.time(), tzinfo=self.tz).timestamp()
        query = SaleQuery(date_from=min(day, local_day(now - 3600, self.tz)), date_to=day,
                          card_id=card_id, tz=self.tz)
        return card_spend(self.books.summaries_matching(query), card_id, now=now,
                          day_start=day_start)

    # -- the terminal's own blocks ------------------------------------------------------------
    def block(self, card_id: str, reason: str = "") -> Block:
        """Block `card_id` on this terminal (again: the reason is replaced)."""
        card_id = check_card_id(card_id)
        text = clean_text(reason, REASON_MAX_CHARS) or DEFAULT_BLOCK_REASON
        block = Block(card_id, text, TERMINAL_SOURCE, self.clock())
        local = dict(self._local)
        local[card_id] = block
        self._save_local(local)
        self._event("card-blocked", f"card {short_card_id(card_id)}: {text}")
        self._flag([card_id])
        return block

    def unblock(self, card_id: str) -> Block | None:
        """Lift the terminal's own block; returns it (None: the terminal had not blocked it).
        A block from a fetched hotlist stays: `blocks_of` still lists it."""
        card_id = check_card_id(card_id)
        local = dict(self._local)
        removed = local.pop(card_id, None)
        if removed is not None:
            self._save_local(local)
            self._event("card-unblocked", f"card {short_card_id(card_id)}")
        return removed

    def blocks_of(self, card_id: str) -> list[Block]:
        return self.hotlist.blocks_of(card_id)

    def blocked(self) -> list[Block]:
        """Every blocked card, once (its first block: the terminal's own before a list's)."""
        out = []
        for card_id in sorted(self.hotlist.blocked_ids()):
            block = self.hotlist.block_of(card_id)
            if block is not None:
                out.append(block)
        return out

    # -- fetched hotlists ---------------------------------------------------------------------
    def snapshot(self, name: str) -> HotlistSnapshot:
        return self._snapshots.get(name) or HotlistSnapshot(name)

    def snapshots(self) -> list[HotlistSnapshot]:
        return [self.snapshot(name) for name in self.settings.sources]

    def store_snapshot(self, snap: HotlistSnapshot) -> list[str]:
        """Keep a source's new snapshot (or its failed attempt); returns the card ids it newly
        blocks. Written only when something changed, but the attempt's time always is."""
        before = self.snapshot(snap.source)
        if _content(before) != _content(snap):  # a list of thousands is not rewritten hourly
            self.books.set_meta(HOTLIST_META_PREFIX + snap.source, _content_doc(snap))
        self.books.set_meta(STATUS_META_PREFIX + snap.source, {
            "fetched_at": snap.fetched_at, "checked_at": snap.checked_at, "error": snap.error})
        self._snapshots[snap.source] = snap
        self._rebuild()
        added = sorted(set(snap.blocked) - set(before.blocked) - set(self._local))
        if added:
            self._event("hotlist-blocked", f"{snap.source}: {len(added)} card(s) newly blocked")
            self._flag(added)
        return added

    # -- what the merchant is told ------------------------------------------------------------
    def flagged_payouts(self) -> list[QueuedPayout]:
        """Offline payouts still owed whose card is now blocked (the status bar's count)."""
        hotlist = self.hotlist
        if not hotlist.local and not any(s.blocked for s in hotlist.snapshots):
            return []
        return [p for status in OWED for p in self.books.payouts(status)
                if hotlist.block_of(p.card_id) is not None]

    def rows(self, *, blocked_only: bool = False) -> list[CardRow]:
        """`card list`: every card the terminal knows (seen, blocked, or configured)."""
        stats: dict[str, list[float]] = {}  # card id -> [sales, total msat, last seen]
        for sale in self.books.summaries_matching(SaleQuery()):
            if not sale.card_id:
                continue
            row = stats.setdefault(sale.card_id, [0, 0, 0.0])
            if is_taken(sale):
                row[0] += 1
                row[1] += sale.amount_msat or 0
            row[2] = max(row[2], sale.created_at)
        counters = {c.card_id: c.last_counter for c in self.books.cards()}
        ids = (set(counters) | set(stats) | self.hotlist.blocked_ids()
               | set(self.settings.per_card) | self.hotlist.limited_ids())
        out = []
        for card_id in sorted(ids):
            block = self.hotlist.block_of(card_id)
            if blocked_only and block is None:
                continue
            sales, total, seen = stats.get(card_id, [0, 0, 0.0])
            counter = counters.get(card_id)
            out.append(CardRow(
                card_id=card_id,
                uid=self.settings.known_uids.get(card_id),
                blocked=block is not None,
                reason=None if block is None else _reason_text(block),
                last_counter=counter if counter is not None and counter >= 0 else None,
                last_seen=seen or None,
                sales=int(sales),
                total_msat=int(total),
                limits=self.limits_for(card_id),
            ))
        return out

    def card_ids_for_uid(self, uid: bytes) -> list[str]:
        """The card ids a UID has under the configured issuers (empty: no keys for it)."""
        if self.card_ids is None:
            return []
        return list(dict.fromkeys(card_id for _issuer, card_id in self.card_ids(uid)))

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Called after every change of the blocks (a screen redraws its list)."""
        self._listeners.append(listener)

    # -- storage ------------------------------------------------------------------------------
    def _load_local(self) -> dict[str, Block]:
        doc = self.books.get_meta(BLOCKS_META, {})
        out: dict[str, Block] = {}
        if not isinstance(doc, dict):
            log.warning("the terminal's card blocks are unreadable; kept as they are")
            return out
        for card_id, value in doc.items():
            if isinstance(card_id, str) and isinstance(value, dict):
                since = value.get("since")
                out[card_id] = Block(card_id, str(value.get("reason") or DEFAULT_BLOCK_REASON),
                                     TERMINAL_SOURCE,
                                     float(since) if isinstance(since, int | float) else None)
        return out

    def _save_local(self, local: dict[str, Block]) -> None:
        self.books.set_meta(BLOCKS_META, {
            b.card_id: {"reason": b.reason, "since": b.since} for b in local.values()})
        self._local = local
        self._rebuild()

    def _load_snapshot(self, name: str) -> HotlistSnapshot:
        doc = self.books.get_meta(HOTLIST_META_PREFIX + name)
        status = self.books.get_meta(STATUS_META_PREFIX + name)
        try:
            return _snapshot_of(name, doc if isinstance(doc, dict) else {},
                                status if isinstance(status, dict) else {})
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("the kept hotlist %s is unreadable (%s): fetched again", name, exc)
            return HotlistSnapshot(name)

    def _rebuild(self) -> None:
        self.hotlist = Hotlist(self._local, self._snapshots.values())
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a screen's redraw must never break a block
                log.exception("card policy listener failed")

    def _event(self, kind: str, detail: str) -> None:
        try:
            self.books.log_event(kind, detail)
        except Exception:  # the event is a note; the decision stands without it
            log.exception("could not record the %s event", kind)

    def _flag(self, card_ids: list[str]) -> None:
        wanted = set(card_ids)
        owed = [p for status in OWED for p in self.books.payouts(status) if p.card_id in wanted]
        if not owed:
            return
        total = sum(p.amount_sats for p in owed)
        cards = ", ".join(sorted({short_card_id(p.card_id) for p in owed}))
        log.warning("%d queued offline payment(s) of newly blocked card(s) %s", len(owed), cards)
        self._event("blocked-card-payouts",
                    f"{len(owed)} offline payment(s), {total:,} sats, of blocked card(s) "
                    f"{cards}: they will still be sent; the issuer may refuse them")


def _reason_text(block: Block) -> str:
    return block.reason if block.by_terminal else f"{block.reason} (from {block.source})"


def _limits_doc(limits: CardLimits) -> list[int | None]:
    return [limits.per_tap_msat, limits.per_day_msat, limits.taps_per_hour]


def _content(snap: HotlistSnapshot) -> tuple[object, ...]:
    return (dict(snap.blocked), dict(snap.limits), snap.unmatched)


def _content_doc(snap: HotlistSnapshot) -> dict[str, Any]:
    return {
        "unmatched": snap.unmatched,
        "blocked": dict(snap.blocked),
        "limits": {card_id: _limits_doc(lim) for card_id, lim in snap.limits.items()},
    }


def _snapshot_of(name: str, doc: dict[str, Any], status: dict[str, Any]) -> HotlistSnapshot:
    blocked = doc.get("blocked") or {}
    limits = doc.get("limits") or {}
    error = status.get("error")
    return HotlistSnapshot(
        source=name,
        fetched_at=_opt_float(status.get("fetched_at")),
        blocked={str(k): str(v) for k, v in blocked.items()},
        limits={str(k): CardLimits(*v) for k, v in limits.items()},
        unmatched=int(doc.get("unmatched") or 0),
        checked_at=_opt_float(status.get("checked_at")),
        error=error if isinstance(error, str) else None,
    )


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


__all__ = ["CardBooks", "CardPolicy", "CardPolicySettings", "CardRow", "UnknownCard",
           "check_card_id", "tap_host"]
