"""The one rule for counting sales, used by every screen, receipt, report and export.

A sale counts as *taken* when the money is the merchant's or on its way: PAID, or accepted offline
and waiting to be sent (QUEUED, SUBMITTED). Pending ones are also reported apart, because they
are not settled yet. Failed, declined, expired and cancelled sales count only as attempts.
A sale belongs to the day (and hour) it was rung up: its creation time, in the terminal's local
time zone. A late payment or an offline sale settled the next morning stays on the day it was sold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

SETTLED_STATES = frozenset({"paid"})
PENDING_STATES = frozenset({"queued", "submitted"})
TAKEN_STATES = SETTLED_STATES | PENDING_STATES
FAILED_STATES = frozenset({"failed", "expired", "cancelled", "declined"})


class Countable(Protocol):
    """What the rule reads of a sale: a `SaleRecord`, or the archive's lighter
    `terminal.core.history.SaleSummary` row."""

    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def currency(self) -> str: ...
    @property
    def amount_minor(self) -> int: ...
    @property
    def amount_msat(self) -> int | None: ...
    @property
    def tip_minor(self) -> int: ...
    @property
    def tip_msat(self) -> int | None: ...
    @property
    def card_id(self) -> str | None: ...


def is_taken(record: Countable) -> bool:
    return record.state in TAKEN_STATES


def sale_time(record: Countable) -> float:
    """The moment a sale belongs to (its creation)."""
    return record.created_at


def local_day(timestamp: float, tz: dt.tzinfo | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, tz=tz).date()


def day_bounds(day: dt.date, tz: dt.tzinfo | None = None) -> tuple[float, float]:
    """[start, end) of a local calendar day as unix seconds (DST-safe: midnights computed)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return start.timestamp(), end.timestamp()


@dataclass
class Totals:
    """What a set of sales adds up to under the counting rule."""

    sales: int = 0  # every sale looked at (attempts included)
    taken: int = 0  # counted sales (paid + pending)
    taken_msat: int = 0
    tips_msat: int = 0
    pending: int = 0  # accepted offline, not settled yet (included in `taken`)
    pending_msat: int = 0
    failed: int = 0
    minor: dict[str, int] = field(default_factory=dict)  # currency -> taken, in minor units
    tips_minor: dict[str, int] = field(default_factory=dict)

    def add(self, record: Countable) -> None:
        self.sales += 1
        if record.state in FAILED_STATES:
            self.failed += 1
        if not is_taken(record):
            return
        msat = record.amount_msat or 0
        self.taken += 1
        self.taken_msat += msat
        self.tips_msat += record.tip_msat or 0
        self.minor[record.currency] = self.minor.get(record.currency, 0) + record.amount_minor
        if record.tip_minor:
            self.tips_minor[record.currency] = (self.tips_minor.get(record.currency, 0)
                                                + record.tip_minor)
        if record.state in PENDING_STATES:
            self.pending += 1
            self.pending_msat += msat

    def add_group(self, state: str, currency: str, count: int, amount_msat: int,
                  tip_msat: int, amount_minor: int, tipped: int, tip_minor: int) -> None:
        """`add` for `count` sales of one state and currency at once, given their sums (the
        books count with SQL): `amount_msat` and `tip_msat` with a missing value as 0,
        `tipped` how many have a tip in minor units, `tip_minor` the sum of those."""
        self.sales += count
        if state in FAILED_STATES:
            self.failed += count
        if state not in TAKEN_STATES:
            return
        self.taken += count
        self.taken_msat += amount_msat
        self.tips_msat += tip_msat
        self.minor[currency] = self.minor.get(currency, 0) + amount_minor
        if tipped:
            self.tips_minor[currency] = self.tips_minor.get(currency, 0) + tip_minor
        if state in PENDING_STATES:
            self.pending += count
            self.pending_msat += amount_msat

    def merge(self, other: Totals) -> None:
        """Count `other`'s sales too (totals of disjoint sets of sales add up field by field)."""
        self.sales += other.sales
        self.taken += other.taken
        self.taken_msat += other.taken_msat
        self.tips_msat += other.tips_msat
        self.pending += other.pending
        self.pending_msat += other.pending_msat
        self.failed += other.failed
        for mine, theirs in ((self.minor, other.minor), (self.tips_minor, other.tips_minor)):
            for code, value in theirs.items():
                mine[code] = mine.get(code, 0) + value


def totals(records: Iterable[Countable]) -> Totals:
    result = Totals()
    for record in records:
        result.add(record)
    return result


def totals_by_day(records: Iterable[Countable], tz: dt.tzinfo | None = None
                  ) -> dict[dt.date, Totals]:
    days: dict[dt.date, Totals] = {}
    for record in records:
        days.setdefault(local_day(sale_time(record), tz), Totals()).add(record)
    return dict(sorted(days.items()))


def totals_by_card(records: Iterable[Countable]) -> dict[str, Totals]:
    cards: dict[str, Totals] = {}
    for record in records:
        if record.card_id:
            cards.setdefault(record.card_id, Totals()).add(record)
    return dict(sorted(cards.items()))

