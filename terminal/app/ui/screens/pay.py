"""The Pay screen: QR, amount, live status, countdown, PIN pad, Cancel."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.viewmodels.pay import PayPhase
from terminal.app.ui.viewmodels.tones import COLOURS, ICONS

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class PayScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.pay.subscribe(self.refresh)
        super().attach(controller)

    def cancel(self) -> None:
        self.controller.spawn(self.controller.cancel())

    def pin_key(self, key: str) -> None:
        self.controller.pay.pin.press(key)

    def pin_ok(self) -> None:
        self.controller.spawn(self.controller.submit_pin())

    def refresh(self, *_args) -> None:
        vm = self.controller.pay
        ids = self.ids
        ids.qr.data = vm.qr_data or ""
        ids.amount.text = vm.amount_text
        ids.sats.text = vm.sats_text
        ids.status_icon.text = ICONS[vm.tone]
        ids.status.text = vm.status_text
        ids.status_box.bg = COLOURS[vm.tone]
        ids.countdown.text = vm.countdown_text
        ids.cancel.disabled = not vm.can_cancel
        pin = vm.show_pin_pad
        ids.pinpad.opacity, ids.pinpad.disabled = (1, False) if pin else (0, True)
        ids.qr.opacity = 0 if pin else 1
        ids.offline.opacity = 1 if vm.phase is PayPhase.OFFLINE else 0
        ids.pin_title.text = vm.pin_title
        ids.pin_digits.text = vm.pin.masked
        ids.pin_ok.disabled = not vm.pin.complete
