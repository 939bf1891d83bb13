"""`flash-terminal refund` end to end against the sandbox: a partial refund to the card that paid
(its LUD-19 payLink) and one to a Lightning Address land in the right wallets, a third above what
is left is refused, and the books, history and exports say so (real HTTP on loopback, the
simulated card, the books on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.refund_flow import REFUND_KEYS, charge, new_card, refund, run, sending_config

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.app.root import FLASH_BUDGET_FILE, LEDGER_FILE
from terminal.sandbox.server import SandboxThread


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture(autouse=True)
def a_new_stretch_at_the_counter(sandbox, config_path) -> None:
    """Each test starts as if minutes had passed: the module's sandbox enforces Flash's budget of
    20 new invoices per 2 minutes per merchant (proven in test_sandbox_flash_fidelity), which a
    module of sales would otherwise spend; the terminal's own record of that budget goes too."""
    sandbox.reset_limits()
    (load_config(config_path).data_dir / FLASH_BUDGET_FILE).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def config_path(sandbox) -> Path:
    return sending_config(sandbox, sandbox.data_dir / "terminal.toml")


def books(config_path: Path) -> Ledger:
    return Ledger(load_config(config_path).data_dir / LEDGER_FILE, read_only=True)


def wallet_balance(capsys, config_path: Path, name: str) -> int:
    code, out = run(capsys, "sandbox", "wallet", name, "--data", str(config_path.parent),
                    "--json")
    assert code == 0 and out["name"] == name
    return out["balance_msat"]


def test_partial_refunds_to_the_card_and_an_address_then_one_above_the_rest_is_refused(
        tmp_path, sandbox, config_path, capsys):
    card_file = new_card(tmp_path, config_path, 20_000, capsys)
    sale = charge(capsys, config_path, 5_000, card_file)
    with books(config_path) as ledger:
        card_id = ledger.get_sale(sale["sale_id"]).card_id
    paid_card = sandbox.card_state(card_id)["balance_msat"]
    assert paid_card == 15_000_000
    merchant = sandbox.merchant_balance_cents()

    # 1. Part of it back onto the card that paid: the customer taps it again.
    code, out = refund(capsys, config_path, sale["sale_id"], "--amount", "2000",
                       "--card-file", str(card_file))
    assert code == 0, out
    assert set(out) == REFUND_KEYS
    assert (out["status"], out["sale_id"], out["amount_msat"], out["reason"]) == (
        "sent", sale["sale_id"], 2_000_000, None)
    assert sandbox.card_state(card_id)["balance_msat"] == paid_card + 2_000_000
    assert sandbox.merchant_balance_cents() < merchant  # out of the merchant's wallet

    # 2. Part of it to a Lightning Address (name@127.0.0.1:PORT over plain http: a sandbox
    # configuration allows that development host).
    address = sandbox.address("alice")
    assert wallet_balance(capsys, config_path, "alice") == 0
    code, out = refund(capsys, config_path, sale["sale_id"], "--amount", "1000",
                       "--to", address)
    assert code == 0 and out["status"] == "sent", out
    assert out["amount_msat"] == 1_000_000 and out.err.strip() == \
        "flash-terminal refund: Refund sent."  # the words for a person, beside the contract
    assert wallet_balance(capsys, config_path, "alice") == 1_000_000
    assert sandbox.card_state(card_id)["balance_msat"] == paid_card + 2_000_000  # unchanged

    # 3. More than is left (5000 paid, 3000 refunded): refused, nothing recorded or sent.
    code, out = refund(capsys, config_path, sale["sale_id"], "--amount", "2001",
                       "--to", address)
    assert code == 2
    assert "more than is left" in out["stderr"] and "2,000 sats" in out["stderr"]
    assert wallet_balance(capsys, config_path, "alice") == 1_000_000

    with books(config_path) as ledger:
        record = ledger.get_sale(sale["sale_id"])
        refunds = ledger.refunds(sale["sale_id"])
    assert record.refunded_msat == 3_000_000
    assert [r.state for r in refunds] == ["sent", "sent"]
    assert record.refund_ids == [r.id for r in refunds]
    assert refunds[0].destination == "card" and refunds[0].card_id == card_id
    assert refunds[1].destination == "address" and refunds[1].target == address

    # The rest, without --amount: all that is left, to the address.
    code, out = refund(capsys, config_path, sale["sale_id"], "--to", address)
    assert code == 0 and out["amount_msat"] == 2_000_000
    assert wallet_balance(capsys, config_path, "alice") == 3_000_000
    code, out = refund(capsys, config_path, sale["sale_id"], "--to", address)
    assert code == 2 and "Nothing is left" in out["stderr"]

    # History's export carries what was refunded.
    code = main(["history", "--export", "json", "--config", str(config_path)])
    exported = json.loads(capsys.readouterr().out)
    mine = next(d for d in exported if d["id"] == sale["sale_id"])
    assert mine["refunded_msat"] == 5_000_000 and len(mine["refund_ids"]) == 3


def test_while_the_app_holds_the_books_a_refund_is_refused_busy(config_path, capsys):
    from terminal.app.cli.exits import EXIT_BUSY

    with Ledger(load_config(config_path).data_dir / LEDGER_FILE):  # the running app
        code, out = refund(capsys, config_path, "0" * 32, "--to", "a@shop.example")
    assert code == EXIT_BUSY and "has the ledger open" in out["stderr"]


def test_usage_errors_name_the_problem(config_path, capsys):
    for args, phrase in ((["--currency", "USD", "--to", "a@b.example"], "goes with --amount"),
                         (["--amount", "1"], "one of the arguments"),
                         (["--to", "a@b.example", "--tap", "x"], "not allowed with"),
                         (["--amount", "-1", "--to", "a@b.example"], "--amount")):
        code, out = refund(capsys, config_path, "0" * 32, *args)
        assert code == 2 and phrase in out["stderr"], (args, out)
