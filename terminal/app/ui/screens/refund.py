"""The Refund screen (History > a paid sale > Refund): the manager's PIN pad, then how much and
where to (tap the card that paid, or key/scan an address, LNURL-pay or invoice), then the
outcome, BTCPay's claim link as a QR, and the slip. Every decision is `RefundViewModel`'s; this
copies its state into widgets and forwards presses."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.refund import RefundPhase
from terminal.app.ui.viewmodels.tones import COLOURS, text_colour

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


def _show(panel, visible: bool) -> None:
    panel.opacity, panel.disabled = (1, False) if visible else (0, True)


class RefundScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.refund.subscribe(self.refresh)
        controller.admin.subscribe(self.refresh)
        super().attach(controller)

    # -- presses --------------------------------------------------------------------------
    def back(self) -> None:
        self.controller.refund_done()

    def pin_key(self, key: str) -> None:
        self.controller.refund.pin_key(key)

    def pin_submit(self) -> None:
        self.controller.refund.pin_submit()

    def set_full(self) -> None:
        self.controller.refund.set_full()

    def set_partial(self) -> None:
        self.controller.refund.set_partial()

    def key(self, key: str) -> None:
        self.controller.refund.key(key)

    def set_address(self, text: str) -> None:
        if text.strip() != self.controller.refund.address:
            self.controller.refund.set_address(text)

    def choose_card(self) -> None:
        vm = self.controller.refund
        if vm.waiting_for_card:
            vm.cancel_tap()
        else:
            vm.choose_card()

    def send(self) -> None:
        self.controller.spawn(self.controller.refund.send_to_address())

    def print_slip(self) -> None:
        self.controller.spawn(self.controller.refund.print_slip())

    def again(self) -> None:
        self.ids.address.text = ""
        self.controller.refund.again()

    def done(self) -> None:
        self.ids.address.text = ""
        self.controller.refund_done()

    # -- state ----------------------------------------------------------------------------
    def refresh(self, *_args) -> None:
        controller = self.controller
        if controller is None:
            return
        vm = controller.refund
        ids = self.ids
        pin = vm.phase is RefundPhase.PIN
        _show(ids.pad, pin)
        _show(ids.form, not pin)
        ids.pin_title.text = t("refund.pin")
        ids.pin_digits.text = vm.pin_digits
        ids.pin_message.text = vm.message if pin else ""
        ids.title.text = vm.title
        ids.sale.text = "\n".join(vm.sale_lines())
        ids.full.text, ids.part.text = t("refund.full"), t("refund.part")
        ids.full.state, ids.part.state = ("down", "normal") if vm.full else ("normal", "down")
        ids.amount.text = vm.amount_text
        choosing = vm.phase in (RefundPhase.CHOOSE, RefundPhase.WAIT_TAP)
        for widget in (ids.full, ids.part, ids.amount_keys):
            widget.disabled = vm.phase is not RefundPhase.CHOOSE
        done = vm.phase is RefundPhase.DONE
        _show(ids.choose, not done)
        _show(ids.result, done)
        ids.card.text = t("refund.tap_now") if vm.waiting_for_card else t("refund.card")
        ids.card.disabled = not choosing or vm.problem is not None
        ids.address.hint_text = t("refund.address_hint")
        ids.address.disabled = vm.phase is not RefundPhase.CHOOSE
        ids.send.text = t("refund.to") if vm.needs_destination or vm.address else \
            t("refund.issue")
        ids.send.disabled = vm.phase is not RefundPhase.CHOOSE or vm.problem is not None or (
            vm.needs_destination and not vm.address)
        ids.message.text = vm.message if not done else ""
        ids.status.text = vm.outcome_title
        ids.status.bg = COLOURS[vm.outcome_tone]
        ids.status.color = text_colour(vm.outcome_tone)
        ids.qr.data = vm.claim_link
        lines = [vm.message]
        if vm.claim_link:
            lines.append(t("refund.scan_claim"))
        if vm.print_status:
            lines.append(vm.print_status)
        ids.outcome.text = "\n".join(line for line in lines if line)
        ids.print_slip.text, ids.again.text, ids.done.text = (
            t("refund.print"), t("refund.again"), t("refund.done"))
        ids.again.disabled = vm.quote is None or vm.quote.left_msat <= 0
