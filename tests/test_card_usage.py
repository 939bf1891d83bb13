"""Per-card usage (the payout dashboard's Boltcard view): `history --card` as a table, JSON and
CSV, `history --cashier`, the tip columns of the CSV export, and the History screen's card view,
over real books on disk."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.app.root import LEDGER_FILE
from terminal.core.card_usage import card_usage
from terminal.core.records import SaleRecord

T0 = 1_714_550_000.0  # 2024-05-01
CARD_A = "aa" * 16
CARD_B = "bb" * 16


def sale(n: int, at: float, state: str = "paid", *, card: str | None = CARD_A,
         msat: int = 1_000_000, tip_minor: int = 0, cashier: str | None = None,
         minor: int = 100) -> SaleRecord:
    record = SaleRecord(id=f"s{n:04d}", created_at=at, amount_minor=minor, currency="USD",
                        state=state, method="card" if card else "qr", card_id=card,
                        cashier=cashier, tip_minor=tip_minor)
    record.priced(msat)
    return record


SALES = [
    sale(1, T0, tip_minor=10, minor=110, cashier="ana"),
    sale(2, T0 + 60, "queued", msat=500_000),
    sale(3, T0 + 120, "failed", card=CARD_B),
    sale(4, T0 + 180, card=CARD_B, msat=3_000_000, cashier="ana"),
    sale(5, T0 + 240, card=None, msat=700_000),  # QR: no card
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(f'[terminal]\ndata_dir = "{tmp_path / "data"}"\n[backend]\nkind = "flash"\n'
                    '[backend.flash]\nhttp_url = "https://flash.example/graphql"\n'
                    'username = "shop"\n')
    data = load_config(path).data_dir
    data.mkdir(mode=0o700)
    with Ledger(data / LEDGER_FILE) as ledger:
        for record in SALES:
            ledger.save_sale(record)
    return path


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_card_usage_by_the_counting_rule() -> None:
    usage = {u.card_id: u.to_doc() for u in card_usage(SALES)}
    assert list(usage) == [CARD_B, CARD_A]  # most used (by amount) first
    a, b = usage[CARD_A], usage[CARD_B]
    assert (a["sales"], a["attempts"], a["failed"]) == (2, 2, 0)
    assert a["gross_msat"] == 1_500_000 and a["queued_msat"] == 500_000
    assert a["tips_msat"] == 1_000_000 * 10 // 110 and a["by_currency"] == {"USD": 210}
    assert (a["first_at"], a["last_at"]) == (T0, T0 + 60)
    assert (b["sales"], b["attempts"], b["failed"], b["gross_msat"]) == (1, 2, 1, 3_000_000)


def test_history_card_without_an_id_is_the_usage_per_card(config: Path) -> None:
    code, out = _cli("history", "--card", "--config", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["CARD", "SALES", "TRIED", "FAILED"]
    assert lines[1].startswith(CARD_B[:16]) and lines[2].startswith(CARD_A[:16])
    assert lines[-1] == "2 cards"
    code, out = _cli("history", "--card", "--export", "json", "--config", str(config))
    doc = json.loads(out)
    assert code == 0 and [d["card_id"] for d in doc] == [CARD_B, CARD_A]
    assert doc[1]["sales"] == 2 and doc[1]["queued_msat"] == 500_000
    code, out = _cli("history", "--card", "--export", "csv", "--config", str(config))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["card_id"] for r in rows] == [CARD_B, CARD_A] and rows[0]["failed"] == "1"
    # With an id it is still the filter it always was (a prefix will do).
    code, out = _cli("history", "--card", CARD_A[:8], "--export", "json", "--config",
                     str(config))
    assert [s["id"] for s in json.loads(out)] == ["s0001", "s0002"]


def test_history_by_cashier_and_the_tip_columns(config: Path) -> None:
    code, out = _cli("history", "--cashier", "ANA", "--export", "json", "--config", str(config))
    assert code == 0 and [s["id"] for s in json.loads(out)] == ["s0001", "s0004"]
    code, out = _cli("history", "--cashier", "none", "--export", "csv", "--config", str(config))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["s0002", "s0003", "s0005"]
    code, out = _cli("history", "--export", "csv", "--config", str(config))
    first = next(csv.DictReader(io.StringIO(out)))
    assert (first["tip_minor"], first["tip_msat"], first["cashier"]) == (
        "10", str(1_000_000 * 10 // 110), "ana")
    code, out = _cli("history", "--card", "--cashier", "ana", "--export", "json", "--config",
                     str(config))
    assert [(d["card_id"], d["sales"]) for d in json.loads(out)] == [(CARD_B, 1), (CARD_A, 1)]


def test_the_history_screen_lists_cards_and_a_card_its_sales(tmp_path: Path) -> None:
    import asyncio

    from terminal.app.demo import DemoEnvironment
    from terminal.app.ui.viewmodels import Screen

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path / "demo", background=False)
        try:
            now = env.till.clock()
            for record in SALES:
                record.created_at = now - 300 + (record.created_at - T0)
                env.terminal.ledger.save_sale(record)
            c = env.controller()
            c.go(Screen.HISTORY)
            vm = c.history
            assert len(vm.rows()) == 5
            assert vm.toggle_by_card()
            rows = vm.card_rows()
            assert [r.sale_id for r in rows] == [CARD_B, CARD_A]
            assert rows[1].text == "aaaaaaaa  2 × $2.10 · 1,500 sats"
            assert rows[0].text.endswith("· 1 refused")
            assert vm.card_detail()[1].startswith("aaaaaaaa: ") and "tips" in vm.card_detail()[1]
            vm.set_card(CARD_A)
            assert not vm.by_card and [r.sale_id for r in vm.rows()] == ["s0002", "s0001"]
            vm.toggle_by_card()
            assert vm.card_filter is None
            vm.toggle_by_card()  # back to the sales: now by cashier
            assert vm.cycle_cashier_filter() == "ana" and vm.cashier_filter_text == "Cashier: Ana"
            assert [r.sale_id for r in vm.rows()] == ["s0004", "s0001"]
            assert vm.totals().taken == 2
            vm.select("s0001")
            assert "Cashier: Ana" in vm.detail()
            assert vm.cycle_cashier_filter() == "max" and vm.rows() == []
            assert vm.cycle_cashier_filter() == "none"
            assert vm.cashier_filter_text == "Cashier: Nobody signed in"
            assert [r.sale_id for r in vm.rows()] == ["s0005", "s0003", "s0002"]
            assert vm.cycle_cashier_filter() is None and len(vm.rows()) == 5
            # The Cards view is counted by the books: the rule over the day's sales shown.
            for state, method, cashier in [("all", "all", None), ("failed", "all", None),
                                           ("queued", "card", None), ("paid", "all", "ana"),
                                           ("all", "qr", "none")]:
                vm.set_filter(state=state, method=method)
                vm.cashier_filter = cashier
                shown = [r for r in vm.records() if vm._matches(r, any_card=True)]
                assert vm.card_usage() == card_usage(shown), (state, method, cashier)
            vm.cashier_filter = None
            vm.set_filter(state="failed", method="all")
            assert [u.card_id for u in vm.card_usage()] == [CARD_B]
        finally:
            await env.stop()

    asyncio.run(scenario())
