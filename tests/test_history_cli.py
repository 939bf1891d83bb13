"""`flash-terminal history` (terminal/cli/history.py) through `terminal.app.cli.main`."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.core.records import PayoutStatus, QueuedPayout, SaleRecord, StateChange

TAP_URL = "lnurlw://issuer.example/ln?p=00112233445566778899AABBCCDDEEFF&c=0011223344556677"
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


def local(day: int, hour: int) -> float:
    return datetime(2026, 3, day, hour, 30).timestamp()  # naive: the system's local time


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "terminal.toml"
    path.write_text(CONFIG)
    (tmp_path / "data").mkdir()
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    return path


@pytest.fixture
def running_ledger(config):
    """The terminal's own (writing) ledger, still open while the CLI runs."""
    led = Ledger(config.parent / "data" / "ledger.jsonl")
    rows = [
        ("s1", 1, 9, "paid", "card", "card-1", 1000, 64_000_000),
        ("s2", 1, 22, "paid", "qr", None, 500, 32_000_000),
        ("s3", 2, 10, "declined", "card", "card-2", 9000, None),
        ("s4", 3, 11, "queued", "card", "card-2", 300, 19_000_000),
    ]
    for sid, day, hour, state, method, card, minor, msat in rows:
        led.save_sale(SaleRecord(
            id=sid, created_at=local(day, hour), amount_minor=minor, currency="JMD", state=state,
            method=method, card_id=card, amount_msat=msat, payment_hash=sid * 16,
            reason="offline-card-cap" if state == "declined" else None,
            history=[StateChange(local(day, hour), "created", "created", "created"),
                     StateChange(local(day, hour) + 5, "x", "created", state)],
        ))
    led.add_payout(QueuedPayout("p4", "s4", None, 19_000, "card-2", "iss", 5, tap_url=TAP_URL,
                                status=PayoutStatus.QUEUED, created_at=local(3, 11)))
    yield led
    led.close()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["history", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_export_to_stdout_with_filters(config, running_ledger, capsys):
    code, out, _ = run(capsys, "--config", str(config), "--export", "json")
    assert code == 0
    docs = json.loads(out)
    assert [d["id"] for d in docs] == ["s1", "s2", "s3", "s4"]
    assert docs[2]["reason"] == "offline-card-cap"
    assert [h["to_state"] for h in docs[0]["history"]] == ["created", "paid"]
    assert "lnurlw" not in out

    code, out, _ = run(capsys, "--config", str(config), "--export", "json",
                       "--from", "2026-03-01", "--to", "2026-03-02", "--method", "card")
    assert [d["id"] for d in json.loads(out)] == ["s1", "s3"]
    code, out, _ = run(capsys, "--config", str(config), "--export", "json",
                       "--state", "queued", "--card", "card-2")
    assert [d["id"] for d in json.loads(out)] == ["s4"]


def test_config_from_the_environment(config, running_ledger, capsys, monkeypatch):
    monkeypatch.setenv("FLASH_TERMINAL_CONFIG", str(config))
    code, out, _ = run(capsys, "--export", "json", "--to", "2026-03-01")
    assert code == 0
    assert [d["id"] for d in json.loads(out)] == ["s1", "s2"]


def test_csv_export_to_a_file(config, running_ledger, capsys, tmp_path):
    target = tmp_path / "sales.csv"
    code, out, _ = run(capsys, "--config", str(config), "--export", "csv",
                       "--output", str(target), "--from", "2026-03-02")
    assert code == 0 and out == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["id"], r["state"], r["card_id"]) for r in rows] == [
        ("s3", "declined", "card-2"), ("s4", "queued", "card-2")]
    assert "lnurlw" not in target.read_text()


def test_table_and_totals_without_export(config, running_ledger, capsys):
    code, out, _ = run(capsys, "--config", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "STATE", "METHOD"]
    rows = [line.split() for line in lines if line.startswith("2026-03-0")]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("2026-03-01", "paid", "card"), ("2026-03-01", "paid", "qr"),
        ("2026-03-02", "declined", "card"), ("2026-03-03", "queued", "card")]
    assert all(line == line.rstrip() for line in lines)
    day1 = next(line for line in lines if line.strip().startswith("2026-03-01") and "sales" in line)
    assert "2 sales" in day1 and "2 taken" in day1 and "96,000 sat" in day1
    total = next(line for line in lines if line.strip().startswith("All"))
    # The one counting rule (terminal.core.totals): the queued offline sale is taken, pending.
    assert "4 sales" in total and "3 taken" in total and "J$18.00" in total.replace(" ", "")
    assert "1 pending offline: 19,000 sat" in total
    assert "Totals per card:" in out and "card-2" in out


def test_no_match_prints_a_clear_line(config, running_ledger, capsys):
    code, out, _ = run(capsys, "--config", str(config), "--state", "expired")
    assert code == 0 and out == "No sales match.\n"


@pytest.mark.parametrize("argv", [
    ["--from", "2026-3-1"],
    ["--to", "01/03/2026"],
    ["--from", "2026-03-05", "--to", "2026-03-01"],
    ["--method", "cash"],
    ["--state", "settled"],
    ["--export", "xml"],
])
def test_usage_errors_exit_2(config, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["history", "--config", str(config), *argv])
    assert info.value.code == 2
    assert "history" in capsys.readouterr().err


def test_missing_config_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"))
    assert code == 2  # an unusable configuration is a usage error
    assert "configuration file not found" in err


def test_empty_terminal_exports_an_empty_list(config, capsys):
    code, out, err = run(capsys, "--config", str(config), "--export", "json")
    assert code == 0 and json.loads(out) == []
    assert "no sales recorded yet" in err
    assert not (config.parent / "data" / "ledger.jsonl").exists()  # reading created nothing
