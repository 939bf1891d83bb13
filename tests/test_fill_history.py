"""`flash-terminal sandbox fill-history` (terminal/adapters/books/fill.py): a realistic history of
settled sales written through the books' normal write path."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.core import history
from terminal.core.memo import parse_memo_tag
from terminal.protocols import bolt11

CONFIG = """
[terminal]
name = "Test shop"
data_dir = "data"
id = "ft-fill"

[backend]
kind = "flash"

[backend.flash]
http_url = "https://api.flash.example/graphql"
username = "shop"
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "terminal.toml"
    path.write_text(CONFIG)
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    monkeypatch.setenv("FLASH_TERMINAL_API_KEY", "k" * 32)
    return path


def fill(capsys, config, *extra) -> tuple[int, str, str]:
    code = main(["sandbox", "fill-history", "--config", str(config), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_fill_history_writes_a_realistic_mix_of_settled_sales(config, capsys):
    code, out, err = fill(capsys, config, "--sales", "600", "--days", "10", "--cards", "4",
                          "--seed", "3", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sales"] == 600
    assert {"paid", "failed", "cancelled", "expired"} <= set(summary["states"])
    assert set(summary["methods"]) == {"card", "qr"}
    assert set(summary["currencies"]) == {"JMD", "USD", "SAT"}
    today = dt.date.today()
    assert dt.date.fromisoformat(summary["from"]) >= today - dt.timedelta(days=10)
    assert dt.date.fromisoformat(summary["to"]) < today
    with Ledger(config.parent / "data" / "ledger.jsonl", read_only=True) as books:
        records = list(books.sales_matching(history.SaleQuery()))
        assert books.counts()["sales_archived"] == 600  # settled: all in the archive
        assert books.sales_awaiting_invoice() == [] and books.unsynced_sales() == []
    assert len(records) == 600 and all(r.is_final for r in records)
    assert len({r.card_id for r in records if r.card_id}) <= 4
    assert len({r.payment_hash for r in records if r.payment_hash}) == sum(
        1 for r in records if r.payment_hash)
    for record in records[:50]:
        tag = parse_memo_tag(record.memo)
        assert tag is not None and (tag.terminal_id, tag.sale_id) == ("ft-fill", record.id)
        if record.bolt11:  # a real invoice: signed, its hash the sale's, its memo the sale's
            invoice = bolt11.decode(record.bolt11)
            assert invoice.payment_hash == record.payment_hash
            assert invoice.amount_msat == record.amount_msat
            assert invoice.description == record.memo
        assert record.history[0].event == "created" and record.history[-1].to_state == \
            record.state
    assert main(["ledger", "check", "--config", str(config)]) == 0
    capsys.readouterr()


def test_fill_history_adds_to_existing_books_and_refuses_bad_numbers(config, capsys):
    assert fill(capsys, config, "--sales", "50", "--days", "3")[0] == 0
    code, out, _ = fill(capsys, config, "--sales", "25", "--days", "2", "--cards", "1")
    assert code == 0 and "wrote 25 settled sale(s)" in out
    with Ledger(config.parent / "data" / "ledger.jsonl", read_only=True) as books:
        assert books.counts()["sales_archived"] == 75
    for bad in (["--sales", "-1"], ["--sales", "5", "--days", "0"],
                ["--sales", "5", "--cards", "0"]):
        with pytest.raises(SystemExit) as info:
            fill(capsys, config, *bad)
        assert info.value.code == 2


def test_fill_history_refuses_books_in_use(config, capsys):
    assert fill(capsys, config, "--sales", "1")[0] == 0
    fd = os.open(config.parent / "data" / "ledger.jsonl.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _, err = fill(capsys, config, "--sales", "5")
    finally:
        os.close(fd)
    assert code == 5 and "in use" in err  # busy
