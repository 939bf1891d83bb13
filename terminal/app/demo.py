"""Demo mode: the sandbox in-process behind a network link that can be cut, two simulated cards
and a blank one, and the terminal wired to them exactly as the kiosk is (the same till, the same
background work: rates, reconcile, the offline queue's sync worker).

    env = await DemoEnvironment.start(work_dir)
    controller = env.controller()          # what the touchscreen app shows
    await env.present("A")                 # card A on the reader (funded; B nearly empty)
    env.pay_qr(bolt11)                     # settle an invoice as a phone wallet would
    await env.set_network(False)           # backend and issuer unreachable (training offline)
    await env.stop()

`flash-terminal demo --headless` runs a script of cashier steps against it (`demo_script`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terminal.adapters import simcards
from terminal.app.config import Config, load_config
from terminal.app.root import Terminal, build_sync, build_terminal, build_till
from terminal.app.ui.viewmodels.controller import TerminalController, UiSettings
from terminal.core.pins import hash_pin
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox.link import NetworkLink
from terminal.sandbox.server import Sandbox
from terminal.services.kiosk import Kiosk
from terminal.services.sync import SyncWorker
from terminal.services.till import Till

CARD_A_SATS = 500_000
CARD_B_SATS = 50  # nearly empty: any real sale is refused for insufficient balance
CARD_A_PIN = "1234"  # the issuer asks for it above CARD_A_PIN_LIMIT_SATS (shows the PIN pad)
CARD_A_PIN_LIMIT_SATS = 100_000
DEMO_ADMIN_PIN = "1234"
DEMO_MERCHANT = "Flash Demo Café"
DEMO_CURRENCIES = ("USD", "JMD", "SAT")
DEMO_RESULT_SECONDS = 6
BLANK = "blank"  # the label of the demo's blank card (for Admin > Cards > Program)
CARD_LABELS = ("A", "B", BLANK)

# The demo's own settings on top of the sandbox's configuration: three currencies, the tip step.
DEMO_TERMINAL = f'name = "{DEMO_MERCHANT}"\ncurrencies = ["USD", "JMD", "SAT"]\n'
DEMO_UI = (f"\n[ui]\ntips = true\ntip_presets = [10, 15, 20]\ntip_custom = true\n"
           f"result_seconds = {DEMO_RESULT_SECONDS}\nrequire_sign_in = false\n")
# Two cashiers (sign-in is optional in the demo, so a visitor can sell without one): Ana rings
# up sales, Max is a manager (opens Admin without the admin PIN, closes the shift).
DEMO_CASHIERS = (("ana", "Ana", "cashier", "1111"), ("max", "Max", "manager", "2222"))
DEMO_PIN_ITERATIONS = 10_000  # a demo's hashes need not resist an attacker: start fast
DEMO_FLOAT_CENTS = 50_00  # earlier takings in the merchant's wallet: refunds can be paid


@dataclass(frozen=True)
class DemoCard:
    label: str
    path: Path
    card_id: str
    balance_sats: int


class DemoEnvironment:
    def __init__(self, work_dir: Path, sandbox: Sandbox, link: NetworkLink, config: Config,
                 terminal: Terminal, till: Till, kiosk: Kiosk, cards: dict[str, DemoCard],
                 owns_dir: bool) -> None:
        self.work_dir = work_dir
        self.blank_card = work_dir / "card-blank.json"  # for the Admin card tools (Program)
        self.sandbox = sandbox
        self.link = link
        self.config = config
        self.terminal = terminal
        self.till = till
        self.kiosk = kiosk
        self.cards = cards
        self._owns_dir = owns_dir
        self._controller: TerminalController | None = None
        self.sync: SyncWorker | None = None

    @classmethod
    async def start(cls, work_dir: Path | None = None, *,
                    receipt_sink: Callable[[str], None] | None = None,
                    background: bool = True, network: bool = True) -> DemoEnvironment:
        """Start the sandbox, its link, the cards and the terminal. `background` starts the
        kiosk's loops (rates, reconcile, sync worker) as `flash-terminal run` does; `network`
        False starts with the link cut (a terminal that boots offline: no rate yet)."""
        owns = work_dir is None
        work = Path(tempfile.mkdtemp(prefix="flash-demo-")) if work_dir is None else Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        sandbox = Sandbox(work / "sandbox")
        await sandbox.start()
        link = NetworkLink(sandbox.host, sandbox.port)
        try:
            sandbox.expose_at(await link.start())
            # With the sandbox's API key (the file is 0600): the demo can send refunds.
            config_path = sandbox.write_terminal_config(work / "terminal.toml",
                                                        with_api_key=True)
            text = config_path.read_text()
            config_path.write_text(text.replace("[terminal]\n", "[terminal]\n" + DEMO_TERMINAL, 1)
                                   .replace('name = "Sandbox terminal"\n', "", 1) + DEMO_UI
                                   + _demo_cashiers())  # the file is 0600: it holds hashes
            cards = {
                "A": _issue(sandbox, work / "card-a.json", "A", CARD_A_SATS,
                            pin=CARD_A_PIN, pin_limit_sats=CARD_A_PIN_LIMIT_SATS),
                "B": _issue(sandbox, work / "card-b.json", "B", CARD_B_SATS),
            }
            simcards.create_blank(work / "card-blank.json")
            _float(sandbox, DEMO_FLOAT_CENTS)
            config = load_config(config_path)
            terminal = build_terminal(config)
        except BaseException:
            await link.stop()
            await sandbox.stop()
            raise
        till = build_till(config, terminal, receipt_sink=receipt_sink)
        sync = build_sync(config, terminal)
        env = cls(work, sandbox, link, config, terminal, till, Kiosk(till, sync), cards, owns)
        env.sync = sync
        if not network:
            await link.cut()
        await till.refresh_rates()
        if background:
            env.kiosk.start()
        return env

    def controller(self) -> TerminalController:
        """The screens' view of this demo's till (one per environment)."""
        if self._controller is None:
            self._controller = TerminalController(
                self.till,
                admin_pin_hash=hash_pin(DEMO_ADMIN_PIN, iterations=DEMO_PIN_ITERATIONS),
                settings=UiSettings(merchant=self.config.name,
                                    terminal_id=self.terminal.checkout.terminal_id,
                                    reader="demo"),
                config=self.config,
                card_url=self.card_url,
            )
        return self._controller

    @property
    def card_url(self) -> str:
        """What the Admin card tools program into a card: the sandbox issuer's URL, over plain
        http on loopback like the demo cards (see `_issue`)."""
        return self.sandbox.lnurlw_base.replace("lnurlw://", "http://", 1)

    def card_path(self, label: str) -> Path:
        return self.blank_card if label == BLANK else self.cards[label].path

    def card_on_reader(self, label: str) -> tuple[Any, Callable[[], None]]:
        """Put simulated card `label` (A, B or the blank one) on the "reader": the event the
        real reader would report (`hw.nfc.read_tap`, one NDEF read) with the card as its live
        `handle`, and a function that takes the card away again (saving it, like a chip keeps
        what was written). Hand both to `TerminalController.card_event`."""
        from hw.nfc import read_tap
        from hw.sim.card import SimulatedNtag424

        path = self.card_path(label)
        card = SimulatedNtag424.load(path)
        card.power_on()
        event = read_tap(card)

        def release() -> None:
            card.deactivate()
            card.save(path)

        return event, release

    async def present(self, label: str) -> None:
        """Card `label` on the reader, routed as a real card is; returns once it was handled."""
        event, release = self.card_on_reader(label)
        await self.controller().present_card(event, release)

    def tap(self, label: str) -> str:
        """Tap simulated card A or B (the URL it answers, its counter advanced)."""
        return simcards.tap(self.cards[label].path)

    def pay_qr(self, bolt11: str) -> None:
        """Settle an invoice as a phone wallet scanning the QR would."""
        self.sandbox.pay_invoice(bolt11)

    async def sync_once(self) -> None:
        """One pass of the offline queue now (the kiosk's sync worker does it by itself too)."""
        if self.sync is not None:
            await self.sync.run_once(force=True)

    @property
    def network_up(self) -> bool:
        return self.link.up

    async def set_network(self, up: bool) -> None:
        """Cut or restore the terminal's network (backend and issuer): training offline mode."""
        await self.link.set_up(up)
        if up:
            self.kiosk.refresh_rates_now()

    async def stop(self) -> None:
        try:
            await self.kiosk.stop()
            await self.till.aclose()
            await self.terminal.aclose()
        finally:
            await self.link.stop()
            await self.sandbox.stop()
            if self._owns_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)


