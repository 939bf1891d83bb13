"""The Admin screen's view models without Kivy: settings overview, device tests and the card
tools driven through the controller against the in-process sandbox and simulated cards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from hw.nfc import ReaderState, ReaderStatusEvent
from hw.printer import PrinterStatus, PrintResult
from hw.sim.card import SimulatedNtag424
from terminal.adapters import simcards
from terminal.adapters.provisioning_journal import ProvisioningJournal
from terminal.app.config import parse_config
from terminal.app.demo import BLANK, DEMO_ADMIN_PIN, DemoEnvironment
from terminal.app.ui.viewmodels import Screen, TerminalController
from terminal.app.ui.viewmodels.admin import admin_sections
from terminal.app.ui.viewmodels.card_tools import (
    CardToolsSettings,
    CardToolsViewModel,
    Tool,
    ToolIssuer,
    ToolPhase,
    fingerprint,
)
from terminal.app.ui.viewmodels.device_tests import TestState
from terminal.app.ui.viewmodels.tones import Tone

ISSUER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
API_KEY = "flash_api_key_very_secret_0123456789"


def _config(tmp_path: Path, **backend):
    raw = {
        "terminal": {"name": "Rum Bar", "network": "signet", "display_currency": "JMD",
                     "currencies": ["JMD", "USD"], "id": "term-42", "data_dir": str(tmp_path)},
        "backend": backend or {"kind": "flash", "flash": {
            "http_url": "https://api.flash.example/graphql", "api_key": API_KEY}},
        "issuers": [{"name": "acme", "kind": "deterministic", "issuer_key": ISSUER_KEY.hex(),
                     "hosts": ["cards.acme.example"]}],
        "reader": {"path": "tty:AMA0:pn532"},
        "printer": {"enabled": True, "port": "/dev/ttyUSB0", "width_mm": 80},
        "offline": {"floor_limit_msat": 5_000_000},
    }
    return parse_config(raw)


def test_settings_overview_shows_everything_and_masks_keys(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sections = admin_sections(config, reader_state="ready", printer_state="error")
    text = "\n".join(f"{s.title}: " + " | ".join(s.lines) for s in sections)
    for expected in ("api.flash.example", "api key set", "Rum Bar", "JMD", "signet", "term-42",
                     "5,000 sats", "acme (deterministic)", "cards.acme.example",
                     "tty:AMA0:pn532", "Reader ready", "/dev/ttyUSB0", "80 mm",
                     "Printer error", "Flash Terminal "):
        assert expected in text, expected
    assert f"fingerprint {fingerprint(ISSUER_KEY)}" in text
    assert ISSUER_KEY.hex() not in text and ISSUER_KEY.hex()[:8] not in text
    assert API_KEY not in text and API_KEY[:10] not in text
    btcpay = _config(tmp_path, kind="btcpay", btcpay={
        "url": "https://pay.shop.example", "store_id": "store1", "api_key": API_KEY})
    text = repr(admin_sections(btcpay))
    assert "BTCPay · pay.shop.example" in text and API_KEY not in text
    tools = CardToolsSettings.from_config(config)
    assert tools.journal_path == tmp_path / "provisioning.jsonl"
    assert [i.name for i in tools.issuers] == ["acme"] and ISSUER_KEY.hex() not in repr(tools)


def test_tools_refuse_to_arm_without_keys_or_url_and_wipe_asks_first() -> None:
    vm = CardToolsViewModel()
    assert vm.choose(Tool.INFO) and vm.armed  # info needs no keys
    assert not vm.choose(Tool.PROGRAM) and vm.phase is ToolPhase.FAILED
    assert "data directory" in vm.detail_lines[0] and vm.next_text
    vm = CardToolsViewModel(CardToolsSettings((ToolIssuer("acme", ISSUER_KEY),), Path("j")))
    assert not vm.choose(Tool.PROGRAM) and "card URL" in vm.detail_lines[0]
    vm.set_card_url(" lnurlw://cards.acme.example/ln ")
    assert vm.choose(Tool.PROGRAM) and vm.armed and vm.tone is Tone.BUSY
    assert any(fingerprint(ISSUER_KEY) in line for line in vm.detail_lines)
    assert vm.choose(Tool.WIPE) and vm.phase is ToolPhase.CONFIRM and not vm.armed
    vm.confirm()
    assert vm.armed
    vm.cancel()
    assert vm.phase is ToolPhase.IDLE and vm.tool is None


async def _settled(c: TerminalController, timeout: float = 10.0) -> None:
    """Until the card tool in progress reports DONE or FAILED (re-checked at each change)."""
    done = asyncio.Event()

    def check(_vm=None) -> None:
        if c.tools.phase in (ToolPhase.DONE, ToolPhase.FAILED):
            done.set()

    unsubscribe = c.tools.subscribe(check)
    check()
    try:
        async with asyncio.timeout(timeout):
            await done.wait()
    finally:
        unsubscribe()


def _unlock(c: TerminalController) -> None:
    c.go(Screen.ADMIN)
    for d in DEMO_ADMIN_PIN:
        c.admin.press(d)
    c.admin.submit()
    assert c.admin.unlocked


def _failures(path: Path) -> list[int]:
    card = SimulatedNtag424.load(path, autosave=False)
    return [card.state.consecutive_auth_failures] + [k.tot_fail_ctr for k in card.state.keys]


@pytest.fixture
def demo(tmp_path: Path):
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(DemoEnvironment.start(tmp_path, background=False))
    try:
        yield loop, env
    finally:
        loop.run_until_complete(env.stop())
        loop.close()


def test_program_info_wipe_a_blank_card_through_the_controller(demo) -> None:
    loop, env = demo
    sandbox_key = env.config.issuers[0].issuer_key

    async def scenario() -> None:
        c = env.controller()
        try:
            _unlock(c)
            # Info on the blank card
            assert c.tools.choose(Tool.INFO)
            await c.present_card(*env.card_on_reader(BLANK))
            await _settled(c)
            assert c.tools.phase is ToolPhase.DONE and c.tools.title.startswith("Blank card")
            # Program it with the configured (sandbox) issuer
            assert c.tools.choose(Tool.PROGRAM)
            await c.present_card(*env.card_on_reader(BLANK))
            await _settled(c)
            assert c.tools.phase is ToolPhase.DONE, c.tools.detail_lines
            shown = "\n".join([c.tools.title, *c.tools.detail_lines, c.tools.next_text])
            assert "Card programmed" in shown and "✓ change key 0" in shown
            assert "verified" in shown
            uid = SimulatedNtag424.load(env.blank_card, autosave=False).real_uid
            assert uid.hex() not in shown.lower() and sandbox_key.hex() not in shown
            assert simcards.info(env.blank_card).key_versions == [1] * 5
            # Info: programmed, and its tap verifies with the configured issuer
            assert c.tools.choose(Tool.INFO)
            await c.present_card(*env.card_on_reader(BLANK))
            await _settled(c)
            shown = "\n".join([c.tools.title, *c.tools.detail_lines])
            assert "Programmed card (key version 1)" in shown
            assert "Tap verifies: issuer sandbox, card id" in shown
            assert uid.hex() not in shown.lower()
            # Wipe: confirm first, then the next tap wipes
            assert c.tools.choose(Tool.WIPE) and not c.tools.armed
            await c.present_card(*env.card_on_reader("A"))  # not armed yet: says so, wipes nothing
            assert c.tools.phase is ToolPhase.CONFIRM and "Wipe it" in c.tools.detail_lines[-1]
            c.tools.confirm()
            await c.present_card(*env.card_on_reader(BLANK))
            await _settled(c)
            assert c.tools.phase is ToolPhase.DONE and c.tools.title == "Card wiped"
            assert simcards.info(env.blank_card).key_versions == [0] * 5
            assert _failures(env.blank_card) == [0] * 6
            journal = ProvisioningJournal(env.config.data_dir / "provisioning.jsonl")
            assert journal.pending() == [] and len(journal.entries()) == 2
            # leaving Admin gives the reader back to the sale
            assert c.tools.choose(Tool.INFO)
            c.go(Screen.SALE)
            assert not c.wants_card and c.tools.phase is ToolPhase.IDLE
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_wipe_with_wrong_keys_refuses_without_authenticating(demo, tmp_path: Path) -> None:
    loop, env = demo
    wrong = tmp_path / "wrong-keys.json"
    wrong.write_text(json.dumps({"action": "wipe", "version": 1,
                                 **{f"k{n}": f"{n + 1:02x}" * 16 for n in range(5)}}))
    card_a = env.card_path("A")

    async def scenario() -> None:
        c = env.controller()
        try:
            _unlock(c)
            c.tools.set_key_file(str(wrong))
            for _ in range(5):  # more than the simulator's authentication-delay threshold
                assert c.tools.choose(Tool.WIPE)
                c.tools.confirm()
                await c.present_card(*env.card_on_reader("A"))
                await _settled(c)
                assert c.tools.phase is ToolPhase.FAILED and c.tools.title == "Wipe failed"
            shown = "\n".join(c.tools.detail_lines)
            assert "does not verify with these keys" in shown
            assert "lock-out" in c.tools.next_text
            assert _failures(card_a) == [0] * 6
            assert simcards.info(card_a).key_versions == [1] * 5
            journal = ProvisioningJournal(env.config.data_dir / "provisioning.jsonl")
            assert journal.entries() == []
            # the card still pays: the tool routed the taps, the sale never saw them
            assert c.till.session is None
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_program_refuses_a_programmed_card_and_says_wipe_first(demo) -> None:
    loop, env = demo

    async def scenario() -> None:
        c = env.controller()
        try:
            _unlock(c)
            assert c.tools.choose(Tool.PROGRAM)
            await c.present_card(*env.card_on_reader("B"))
            await _settled(c)
            assert c.tools.phase is ToolPhase.FAILED and c.tools.tone is Tone.ERROR
            assert "already programmed" in "\n".join(c.tools.detail_lines)
            assert c.tools.next_text.startswith("Wipe it first")
            assert _failures(env.card_path("B")) == [0] * 6
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


class RecordingPrinter:
    """A printer double (view-model level only): records the receipts, answers `result`."""

    def __init__(self, result: PrintResult) -> None:
        self.result = result
        self.printed: list = []

    def print(self, receipt) -> PrintResult:
        self.printed.append(receipt)
        return self.result


def test_printer_and_reader_tests(demo) -> None:
    loop, env = demo

    async def scenario() -> None:
        c = env.controller()
        try:
            _unlock(c)
            for status, words in ((PrinterStatus.OK, "Printer OK"),
                                  (PrinterStatus.PAPER_OUT, "Printer out of paper"),
                                  (PrinterStatus.OFFLINE, "Printer offline")):
                printer = RecordingPrinter(PrintResult(status, "from the printer"))
                c.till.receipts.printer = printer
                await c.test_printer()
                assert len(printer.printed) == 1
                lines = [getattr(line, "text", "") for line in printer.printed[0].lines]
                assert "PRINTER TEST" in lines
                assert c.tests.printer_text == f"{words}: from the printer"
                assert c.status.printer == ("ready" if status is PrinterStatus.OK else "error")
            assert c.tests.printer_state is TestState.FAILED
            c.till.receipts.printer = None
            await c.test_printer()  # no printer and no sink: says what to configure
            assert "No printer configured" in c.tests.printer_text
            # reader: state from the reader's events; the next card is described, not sold
            await c.present_card(ReaderStatusEvent(ReaderState.ABSENT,
                                                   "NFC reader on usb disconnected."))
            assert c.status.reader == "absent"
            assert "disconnected" in c.tests.reader_text(c.status.reader)
            c.tests.arm_reader()
            assert c.wants_card
            await c.present_card(*env.card_on_reader("A"))
            assert "payment link" in c.tests.card_text and "127.0.0.1" in c.tests.card_text
            c.tests.arm_reader()
            await c.present_card(*env.card_on_reader(BLANK))
            assert "blank" in c.tests.card_text and "card tools" in c.tests.card_text
            assert not c.wants_card and c.till.session is None and c.notice == ""
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_an_unlocked_admin_left_alone_locks_itself(demo) -> None:
    from terminal.app.ui.viewmodels import Screen
    from terminal.app.ui.viewmodels.controller import ADMIN_IDLE_LOCK_S

    loop, env = demo
    now = [1_000.0]
    c = env.controller()
    c.clock = lambda: now[0]
    c.touched()
    _unlock(c)
    assert c.admin.unlocked and c.screen is Screen.ADMIN
    now[0] += ADMIN_IDLE_LOCK_S - 1
    c.touched()  # someone is using it
    now[0] += ADMIN_IDLE_LOCK_S - 1
    c.tick()
    assert c.admin.unlocked and c.screen is Screen.ADMIN
    now[0] += 2
    c.tick()
    assert c.screen is Screen.SALE and not c.admin.unlocked
    loop.run_until_complete(c.aclose())
