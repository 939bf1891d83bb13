"""The History screen: any day's sales (‹ day ›), filters, totals, detail, reprint, export.
No PIN: a cashier reprints and looks back; settings and card tools stay behind Admin."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kivy.factory import Factory
from kivy.lang import Builder

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.controller import Screen
from terminal.app.ui.viewmodels.history import card_label, totals_text
from terminal.app.ui.viewmodels.tones import COLOURS

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


def export_dir(data_dir: Path) -> Path:
    """A mounted USB stick when there is one (first writable /media/<user>/<label>), else the
    data directory's `exports/`."""
    media = Path("/media")
    if media.is_dir():
        for base in sorted(media.iterdir()):
            for mount in sorted(base.iterdir()) if base.is_dir() else []:
                if mount.is_dir() and os.access(mount, os.W_OK):
                    return mount
    target = data_dir / "exports"
    target.mkdir(parents=True, exist_ok=True)
    return target


class HistoryScreen(BaseScreen):
    data_dir = Path(".")

    def attach(self, controller) -> None:
        controller.history.subscribe(self.refresh)
        super().attach(controller)

    def on_pre_enter(self, *_args) -> None:
        self.controller.history.reload()

    def previous_day(self) -> None:
        self.controller.history.previous_day()

    def next_day(self) -> None:
        self.controller.history.next_day()

    def cycle_state(self) -> None:
        self.controller.history.cycle_state_filter()

    def cycle_method(self) -> None:
        self.controller.history.cycle_method_filter()

    def select(self, sale_id: str) -> None:
        self.controller.history.select(sale_id)

    def cycle_cashier(self) -> None:
        self.controller.history.cycle_cashier_filter()

    def toggle_by_card(self) -> None:
        self.controller.history.toggle_by_card()

    def show_card(self, card_id: str) -> None:
        self.controller.history.set_card(card_id)

    def back(self) -> None:
        self.controller.go(Screen.SALE)

    def report(self) -> None:
        self.controller.go(Screen.REPORT)

    def export(self, fmt: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = export_dir(self.data_dir) / f"sales-{stamp}.{fmt}"
        try:
            count = self.controller.history.export(path, fmt)
        except OSError as exc:
            self.ids.message.text = f"Export failed: {exc.strerror or exc}"
            return
        self.ids.message.text = t("history.exported", count=count, path=path)

    def reprint(self) -> None:
        sale_id = self.controller.history.selected
        if sale_id is None:
            return

        async def run() -> None:
            self.ids.message.text = await self.controller.print_receipt(sale_id)

        self.controller.spawn(run())

    def refund(self) -> None:
        """A manager's refund of the selected (paid) sale."""
        sale_id = self.controller.history.selected
        if sale_id is not None:
            self.controller.open_refund(sale_id)

    def refresh(self, *_args) -> None:
        vm = self.controller.history
        ids = self.ids
        ids.day.text = vm.day_text
        ids.next_day.disabled = vm.is_today
        ids.state_filter.text = t("history.filter.state", state=vm.state_filter)
        ids.method_filter.text = t("history.filter.method", method=vm.method_filter)
        ids.totals.text = (f"{card_label(vm.card_filter)}: " if vm.card_filter else "") + \
            vm.totals_text
        ids.by_card.text = t("history.by_sale") if vm.by_card else t("history.by_card")
        staffed = vm.till.staff.enabled
        ids.cashier_filter.text = vm.cashier_filter_text if staffed else ""
        ids.cashier_filter.opacity, ids.cashier_filter.disabled = (1, False) if staffed \
            else (0, True)
        ids.rows.clear_widgets()
        rows = vm.card_rows() if vm.by_card else vm.rows()
        for row in rows:
            button = Factory.HistoryRowButton(text=row.text)
            button.bg = COLOURS[row.tone]
            if vm.by_card:  # a card: its sales
                button.bind(on_release=lambda _b, cid=row.sale_id: self.show_card(cid))
            else:
                button.bind(on_release=lambda _b, sid=row.sale_id: self.select(sid))
            ids.rows.add_widget(button)
        if not rows:
            ids.rows.add_widget(Factory.Label(text=vm.empty_text, size_hint_y=None, height=60))
        detail = vm.card_detail() if vm.by_card else vm.detail()
        if not detail and not vm.by_card:
            cards = vm.per_card()
            detail = ([t("history.per_card")] + [f"{card_label(card)}: {totals_text(tot)}"
                                                 for card, tot in cards.items()]) if cards else []
        ids.detail.text = "\n".join(detail)
        ids.reprint.disabled = vm.selected is None
        ids.refund.text = t("history.refund")
        ids.refund.disabled = not vm.can_refund
