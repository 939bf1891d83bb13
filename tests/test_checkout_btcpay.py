"""The sale flow (`Checkout`/`SaleSession`, and `flash-terminal charge`) on the BTCPay backend.

The same checkout code as the Flash/sandbox tests (test_charge_e2e.py), built by `build_terminal`
from a `[backend] kind = "btcpay"` configuration. Real parts throughout: the Greenfield fake and
an LNURL-withdraw issuer served over HTTP on 127.0.0.1, a simulated Boltcard read through the
NTAG 424 DNA command code, the configuration and ledger on disk. Payments are made the way a
wallet or a card issuer would: by the BOLT11 alone (`FakeBTCPay.pay`).
"""

# ruff: noqa: F811 - the BTCPay rig's fixtures (tests/helpers/btcpay_rig.py) are parameters here

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from pathlib import Path

from helpers.btcpay_rig import (  # noqa: F401 - fixtures
    CARD_UID,
    ISSUER_KEY,
    TERMINAL_ID,
    btcpay,
    card,
    config_path,
    issuer,
    issuer_paid,
    run_terminal,
)

from terminal.adapters.backends.btcpay import BTCPayBackend
from terminal.adapters.simcards import create_programmed
from terminal.adapters.simcards import tap as tap_card
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.app.root import Terminal, build_terminal
from terminal.core.memo import parse_memo_tag
from terminal.protocols.boltcard import derive_card_keys
from tests.fakes.btcpay_server import DEFAULT_KEY

WAIT_S = 10.0  # an upper bound on waits, never a synchronisation


# --------------------------------------------------------------------------- fixtures


# --------------------------------------------------------------------------- composition


def test_the_configuration_builds_a_btcpay_terminal_and_the_secrets_merge(config_path):
    config = load_config(config_path)
    assert config.backend.kind == "btcpay"
    assert DEFAULT_KEY not in repr(config)
    terminal = build_terminal(config)
    try:
        assert isinstance(terminal.backend, BTCPayBackend)
        assert DEFAULT_KEY not in repr(terminal.backend)
        assert terminal.checkout.terminal_id == TERMINAL_ID
        assert terminal.keyring.issuer_names == ["loopback"]
    finally:
        asyncio.run(terminal.aclose())


# --------------------------------------------------------------------------- QR sale


def test_qr_sale_in_jmd_is_paid_when_a_wallet_pays_the_bolt11(config_path, btcpay):
    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(150_00, "JMD", "patties")
        assert session.invoice is not None
        pending = await session.reconcile()  # the store has the invoice, unpaid
        btcpay.pay(session.invoice.bolt11)  # the customer's wallet scans the QR and pays
        outcome = await session.wait_settled(WAIT_S)
        return session, pending, outcome, terminal.ledger.get_sale(session.record.id)

    session, pending, outcome, record = run_terminal(config_path, body)
    assert pending.status == "pending"
    assert outcome.status == "paid" and outcome.reason is None
    assert record.state == "paid" and record.method == "qr"
    assert record.card_id is None
    assert [h.to_state for h in record.history] == ["created", "invoiced", "paid"]

    (invoice,) = btcpay.invoices.values()
    assert invoice.status == "Settled"
    assert record.invoice_ref == invoice.id
    assert record.bolt11 == invoice.bolt11 and record.payment_hash == invoice.payment_hash
    # JMD 150.00 at the store's 15,600,000 JMD/BTC, priced by BTCPay to the msat.
    assert invoice.amount == 150 and invoice.currency == "JMD"
    assert outcome.amount_msat == record.amount_msat == invoice.msat == 961_539
    assert outcome.payment_hash == invoice.payment_hash
    # The sale and the terminal are findable from the store's side.
    assert invoice.metadata["orderId"] == record.id == session.record.id
    assert invoice.metadata["terminalId"] == TERMINAL_ID
    assert invoice.metadata["posData"] == {"saleId": record.id, "terminalId": TERMINAL_ID}
    assert invoice.metadata["itemDesc"].startswith("patties ")
    tag = parse_memo_tag(invoice.metadata["itemDesc"])
    assert tag is not None and (tag.terminal_id, tag.sale_id) == (TERMINAL_ID, record.id)


