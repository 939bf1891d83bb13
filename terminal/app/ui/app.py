"""The Kivy application: status bar, the five screens and (in demo mode) the demo strip.

Runs on the asyncio loop (`App.async_run`), so the controller's tasks, the backend's WebSocket and
the sandbox share one thread with the widgets; a reader thread reaches it only through
`TerminalController.tap_threadsafe`. Screen switches have no animation: instant transitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")

from kivy.app import App  # noqa: E402
from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.uix.boxlayout import BoxLayout  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from terminal.app.ui.screens.admin import AdminScreen  # noqa: E402
from terminal.app.ui.screens.history import HistoryScreen  # noqa: E402
from terminal.app.ui.screens.pay import PayScreen  # noqa: E402
from terminal.app.ui.screens.result import ResultScreen  # noqa: E402
from terminal.app.ui.screens.sale import SaleScreen  # noqa: E402
from terminal.app.ui.viewmodels.controller import TerminalController  # noqa: E402
from terminal.app.ui.widgets import DemoStrip, StatusBar  # noqa: E402

WINDOW_SIZE = (800, 480)
BACKGROUND = (0.11, 0.12, 0.14, 1)
RATE_REFRESH_S = 60.0
log = logging.getLogger(__name__)
DEMO_KEYS = {"1": "A", "2": "B", "4": "blank"}


class FlashTerminalApp(App):
    title = "Flash Terminal"

    def __init__(self, controller: TerminalController, *, demo=None, config=None,
                 data_dir: Path | None = None, admin_hint: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.controller = controller
        self.demo = demo  # terminal.app.demo.DemoEnvironment in demo mode
        self.config_ = config
        self.data_dir = data_dir or Path(".")
        self.admin_hint = admin_hint
        self.started = asyncio.Event()
        self.screens: dict[str, object] = {}
        self._shown_screen = None

    def build(self):
        Window.clearcolor = BACKGROUND
        root = BoxLayout(orientation="vertical")
        self.status_bar = StatusBar()
        root.add_widget(self.status_bar)
        self.manager = ScreenManager(transition=NoTransition())
        c = self.controller
        if c.config is None and self.config_ is not None:
            c.use_config(self.config_)
        for cls in (SaleScreen, PayScreen, ResultScreen, HistoryScreen, AdminScreen):
            screen = cls()
            if isinstance(screen, AdminScreen):
                screen.config, screen.hint = self.config_, self.admin_hint
            if isinstance(screen, HistoryScreen):
                screen.data_dir = self.data_dir
            screen.attach(c)
            self.manager.add_widget(screen)
            self.screens[screen.name] = screen
        root.add_widget(self.manager)
        if self.demo is not None:
            self.demo_strip = DemoStrip(app=self)
            root.add_widget(self.demo_strip)
        c.subscribe(self._on_controller)
        c.status.subscribe(self.status_bar.show)
        self.status_bar.show(c.status)
        Window.bind(on_key_down=self._on_key)
        # Report touches without consuming them: an unlocked Admin screen locks when idle.
        Window.bind(on_touch_down=lambda *_: self.controller.touched())
        Clock.schedule_interval(lambda _dt: c.tick(), 1.0)
        return root

    def on_start(self) -> None:
        self.controller.spawn(self._rates_loop())
        self.started.set()

    async def _rates_loop(self) -> None:
        while True:
            try:
                await self.controller.refresh_rates()
            except Exception:  # one bad answer must not stop pricing for the rest of the day
                log.exception("rate refresh failed")
            await asyncio.sleep(RATE_REFRESH_S)

    def _on_controller(self, c: TerminalController) -> None:
        name = c.screen.value
        if self.manager.current != name:
            self.manager.current = name
        self.status_bar.ids.clock.text = c.status.clock_text
        notice = getattr(self.screens.get("sale"), "ids", {}).get("rate_age")
        if notice is not None and c.notice and c.screen.value == "sale":
            notice.text = c.notice

    # -- demo -------------------------------------------------------------------------------
    def demo_tap(self, label: str) -> None:
        """The simulated card on the "reader": the same event, and the same routing (sale,
        card tool or reader test), as a card on a real reader. A few ms, no I/O wait."""
        if self.demo is None:
            return
        event, release = self.demo.present(label)
        self.controller.card_event(event, release)

    def demo_pay_qr(self) -> None:
        invoice = self.controller.pay.invoice
        if self.demo is not None and invoice is not None and self.controller.session_open:
            self.demo.pay_qr(invoice.bolt11)

    def _on_key(self, _window, _key, _scancode, codepoint, _modifiers) -> bool:
        if self.demo is None or codepoint is None:
            return False
        if codepoint in DEMO_KEYS:
            self.demo_tap(DEMO_KEYS[codepoint])
            return True
        if codepoint == "3":
            self.demo_pay_qr()
            return True
        return False


async def run_app(app: FlashTerminalApp) -> None:
    await app.async_run(async_lib="asyncio")
    await app.controller.aclose()


def run_demo_window(data_dir: Path | None = None) -> int:
    """`flash-terminal demo`: the app in a window against the in-process sandbox."""
    from terminal.app.demo import DEMO_ADMIN_PIN, DemoEnvironment

    async def main() -> None:
        env = await DemoEnvironment.start(data_dir)
        try:
            app = FlashTerminalApp(
                env.controller(receipt_sink=print), demo=env, config=env.config,
                data_dir=env.work_dir, admin_hint=f"Demo admin PIN: {DEMO_ADMIN_PIN}",
            )
            await run_app(app)
        finally:
            await env.stop()

    Window.size = WINDOW_SIZE
    asyncio.run(main())
    return 0
