"""Issue 9, item 1: reconcile covers every sale whose invoice the backend has not declared final,
with no time window, and its work stays bounded (`invoice_final`).

Before, `sync` looked back 2 × expiry + 120 s: run a day later (the timer runs every 15 min, and
a terminal may be off overnight) it missed payments that had arrived, and the books stayed wrong
for good. Here the invoice expiry is short (60 s) and sync runs a day later: it still finds every
payment, and once each invoice is final, it never asks about it again.

Real parts: the sandbox's Flash API (behind a pass-through proxy that counts the status queries),
the hostile LNURL issuer, the ledger on disk; the terminal's and the sandbox's clocks move together.
The purged-invoice cross-check (`Backend.find_payment`) is tested with the scripted backend.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers.unclaimed_issuer import ISSUER_HOST, tap_url, write_config

from terminal.adapters.books.ledger import Ledger
from terminal.app.config import load_config
from terminal.app.root import build_terminal
from terminal.protocols.boltcard import Keyring
from terminal.sandbox.server import SandboxThread
from terminal.services.checkout import EXPIRED_TRUST_S, Checkout
from tests.fakes.hostile_backend import HostileBackend
from tests.fakes.lnurl_issuer import Issuer
from tests.fakes.scripted_backend import ScriptedBackend, ScriptedIssuer

DAY_S = 86_400.0
STATUS_QUERY = "LnInvoicePaymentStatus"


class Clock:
    def __init__(self, start: float | None = None) -> None:
        self.offset = 0.0
        self.start = start

    def __call__(self) -> float:
        return (self.start if self.start is not None else time.time()) + self.offset


def test_sync_a_day_later_still_finds_every_payment_and_then_stops_asking(tmp_path):
    clock = Clock()
    issuer = Issuer(host=ISSUER_HOST).start()
    issuer.callback_answer = (200, {"status": "ERROR", "reason": "Payment failed"})
    sandbox = SandboxThread(tmp_path / "sandbox", clock=clock).start()
    proxy = HostileBackend(sandbox.sandbox.http_url).start()
    try:
        config = load_config(write_config(
            sandbox, tmp_path / "terminal.toml", http_url=proxy.url,
            terminal="invoice_expiry_s = 60", lnurl="confirm_timeout_s = 0.2"))

        async def at_the_counter():
            terminal = build_terminal(config)
            terminal.checkout.clock = clock
            try:
                card = await terminal.checkout.open_sale(100, "SAT")
                refused = await card.tap(tap_url(issuer))  # ERROR: the sale is unconfirmed
                sandbox.pay_invoice(card.invoice.bolt11)  # …and the issuer's payment lands

                cancelled_paid = await terminal.checkout.open_sale(110, "SAT")
                await cancelled_paid.cancel()
                sandbox.pay_invoice(cancelled_paid.invoice.bolt11)  # a wallet paid the QR anyway

                cancelled = await terminal.checkout.open_sale(120, "SAT")
                await cancelled.cancel()  # nobody pays this one
                return refused, [s.record.id for s in (card, cancelled_paid, cancelled)]
            finally:
                await terminal.aclose()

        refused, (card_id, paid_id, unpaid_id) = asyncio.run(at_the_counter())
        assert refused.kind == "unconfirmed"

        clock.offset += DAY_S  # every invoice expired long ago; sync runs now

        async def sync_pass():
            terminal = build_terminal(config)
            terminal.checkout.clock = clock
            try:
                await terminal.checkout.recover()
                return {r.id: r for r in terminal.ledger.sales()}
            finally:
                await terminal.aclose()

        before = proxy.operations.count(STATUS_QUERY)
        sales = asyncio.run(sync_pass())
        assert sales[card_id].state == "paid" and sales[card_id].method == "card"
        assert sales[paid_id].state == "paid"  # the late payment of a cancelled sale counts
        assert sales[unpaid_id].state == "cancelled"
        assert all(s.invoice_final for s in sales.values())
        assert proxy.operations.count(STATUS_QUERY) - before == 3

        before = proxy.operations.count(STATUS_QUERY)
        asyncio.run(sync_pass())
        assert proxy.operations.count(STATUS_QUERY) == before  # final invoices: never again
    finally:
        proxy.stop()
        sandbox.stop()
        issuer.stop()


# ------------------------------------------------------------- a provider that purged the invoice


def scripted(tmp_path, **backend):
    clock = Clock(start=1_750_000_000.0)
    fake = ScriptedBackend(clock=clock, **backend)
    ledger = Ledger(tmp_path / "ledger.jsonl", clock=clock, fsync=False)
    checkout = Checkout(backend=fake, withdraw=ScriptedIssuer(fake),  # type: ignore[arg-type]
                        keyring=Keyring([]), ledger=ledger, terminal_id="ft-test",
                        network="regtest", confirm_timeout_s=0, clock=clock)
    return clock, fake, ledger, checkout


@pytest.mark.parametrize("lookup, paid, expected, reason", [
    ("supported", True, "paid", None),  # EXPIRED from a purge, but the wallet holds the payment
    ("supported", False, "expired", "invoice-expired"),
    # No way to know: the backend's word stands, named as unverified (check the wallet).
    ("not_supported", True, "expired", "expired-unverified"),
])
def test_an_expired_status_long_after_expiry_is_checked_against_the_payments(
    tmp_path, lookup, paid, expected, reason
):
    clock, fake, ledger, checkout = scripted(tmp_path, lookup=lookup)

    async def scenario():
        session = await checkout.open_sale(100, "SAT")
        if paid:
            fake.pay(session.record.payment_hash)
        clock.offset += DAY_S  # the terminal was off; meanwhile the provider purged it
        fake.purge(session.record.payment_hash)
        await checkout.recover()
        return ledger.get_sale(session.record.id)

    record = asyncio.run(scenario())
    ledger.close()
    assert record.state == expected
    assert record.invoice_final
    assert fake.lookups == 1
    if reason is not None:
        assert record.reason == reason


def test_an_expired_status_at_expiry_is_believed_without_a_lookup(tmp_path):
    clock, fake, ledger, checkout = scripted(tmp_path)

    async def scenario():
        session = await checkout.open_sale(100, "SAT")
        clock.offset += checkout.invoice_expiry_s + EXPIRED_TRUST_S / 2
        fake.expire(session.record.payment_hash)
        return await session.reconcile()

    outcome = asyncio.run(scenario())
    ledger.close()
    assert outcome.status == "expired" and fake.lookups == 0


def test_a_lookup_that_cannot_answer_now_leaves_the_sale_open_until_it_can(tmp_path):
    clock, fake, ledger, checkout = scripted(tmp_path, lookup="down")

    async def scenario():
        session = await checkout.open_sale(100, "SAT")
        fake.pay(session.record.payment_hash)
        clock.offset += DAY_S
        fake.purge(session.record.payment_hash)
        await checkout.recover()
        waiting = ledger.get_sale(session.record.id)
        fake.lookup = "supported"
        await checkout.recover()
        return waiting, ledger.get_sale(session.record.id)

    waiting, settled = asyncio.run(scenario())
    ledger.close()
    assert waiting.state == "invoiced" and not waiting.invoice_final
    assert settled.state == "paid" and settled.invoice_final


def test_the_sync_command_run_a_day_later_settles_the_refused_sale(tmp_path, capsys):
    """The same, through `flash-terminal sync` as the timer runs it: a card sale rung up
    yesterday (invoice expiry 60 s) that the issuer refused with ERROR and paid anyway is
    `paid` in today's sync, and stays so."""
    import json

    from terminal.app.cli import main

    clock = Clock()
    clock.offset = -DAY_S  # the sale is rung up yesterday; the sandbox lives on that clock
    issuer = Issuer(host=ISSUER_HOST).start()
    issuer.callback_answer = (200, {"status": "ERROR", "reason": "Payment failed"})
    sandbox = SandboxThread(tmp_path / "sandbox", clock=clock).start()
    try:
        path = write_config(sandbox, tmp_path / "terminal.toml",
                            terminal="invoice_expiry_s = 60", lnurl="confirm_timeout_s = 0.2")

        async def yesterday():
            terminal = build_terminal(load_config(path))
            # The whole terminal lives yesterday: its sale, and its check that the invoice it
            # is handed has not expired.
            terminal.checkout.clock = terminal.backend._clock = clock  # type: ignore[attr-defined]
            try:
                session = await terminal.checkout.open_sale(100, "SAT")
                refused = await session.tap(tap_url(issuer))
                assert session.invoice is not None, (refused, session.record)
                sandbox.pay_invoice(session.invoice.bolt11)  # the issuer's payment lands
                return refused, session.record.id
            finally:
                await terminal.aclose()

        refused, sale_id = asyncio.run(yesterday())
        assert refused.kind == "unconfirmed"
        clock.offset = 0.0  # today: the invoice expired a day ago (paid)

        reports = []
        for _ in range(2):  # the next run changes nothing
            code = main(["sync", "--config", str(path), "--json"])
            reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
            assert code == 0, reports[-1]
            assert main(["history", "--config", str(path), "--export", "json"]) == 0
            [sale] = json.loads(capsys.readouterr().out)
            assert (sale["id"], sale["state"]) == (sale_id, "paid")
            assert time.time() - sale["created_at"] > DAY_S - 60  # rung up a day before
        assert [(s["sale_id"], s["status"]) for s in reports[0]["sales"]] == [(sale_id, "paid")]
        assert reports[1]["sales"] == []  # its invoice is final: never asked about again
    finally:
        sandbox.stop()
        issuer.stop()
