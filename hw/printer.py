"""Receipt printer: ESC/POS over a serial port (pyserial), 58 mm and 80 mm paper.

The printer knows nothing of sales. It prints a `Receipt`: a sequence of plain layout lines
(`Text`, `Pair`, `Rule`, `Feed`) that `terminal.adapters.receipts` builds from a sale.

    printer = SerialPrinter("/dev/ttyUSB0", baudrate=19200, width_mm=58)
    result = printer.print(receipt)        # never raises; never blocks longer than its timeout
    result.status                          # PrinterStatus.OK / OFFLINE / PAPER_OUT / ERROR

A printer that is switched off, out of paper or unplugged must never hold up a sale, so every
job opens the port, asks the printer for its state (DLE EOT, "real-time status transmission"),
writes and closes, each step bounded by a short timeout, and reports a `PrintResult` that the
status bar can show.

Command names and bit meanings follow the Epson ESC/POS Application Programming Guide.
"""

from __future__ import annotations

import enum
import errno
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import serial

# -- ESC/POS commands ------------------------------------------------------------------------
ESC = 0x1B
GS = 0x1D
DLE = 0x10
EOT = 0x04
LF = b"\n"

# Byte values as in Epson's ESC/POS Command Reference; tests/test_printer.py holds the vectors.
ESC_INIT = bytes([ESC, 0x40])  # ESC @: clears the print buffer and modes (not the receive buffer)
ESC_SELECT_CODE_TABLE = bytes([ESC, 0x74])  # ESC t n
CODE_TABLE_PC858 = 19  # PC858 (Latin-1 with the euro sign), same numbering on Epson and clones
ESC_BOLD = bytes([ESC, 0x45])  # ESC E n: emphasised on (1) / off (0)
ESC_ALIGN = bytes([ESC, 0x61])  # ESC a n: 0 left, 1 centre, 2 right
GS_CHAR_SIZE = bytes([GS, 0x21])  # GS ! n: width multiplier in the high nibble, height in the low
CHAR_SIZE_NORMAL = 0x00
CHAR_SIZE_DOUBLE = 0x11  # double width and height
ESC_FEED_LINES = bytes([ESC, 0x64])  # ESC d n: print and feed n lines
GS_CUT = bytes([GS, 0x56])  # GS V m n
CUT_PARTIAL_AFTER_FEED = 66  # function B: feed n dots then partial cut

# DLE EOT n: real-time status transmission. The printer answers one byte at once, even while
# offline, which is what makes it safe to ask before sending a job.
DLE_EOT_PRINTER = bytes([DLE, EOT, 1])
DLE_EOT_OFFLINE_CAUSE = bytes([DLE, EOT, 2])
DLE_EOT_PAPER = bytes([DLE, EOT, 4])

STATUS_FIXED_MASK = 0x93  # bits 0, 1, 4, 7 are fixed in every DLE EOT answer
STATUS_FIXED_VALUE = 0x12  # ... as 0, 1, 1, 0
PRINTER_OFFLINE = 0x08  # n=1 bit 3
CAUSE_COVER_OPEN = 0x04  # n=2 bit 2
CAUSE_PAPER_END_STOP = 0x20  # n=2 bit 5: printing stopped because the paper ran out
CAUSE_ERROR = 0x40  # n=2 bit 6
PAPER_NEAR_END = 0x0C  # n=4 bits 2-3
PAPER_END = 0x60  # n=4 bits 5-6

# Characters per line in font A (12x24) on the common print widths.
CHARS_PER_LINE = {58: 32, 80: 48}

DEFAULT_TIMEOUT_S = 2.0

# Typographic characters that the money formatting uses but PC858 lacks.
_TRANSLITERATE = str.maketrans({"≈": "~", "…": "...", "—": "-", "–": "-", "’": "'", "‘": "'"})


# -- the receipt as plain layout -------------------------------------------------------------
class Align(enum.Enum):
    LEFT = 0
    CENTER = 1
    RIGHT = 2


@dataclass(frozen=True)
class Text:
    """A paragraph: wrapped at word boundaries to the paper width."""

    text: str
    align: Align = Align.LEFT
    bold: bool = False
    large: bool = False  # double width and height: half as many characters per line


@dataclass(frozen=True)
class Pair:
    """A label on the left and a value on the right of the same line (the value wins space)."""

    left: str
    right: str
    bold: bool = False


@dataclass(frozen=True)
class Rule:
    char: str = "-"


@dataclass(frozen=True)
class Feed:
    lines: int = 1


Line = Text | Pair | Rule | Feed


@dataclass(frozen=True)
class Receipt:
    lines: tuple[Line, ...]
    cut: bool = True


