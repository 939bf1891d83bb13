"""Damaged books through the command line: exit 6, one paragraph, the files untouched;
`ledger check` and `ledger repair` (terminal/app/cli/ledger.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.core.records import CardState, SaleRecord

CONFIG = """
[terminal]
name = "Test shop"
data_dir = "data"

[backend]
kind = "flash"

[backend.flash]
http_url = "https://api.flash.example/graphql"
username = "shop"
"""
T0 = 1_767_225_600.0


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "terminal.toml"
    path.write_text(CONFIG)
    (tmp_path / "data").mkdir()
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    monkeypatch.setenv("FLASH_TERMINAL_API_KEY", "k" * 32)
    return path


def journal(config: Path) -> Path:
    return config.parent / "data" / "ledger.jsonl"


def record(n: int, state: str) -> SaleRecord:
    return SaleRecord(id=f"{n:032x}", created_at=T0 + n, amount_minor=100 + n, currency="JMD",
                      state=state, payment_hash=f"{n:064x}", bolt11=f"lnbc{n}")


@pytest.fixture
def books(config):
    with Ledger(journal(config)) as led:
        for n in range(3):
            led.save_sale(record(n, "paid"))  # archived
        led.save_sale(record(7, "invoiced"))  # in flight
        for counter in range(1, 5):
            led.save_card(CardState("card-1", issuer="iss", last_counter=counter))
    return journal(config)


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.iterdir())
            if p.is_file() and not p.name.endswith((".lock", "-shm", "-wal"))}


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def flip_a_bit_in_the_last_line(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncate(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:-3]) + b"\n")


def zero_the_tail(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-300:] = bytes(300)
    path.write_bytes(bytes(data))


DAMAGE = [flip_a_bit_in_the_last_line, empty, truncate, zero_the_tail]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_every_command_that_opens_damaged_books_exits_6_and_changes_nothing(
        books, config, capsys, damage):
    damage(books)
    before = snapshot(books.parent)
    commands = [
        ("ledger", "check", "--config", str(config)),
        ("history", "--config", str(config)),
        ("history", "--config", str(config), "--export", "csv"),
        ("sync", "--config", str(config)),
        ("charge", "1", "--currency", "SAT", "--qr", "--config", str(config)),
    ]
    for argv in commands:
        code, out, err = cli(capsys, *argv)
        assert code == 6, (argv, err)
        assert "The books need attention" in err and str(books) in err
        assert "ledger repair" in err and "Traceback" not in err
        assert err.strip().count("\n") == 0  # one paragraph
        assert err.strip().endswith("from the backend.")  # whole: within the CLI's bound
        assert out == ""
        assert snapshot(books.parent) == before, argv


def test_ledger_check_reports_intact_books(books, config, capsys):
    code, out, _ = cli(capsys, "ledger", "check", "--config", str(config))
    assert code == 0 and "intact" in out and "3 sales archived" in out
    code, out, _ = cli(capsys, "ledger", "check", "--config", str(config), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "intact" and doc["damage"] == []
    assert doc["counts"]["sales_in_flight"] == 1 and doc["counts"]["sales_archived"] == 3


def test_ledger_check_json_names_the_damage(books, config, capsys):
    flip_a_bit_in_the_last_line(books)
    code, out, _ = cli(capsys, "ledger", "check", "--config", str(config), "--json")
    doc = json.loads(out)
    assert code == 6 and doc["status"] == "damaged"
    assert doc["damage"][0]["file"] == str(books)
    assert {"what", "affected", "fix"} <= set(doc["damage"][0])


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_repair_keeps_a_copy_and_salvages_what_verifies(books, config, capsys, damage):
    damage(books)
    damaged = snapshot(books.parent)
    code, out, err = cli(capsys, "ledger", "repair", "--config", str(config), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "intact" and doc["repaired"]
    copy = Path(doc["copy"])
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.name in damaged} == {
        k: v for k, v in damaged.items() if (copy / k).exists()}
    assert (copy / "ledger.jsonl").read_bytes() == damaged["ledger.jsonl"]
    assert cli(capsys, "ledger", "check", "--config", str(config))[0] == 0
    with Ledger(books) as led:  # the archive was intact: every settled sale is still there
        assert [r.id for r in led.sales() if r.state == "paid"] == [record(n, "paid").id
                                                                   for n in range(3)]
        led.save_sale(record(8, "paid"))  # and the books work again
    assert cli(capsys, "history", "--config", str(config))[0] == 0


def test_repair_of_intact_books_does_nothing(books, config, capsys):
    before = snapshot(books.parent)
    code, out, _ = cli(capsys, "ledger", "repair", "--config", str(config))
    assert code == 0 and "nothing to repair" in out
    assert snapshot(books.parent) == before
    assert not list(books.parent.glob("ledger-damaged-*"))


def test_repair_refuses_while_the_terminal_runs(books, config, capsys):
    import fcntl
    import os

    flip_a_bit_in_the_last_line(books)
    fd = os.open(books.with_name("ledger.jsonl.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the running terminal's writer holds it
        before = snapshot(books.parent)
        code, _, err = cli(capsys, "ledger", "repair", "--config", str(config))
    finally:
        os.close(fd)
    assert code == 5 and "in use" in err  # busy
    assert snapshot(books.parent) == before


def test_repair_rebuilds_a_damaged_archive_from_the_rows_that_verify(books, config, capsys):
    from helpers.books_damage import flip_a_bit_in_an_archived_sale

    flip_a_bit_in_an_archived_sale(books.with_name("ledger.archive.sqlite"), record(1, "x").id)
    assert cli(capsys, "ledger", "check", "--config", str(config))[0] == 6
    code, out, err = cli(capsys, "ledger", "repair", "--config", str(config), "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["archive"] == {"rebuilt": True, "sales_kept": 2, "sales_dropped": 1}
    assert cli(capsys, "ledger", "check", "--config", str(config))[0] == 0
    with Ledger(books, read_only=True) as led:
        assert [r.id for r in led.sales()] == [record(n, "x").id for n in (0, 2, 7)]
