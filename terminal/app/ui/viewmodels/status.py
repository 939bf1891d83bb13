"""The status bar on every screen: link, reader, queued offline exposure, printer, clock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core.money import Msat, format_msat
from terminal.core.risk import Exposure

# Below a minute the queue goes out within one window of the backend's limit: not worth words.
DRAIN_SHOWN_FROM_S = 60.0


class StatusViewModel(Observable):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.online: bool | None = None
        self.reader = "absent"  # ready | absent | demo
        self.printer = "none"  # none | ready | error
        self.exposure = Exposure()
        self.flagged = 0  # queued offline payments of cards blocked since
        self.drain_s: float | None = None  # how long the queue needs at the backend's limit

    def update(self, *, online: bool | None = None, reader: str | None = None,
               printer: str | None = None, exposure: Exposure | None = None,
               flagged: int | None = None, drain_s: float | None = None) -> None:
        """`drain_s` goes with `exposure` (both describe the queue): None there means unknown."""
        if online is not None:
            self.online = online
        if reader is not None:
            self.reader = reader
        if printer is not None:
            self.printer = printer
        if exposure is not None:
            self.exposure, self.drain_s = exposure, drain_s
        if flagged is not None:
            self.flagged = flagged
        self.changed()

    @property
    def link_text(self) -> str:
        if self.online is None:
            return t("status.connecting")
        return t("status.online") if self.online else t("status.offline")

    @property
    def link_tone(self) -> Tone:
        if self.online is None:
            return Tone.BUSY
        return Tone.SUCCESS if self.online else Tone.ERROR

    @property
    def reader_text(self) -> str:
        return t(f"status.reader.{self.reader}")

    @property
    def reader_tone(self) -> Tone:
        return Tone.ERROR if self.reader == "absent" else Tone.SUCCESS

    @property
    def queue_text(self) -> str:
        if not self.exposure.count:
            return t("status.queue.none")
        text = t("status.queue", amount=format_msat(Msat(self.exposure.queued_msat)),
                 count=self.exposure.count)
        if self.drain_s is not None and self.drain_s >= DRAIN_SHOWN_FROM_S:
            text += t("status.queue.drain", minutes=math.ceil(self.drain_s / 60))
        if self.flagged:
            text += t("status.queue.blocked", count=self.flagged)
        return text

    @property
    def queue_tone(self) -> Tone:
        if self.flagged:
            return Tone.ERROR
        return Tone.WARNING if self.exposure.count else Tone.NEUTRAL

    @property
    def printer_text(self) -> str:
        return t(f"status.printer.{self.printer}")

    @property
    def clock_text(self) -> str:
        return datetime.fromtimestamp(self.clock()).strftime("%H:%M")