def chars_per_line(width_mm: int) -> int:
    try:
        return CHARS_PER_LINE[width_mm]
    except KeyError:
        raise ValueError(
            f"printer width {width_mm} mm is not supported (use 58 or 80)"
        ) from None


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap; words longer than a line are split (hashes, ids)."""
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            while len(word) > width:
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:width])
                word = word[width:]
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= width:
                line = f"{line} {word}"
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def _align(text: str, width: int, align: Align) -> str:
    if align is Align.CENTER:
        return text.center(width).rstrip()
    if align is Align.RIGHT:
        return text.rjust(width)
    return text


def _pair(left: str, right: str, width: int) -> list[str]:
    right = right[:width]
    room = width - len(right) - 1
    if room >= len(left):
        return [left + " " * (width - len(left) - len(right)) + right]
    # Too long for one line: the label on its own line(s), the value right-aligned below.
    return [*_wrap(left, width), right.rjust(width)]


def layout(line: Line, width: int) -> list[str]:
    """The printed text of one layout line at `width` characters (styles aside)."""
    if isinstance(line, Text):
        cols = width // 2 if line.large else width
        return [_align(t, cols, line.align) for t in _wrap(line.text, cols)]
    if isinstance(line, Pair):
        return _pair(line.left, line.right, width)
    if isinstance(line, Rule):
        return [(line.char or "-")[0] * width]
    if isinstance(line, Feed):
        return [""] * max(0, line.lines)
    raise TypeError(f"not a receipt line: {line!r}")


def as_text(receipt: Receipt, width: int) -> str:
    """The receipt as plain text (a preview on screen, the CLI's `--text`, tests)."""
    return "\n".join(t for line in receipt.lines for t in layout(line, width))


def encode_text(text: str) -> bytes:
    return text.translate(_TRANSLITERATE).encode("cp858", errors="replace")


def render(receipt: Receipt, width: int) -> bytes:
    """ESC/POS bytes for a receipt at `width` characters per line."""
    out = bytearray(ESC_INIT)
    out += ESC_SELECT_CODE_TABLE + bytes([CODE_TABLE_PC858])
    for line in receipt.lines:
        bold = getattr(line, "bold", False)
        large = isinstance(line, Text) and line.large
        align = line.align if isinstance(line, Text) else Align.LEFT
        if bold:
            out += ESC_BOLD + b"\x01"
        if large:
            out += GS_CHAR_SIZE + bytes([CHAR_SIZE_DOUBLE])
        if align is not Align.LEFT:
            # The printer centres large text by itself; padding with spaces would double them.
            out += ESC_ALIGN + bytes([align.value])
            texts = [t.strip() for t in layout(line, width)]
        else:
            texts = layout(line, width)
        for text in texts:
            out += encode_text(text) + LF
        if align is not Align.LEFT:
            out += ESC_ALIGN + bytes([Align.LEFT.value])
        if large:
            out += GS_CHAR_SIZE + bytes([CHAR_SIZE_NORMAL])
        if bold:
            out += ESC_BOLD + b"\x00"
    if receipt.cut:
        out += ESC_FEED_LINES + b"\x03" + GS_CUT + bytes([CUT_PARTIAL_AFTER_FEED, 0])
    return bytes(out)


# -- status ----------------------------------------------------------------------------------
class PrinterStatus(enum.Enum):
    OK = "ok"
    OFFLINE = "offline"  # off, unplugged, cover open, not answering
    PAPER_OUT = "paper-out"
    ERROR = "error"  # permission denied, mechanical/cutter error, unexpected answer
    DISABLED = "disabled"  # printing is switched off in the configuration


@dataclass(frozen=True)
class PrintResult:
    status: PrinterStatus
    message: str
    paper_low: bool = False
    elapsed_s: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is PrinterStatus.OK


class _Failure(Exception):
    def __init__(self, result: PrintResult):
        self.result = result


def _valid_status_byte(value: int) -> bool:
    return value & STATUS_FIXED_MASK == STATUS_FIXED_VALUE


class SerialPrinter:
    """An ESC/POS printer on a serial port ("/dev/ttyUSB0", "/dev/serial0", a pty in tests).

    `query_status=False` is for printers that ignore DLE EOT: jobs are then sent blind and only
    an unplugged port is detected.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 19200,
        width_mm: int = 58,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        query_status: bool = True,
    ):
        self.port = port
        self.baudrate = baudrate
        self.width = chars_per_line(width_mm)
        self.timeout_s = timeout_s
        self.query_status = query_status
        self._lock = threading.Lock()  # one job at a time on the port

    def __repr__(self) -> str:
        return f"SerialPrinter({self.port!r}, {self.width} chars)"

    def status(self) -> PrintResult:
        """The printer's state now (opens the port, asks, closes)."""
        return self._job(None)

    def print(self, receipt: Receipt) -> PrintResult:
        """Print a receipt; the result says why not if it did not. Never raises."""
        return self._job(render(receipt, self.width))

    def print_text(self, receipt: Receipt) -> str:
        return as_text(receipt, self.width)

    # -- one job ---------------------------------------------------------------------------
    def _job(self, payload: bytes | None) -> PrintResult:
        started = time.monotonic()
        with self._lock:
            try:
                result = self._run(payload)
            except _Failure as failure:
                result = failure.result
            except (serial.SerialException, OSError) as error:
                result = PrintResult(PrinterStatus.ERROR, f"printer on {self.port}: {error}")
        return PrintResult(result.status, result.message, result.paper_low,
                           time.monotonic() - started)

    def _run(self, payload: bytes | None) -> PrintResult:
        port = self._open()
        try:
            state = self._ask(port) if self.query_status else PrintResult(
                PrinterStatus.OK, "printer status not queried")
            if payload is None or state.status is not PrinterStatus.OK:
                return state
            self._write(port, payload)
            return PrintResult(PrinterStatus.OK, "printed", state.paper_low)
        finally:
            port.close()

    def _open(self) -> serial.Serial:
        try:
            return serial.Serial(
                self.port, self.baudrate, timeout=self.timeout_s,
                write_timeout=self.timeout_s, exclusive=True,
            )
        except serial.SerialException as error:
            raise _Failure(self._open_failure(error)) from error

    def _open_failure(self, error: serial.SerialException) -> PrintResult:
        code = error.errno
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            return PrintResult(PrinterStatus.OFFLINE,
                               f"no printer on {self.port}: check the cable and power")
        if code == errno.EACCES:
            return PrintResult(PrinterStatus.ERROR,
                               f"permission denied on {self.port}: add the service user to "
                               "the dialout group (scripts/install-pi does)")
        if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
            return PrintResult(PrinterStatus.ERROR,
                               f"{self.port} is in use by another program")
        return PrintResult(PrinterStatus.OFFLINE, f"printer on {self.port}: {error}")

    def _query(self, port: serial.Serial, request: bytes) -> int:
        port.reset_input_buffer()
        port.write(request)
        port.flush()
        answer = port.read(1)
        if not answer:
            raise _Failure(PrintResult(
                PrinterStatus.OFFLINE,
                f"printer on {self.port} does not answer: is it switched on?"))
        if not _valid_status_byte(answer[0]):
            raise _Failure(PrintResult(
                PrinterStatus.ERROR,
                f"printer on {self.port} gave an unexpected status byte {answer[0]:02x} "
                "(wrong baud rate?)"))
        return answer[0]

    def _ask(self, port: serial.Serial) -> PrintResult:
        printer = self._query(port, DLE_EOT_PRINTER)
        paper = self._query(port, DLE_EOT_PAPER)
        if paper & PAPER_END:
            return PrintResult(PrinterStatus.PAPER_OUT, "printer is out of paper")
        paper_low = bool(paper & PAPER_NEAR_END)
        if printer & PRINTER_OFFLINE:
            cause = self._query(port, DLE_EOT_OFFLINE_CAUSE)
            if cause & CAUSE_PAPER_END_STOP:
                return PrintResult(PrinterStatus.PAPER_OUT, "printer is out of paper")
            if cause & CAUSE_COVER_OPEN:
                return PrintResult(PrinterStatus.OFFLINE, "printer cover is open")
            if cause & CAUSE_ERROR:
                return PrintResult(PrinterStatus.ERROR,
                                   "printer reports an error (paper jam or cutter)")
            return PrintResult(PrinterStatus.OFFLINE, "printer is offline")
        message = "paper is running low" if paper_low else "printer ready"
        return PrintResult(PrinterStatus.OK, message, paper_low)

    def _write(self, port: serial.Serial, payload: bytes) -> None:
        try:
            port.write(payload)
            port.flush()
        except serial.SerialTimeoutException as error:
            raise _Failure(PrintResult(
                PrinterStatus.OFFLINE,
                f"printer on {self.port} stopped accepting data (off or paper jam)")) from error


def receipt(lines: Iterable[Line], *, cut: bool = True) -> Receipt:
    return Receipt(tuple(lines), cut)


def parse_escpos(data: bytes) -> list[tuple[str, bytes]]:
    """Split an ESC/POS byte stream into ("cmd", bytes) and ("text", bytes) items.

    Used by the tests' printer on the far end of a pty, and to inspect a captured job. Knows
    exactly the commands `render` and `SerialPrinter` send.
    """
    items: list[tuple[str, bytes]] = []
    fixed = {
        bytes([ESC, 0x40]): 0, bytes([ESC, 0x74]): 1, bytes([ESC, 0x45]): 1,
        bytes([ESC, 0x61]): 1, bytes([GS, 0x21]): 1, bytes([ESC, 0x64]): 1,
        bytes([GS, 0x56]): 2, bytes([DLE, EOT]): 1,
    }
    text = bytearray()
    i = 0
    while i < len(data):
        head = data[i:i + 2]
        if head in fixed:
            if text:
                items.append(("text", bytes(text)))
                text.clear()
            end = i + 2 + fixed[head]
            items.append(("cmd", data[i:end]))
            i = end
        else:
            text.append(data[i])
            i += 1
    if text:
        items.append(("text", bytes(text)))
    return items


def text_lines(items: Sequence[tuple[str, bytes]]) -> list[str]:
    """The printed text lines of a parsed job (decoded, split on LF)."""
    joined = b"".join(v for k, v in items if k == "text")
    return joined.decode("cp858").split("\n")[:-1]
