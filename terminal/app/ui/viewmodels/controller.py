"""The terminal as the screens see it: which screen is up, and the view models that present the
till.

The sale itself lives in `terminal.services.till.Till`; this object only adds what is screen-only:
the back office (History, Admin and its PIN, card tools, device tests), reader-event routing
(an armed card tool or the reader test takes the next card; otherwise it goes to the till) and the
status bar. It imports no Kivy, so the screens' logic is tested (and `demo --headless` runs)
without a window. A reader thread hands events over with `reader_event_threadsafe`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from terminal.app.ui.strings import notice_text, t
from terminal.app.ui.viewmodels.admin import AdminLock
from terminal.app.ui.viewmodels.card_blocks import CardBlocksViewModel
from terminal.app.ui.viewmodels.card_tools import (
    CardToolsSettings,
    CardToolsViewModel,
    Tool,
    ToolPhase,
    ToolReport,
)
from terminal.app.ui.viewmodels.cashiers import CashiersViewModel
from terminal.app.ui.viewmodels.device_tests import DeviceTestsViewModel
from terminal.app.ui.viewmodels.history import HistoryViewModel
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.pay import PayViewModel
from terminal.app.ui.viewmodels.refund import RefundPhase, RefundViewModel
from terminal.app.ui.viewmodels.report import ReportViewModel
from terminal.app.ui.viewmodels.result import ResultViewModel
from terminal.app.ui.viewmodels.sale import SaleViewModel
from terminal.app.ui.viewmodels.signin import SignInViewModel
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.core.ports.receipts import PrintOutcome
from terminal.services.till import Notice, Step, Till

if TYPE_CHECKING:
    from terminal.app.config import Config

log = logging.getLogger(__name__)

ADMIN_IDLE_LOCK_S = 120.0  # an unlocked Admin screen locks itself after this


class Screen(enum.Enum):
    SALE = "sale"
    PAY = "pay"
    RESULT = "result"
    HISTORY = "history"
    ADMIN = "admin"
    SIGN_IN = "signin"
    REPORT = "report"
    REFUND = "refund"


_STEP_SCREENS = {Step.AMOUNT: Screen.SALE, Step.TIP: Screen.SALE, Step.PAY: Screen.PAY,
                 Step.RESULT: Screen.RESULT}


@dataclass(frozen=True)
class UiSettings:
    merchant: str = "Flash Terminal"
    terminal_id: str | None = None
    reader: str = "absent"  # ready | absent | demo


class TerminalController(Observable):
    def __init__(
        self,
        till: Till,
        *,
        admin_pin_hash: str | None,
        settings: UiSettings | None = None,
        clock: Callable[[], float] = time.time,
        config: Config | None = None,
        card_url: str = "",
    ) -> None:
        super().__init__()
        self.till = till
        self.settings = settings or UiSettings()
        self.clock = clock
        self.sale = SaleViewModel(till)
        self.pay = PayViewModel(till)
        self.result = ResultViewModel(till)
        self.status = StatusViewModel(clock)
        self.history = HistoryViewModel(till)
        self.signin = SignInViewModel(till)
        self.admin = AdminLock(admin_pin_hash, staff=till.staff)
        self.signing_in = False  # the cashier chose "Sign in" (when sign-in is optional)
        self.reports = ReportViewModel(till, manager=lambda: self.manager)
        self.refund = RefundViewModel(till, admin=self.admin, manager=lambda: self.manager,
                                      spawn=self.spawn)
        self.cashiers = CashiersViewModel(till)
        self.tools = CardToolsViewModel(verify=till.checkout.keyring.verify_tap)
        self.blocks = CardBlocksViewModel(till.checkout.card_policy,
                                          verify=till.checkout.keyring.verify_tap)
        self.tools.blocks = self.blocks
        self.tests = DeviceTestsViewModel(clock)
        self.config: Config | None = None
        if config is not None:
            self.use_config(config, card_url)
        self.back_office: Screen | None = None  # HISTORY or ADMIN over the till's own screen
        self._last_touch = clock()
        receipts = till.receipts
        self.status.update(reader=self.settings.reader,
                           printer="ready" if receipts is not None and receipts.has_printer
                           else "none")
        till.subscribe(self._on_till)
        self.refresh_status()

    def use_config(self, config: Config, card_url: str = "") -> None:
        """The enrolled configuration: the settings overview and the card tools read it."""
        self.config = config
        self.tools.configure(CardToolsSettings.from_config(config, card_url))

    # -- screens ----------------------------------------------------------------------------
    @property
    def screen(self) -> Screen:
        if self.back_office is not None:
            return self.back_office
        till = self.till
        if till.step is Step.AMOUNT and (self.signing_in or till.staff.required):
            return Screen.SIGN_IN
        return _STEP_SCREENS[till.step]

    @property
    def notice(self) -> str:
        return notice_text(self.till.notice)

    def go(self, screen: Screen) -> None:
        """Navigate. History and Admin open over the Sale or a finished Result, never over an
        open invoice; History needs no PIN (a cashier reprints), Admin asks for its PIN."""
        if screen in (Screen.HISTORY, Screen.ADMIN, Screen.REPORT, Screen.REFUND):
            if self.till.step in (Step.PAY, Step.TIP) or self.till.session_open:
                return
            if screen is Screen.HISTORY and self.back_office is not Screen.HISTORY:
                self.history.reload()
            if screen is Screen.REPORT and self.back_office is not Screen.REPORT:
                self.reports.reload()
            if screen is Screen.ADMIN and not self.admin.unlocked:
                self.admin.open_for_manager()  # a signed-in manager needs no PIN
            self.back_office = screen
        elif screen is Screen.SIGN_IN:
            if not self.till.between_sales or not self.till.staff.enabled:
                return
            self.back_office, self.signing_in = None, True
            self.signin.reset()
            self.admin.lock()
        else:
            self.back_office, self.signing_in = None, False
            self.admin.lock()
        if screen is Screen.SALE or screen is Screen.SIGN_IN:
            self.reports.message = ""
        if screen is not Screen.ADMIN:
            self.tools.cancel()  # the next tap belongs to the sale again (a busy tool finishes)
            self.tests.disarm()
        self.changed()

    def _on_till(self, _till: Till) -> None:
        self.refresh_status()
        self.changed()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.till.spawn(coro)

    # -- the sale (forwarded to the till) ---------------------------------------------------
    def charge_pressed(self) -> None:
        if self.sale.custom_tip_mode:
            self.spawn(self.till.custom_tip_done())
        else:
            self.spawn(self.till.charge())

    def choose_tip(self, index: int) -> None:
        options = self.sale.tip_options
        if 0 <= index < len(options):
            self.spawn(self.till.choose_tip(options[index][1]))

    def cancel_pressed(self) -> None:
        self.spawn(self.till.cancel())

    def pin_ok(self) -> None:
        self.spawn(self.till.submit_pin())

    def result_done(self) -> None:
        self.till.result_done()

    def new_sale(self) -> None:
        self.till.new_sale()

    # -- refunds (History > a paid sale > Refund) -------------------------------------------
    def open_refund(self, sale_id: str) -> bool:
        """The Refund screen for `sale_id`, over History (between sales only)."""
        if self.till.step in (Step.PAY, Step.TIP) or self.till.session_open:
            return False
        self.go(Screen.REFUND)
        if self.back_office is not Screen.REFUND:
            return False
        self.refund.open(sale_id)
        self.changed()
        return True

    def refund_done(self) -> None:
        """Back to History (the refund shows on its sale)."""
        self.refund.cancel_tap()
        self.back_office = Screen.HISTORY
        self.history.reload()
        self.changed()

    # -- cashiers ---------------------------------------------------------------------------
    def sign_in_pressed(self) -> None:
        """The PIN's OK on the sign-in screen; on success the Sale screen comes back."""
        from terminal.core.cashiers import Attempt

        if self.signin.submit() is Attempt.OK:
            self.signing_in = False
            self.changed()

    def sign_out(self) -> None:
        if self.till.sign_out():
            self.signin.reset()
            self.signing_in = self.till.staff.required
            self.changed()

    @property
    def manager(self) -> bool:
        """A manager's rights right now: a signed-in manager, or the Admin pad unlocked."""
        return self.till.staff.is_manager or self.admin.unlocked

    async def print_receipt(self, sale_id: str | None = None) -> str:
        report = await self.till.print_receipt(sale_id)
        self.status.update(printer="ready" if report.outcome is PrintOutcome.PRINTED else
                           "none" if report.outcome in (PrintOutcome.NO_PRINTER,
                                                        PrintOutcome.SHOWN) else "error")
        return self.result.print_status

    # -- status -----------------------------------------------------------------------------
    def refresh_status(self) -> None:
        exposure = self.till.exposure()
        self.status.update(online=self.till.online, exposure=exposure,
                           flagged=self._flagged() if exposure.count else 0,
                           drain_s=self.till.drain_time_s() if exposure.count else None)

    def _flagged(self) -> int:
        """Offline payments still owed by cards that are blocked now (the status bar warns)."""
        policy = self.till.checkout.card_policy
        if policy is None:
            return 0
        try:
            return len(policy.flagged_payouts())
        except Exception:  # a status line must never take the screen down
            log.exception("flagged payouts unavailable")
            return 0

    def tick(self) -> None:
        """Once a second (the app's clock): countdowns, auto-return, admin idle lock."""
        self.till.tick()
        if self.screen is Screen.ADMIN and not self.admin.unlocked:
            self.admin.changed()  # the lock-out countdown, and the pad coming back to life
        refund_busy = self.screen is Screen.REFUND and self.refund.phase in (
            RefundPhase.WORKING, RefundPhase.WAIT_TAP)
        if (self.admin.unlocked and self.screen in (Screen.ADMIN, Screen.REPORT, Screen.REFUND)
                and not self.tools.busy and not refund_busy
                and self.clock() - self._last_touch > ADMIN_IDLE_LOCK_S):
            # An unlocked back office left alone at the counter locks itself (programming,
            # wiping and settings must not wait for whoever walks up next).
            self.go(Screen.SALE)
        self.refresh_status()

    def touched(self) -> None:
        """Any touch on the screen (the app reports them): keeps an unlocked Admin open."""
        self._last_touch = self.clock()

    # -- reader events ----------------------------------------------------------------------
    def reader_event_threadsafe(self, loop: asyncio.AbstractEventLoop, event: Any) -> None:
        """From the reader thread (`hw.nfc.Reader`'s `on_event`): hand any event to the loop."""
        loop.call_soon_threadsafe(self.card_event, event)

    @property
    def wants_card(self) -> bool:
        """True while the Admin screen waits for a card (a card tool or the reader test)."""
        return self.tools.armed or self.tools.busy or self.tests.reader_armed

    def card_event(self, event: Any, release: Callable[[], None] | None = None) -> None:
        """A reader event, on the loop: handled beside the screen (see `present_card`)."""
        self.spawn(self.present_card(event, release))

    async def present_card(self, event: Any, release: Callable[[], None] | None = None) -> None:
        """Route one reader event and return once it was handled. An armed card tool takes the
        next card (through the event's live `handle`); the reader test describes it; otherwise a
        tap goes to the till. `release` is called once the card is no longer needed (a simulated
        card saves itself)."""
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
            elif (self.tools.armed and self.tools.tool is Tool.BLOCK and self.admin.unlocked
                  and self.screen is Screen.ADMIN):
                if isinstance(event, TapEvent):
                    self.block_card(event.uri)
                else:
                    self.tools.card_unusable(event.message if isinstance(
                        event, HoldStillEvent | NotPaymentCardEvent) else t("tools.next.again"))
            elif self.tools.armed and self.admin.unlocked and self.screen is Screen.ADMIN:
                handle = getattr(event, "handle", None)
                if handle is None:
                    self.tools.card_unusable(event.message if isinstance(
                        event, HoldStillEvent | NotPaymentCardEvent) else t("tools.next.again"))
                else:
                    handed_over = True
                    await self.run_card_tool(handle, release)
            elif self.tools.phase is ToolPhase.CONFIRM and self.screen is Screen.ADMIN:
                self.tools.card_unusable(t("tools.confirm_first"))
            elif self.tests.reader_armed and self.screen is Screen.ADMIN:
                self.tests.card_seen(event)
            elif self.screen is Screen.REFUND:
                # The card that paid, for its refund: never a sale from this screen.
                if isinstance(event, TapEvent):
                    await self.refund.tap(event.uri)
                elif isinstance(event, NotPaymentCardEvent | HoldStillEvent):
                    self.refund.message = event.message
                    self.refund.changed()
            elif isinstance(event, TapEvent):
                if self.back_office is not None:
                    self.go(Screen.SALE)  # a customer's tap brings the till back
                await self.till.tap(event.uri)
            elif isinstance(event, NotPaymentCardEvent | HoldStillEvent):
                self.till.say(Notice("reader", event.message))
        finally:
            if not handed_over and release is not None:
                release()

    def block_card(self, url: str) -> ToolReport:
        """The armed Block tool takes this tap: its card is blocked with the chosen reason."""
        self.tools.begin()
        try:
            found = self.blocks.block_tap(url)
            report = ToolReport(found.ok, found.title, found.lines, found.next_step)
        except Exception as error:  # the books refused the write: say so, never spin
            log.exception("blocking a card failed")
            report = ToolReport(False, t("blocks.failed"), (str(error),), t("tools.next.again"))
        self.tools.finish(report)
        self.refresh_status()
        return report

    async def run_card_tool(self, transport: Any, release: Callable[[], None] | None = None
                            ) -> Any:
        """Run the armed tool on the card behind `transport` (in a worker thread: APDUs over
        USB block); step texts come back to the loop as they happen. Returns the ToolReport."""
        from hw.ntag424 import Ntag424

        loop = asyncio.get_running_loop()
        job = self.tools.begin()

        def on_step(text: str) -> None:  # the worker thread
            loop.call_soon_threadsafe(self.tools.step, text)

        from terminal.app.ui.viewmodels.card_tools import report_for
        from terminal.services.card_tools import failure

        try:
            result = await asyncio.to_thread(job.run, Ntag424(transport), on_step)
        except Exception as error:  # a bug must not leave the tool spinning
            log.exception("card tool failed")
            result = failure(job.tool, error)
        finally:
            if release is not None:
                release()
        report = report_for(result)
        self.tools.finish(report)
        return report

    async def test_printer(self) -> Any:
        receipts = self.till.receipts
        printer = getattr(receipts, "printer", None)
        sink = getattr(receipts, "sink", None)
        result = await self.tests.test_printer(
            printer, merchant=self.settings.merchant, terminal_id=self.settings.terminal_id,
            sink=sink)
        if result is not None:
            self.status.update(printer="ready" if result.ok else "error")
        return result

    async def aclose(self) -> None:
        await self.till.aclose()
