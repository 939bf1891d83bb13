"""The Result screen: paid or not, in the tone's colour, with icon, words and next step."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.viewmodels.tones import COLOURS, text_colour

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class ResultScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.result.subscribe(self.refresh)
        super().attach(controller)

    def print_receipt(self) -> None:
        async def run() -> None:
            self.ids.printed.text = await self.controller.print_receipt()

        self.controller.spawn(run())

    def primary(self) -> None:
        self.controller.result_done()

    def cancel_sale(self) -> None:
        self.controller.cancel_pressed()

    def refresh(self, *_args) -> None:
        vm = self.controller.result
        ids = self.ids
        self.bg = COLOURS[vm.tone]
        ink = text_colour(vm.tone)
        for label in (ids.icon, ids.title, ids.amount, ids.detail, ids.next, ids.printed,
                      ids.back_in):
            label.color = ink
        ids.icon.text = vm.icon
        ids.title.text = vm.title
        ids.amount.text = " · ".join(p for p in (vm.amount_text, vm.tip_text) if p)
        ids.detail.text = "\n".join(p for p in (vm.detail_text, vm.card_balance_text) if p)
        ids.next.text = vm.next_text
        ids.print_btn.text = vm.print_label
        ids.print_btn.disabled = not vm.paid
        open_sale = vm.sale_open
        ids.primary.text = vm.primary_text
        ids.cancel_sale.opacity, ids.cancel_sale.disabled = (1, False) if open_sale else (0, True)
        ids.back_in.text = vm.back_text
        ids.printed.text = vm.print_status
