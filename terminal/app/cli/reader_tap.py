"""Take one tap from an NFC reader, as the kiosk does: the reader thread's next TapEvent.

    tap = take_tap("tty:AMA0:pn532", timeout=60)             # blocks
    tap = await take_tap_async("tty:AMA0:pn532", timeout=60)  # in a worker thread; cancellable
    if tap.url is None:
        ...                                                   # tap.reason, tap.message: why not

The reader (`hw.nfc.Reader`) runs for the length of the wait. Cards that are not Boltcards, a
card pulled too soon or several cards at once are told to the person at the reader through
`notice` and the wait goes on, as on the kiosk's screen. A reader that is absent when the wait
starts ends it at once; one that goes away during the wait is told and waited for.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from hw.nfc import (
    HoldStillEvent,
    NotPaymentCardEvent,
    Reader,
    ReaderEvent,
    ReaderState,
    ReaderStatusEvent,
    TapEvent,
)

NO_TAP = "no-tap"
READER_UNAVAILABLE = "reader-unavailable"


@dataclass(frozen=True)
class ReaderTap:
    url: str | None  # the card's tap URL; None when no tap came
    reason: str = ""  # NO_TAP or READER_UNAVAILABLE when url is None
    message: str = ""


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class ReaderTapWait:
    """One wait for a tap; `run` blocks, `cancel` (from any thread) ends it at once."""

    def __init__(self, device: str, timeout: float, *,
                 notice: Callable[[str], None] = _to_stderr):
        self.device = device
        self.timeout = timeout
        self.notice = notice
        self._events: queue.Queue[ReaderEvent | None] = queue.Queue()

    def cancel(self) -> None:
        self._events.put(None)

    def run(self) -> ReaderTap:
        deadline = time.monotonic() + self.timeout
        refused = ""  # what the last card that could not pay was told
        with Reader(self.device, self._events.put):
            started = False
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = self._events.get(timeout=remaining)
                except queue.Empty:
                    break
                if event is None:  # cancelled
                    break
                if isinstance(event, TapEvent):
                    return ReaderTap(event.uri)
                if isinstance(event, ReaderStatusEvent):
                    if event.state is ReaderState.READY:
                        if not started:
                            self.notice(f"Tap a card on the reader ({self.device}).")
                        started = True
                    elif not started:
                        return ReaderTap(None, READER_UNAVAILABLE, event.message)
                    else:
                        self.notice(event.message)
                elif isinstance(event, NotPaymentCardEvent | HoldStillEvent):
                    self.notice(event.message)
                    if isinstance(event, NotPaymentCardEvent):
                        refused = event.message
        waited = f"{round(self.timeout, 1):g}"
        if refused:  # a card was there: say why it could not pay, not that none came
            return ReaderTap(None, NO_TAP, f"{refused.rstrip()} No payment card was tapped on "
                             f"the reader within {waited} s.")
        return ReaderTap(None, NO_TAP, f"No card was tapped on the reader within {waited} s.")


def take_tap(device: str, timeout: float, *,
             notice: Callable[[str], None] = _to_stderr) -> ReaderTap:
    """Wait up to `timeout` seconds for the next Boltcard tap on the reader at `device`."""
    return ReaderTapWait(device, timeout, notice=notice).run()


async def take_tap_async(device: str, timeout: float, *,
                         notice: Callable[[str], None] = _to_stderr) -> ReaderTap:
    """`take_tap` in a worker thread; cancelling the awaiting task lets the reader go at once."""
    wait = ReaderTapWait(device, timeout, notice=notice)
    try:
        return await asyncio.to_thread(wait.run)
    finally:
        wait.cancel()
