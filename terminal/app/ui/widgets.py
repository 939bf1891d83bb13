"""Small widgets shared by the screens: the QR code, the status bar and the demo strip."""

from __future__ import annotations

from pathlib import Path

from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from terminal.app.ui.qr import luminance_bytes, qr_matrix
from terminal.app.ui.viewmodels.tones import COLOURS, text_colour


class QRCodeWidget(Widget):
    """Draws `data` as a QR code, square and as large as the widget allows, modules sharp."""

    data = StringProperty("")
    texture = ObjectProperty(None, allownone=True)

    def on_data(self, _instance, value: str) -> None:
        if not value:
            self.texture = None
            return
        matrix = qr_matrix(value)
        n = len(matrix)
        tex = Texture.create(size=(n, n), colorfmt="luminance")
        tex.mag_filter = tex.min_filter = "nearest"  # no blur between modules
        tex.blit_buffer(luminance_bytes(matrix), colorfmt="luminance", bufferfmt="ubyte")
        self.texture = tex


class StatusBar(BoxLayout):
    def show(self, vm) -> None:
        ids = self.ids
        for chip, text, tone in ((ids.link, vm.link_text, vm.link_tone),
                                 (ids.reader, vm.reader_text, vm.reader_tone),
                                 (ids.queue, vm.queue_text, vm.queue_tone)):
            chip.text, chip.bg, chip.color = text, COLOURS[tone], text_colour(tone)
        ids.printer.text = vm.printer_text
        ids.clock.text = vm.clock_text


class DemoStrip(BoxLayout):
    app = ObjectProperty(None)


class _HiddenIgnoresTouches(Widget):
    """A panel hidden with opacity 0 lets touches through (a disabled widget would swallow them,
    and a hidden one sits on top of the visible one in the same FloatLayout)."""

    def on_touch_down(self, touch):
        return False if self.opacity == 0 else super().on_touch_down(touch)

    def on_touch_move(self, touch):
        return False if self.opacity == 0 else super().on_touch_move(touch)

    def on_touch_up(self, touch):
        return False if self.opacity == 0 else super().on_touch_up(touch)


class Panel(_HiddenIgnoresTouches, BoxLayout):
    pass


class PanelGrid(_HiddenIgnoresTouches, GridLayout):
    pass


class HideButton(_HiddenIgnoresTouches, Button):
    pass


Builder.load_file(str(Path(__file__).with_suffix(".kv")))