def test_qr_sale_in_usd_reopened_after_a_restart_settles_once(config_path, btcpay):
    """The invoice is the idempotency key: resuming after a restart finds it, never re-creates."""
    async def open_it(terminal: Terminal):
        session = await terminal.checkout.open_sale(2_50, "USD")
        return session.record.id, session.invoice

    sale_id, invoice = run_terminal(config_path, open_it)
    assert invoice.amount_msat == 2_500_000  # $2.50 at $100,000/BTC
    btcpay.pay(invoice.bolt11)  # paid while the terminal was off

    async def after_restart(terminal: Terminal):
        return await terminal.checkout.recover(), terminal.ledger.get_sale(sale_id)

    outcomes, record = run_terminal(config_path, after_restart)
    assert [(o.sale_id, o.status) for o in outcomes] == [(sale_id, "paid")]
    assert record.state == "paid" and record.method == "qr"
    assert btcpay.count("POST", "/invoices") == 1


def test_underpaid_invoice_is_said_so_and_a_late_rest_pays_the_sale(config_path, btcpay):
    """BTCPay `Expired` + `PaidPartial`: not paid, but never a silent "expired"."""
    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(4_00, "USD")
        assert session.invoice is not None
        ref = session.invoice.backend_ref
        btcpay.receive(ref, btcpay.invoices[ref].due_msat // 2)
        btcpay.expire(ref)
        short = await session.wait_settled(WAIT_S)
        btcpay.receive(ref, btcpay.invoices[ref].due_msat - btcpay.invoices[ref].paid_msat)
        rest = await session.reconcile()  # BTCPay: Expired + PaidLate
        return short, rest, terminal.ledger.get_sale(session.record.id)

    short, rest, record = run_terminal(config_path, body)
    assert short.status == "failed" and short.reason == "invoice-underpaid"
    assert short.message.startswith("Only part of the amount arrived")
    assert rest.status == "paid"  # the sale was failed, not expired: the money still counts
    assert [h.to_state for h in record.history] == ["created", "invoiced", "failed", "paid"]


def test_sats_sale_through_the_flash_plugin_is_charged_what_btcpay_says_is_due(
    config_path, btcpay
):
    btcpay.flash_plugin_usd_price = Decimal("100000")  # the plugin rounds through whole cents

    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(1234, "SAT")
        assert session.invoice is not None
        btcpay.pay(session.invoice.bolt11)
        return await session.wait_settled(WAIT_S)

    outcome = run_terminal(config_path, body)
    (invoice,) = btcpay.invoices.values()
    assert outcome.status == "paid"
    assert outcome.amount_msat == invoice.bolt11_msat == 1_230_000  # 123 cents, not 1,234 sats
    assert invoice.fee_msat == -4_000  # BTCPay's tweak, so that `due` is the BOLT11's amount


# --------------------------------------------------------------------------- card sale


def test_card_sale_is_paid_by_the_issuer_through_one_invoice(
    config_path, btcpay, issuer, card, issuer_paid
):
    url = tap_card(card)

    async def body(terminal: Terminal):
        verification = terminal.keyring.verify_tap(url)
        session = await terminal.checkout.open_sale(10_00, "JMD", "juice")
        result = await session.tap(url)
        outcome = await session.wait_settled(WAIT_S)
        late = await session.tap(url)  # the same tap again, after the sale is paid
        return verification, result, outcome, late, terminal.ledger.get_sale(session.record.id)

    verification, result, outcome, late, record = run_terminal(config_path, body)
    # Verified locally with the configured issuer's keys before any network call.
    assert verification.valid and verification.issuer == "loopback"
    assert verification.card_id == derive_card_keys(ISSUER_KEY, CARD_UID, 1).card_id
    assert verification.counter == 2  # 1 was the read-back at programming
    assert result.kind == "accepted", result
    assert outcome.status == "paid"
    assert late.kind == "late" and "already paid" in late.message

    # Exactly one invoice, created once, and it is the one the issuer paid.
    (invoice,) = btcpay.invoices.values()
    assert btcpay.count("POST", "/invoices") == 1
    assert issuer_paid == [invoice.id]
    assert invoice.status == "Settled"
    assert invoice.metadata["orderId"] == record.id
    assert invoice.metadata["terminalId"] == TERMINAL_ID
    # The issuer saw the card's own p/c, then one callback carrying that invoice.
    scan, callback = issuer.seen
    assert scan.path == "/scan" and scan.raw_query == url.partition("?")[2]
    assert callback.path == "/cb" and f"pr={invoice.bolt11}" in callback.raw_query

    assert record.state == "paid" and record.method == "card"
    assert record.card_id == verification.card_id and record.counter == 2
    assert record.issuer == "loopback"
    assert record.amount_msat == invoice.msat == 64_103  # JMD 10.00 at 15,600,000 JMD/BTC
    assert [h.event for h in record.history] == [
        "created", "invoice_ready", "tap", "withdraw_requested", "callback_sent", "paid"]


PULL_PAYMENT_ID = "3dGzDaVRvTmB5ubBC6ykKznAbSy5"


def test_btcpay_card_is_verified_locally_with_the_pull_payment_variant(
    config_path, btcpay, issuer, issuer_paid, tmp_path
):
    """A card registered at BTCPay (keys derived at version 0 with the pull-payment id) is
    verified on the terminal by an issuer configured with that pull payment."""
    from terminal.adapters.keyexchange import fetch_keys
    from terminal.protocols.lnurl import UrlPolicy
    from tests.fakes.btcpay_server import boltcard_id

    btcpay.pull_payments[PULL_PAYMENT_ID] = "SATS"
    policy = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1"}),
                       allow_private_hosts=frozenset({"127.0.0.1"}))
    register = f"{btcpay.base_url}/api/v1/pull-payments/{PULL_PAYMENT_ID}/boltcards"
    keys = fetch_keys(register, policy, uid=CARD_UID)
    assert keys.issuer_version == 0
    card = tmp_path / "btcpay-card.json"
    create_programmed(card, f"{issuer.origin.replace('http', 'lnurlw', 1)}/scan", keys.keys,
                      uid=CARD_UID)
    with config_path.open("a") as fh:
        fh.write("\n".join([
            "[[issuers]]", 'name = "btcpay-cards"', 'kind = "deterministic"',
            'hosts = ["127.0.0.1"]', f'issuer_key = "{btcpay.boltcard_issuer_key.hex()}"',
            f'pull_payment_id = "{PULL_PAYMENT_ID}"', ""]))
    url = tap_card(card)

    async def body(terminal: Terminal):
        verification = terminal.keyring.verify_tap(url)
        session = await terminal.checkout.open_sale(21, "SAT")
        result = await session.tap(url)
        return verification, result, await session.wait_settled(WAIT_S)

    verification, result, outcome = run_terminal(config_path, body)
    assert verification.valid and verification.issuer == "btcpay-cards"
    assert verification.card_id == boltcard_id(btcpay.boltcard_issuer_key, CARD_UID)
    assert result.kind == "accepted" and outcome.status == "paid"
    assert len(issuer_paid) == 1
    # Without the pull-payment id (plain boltcard derivation) the same tap does not verify.
    from terminal.protocols.boltcard import DeterministicIssuer, Keyring

    plain = Keyring([DeterministicIssuer("plain", btcpay.boltcard_issuer_key, default_version=0)])
    assert plain.verify_tap(url).reason is not None and not plain.verify_tap(url).valid


