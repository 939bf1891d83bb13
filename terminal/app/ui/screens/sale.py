"""The Sale screen: keypad, sat equivalent and rate age, tip step, memo, Charge."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.controller import Screen
from terminal.app.ui.viewmodels.sale import SaleStep

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class SaleScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.sale.subscribe(self.refresh)
        super().attach(controller)

    def press(self, key: str) -> None:
        self.controller.sale.press(key)

    def charge(self) -> None:
        self.controller.charge_pressed()

    def switch_currency(self) -> None:
        self.controller.sale.switch_currency()

    def set_memo(self, text: str) -> None:
        if text != self.controller.sale.memo:
            self.controller.sale.set_memo(text)

    def choose_tip(self, index: int) -> None:
        sale = self.controller.sale
        request = sale.choose_tip(sale.tip_options[index][1])
        if request is not None:
            self.controller.spawn(self.controller.charge(request))

    def admin(self) -> None:
        self.controller.go(Screen.ADMIN)

    def refresh(self, *_args) -> None:
        vm = self.controller.sale
        ids = self.ids
        ids.amount.text = vm.amount_text
        problem = vm.rate_problem
        ids.sats.text = problem or vm.sats_text
        ids.sats.color = (1, 0.6, 0.3, 1) if problem else (0.8, 0.85, 0.9, 1)
        ids.rate_age.text = vm.rate_age_text
        ids.currency.text = t("sale.switch", code=vm.currency_code)
        ids.currency.disabled = not vm.can_switch
        ids.charge.disabled = not vm.can_charge
        ids.charge.text = t("sale.next") if vm.tips.enabled else t("sale.charge")
        if ids.memo.text != vm.memo:
            ids.memo.text = vm.memo
        tip_mode = vm.step is SaleStep.TIP
        ids.keypad.opacity, ids.keypad.disabled = (0, True) if tip_mode else (1, False)
        ids.tips.opacity, ids.tips.disabled = (1, False) if tip_mode else (0, True)
        if tip_mode:
            for i, (button, (label, choice)) in enumerate(
                zip(ids.tips.children[::-1], vm.tip_options, strict=False)
            ):
                button.text = f"{label}\n{vm.tip_line(choice)}" if i else label
