"""The till: one sale as the cashier lives it, from the first key to the next customer.

Amount and currency, tip (presets, custom, none, back), Charge, taps that come early, while the
invoice is created or after the end, the card PIN, offline acceptance, the result and the way back
to a new sale, cancel, reprint, and the day's sales and totals. Plain asyncio; no Kivy. The touch
screen, `flash-terminal charge`, the kiosk and the demo (and its scripted journeys) all drive this
one object; screens only present its state and forward touches.

Steps (explicit; `Step`):

    AMOUNT --charge--> TIP (tips on) --choose_tip--> PAY        AMOUNT --charge--> PAY (tips off)
    TIP --back--> AMOUNT (amount kept)
    PAY --paid / queued / declined / failed / expired / unconfirmed--> RESULT
    PAY --card refused--> RESULT (sale still open) --try again / a new tap--> PAY
    PAY --cancel--> AMOUNT (amount kept; a refused sale ends `failed` with the refusal's reason)
    RESULT --new sale / a key / auto-return after a success--> AMOUNT (cleared)

Who is at the till (`staff`, terminal.services.till.staff): with cashiers enrolled and sign-in
required, Charge (and a tap) waits for a cashier to sign in; cashiers sign in and out between
sales only, and each sale records who rang it up. Reports (`reports`) and their printing read the
same books. A paying card's LUD-14 balance goes on the Result (and, opted in, on the sale).

A success (paid, queued offline, cancelled) returns by itself after `result_seconds`; any other
result stays until the cashier acts, so the reason is never missed. A tap with an amount keyed
charges it (the tap is held until the invoice exists, or the tip is chosen); a tap with nothing
keyed, or on a finished sale, gets its own notice and charges nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import unicodedata
from collections.abc import Callable, Coroutine
from typing import Any

from terminal.core.card_usage import CardUsage, UsageFilter
from terminal.core.cashiers import Attempt
from terminal.core.money import Money, RateError, currency, fiat_to_msat, format_plain
from terminal.core.ports.receipts import PrintOutcome, PrintReport, ReceiptPort
from terminal.core.records import SaleRecord
from terminal.core.reports import SalesReport
from terminal.core.risk import Exposure
from terminal.core.tips import NO_TIP, TipChoice
from terminal.core.totals import Totals, day_bounds, local_day, totals
from terminal.services.checkout import Checkout, SaleOutcome, SaleSession, TapResult
from terminal.services.refunds import RefundService
from terminal.services.reports import Reports
from terminal.services.till.entry import AmountEntry, PinEntry
from terminal.services.till.model import (
    BUSY_PHASES,
    DEFAULT_MAX_MINOR,
    FALLBACK_MAX_MINOR,
    Notice,
    PayPhase,
    Result,
    ResultKind,
    Step,
    TillSettings,
)
from terminal.services.till.staff import Staff

log = logging.getLogger(__name__)

Listener = Callable[["Till"], None]
MEMO_MAX = 120

_OUTCOME_KINDS = {
    "paid": ResultKind.PAID,
    "queued": ResultKind.QUEUED,
    "declined": ResultKind.DECLINED,
    "failed": ResultKind.FAILED,
    "expired": ResultKind.EXPIRED,
    "cancelled": ResultKind.CANCELLED,
}


class Till:
    def __init__(
        self,
        checkout: Checkout,
        settings: TillSettings | None = None,
        *,
        receipts: ReceiptPort | None = None,
        auto_print: bool = True,
        clock: Callable[[], float] = time.time,
        tz: dt.tzinfo | None = None,
        staff: Staff | None = None,
        reports: Reports | None = None,
        refunds: RefundService | None = None,
    ) -> None:
        self.checkout = checkout
        self.refunds = refunds  # a manager's refunds of paid sales (None: this till has none)
        self.settings = settings or TillSettings()
        self.staff = staff or Staff(clock=clock)  # no cashiers: nobody signs in
        self.reports = reports  # shift (X/Z) and day reports over the same books
        self._drain_estimate: Callable[[], float | None] | None = None  # the kiosk's sync worker
        if not self.settings.currencies:
            raise ValueError("a till needs at least one currency")
        self.receipts = receipts
        self.auto_print = auto_print
        self.clock = clock
        self.tz = tz
        self.currencies = tuple(currency(c).code for c in self.settings.currencies)
        code = self.currencies[0]
        self.entry = AmountEntry(currency(code), self.max_minor(code))
        self.memo = ""
        self.tip: TipChoice = NO_TIP
        self.tip_entry: AmountEntry | None = None  # the custom tip being keyed
        self.step = Step.AMOUNT
        self.phase = PayPhase.CREATING
        self.pin = PinEntry()
        self.session: SaleSession | None = None
        self.last_sale: SaleRecord | None = None  # the sale that ended most recently
        self.result: Result | None = None
        self.result_shown_at = 0.0
        self.notice: Notice | None = None
        self.last_print: PrintReport | None = None
        self.pin_limit_msat: int | None = None
        self._refusal: str | None = None  # the last card refusal of the open sale (its code)
        self._last_session: SaleSession | None = None
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()
        self._opening = False
        self._cancel_requested = False
        self._held_tap: str | None = None
        self._in_flight = 0  # taps and PIN submissions being handled
        self._watch: asyncio.Task[SaleOutcome] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- observation ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(till)` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a screen's redraw must never break the sale
                log.exception("till listener failed")
        self._wake.set()
        self._wake = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (without polling) until `predicate()` holds after a change; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._wake.wait()
        except TimeoutError:
            return predicate()
        return True

    @property
    def busy(self) -> bool:
        """Work is under way that the cashier is waiting for (invoice, card check, settlement)."""
        if self._opening or self._in_flight:
            return True
        return self.step is Step.PAY and self.phase in BUSY_PHASES

    async def settled(self, timeout: float = 15.0) -> bool:
        """Wait until nothing is in progress (scripts take their snapshot then)."""
        return await self.wait_until(lambda: not self.busy, timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a till operation beside the screen (a touch must never wait for the network)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("till task failed", exc_info=task.exception())

    # -- what the screens read --------------------------------------------------------------
    def max_minor(self, code: str) -> int:
        limits = {**DEFAULT_MAX_MINOR, **self.settings.max_sale_minor}
        return limits.get(code, FALLBACK_MAX_MINOR)

    @property
    def currency_code(self) -> str:
        return self.entry.currency.code

    @property
    def session_open(self) -> bool:
        return self.session is not None and not self.session.sale.is_final

    @property
    def record(self) -> SaleRecord | None:
        """The sale on screen, or (on the Sale screen) the last one finished, as the books
        have it now (the sync worker or the reconcile loop may have settled it since)."""
        if self.session is not None:
            return self.session.record
        if self.last_sale is None:
            return None
        try:
            return self.checkout.ledger.get_sale(self.last_sale.id) or self.last_sale
        except Exception:  # the books unreadable: the copy in memory is still true enough
            log.exception("reading the last sale failed")
            return self.last_sale

    @property
    def online(self) -> bool | None:
        link = self.checkout.connectivity
        return None if link.state.value == "unknown" else link.online

    def use_drain_estimate(self, estimate: Callable[[], float | None]) -> None:
        self._drain_estimate = estimate

    def drain_time_s(self) -> float | None:
        """How long the offline queue needs to be sent at the backend's invoice limit (None:
        unknown, or the limit is not what bounds it)."""
        if self._drain_estimate is None:
            return None
        try:
            return self._drain_estimate()
        except Exception:  # a status line must never take the screen down
            log.exception("drain estimate unavailable")
            return None

    def exposure(self) -> Exposure:
        try:
            return self.checkout.ledger.exposure()
        except Exception:  # a status line must never take the screen down
            log.exception("exposure unavailable")
            return Exposure()

    @property
    def tip_minor(self) -> int:
        return self.tip.tip(self.entry.minor)

    @property
    def total_minor(self) -> int:
        return self.entry.minor + self.tip_minor

    def amount_msat(self, minor: int | None = None) -> int | None:
        """The sats value of the keyed amount (None when fiat cannot be priced now)."""
        money = Money(self.entry.minor if minor is None else minor, self.entry.currency)
        if money.currency.is_sat:
            return money.minor * 1000
        try:
            quote = self.checkout.rates.quote(money.currency.code, now=self.clock())
        except RateError:
            return None
        return int(fiat_to_msat(money, quote.rate).value)

    def rate_problem(self, code: str | None = None) -> str | None:
        """Why fiat cannot be priced right now (no rate yet, or too old); None when fine."""
        cur = currency(code or self.currency_code)
        if cur.is_sat:
            return None
        try:
            self.checkout.rates.quote(cur.code, now=self.clock())
        except RateError as exc:
            return exc.message
        return None

    def charge_problem(self) -> Notice | None:
        """What stops Charge right now (None: it may go)."""
        if self.staff.required:
            return Notice("sign-in-first")
        if self.entry.minor <= 0:
            return Notice("enter-amount")
        problem = self.rate_problem()
        if problem is not None:
            return Notice("no-rate", problem)
        msat = self.amount_msat()
        if msat is not None and msat < self.settings.min_sale_msat:
            sats = str(self.settings.min_sale_msat // 1000)
            return Notice("below-minimum", params={"sats": sats})
        return None

    @property
    def can_charge(self) -> bool:
        return self.step is Step.AMOUNT and self.charge_problem() is None

    # -- who is at the till (terminal.services.till.staff) ----------------------------------
    @property
    def cashier(self) -> str | None:
        """The id of the cashier signed in (None: nobody, or a terminal without cashiers)."""
        return self.staff.cashier_id

    @property
    def between_sales(self) -> bool:
        """Nothing is being sold: a cashier may sign in or out, a shift may close."""
        if self._opening or self.session_open:
            return False
        return self.step is Step.AMOUNT or (self.step is Step.RESULT and self._result_final)

    def sign_in(self, cashier_id: str, pin: str) -> Attempt | None:
        """Sign a cashier in (between sales only: a sale belongs to who rang it up); None
        when a sale is on screen."""
        if not self.between_sales:
            self.notice = Notice("finish-first")
            self._changed()
            return None
        attempt = self.staff.sign_in(cashier_id, pin)
        if attempt is Attempt.OK:
            self.notice = Notice("signed-in", params={"name": self.staff.current.name
                                                      if self.staff.current else cashier_id})
        elif attempt is Attempt.LOCKED:
            self.notice = Notice("pin-locked",
                                 params={"seconds": str(self.staff.guard.locked_for_s)})
        else:
            self.notice = Notice("wrong-pin",
                                 params={"left": str(self.staff.guard.attempts_left)})
        self._changed()
        return attempt

    def roster_changed(self) -> None:
        """A cashier was added, changed or removed in Admin: screens that list them redraw."""
        self._changed()

    def sign_out(self) -> bool:
        if not self.between_sales or self.staff.current is None:
            return False
        if self.step is Step.RESULT:
            self.new_sale()
        self.staff.sign_out()
        self.entry.clear()
        self.notice = Notice("signed-out")
        self._changed()
        return True

    # -- keypad, currency, memo -------------------------------------------------------------
    def key(self, key: str) -> bool:
        """A keypad key: the amount on the Sale screen, the custom tip, or the card PIN. On a
        finished result the first key starts the next sale (no extra touch needed)."""
        if self.step is Step.RESULT and self._result_final and key != "clear":
            self.new_sale()
        if self.step is Step.AMOUNT:
            accepted = self.entry.press(key)
            if accepted:
                self.notice = None
            elif key not in ("back", "clear"):
                self.notice = Notice("max-amount", params={
                    "max_minor": str(self.entry.max_minor), "currency": self.currency_code})
        elif self.step is Step.TIP and self.tip_entry is not None:
            accepted = self.tip_entry.press(key)
        elif self.step is Step.PAY and self.phase is PayPhase.PIN:
            accepted = self.pin.press(key)
        else:
            accepted = False
        self._changed()
        return accepted

    def set_currency(self, code: str) -> bool:
        """Key the amount in another configured currency (the digits are kept)."""
        code = currency(code).code
        if self.step is not Step.AMOUNT or code not in self.currencies:
            return False
        self.entry.set_currency(currency(code), self.max_minor(code))
        self.notice = None
        self._changed()
        return True

    def ring_up(self, amount: Money, memo: str = "") -> bool:
        """Key `amount` as a whole (the command line and scripts: what a cashier types)."""
        if self.step is Step.RESULT and self._result_final:
            self.new_sale()
        if self.step is not Step.AMOUNT:
            return False
        # Any currency the terminal can price, not only the keypad's: the command line names it.
        self.entry.set_currency(amount.currency, self.max_minor(amount.currency.code))
        self.entry.clear()
        keyed = self.entry.type(format_plain(amount))
        self.set_memo(memo)
        self._changed()
        return keyed and self.entry.minor == amount.minor

    def outcome(self) -> SaleOutcome | None:
        """The sale on screen, or the last one, as `flash-terminal charge --json` reports it."""
        session = self.session or self._last_session
        return session.outcome() if session is not None else None

    def switch_currency(self) -> str:
        i = self.currencies.index(self.currency_code)
        self.set_currency(self.currencies[(i + 1) % len(self.currencies)])
        return self.currency_code

    def set_memo(self, memo: str) -> None:
        if self.step is not Step.AMOUNT:
            return
        clean = "".join(ch for ch in memo if unicodedata.category(ch)[0] != "C")
        if clean[:MEMO_MAX] != self.memo:
            self.memo = clean[:MEMO_MAX]
            self._changed()

    # -- charge and tip ---------------------------------------------------------------------
    async def charge(self, tip: TipChoice | None = None) -> bool:
        """Charge the keyed amount (through the tip step when tips are on). False when nothing
        was started; the notice says why. `tip` given (the command line's `--tip`): the tip is
        already chosen, so the tip step is skipped whether tips are offered on screen or not."""
        if self.step is Step.TIP:
            return await self.choose_tip(self.tip if tip is None else tip)
        if self.step is Step.RESULT and self._result_final:
            return False
        if self.step is not Step.AMOUNT or self._opening or self.session_open:
            return False
        problem = self.charge_problem()
        if problem is not None:
            self.notice = problem
            self._held_tap = None
            self._changed()
            return False
        if tip is not None:
            self.step = Step.TIP  # chosen already: through the same checks as a touch
            return await self.choose_tip(tip) or self._tip_refused()
        if self.settings.tips.enabled:
            self.step, self.tip, self.tip_entry = Step.TIP, NO_TIP, None
            self.notice = Notice("tap-held-for-tip") if self._held_tap else None
            self._changed()
            return True
        return await self._open_sale()

    def _tip_refused(self) -> bool:
        """A given tip that cannot be charged: back to the amount, its notice kept."""
        if self.step is Step.TIP:
            self.step, self.tip, self.tip_entry = Step.AMOUNT, NO_TIP, None
            self._changed()
        return False

    def custom_tip(self) -> bool:
        """Key a custom tip amount on the keypad (tip step only, when allowed)."""
        if self.step is not Step.TIP or not self.settings.tips.allow_custom:
            return False
        room = self.max_minor(self.currency_code) - self.entry.minor
        self.tip_entry = AmountEntry(self.entry.currency, max(1, room))
        self._changed()
        return True

    async def custom_tip_done(self) -> bool:
        if self.tip_entry is None:
            return False
        return await self.choose_tip(TipChoice(custom_minor=self.tip_entry.minor))

    async def choose_tip(self, choice: TipChoice) -> bool:
        if self.step is not Step.TIP:
            return False
        tip = choice.tip(self.entry.minor)
        if tip < 0 or self.entry.minor + tip > self.max_minor(self.currency_code):
            self.notice = Notice("tip-too-large")
            self._changed()
            return False
        self.tip, self.tip_entry = choice, None
        return await self._open_sale()

    def back(self) -> bool:
        """Tip step: leave the custom tip, or go back to the amount (kept as keyed)."""
        if self.step is not Step.TIP:
            return False
        self.notice = None
        if self.tip_entry is not None:
            self.tip_entry = None
        else:
            self.step, self.tip = Step.AMOUNT, NO_TIP
            if self._held_tap is not None:
                self._held_tap = None
                self.notice = Notice("tap-again-after-charge")
        self._changed()
        return True

    async def _open_sale(self) -> bool:
        tip = self.tip_minor
        total = self.entry.minor + tip
        code = self.currency_code
        self.step, self.phase = Step.PAY, PayPhase.CREATING
        self.result, self.notice, self.last_print = None, None, None
        self._opening, self._cancel_requested = True, False
        self._changed()
        try:
            session = await self.checkout.open_sale(total, code, self.memo, tip_minor=tip,
                                                    cashier=self.staff.cashier_id)
        except BaseException:
            self._opening = False
            self._held_tap = None
            self.step = Step.AMOUNT
            self._changed()
            raise
        self._opening = False
        self.session = session
        if self._cancel_requested:  # Cancel was pressed while the invoice was being created
            self._held_tap = None
            await session.cancel()
            self._end_session()
            self.step, self.tip = Step.AMOUNT, NO_TIP
            self._changed()
            return False
        if session.sale.is_final:  # the backend refused to create the invoice
            if self._held_tap is not None:  # a tap held for this sale never pays the next one
                self._held_tap = None
            self._show_outcome(session.outcome())
            return False
        self.phase = PayPhase.WAITING if session.invoice is not None else PayPhase.OFFLINE
        if session.invoice is not None:
            self._watch = self.spawn(self._follow(session))
        self._changed()
        held, self._held_tap = self._held_tap, None
        if held is not None:
            await self._tap_session(held)
        return True

    async def _follow(self, session: SaleSession) -> SaleOutcome:
        invoice = session.invoice
        now = self.clock()
        expires = invoice.expires_at if invoice is not None else now
        outcome = await session.wait_settled(max(1.0, expires - now) + self.settings.settle_grace_s)
        if session is self.session:
            # "pending" here means the backend could not confirm in time: never leave the screen
            # waiting forever. The ledger keeps the sale open and the reconcile loop settles it.
            self._show_outcome(outcome)
        return outcome

    # -- taps and PIN -----------------------------------------------------------------------
    async def tap(self, url: str) -> TapResult | None:
        """A card tap from the reader. Returns the checkout's answer when a sale took it."""
        if self._opening or (self.step is Step.PAY and self.phase is PayPhase.CREATING):
            self._hold(url)
            return None
        if self.step is Step.AMOUNT:
            problem = self.charge_problem()
            if problem is not None:
                self.notice = Notice("tap-before-amount") if problem.code == "enter-amount" \
                    else problem
                self._changed()
                return None
            self._held_tap = url
            await self.charge()
            return None
        if self.step is Step.TIP:
            self._hold(url)
            self.notice = Notice("tap-held-for-tip")
            self._changed()
            return None
        if self.step is Step.RESULT:
            result = self.result
            if result is not None and result.sale_open and self.session_open:
                self.step = Step.PAY  # the same sale, another try with this card
                self.phase = self._waiting_phase()
            else:
                self.notice = Notice("sale-ended", params={
                    "state": result.kind.value if result is not None else ""})
                self._changed()
                return None
        return await self._tap_session(url)

    def _hold(self, url: str) -> None:
        if self._held_tap is None:
            self._held_tap = url
        else:
            self.notice = Notice("one-card-at-a-time")
        self._changed()

    async def _tap_session(self, url: str) -> TapResult | None:
        session = self.session
        if session is None:
            self.notice = Notice("tap-before-amount")
            self._changed()
            return None
        if self.phase in (PayPhase.CARD_READ, PayPhase.CONFIRMING, PayPhase.PIN):
            self.notice = Notice("card-in-progress")
            self._changed()
            return None
        self.phase, self.notice = PayPhase.CARD_READ, None
        self._in_flight += 1
        self._changed()
        try:
            result = await session.tap(url)
        finally:
            self._in_flight -= 1
        self._after_tap(session, result)
        return result

    async def submit_pin(self) -> TapResult | None:
        session = self.session
        if session is None or self.phase is not PayPhase.PIN or not self.pin.complete:
            return None
        pin = self.pin.take()
        self.phase = PayPhase.CARD_READ
        self._in_flight += 1
        self._changed()
        try:
            result = await session.submit(pin)
        finally:
            self._in_flight -= 1
        self._after_tap(session, result)
        return result

    def _waiting_phase(self) -> PayPhase:
        session = self.session
        return PayPhase.WAITING if session is not None and session.invoice is not None \
            else PayPhase.OFFLINE

    def _after_tap(self, session: SaleSession, result: TapResult) -> None:
        if session is not self.session:
            return
        kind = result.kind
        if kind == "late":
            self.notice = Notice("late-tap", result.message)
            if self.step is Step.PAY and self.session_open and self.phase is PayPhase.CARD_READ:
                self.phase = self._waiting_phase()
        elif kind == "pin-required":
            self.phase = PayPhase.PIN
            self.pin_limit_msat = result.pin_limit_msat
        elif kind in ("accepted", "unknown"):
            if self.step is Step.PAY and not session.sale.is_final:
                self.phase = PayPhase.CONFIRMING
        elif kind == "refused":
            self.phase = self._waiting_phase()
            self._refusal = result.code or "refused"
            self._show(self._result(ResultKind.REFUSED, session.record, code=result.code,
                                    message=result.message,
                                    sale_open=not session.sale.is_final))
        elif kind == "unconfirmed":
            # The issuer refused after the callback went out and the invoice is still open: not
            # a failure ("do not charge again"). The sale stays open: the card again (a wrong
            # PIN) or the QR pays the same invoice; the watch goes on meanwhile, and once the
            # counter moves on, the reconcile loop settles the sale.
            self.phase = self._waiting_phase()
            self._show(self._result(ResultKind.UNCONFIRMED, session.record, code=result.code,
                                    message=result.message,
                                    sale_open=not session.sale.is_final))
        elif kind in ("queued", "declined"):
            self._show_outcome(session.outcome(), message=result.message)
        self._changed()

    # -- endings ----------------------------------------------------------------------------
    def _result(self, kind: ResultKind, record: SaleRecord, *, code: str | None = None,
                message: str = "", sale_open: bool = False) -> Result:
        return Result(
            kind=kind, sale_id=record.id, amount_minor=record.amount_minor,
            currency=record.currency, tip_minor=record.tip_minor,
            amount_msat=record.amount_msat, method=record.method, code=code, message=message,
            at=self.clock(), sale_open=sale_open,
            card_balance_msat=self._card_balance(kind, record),
            cashier=record.cashier,
        )

    def _card_balance(self, kind: ResultKind, record: SaleRecord) -> int | None:
        """The card's balance after this result, from the issuer's LUD-14 `currentBalance`
        (sent with the tap, before the payment): less the amount once paid by that card, as
        reported when the card was refused. None when the issuer did not say, or no card paid."""
        session = self.session
        reported = session.card_balance_msat if session is not None else None
        if reported is None or record.method != "card":
            return None
        if kind is ResultKind.PAID:
            return max(0, reported - (record.amount_msat or 0))
        return reported if kind is ResultKind.REFUSED else None

    def _show_outcome(self, outcome: SaleOutcome, message: str = "") -> None:
        session = self.session
        if session is None:
            return
        kind = _OUTCOME_KINDS.get(outcome.status, ResultKind.UNCONFIRMED)
        result = self._result(kind, session.record, code=outcome.reason,
                              message=message or outcome.message)
        if result.card_balance_msat is not None and kind is ResultKind.PAID \
                and self.settings.show_card_balance:
            self._keep_card_balance(session.record, result.card_balance_msat)
        self._show(result)
        if kind.success and self.auto_print and self.receipts is not None \
                and self.receipts.has_printer:
            # Printing never blocks the sale: it runs beside the Result screen.
            self.spawn(self.print_receipt())

    def _show(self, result: Result) -> None:
        self.result, self.result_shown_at = result, self.clock()
        self.step, self.notice = Step.RESULT, None
        self.pin.take()
        if not result.sale_open:
            # The sale has left the counter's hands (paid, queued for the sync worker, ended,
            # or left to the reconcile loop): the next customer can be served at once.
            self._end_session()
        self._changed()

    @property
    def _result_final(self) -> bool:
        """The Result screen shows a sale the counter is done with (not a refused card whose
        sale is still open for another card or the QR)."""
        result = self.result
        return result is None or not (result.sale_open and self.session_open)

    async def cancel(self) -> bool:
        """Cancel the sale on screen and go back to the amount (kept as keyed). A payment in
        flight cannot be cancelled: only its outcome ends it."""
        self._held_tap = None
        if self._opening:  # the invoice is on its way: cancel it as soon as it exists
            self._cancel_requested = True
            self.step, self.tip = Step.AMOUNT, NO_TIP
            self._changed()
            return True
        session = self.session
        if session is not None and not session.sale.is_final:
            if self._end_refused(session):
                pass
            elif not await session.cancel():
                self.notice = Notice("in-flight")
                self._changed()
                return False
        self._end_session()
        self.step, self.tip, self.tip_entry = Step.AMOUNT, NO_TIP, None
        self.result, self.notice = None, None
        self._changed()
        return True

    def result_done(self) -> None:
        """The Result screen's main button: back to Pay when the sale is still open (another
        card, or the QR), else a new sale."""
        if self.step is not Step.RESULT:
            return
        if not self._result_final:
            self.step, self.phase = Step.PAY, self._waiting_phase()
            self._changed()
        else:
            self.new_sale()

    def new_sale(self) -> bool:
        """Clear everything for the next customer. A sale whose card was refused ends `failed`
        with that reason; an unconfirmed one is left to the reconcile loop (the ledger keeps it
        open); a sale waiting for its payment must be cancelled first."""
        if self._opening:
            return False
        session = self.session
        if session is not None and self.session_open:
            if self.step is not Step.RESULT:
                return False  # a sale waiting for its payment: Cancel first
            self._end_refused(session)
        self._end_session()
        self.entry.clear()
        self.memo, self.tip, self.tip_entry = "", NO_TIP, None
        self.step, self.phase = Step.AMOUNT, PayPhase.CREATING
        self.result, self.notice, self.last_print = None, None, None
        self._held_tap = None
        self.pin.take()
        self._changed()
        return True

    def _end_refused(self, session: SaleSession) -> bool:
        """End a sale that a card refused with that refusal as its reason (not "cancelled"):
        history then says why the sale did not happen. True when it was such a sale."""
        refusal = self._refusal
        if not refusal or session.sale.state.value not in ("invoiced", "created"):
            return False
        session.fail(refusal)
        return True

    def _end_session(self) -> None:
        self._stop_watch()
        if self.session is not None:
            self.last_sale = self.session.record
            self._last_session = self.session
        self.session, self._refusal = None, None
        self.pin.take()

    def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done() and watch is not asyncio.current_task():
            watch.cancel()

    def tick(self) -> None:
        """Once a second: the invoice countdown, and a success going back to a new sale."""
        now = self.clock()
        if self.step is Step.PAY and self.phase is PayPhase.WAITING:
            invoice = self.session.invoice if self.session is not None else None
            if invoice is not None and now >= invoice.expires_at:
                self.phase = PayPhase.EXPIRED
            self._changed()
        elif self.step is Step.RESULT and self.result is not None:
            if self.result.kind.returns_by_itself and \
                    now - self.result_shown_at >= self.settings.result_seconds:
                self.new_sale()
            else:
                self._changed()

    def say(self, notice: Notice) -> None:
        """A reader message (not a payment card, hold still …) over the current screen."""
        self.notice = notice
        self._changed()

    def active_sale_ids(self) -> set[str]:
        """The sale this till is driving (the reconcile loop leaves it alone)."""
        return {self.session.record.id} if self.session is not None else set()

    # -- rates ------------------------------------------------------------------------------
    async def refresh_rates(self) -> None:
        for code in self.currencies:
            if not currency(code).is_sat:
                await self.checkout.refresh_rate(code)
        self._changed()

    @property
    def rates_missing(self) -> bool:
        return any(self.rate_problem(code) for code in self.currencies)

    # -- receipts ---------------------------------------------------------------------------
    def _keep_card_balance(self, record: SaleRecord, balance_msat: int) -> None:
        """The merchant opted in: the balance goes on the sale, so its receipt (and a reprint)
        prints it. A failure to write it loses only that line."""
        record.card_balance_msat = balance_msat
        try:
            self.checkout.ledger.save_sale(record)
        except Exception:
            log.exception("keeping the card balance on sale %s failed", record.id[:8])

    def _record_for(self, sale_id: str | None) -> SaleRecord | None:
        if sale_id is None:
            return self.record
        if self.session is not None and self.session.record.id == sale_id:
            return self.session.record
        return self.checkout.ledger.get_sale(sale_id)

    def receipt_text(self, sale_id: str | None = None, *, reprint: bool = False) -> str:
        record = self._record_for(sale_id)
        if record is None or self.receipts is None:
            return ""
        return self.receipts.sale_text(record, reprint=reprint)

    async def print_receipt(self, sale_id: str | None = None) -> PrintReport:
        """Print (or show) a sale's receipt: the one on screen by default, any sale by id (a
        reprint from history needs no PIN)."""
        record = self._record_for(sale_id)
        if record is None:
            return PrintReport(PrintOutcome.ERROR, "no such sale")
        if self.receipts is None:
            report = PrintReport(PrintOutcome.NO_PRINTER)
        else:
            reprint = record.receipt_printed or sale_id is not None
            report = await self.receipts.print_sale(record, reprint=reprint)
        if report.outcome is PrintOutcome.PRINTED and not record.receipt_printed:
            record.receipt_printed = True
            with contextlib.suppress(Exception):  # the receipt is out; the flag is a nicety
                self.checkout.ledger.save_sale(record)
        self.last_print = report
        self._changed()
        return report

    async def print_refund(self, refund_id: str, *, reprint: bool = False) -> PrintReport:
        """Print (or show) a refund's slip; never blocks a sale, never raises."""
        if self.refunds is None:
            return PrintReport(PrintOutcome.ERROR, "no such refund")
        ledger = self.refunds.books  # the refunds' books: the same ledger as the sales'
        refund = ledger.get_refund(refund_id)
        if refund is None:
            return PrintReport(PrintOutcome.ERROR, "no such refund")
        if self.receipts is None:
            result = PrintReport(PrintOutcome.NO_PRINTER)
        else:
            try:
                sale = ledger.get_sale(refund.sale_id)
                result = await self.receipts.print_refund(
                    refund, sale, reprint=reprint or refund.receipt_printed)
            except Exception as exc:  # a slip's printing must not take the till down
                log.exception("printing the refund slip failed")
                result = PrintReport(PrintOutcome.ERROR, type(exc).__name__)
        if result.outcome is PrintOutcome.PRINTED and not refund.receipt_printed:
            refund.receipt_printed = True
            with contextlib.suppress(Exception):  # the slip is out; the flag is a nicety
                ledger.save_refund(refund)
        self.last_print = result
        self._changed()
        return result

    async def print_report(self, report: SalesReport) -> PrintReport:
        """Print (or show) a shift or day report; never blocks a sale, never raises."""
        if self.receipts is None:
            result = PrintReport(PrintOutcome.NO_PRINTER)
        else:
            try:
                result = await self.receipts.print_report(report, printed_at=self.clock())
            except Exception as exc:  # a report's printing must not take the till down
                log.exception("printing the report failed")
                result = PrintReport(PrintOutcome.ERROR, type(exc).__name__)
        self.last_print = result
        self._changed()
        return result

    # -- history and totals (one counting rule: terminal.core.totals) -----------------------
    def sales_on(self, day: dt.date) -> list[SaleRecord]:
        start, end = day_bounds(day, self.tz)
        records = self.checkout.ledger.sales(start=start, end=end)
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def card_usage(self, usage: UsageFilter) -> list[CardUsage]:
        """Per-card usage of the sales `usage` selects, counted by the books (no record read)."""
        return self.checkout.ledger.card_usage(usage)

    def totals_on(self, day: dt.date) -> Totals:
        return totals(self.sales_on(day))

    def today(self) -> dt.date:
        return local_day(self.clock(), self.tz)

    async def aclose(self) -> None:
        self._stop_watch()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
