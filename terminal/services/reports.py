"""Shift and day reports as the counter uses them: an X report (the shift so far), a Z report
(closes the shift: the next one starts where it ended), a day report; the same for the screen,
the receipt printer and `flash-terminal report` (service layer: the books come in as a port).

Shift boundaries are kept in the books' meta table (`META_SHIFT`: the open shift's number and
start; `META_CLOSES`: the last closes, so a past Z can be printed again), written in one
transaction with the close, so a power cut leaves the shift either open or closed, never half.
Before the first Z the first shift starts at the books' first sale.

Refunds: `Reports.refunds_between` is the one place refunds enter reports: the refunds SENT in
the period (by the time they were sent, so a Z report counts the refunds its shift paid out, of
whichever day's sales), read from the books (`terminal.core.refunds`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from terminal.core.history import SaleQuery
from terminal.core.ports.books import ReportBooks
from terminal.core.reports import Period, RefundLine, SalesReport, build_report
from terminal.core.totals import day_bounds, local_day

log = logging.getLogger(__name__)

META_SHIFT = "shift"  # {"number": n, "opened_at": ts}: the shift in progress
META_CLOSES = "shift.closes"  # [{"number", "from", "to", "at"}, …], newest last
MAX_CLOSES_KEPT = 400  # more than a year of daily Z reports


class ShiftError(Exception):
    """A shift cannot be closed now (the message says why)."""


@dataclass(frozen=True)
class OpenShift:
    number: int
    opened_at: float | None  # None: no Z yet and no sale yet


@dataclass(frozen=True)
class Close:
    number: int
    start: float
    end: float


class Reports:
    def __init__(self, books: ReportBooks, *, clock: Callable[[], float] = time.time,
                 tz: dt.tzinfo | None = None) -> None:
        self.books = books
        self.clock = clock
        self.tz = tz

    # -- refunds: the one place they enter reports -----------------------------------------
    def refunds_between(self, start: float, end: float) -> list[RefundLine]:
        """The refunds sent in [start, end), from the books (one `RefundLine` each: when it
        was sent, how much, which sale, who refunded it). Pending and failed refunds are not
        counted: a pending one is counted once it is sent."""
        return [RefundLine(r.sent_at, r.amount_msat, r.sale_id, r.cashier)
                for r in self.books.refunds_between(start, end) if r.sent_at is not None]

    # -- shifts -----------------------------------------------------------------------------
    def open_shift(self) -> OpenShift:
        kept = self.books.get_meta(META_SHIFT)
        if isinstance(kept, dict):
            try:
                return OpenShift(int(kept["number"]), float(kept["opened_at"]))
            except (KeyError, TypeError, ValueError):
                log.warning("the kept shift boundary is unreadable: counting from the first sale")
        return OpenShift(1, self._first_sale_at())

    def _first_sale_at(self) -> float | None:
        first = next(iter(self.books.sales_matching(SaleQuery())), None)
        return first.created_at if first is not None else None

    def closes(self) -> list[Close]:
        kept = self.books.get_meta(META_CLOSES, [])
        out = []
        for doc in kept if isinstance(kept, list) else []:
            try:
                out.append(Close(int(doc["number"]), float(doc["from"]), float(doc["to"])))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def shift(self, *, close: bool = False, cashier: str | None = None) -> SalesReport:
        """The shift so far (X), or (`close`) its Z: the shift ends now and the next begins."""
        now = self.clock()
        shift = self.open_shift()
        start = min(shift.opened_at, now) if shift.opened_at is not None else now
        period = Period(start, now, "shift", shift.number, closed=close)
        report = self._report(period, cashier)
        if close:
            if cashier is not None:
                raise ShiftError("a shift closes for every cashier at once: leave out --cashier")
            self._close(shift.number, start, now)
        return report

    def _close(self, number: int, start: float, end: float) -> None:
        closes = [{"number": c.number, "from": c.start, "to": c.end} for c in self.closes()]
        closes.append({"number": number, "from": start, "to": end})
        with self.books.transaction():  # the close and the next shift's start: all or nothing
            self.books.set_meta(META_CLOSES, closes[-MAX_CLOSES_KEPT:])
            self.books.set_meta(META_SHIFT, {"number": number + 1, "opened_at": end})

    def closed_shift(self, number: int) -> SalesReport | None:
        """A past Z again (as the books have its sales now)."""
        for c in self.closes():
            if c.number == number:
                return self._report(Period(c.start, c.end, "shift", c.number, closed=True), None)
        return None

    # -- days -------------------------------------------------------------------------------
    def day(self, day: dt.date, *, cashier: str | None = None) -> SalesReport:
        start, end = day_bounds(day, self.tz)
        return self._report(Period(start, end, "day"), cashier)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), tz=self.tz).date()

    def _report(self, period: Period, cashier: str | None) -> SalesReport:
        # Streamed from the books by local dates (constant memory), then held to the exact
        # [start, end) of the period by `build_report`.
        query = SaleQuery(date_from=local_day(period.start, self.tz),
                          date_to=local_day(max(period.start, period.end - 1e-6), self.tz),
                          tz=self.tz)
        rows = self.books.sales_matching(query)
        return build_report(rows, period, refunds=self.refunds_between(period.start, period.end),
                            tz=self.tz, cashier=cashier)
