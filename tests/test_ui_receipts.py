"""A paid sale prints its receipt by itself on a real (pty) ESC/POS printer, the ledger records
it, and a printer that is out of paper changes only the status bar, never the sale."""

from __future__ import annotations

import asyncio
import dataclasses

from test_printer import PrinterState, pty_printer  # noqa: F401 - the fixture

from hw.printer import GS_CUT
from terminal.app.config import PrinterSettings
from terminal.app.demo import DemoEnvironment
from terminal.app.root import build_printer
from terminal.app.ui.viewmodels import Screen
from terminal.app.ui.viewmodels.sale import ChargeRequest

PAPER_OUT = 0x12 | 0x60  # DLE EOT 4: paper end sensor bits


def _sale(tmp_path, port: str, auto_print: bool = True):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path)
        c = env.controller()
        c.printer = build_printer(PrinterSettings(enabled=True, port=port, auto_print=auto_print))
        c.config = dataclasses.replace(env.config, printer=PrinterSettings(
            enabled=True, port=port, auto_print=auto_print))
        try:
            assert await c.charge(ChargeRequest(700, "SAT", "tea"))
            env.pay_qr(c.session.invoice.bolt11)
            info = await c.wait_result(15)
            for task in list(c._tasks):  # the print job runs beside the Result screen
                await asyncio.wait_for(asyncio.shield(task), 15)
            record = env.terminal.ledger.get_sale(c.session.record.id)
            return info, record, c.screen, c.status.printer
        finally:
            await c.aclose()
            await env.stop()

    return asyncio.run(scenario())


def test_paid_sale_prints_its_receipt_and_the_ledger_says_so(tmp_path, pty_printer):  # noqa: F811
    fake, port = pty_printer
    info, record, screen, printer_state = _sale(tmp_path, port)
    assert info.kind == "paid" and screen is Screen.RESULT
    assert fake.cut.is_set() and GS_CUT in fake.received
    text = bytes(fake.received).decode("cp858", "replace")
    assert "Flash Demo" in text and "700" in text
    assert record.receipt_printed is True
    assert printer_state == "ready"


def test_paper_out_never_blocks_the_sale(tmp_path, pty_printer):  # noqa: F811
    fake, port = pty_printer
    fake.state = PrinterState(paper=PAPER_OUT)
    info, record, _screen, printer_state = _sale(tmp_path, port)
    assert info.kind == "paid" and record.state == "paid"
    assert record.receipt_printed is False
    assert printer_state == "error"
    assert not fake.cut.is_set()
