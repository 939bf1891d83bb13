"""ESC/POS printer over a real pty pair: a thread on the master side plays the printer.

The far end keeps every byte that arrives, answers DLE EOT status requests with the state the
test gave it, and signals when a job's cut command has arrived (no sleeps). It knows the
commands only as the literal bytes of Epson's ESC/POS command reference, never through
`hw.printer`'s constants or parser, and the jobs are compared byte for byte with vectors
written out from that reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.pty_printer import (  # the printer on the far side of a pty
    ESC_A_CENTER,
    ESC_A_LEFT,
    ESC_A_RIGHT,
    ESC_AT,
    ESC_D_3,
    ESC_E_OFF,
    ESC_E_ON,
    ESC_T_PC858,
    GS_SIZE_DOUBLE,
    GS_SIZE_NORMAL,
    GS_V_PARTIAL,
    LF,
    READY,
    STATUS_OFFLINE_CAUSE,
    STATUS_PAPER,
    STATUS_PRINTER,
    WAIT_S,
)
from hypothesis import given
from hypothesis import strategies as st

from hw.printer import (
    CHARS_PER_LINE,
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
    assert items[-1] == ("cmd", GS_V_PARTIAL)
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
    assert GS_V_PARTIAL not in fake.received and not fake.received.strip(b"\x00")


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
    assert GS_V_PARTIAL not in fake.received


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


# -- the bytes against Epson's command reference -------------------------------------------------
def test_a_job_is_byte_for_byte_the_reference_commands(pty_printer):
    """Every command the module uses, in one job over the pty, as Epson's reference spells it."""
    fake, port = pty_printer
    job = Receipt((
        Text("Café", Align.CENTER, bold=True, large=True),
        Pair("Total", "€5.00"),
        Text("thanks", Align.RIGHT),
        Feed(),
    ))
    assert SerialPrinter(port, width_mm=58, timeout_s=WAIT_S).print(job).ok
    assert fake.cut.wait(WAIT_S)
    expected = b"".join([
        STATUS_PRINTER, STATUS_PAPER,  # asked before printing: ready, paper present
        ESC_AT, ESC_T_PC858,
        ESC_E_ON, GS_SIZE_DOUBLE, ESC_A_CENTER,
        b"Caf\x82", LF,  # é is 82h in PC858
        ESC_A_LEFT, GS_SIZE_NORMAL, ESC_E_OFF,
        b"Total" + b" " * 22 + b"\xd55.00", LF,  # € is D5h in PC858; 32 columns on 58 mm
        ESC_A_RIGHT, b"thanks", LF, ESC_A_LEFT,
        LF,  # Feed(1)
        ESC_D_3, GS_V_PARTIAL,
    ])
    assert bytes(fake.raw) == expected


@pytest.mark.parametrize(("paper", "printer", "cause", "requests"), [
    (READY | 0x60, READY, READY, [STATUS_PRINTER, STATUS_PAPER]),  # paper end: no job
    (READY, READY | 0x08, READY | 0x04, [STATUS_PRINTER, STATUS_PAPER, STATUS_OFFLINE_CAUSE]),
])
def test_status_requests_are_dle_eot_and_nothing_else_is_sent(pty_printer, paper, printer, cause,
                                                              requests):
    fake, port = pty_printer
    fake.state.paper, fake.state.printer, fake.state.cause = paper, printer, cause
    result = SerialPrinter(port, timeout_s=WAIT_S).print(sample_receipt())
    assert not result.ok
    assert bytes(fake.raw) == b"".join(requests)


def test_module_constants_are_the_reference_bytes():
    import hw.printer as escpos

    assert escpos.ESC_INIT == ESC_AT
    assert escpos.ESC_SELECT_CODE_TABLE + bytes([escpos.CODE_TABLE_PC858]) == ESC_T_PC858
    assert escpos.ESC_BOLD + b"\x01" == ESC_E_ON
    assert escpos.ESC_ALIGN + bytes([Align.CENTER.value]) == ESC_A_CENTER
    assert escpos.GS_CHAR_SIZE + bytes([escpos.CHAR_SIZE_DOUBLE]) == GS_SIZE_DOUBLE
    assert escpos.ESC_FEED_LINES + b"\x03" == ESC_D_3
    assert escpos.GS_CUT + bytes([escpos.CUT_PARTIAL_AFTER_FEED, 0]) == GS_V_PARTIAL
    assert (escpos.DLE_EOT_PRINTER, escpos.DLE_EOT_OFFLINE_CAUSE, escpos.DLE_EOT_PAPER) == (
        STATUS_PRINTER, STATUS_OFFLINE_CAUSE, STATUS_PAPER)
    assert escpos.LF == LF
