"""Shift and day reports (core: no I/O): what a period of sales adds up to, overall and per
payment method, cashier and currency, with the hourly bars the screen draws.

Every number comes from the one counting rule, `terminal.core.totals` (taken = paid, or accepted
offline and not settled yet; failures count only as attempts; a sale belongs to the moment it was
rung up). A report over [start, end) therefore equals the sum over `history --export json` of the
same sales. Refunds are subtracted for the net: they come from a refunds source (see
`terminal.services.reports.Reports.refunds_between`), as `RefundLine`s.

The JSON shape is the command line's contract (`flash-terminal report --json`):

    {"from", "to", "sales", "gross_msat", "tips_msat", "refunds_msat", "net_msat",
     "by_method": {…}, "by_cashier": {…}, "by_currency": {…}, "queued_msat", "failed": N}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from terminal.core.cashiers import NO_CASHIER
from terminal.core.money import Msat, format_msat
from terminal.core.totals import Countable, Totals, sale_time

UNKNOWN_METHOD = "unknown"
HOUR_S = 3600
MAX_HOURLY_BARS = 24  # longer periods are drawn by hour of the day


class ReportRow(Countable, Protocol):
    """What a report reads of a sale (a `SaleRecord` has it all)."""

    @property
    def method(self) -> str | None: ...
    @property
    def cashier(self) -> str | None: ...


@dataclass(frozen=True)
class RefundLine:
    """One refund paid out in the period (by the time it was sent)."""

    at: float
    amount_msat: int
    sale_id: str = ""
    cashier: str | None = None


@dataclass(frozen=True)
class HourBar:
    """One bar of the chart: the sales taken in one hour (`label` "09" is 09:00–10:00)."""

    start: float | None  # the hour's start (None: an hour of the day over a long period)
    label: str
    taken: int
    taken_msat: int


@dataclass(frozen=True)
class Period:
    start: float
    end: float
    kind: str = "day"  # "day" | "shift"
    shift: int | None = None  # the shift's number (1 for the books' first)
    closed: bool = False  # a Z report: the shift ended at `end`

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a report's period ends before it starts")

    def holds(self, at: float) -> bool:
        return self.start <= at < self.end


def iso(timestamp: float, tz: dt.tzinfo | None = None) -> str:
    """Local time with its offset, to the second ("2024-05-01T09:00:00-05:00")."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=tz)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.isoformat(timespec="seconds")


@dataclass
class SalesReport:
    period: Period
    tz: dt.tzinfo | None = None
    total: Totals = field(default_factory=Totals)
    by_method: dict[str, Totals] = field(default_factory=dict)
    by_cashier: dict[str, Totals] = field(default_factory=dict)
    by_currency: dict[str, Totals] = field(default_factory=dict)
    refunds: list[RefundLine] = field(default_factory=list)
    hourly: list[HourBar] = field(default_factory=list)

    # -- what it adds up to ---------------------------------------------------------------
    @property
    def refunds_msat(self) -> int:
        return sum(r.amount_msat for r in self.refunds)

    @property
    def net_msat(self) -> int:
        return self.total.taken_msat - self.refunds_msat

    def cashier_refunds_msat(self, cashier: str) -> int:
        return sum(r.amount_msat for r in self.refunds if (r.cashier or NO_CASHIER) == cashier)

    @property
    def cashiers(self) -> list[str]:
        """Every cashier with a sale taken or a refund in the period (no one: `NO_CASHIER`)."""
        named = {c for c, t in self.by_cashier.items() if t.taken}
        named |= {r.cashier or NO_CASHIER for r in self.refunds}
        return sorted(named)

    @property
    def title(self) -> str:
        p = self.period
        if p.kind == "shift":
            return f"{'Z' if p.closed else 'X'} report, shift {p.shift}"
        return f"Day report {dt.datetime.fromtimestamp(p.start, tz=self.tz).date().isoformat()}"

    # -- the command line's contract --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        t = self.total
        return {
            "from": iso(self.period.start, self.tz),
            "to": iso(self.period.end, self.tz),
            "sales": t.taken,
            "gross_msat": t.taken_msat,
            "tips_msat": t.tips_msat,
            "refunds_msat": self.refunds_msat,
            "net_msat": self.net_msat,
            "by_method": {m: _group(g) for m, g in sorted(self.by_method.items()) if g.taken},
            "by_cashier": {c: {**_group(self.by_cashier.get(c, Totals())),
                               "refunds_msat": self.cashier_refunds_msat(c)}
                           for c in self.cashiers},
            "by_currency": {code: {**_group(g), "gross_minor": g.minor.get(code, 0),
                                   "tips_minor": g.tips_minor.get(code, 0)}
                            for code, g in sorted(self.by_currency.items()) if g.taken},
            "queued_msat": t.pending_msat,
            "failed": t.failed,
        }

    @property
    def main_line(self) -> str:
        """One line, as the demo script and the console say it."""
        t = self.total
        line = (f"{self.title}: {t.taken} sales, {format_msat(Msat(t.taken_msat))}"
                f" (tips {format_msat(Msat(t.tips_msat))})")
        if self.refunds:
            line += f", refunds {format_msat(Msat(self.refunds_msat))}"
        if self.total.pending:
            line += f", {self.total.pending} offline not settled yet"
        return line


