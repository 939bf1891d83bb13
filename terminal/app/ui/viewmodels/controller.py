"""The terminal as the screens see it: which screen is up and what each one shows.

`TerminalController` turns merchant input (keypad, Charge, Cancel, PIN) and reader events (taps)
into calls on `terminal.checkout`, and the answers into view-model state. It runs on the asyncio
loop and imports no Kivy, so the whole flow is tested (and run by `demo --headless`) without a
window. A reader thread hands taps over with `tap_threadsafe`; nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.admin import AdminLock
from terminal.app.ui.viewmodels.card_tools import CardToolsSettings, CardToolsViewModel, ToolPhase
from terminal.app.ui.viewmodels.device_tests import DeviceTestsViewModel
from terminal.app.ui.viewmodels.history import HistoryViewModel, SalesSource
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.pay import PayInvoice, PayPhase, PayViewModel
from terminal.app.ui.viewmodels.result import ResultInfo, ResultViewModel
from terminal.app.ui.viewmodels.sale import ChargeRequest, SaleViewModel
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.app.ui.viewmodels.tip import TipSettings
from terminal.core.money import Money, currency
from terminal.services.checkout import Checkout, SaleOutcome, SaleSession, TapResult

if TYPE_CHECKING:
    from terminal.app.config import Config

log = logging.getLogger(__name__)

SETTLE_GRACE_S = 5.0


class Screen(enum.Enum):
    SALE = "sale"
    PAY = "pay"
    RESULT = "result"
    HISTORY = "history"
    ADMIN = "admin"


ADMIN_IDLE_LOCK_S = 120.0  # an unlocked Admin/History screen locks itself after this


@dataclass(frozen=True)
class UiSettings:
    currencies: tuple[str, ...] = ("USD",)
    tips: TipSettings = TipSettings()
    merchant: str = "Flash Terminal"
    terminal_id: str | None = None
    reader: str = "absent"  # ready | absent | demo
    receipt_width: int = 32
    result_seconds: float = 6.0  # the Result screen returns to Sale after this long


ReceiptSink = Callable[[str], None]


class TerminalController(Observable):
    def __init__(
        self,
        checkout: Checkout,
        sales: SalesSource,
        *,
        admin_pin_hash: str | None,
        settings: UiSettings | None = None,
        printer: object | None = None,
        receipt_sink: ReceiptSink | None = None,
        clock: Callable[[], float] = time.time,
        config: Config | None = None,
        card_url: str = "",
    ) -> None:
        super().__init__()
        self.checkout = checkout
        self.settings = settings or UiSettings()
        self.clock = clock
        self.printer = printer
        self.receipt_sink = receipt_sink
        self.sale = SaleViewModel(checkout.rates, self.settings.currencies,
                                  tips=self.settings.tips, clock=clock)
        self.pay = PayViewModel(clock)
        self.result = ResultViewModel(clock, auto_return_s=self.settings.result_seconds)
        self.status = StatusViewModel(clock)
        self.history = HistoryViewModel(sales, clock=clock)
        self.admin = AdminLock(admin_pin_hash)
        keyring = getattr(checkout, "keyring", None)
        self.tools = CardToolsViewModel(verify=keyring.verify_tap if keyring else None)
        self.tests = DeviceTestsViewModel(clock)
        self.config: Config | None = None
        if config is not None:
            self.use_config(config, card_url)
        self.screen = Screen.SALE
        self.notice = ""  # a one-line message (late tap, tap with no sale) shown over any screen
        self.session: SaleSession | None = None
        self._opening = False
        self._cancel_requested = False
        self._last_touch = clock()
        self._held_tap: str | None = None
        self._watch: asyncio.Task[SaleOutcome] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._result_shown = asyncio.Event()
        self.status.update(reader=self.settings.reader, printer="ready" if printer else "none")

    def use_config(self, config: Config, card_url: str = "") -> None:
        """The enrolled configuration: the settings overview and the card tools read it."""
        self.config = config
        self.tools.configure(CardToolsSettings.from_config(config, card_url))

    # -- navigation -------------------------------------------------------------------------
    def go(self, screen: Screen) -> None:
        if screen in (Screen.HISTORY, Screen.ADMIN) and self.screen in (Screen.PAY,):
            return  # never leave an open invoice for the back office
        if screen is Screen.HISTORY and not self.admin.unlocked:
            screen = Screen.ADMIN  # history sits behind the admin PIN
        self.screen = screen
        if screen is Screen.SALE:
            self.admin.lock()
        if screen is not Screen.ADMIN:
            self.tools.cancel()  # the next tap belongs to the sale again (a busy tool finishes)
            self.tests.disarm()
        self.changed()

    def say(self, text: str) -> None:
        self.notice = text
        self.changed()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ui task failed", exc_info=task.exception())

    # -- rates and status -------------------------------------------------------------------
    async def refresh_rates(self) -> None:
        for code in self.settings.currencies:
            if not currency(code).is_sat:
                await self.checkout.refresh_rate(code)
        self.refresh_status()
        self.sale.changed()

    def refresh_status(self) -> None:
        link = self.checkout.connectivity
        online = None if link.state.value == "unknown" else link.online
        try:
            exposure = self.checkout.ledger.exposure()
        except Exception:  # a status bar must never take the screen down
            log.exception("exposure unavailable")
            exposure = None
        self.status.update(online=online, exposure=exposure)

    def tick(self) -> None:
        """Once a second (the app's clock): countdowns, auto-return, the status bar's clock."""
        if self.screen is Screen.PAY:
            self.pay.tick()
        if self.screen is Screen.RESULT:
            if self.result.due:
                self.result_done()
            else:
                self.result.changed()  # the "back in N s" countdown
        if self.screen is Screen.ADMIN and not self.admin.unlocked:
            self.admin.changed()  # the lock-out countdown, and the pad coming back to life
        if (self.admin.unlocked and self.screen in (Screen.ADMIN, Screen.HISTORY)
                and not self.tools.busy
                and self.clock() - self._last_touch > ADMIN_IDLE_LOCK_S):
            # An unlocked back office left alone at the counter: lock it (programming, wiping
            # and exports must not wait for whoever walks up next).
            self.go(Screen.SALE)
        self.refresh_status()

    def touched(self) -> None:
        """Any touch on the screen (the app reports them): keeps an unlocked Admin open."""
        self._last_touch = self.clock()

    # -- reader events and the admin card tools ---------------------------------------------
    def reader_event_threadsafe(self, loop: asyncio.AbstractEventLoop, event: Any) -> None:
        """From the reader thread (`hw.nfc.Reader`'s `on_event`): hand any event to the loop."""
        loop.call_soon_threadsafe(self.card_event, event)

    @property
    def wants_card(self) -> bool:
        """True while the Admin screen waits for a card (a card tool or the reader test)."""
        return self.tools.armed or self.tools.busy or self.tests.reader_armed

    def card_event(self, event: Any, release: Callable[[], None] | None = None) -> None:
        """A reader event, on the loop. An armed card tool takes the next card (through the
        event's live `handle`); the reader test describes it; otherwise a tap goes to the sale.
        `release` is called once the card is no longer needed (a simulated card saves itself)."""
        from hw.nfc import (
            CardRemovedEvent,
            HoldStillEvent,
            NotPaymentCardEvent,
            ReaderState,
            ReaderStatusEvent,
            TapEvent,
        )

        handed_over = False
        try:
            if isinstance(event, ReaderStatusEvent):
                ready = event.state is ReaderState.READY
                self.status.update(reader="ready" if ready else "absent")
                self.tests.reader_status(event.message)
            elif isinstance(event, CardRemovedEvent):
                pass
            elif self.tools.busy:
                self.tools.card_unusable(t("tools.busy"))
            elif self.tools.armed and self.admin.unlocked and self.screen is Screen.ADMIN:
                handle = getattr(event, "handle", None)
                if handle is None:
                    self.tools.card_unusable(event.message if isinstance(
                        event, HoldStillEvent | NotPaymentCardEvent) else t("tools.next.again"))
                else:
                    self.spawn(self.run_card_tool(handle, release))
                    handed_over = True
            elif self.tools.phase is ToolPhase.CONFIRM and self.screen is Screen.ADMIN:
                self.tools.card_unusable(t("tools.confirm_first"))
            elif self.tests.reader_armed and self.screen is Screen.ADMIN:
                self.tests.card_seen(event)
            elif isinstance(event, TapEvent):
                self.spawn(self.handle_tap(event.uri))
            elif isinstance(event, NotPaymentCardEvent | HoldStillEvent):
                self.say(event.message)
        finally:
            if not handed_over and release is not None:
                release()

    async def run_card_tool(self, transport: Any, release: Callable[[], None] | None = None
                            ) -> Any:
        """Run the armed tool on the card behind `transport` (in a worker thread: APDUs over
        USB block); step texts come back to the loop as they happen. Returns the ToolReport."""
        from hw.ntag424 import Ntag424

        loop = asyncio.get_running_loop()
        job = self.tools.begin()

        def on_step(text: str) -> None:  # the worker thread
            loop.call_soon_threadsafe(self.tools.step, text)

        try:
            report = await asyncio.to_thread(job.run, Ntag424(transport), on_step)
        except Exception as error:  # a bug must not leave the tool spinning
            log.exception("card tool failed")
            from terminal.app.ui.viewmodels.card_tools import failure_report

            report = failure_report(job.tool, error)
        finally:
            if release is not None:
                release()
        self.tools.finish(report)
        return report

    async def test_printer(self) -> Any:
        result = await self.tests.test_printer(
            self.printer, merchant=self.settings.merchant, terminal_id=self.settings.terminal_id,
            sink=self.receipt_sink)
        if result is not None:
            self.status.update(printer="ready" if result.ok else "error")
        return result

    # -- a sale -----------------------------------------------------------------------------
    def charge_pressed(self) -> None:
        request = self.sale.next()
        if request is not None:
            self.spawn(self.charge(request))

    async def charge(self, request: ChargeRequest | None = None) -> bool:
        """Open the sale and show its invoice. False when nothing could be charged."""
        request = request or self.sale.request()
        if request.amount_minor <= 0 or self._opening or self.session_open:
            return False
        self._result_shown.clear()
        self._opening = True
        self._cancel_requested = False
        self.pay.reset(Money(request.amount_minor, currency(request.currency)))
        self.notice = ""
        self.go(Screen.PAY)
        try:
            session = await self.checkout.open_sale(request.amount_minor, request.currency,
                                                    request.memo)
        except BaseException:
            self._held_tap = None
            raise
        finally:
            self._opening = False
        self.session = session
        self.refresh_status()
        if self._cancel_requested:  # Cancel was pressed while the invoice was being created
            self._held_tap = None
            await session.cancel()
            self._stop_watch()
            self.new_sale()
            return False
        if session.sale.is_final:  # the backend refused to create the invoice
            self._held_tap = None  # a tap held for this sale must never pay the next one
            self._show_outcome(session.outcome())
            return False
        inv = session.invoice
        self.pay.invoice_ready(
            PayInvoice(inv.bolt11, inv.amount_msat, inv.expires_at) if inv is not None else None
        )
        if inv is not None:
            self._watch = self.spawn(self._follow(session))
        held, self._held_tap = self._held_tap, None
        if held is not None:
            await self.handle_tap(held)
        return True

    def active_sale_ids(self) -> set[str]:
        """The sale this screen is driving (the reconcile loop leaves it alone)."""
        return {self.session.record.id} if self.session is not None else set()

    @property
    def session_open(self) -> bool:
        return self.session is not None and not self.session.sale.is_final

    async def _follow(self, session: SaleSession) -> SaleOutcome:
        inv = session.invoice
        timeout = max(1.0, (inv.expires_at if inv else self.clock()) - self.clock()) + \
            SETTLE_GRACE_S
        outcome = await session.wait_settled(timeout)
        if session is self.session:
            # "pending" here means the backend could not confirm in time (it is down or the
            # issuer's answer was lost): never leave the screen waiting forever. The sale stays
            # open in the ledger and the reconcile loop settles it; History will show the end.
            self._show_outcome(outcome)
        return outcome

    # -- taps -------------------------------------------------------------------------------
    def tap_threadsafe(self, loop: asyncio.AbstractEventLoop, url: str) -> None:
        """From the reader thread: hand the tap to the loop (the only thread touching state)."""
        loop.call_soon_threadsafe(lambda: self.spawn(self.handle_tap(url)))

    async def handle_tap(self, url: str) -> TapResult | None:
        if self._opening:
            self._held_tap = url  # the invoice is on its way: use this tap once it is ready
            return None
        session = self.session
        if session is None or self.screen is Screen.SALE and not self.session_open:
            self.say(t("sale.enter_amount"))
            return None
        self.pay.set_phase(PayPhase.CARD_READ)
        if self.screen is Screen.RESULT and self.session_open:
            self._result_shown.clear()
            self.go(Screen.PAY)
        result = await session.tap(url)
        self._after_tap(session, result)
        return result

    async def submit_pin(self) -> TapResult | None:
        session = self.session
        if session is None or not self.pay.pin.complete:
            return None
        pin = self.pay.pin.take()
        self.pay.set_phase(PayPhase.CARD_READ)
        result = await session.submit(pin)
        self._after_tap(session, result)
        return result

    def _after_tap(self, session: SaleSession, result: TapResult) -> None:
        kind = result.kind
        if kind == "late":
            self.say(result.message)
            if self.screen is Screen.PAY and self.session_open:
                self.pay.set_phase(PayPhase.WAITING)
            return
        if kind == "pin-required":
            self.pay.set_phase(PayPhase.PIN)
        elif kind in ("accepted", "unknown"):
            self.pay.set_phase(PayPhase.CONFIRMING)
        elif kind == "refused":
            self.pay.set_phase(PayPhase.WAITING if session.invoice else PayPhase.OFFLINE)
            self._show(ResultInfo(
                "refused", self.pay.amount_text, self.pay.sats_text, method="card",
                reason=result.code, message=result.message, at=self.clock(),
                sale_open=not session.sale.is_final,
            ))
        elif kind in ("queued", "declined", "unconfirmed"):
            # unconfirmed: the issuer said no after the callback, the invoice is still open.
            # The watch goes on (a payment still shows Paid); the counter is told not to
            # charge again, and the reconcile loop settles the sale if the screen moves on.
            self._show_outcome(session.outcome(), message=result.message)
        self.refresh_status()

    # -- endings ----------------------------------------------------------------------------
    def _show_outcome(self, outcome: SaleOutcome, message: str = "") -> None:
        session = self.session
        method = session.record.method if session is not None else None
        self._show(ResultInfo(
            outcome.status if outcome.status != "pending" else "unconfirmed",
            self.pay.amount_text, self.pay.sats_text, method=method, reason=outcome.reason,
            message=message or outcome.message, at=self.clock(), sale_open=False,
        ))
        if outcome.status in ("paid", "queued") and self._auto_print:
            # Printing never blocks the sale: it runs beside the Result screen, and a printer
            # that is off or out of paper only changes the status bar.
            self.spawn(self.print_receipt())

    @property
    def _auto_print(self) -> bool:
        if self.printer is None:
            return False
        config = getattr(self, "config", None)
        return config.printer.auto_print if config is not None else True

    def _show(self, info: ResultInfo) -> None:
        self.result.show(info)
        self.notice = ""
        self.go(Screen.RESULT)
        self._result_shown.set()
        self.refresh_status()

    async def wait_result(self, timeout: float | None = None) -> ResultInfo:
        async with asyncio.timeout(timeout):
            await self._result_shown.wait()
        return self.result.info

    async def cancel(self) -> None:
        self._held_tap = None
        if self._opening:  # the invoice is on its way: cancel it as soon as it exists
            self._cancel_requested = True
            self.go(Screen.SALE)
            return
        session = self.session
        if session is not None and not session.sale.is_final and not await session.cancel():
            self.say(t("pay.confirming"))  # in flight: only its outcome can end it
            return
        self._stop_watch()
        self.new_sale()

    def result_done(self) -> None:
        """Leave the Result screen: back to Pay when the invoice is still open, else a new sale."""
        if self.result.info.kind == "unconfirmed":
            # The payment's outcome is still unknown: the ledger keeps the sale open and the
            # reconcile loop settles it. The counter must not stay blocked meanwhile.
            self._stop_watch()
            self.session = None
            self.new_sale()
            return
        if self.session_open and self.result.info.sale_open:
            self._result_shown.clear()
            self.pay.set_phase(PayPhase.WAITING if self.pay.invoice else PayPhase.OFFLINE)
            self.go(Screen.PAY)
        else:
            self.new_sale()

    def new_sale(self) -> None:
        if self.session_open or self._opening:
            return
        self._held_tap = None
        self._stop_watch()
        self.session = None
        self._result_shown.clear()
        self.pay.reset(Money(0, currency(self.sale.currency_code)))
        self.sale.reset()
        self.notice = ""
        self.go(Screen.SALE)

    def _stop_watch(self) -> None:
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        self._watch = None

    # -- receipts ---------------------------------------------------------------------------
    def receipt_text(self, sale_id: str | None = None, *, reprint: bool = False) -> str:
        from hw.printer import as_text
        from terminal.adapters.receipts import sale_receipt

        record = self._record(sale_id)
        if record is None:
            return ""
        doc = sale_receipt(record, merchant=self.settings.merchant,
                           terminal_id=self.settings.terminal_id, reprint=reprint)
        return as_text(doc, self.settings.receipt_width)

    def _record(self, sale_id: str | None):
        if sale_id is None:
            return self.session.record if self.session is not None else None
        return self.checkout.ledger.get_sale(sale_id)

    async def print_receipt(self, sale_id: str | None = None) -> str:
        """Print (or hand to the receipt sink) the receipt; returns a status line to show."""
        from terminal.adapters.receipts import print_receipt, sale_receipt, status_text

        record = self._record(sale_id)
        if record is None:
            return ""
        reprint = self.result.printed if sale_id is None else True
        if self.printer is None:
            if self.receipt_sink is not None:
                self.receipt_sink(self.receipt_text(sale_id, reprint=reprint))
            if sale_id is None:
                self.result.mark_printed()
            return t("result.printed")
        doc = sale_receipt(record, merchant=self.settings.merchant,
                           terminal_id=self.settings.terminal_id, reprint=reprint)
        outcome = await print_receipt(self.printer, doc)  # type: ignore[arg-type]
        self.status.update(printer="ready" if outcome.ok else "error")
        if outcome.ok:
            if sale_id is None:
                self.result.mark_printed()
            if not record.receipt_printed:
                record.receipt_printed = True
                self.checkout.ledger.save_sale(record)
        return status_text(outcome)

    async def aclose(self) -> None:
        self._stop_watch()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
