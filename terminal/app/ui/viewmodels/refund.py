"""The Refund screen: History > a paid sale > Refund, a manager's (the PIN pad first unless a
manager is signed in or Admin is open), all or part of what is left, where to (the customer taps
the card that paid, or an address / LNURL-pay / invoice is keyed or scanned), the outcome on
screen (BTCPay's claim link as a QR) and the refund slip printed.

Every decision is the refund service's (`terminal.services.refunds`); this holds what the screen
shows and forwards presses. No Kivy: tested without a window.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.admin import AdminLock
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core.cashiers import Attempt
from terminal.core.money import Money, Msat, currency, format_money, format_msat
from terminal.core.ports.receipts import PrintOutcome
from terminal.services.refunds import Quote, RefundOutcome, RefundRefused, RefundRequest
from terminal.services.till import Till
from terminal.services.till.entry import AmountEntry

log = logging.getLogger(__name__)


class RefundPhase(enum.Enum):
    PIN = "pin"  # a manager's PIN first
    CHOOSE = "choose"  # how much, and where to
    WAIT_TAP = "wait-tap"  # the customer taps the card that paid
    WORKING = "working"  # resolving, sending
    DONE = "done"  # the outcome (sent, pending, failed) on screen


_TONES = {"sent": Tone.SUCCESS, "pending": Tone.WARNING, "failed": Tone.ERROR}


class RefundViewModel(Observable):
    def __init__(self, till: Till, *, admin: AdminLock, manager: Callable[[], bool],
                 spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        super().__init__()
        self.till = till
        self.admin = admin
        self._manager = manager
        self._spawn = spawn
        self.phase = RefundPhase.CHOOSE
        self.quote: Quote | None = None
        self.full = True
        self.entry: AmountEntry | None = None
        self.address = ""
        self.outcome: RefundOutcome | None = None
        self.message = ""
        self.print_status = ""

    # -- opening ----------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.till.refunds is not None

    def open(self, sale_id: str) -> bool:
        """Start a refund of `sale_id` (the PIN pad first unless a manager is at the till)."""
        service = self.till.refunds
        self.outcome, self.message, self.print_status, self.address = None, "", "", ""
        self.full, self.quote = True, None
        if service is None:
            self.message = t("refund.unavailable")
            self.changed()
            return False
        try:
            self.quote = service.quote(sale_id)
        except RefundRefused as exc:
            self.message = exc.message
            self.changed()
            return False
        sale = self.quote.sale
        cur = currency(sale.currency)
        self.entry = AmountEntry(cur, max(1, sale.amount_minor))
        self.phase = RefundPhase.CHOOSE if self._manager() else RefundPhase.PIN
        if self.quote.problem:
            self.message = self.quote.problem
        self.changed()
        return True

    # -- the manager's PIN -----------------------------------------------------------------
    def pin_key(self, key: str) -> None:
        self.admin.press(key)
        self.changed()

    def pin_submit(self) -> None:
        attempt = self.admin.submit()
        if attempt is Attempt.OK:
            self.phase, self.message = RefundPhase.CHOOSE, ""
        elif attempt is Attempt.LOCKED:
            self.message = t("notice.pin-locked", seconds=self.admin.locked_for_s)
        elif attempt is Attempt.NOT_CONFIGURED:
            self.message = t("refund.no_manager")
        else:
            self.message = t("notice.wrong-pin", left=self.admin.guard.attempts_left)
        self.changed()

    @property
    def pin_digits(self) -> str:
        return "●" * len(self.admin.digits)

    # -- how much ---------------------------------------------------------------------------
    def set_full(self) -> None:
        self.full = True
        self.changed()

    def set_partial(self) -> None:
        self.full = False
        self.changed()

    def key(self, key: str) -> bool:
        if self.entry is None or self.phase is not RefundPhase.CHOOSE:
            return False
        self.full = False
        accepted = self.entry.press(key)
        self.changed()
        return accepted

    @property
    def amount(self) -> Money | None:
        """What the refund asks for: None is all that is left."""
        if self.full or self.entry is None:
            return None
        return Money(self.entry.minor, self.entry.currency)

    @property
    def amount_msat(self) -> int | None:
        service, quote = self.till.refunds, self.quote
        if service is None or quote is None:
            return None
        amount = self.amount
        if amount is None:
            return quote.left_msat
        if amount.minor <= 0:
            return 0
        try:
            return service.amount_msat(quote.sale, amount)
        except RefundRefused:
            return None

    @property
    def amount_text(self) -> str:
        msat = self.amount_msat
        sats = format_msat(Msat(msat)) if msat is not None else "?"
        if self.amount is None:
            return t("refund.all_left", sats=sats)
        return f"{format_money(self.amount)}  ≈ {sats}"

    @property
    def problem(self) -> str | None:
        """Why Refund cannot go now (None: it may)."""
        quote = self.quote
        if quote is None:
            return t("refund.unavailable")
        if quote.problem:
            return quote.problem
        msat = self.amount_msat
        if msat is None or msat <= 0:
            return t("refund.enter_amount")
        if msat > quote.left_msat:
            return t("refund.above_left", left=format_msat(Msat(quote.left_msat)))
        return None

    # -- where to ---------------------------------------------------------------------------
    @property
    def needs_destination(self) -> bool:
        service = self.till.refunds
        return service is None or service.needs_destination

    def set_address(self, text: str) -> None:
        self.address = text.strip()
        self.changed()

    def choose_card(self) -> None:
        """Wait for the customer's tap of the card that paid."""
        if self.phase is RefundPhase.CHOOSE and self.problem is None:
            self.phase, self.message = RefundPhase.WAIT_TAP, t("refund.tap_now")
            self.changed()

    def cancel_tap(self) -> None:
        if self.phase is RefundPhase.WAIT_TAP:
            self.phase, self.message = RefundPhase.CHOOSE, ""
            self.changed()

    @property
    def waiting_for_card(self) -> bool:
        return self.phase is RefundPhase.WAIT_TAP

    async def tap(self, url: str) -> RefundOutcome | None:
        """A card on the reader while the Refund screen is up."""
        if self.phase is not RefundPhase.WAIT_TAP:
            self.message = t("refund.choose_card_first")
            self.changed()
            return None
        return await self._refund(tap_url=url)

    async def send_to_address(self) -> RefundOutcome | None:
        """Refund to the keyed or scanned address / LNURL-pay / invoice (or, on BTCPay, issue
        the claim link when none is given)."""
        if self.phase is not RefundPhase.CHOOSE:
            return None
        if not self.address and self.needs_destination:
            self.message = t("refund.enter_address")
            self.changed()
            return None
        return await self._refund(to=self.address or None)

    async def _refund(self, *, to: str | None = None,
                      tap_url: str | None = None) -> RefundOutcome | None:
        service, quote = self.till.refunds, self.quote
        if service is None or quote is None:
            return None
        problem = self.problem
        if problem is not None:
            self.phase, self.message = RefundPhase.CHOOSE, problem
            self.changed()
            return None
        self.phase, self.message = RefundPhase.WORKING, t("refund.working")
        self.changed()
        request = RefundRequest(quote.sale.id, self.amount, to=to, tap_url=tap_url,
                                cashier=self.till.staff.manager_id)
        try:
            outcome = await service.refund(request)
        except RefundRefused as exc:
            self.phase, self.message = RefundPhase.CHOOSE, exc.message
            self._requote()
            self.changed()
            return None
        except Exception:  # a bug must not leave the screen spinning
            log.exception("refund failed")
            self.phase, self.message = RefundPhase.CHOOSE, t("refund.error")
            self._requote()
            self.changed()
            return None
        self.outcome, self.phase, self.message = outcome, RefundPhase.DONE, outcome.message
        self._requote()
        self.changed()
        receipts = self.till.receipts
        if outcome.refund_id and receipts is not None and receipts.has_printer \
                and self.till.auto_print:
            await self.print_slip()
        return outcome

    def _requote(self) -> None:
        service, quote = self.till.refunds, self.quote
        if service is not None and quote is not None:
            try:
                self.quote = service.quote(quote.sale.id)
            except RefundRefused:
                pass

    # -- the outcome ------------------------------------------------------------------------
    @property
    def outcome_title(self) -> str:
        outcome = self.outcome
        if outcome is None:
            return ""
        return t(f"refund.status.{outcome.status}",
                 amount=format_msat(Msat(outcome.amount_msat)))

    @property
    def outcome_tone(self) -> Tone:
        return _TONES.get(self.outcome.status, Tone.NEUTRAL) if self.outcome else Tone.NEUTRAL

    @property
    def claim_link(self) -> str:
        """BTCPay's LNURL-withdraw of the refund: shown as a QR the customer scans."""
        outcome = self.outcome
        return (outcome.claim_link or "") if outcome is not None else ""

    async def print_slip(self) -> str:
        outcome = self.outcome
        if outcome is None or not outcome.refund_id:
            return ""
        report = await self.till.print_refund(outcome.refund_id)
        self.print_status = {
            PrintOutcome.PRINTED: t("refund.printed"),
            PrintOutcome.SHOWN: t("refund.printed"),
            PrintOutcome.NO_PRINTER: t("refund.no_printer"),
        }.get(report.outcome, t("refund.print_failed", detail=report.detail or
                                report.outcome.value))
        self.changed()
        return self.print_status

    def again(self) -> None:
        """Another refund of the same sale (what is left)."""
        if self.quote is not None:
            self.open(self.quote.sale.id)

    # -- what the screen shows --------------------------------------------------------------
    @property
    def title(self) -> str:
        return t("refund.title", sale=self.quote.sale.id[:8] if self.quote else "")

    def sale_lines(self) -> list[str]:
        quote = self.quote
        if quote is None:
            return []
        sale, room = quote.sale, quote.room
        lines = [
            t("refund.sale", amount=format_money(Money(sale.amount_minor,
                                                       currency(sale.currency)))),
            t("refund.paid", sats=format_msat(Msat(room.paid_msat))),
        ]
        if room.refunded_msat:
            lines.append(t("refund.refunded", sats=format_msat(Msat(room.refunded_msat))))
        if room.reserved_msat:
            lines.append(t("refund.reserved", sats=format_msat(Msat(room.reserved_msat))))
        lines.append(t("refund.left", sats=format_msat(Msat(quote.left_msat))))
        if sale.method == "card" and sale.card_id:
            lines.append(t("refund.paid_by_card", card=sale.card_id[:8]))
        return lines

    @property
    def busy(self) -> bool:
        return self.phase is RefundPhase.WORKING
