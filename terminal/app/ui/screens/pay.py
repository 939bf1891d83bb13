"""The Pay screen: QR, amount, what the customer should do now, live status, countdown, the
card PIN pad, Cancel."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.viewmodels.tones import COLOURS, ICONS, text_colour

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class PayScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.pay.subscribe(self.refresh)
        super().attach(controller)

    def cancel(self) -> None:
        self.controller.cancel_pressed()

    def pin_key(self, key: str) -> None:
        self.controller.till.key(key)

    def pin_ok(self) -> None:
        self.controller.pin_ok()

    def refresh(self, *_args) -> None:
        vm = self.controller.pay
        ids = self.ids
        ids.qr.data = vm.qr_data or ""
        ids.prompt.text = vm.prompt
        ids.amount.text = vm.amount_text
        ids.sats.text = " · ".join(p for p in (vm.sats_text, vm.tip_text) if p)
        ids.status_icon.text = ICONS[vm.tone]
        ids.status.text = vm.status_text
        ids.status_box.bg = COLOURS[vm.tone]
        ids.status.color = ids.status_icon.color = text_colour(vm.tone)
        ids.countdown.text = vm.countdown_text
        ids.notice.text = vm.notice
        ids.cancel.disabled = not vm.can_cancel
        pin = vm.show_pin_pad
        ids.pinpad.opacity, ids.pinpad.disabled = (1, False) if pin else (0, True)
        ids.qr.opacity = 0 if pin or not vm.qr_data else 1
        ids.offline.opacity = 1 if vm.offline and not pin else 0
        ids.pin_title.text = vm.pin_title
        ids.pin_digits.text = vm.pin_masked
        ids.pin_ok.disabled = not vm.pin_complete
