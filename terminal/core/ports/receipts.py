"""What the till needs from receipts: print a sale's receipt (or show it), and say what happened.

The adapter (`terminal.adapters.receipts`) lays the receipt out and drives the ESC/POS printer;
the till only asks and reports. Printing never blocks a sale and never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from terminal.core.records import SaleRecord
from terminal.core.refunds import RefundRecord
from terminal.core.reports import SalesReport


class PrintOutcome(enum.Enum):
    PRINTED = "printed"
    SHOWN = "shown"  # no printer: the receipt went to the screen/console instead
    NO_PRINTER = "no-printer"
    PAPER_OUT = "paper-out"
    OFFLINE = "offline"
    ERROR = "error"

    @property
    def ok(self) -> bool:
        return self in (PrintOutcome.PRINTED, PrintOutcome.SHOWN)


@dataclass(frozen=True)
class PrintReport:
    outcome: PrintOutcome
    detail: str = ""  # the printer's own words (paper low, …)


class ReceiptPort(Protocol):
    @property
    def has_printer(self) -> bool: ...

    def sale_text(self, record: SaleRecord, *, reprint: bool = False) -> str:
        """The receipt as plain text (what a reprint preview or the console shows)."""
        ...

    async def print_sale(self, record: SaleRecord, *, reprint: bool = False) -> PrintReport: ...

    def report_text(self, report: SalesReport) -> str:
        """A shift or day report as plain text (the screen's print preview, the console)."""
        ...

    async def print_report(self, report: SalesReport, *,
                           printed_at: float | None = None) -> PrintReport: ...

    def refund_text(self, refund: RefundRecord, sale: SaleRecord | None, *,
                    reprint: bool = False) -> str:
        """A refund slip as plain text (the screen's preview, the console)."""
        ...

    async def print_refund(self, refund: RefundRecord, sale: SaleRecord | None, *,
                           reprint: bool = False) -> PrintReport: ...
