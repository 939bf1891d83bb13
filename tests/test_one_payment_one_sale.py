"""Issue 9, item 2: one payment, one sale.

End to end: a caching proxy in front of the sandbox's Flash API answers every invoice creation
with the first invoice it saw (same payment hash). Before, three sales were marked PAID from one
payment; now the replayed invoice is refused before it is shown or used
(`backend-replayed-invoice`).

Property (hypothesis, stateful): whatever a backend answers — replayed invoices, payments pushed
in any order, EXPIRED for a paid (purged) invoice, payments after cancel, issuers that say ERROR
and pay anyway, restarts — no payment hash ever pays two sales, no sale is paid without its
payment, no sale is failed while its callback is out, and every payment lands on its sale.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from terminal.adapters import simcards
from terminal.adapters.books.ledger import DuplicatePaymentHash, Ledger
from terminal.app.cli import main
from terminal.app.cli.exits import EXIT_NOT_PAID, EXIT_OK
from terminal.app.config import load_config
from terminal.app.root import build_terminal
from terminal.core.ports.backend import InvoiceStatus
from terminal.core.records import SaleRecord
from terminal.core.sale import SaleState
from terminal.protocols.boltcard import Keyring
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox.config import render_terminal_config
from terminal.sandbox.server import SandboxThread
from terminal.services.checkout import EXPIRED_TRUST_S, Checkout, SaleSession
from tests.fakes.hostile_backend import HostileBackend
from tests.fakes.scripted_backend import ScriptedBackend, ScriptedIssuer

# ------------------------------------------------------------------------ end to end, over HTTP


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def proxy(sandbox):
    fake = HostileBackend(sandbox.sandbox.http_url).start()
    yield fake
    fake.stop()


def proxied_config(sandbox: SandboxThread, proxy: HostileBackend, path: Path) -> Path:
    sb = sandbox.sandbox
    path.write_text(render_terminal_config(
        data_dir=path.parent, network=sb.core.network, http_url=proxy.url, ws_url=sb.ws_url,
        username=sb.username, issuer_key=sb.issuer_key, host=sb.host, lnurlw_base=sb.lnurlw_base,
    ))
    path.chmod(0o600)
    return path


def test_a_replayed_invoice_is_refused_and_one_payment_pays_one_sale(
    sandbox, proxy, tmp_path, capsys
):
    proxy.replay_creations = True
    config = proxied_config(sandbox, proxy, tmp_path / "terminal.toml")

    async def first_sale():
        terminal = build_terminal(load_config(config))
        try:
            session = await terminal.checkout.open_sale(100, "SAT")
            sandbox.pay_invoice(session.invoice.bolt11)
            return await session.wait_settled(10)
        finally:
            await terminal.aclose()

    paid = asyncio.run(first_sale())
    assert paid.status == "paid"

    card = tmp_path / "card.json"
    uid = simcards.new_uid()
    issued = sandbox.register_card(uid, 10_000)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)), version=1)
    simcards.create_programmed(card, f"http://127.0.0.1:{sandbox.port}/ln", keys, uid)
    card_before = card.read_bytes()
    for source in (["--qr"], ["--card-file", str(card)], ["--qr"]):
        code = main(["charge", "100", "--currency", "SAT", "--config", str(config), "--json",
                     *source])
        out, err = capsys.readouterr()
        result = json.loads(out.strip().splitlines()[-1])
        assert code == EXIT_NOT_PAID
        assert (result["status"], result["reason"]) == ("failed", "backend-replayed-invoice")
        assert result["payment_hash"] is None  # never recorded on the new sale
        assert paid.payment_hash not in err and "lnbcrt" not in err  # never shown
        assert "Traceback" not in err
    assert card.read_bytes() == card_before  # the card was never read: nothing could be paid

    assert main(["history", "--config", str(config), "--export", "json"]) == EXIT_OK
    sales = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in sales] == ["paid", "failed", "failed", "failed"]
    assert sum(1 for s in sales if s["payment_hash"] == paid.payment_hash) == 1


def test_the_ledger_holds_a_payment_hash_for_one_sale_only(tmp_path):
    """The books refuse a second sale holding a hash (`DuplicatePaymentHash`): checkout checks
    first (`backend-replayed-invoice`), the ledger is the last line."""
    path = tmp_path / "ledger.jsonl"
    first = SaleRecord(id=f"{0:032x}", created_at=1.0, amount_minor=1, currency="SAT",
                       payment_hash="ab" * 32, bolt11="lnbc1")
    with Ledger(path) as ledger:
        ledger.save_sale(first)
        second = SaleRecord.from_doc({**first.to_doc(), "id": f"{1:032x}", "created_at": 2.0})
        with pytest.raises(DuplicatePaymentHash):
            ledger.save_sale(second)
        assert ledger.get_sale(second.id) is None
    with Ledger(path) as ledger:
        assert ledger.find_sale_by_payment_hash("AB" * 32).id == first.id


# ------------------------------------------------------------------------------- the property


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def tap_url() -> str:
    return f"https://card.example/ln?p={os.urandom(16).hex()}&c={os.urandom(8).hex()}"


class OnePaymentOneSale(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="one-payment-"))
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.backend = ScriptedBackend(clock=self.clock)
        self.issuer = ScriptedIssuer(self.backend)
        self.ledger = Ledger(self.dir / "ledger.jsonl", clock=self.clock, fsync=False)
        self.checkout = Checkout(
            backend=self.backend, withdraw=self.issuer, keyring=Keyring([]),  # type: ignore[arg-type]
            ledger=self.ledger, terminal_id="ft-prop", network="regtest",
            confirm_timeout_s=0, clock=self.clock,
        )
        self.sessions: list[SaleSession] = [self.run(self.checkout.open_sale(100, "SAT"))]

    def teardown(self) -> None:
        try:
            if hasattr(self, "ledger"):
                # Liveness: with the backend up, reconcile lands every payment on its sale.
                self.backend.status_down = False
                self.backend.lookup = "supported"
                self.run(self.checkout.recover())
                paid_hashes = {h for h, e in self.backend.invoices.items() if e.paid}
                for record in self.ledger.sales():
                    owner = self.ledger.find_sale_by_payment_hash(record.payment_hash or "")
                    if record.payment_hash in paid_hashes and owner and owner.id == record.id:
                        assert record.state == "paid", record.history
                self.ledger.close()
        finally:
            if hasattr(self, "loop"):
                self.loop.close()
                shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def pick(self, data: st.DataObject) -> SaleSession:
        """Mostly the sale on screen (the newest), now and then the one before."""
        return data.draw(st.sampled_from(self.sessions[-2:][::-1]))

    def pick_hash(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.backend.invoices)))

    # -- the cashier --------------------------------------------------------------------------
    @rule(replay=st.booleans(), data=st.data())
    def open_sale(self, replay: bool, data: st.DataObject) -> None:
        if replay and self.backend.invoices:
            self.backend.replay_next = self.pick_hash(data)
        self.sessions.append(self.run(self.checkout.open_sale(100, "SAT")))

    def waiting_for_a_card(self) -> list[SaleSession]:
        return [s for s in self.sessions
                if s.state in (SaleState.INVOICED, SaleState.UNCONFIRMED)]

    def open_sessions(self) -> list[SaleSession]:
        return [s for s in self.sessions if not s.sale.is_final]

    @precondition(lambda self: self.waiting_for_a_card())
    @rule(answer=st.sampled_from(["ok", "error", "error", "unknown", "unreachable"]),
          pays=st.booleans(), data=st.data())
    def tap(self, answer: str, pays: bool, data: st.DataObject) -> None:
        """A card on a sale waiting for payment (late taps have their own tests)."""
        self.issuer.next_answer, self.issuer.pays = answer, pays
        session = data.draw(st.sampled_from(self.waiting_for_a_card()[-2:]))
        self.run(session.tap(tap_url()))

    @precondition(lambda self: self.open_sessions())
    @rule(how=st.sampled_from(["cancel", "fail"]), data=st.data())
    def give_up(self, how: str, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from(self.open_sessions()[-2:]))
        if how == "cancel":
            self.run(session.cancel())
        else:
            session.fail("given-up")

    @precondition(lambda self: self.sessions)
    @rule(how=st.sampled_from(["wait", "reconcile"]), data=st.data())
    def follow(self, how: str, data: st.DataObject) -> None:
        session = self.pick(data)
        self.run(session.wait_settled(0.005) if how == "wait" else session.reconcile())

    # -- the terminal ------------------------------------------------------------------------
    @rule(how=st.sampled_from(["recover", "restart"]))
    def terminal(self, how: str) -> None:
        """The reconcile loop, or a restart (either way the screen's sessions are gone and are
        picked up again from the ledger)."""
        if how == "recover":
            self.run(self.checkout.recover())
        else:
            self.ledger.close()
            self.ledger = Ledger(self.dir / "ledger.jsonl", clock=self.clock, fsync=False)
            self.checkout.ledger = self.ledger
        self.sessions = [self.checkout.resume(s.record.id) for s in self.sessions]

    @rule(seconds=st.sampled_from([1.0, 60.0, 400.0, 86_400.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    # -- the backend -------------------------------------------------------------------------
    @precondition(lambda self: self.backend.invoices)
    @rule(what=st.sampled_from(["pay", "expire", "purge"]), data=st.data())
    def backend_event(self, what: str, data: st.DataObject) -> None:
        """A wallet pays; the invoice expires unpaid; long after expiry the provider forgets
        it and its status reads EXPIRED even if it was paid (Flash): only the wallet's
        payments tell then."""
        if what == "purge":
            candidates = sorted(h for h, e in self.backend.invoices.items()
                                if e.invoice.expires_at + EXPIRED_TRUST_S < self.clock.now)
            if candidates:
                self.backend.purge(data.draw(st.sampled_from(candidates)))
            return
        payment_hash = self.pick_hash(data)
        if what == "pay":
            self.backend.pay(payment_hash)
        else:
            self.backend.expire(payment_hash)

    # A backend that cannot look payments up at all is tested on its own (it can only believe
    # EXPIRED); here the lookup is there, or down for a while.
    @rule(down=st.booleans(), lookup=st.sampled_from(["supported", "down"]))
    def backend_health(self, down: bool, lookup: str) -> None:
        self.backend.status_down, self.backend.lookup = down, lookup

    # -- what must always hold ---------------------------------------------------------------
    @invariant()
    def one_payment_one_sale(self) -> None:
        if not hasattr(self, "ledger"):
            return
        sales = self.ledger.sales()
        hashes = [s.payment_hash for s in sales if s.payment_hash]
        assert len(hashes) == len(set(hashes)), "two sales hold one payment hash"
        for record in sales:
            if record.state == "paid":
                entry = self.backend.invoices[record.payment_hash]
                assert entry.paid, "a sale is paid without its payment"

    @invariant()
    def never_failed_once_the_issuer_had_the_invoice(self) -> None:
        """Whatever the issuer answered, a sale whose invoice reached it may still be paid:
        it ends paid, expired (as the backend says) or cancelled by the merchant, never
        failed (the cashier would ask the customer to pay again)."""
        if not hasattr(self, "ledger"):
            return
        for record in self.ledger.sales():
            if record.bolt11 in self.issuer.sent:
                failed = [c for c in record.history
                          if c.to_state == "failed" and c.event != "invoice_replayed"]
                assert not failed, record.history

    @invariant()
    def expired_only_when_the_backend_said_so(self) -> None:
        if not hasattr(self, "ledger"):
            return
        for record in self.ledger.sales():
            if record.state == "expired":
                status = self.backend.invoices[record.payment_hash].status
                assert status is InvoiceStatus.EXPIRED


TestOnePaymentOneSale = OnePaymentOneSale.TestCase
TestOnePaymentOneSale.settings = settings(max_examples=150, stateful_step_count=30,
                                          deadline=None)
