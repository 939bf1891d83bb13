"""The Kivy application: status bar, the screens and (in demo mode) the demo strip.

Runs on the asyncio loop (`App.async_run`), so the controller's tasks, the backend's WebSocket and
the sandbox share one thread with the widgets; a reader thread reaches it only through
`TerminalController.reader_event_threadsafe`. Screen switches have no animation: instant
transitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

os.environ.setdefault("KIVY_NO_ARGS", "1")

from kivy.app import App  # noqa: E402
from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.uix.boxlayout import BoxLayout  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from terminal.app.ui.screens.admin import AdminScreen  # noqa: E402
from terminal.app.ui.screens.history import HistoryScreen  # noqa: E402
from terminal.app.ui.screens.pay import PayScreen  # noqa: E402
from terminal.app.ui.screens.refund import RefundScreen  # noqa: E402
from terminal.app.ui.screens.report import ReportScreen  # noqa: E402
from terminal.app.ui.screens.result import ResultScreen  # noqa: E402
from terminal.app.ui.screens.sale import SaleScreen  # noqa: E402
from terminal.app.ui.screens.signin import SignInScreen  # noqa: E402
from terminal.app.ui.viewmodels.controller import TerminalController  # noqa: E402
from terminal.app.ui.widgets import DemoStrip, StatusBar  # noqa: E402

WINDOW_SIZE = (800, 480)
BACKGROUND = (0.11, 0.12, 0.14, 1)
log = logging.getLogger(__name__)
DEMO_KEYS = {"1": "A", "2": "B", "4": "blank"}


class FlashTerminalApp(App):
    title = "Flash Terminal"

    def __init__(self, controller: TerminalController, *, demo: DemoHooks | None = None,
                 config=None, data_dir: Path | None = None, admin_hint: str = "",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.controller = controller
        self.demo = demo  # the demo strip's hooks (cards, QR, network) in demo mode
        self.config_ = config
        self.data_dir = data_dir or Path(".")
        self.admin_hint = admin_hint
        self.started = asyncio.Event()
        self.screens: dict[str, Any] = {}

    def build(self):
        Window.clearcolor = BACKGROUND
        root = BoxLayout(orientation="vertical")
        self.status_bar = StatusBar()
        root.add_widget(self.status_bar)
        self.manager = ScreenManager(transition=NoTransition())
        c = self.controller
        if c.config is None and self.config_ is not None:
            c.use_config(self.config_)
        for cls in (SaleScreen, PayScreen, ResultScreen, HistoryScreen, AdminScreen,
                    SignInScreen, ReportScreen, RefundScreen):
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
        if Window.top < 0:  # no window manager placed it: keep the whole panel on screen
            Window.top = 0
        self.started.set()

    def _on_controller(self, c: TerminalController) -> None:
        name = c.screen.value
        if self.manager.current != name:
            self.manager.current = name
        self.status_bar.ids.clock.text = c.status.clock_text

    # -- demo -------------------------------------------------------------------------------
    def demo_tap(self, label: str) -> None:
        """The simulated card on the "reader": the same event, and the same routing (sale,
        card tool or reader test), as a card on a real reader. A few ms, no I/O wait."""
        if self.demo is None:
            return
        event, release = self.demo.card_on_reader(label)
        self.controller.card_event(event, release)

    def demo_pay_qr(self) -> None:
        invoice = self.controller.pay.invoice
        if self.demo is not None and invoice is not None and self.controller.till.session_open:
            self.demo.pay_qr(invoice.bolt11)

    def demo_toggle_network(self) -> None:
        demo = self.demo
        if demo is None:
            return
        up = not demo.network_up

        async def switch() -> None:
            await demo.set_network(up)
            self.demo_strip.ids.network.text = f"Network: {'on' if up else 'off'}  [5]"
            self.controller.changed()

        self.controller.spawn(switch())

    def _on_key(self, _window, _key, _scancode, codepoint, _modifiers) -> bool:
        if self.demo is None or codepoint is None:
            return False
        if codepoint in DEMO_KEYS:
            self.demo_tap(DEMO_KEYS[codepoint])
            return True
        if codepoint == "3":
            self.demo_pay_qr()
            return True
        if codepoint == "5":
            self.demo_toggle_network()
            return True
        return False


class DemoHooks(Protocol):
    """What the demo strip needs (the demo environment provides it; the UI never imports it)."""

    @property
    def network_up(self) -> bool: ...

    def card_on_reader(self, label: str) -> tuple[Any, Callable[[], None]]: ...

    def pay_qr(self, bolt11: str) -> None: ...

    async def set_network(self, up: bool) -> None: ...


async def run_app(app: FlashTerminalApp) -> None:
    await app.async_run(async_lib="asyncio")
    await app.controller.aclose()
