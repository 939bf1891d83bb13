"""The Pay screen as the till has it: amount (fiat and sats), the invoice QR, the expiry
countdown, the live status in words fitting the moment, and the card PIN pad."""

from __future__ import annotations

import math

from terminal.app.ui.strings import notice_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core.money import Money, Msat, currency, format_money, format_msat
from terminal.core.pins import PIN_MAX, PIN_MIN
from terminal.services.till import PayPhase, Step, Till

__all__ = ["PIN_MAX", "PIN_MIN", "PayPhase", "PayViewModel"]

_STATUS = {
    PayPhase.CREATING: ("pay.creating", Tone.BUSY),
    PayPhase.WAITING: ("pay.waiting", Tone.NEUTRAL),
    PayPhase.OFFLINE: ("pay.offline", Tone.WARNING),
    PayPhase.CARD_READ: ("pay.card_read", Tone.BUSY),
    PayPhase.PIN: ("pay.pin.hint", Tone.WARNING),
    PayPhase.CONFIRMING: ("pay.confirming", Tone.BUSY),
    PayPhase.EXPIRED: ("pay.expired", Tone.ERROR),
}
# What the customer is asked to do, by phase (nothing while the terminal is busy).
_PROMPT = {
    PayPhase.WAITING: "pay.title",
    PayPhase.OFFLINE: "pay.title.offline",
    PayPhase.PIN: "pay.title.pin",
}


class PayViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        till.subscribe(lambda _t: self.changed())

    @property
    def phase(self) -> PayPhase:
        return self.till.phase

    @property
    def invoice(self):  # the session's Invoice, or None (offline / not yet created)
        session = self.till.session
        return session.invoice if session is not None else None

    @property
    def qr_data(self) -> str | None:
        """Upper-case BOLT11: QR alphanumeric mode, a smaller, easier-to-scan code."""
        invoice = self.invoice
        if invoice is None or self.phase in (PayPhase.PIN, PayPhase.EXPIRED):
            return None
        return invoice.bolt11.upper()

    @property
    def amount(self) -> Money:
        record = self.till.record if self.till.step is not Step.AMOUNT else None
        if record is not None:
            return Money(record.amount_minor, currency(record.currency))
        return Money(self.till.total_minor, self.till.entry.currency)

    @property
    def amount_text(self) -> str:
        return format_money(self.amount)

    @property
    def tip_text(self) -> str:
        record = self.till.record
        if record is None or not record.tip_minor:
            return ""
        return t("pay.tip", tip=format_money(Money(record.tip_minor, currency(record.currency))))

    @property
    def sats_text(self) -> str:
        invoice = self.invoice
        if self.amount.currency.is_sat:
            return ""  # the amount is already in sats
        if invoice is not None:
            return format_msat(Msat(invoice.amount_msat))
        record = self.till.record
        if record is not None and record.amount_msat:
            return format_msat(Msat(record.amount_msat))
        return ""

    @property
    def remaining_s(self) -> int | None:
        invoice = self.invoice
        if invoice is None:
            return None
        return max(0, math.ceil(invoice.expires_at - self.till.clock()))

    @property
    def countdown_text(self) -> str:
        remaining = self.remaining_s
        if remaining is None or self.phase is PayPhase.PIN:
            return ""
        if remaining == 0:
            return t("pay.expired")
        return t("pay.expires", time=f"{remaining // 60}:{remaining % 60:02d}")

    @property
    def prompt(self) -> str:
        key = _PROMPT.get(self.phase)
        return t(key) if key else ""

    @property
    def status_text(self) -> str:
        return t(_STATUS[self.phase][0])

    @property
    def tone(self) -> Tone:
        return _STATUS[self.phase][1]

    @property
    def notice(self) -> str:
        return notice_text(self.till.notice)

    @property
    def show_pin_pad(self) -> bool:
        return self.phase is PayPhase.PIN

    @property
    def pin_masked(self) -> str:
        return self.till.pin.masked

    @property
    def pin_complete(self) -> bool:
        return self.till.pin.complete

    @property
    def pin_title(self) -> str:
        return t("pay.pin.title", amount=self.amount_text)

    @property
    def offline(self) -> bool:
        return self.phase is PayPhase.OFFLINE

    @property
    def can_cancel(self) -> bool:
        # a payment in flight cannot be cancelled: only its outcome ends it
        return self.phase not in (PayPhase.CONFIRMING, PayPhase.CARD_READ)
