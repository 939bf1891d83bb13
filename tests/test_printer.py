"""ESC/POS printer over a real pty pair: a thread on the master side plays the printer.

The far end parses every byte that arrives, answers DLE EOT status requests with the state the
test gave it, and signals when a job's cut command has arrived (no sleeps).
"""

from __future__ import annotations

import os
import selectors
import threading
import tty
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.printer import (
    CHARS_PER_LINE,
    DLE,
    EOT,
    GS_CUT,
    Align,
    Feed,
    Pair,
    PrinterStatus,
    Receipt,
    Rule,
    SerialPrinter,
    Text,
    as_text,
    chars_per_line,
    layout,
    parse_escpos,
    render,
    text_lines,
)

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
def pty_printer():
    master, slave = os.openpty()
    tty.setraw(slave)
    fake = FakePrinter(master)
    # Our slave fd stays open for the whole test so the master never sees a hang-up between jobs.
    yield fake, os.ttyname(slave)
    fake.close()
    os.close(slave)
    os.close(master)


def sample_receipt() -> Receipt:
    return Receipt((
        Text("Blue Mountain Café", Align.CENTER, bold=True, large=True),
        Rule(),
        Pair("Amount", "J$1,234.50", bold=True),
        Pair("", "≈ 12,345 sats"),
        Pair("Payment", "0123456789abcdef"),
        Feed(),
        Text("PAID - thank you", Align.CENTER),
    ))


# -- layout ----------------------------------------------------------------------------------
def test_widths_are_the_font_a_columns():
    assert chars_per_line(58) == 32
    assert chars_per_line(80) == 48
    with pytest.raises(ValueError, match="58 or 80"):
        chars_per_line(76)


@pytest.mark.parametrize("width", sorted(CHARS_PER_LINE.values()))
def test_pair_puts_label_left_and_value_right(width):
    (line,) = layout(Pair("Amount", "$5.00"), width)
    assert len(line) == width
    assert line.startswith("Amount") and line.endswith("$5.00")


def test_long_pair_wraps_value_below_label():
    lines = layout(Pair("A very long label that does not fit", "1,234,567 sats"), 32)
    assert lines[-1].endswith("1,234,567 sats")
    assert all(len(x) <= 32 for x in lines)


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
       st.sampled_from([32, 48]), st.booleans())