def _float(sandbox: Sandbox, cents: int) -> None:
    """The merchant's USD wallet starts with some money, as a shop's does (a refund is paid
    from the wallet: with only today's sales in it, rounding to cents could leave it short)."""
    wallet = sandbox.core.state.account.wallet(sandbox.wallet_id("USD"))
    if wallet is not None and wallet.balance < cents:
        wallet.balance = cents
        sandbox.core.save()


def _demo_cashiers() -> str:
    return "".join(
        f'\n[[cashiers]]\nid = "{cid}"\nname = "{name}"\nrole = "{role}"\n'
        f'pin_hash = "{hash_pin(pin, iterations=DEMO_PIN_ITERATIONS)}"\n'
        for cid, name, role, pin in DEMO_CASHIERS)


def _issue(sandbox: Sandbox, path: Path, label: str, balance: int, **options: Any) -> DemoCard:
    uid = simcards.new_uid()
    issued = sandbox.register_card(uid, balance, **options)
    keys = BoltcardKeys.of([bytes.fromhex(issued[f"k{n}"]) for n in range(5)],
                           version=int(issued["version"]))
    # The card holds the sandbox's plain-http URL: `lnurlw://` always means https (LUD-17), and
    # the sandbox serves http on loopback (allowed by the demo configuration's lnurl policy).
    base = issued["lnurlw_base"].replace("lnurlw://", "http://", 1)
    simcards.create_programmed(path, base, keys, uid)
    return DemoCard(label, path, issued["card_id"], balance)
