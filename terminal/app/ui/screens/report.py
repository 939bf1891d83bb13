"""The Reports screen: the shift so far (X) or a day, the summary, a bar chart of sales per hour
(drawn on the canvas from the view model's bars), print, and the Z (a manager's)."""

from __future__ import annotations

from pathlib import Path

from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Rectangle
from kivy.lang import Builder
from kivy.properties import ListProperty
from kivy.uix.widget import Widget

from terminal.app.ui.screens.base import BaseScreen
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.controller import Screen

BAR_COLOUR = (0.2, 0.62, 0.35, 1)
AXIS_COLOUR = (0.4, 0.42, 0.47, 1)
LABEL_H = 22  # the hour labels under the bars
COUNT_H = 18  # the count over the tallest bars


class BarChart(Widget):
    """Bars of `bars` = [(height 0..1, label, count text)], one per hour, left to right."""

    bars = ListProperty([])

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.drawn: list[tuple[float, float, float, float]] = []  # x, y, w, h (tests read it)
        self.bind(bars=self.redraw, pos=self.redraw, size=self.redraw)

    def redraw(self, *_args) -> None:
        self.canvas.clear()
        self.drawn = []
        bars = list(self.bars)
        if not bars:
            return
        slot = self.width / len(bars)
        top = max(1.0, self.height - LABEL_H - COUNT_H)
        every = max(1, round(len(bars) / 12))  # at most ~12 hour labels fit under 24 bars
        with self.canvas:
            Color(*AXIS_COLOUR)
            Rectangle(pos=(self.x, self.y + LABEL_H - 2), size=(self.width, 2))
            for i, (height, label, count) in enumerate(bars):
                x = self.x + i * slot + slot * 0.15
                h = height * top
                if h > 0:
                    Color(*BAR_COLOUR)
                    bar = (x, self.y + LABEL_H, slot * 0.7, max(h, 2.0))
                    Rectangle(pos=bar[:2], size=bar[2:])
                    self.drawn.append(bar)
                    if count and height >= 0.999:
                        self._text(count.split(" · ")[0], x, self.y + LABEL_H + h + 2, slot * 0.7)
                if i % every == 0:
                    self._text(label, x, self.y + 2, slot * 0.7 * every)

    def _text(self, text: str, x: float, y: float, width: float) -> None:
        label = CoreLabel(text=text, font_size=13)
        label.refresh()
        texture = label.texture
        Color(0.85, 0.87, 0.9, 1)
        Rectangle(texture=texture, size=texture.size,
                  pos=(x + max(0.0, (min(width, texture.width * 2) - texture.width) / 2), y))


Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class ReportScreen(BaseScreen):
    def attach(self, controller) -> None:
        controller.reports.subscribe(self.refresh)
        super().attach(controller)

    def on_pre_enter(self, *_args) -> None:
        self.controller.reports.reload()

    def back(self) -> None:
        self.controller.go(Screen.SALE)

    def show_shift(self) -> None:
        self.controller.reports.show_shift()

    def show_day(self) -> None:
        self.controller.reports.show_day()

    def previous_day(self) -> None:
        self.controller.reports.previous_day()

    def next_day(self) -> None:
        self.controller.reports.next_day()

    def print_report(self) -> None:
        self.controller.spawn(self.controller.reports.print_report())

    def close_shift(self) -> None:
        self.controller.spawn(self.controller.reports.close_shift())

    def refresh(self, *_args) -> None:
        vm = self.controller.reports
        ids = self.ids
        day = vm.mode == "day"
        ids.shift.state, ids.day.state = ("normal", "down") if day else ("down", "normal")
        ids.shift.text, ids.day.text = t("report.shift"), t("report.day")
        ids.previous_day.disabled = not day
        ids.next_day.disabled = not day or vm.is_today
        ids.print_btn.text = t("report.print")
        ids.print_btn.disabled = vm.report is None
        ids.close.text = t("report.close")
        ids.close.disabled = not vm.can_close
        ids.title.text = vm.title
        ids.period.text = vm.period_text
        ids.summary.text = "\n".join(vm.lines())
        ids.chart.bars = [(b.height, b.label, b.text) for b in vm.bars()]
        ids.message.text = vm.message
