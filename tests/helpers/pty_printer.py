"""A receipt printer on the far side of a pseudo-terminal: it answers DLE EOT status queries
as its state says and records every byte it is sent (`pty_printer` fixture in conftest)."""

from __future__ import annotations

import os
import selectors
import threading
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from hw.printer import DLE, EOT, GS_CUT

READY = 0x12  # DLE EOT answer with only the fixed bits
WAIT_S = 5.0


@dataclass
class PrinterState:
    printer: int = READY  # DLE EOT 1
    cause: int = READY  # DLE EOT 2
    paper: int = READY  # DLE EOT 4
    answer: bool = True  # False: switched off (no answer at all)


@dataclass
class FakePrinter:
    """The printer on the master side of a pty."""

    master: int
    state: PrinterState = field(default_factory=PrinterState)
    received: bytearray = field(default_factory=bytearray)
    queries: list[int] = field(default_factory=list)
    cut: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.master, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        pending = b""
        while True:
            for key, _ in sel.select():
                if key.fd == self._wake_r:
                    return
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    return
                pending += chunk
                pending = self._consume(pending)

    def _consume(self, data: bytes) -> bytes:
        i = 0
        while i < len(data):
            if data[i] == DLE:
                if len(data) - i < 3:
                    return data[i:]  # wait for the rest of the request
                if data[i + 1] == EOT:
                    n = data[i + 2]
                    self.queries.append(n)
                    if self.state.answer:
                        reply = {1: self.state.printer, 2: self.state.cause,
                                 4: self.state.paper}[n]
                        os.write(self.master, bytes([reply]))
                    i += 3
                    continue
            self.received.append(data[i])
            i += 1
        if GS_CUT in self.received:
            self.cut.set()
        return b""

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(WAIT_S)
        os.close(self._wake_r)
        os.close(self._wake_w)


@pytest.fixture
def pty_printer() -> Iterator[tuple[FakePrinter, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    fake = FakePrinter(master)
    # Our slave fd stays open for the whole test so the master never sees a hang-up between jobs.
    yield fake, os.ttyname(slave)
    fake.close()
    os.close(slave)
    os.close(master)
