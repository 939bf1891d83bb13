"""Per-card usage (the payout dashboard's Boltcard view): for each card that tapped, how often,
how much, and when first and last, under the one counting rule (`terminal.core.totals`).

The books count it without reading records (`SalesHistory.card_usage(UsageFilter)`: SQL sums
per card, state and currency, to which `Totals.add_group` applies the rule, plus the journal's
few sales counted here); `card_usage(records)` is the definition they are tested against.

Cards are named by their keyed card id (never a UID). A sale paid by QR after a refused card
names no card (checkout clears it), so a card is only credited with what it paid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from terminal.core import history
from terminal.core.cashiers import NO_CASHIER
from terminal.core.history import SaleFacts, SaleQuery
from terminal.core.totals import Countable, Totals, sale_time


@dataclass
class CardUsage:
    card_id: str
    totals: Totals = field(default_factory=Totals)
    first_at: float | None = None
    last_at: float | None = None

    def add(self, sale: Countable) -> None:
        self.totals.add(sale)
        at = sale_time(sale)
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)

    def merge(self, other: CardUsage) -> None:
        """Count `other`'s sales of the same card too (as if each had been `add`ed)."""
        self.totals.merge(other.totals)
        for at in (other.first_at, other.last_at):
            if at is not None:
                self.first_at = at if self.first_at is None else min(self.first_at, at)
                self.last_at = at if self.last_at is None else max(self.last_at, at)

    def to_doc(self) -> dict[str, Any]:
        t = self.totals
        return {
            "card_id": self.card_id,
            "sales": t.taken,  # paid, or accepted offline and not settled yet
            "attempts": t.sales,  # every tap that made a sale, refused ones included
            "failed": t.failed,
            "gross_msat": t.taken_msat,
            "tips_msat": t.tips_msat,
            "queued_msat": t.pending_msat,
            "by_currency": dict(sorted(t.minor.items())),
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


CSV_COLUMNS = ("card_id", "sales", "attempts", "failed", "gross_msat", "tips_msat",
               "queued_msat", "first_at", "last_at")


def card_usage(sales: Iterable[Countable]) -> list[CardUsage]:
    """One `CardUsage` per card, the most used (by amount taken) first."""
    cards: dict[str, CardUsage] = {}
    for sale in sales:
        if sale.card_id:
            cards.setdefault(sale.card_id, CardUsage(sale.card_id)).add(sale)
    return ranked(cards.values())


def ranked(usage: Iterable[CardUsage]) -> list[CardUsage]:
    """The most used (by amount taken, then by sales taken) first; then by card id."""
    return sorted(usage, key=lambda u: (-u.totals.taken_msat, -u.totals.taken, u.card_id))


def merged(*parts: Iterable[CardUsage]) -> list[CardUsage]:
    """The usage of disjoint sets of sales counted together (e.g. the archive's and the
    journal's), ranked as `card_usage` ranks it."""
    cards: dict[str, CardUsage] = {}
    for part in parts:
        for usage in part:
            held = cards.get(usage.card_id)
            if held is None:
                cards[usage.card_id] = held = CardUsage(usage.card_id)
            held.merge(usage)
    return ranked(cards.values())


class CashierFacts(SaleFacts, Protocol):
    """What the usage filter reads of a sale: the query's facts and who rang it up."""

    @property
    def cashier(self) -> str | None: ...


@dataclass(frozen=True)
class UsageFilter:
    """Which sales per-card usage counts (`SalesHistory.card_usage`).

    `query`: the history query (local dates, one state, method, a card id prefix); `states`:
    any of these states (the History screen's "failed" is every failed state); `cashier`: who
    rang the sale up (a cashier id, or `NO_CASHIER` for sales rung up without a sign-in).
    """

    query: SaleQuery = field(default_factory=SaleQuery)
    states: frozenset[str] | None = None
    cashier: str | None = None

    def __post_init__(self) -> None:
        if self.cashier is not None:
            object.__setattr__(self, "cashier", self.cashier.strip().lower())
        if self.states is not None:
            object.__setattr__(self, "states", frozenset(self.states))

    def matches(self, sale: CashierFacts) -> bool:
        if self.states is not None and sale.state not in self.states:
            return False
        if self.cashier is not None and (sale.cashier or NO_CASHIER) != self.cashier:
            return False
        return history.matches(sale, self.query)
