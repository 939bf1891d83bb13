"""The Admin screen's device tests: print a short test receipt, and show what the reader sees.

"Test printer" prints through the configured printer object (`hw.printer.SerialPrinter.print`,
off the loop) and shows ok / offline / paper out with the printer's own message. "Test reader"
shows the reader's state and arms a one-shot: the next card tapped is described (its kind) instead
of going to a sale. Plain Python: the controller feeds it, the screen reads it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from terminal import __version__
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone


class TestState(enum.Enum):
    __test__ = False  # not a pytest class

    IDLE = "idle"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


def test_receipt(merchant: str, terminal_id: str | None, at: float):
    """A few lines that prove paper, font and cutter work (and name the terminal)."""
    from hw.printer import Align, Feed, Pair, Rule, Text, receipt

    return receipt([
        Text(merchant, Align.CENTER, bold=True),
        Text("PRINTER TEST", Align.CENTER, large=True),
        Rule(),
        Pair("Time", datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")),
        Pair("Terminal", terminal_id or "-"),
        Pair("Version", __version__),
        Rule(),
        Text("0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ", Align.CENTER),
        Feed(),
    ])


def describe_card(event: Any) -> tuple[Tone, str]:
    """What a reader event says about the card, for the reader test (never the UID or tap)."""
    from urllib.parse import urlsplit

    from hw.nfc import HoldStillEvent, NotPaymentCardEvent, TapEvent

    if isinstance(event, TapEvent):
        host = urlsplit(event.uri).netloc or "?"
        return Tone.SUCCESS, t("tests.reader.link", host=host)
    if isinstance(event, NotPaymentCardEvent):
        kind = t("tests.reader.iso") if event.handle is not None else ""
        return Tone.WARNING, f"{event.message} {kind}".strip()
    if isinstance(event, HoldStillEvent):
        return Tone.WARNING, event.message
    return Tone.NEUTRAL, type(event).__name__


class DeviceTestsViewModel(Observable):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.printer_state = TestState.IDLE
        self.printer_text = t("tests.printer.idle")
        self.reader_message = ""  # the reader's last status message (ReaderStatusEvent)
        self.reader_armed = False
        self.card_text = ""
        self.card_tone = Tone.NEUTRAL

    # -- printer --------------------------------------------------------------------------
    async def test_printer(self, printer: Any | None, *, merchant: str,
                           terminal_id: str | None,
                           sink: Callable[[str], None] | None = None) -> Any:
        """Print the test receipt; returns the printer's `PrintResult` (None without one)."""
        doc = test_receipt(merchant, terminal_id, self.clock())
        if printer is None:
            if sink is not None:
                from hw.printer import as_text

                sink(as_text(doc, 32))
                self._printer(TestState.OK, t("tests.printer.sink"))
            else:
                self._printer(TestState.FAILED, t("tests.printer.none"))
            return None
        self._printer(TestState.RUNNING, t("tests.printer.running"))
        result = await asyncio.to_thread(printer.print, doc)
        words = {"ok": t("tests.printer.ok"), "offline": t("tests.printer.offline"),
                 "paper-out": t("tests.printer.paper_out")}.get(result.status.value,
                                                               t("tests.printer.error"))
        self._printer(TestState.OK if result.ok else TestState.FAILED,
                      f"{words}: {result.message}")
        return result

    def _printer(self, state: TestState, text: str) -> None:
        self.printer_state, self.printer_text = state, text
        self.changed()

    @property
    def printer_tone(self) -> Tone:
        return {TestState.IDLE: Tone.NEUTRAL, TestState.RUNNING: Tone.BUSY,
                TestState.OK: Tone.SUCCESS, TestState.FAILED: Tone.ERROR}[self.printer_state]

    # -- reader ---------------------------------------------------------------------------
    def arm_reader(self) -> None:
        self.reader_armed, self.card_text, self.card_tone = True, t("tests.reader.tap"), Tone.BUSY
        self.changed()

    def disarm(self) -> None:
        if self.reader_armed:
            self.reader_armed, self.card_text, self.card_tone = False, "", Tone.NEUTRAL
            self.changed()

    def card_seen(self, event: Any) -> None:
        self.card_tone, self.card_text = describe_card(event)
        self.reader_armed = False
        self.changed()

    def reader_status(self, message: str) -> None:
        self.reader_message = message
        self.changed()

    def reader_text(self, state: str) -> str:
        words = t(f"status.reader.{state}")
        return f"{words}: {self.reader_message}" if self.reader_message else words
