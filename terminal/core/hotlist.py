"""The card exception list (hotlist): which cards are blocked, by whom, and why (core, no I/O).

EMV terminals carry an exception file for the same reason: a terminal that accepts cards offline
must refuse a lost card the moment it learns of it, not when the issuer next sees the card.

Blocks come from sources:
- `terminal`: the manager's own blocks (Admin > Cards > Block, `flash-terminal card block`);
- a fetched hotlist, named as configured (`[[cards.hotlists]]`): the issuer's or the merchant's
  list, or an LNbits card list (cards with `enable: false`). Each fetch replaces that source's
  snapshot as a whole: a card missing from a newer list is no longer blocked by it.

A card is blocked while any source blocks it. The manager can lift only the terminal's own block:
a card its issuer lists stays blocked until the issuer's list drops it. Cards are named by their
keyed card id (the ledger's name for a card), never by the raw UID.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.core.card_limits import CardLimits

TERMINAL_SOURCE = "terminal"
REASON_MAX_CHARS = 120


@dataclass(frozen=True)
class Block:
    card_id: str
    reason: str
    source: str  # TERMINAL_SOURCE or a configured hotlist's name
    since: float | None = None  # the terminal's own blocks: when it was made

    @property
    def by_terminal(self) -> bool:
        return self.source == TERMINAL_SOURCE


@dataclass(frozen=True)
class HotlistSnapshot:
    """One fetched source as it last answered (kept in the books; survives restarts)."""

    source: str
    fetched_at: float | None = None  # the last good fetch (None: never)
    blocked: Mapping[str, str] = field(default_factory=dict)  # card id -> reason
    limits: Mapping[str, CardLimits] = field(default_factory=dict)  # the issuer's, per card
    unmatched: int = 0  # entries naming a UID that no configured issuer key maps to a card id
    checked_at: float | None = None  # the last attempt, good or not
    error: str | None = None  # why the last attempt failed (None: it worked)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocked", MappingProxyType(dict(self.blocked)))
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def age_s(self, now: float) -> float | None:
        return None if self.fetched_at is None else max(0.0, now - self.fetched_at)


class Hotlist:
    """The merged view the tap path reads: O(1) per lookup."""

    def __init__(self, local: Mapping[str, Block] | None = None,
                 snapshots: Iterable[HotlistSnapshot] = ()) -> None:
        self.local: Mapping[str, Block] = MappingProxyType(dict(local or {}))
        self.snapshots: tuple[HotlistSnapshot, ...] = tuple(snapshots)

    def blocks_of(self, card_id: str) -> list[Block]:
        """Every source's block of this card: the terminal's own first."""
        found = []
        own = self.local.get(card_id)
        if own is not None:
            found.append(own)
        for snap in self.snapshots:
            reason = snap.blocked.get(card_id)
            if reason is not None:
                found.append(Block(card_id, reason, snap.source, snap.fetched_at))
        return found

    def block_of(self, card_id: str) -> Block | None:
        blocks = self.blocks_of(card_id)
        return blocks[0] if blocks else None

    def blocked_ids(self) -> set[str]:
        ids = set(self.local)
        for snap in self.snapshots:
            ids.update(snap.blocked)
        return ids

    def issuer_limits(self, card_id: str) -> CardLimits | None:
        """The limits the card's issuer publishes (the strictest where several do)."""
        found: CardLimits | None = None
        for snap in self.snapshots:
            limits = snap.limits.get(card_id)
            if limits is not None:
                found = limits if found is None else found.tighter(limits)
        return found

    def limited_ids(self) -> set[str]:
        ids: set[str] = set()
        for snap in self.snapshots:
            ids.update(snap.limits)
        return ids
