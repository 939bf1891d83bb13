"""The Reports screen as the till has it: the shift so far (X), a day (‹ day ›), closing the
shift (Z: a manager's), printing; the summary lines and the bars of sales per hour that the
screen draws. Numbers come from `terminal.services.reports` (the one counting rule)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.history import totals_text
from terminal.app.ui.viewmodels.observable import Observable
from terminal.core.cashiers import NO_CASHIER
from terminal.core.money import Msat, format_msat
from terminal.core.ports.receipts import PrintOutcome
from terminal.core.reports import SalesReport
from terminal.core.totals import Totals
from terminal.services.till import Till

METHOD_NAMES = {"card": "report.method.card", "qr": "report.method.qr"}


@dataclass(frozen=True)
class Bar:
    label: str  # "09"
    taken: int
    msat: int
    height: float  # 0..1 of the tallest bar
    text: str  # "3 · 12,000 sats" (empty for an empty hour)


class ReportViewModel(Observable):
    def __init__(self, till: Till, *, manager: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self.till = till
        self.manager = manager  # a manager's rights right now (the controller knows)
        self.mode = "shift"  # "shift" | "day"
        self.day = till.today()
        self.report: SalesReport | None = None
        self.message = ""

    # -- choosing ---------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.till.reports is not None

    def show_shift(self) -> None:
        self.mode, self.message = "shift", ""
        self.reload()

    def show_day(self, day: dt.date | None = None) -> None:
        self.mode, self.message = "day", ""
        self.day = min(day or self.day, self.till.today())
        self.reload()

    def previous_day(self) -> None:
        self.show_day(self.day - dt.timedelta(days=1))

    def next_day(self) -> None:
        self.show_day(self.day + dt.timedelta(days=1))

    def reload(self) -> None:
        reports = self.till.reports
        if reports is None:
            self.report = None
        elif self.mode == "shift":
            self.report = reports.shift()
        else:
            self.report = reports.day(self.day)
        self.changed()

    @property
    def is_today(self) -> bool:
        return self.day >= self.till.today()

    # -- what is shown ----------------------------------------------------------------------
    @property
    def title(self) -> str:
        if self.report is None:
            return t("report.none")
        if self.mode == "day" and self.day == self.till.today():
            return t("report.today")
        return self.report.title

    @property
    def period_text(self) -> str:
        report = self.report
        if report is None:
            return ""
        start = dt.datetime.fromtimestamp(report.period.start, tz=self.till.tz)
        end = dt.datetime.fromtimestamp(report.period.end, tz=self.till.tz)
        same_day = start.date() == end.date()
        return t("report.period", start=start.strftime("%a %d %b %H:%M"),
                 end=end.strftime("%H:%M" if same_day else "%a %d %b %H:%M"))

    @property
    def main_line(self) -> str:
        return self.report.main_line if self.report is not None else t("report.none")

    def lines(self) -> list[str]:
        """The summary: totals, tips, refunds, net, per method and cashier, offline, failed."""
        report = self.report
        if report is None:
            return []
        total = report.total
        lines = [totals_text(total),
                 t("report.tips", amount=format_msat(Msat(total.tips_msat))),
                 t("report.refunds", amount=format_msat(Msat(report.refunds_msat))),
                 t("report.net", amount=format_msat(Msat(report.net_msat)))]
        for method, group in sorted(report.by_method.items()):
            if group.taken:
                name = t(METHOD_NAMES[method]) if method in METHOD_NAMES else method
                lines.append(t("report.group", name=name, text=_short(group)))
        cashiers = report.cashiers
        if cashiers and cashiers != [NO_CASHIER]:
            for who in cashiers:
                group = report.by_cashier.get(who) or Totals()
                cashier = self.till.staff.roster.get(who)
                name = cashier.name if cashier is not None else (
                    t("report.no_cashier") if who == NO_CASHIER else who)
                text = _short(group)
                if group.tips_msat:
                    text += " · " + t("report.cashier_tips",
                                      amount=format_msat(Msat(group.tips_msat)))
                lines.append(t("report.group", name=name, text=text))
        if total.failed:
            lines.append(t("report.failed", count=total.failed))
        return lines

    def bars(self) -> list[Bar]:
        report = self.report
        if report is None:
            return []
        tallest = max((b.taken_msat for b in report.hourly), default=0)
        return [Bar(b.label, b.taken, b.taken_msat,
                    b.taken_msat / tallest if tallest else 0.0,
                    f"{b.taken} · {format_msat(Msat(b.taken_msat))}" if b.taken else "")
                for b in report.hourly]

    @property
    def can_close(self) -> bool:
        """Closing a shift (Z) is a manager's, and only between sales."""
        return self.mode == "shift" and self.available and self.manager() \
            and self.till.between_sales

    # -- actions ----------------------------------------------------------------------------
    async def close_shift(self) -> SalesReport | None:
        """The Z: closes the shift (the next one starts now) and prints it."""
        reports = self.till.reports
        if reports is None or not self.can_close:
            self.message = t("report.close.manager")
            self.changed()
            return None
        z = reports.shift(close=True)
        self.report = z
        self.message = t("report.closed", shift=z.period.shift)
        self.changed()
        await self.print_report()
        return z

    async def print_report(self) -> str:
        if self.report is None:
            return ""
        outcome = (await self.till.print_report(self.report)).outcome
        key = {PrintOutcome.PRINTED: "result.printed", PrintOutcome.SHOWN: "result.shown",
               PrintOutcome.NO_PRINTER: "result.no_printer",
               PrintOutcome.PAPER_OUT: "result.paper_out",
               PrintOutcome.OFFLINE: "result.printer_offline"}.get(outcome,
                                                                   "result.printer_error")
        words = t(key)
        self.message = f"{self.message} · {words}" if self.message else words
        self.changed()
        return words


def _short(group: Totals) -> str:
    return f"{group.taken} · {format_msat(Msat(group.taken_msat))}"
