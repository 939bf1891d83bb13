"""Demo mode: the sandbox in-process, two simulated cards, and the terminal wired to them.

    env = await DemoEnvironment.start(work_dir)
    controller = env.controller()          # the same controller the touchscreen app uses
    url = env.tap("A")                     # card A is funded, card B nearly empty
    env.pay_qr(bolt11)                     # settle an invoice as a phone wallet would
    await env.stop()

`run_headless()` is `flash-terminal demo --headless`: one scripted sale in the console.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from terminal.adapters import simcards
from terminal.app.config import Config, load_config
from terminal.app.root import Terminal, build_terminal
from terminal.app.ui.viewmodels.controller import TerminalController, UiSettings
from terminal.core.money import Msat, format_msat
from terminal.core.pins import hash_pin
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox.server import Sandbox

CARD_A_SATS = 500_000
CARD_B_SATS = 50  # nearly empty: any real sale is refused for insufficient balance
CARD_A_PIN = "1234"  # the issuer asks for it above CARD_A_PIN_LIMIT_SATS (shows the PIN pad)
CARD_A_PIN_LIMIT_SATS = 100_000
DEMO_ADMIN_PIN = "1234"
DEMO_CURRENCIES = ("USD", "JMD", "SAT")
DEMO_AMOUNT = "5.00"
BLANK = "blank"  # the label of the demo's blank card (for Admin > Cards > Program)
EXIT_OK, EXIT_PAYMENT_FAILED = 0, 4


@dataclass(frozen=True)
class DemoCard:
    label: str
    path: Path
    card_id: str
    balance_sats: int


class DemoEnvironment:
    def __init__(self, work_dir: Path, sandbox: Sandbox, config: Config, terminal: Terminal,
                 cards: dict[str, DemoCard], owns_dir: bool) -> None:
        self.work_dir = work_dir
        self.blank_card = work_dir / "card-blank.json"  # for the Admin card tools (Program)
        self.sandbox = sandbox
        self.config = config
        self.terminal = terminal
        self.cards = cards
        self._owns_dir = owns_dir

    @classmethod
    async def start(cls, work_dir: Path | None = None) -> DemoEnvironment:
        owns = work_dir is None
        work = Path(tempfile.mkdtemp(prefix="flash-demo-")) if work_dir is None else Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        sandbox = Sandbox(work / "sandbox")
        await sandbox.start()
        try:
            config_path = sandbox.write_terminal_config(work / "terminal.toml")
            cards = {
                "A": _issue(sandbox, work / "card-a.json", "A", CARD_A_SATS,
                            pin=CARD_A_PIN, pin_limit_sats=CARD_A_PIN_LIMIT_SATS),
                "B": _issue(sandbox, work / "card-b.json", "B", CARD_B_SATS),
            }
            simcards.create_blank(work / "card-blank.json")
            config = load_config(config_path)
            terminal = build_terminal(config)
        except BaseException:
            await sandbox.stop()
            raise
        return cls(work, sandbox, config, terminal, cards, owns)

    def controller(self, receipt_sink: Callable[[str], None] | None = None) -> TerminalController:
        return TerminalController(
            self.terminal.checkout,
            self.terminal.ledger,
            admin_pin_hash=hash_pin(DEMO_ADMIN_PIN, iterations=10_000),
            settings=UiSettings(currencies=DEMO_CURRENCIES, merchant="Flash Demo Café",
                                terminal_id=self.terminal.checkout.terminal_id, reader="demo"),
            receipt_sink=receipt_sink,
            config=self.config,
            card_url=self.card_url,
        )

    @property
    def card_url(self) -> str:
        """What the Admin card tools program into a card: the sandbox issuer's URL, over plain
        http on loopback like the demo cards (see `_issue`)."""
        return self.sandbox.lnurlw_base.replace("lnurlw://", "http://", 1)

    def card_path(self, label: str) -> Path:
        return self.blank_card if label == BLANK else self.cards[label].path

    def present(self, label: str) -> tuple[object, Callable[[], None]]:
        """Put simulated card `label` (A, B or the blank one) on the "reader": the event the
        real reader would report (`hw.nfc.read_tap`, one NDEF read) with the card as its live
        `handle`, and a function that takes the card away again (saving it, like a chip keeps
        what was written). Hand both to `TerminalController.card_event`."""
        from hw.nfc import read_tap
        from hw.sim.card import SimulatedNtag424

        path = self.card_path(label)
        card = SimulatedNtag424.load(path)
        card.power_on()
        event = read_tap(card)  # type: ignore[arg-type]  # the sim speaks the handle API

        def release() -> None:
            card.deactivate()
            card.save(path)

        return event, release

    def tap(self, label: str) -> str:
        """Tap simulated card A or B (the URL it answers, its counter advanced)."""
        return simcards.tap(self.cards[label].path)

    def pay_qr(self, bolt11: str) -> None:
        """Settle an invoice as a phone wallet scanning the QR would."""
        self.sandbox.pay_invoice(bolt11)

    async def stop(self) -> None:
        try:
            await self.terminal.aclose()
        finally:
            await self.sandbox.stop()
            if self._owns_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)


def _issue(sandbox: Sandbox, path: Path, label: str, balance: int, **options) -> DemoCard:
    uid = simcards.new_uid()
    issued = sandbox.register_card(uid, balance, **options)
    keys = BoltcardKeys.of([bytes.fromhex(issued[f"k{n}"]) for n in range(5)],
                           version=int(issued["version"]))
    # The card holds the sandbox's plain-http URL: `lnurlw://` always means https (LUD-17), and
    # the sandbox serves http on loopback (allowed by the demo configuration's lnurl policy).
    base = issued["lnurlw_base"].replace("lnurlw://", "http://", 1)
    simcards.create_programmed(path, base, keys, uid)
    return DemoCard(label, path, issued["card_id"], balance)


# --------------------------------------------------------------------------- headless


async def run_headless(amount: str = DEMO_AMOUNT, card: str = "A", *,
                       work_dir: Path | None = None, out=None) -> int:
    """A scripted sale in the console: amount, tap, result, receipt. Exit 0 when paid."""
    out = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    env = await DemoEnvironment.start(work_dir)
    controller = env.controller(receipt_sink=lambda text: say(text))
    try:
        say("Flash Terminal demo (headless): sandbox at " + env.sandbox.url)
        for c in env.cards.values():
            say(f"  card {c.label}: {format_msat(Msat.from_sat(c.balance_sats))} "
                f"(card id {c.card_id[:8]}…)")
        await controller.refresh_rates()
        sale = controller.sale
        for key in amount:
            if not sale.press(key):
                say(f"amount {amount!r} refused at key {key!r}")
                return EXIT_PAYMENT_FAILED
        say(f"1. amount keyed: {sale.amount_text} {sale.sats_text} ({sale.rate_age_text})")
        request = sale.next()
        if request is None or not await controller.charge(request):
            say(f"could not open the sale: {sale.rate_problem or controller.result.detail_text}")
            return EXIT_PAYMENT_FAILED
        pay = controller.pay
        say(f"2. invoice shown as QR: {pay.amount_text} = {pay.sats_text}, {pay.countdown_text}")
        say(f"   {pay.qr_data[:40]}…" if pay.qr_data else "   (offline: no invoice)")
        say(f"3. customer taps card {card}")
        result = await controller.handle_tap(env.tap(card))
        if result is not None and result.kind == "pin-required":
            say("   the issuer asks for the PIN: customer enters it")
            for d in CARD_A_PIN:
                pay.pin.press(d)
            await controller.submit_pin()
        info = await controller.wait_result(timeout=30)
        res = controller.result
        say(f"4. {res.title.upper()}: {info.amount_text} ({info.sats_text}) — {res.detail_text}")
        if not res.paid:
            say(f"   {res.next_text}")
            return EXIT_PAYMENT_FAILED
        say("5. receipt:")
        await controller.print_receipt()
        return EXIT_OK
    finally:
        await controller.aclose()
        await env.stop()


def headless(amount: str = DEMO_AMOUNT, card: str = "A", work_dir: Path | None = None) -> int:
    return asyncio.run(run_headless(amount, card, work_dir=work_dir))