def test_a_replayed_or_forged_tap_never_reaches_the_issuer(
    config_path, btcpay, issuer, card, issuer_paid
):
    url = tap_card(card)
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")

    async def body(terminal: Terminal):
        first = await terminal.checkout.open_sale(5_00, "JMD")
        paid = await first.tap(url)
        await first.wait_settled(WAIT_S)
        second = await terminal.checkout.open_sale(5_00, "JMD")
        replayed = await second.tap(url)
        bad = await second.tap(forged)
        return paid, replayed, bad, second.state.value

    paid, replayed, bad, second_state = run_terminal(config_path, body)
    assert paid.kind == "accepted"
    assert replayed.kind == "refused" and replayed.code == "replayed-tap"
    assert bad.kind == "refused" and bad.code == "cmac-mismatch"
    assert second_state == "invoiced"  # still open for another card or the QR
    assert [s.path for s in issuer.seen] == ["/scan", "/cb"]  # only the first sale's tap
    assert len(issuer_paid) == 1
    assert sorted(i.status for i in btcpay.invoices.values()) == ["New", "Settled"]


# --------------------------------------------------------------------------- CLI contract


def charge(capsys, config_path: Path, *args: str) -> tuple[int, dict]:
    code = main(["charge", *args, "--config", str(config_path), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def assert_contract(result: dict) -> None:
    assert set(result) >= {"status", "reason", "sale_id", "payment_hash", "amount_msat"}
    assert result["reason"] is None
    assert len(result["payment_hash"]) == 64 and result["amount_msat"] > 0


def test_cli_charge_tap_is_paid_on_btcpay(config_path, btcpay, issuer, card, issuer_paid,
                                          capsys):
    code, result = charge(capsys, config_path, "12.50", "--currency", "JMD",
                          "--tap", tap_card(card))
    assert code == 0, result
    assert result["status"] == "paid"
    assert_contract(result)
    (invoice,) = btcpay.invoices.values()
    assert result["sale_id"] == invoice.metadata["orderId"]
    assert result["payment_hash"] == invoice.payment_hash
    assert result["amount_msat"] == invoice.msat
    assert issuer_paid == [invoice.id]


def test_cli_charge_card_file_is_paid_on_btcpay(config_path, btcpay, issuer, card, capsys):
    code, result = charge(capsys, config_path, "100", "--currency", "SAT",
                          "--card-file", str(card))
    assert code == 0 and result["status"] == "paid", result
    assert result["amount_msat"] == 100_000
    (invoice,) = btcpay.invoices.values()
    assert invoice.currency == "SATS" and invoice.amount == 100


def test_cli_charge_qr_waits_for_the_wallet_on_btcpay(config_path, btcpay, capsys):
    answer: dict[str, int] = {}

    def run_cli() -> None:
        answer["code"] = main(["charge", "3", "--currency", "USD", "--qr", "--timeout", "20",
                               "--config", str(config_path), "--json"])

    cli = threading.Thread(target=run_cli, name="charge-qr")
    cli.start()
    try:
        # The CLI has shown the invoice and is now following its status: the wallet pays.
        assert btcpay.status_read.wait(WAIT_S), "the CLI never asked for the invoice status"
        (invoice,) = btcpay.invoices.values()
        assert invoice.status == "New"
        btcpay.pay(invoice.bolt11)
    finally:
        cli.join(WAIT_S + 20)
    assert not cli.is_alive()
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert answer["code"] == 0, result
    assert result["status"] == "paid"
    assert_contract(result)
    assert invoice.bolt11 in captured.err  # the QR's text, shown to the merchant
    assert result["sale_id"] == invoice.metadata["orderId"]
    assert result["amount_msat"] == invoice.msat == 3_000_000
    assert btcpay.count("POST", "/invoices") == 1
