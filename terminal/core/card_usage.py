"""Per-card usage (the payout dashboard's Boltcard view): for each card that tapped, how often,
how much, and when first and last, under the one counting rule (`terminal.core.totals`).

Cards are named by their keyed card id (never a UID). A sale paid by QR after a refused card
names no card (checkout clears it), so a card is only credited with what it paid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    return sorted(cards.values(), key=lambda u: (-u.totals.taken_msat, -u.totals.taken,
                                                 u.card_id))
