"""The Result screen: paid or failed, in the tone's colour, with icon, words and next step."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.tones import COLOURS

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
        self.controller.spawn(self.controller.cancel())

    def refresh(self, *_args) -> None:
        vm = self.controller.result
        ids = self.ids
        self.bg = COLOURS[vm.tone]
        ids.icon.text = vm.icon
        ids.title.text = vm.title
        ids.amount.text = vm.info.amount_text + (f"  ·  {vm.info.sats_text}"
                                                 if vm.info.sats_text else "")
        ids.detail.text = vm.detail_text
        ids.next.text = vm.next_text
        ids.print_btn.text = vm.print_label
        ids.print_btn.disabled = not vm.paid
        open_sale = vm.info.sale_open
        ids.primary.text = t("result.try_again") if open_sale else t("result.new_sale")
        ids.cancel_sale.opacity, ids.cancel_sale.disabled = (1, False) if open_sale else (0, True)
        ids.back_in.text = vm.back_text
        if not vm.printed:
            ids.printed.text = ""
