"""A paid sale prints its receipt by itself on a real (pty) ESC/POS printer, the ledger records
it, and a printer that is out of paper changes only the status line, never the sale."""

from __future__ import annotations

import asyncio

from helpers.pty_printer import PrinterState

from hw.printer import GS_CUT, SerialPrinter
from terminal.app.demo import DemoEnvironment
from terminal.core.ports.receipts import PrintOutcome
from terminal.core.tips import NO_TIP
from terminal.services.till import ResultKind, Step

PAPER_OUT = 0x12 | 0x60  # DLE EOT 4: paper end sensor bits


def _sale(tmp_path, port: str):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path, background=False)
        till = env.till
        till.receipts.printer = SerialPrinter(port)  # the configured printer, on the pty
        try:
            till.set_currency("SAT")
            for key in "700":
                till.key(key)
            await till.charge()
            assert await till.choose_tip(NO_TIP)
            env.pay_qr(till.session.invoice.bolt11)
            await till.wait_until(lambda: till.step is Step.RESULT, 15)
            await till.wait_until(lambda: till.last_print is not None, 15)  # beside the screen
            record = env.terminal.ledger.get_sale(till.record.id)
            return till.result, record, till.last_print
        finally:
            await env.stop()

    return asyncio.run(scenario())


def test_paid_sale_prints_its_receipt_and_the_ledger_says_so(tmp_path, pty_printer):
    fake, port = pty_printer
    result, record, report = _sale(tmp_path, port)
    assert result.kind is ResultKind.PAID
    assert fake.cut.is_set() and GS_CUT in fake.received
    text = bytes(fake.received).decode("cp858", "replace")
    assert "Flash Demo" in text and "700" in text
    assert record.receipt_printed is True
    assert report.outcome is PrintOutcome.PRINTED


def test_paper_out_never_blocks_the_sale(tmp_path, pty_printer):
    fake, port = pty_printer
    fake.state = PrinterState(paper=PAPER_OUT)
    result, record, report = _sale(tmp_path, port)
    assert result.kind is ResultKind.PAID and record.state == "paid"
    assert record.receipt_printed is False
    assert report.outcome is PrintOutcome.PAPER_OUT
    assert not fake.cut.is_set()