def _group(t: Totals) -> dict[str, int]:
    return {"sales": t.taken, "gross_msat": t.taken_msat, "tips_msat": t.tips_msat}


def build_report(rows: Iterable[ReportRow], period: Period, *,
                 refunds: Iterable[RefundLine] = (), tz: dt.tzinfo | None = None,
                 cashier: str | None = None) -> SalesReport:
    """The report of the sales rung up in `period` (rows outside it are left out), optionally
    of one cashier only (`NO_CASHIER` for sales nobody was signed in for). One pass over `rows`,
    memory by groups, not by sales: a stream of any length will do."""
    report = SalesReport(period, tz)
    chart = HourlyChart(period, tz)
    for row in rows:
        if not period.holds(sale_time(row)):
            continue
        who = row.cashier or NO_CASHIER
        if cashier is not None and who != cashier:
            continue
        report.total.add(row)
        report.by_method.setdefault(row.method or UNKNOWN_METHOD, Totals()).add(row)
        report.by_cashier.setdefault(who, Totals()).add(row)
        report.by_currency.setdefault(row.currency, Totals()).add(row)
        chart.add(row)
    report.refunds = sorted(
        (r for r in refunds if period.holds(r.at)
         and (cashier is None or (r.cashier or NO_CASHIER) == cashier)),
        key=lambda r: r.at)
    report.hourly = chart.bars()
    return report


class HourlyChart:
    """Sales taken per hour: one bar per clock hour of the period, or (for a period longer
    than a day) one per hour of the day, 00 to 23."""

    def __init__(self, period: Period, tz: dt.tzinfo | None = None) -> None:
        self.tz = tz
        first = _hour_floor(period.start, tz)
        hours: list[float] = []
        at = first
        while at < period.end and len(hours) <= MAX_HOURLY_BARS:
            hours.append(at)
            at = _next_hour(at, tz)
        self.hours = hours or [first]
        self.by_clock = len(self.hours) <= MAX_HOURLY_BARS
        keys: list[Any] = self.hours if self.by_clock else list(range(24))
        self._bars: dict[Any, Totals] = {k: Totals() for k in keys}

    def add(self, row: Countable) -> None:
        when = sale_time(row)
        key: Any = _hour_floor(when, self.tz) if self.by_clock else _local(when, self.tz).hour
        bar = self._bars.get(key)
        if bar is not None:
            bar.add(row)

    def bars(self) -> list[HourBar]:
        if self.by_clock:
            return [HourBar(h, f"{_local(h, self.tz).hour:02d}", self._bars[h].taken,
                            self._bars[h].taken_msat) for h in self.hours]
        return [HourBar(None, f"{h:02d}", self._bars[h].taken, self._bars[h].taken_msat)
                for h in range(24)]


def hourly(rows: Iterable[Countable], period: Period, tz: dt.tzinfo | None = None
           ) -> list[HourBar]:
    chart = HourlyChart(period, tz)
    for row in rows:
        if period.holds(sale_time(row)):
            chart.add(row)
    return chart.bars()


def _local(timestamp: float, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=tz)


def _hour_floor(timestamp: float, tz: dt.tzinfo | None) -> float:
    moment = _local(timestamp, tz)
    return moment.replace(minute=0, second=0, microsecond=0).timestamp()


def _next_hour(timestamp: float, tz: dt.tzinfo | None) -> float:
    # An hour on in absolute time, floored: a DST change repeats or skips a local hour's label.
    return _hour_floor(timestamp + HOUR_S, tz)
