"""`flash-terminal charge` at the counter: `--tip`, `--cashier`, and the card's balance after the
tap (`card_balance_msat`, LUD-14), end to end against the sandbox (real HTTP on loopback, the
simulated card, the books on disk); and the sandbox issuer's LUD-19 payLink paying back onto the
card."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.adapters.simcards import tap as tap_card
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.app.root import LEDGER_FILE
from terminal.core.pins import hash_pin
from terminal.protocols import bolt11
from terminal.sandbox.server import SandboxThread


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture(scope="module")
def config_path(sandbox) -> Path:
    return sandbox.write_terminal_config(sandbox.data_dir / "terminal.toml")


def with_extra(config_path: Path, name: str, text: str) -> Path:
    """A copy of the sandbox configuration (same books) with `text` appended; 0600."""
    path = config_path.with_name(name)
    path.write_text(config_path.read_text() + text)
    os.chmod(path, 0o600)
    return path


def new_card(tmp_path: Path, config_path: Path, sats: int, capsys) -> Path:
    card = tmp_path / f"card-{sats}.json"
    assert main(["sandbox", "card", "new", str(card), "--data", str(config_path.parent),
                 "--balance", str(sats), "--json"]) == 0
    capsys.readouterr()
    return card


def charge(capsys, config_path: Path, *args: str) -> tuple[int, dict]:
    code = main(["charge", *args, "--config", str(config_path), "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {"stderr": captured.err})


def record(config_path: Path, sale_id: str):
    with Ledger(load_config(config_path).data_dir / LEDGER_FILE, read_only=True) as ledger:
        return ledger.get_sale(sale_id)


def test_a_percentage_tip_and_an_amount_tip_are_on_the_books(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    code, out = charge(capsys, config_path, "20", "--currency", "USD", "--tip", "15%",
                       "--card-file", str(card))
    assert code == 0 and out["status"] == "paid", out
    sale = record(config_path, out["sale_id"])
    assert (sale.amount_minor, sale.tip_minor) == (2300, 300)
    assert out["tip_msat"] == sale.tip_msat == out["amount_msat"] * 300 // 2300
    code, out = charge(capsys, config_path, "1000", "--currency", "SAT", "--tip", "50",
                       "--card-file", str(card))
    assert code == 0  # a USD wallet prices sats through cents: the tip keeps its share
    assert out["tip_msat"] == out["amount_msat"] * 50 // 1050
    assert record(config_path, out["sale_id"]).tip_minor == 50


@pytest.mark.parametrize("tip, phrase", [
    ("101%", "0 to 100"), ("1.5%", "0 to 100"), ("-2", "--tip"), ("abc", "--tip"),
    ("1.234", "--tip"), ("99999999", "more than one sale"),
])
def test_a_bad_tip_is_a_usage_error_before_any_sale(tmp_path, config_path, capsys, tip, phrase):
    with pytest.raises(SystemExit) as info:
        main(["charge", "5", "--currency", "USD", "--tip", tip, "--qr", "--config",
              str(config_path), "--json"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err


def test_the_card_balance_after_the_tap_and_on_the_receipt_when_opted_in(
        tmp_path, config_path, capsys, sandbox):
    card = new_card(tmp_path, config_path, 50_000, capsys)
    code, out = charge(capsys, config_path, "1000", "--currency", "SAT",
                       "--card-file", str(card))
    assert code == 0
    # The issuer's currentBalance (sent with the tap) less what this sale took from the card.
    assert out["card_balance_msat"] == 50_000_000 - out["amount_msat"]
    assert record(config_path, out["sale_id"]).card_balance_msat is None  # not opted in
    from terminal.adapters.receipts import Receipts

    plain = Receipts(None, merchant="Shop").sale_text(record(config_path, out["sale_id"]))
    assert "Card balance" not in plain  # off by default, for privacy
    opted = with_extra(config_path, "balance.toml", "")
    text = opted.read_text()
    opted.write_text(text.replace("[ui]\n", "[ui]\nshow_card_balance = true\n", 1)
                     if "[ui]\n" in text else text + "\n[ui]\nshow_card_balance = true\n")
    left = out["card_balance_msat"]
    code, out = charge(capsys, opted, "2000", "--currency", "SAT", "--card-file", str(card))
    assert code == 0 and out["card_balance_msat"] == left - out["amount_msat"]
    sale = record(opted, out["sale_id"])
    assert sale.card_balance_msat == out["card_balance_msat"]
    from terminal.core.money import Msat, format_msat

    receipt = Receipts(None, merchant="Shop").sale_text(sale)
    assert "Card balance" in receipt and format_msat(Msat(sale.card_balance_msat)) in receipt


def test_the_card_balance_is_null_when_the_issuer_was_not_heard(tmp_path, capsys):
    """Offline, the tap is checked here and queued: the issuer never said the card's balance,
    so `card_balance_msat` is null (the key is always there), never a guess."""
    data = tmp_path / "sb"
    sb = SandboxThread(data).start()
    try:
        config = sb.write_terminal_config(data / "terminal.toml")
        card = new_card(tmp_path, config, 10_000, capsys)
    finally:
        sb.stop()
    code, out = charge(capsys, config, "150", "--currency", "SAT", "--card-file", str(card))
    assert code == 0 and out["status"] == "queued", out
    assert "card_balance_msat" in out and out["card_balance_msat"] is None
    assert record(config, out["sale_id"]).card_balance_msat is None


def test_cashier_named_on_the_sale_and_checked(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    staffed = with_extra(config_path, "staffed.toml", (
        '\n[[cashiers]]\nid = "ana"\nname = "Ana"\npin_hash = "'
        + hash_pin("1111", iterations=1000) + '"\n'))
    code, out = charge(capsys, staffed, "100", "--currency", "SAT", "--cashier", "Ana",
                       "--card-file", str(card))
    assert code == 0 and out["cashier"] == "ana"
    assert record(staffed, out["sale_id"]).cashier == "ana"
    for args, phrase in ((["--cashier", "bob"], "no cashier 'bob'"),
                         ([], "pass --cashier ID (one of ana)")):
        with pytest.raises(SystemExit) as info:
            main(["charge", "100", "--currency", "SAT", *args, "--card-file", str(card),
                  "--config", str(staffed), "--json"])
        assert info.value.code == 2 and phrase in capsys.readouterr().err
    # Without cashiers the terminal sells as before; --cashier names no one it does not know.
    code, out = charge(capsys, config_path, "100", "--currency", "SAT", "--card-file", str(card))
    assert code == 0 and out["cashier"] is None


def test_the_sandbox_card_carries_its_balance_and_a_pay_link_that_pays_back_onto_it(
        tmp_path, config_path, capsys, sandbox):
    card = new_card(tmp_path, config_path, 10_000, capsys)
    url = tap_card(card).replace("lnurlw://", "http://", 1)
    with httpx.Client() as http:
        answer = http.get(url).json()
        assert answer["currentBalance"] == 10_000_000
        link = answer["payLink"]
        assert link.startswith("lnurlp://")
        pay = http.get(link.replace("lnurlp://", "http://", 1)).json()
        assert pay["tag"] == "payRequest" and pay["minSendable"] <= 2_500_000 <= pay["maxSendable"]
        invoice = http.get(pay["callback"], params={"amount": 2_500_000}).json()["pr"]
        bad = http.get(pay["callback"], params={"amount": "12abc"}).json()
        assert bad["status"] == "ERROR"
    decoded = bolt11.decode(invoice)
    assert decoded.amount_msat == 2_500_000
    assert decoded.description_hash == hashlib.sha256(pay["metadata"].encode()).hexdigest()
    card_id = answer["payLink"].rsplit("/", 1)[1]
    sandbox.pay_invoice(invoice)  # a phone wallet tops the card up
    assert sandbox.card_state(card_id)["balance_msat"] == 12_500_000
    # The merchant's wallet pays one too (lnInvoicePaymentSend, as a refund would): onto the card.
    with httpx.Client() as http:
        again = http.get(pay["callback"], params={"amount": 1_000_000}).json()["pr"]
    wallet = sandbox.wallet_id("USD")

    def fund() -> None:
        sandbox.core.state.account.wallet(wallet).balance += 1_000  # cents

    sandbox.call(fund)
    assert sandbox.call(sandbox.core.send, wallet, again, "refund-1") == "SUCCESS"
    assert sandbox.call(sandbox.core.send, wallet, again, "refund-1") == "SUCCESS"  # idempotent
    assert sandbox.card_state(card_id)["balance_msat"] == 13_500_000


def test_the_result_screen_and_receipt_show_the_card_balance_only_when_opted_in(tmp_path):
    import asyncio
    import dataclasses

    from terminal.app.demo import CARD_A_SATS, DemoEnvironment
    from terminal.core.money import Msat, format_msat
    from terminal.core.tips import NO_TIP

    async def sell(env, c, *, card: str = "A") -> None:
        for key in "5":
            c.till.key(key)
        await c.till.charge()
        await c.till.choose_tip(NO_TIP)
        await env.present(card)
        await c.till.settled()

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        try:
            c = env.controller()
            await sell(env, c)
            info = c.till.result
            assert info.kind.value == "paid"
            assert info.card_balance_msat == CARD_A_SATS * 1000 - info.amount_msat
            assert c.result.card_balance_text == ""  # off by default: privacy
            assert "Card balance" not in c.till.receipt_text()
            c.till.new_sale()
            c.till.settings = dataclasses.replace(c.till.settings, show_card_balance=True)
            await sell(env, c)
            info = c.till.result
            shown = format_msat(Msat(info.card_balance_msat))
            assert c.result.card_balance_text == f"Card balance {shown}"
            assert "Card balance" in c.till.receipt_text() and shown in c.till.receipt_text()
            c.till.new_sale()
            await sell(env, c, card="B")  # refused: the balance the issuer reported, as it is
            info = c.till.result
            assert info.kind.value == "refused" and info.card_balance_msat == 50_000
            assert c.result.card_balance_text == "Card balance 50 sats"
        finally:
            await env.stop()

    asyncio.run(scenario())
