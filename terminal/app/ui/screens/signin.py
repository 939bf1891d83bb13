"""The sign-in screen: the cashiers by name, a PIN pad for the one tapped, and (when sign-in is
optional) a way back to the Sale screen. Every decision is in `SignInViewModel` and the till."""

from __future__ import annotations

from pathlib import Path

from kivy.factory import Factory
from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.controller import Screen

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

ERROR_COLOUR = (1, 0.45, 0.4, 1)
SELECTED = (0.08, 0.45, 0.7, 1)
NORMAL = (0.24, 0.26, 0.31, 1)


class SignInScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.signin.subscribe(self.refresh)
        super().attach(controller)

    def choose(self, cashier_id: str) -> None:
        self.controller.signin.choose(cashier_id)

    def key(self, key: str) -> None:
        self.controller.signin.press(key)

    def submit(self) -> None:
        self.controller.sign_in_pressed()

    def skip(self) -> None:
        self.controller.go(Screen.SALE)

    def admin(self) -> None:
        self.controller.go(Screen.ADMIN)

    def refresh(self, *_args) -> None:
        vm = self.controller.signin
        ids = self.ids
        ids.title.text = t("signin.title")
        ids.message.text = vm.message
        ids.message.color = ERROR_COLOUR if vm.locked or vm.last is not None else (1, 1, 1, 1)
        ids.digits.text = vm.masked
        ids.pad_keys.disabled = vm.locked or vm.selected is None
        ids.skip.text = t("signin.skip")
        ids.skip.opacity, ids.skip.disabled = (1, False) if vm.can_skip else (0, True)
        buttons = vm.cashiers()
        shown = [(b.cashier_id, b.text) for b in buttons]
        if getattr(self, "_shown", None) != shown:
            self._shown = shown
            ids.names.clear_widgets()
            for button in buttons:
                widget = Factory.CashierNameButton(text=button.text)
                widget.cashier_id = button.cashier_id
                widget.bind(on_release=lambda w: self.choose(w.cashier_id))
                ids.names.add_widget(widget)
        for widget in ids.names.children:
            widget.background_color = SELECTED if widget.cashier_id == vm.selected else NORMAL
