"""Receipts: a sale, a refund, a shift or day report (or a day of sales) laid out for the receipt
printer.

This module decides what a receipt says; `hw.printer` decides how ESC/POS prints it. Receipts are
built from `SaleRecord`s alone, so a reprint from history says exactly what the first print said.

    doc = sale_receipt(record, merchant=config.name)
    result = printer.print(doc)                  # hw.printer.SerialPrinter, never raises
    summary = daily_summary(ledger_records, day)  # end-of-shift totals per method
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from hw.printer import (
    Align,
    Feed,
    Pair,
    PrinterStatus,
    PrintResult,
    Receipt,
    Rule,
    SerialPrinter,
    Text,
    as_text,
)
from terminal.core.cashiers import NO_CASHIER
from terminal.core.money import SAT_PER_BTC, Money, Msat, currency, format_money, format_msat
from terminal.core.ports.receipts import PrintOutcome, PrintReport
from terminal.core.records import SaleRecord, short_card_id
from terminal.core.refunds import RefundRecord, RefundState
from terminal.core.reports import SalesReport
from terminal.core.sale import SaleState
from terminal.core.totals import Totals, is_taken, local_day, sale_time

HASH_PREFIX_CHARS = 16  # enough to find the payment in any wallet or backend

METHOD_LABELS = {"card": "Boltcard", "qr": "Lightning QR"}
STATE_BANNERS = {
    SaleState.QUEUED.value: "ACCEPTED OFFLINE - settles when online",
    SaleState.SUBMITTED.value: "ACCEPTED OFFLINE - settling",
}


def _local(ts: float, tz: dt.tzinfo | None) -> dt.datetime:
    """Wall-clock time in `tz` (the terminal's local zone when None)."""
    if tz is None:
        return dt.datetime.fromtimestamp(ts).astimezone()
    return dt.datetime.fromtimestamp(ts, tz=tz)


def paid_at(record: SaleRecord) -> float:
    """When the sale reached its final (or offline-accepted) state, else when it was made."""
    for change in reversed(record.history):
        if change.to_state == record.state:
            return change.at
    return record.updated_at or record.created_at


def fiat_amount(record: SaleRecord) -> Money:
    return Money(record.amount_minor, currency(record.currency))


def rate_text(record: SaleRecord) -> str | None:
    """"$65,432.10/BTC": the price the sale was made at, in the sale's currency."""
    if record.currency.upper() in ("SAT", "SATS") or not record.rate_minor_per_sat:
        return None
    try:
        per_sat = Decimal(record.rate_minor_per_sat)
    except InvalidOperation:
        return None
    if not per_sat.is_finite() or per_sat <= 0:
        return None
    per_btc = int((per_sat * SAT_PER_BTC).to_integral_value())
    return f"{format_money(Money(per_btc, currency(record.currency)))}/BTC"


def method_text(record: SaleRecord) -> str:
    """"Boltcard sandbox card c0ffeec0", "Lightning QR" (never the card's UID: only its keyed
    card id, shortened as every screen shows it: `short_card_id`)."""
    label = METHOD_LABELS.get(record.method or "", record.method or "unknown")
    if record.method == "card":
        parts = [label]
        if record.issuer:
            parts.append(record.issuer)
        if record.card_id:
            parts.append("card " + short_card_id(record.card_id))
        return " ".join(parts)
    return label


def sale_receipt(
    record: SaleRecord,
    *,
    merchant: str,
    terminal_id: str | None = None,
    tz: dt.tzinfo | None = None,
    reprint: bool = False,
) -> Receipt:
    """The customer receipt for one sale."""
    when = _local(paid_at(record), tz)
    lines: list = [
        Text(merchant, Align.CENTER, bold=True, large=True),
        Text(when.strftime("%Y-%m-%d %H:%M:%S"), Align.CENTER),
    ]
    if reprint:
        lines.append(Text("** REPRINT **", Align.CENTER, bold=True))
    lines.append(Rule())
    fiat = fiat_amount(record)
    if record.tip_minor:
        tip = Money(record.tip_minor, fiat.currency)
        lines.append(Pair("Sale", format_money(Money(fiat.minor - tip.minor, fiat.currency))))
        lines.append(Pair("Tip", format_money(tip)))
    lines.append(Pair("Total" if record.tip_minor else "Amount", format_money(fiat), bold=True))
    if record.amount_msat is not None and not fiat.currency.is_sat:
        lines.append(Pair("", format_msat(Msat(record.amount_msat))))
    rate = rate_text(record)
    if rate:
        lines.append(Pair("Rate", rate))
    lines.append(Pair("Paid by", method_text(record)))
    if record.card_balance_msat is not None and record.method == "card":
        # Only there when the merchant opted in ([ui] show_card_balance) and the issuer said.
        lines.append(Pair("Card balance", format_msat(Msat(record.card_balance_msat))))
    if record.cashier:
        lines.append(Pair("Cashier", record.cashier))
    if record.memo:
        lines.append(Pair("Memo", record.memo))
    lines.append(Rule())
    if record.payment_hash:
        lines.append(Pair("Payment", record.payment_hash[:HASH_PREFIX_CHARS]))
    lines.append(Pair("Sale", record.id[:HASH_PREFIX_CHARS]))
    tid = terminal_id or record.terminal_id
    if tid:
        lines.append(Pair("Terminal", tid))
    banner = STATE_BANNERS.get(record.state)
    if banner is None and record.state != SaleState.PAID.value:
        banner = f"NOT PAID ({record.state.upper()})"
    lines.append(Feed())
    lines.append(Text(banner or "PAID - thank you", Align.CENTER, bold=True))
    return Receipt(tuple(lines))


# -- refund slips ----------------------------------------------------------------------------

REFUND_BANNERS = {
    RefundState.SENT.value: "REFUNDED",
    RefundState.PENDING.value: "REFUND SENT - NOT CONFIRMED YET",
    RefundState.SENDING.value: "REFUND SENT - NOT CONFIRMED YET",
    RefundState.FAILED.value: "REFUND FAILED - NOTHING SENT",
}
DESTINATION_LABELS = {"card": "Card", "address": "Address", "lnurl": "LNURL-pay",
                      "bolt11": "Invoice", "pull-payment": "Claim link"}


def refund_slip(
    refund: RefundRecord,
    sale: SaleRecord | None,
    *,
    merchant: str,
    terminal_id: str | None = None,
    tz: dt.tzinfo | None = None,
    reprint: bool = False,
) -> Receipt:
    """The slip of one refund (for the customer, and the drawer): how much went back, where,
    of which sale, and whether it is confirmed."""
    when = _local(refund.sent_at or refund.updated_at or refund.created_at, tz)
    lines: list = [
        Text(merchant, Align.CENTER, bold=True, large=True),
        Text("REFUND", Align.CENTER, bold=True, large=True),
        Text(when.strftime("%Y-%m-%d %H:%M:%S"), Align.CENTER),
    ]
    if reprint:
        lines.append(Text("** REPRINT **", Align.CENTER, bold=True))
    lines.append(Rule())
    if refund.currency and refund.amount_minor is not None and refund.currency != "SAT":
        lines.append(Pair("Refund", format_money(Money(refund.amount_minor,
                                                        currency(refund.currency))), bold=True))
        lines.append(Pair("", format_msat(Msat(refund.amount_msat))))
    else:
        lines.append(Pair("Refund", format_msat(Msat(refund.amount_msat)), bold=True))
    label = DESTINATION_LABELS.get(refund.destination, refund.destination)
    if refund.target:
        lines.append(Pair("To", f"{label} {refund.target}" if refund.destination != "card"
                          else refund.target))
    if sale is not None:
        lines.append(Pair("Of sale", format_money(fiat_amount(sale))))
        lines.append(Pair("Sold", _local(sale.created_at, tz).strftime("%Y-%m-%d %H:%M")))
        if sale.refunded_msat:
            lines.append(Pair("Refunded so far", format_msat(Msat(sale.refunded_msat))))
    if refund.cashier:
        lines.append(Pair("Refunded by", refund.cashier))
    lines.append(Rule())
    if refund.payment_hash:
        lines.append(Pair("Payment", refund.payment_hash[:HASH_PREFIX_CHARS]))
    lines.append(Pair("Refund", refund.id[:HASH_PREFIX_CHARS]))
    lines.append(Pair("Sale", refund.sale_id[:HASH_PREFIX_CHARS]))
    tid = terminal_id or refund.terminal_id
    if tid:
        lines.append(Pair("Terminal", tid))
    if refund.claim_link and refund.state == RefundState.SENT.value:
        lines.append(Rule())
        lines.append(Text("Claim with a Lightning wallet:", bold=True))
        lines.append(Text(refund.claim_link))
    if refund.state == RefundState.FAILED.value and refund.message:
        lines.append(Rule())
        lines.append(Text(refund.message))
    lines.append(Feed())
    lines.append(Text(REFUND_BANNERS.get(refund.state, refund.state.upper()), Align.CENTER,
                      bold=True))
    return Receipt(tuple(lines))


# -- end-of-shift summary --------------------------------------------------------------------


@dataclass
class MethodTotals:
    count: int = 0
    msat: int = 0
    fiat_minor: dict[str, int] = field(default_factory=dict)  # currency code -> minor units

    def add(self, record: SaleRecord) -> None:
        self.count += 1
        self.msat += record.amount_msat or 0
        code = record.currency.upper()
        self.fiat_minor[code] = self.fiat_minor.get(code, 0) + record.amount_minor

    def fiat(self) -> list[Money]:
        return [Money(v, currency(k)) for k, v in sorted(self.fiat_minor.items())]


@dataclass
class DailySummary:
    day: dt.date
    by_method: dict[str, MethodTotals] = field(default_factory=dict)
    offline_pending: MethodTotals = field(default_factory=MethodTotals)  # in by_method too

    @property
    def total(self) -> MethodTotals:
        total = MethodTotals()
        for t in self.by_method.values():
            total.count += t.count
            total.msat += t.msat
            for code, minor in t.fiat_minor.items():
                total.fiat_minor[code] = total.fiat_minor.get(code, 0) + minor
        return total


def summarize(
    records: Iterable[SaleRecord], day: dt.date, *, tz: dt.tzinfo | None = None
) -> DailySummary:
    """Counts and totals per method for the sales taken on `day` (`terminal.core.totals`)."""
    summary = DailySummary(day)
    for record in records:
        if not is_taken(record) or local_day(sale_time(record), tz) != day:
            continue
        method = record.method or "unknown"
        summary.by_method.setdefault(method, MethodTotals()).add(record)
        if record.state != SaleState.PAID.value:
            summary.offline_pending.add(record)
    return summary


def _totals_lines(totals: MethodTotals) -> list:
    lines: list = [Pair("  Sales", str(totals.count))]
    for money in totals.fiat():
        if not money.currency.is_sat:
            lines.append(Pair("  Amount", format_money(money)))
    lines.append(Pair("  Sats", format_msat(Msat(totals.msat))))
    return lines


def daily_summary(
    records: Iterable[SaleRecord],
    day: dt.date,
    *,
    merchant: str,
    terminal_id: str | None = None,
    tz: dt.tzinfo | None = None,
    printed_at: float | None = None,
) -> Receipt:
    """The end-of-shift slip: count and totals per method, in fiat and sats."""
    summary = summarize(records, day, tz=tz)
    lines: list = [
        Text(merchant, Align.CENTER, bold=True, large=True),
        Text(f"Daily summary {day.isoformat()}", Align.CENTER, bold=True),
    ]
    if terminal_id:
        lines.append(Text(f"Terminal {terminal_id}", Align.CENTER))
    lines.append(Rule())
    for method in sorted(summary.by_method):
        lines.append(Text(METHOD_LABELS.get(method, method), bold=True))
        lines.extend(_totals_lines(summary.by_method[method]))
    if not summary.by_method:
        lines.append(Text("No sales", Align.CENTER))
    lines.append(Rule("="))
    lines.append(Text("Total", bold=True))
    lines.extend(_totals_lines(summary.total))
    if summary.offline_pending.count:
        lines.append(Rule())
        lines.append(Text("Of which accepted offline, not yet settled:", bold=True))
        lines.extend(_totals_lines(summary.offline_pending))
    if printed_at is not None:
        lines.append(Feed())
        stamp = _local(printed_at, tz).strftime("%Y-%m-%d %H:%M")
        lines.append(Text(f"Printed {stamp}", Align.CENTER))
    return Receipt(tuple(lines))


# -- shift and day reports (terminal.core.reports) -------------------------------------------


def _sats(msat: int) -> str:
    return format_msat(Msat(msat))


def report_slip(
    report: SalesReport,
    *,
    merchant: str = "",
    terminal_id: str | None = None,
    printed_at: float | None = None,
) -> Receipt:
    """An X, Z or day report for the receipt printer (and, as text, the console): the same
    numbers as `report.to_json()`, from the one counting rule."""
    tz = report.tz
    total = report.total
    lines: list = []
    if merchant:
        lines.append(Text(merchant, Align.CENTER, bold=True, large=True))
    lines.append(Text(report.title, Align.CENTER, bold=True))
    lines.append(Pair("From", _local(report.period.start, tz).strftime("%Y-%m-%d %H:%M")))
    lines.append(Pair("To", _local(report.period.end, tz).strftime("%Y-%m-%d %H:%M")))
    if terminal_id:
        lines.append(Pair("Terminal", terminal_id))
    lines.append(Rule())
    lines.append(Pair("Sales", str(total.taken), bold=True))
    lines.append(Pair("Gross", _sats(total.taken_msat), bold=True))
    for code, group in sorted(report.by_currency.items()):
        if group.taken and code != "SAT":
            lines.append(Pair(f"  in {code}", format_money(Money(group.minor.get(code, 0),
                                                                   currency(code)))))
    lines.append(Pair("Tips", _sats(total.tips_msat)))
    lines.append(Pair("Refunds", _sats(report.refunds_msat)))
    lines.append(Pair("Net", _sats(report.net_msat), bold=True))
    methods = [(m, g) for m, g in sorted(report.by_method.items()) if g.taken]
    if methods:
        lines.append(Rule())
        lines.append(Text("By method", bold=True))
        for method, group in methods:
            lines.append(Pair(f"  {METHOD_LABELS.get(method, method)} ({group.taken})",
                              _sats(group.taken_msat)))
    cashiers = report.cashiers
    if cashiers and cashiers != [NO_CASHIER]:
        lines.append(Rule())
        lines.append(Text("By cashier", bold=True))
        for who in cashiers:
            mine = report.by_cashier.get(who) or Totals()
            lines.append(Pair(f"  {who} ({mine.taken})", _sats(mine.taken_msat)))
            if mine.tips_msat:
                lines.append(Pair("    tips", _sats(mine.tips_msat)))
            refunded = report.cashier_refunds_msat(who)
            if refunded:
                lines.append(Pair("    refunds", _sats(refunded)))
    lines.append(Rule())
    if total.pending:
        lines.append(Pair(f"Offline, not settled ({total.pending})", _sats(total.pending_msat)))
    lines.append(Pair("Failed attempts", str(total.failed)))
    if report.period.closed:
        lines.append(Feed())
        lines.append(Text("SHIFT CLOSED", Align.CENTER, bold=True))
    if printed_at is not None:
        lines.append(Feed())
        lines.append(Text(f"Printed {_local(printed_at, tz).strftime('%Y-%m-%d %H:%M')}",
                          Align.CENTER))
    return Receipt(tuple(lines))


def report_lines(report: SalesReport, width: int = 48) -> list[str]:
    """The report as the console shows it (the slip's own text)."""
    return as_text(report_slip(report), width).splitlines()


async def print_receipt(printer: SerialPrinter | None, doc: Receipt) -> PrintResult:
    """Print off the event loop; a missing or failing printer only changes the result."""
    if printer is None:
        return PrintResult(PrinterStatus.DISABLED, "printing is switched off")
    return await asyncio.to_thread(printer.print, doc)


def status_text(result: PrintResult) -> str:
    """Short text for the status bar."""
    if result.status is PrinterStatus.OK:
        return "Printer: paper low" if result.paper_low else "Printer: ready"
    return {
        PrinterStatus.OFFLINE: "Printer offline",
        PrinterStatus.PAPER_OUT: "Printer: out of paper",
        PrinterStatus.DISABLED: "Printer off",
    }.get(result.status, "Printer error")


_OUTCOMES = {
    PrinterStatus.OK: PrintOutcome.PRINTED,
    PrinterStatus.OFFLINE: PrintOutcome.OFFLINE,
    PrinterStatus.PAPER_OUT: PrintOutcome.PAPER_OUT,
    PrinterStatus.ERROR: PrintOutcome.ERROR,
    PrinterStatus.DISABLED: PrintOutcome.NO_PRINTER,
}


class Receipts:
    """The till's receipts (`terminal.core.ports.receipts.ReceiptPort`): laid out here, printed
    on the serial printer when there is one, otherwise handed to `sink` (the demo's console) or
    reported as "no printer"."""

    def __init__(self, printer: SerialPrinter | None, *, merchant: str,
                 terminal_id: str | None = None, width: int = 32,
                 sink: Callable[[str], None] | None = None,
                 tz: dt.tzinfo | None = None) -> None:
        self.printer = printer
        self.merchant = merchant
        self.terminal_id = terminal_id
        self.width = width
        self.sink = sink
        self.tz = tz

    @property
    def has_printer(self) -> bool:
        return self.printer is not None

    def _doc(self, record: SaleRecord, reprint: bool) -> Receipt:
        return sale_receipt(record, merchant=self.merchant, terminal_id=self.terminal_id,
                            tz=self.tz, reprint=reprint)

    def sale_text(self, record: SaleRecord, *, reprint: bool = False) -> str:
        return as_text(self._doc(record, reprint), self.width)

    def report_text(self, report: SalesReport) -> str:
        return as_text(report_slip(report, merchant=self.merchant,
                                   terminal_id=self.terminal_id), self.width)

    async def print_report(self, report: SalesReport, *,
                           printed_at: float | None = None) -> PrintReport:
        """Print an X, Z or day report (or hand it to the sink without a printer)."""
        slip = report_slip(report, merchant=self.merchant, terminal_id=self.terminal_id,
                           printed_at=printed_at)
        if self.printer is None:
            if self.sink is None:
                return PrintReport(PrintOutcome.NO_PRINTER)
            self.sink(as_text(slip, self.width))
            return PrintReport(PrintOutcome.SHOWN)
        result = await print_receipt(self.printer, slip)
        return PrintReport(_OUTCOMES.get(result.status, PrintOutcome.ERROR),
                           "paper low" if result.paper_low else result.message)

    def _refund_doc(self, refund: RefundRecord, sale: SaleRecord | None,
                    reprint: bool) -> Receipt:
        return refund_slip(refund, sale, merchant=self.merchant, terminal_id=self.terminal_id,
                           tz=self.tz, reprint=reprint)

    def refund_text(self, refund: RefundRecord, sale: SaleRecord | None, *,
                    reprint: bool = False) -> str:
        return as_text(self._refund_doc(refund, sale, reprint), self.width)

    async def print_refund(self, refund: RefundRecord, sale: SaleRecord | None, *,
                           reprint: bool = False) -> PrintReport:
        """Print (or show) a refund slip; a missing or failing printer only changes the
        report."""
        if self.printer is None:
            if self.sink is None:
                return PrintReport(PrintOutcome.NO_PRINTER)
            self.sink(self.refund_text(refund, sale, reprint=reprint))
            return PrintReport(PrintOutcome.SHOWN)
        result = await print_receipt(self.printer, self._refund_doc(refund, sale, reprint))
        return PrintReport(_OUTCOMES.get(result.status, PrintOutcome.ERROR),
                           "paper low" if result.paper_low else result.message)

    async def print_sale(self, record: SaleRecord, *, reprint: bool = False) -> PrintReport:
        if self.printer is None:
            if self.sink is None:
                return PrintReport(PrintOutcome.NO_PRINTER)
            self.sink(self.sale_text(record, reprint=reprint))
            return PrintReport(PrintOutcome.SHOWN)
        result = await print_receipt(self.printer, self._doc(record, reprint))
        return PrintReport(_OUTCOMES.get(result.status, PrintOutcome.ERROR),
                           "paper low" if result.paper_low else result.message)
