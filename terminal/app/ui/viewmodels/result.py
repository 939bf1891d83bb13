"""The Result screen as the till has it: paid (amount, method, time) or not, with the reason in
plain words and what to do next; print or reprint; and, for a success only, the way back to a new
sale after a while. A refusal stays until the cashier acts."""

from __future__ import annotations

import math
from datetime import datetime

from terminal.app.ui.strings import has, reason_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import ICONS, Tone
from terminal.core.money import Money, Msat, currency, format_money, format_msat
from terminal.core.ports.receipts import PrintOutcome
from terminal.services.till import Result, ResultKind, Till

# kind -> (title key, tone, next-step key)
_KINDS = {
    ResultKind.PAID: ("result.paid", Tone.SUCCESS, "next.paid"),
    ResultKind.QUEUED: ("result.queued", Tone.WARNING, "next.queued"),
    ResultKind.REFUSED: ("result.refused", Tone.ERROR, "next.retry"),
    ResultKind.DECLINED: ("result.declined", Tone.ERROR, "next.declined"),
    ResultKind.FAILED: ("result.failed", Tone.ERROR, "next.new_sale"),
    ResultKind.EXPIRED: ("result.expired", Tone.ERROR, "next.new_sale"),
    ResultKind.CANCELLED: ("result.cancelled", Tone.NEUTRAL, "next.new_sale"),
    ResultKind.UNCONFIRMED: ("result.unconfirmed", Tone.WARNING, "next.unconfirmed"),
}
_PRINT_TEXT = {
    PrintOutcome.PRINTED: "result.printed",
    PrintOutcome.SHOWN: "result.shown",
    PrintOutcome.NO_PRINTER: "result.no_printer",
    PrintOutcome.PAPER_OUT: "result.paper_out",
    PrintOutcome.OFFLINE: "result.printer_offline",
    PrintOutcome.ERROR: "result.printer_error",
}
# Codes whose own words are clearer than a server's (which may suggest a different next step).
FIXED_WORDS = frozenset({"wrong-pin", "pin-required", "invalid-pin", "cancelled-by-merchant"})
EMPTY = Result(ResultKind.CANCELLED, None, 0, "SAT")


class ResultViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        till.subscribe(lambda _t: self.changed())

    @property
    def info(self) -> Result:
        return self.till.result or EMPTY

    @property
    def kind(self) -> ResultKind:
        return self.info.kind

    @property
    def tone(self) -> Tone:
        return _KINDS[self.kind][1]

    @property
    def icon(self) -> str:
        return ICONS[self.tone]

    @property
    def title(self) -> str:
        return t(_KINDS[self.kind][0])

    @property
    def paid(self) -> bool:
        return self.kind.success

    @property
    def sale_open(self) -> bool:
        return self.info.sale_open and self.till.session_open

    @property
    def amount_text(self) -> str:
        info = self.info
        money = format_money(Money(info.amount_minor, currency(info.currency)))
        if info.amount_msat and info.currency != "SAT":
            return f"{money}  ·  {format_msat(Msat(info.amount_msat))}"
        return money

    @property
    def tip_text(self) -> str:
        info = self.info
        if not info.tip_minor:
            return ""
        return t("result.tip", tip=format_money(Money(info.tip_minor, currency(info.currency))))

    @property
    def card_balance_text(self) -> str:
        """"Card balance 12,345 sats" after a card paid (or was refused), when the merchant
        opted in (`[ui] show_card_balance`) and the card's issuer sent its balance."""
        info = self.info
        if not self.till.settings.show_card_balance or info.card_balance_msat is None:
            return ""
        return t("result.card_balance", balance=format_msat(Msat(info.card_balance_msat)))

    @property
    def detail_text(self) -> str:
        """Paid: method and time. Otherwise the reason in plain words (a code we know has fixed
        words; else the service's own words)."""
        info = self.info
        if self.paid:
            method = t(f"result.method.{info.method}") if info.method else ""
            when = datetime.fromtimestamp(info.at).strftime("%H:%M:%S") if info.at else ""
            return " · ".join(p for p in (method, when) if p)
        if info.message and info.code not in FIXED_WORDS:
            return info.message  # the issuer's or the policy's specific words
        if info.code and has(f"reason.{info.code}"):
            return reason_text(info.code)
        return info.message or reason_text(info.code)

    @property
    def next_text(self) -> str:
        info = self.info
        if info.code and has(f"next.{info.code}"):
            return t(f"next.{info.code}")
        if info.kind is ResultKind.REFUSED:
            if not self.sale_open:
                return t("next.new_sale")
            if self.till.session is not None and self.till.session.invoice is None:
                return t("next.retry_offline")  # no QR while offline
        return t(_KINDS[info.kind][2])

    @property
    def remaining_s(self) -> int | None:
        """Seconds until the screen goes back by itself (None: it waits for the cashier)."""
        if not self.kind.returns_by_itself:
            return None
        till = self.till
        left = till.result_shown_at + till.settings.result_seconds - till.clock()
        return max(0, math.ceil(left))

    @property
    def back_text(self) -> str:
        remaining = self.remaining_s
        return "" if remaining is None else t("result.back_in", seconds=remaining)

    @property
    def primary_text(self) -> str:
        return t("result.try_again") if self.sale_open else t("result.new_sale")

    @property
    def printed(self) -> bool:
        report = self.till.last_print
        return report is not None and report.outcome is PrintOutcome.PRINTED

    @property
    def print_label(self) -> str:
        return t("result.reprint") if self.printed else t("result.print")

    @property
    def print_status(self) -> str:
        report = self.till.last_print
        if report is None:
            return ""
        text = t(_PRINT_TEXT[report.outcome])
        return f"{text} ({report.detail})" if report.detail and report.outcome is \
            PrintOutcome.PRINTED else text
