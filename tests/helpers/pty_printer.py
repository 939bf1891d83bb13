"""A receipt printer on the far side of a pseudo-terminal: it answers DLE EOT status queries as
its state says and records every byte it is sent. It knows ESC/POS only through the literal byte
vectors of Epson's command reference below, never through `hw.printer` (which it checks).
The `pty_printer` fixture is registered for every test module in conftest."""

from __future__ import annotations

import os
import selectors
import threading
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

READY = 0x12  # DLE EOT answer with only the fixed bits
WAIT_S = 5.0

# Epson ESC/POS Command Reference (TM printers), each command as its bytes:
ESC_AT = bytes.fromhex("1b40")  # ESC @  Initialize printer
ESC_T_PC858 = bytes.fromhex("1b7413")  # ESC t 19  Select character code table: PC858 (Euro)
ESC_E_ON = bytes.fromhex("1b4501")  # ESC E 1  Turn emphasized mode on
ESC_E_OFF = bytes.fromhex("1b4500")  # ESC E 0  ... off
ESC_A_LEFT = bytes.fromhex("1b6100")  # ESC a 0  Select justification: left
ESC_A_CENTER = bytes.fromhex("1b6101")  # ESC a 1  centered
ESC_A_RIGHT = bytes.fromhex("1b6102")  # ESC a 2  right
GS_SIZE_DOUBLE = bytes.fromhex("1d2111")  # GS ! 11h  Select character size: 2x wide, 2x high
GS_SIZE_NORMAL = bytes.fromhex("1d2100")  # GS ! 00h  normal
ESC_D_3 = bytes.fromhex("1b6403")  # ESC d 3  Print and feed paper 3 lines
GS_V_PARTIAL = bytes.fromhex("1d564200")  # GS V 66 0  Function B: feed to the cutter, partial cut
LF = bytes.fromhex("0a")  # LF  Print and line feed
DLE_EOT = bytes.fromhex("1004")  # DLE EOT n  Transmit real-time status
STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_PAPER = (bytes.fromhex("100401"),
                                                      bytes.fromhex("100402"),
                                                      bytes.fromhex("100404"))


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
    raw: bytearray = field(default_factory=bytearray)  # every byte, status requests included
    received: bytearray = field(default_factory=bytearray)  # the print data alone
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
                self.raw += chunk
                pending += chunk
                pending = self._consume(pending)

    def _consume(self, data: bytes) -> bytes:
        i = 0
        while i < len(data):
            if data[i] == DLE_EOT[0]:
                if len(data) - i < 3:
                    return data[i:]  # wait for the rest of the request
                if data[i + 1] == DLE_EOT[1]:
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
        if GS_V_PARTIAL in self.received:
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