def test_wrapped_text_fits_and_keeps_every_character(text, width, large):
    # Property: wrapping never exceeds the line and never drops a non-space character.
    lines = layout(Text(text, large=large), width)
    cols = width // 2 if large else width
    assert all(len(x) <= cols for x in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


@given(st.lists(st.one_of(
    st.builds(Text, st.text(alphabet="abc xyz$.,0123", max_size=60),
              st.sampled_from(list(Align)), st.booleans(), st.booleans()),
    st.builds(Pair, st.text(alphabet="abc ", max_size=40), st.text(alphabet="0123$,", max_size=40),
              st.booleans()),
    st.builds(Rule), st.builds(Feed, st.integers(0, 3)),
), max_size=12), st.sampled_from([32, 48]))
def test_render_parses_back_to_the_same_text(lines, width):
    # Property: the bytes sent to the printer carry exactly the laid-out text, line by line.
    doc = Receipt(tuple(lines))
    items = parse_escpos(render(doc, width))
    assert items[-1] == ("cmd", GS_CUT + bytes([66, 0]))
    expected = [t.strip() if getattr(line, "align", Align.LEFT) is not Align.LEFT else t
                for line in lines for t in layout(line, width)]
    assert text_lines(items) == expected


def test_euro_and_approx_survive_the_code_page():
    data = render(Receipt((Text("€5.00 ≈ 10 sats"),)), 32)
    assert text_lines(parse_escpos(data)) == ["€5.00 ~ 10 sats"]


# -- over the pty ----------------------------------------------------------------------------
def test_prints_a_receipt_and_cuts(pty_printer):
    fake, port = pty_printer
    printer = SerialPrinter(port, width_mm=58, timeout_s=WAIT_S)
    result = printer.print(sample_receipt())
    assert result.status is PrinterStatus.OK, result.message
    assert fake.cut.wait(WAIT_S)
    assert fake.queries[:2] == [1, 4]  # asked before printing
    lines = text_lines(parse_escpos(bytes(fake.received)))
    preview = as_text(sample_receipt(), 32).split("\n")
    assert lines[:2] == ["Blue Mountain", "Café"]  # large: 16 columns, centred by the printer
    assert lines[2:-1] == [x.replace("≈", "~") for x in preview[2:-1]]
    assert lines[-1] == "PAID - thank you"
    assert lines[3].startswith("Amount") and lines[3].endswith("J$1,234.50")
    assert len(lines[3]) == 32


def test_80mm_lines_are_48_wide(pty_printer):
    fake, port = pty_printer
    result = SerialPrinter(port, width_mm=80, timeout_s=WAIT_S).print(
        Receipt((Rule(), Pair("Sats", "21"))))
    assert result.ok
    assert fake.cut.wait(WAIT_S)
    assert text_lines(parse_escpos(bytes(fake.received))) == ["-" * 48, "Sats" + " " * 42 + "21"]


def test_paper_out_is_reported_and_nothing_printed(pty_printer):
    fake, port = pty_printer
    fake.state.paper = READY | 0x60
    result = SerialPrinter(port, timeout_s=WAIT_S).print(sample_receipt())
    assert result.status is PrinterStatus.PAPER_OUT
    assert "paper" in result.message
    assert GS_CUT not in fake.received and not fake.received.strip(b"\x00")


def test_paper_low_still_prints_and_says_so(pty_printer):
    fake, port = pty_printer
    fake.state.paper = READY | 0x0C
    result = SerialPrinter(port, timeout_s=WAIT_S).print(sample_receipt())
    assert result.ok and result.paper_low
    assert fake.cut.wait(WAIT_S)


def test_cover_open_is_offline(pty_printer):
    fake, port = pty_printer
    fake.state.printer = READY | 0x08
    fake.state.cause = READY | 0x04
    result = SerialPrinter(port, timeout_s=WAIT_S).status()
    assert result.status is PrinterStatus.OFFLINE
    assert "cover" in result.message
    assert fake.queries == [1, 4, 2]


def test_switched_off_printer_times_out_quickly(pty_printer):
    fake, port = pty_printer
    fake.state.answer = False
    result = SerialPrinter(port, timeout_s=0.2).print(sample_receipt())
    assert result.status is PrinterStatus.OFFLINE
    assert "switched on" in result.message
    assert result.elapsed_s < 2.0
    assert GS_CUT not in fake.received


def test_garbage_status_byte_is_an_error(pty_printer):
    fake, port = pty_printer
    fake.state.printer = 0xFF
    result = SerialPrinter(port, timeout_s=WAIT_S).status()
    assert result.status is PrinterStatus.ERROR
    assert "baud" in result.message


def test_unplugged_printer_is_offline_not_an_exception(tmp_path: Path):
    result = SerialPrinter(str(tmp_path / "ttyUSB9"), timeout_s=0.2).print(sample_receipt())
    assert result.status is PrinterStatus.OFFLINE
    assert "cable" in result.message


def test_blind_mode_prints_without_asking(pty_printer):
    fake, port = pty_printer
    fake.state.answer = False  # a printer that ignores DLE EOT
    result = SerialPrinter(port, timeout_s=WAIT_S, query_status=False).print(sample_receipt())
    assert result.ok
    assert fake.cut.wait(WAIT_S)
    assert fake.queries == []


def test_jobs_back_to_back_reopen_the_port(pty_printer):
    fake, port = pty_printer
    printer = SerialPrinter(port, timeout_s=WAIT_S)
    assert printer.print(sample_receipt()).ok
    assert printer.print(sample_receipt()).ok
    assert fake.cut.wait(WAIT_S)
    assert fake.queries.count(1) == 2
