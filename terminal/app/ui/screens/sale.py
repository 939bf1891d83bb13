"""The Sale screen: keypad, sat equivalent and rate age, the tip step, memo, Charge, History."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.controller import Screen

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

NOTICE_COLOUR = (1, 0.78, 0.35, 1)  # amber on the dark background: 10:1 contrast
QUIET_COLOUR = (0.8, 0.85, 0.9, 1)


class SaleScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.sale.subscribe(self.refresh)
        super().attach(controller)

    def press(self, key: str) -> None:
        self.controller.sale.press(key)

    def clear_pressed(self) -> None:
        if self.controller.sale.custom_tip_mode:
            self.controller.till.back()  # out of the custom tip, back to the tip choices
        else:
            self.controller.sale.press("clear")

    def charge(self) -> None:
        self.controller.charge_pressed()

    def switch_currency(self) -> None:
        self.controller.sale.switch_currency()

    def set_memo(self, text: str) -> None:
        if text != self.controller.sale.memo:
            self.controller.sale.set_memo(text)

    def choose_tip(self, index: int) -> None:
        self.controller.choose_tip(index)

    def custom_tip(self) -> None:
        self.controller.till.custom_tip()

    def tip_back(self) -> None:
        self.controller.till.back()

    def admin(self) -> None:
        self.controller.go(Screen.ADMIN)

    def cashier_pressed(self) -> None:
        """Signed in: sign out (the next cashier signs in). Nobody: sign in."""
        if self.controller.till.cashier is not None:
            self.controller.sign_out()
        else:
            self.controller.go(Screen.SIGN_IN)

    def history(self) -> None:
        self.controller.go(Screen.HISTORY)

    def refresh(self, *_args) -> None:
        vm = self.controller.sale
        ids = self.ids
        ids.amount.text = vm.amount_text
        notice = vm.notice
        problem = vm.rate_problem
        ids.sats.text = notice or problem or vm.sats_text
        ids.sats.color = NOTICE_COLOUR if notice or problem else QUIET_COLOUR
        ids.rate_age.text = vm.rate_age_text
        signin = self.controller.signin
        if signin.staff.enabled:
            name = signin.signed_in_text
            ids.cashier.text = t("sale.sign_out", name=name) if name else t("signin.button")
            ids.cashier.opacity, ids.cashier.disabled = 1, vm.tip_mode
        else:
            ids.cashier.opacity, ids.cashier.disabled, ids.cashier.size_hint_x = 0, True, 0.001
        ids.currency.text = t("sale.switch", code=vm.currency_code)
        ids.currency.disabled = not vm.can_switch
        ids.charge.disabled = not (vm.can_charge or vm.custom_tip_mode)
        ids.charge.text = vm.charge_label
        if ids.memo.text != vm.memo:
            ids.memo.text = vm.memo
        ids.memo.disabled = vm.tip_mode
        ids.clear_key.text = t("tip.back") if vm.custom_tip_mode else t("sale.clear")
        keypad = vm.keypad_visible
        ids.keypad.opacity, ids.keypad.disabled = (1, False) if keypad else (0, True)
        tips = vm.tip_mode and not vm.custom_tip_mode
        ids.tips.opacity, ids.tips.disabled = (1, False) if tips else (0, True)
        if tips:
            ids.tip_title.text = vm.tip_title
            options = vm.tip_options
            buttons = [ids.tip0, ids.tip1, ids.tip2, ids.tip3]
            for i, button in enumerate(buttons):
                if i < len(options):
                    label, choice = options[i]
                    button.text = f"{label}\n{vm.tip_line(choice)}" if i else label
                    button.opacity, button.disabled = 1, False
                else:
                    button.text, button.opacity, button.disabled = "", 0, True
            ids.tip_custom.disabled = not vm.allow_custom_tip
            ids.tip_custom.opacity = 1 if vm.allow_custom_tip else 0
