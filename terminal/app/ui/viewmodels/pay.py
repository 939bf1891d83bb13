"""The Pay screen: amount (fiat and sats), the invoice QR, an expiry countdown, the live status and
a PIN pad when the card's issuer asks for one."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core.money import SAT, Money, Msat, format_money, format_msat

PIN_MIN, PIN_MAX = 4, 8


class PayPhase(enum.Enum):
    CREATING = "creating"  # the invoice is being created
    WAITING = "waiting"  # QR shown, reader armed
    OFFLINE = "offline"  # no invoice (backend unreachable): only a card can pay, and is queued
    CARD_READ = "card-read"  # a tap is being checked with the issuer
    PIN = "pin"  # the issuer wants the card's PIN
    CONFIRMING = "confirming"  # the issuer accepted, waiting for settlement
    EXPIRED = "expired"


_STATUS = {
    PayPhase.CREATING: ("pay.creating", Tone.BUSY),
    PayPhase.WAITING: ("pay.waiting", Tone.NEUTRAL),
    PayPhase.OFFLINE: ("pay.offline", Tone.WARNING),
    PayPhase.CARD_READ: ("pay.card_read", Tone.BUSY),
    PayPhase.PIN: ("pay.pin.hint", Tone.WARNING),
    PayPhase.CONFIRMING: ("pay.confirming", Tone.BUSY),
    PayPhase.EXPIRED: ("pay.expired", Tone.ERROR),
}


class PinEntry(Observable):
    """Digits only, 4 to 8 of them; shown masked. The PIN itself never leaves this object except
    through `take()`, which clears it."""

    def __init__(self) -> None:
        super().__init__()
        self._digits = ""

    def press(self, key: str) -> bool:
        if key == "back":
            ok = bool(self._digits)
            self._digits = self._digits[:-1]
        elif key == "clear":
            ok, self._digits = bool(self._digits), ""
        elif key.isdigit() and len(key) == 1 and len(self._digits) < PIN_MAX:
            self._digits += key
            ok = True
        else:
            ok = False
        if ok:
            self.changed()
        return ok

    @property
    def masked(self) -> str:
        return "•" * len(self._digits)

    @property
    def complete(self) -> bool:
        return PIN_MIN <= len(self._digits) <= PIN_MAX

    def take(self) -> str:
        pin, self._digits = self._digits, ""
        self.changed()
        return pin

    def __repr__(self) -> str:
        return f"PinEntry(len={len(self._digits)})"


@dataclass(frozen=True)
class PayInvoice:
    bolt11: str
    amount_msat: int
    expires_at: float


class PayViewModel(Observable):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.pin = PinEntry()
        self.pin.subscribe(lambda _p: self.changed())
        self.reset(Money(0, SAT))

    def reset(self, amount: Money) -> None:
        self.amount = amount
        self.invoice: PayInvoice | None = None
        self.phase = PayPhase.CREATING
        self.pin.take()
        self.changed()

    # -- transitions (called by the controller) ---------------------------------------------
    def invoice_ready(self, invoice: PayInvoice | None) -> None:
        self.invoice = invoice
        self.phase = PayPhase.WAITING if invoice is not None else PayPhase.OFFLINE
        self.changed()

    def set_phase(self, phase: PayPhase) -> None:
        self.phase = phase
        if phase is not PayPhase.PIN:
            self.pin.take()
        self.changed()

    def tick(self) -> None:
        """Once a second: the countdown moves; an elapsed invoice shows as expired."""
        if self.phase is PayPhase.WAITING and self.remaining_s == 0:
            self.phase = PayPhase.EXPIRED
        self.changed()

    # -- what is shown ----------------------------------------------------------------------
    @property
    def qr_data(self) -> str | None:
        """Uppercase BOLT11: QR alphanumeric mode, a smaller, easier-to-scan code."""
        return self.invoice.bolt11.upper() if self.invoice is not None else None

    @property
    def amount_text(self) -> str:
        return format_money(self.amount)

    @property
    def sats_text(self) -> str:
        if self.invoice is None or self.amount.currency.is_sat:
            return ""  # the amount is already in sats
        return format_msat(Msat(self.invoice.amount_msat))

    @property
    def remaining_s(self) -> int | None:
        if self.invoice is None:
            return None
        return max(0, math.ceil(self.invoice.expires_at - self.clock()))

    @property
    def countdown_text(self) -> str:
        remaining = self.remaining_s
        if remaining is None:
            return ""
        if remaining == 0:
            return t("pay.expired")
        return t("pay.expires", time=f"{remaining // 60}:{remaining % 60:02d}")

    @property
    def status_text(self) -> str:
        return t(_STATUS[self.phase][0])

    @property
    def tone(self) -> Tone:
        return _STATUS[self.phase][1]

    @property
    def show_pin_pad(self) -> bool:
        return self.phase is PayPhase.PIN

    @property
    def pin_title(self) -> str:
        return t("pay.pin.title", amount=self.amount_text)

    @property
    def can_cancel(self) -> bool:
        # a payment in flight cannot be cancelled: only its outcome ends it
        return self.phase not in (PayPhase.CONFIRMING,)

