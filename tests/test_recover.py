"""`flash-terminal recover` (terminal/services/recovery.py): the backend, the system of record,
restores the paid sales the books lack. Real parts: sales made by the terminal's own checkout
against the BTCPay Greenfield fake on 127.0.0.1, the books on disk, damage and `ledger repair`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.adapters.backends.btcpay import BTCPayBackend
from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.cli.exits import EXIT_BUSY
from terminal.app.config import load_config
from terminal.app.root import build_terminal
from terminal.core.memo import sale_memo
from terminal.core.ports.backend import InvoiceRequest
from terminal.core.records import SaleRecord
from terminal.services.recovery import Recovery
from tests.fakes.btcpay_server import DEFAULT_KEY, FakeBTCPay

TERMINAL_ID = "ft-recover"


@pytest.fixture
def btcpay() -> Iterator[FakeBTCPay]:
    with FakeBTCPay(network="regtest") as fake:
        yield fake


@pytest.fixture
def config(tmp_path: Path, btcpay: FakeBTCPay, monkeypatch) -> Path:
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    path = tmp_path / "terminal.toml"
    path.write_text("\n".join([
        "[terminal]", 'name = "Recover"', 'network = "regtest"', 'display_currency = "JMD"',
        f"id = {json.dumps(TERMINAL_ID)}", f"data_dir = {json.dumps(str(tmp_path / 'data'))}",
        "[backend]", 'kind = "btcpay"', "[backend.btcpay]",
        f"url = {json.dumps(btcpay.base_url)}", f"store_id = {json.dumps(btcpay.store_id)}", "",
    ]))
    path.chmod(0o600)
    fd = os.open(tmp_path / "secrets.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[backend.btcpay]\napi_key = {json.dumps(DEFAULT_KEY)}\n")
    return path


def books(config: Path) -> Path:
    return config.parent / "data" / "ledger.jsonl"


def sell(config: Path, btcpay: FakeBTCPay, plan: list[str]) -> list[str]:
    """Ring up one QR sale per entry through the terminal's checkout: "paid" (a wallet pays),
    "cancelled-paid" (the cashier cancels, the customer's wallet pays anyway)."""

    async def scenario() -> list[str]:
        terminal = build_terminal(load_config(config))
        ids = []
        try:
            for n, what in enumerate(plan):
                session = await terminal.checkout.open_sale(100_00 + n, "JMD", f"item {n}")
                assert session.invoice is not None
                if what == "cancelled-paid":
                    assert await session.cancel()
                    btcpay.pay(session.invoice.bolt11)
                else:
                    btcpay.pay(session.invoice.bolt11)
                    outcome = await session.wait_settled(10.0)
                    assert outcome.status == "paid"
                ids.append(session.record.id)
        finally:
            await terminal.aclose()
        return ids

    return asyncio.run(scenario())


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def today() -> str:
    return dt.date.today().isoformat()


def lose_a_settled_sale(path: Path, sale_id: str) -> None:
    """A bit flips in one archived sale: the books report damage until repaired."""
    db = sqlite3.connect(path.with_name("ledger.archive.sqlite"))
    n, blob = db.execute("SELECT d.n, d.doc FROM docs d JOIN sales s ON s.n = d.n "
                         "WHERE s.id = ?", (sale_id,)).fetchone()
    spoiled = bytearray(blob)
    spoiled[len(spoiled) // 2] ^= 0x10
    db.execute("UPDATE docs SET doc = ? WHERE n = ?", (bytes(spoiled), n))
    db.commit()
    db.close()


def test_recover_restores_a_sale_lost_from_the_books_and_settles_a_late_payment(
        config, btcpay, capsys):
    kept, lost, late = sell(config, btcpay, ["paid", "paid", "cancelled-paid"])
    with Ledger(books(config), read_only=True) as led:
        assert led.get_sale(late).state == "cancelled"  # the cashier saw it cancelled
        lost_record = led.get_sale(lost)
    lose_a_settled_sale(books(config), lost)
    assert cli(capsys, "history", "--config", str(config))[0] == 6
    assert cli(capsys, "recover", "--since", today(), "--config", str(config))[0] == 6
    code, out, err = cli(capsys, "ledger", "repair", "--config", str(config), "--json")
    assert code == 0, err
    assert json.loads(out)["archive"]["sales_dropped"] == 1
    with Ledger(books(config), read_only=True) as led:
        assert led.get_sale(lost) is None  # what repair could not salvage

    code, out, err = cli(capsys, "recover", "--since", today(), "--config", str(config),
                         "--dry-run", "--json")
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dry_run"] and [r["sale_id"] for r in dry["restored"]] == [lost]
    with Ledger(books(config), read_only=True) as led:
        assert led.get_sale(lost) is None  # a dry run writes nothing

    code, out, err = cli(capsys, "recover", "--since", today(), "--config", str(config),
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["payments"] == 3 and result["present"] == 1
    assert [r["sale_id"] for r in result["restored"]] == [lost]
    assert [(r["sale_id"], r["state_before"]) for r in result["settled"]] == [
        (late, "cancelled")]
    assert result["skipped"] == []
    with Ledger(books(config), read_only=True) as led:
        restored = led.get_sale(lost)
        assert restored.state == "paid" and restored.recovered
        assert restored.payment_hash == lost_record.payment_hash
        assert restored.amount_msat == lost_record.amount_msat
        assert restored.bolt11 == lost_record.bolt11
        assert restored.history[-1].event == "recovered"
        settled = led.get_sale(late)
        assert settled.state == "paid" and settled.recovered
        assert [h.event for h in settled.history][-2:] == ["cancel", "paid_late"]
        assert led.get_sale(kept).state == "paid" and not led.get_sale(kept).recovered

    code, out, _ = cli(capsys, "recover", "--since", today(), "--config", str(config),
                       "--json")
    again = json.loads(out)
    assert code == 0 and again["restored"] == [] and again["settled"] == []
    assert again["present"] == 3  # idempotent: nothing new the second time
    code, out, _ = cli(capsys, "history", "--config", str(config), "--export", "csv")
    assert code == 0 and out.count(",True") >= 2  # the recovered column


def test_recover_refuses_books_in_use_but_a_dry_run_works_beside_the_terminal(
        config, btcpay, capsys):
    (sale_id,) = sell(config, btcpay, ["paid"])
    path = books(config)
    for suffix in ("", ".seq"):
        Path(f"{path}{suffix}").unlink()
    for name in ("ledger.archive.sqlite", "ledger.archive.sqlite-wal",
                 "ledger.archive.sqlite-shm"):
        (path.parent / name).unlink(missing_ok=True)  # the books are gone entirely
    Ledger(path).close()
    fd = os.open(path.with_name("ledger.jsonl.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the running terminal
        code, _, err = cli(capsys, "recover", "--since", today(), "--config", str(config))
        assert code == EXIT_BUSY and "in use" in err
        code, out, _ = cli(capsys, "recover", "--since", today(), "--config", str(config),
                           "--dry-run")
        assert code == 0 and "1 would be restored" in out
    finally:
        os.close(fd)
    code, out, _ = cli(capsys, "recover", "--since", today(), "--config", str(config))
    assert code == 0 and "1 restored" in out
    with Ledger(path, read_only=True) as led:
        assert led.get_sale(sale_id).recovered


def test_recover_says_what_it_skips(config, btcpay, tmp_path):
    """Another terminal's payment, a partial payment, a hash another sale holds: reported,
    never forced."""
    backend = BTCPayBackend(btcpay.base_url, btcpay.store_id, DEFAULT_KEY, network="regtest",
                            terminal_id=TERMINAL_ID)
    other = BTCPayBackend(btcpay.base_url, btcpay.store_id, DEFAULT_KEY, network="regtest",
                          terminal_id="ft-elsewhere")

    async def scenario() -> tuple[dict, dict]:
        made = {}
        for digit, key, owner in (("1", "mine", backend), ("2", "partial", backend),
                                  ("3", "theirs", other), ("4", "clash", backend)):
            sale_id = digit * 32
            invoice = await owner.create_invoice(InvoiceRequest(
                amount_minor=5000, currency="SAT", idempotency_key=sale_id,
                memo=sale_memo(key, terminal_id=owner.terminal_id, sale_id=sale_id)))
            made[key] = (sale_id, invoice)
        for key in ("mine", "theirs", "clash"):
            btcpay.settle(made[key][1].backend_ref)
        partial = made["partial"][1]
        btcpay.receive(partial.backend_ref, partial.amount_msat - 2000)
        btcpay.expire(partial.backend_ref)  # it expired with part of the money
        with Ledger(tmp_path / "other" / "ledger.jsonl", create_dirs=True) as led:
            # Another sale of these books already holds the clash's payment hash.
            led.save_sale(SaleRecord(id="c" * 32, created_at=time.time(), amount_minor=1,
                                     currency="SAT", state="paid",
                                     payment_hash=made["clash"][1].payment_hash))
            recovery = Recovery(backend, led, terminal_id=TERMINAL_ID, clock=time.time)
            report = await recovery.run(time.time() - 3600)
        await backend.aclose()
        await other.aclose()
        return made, report.to_json()

    made, report = asyncio.run(scenario())
    assert [r["sale_id"] for r in report["restored"]] == [made["mine"][0]]
    reasons = {r["sale_id"]: r["reason"] for r in report["skipped"]}
    assert reasons[made["partial"][0]].startswith("partly paid")
    assert reasons[made["clash"][0]] == f"sale {'c' * 32} holds this payment hash"
    assert made["theirs"][0] not in reasons  # not listed: BTCPay knows it is not ours


def test_recover_usage(config, capsys):
    for bad in (["--since", "yesterday"], ["--since", "2999-01-01"], []):
        with pytest.raises(SystemExit) as info:
            cli(capsys, "recover", "--config", str(config), *bad)
        assert info.value.code == 2


# ---------------------------------------------------------------------------- Flash sandbox
def test_recover_restores_a_sale_deleted_from_the_books_against_the_sandbox(tmp_path, capsys,
                                                                           monkeypatch):
    """Flash: the wallet's transactions, each looked up with transactionDetails (memo, hash,
    invoice), matched by the terminal's memo tag: the sandbox's real GraphQL on 127.0.0.1."""
    from terminal.sandbox.server import SandboxThread

    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    with SandboxThread(tmp_path / "sandbox") as sandbox:
        config = sandbox.write_terminal_config()
        card = tmp_path / "card.json"
        assert main(["sandbox", "card", "new", str(card), "--data", str(config.parent),
                     "--balance", "100000", "--json"]) == 0
        paid = []
        for amount in ("150", "275"):
            assert main(["charge", amount, "--currency", "SAT", "--card-file", str(card),
                         "--config", str(config), "--json"]) == 0
            paid.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
        path = load_config(config).data_dir / "ledger.jsonl"
        kept, deleted = paid
        with Ledger(path, read_only=True) as led:
            before = led.get_sale(deleted["sale_id"])
        assert before is not None and before.state == "paid"
        db = sqlite3.connect(path.with_name("ledger.archive.sqlite"))
        (n,) = db.execute("SELECT n FROM sales WHERE id = ?", (deleted["sale_id"],)).fetchone()
        db.execute("DELETE FROM docs WHERE n = ?", (n,))
        db.execute("DELETE FROM sales WHERE n = ?", (n,))
        db.commit()
        db.close()
        with Ledger(path, read_only=True) as led:
            assert led.get_sale(deleted["sale_id"]) is None

        # A receive-only terminal cannot read the wallet's transactions: it says so.
        code, _, err = cli(capsys, "recover", "--since", today(), "--config", str(config))
        assert code == 8 and "read_transactions" in err  # the backend could not be used
        key = sandbox.create_api_key(["read:user", "read:wallet", "read:transactions"])
        fd = os.open(config.parent / "secrets.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[backend.flash]\napi_key = {json.dumps(key)}\n")
        code, out, err = cli(capsys, "recover", "--since", today(), "--config", str(config),
                             "--json")
        assert code == 0, err
        result = json.loads(out)
        assert [r["sale_id"] for r in result["restored"]] == [deleted["sale_id"]]
        assert result["present"] == 1 and result["settled"] == [] and result["skipped"] == []
        with Ledger(path, read_only=True) as led:
            restored = led.get_sale(deleted["sale_id"])
            assert restored.state == "paid" and restored.recovered
            assert restored.payment_hash == deleted["payment_hash"] == before.payment_hash
            assert restored.amount_msat == deleted["amount_msat"]
            assert restored.bolt11 == before.bolt11
            assert led.get_sale(kept["sale_id"]).state == "paid"
            assert not led.get_sale(kept["sale_id"]).recovered

        code, out, _ = cli(capsys, "recover", "--since", today(), "--config", str(config),
                           "--json")
        again = json.loads(out)
        assert code == 0 and again["restored"] == [] and again["present"] == 2  # idempotent
