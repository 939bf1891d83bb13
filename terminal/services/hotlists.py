"""Fetching hotlists: the issuer's or merchant's list, and LNbits card lists (service layer).

Each configured source (`[[cards.hotlists]]`) is fetched at start, every `refresh_s`, sooner
(`retry_s`, doubling up to `refresh_s`) after a failure, and at once when the backend link comes
back online (a terminal that was offline may have missed a block). A fetch that fails or answers
something that is not a list this terminal can trust changes nothing: the last good snapshot
stays in force (kept in the books, so it holds across restarts and while offline), and the error
is recorded for `doctor`.

Traffic goes through `HotlistFetcher` (the adapter is the LNURL client's wire: the same URL
policy, checked and pinned addresses, a capped body); this module only decides and parses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from terminal.core.card_limits import CardLimits
from terminal.core.connectivity import Connectivity, Link
from terminal.core.hotlist import HotlistSnapshot
from terminal.core.ports.withdraw import HotlistFetcher
from terminal.protocols.hotlist import (
    LNBITS_DISABLED_REASON,
    HotlistFormatError,
    HotlistUnavailable,
    clean_text,
    parse_hotlist,
    parse_lnbits_cards,
)
from terminal.services.card_policy import CardPolicy

log = logging.getLogger(__name__)

KIND_HOTLIST = "hotlist"
KIND_LNBITS = "lnbits"
REFRESH_S = 900.0
RETRY_S = 60.0
RECONNECT_POLL_S = 5.0  # how soon a link back online is noticed


@dataclass(frozen=True)
class HotlistSource:
    name: str
    url: str
    kind: str = KIND_HOTLIST  # hotlist | lnbits
    api_key: str | None = field(default=None, repr=False)  # LNbits: X-Api-Key (invoice key)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key} if self.api_key else {}


@dataclass(frozen=True)
class RefreshResult:
    source: str
    ok: bool
    blocked: int  # cards the source blocks now
    newly_blocked: int
    detail: str


@dataclass
class _Schedule:
    next_at: float = 0.0  # due at once
    failures: int = 0
    last_attempt: float | None = None


class HotlistRefresher:
    def __init__(
        self,
        policy: CardPolicy,
        fetcher: HotlistFetcher,
        sources: tuple[HotlistSource, ...],
        *,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
        connectivity: Connectivity | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.fetcher = fetcher
        self.sources = sources
        self.refresh_s = refresh_s
        self.retry_s = min(retry_s, refresh_s)
        self.connectivity = connectivity
        self.clock = clock
        self._schedule = {s.name: _Schedule() for s in sources}

    # -- when -----------------------------------------------------------------------------------
    def _due(self, source: HotlistSource, now: float) -> bool:
        plan = self._schedule[source.name]
        if now >= plan.next_at:
            return True
        link = self.connectivity
        # Back online since the last attempt: the terminal may have missed a block meanwhile.
        return (link is not None and link.state is Link.ONLINE and plan.last_attempt is not None
                and link.since > plan.last_attempt)

    def wait_s(self) -> float:
        """Seconds until the next source is due (short enough to notice a reconnection)."""
        if not self.sources:
            return self.refresh_s
        now = self.clock()
        soonest = min(self._schedule[s.name].next_at for s in self.sources) - now
        poll = RECONNECT_POLL_S if self.connectivity is not None else self.refresh_s
        return max(0.05, min(soonest, poll))

    async def refresh_due(self) -> list[RefreshResult]:
        """Fetch the sources that are due (the kiosk's loop calls this)."""
        now = self.clock()
        return [await self.refresh_one(s) for s in self.sources if self._due(s, now)]

    async def refresh(self) -> list[RefreshResult]:
        """Fetch every source now."""
        return [await self.refresh_one(s) for s in self.sources]

    # -- one source -----------------------------------------------------------------------------
    async def refresh_one(self, source: HotlistSource) -> RefreshResult:
        plan = self._schedule[source.name]
        now = self.clock()
        plan.last_attempt = now
        before = self.policy.snapshot(source.name)
        try:
            snap = await self._fetch(source, now)
        except (HotlistUnavailable, HotlistFormatError) as exc:
            plan.failures += 1
            plan.next_at = now + min(self.refresh_s, self.retry_s * 2 ** (plan.failures - 1))
            error = clean_text(str(exc), 200) or type(exc).__name__
            log.warning("hotlist %s not refreshed: %s", source.name, error)
            self.policy.store_snapshot(HotlistSnapshot(
                source.name, before.fetched_at, before.blocked, before.limits, before.unmatched,
                checked_at=now, error=error))
            return RefreshResult(source.name, False, len(before.blocked), 0, error)
        plan.failures = 0
        plan.next_at = now + self.refresh_s
        added = self.policy.store_snapshot(snap)
        detail = f"{len(snap.blocked)} card(s) blocked"
        if snap.unmatched:
            detail += f", {snap.unmatched} entr{'y' if snap.unmatched == 1 else 'ies'} for " \
                      "cards without keys here"
        return RefreshResult(source.name, True, len(snap.blocked), len(added), detail)

    async def _fetch(self, source: HotlistSource, now: float) -> HotlistSnapshot:
        status, body = await self.fetcher.get(source.url, source.headers)
        payload = _json(body)
        if status != 200:
            raise HotlistUnavailable(f"HTTP {status}{_detail(payload)}")
        if payload is None:
            raise HotlistFormatError("the answer is not JSON")
        if source.kind == KIND_LNBITS:
            return self._lnbits(source, payload, now)
        return self._hotlist(source, payload, now)

    def _hotlist(self, source: HotlistSource, payload: object, now: float) -> HotlistSnapshot:
        blocked: dict[str, str] = {}
        unmatched = 0
        for entry in parse_hotlist(payload):
            if entry.card_id is not None:
                blocked[entry.card_id] = entry.reason
                continue
            assert entry.uid is not None
            ids = self.policy.card_ids_for_uid(entry.uid)
            if not ids:
                unmatched += 1
            for card_id in ids:
                blocked[card_id] = entry.reason
        return HotlistSnapshot(source.name, now, blocked, {}, unmatched, checked_at=now)

    def _lnbits(self, source: HotlistSource, payload: object, now: float) -> HotlistSnapshot:
        blocked: dict[str, str] = {}
        limits: dict[str, CardLimits] = {}
        unmatched = 0
        for card in parse_lnbits_cards(payload):
            ids = self.policy.card_ids_for_uid(card.uid)
            if not ids:
                unmatched += 1
            # LNbits stores 0 when no limit was set (it then refuses at its own scan).
            card_limits = CardLimits(
                per_tap_msat=card.tx_limit_sats * 1000 if card.tx_limit_sats else None,
                per_day_msat=card.daily_limit_sats * 1000 if card.daily_limit_sats else None)
            for card_id in ids:
                if not card.enabled:
                    blocked[card_id] = LNBITS_DISABLED_REASON
                if not card_limits.unlimited:
                    limits[card_id] = card_limits
        return HotlistSnapshot(source.name, now, blocked, limits, unmatched, checked_at=now)


def _json(body: bytes) -> object | None:
    try:
        payload: object = json.loads(body, parse_constant=_refuse_constant)
        return payload
    except (ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _detail(payload: object) -> str:
    """The server's own words (LNbits: {"detail": …}), cleaned; "" when it gave none."""
    if isinstance(payload, dict):
        for key in ("detail", "reason", "message"):
            text = clean_text(payload.get(key), 160)
            if text:
                return f": {text}"
    return ""


__all__ = ["HotlistFetcher", "HotlistRefresher", "HotlistSource", "HotlistUnavailable",
           "RefreshResult"]
