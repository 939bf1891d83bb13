"""Shift (X/Z) and day reports: the one counting rule over a period, per method, cashier and
currency; the shift boundary kept in the books (a Z survives a restart); the refunds source;
and, end to end against the sandbox, a report equal to the sum over `history --export json` of
the same day, offline (queued) sales included."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from helpers.report_checks import CONTRACT, _card, _cli, _compare

from terminal.adapters.books.ledger import Ledger
from terminal.adapters.receipts import report_lines
from terminal.app.cli import main
from terminal.app.ui.viewmodels import Screen
from terminal.core.records import SaleRecord
from terminal.core.reports import Period, RefundLine, build_report
from terminal.sandbox import SandboxThread
from terminal.services.reports import META_SHIFT, Reports

UTC = dt.UTC
DAY = dt.date(2024, 5, 1)
T0 = dt.datetime(2024, 5, 1, 9, 15, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sale(n: int, at: float, state: str = "paid", *, msat: int = 1_000_000, tip_minor: int = 0,
         method: str | None = "card", cashier: str | None = None, currency: str = "USD",
         minor: int = 100) -> SaleRecord:
    record = SaleRecord(id=f"s{n:04d}", created_at=at, amount_minor=minor, currency=currency,
                        state=state, method=method, cashier=cashier, tip_minor=tip_minor)
    record.priced(msat)
    return record


# --------------------------------------------------------------------------- the counting


def test_a_report_counts_by_the_one_rule_and_keeps_the_contract_shape() -> None:
    rows = [
        sale(1, T0, cashier="ana", tip_minor=10, minor=110),
        sale(2, T0 + 60, "queued", cashier="ana", msat=500_000),  # offline: counted, named apart
        sale(3, T0 + 120, "submitted", method="card", msat=250_000),
        sale(4, T0 + 3600, method="qr", cashier="max", currency="JMD", minor=15_000),
        sale(5, T0 + 3700, "failed", cashier="max"),  # an attempt only
        sale(6, T0 + 3800, "cancelled"),
        sale(7, T0 + 3900, "invoiced"),  # still open: neither taken nor failed
        sale(8, T0 - 86_400),  # another day: left out
    ]
    start, end = (dt.datetime(2024, 5, 1, tzinfo=UTC).timestamp(),
                  dt.datetime(2024, 5, 2, tzinfo=UTC).timestamp())
    report = build_report(rows, Period(start, end), tz=UTC)
    doc = report.to_json()
    assert set(doc) == CONTRACT
    assert doc["from"] == "2024-05-01T00:00:00+00:00" and doc["to"] == "2024-05-02T00:00:00+00:00"
    assert doc["sales"] == 4 and doc["gross_msat"] == 2_750_000
    assert doc["tips_msat"] == 1_000_000 * 10 // 110
    assert doc["queued_msat"] == 750_000 and doc["failed"] == 2
    assert doc["refunds_msat"] == 0 and doc["net_msat"] == doc["gross_msat"]
    assert doc["by_method"] == {
        "card": {"sales": 3, "gross_msat": 1_750_000, "tips_msat": 90_909},
        "qr": {"sales": 1, "gross_msat": 1_000_000, "tips_msat": 0}}
    assert set(doc["by_cashier"]) == {"ana", "max", "none"}
    assert doc["by_cashier"]["ana"] == {"sales": 2, "gross_msat": 1_500_000,
                                        "tips_msat": 90_909, "refunds_msat": 0}
    assert doc["by_cashier"]["max"]["sales"] == 1
    assert doc["by_currency"]["JMD"] == {"sales": 1, "gross_msat": 1_000_000, "tips_msat": 0,
                                         "gross_minor": 15_000, "tips_minor": 0}
    assert doc["by_currency"]["USD"]["gross_minor"] == 110 + 100 + 100
    # Sums of the groups are the whole, whichever way it is cut.
    for key in ("by_method", "by_cashier", "by_currency"):
        assert sum(g["gross_msat"] for g in doc[key].values()) == doc["gross_msat"]
        assert sum(g["sales"] for g in doc[key].values()) == doc["sales"]
    only_ana = build_report(rows, Period(start, end), tz=UTC, cashier="ana").to_json()
    assert only_ana["sales"] == 2 and set(only_ana["by_cashier"]) == {"ana"}
    nobody = build_report(rows, Period(start, end), tz=UTC, cashier="none").to_json()
    assert nobody["sales"] == 1 and nobody["failed"] == 1


def test_hourly_bars_for_a_day_and_for_a_long_shift() -> None:
    rows = [sale(1, T0), sale(2, T0 + 60), sale(3, T0 + 7200), sale(4, T0 + 7300, "failed")]
    start = dt.datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    day = build_report(rows, Period(start, start + 86_400), tz=UTC)
    assert [b.label for b in day.hourly] == [f"{h:02d}" for h in range(24)]
    assert {b.label: b.taken for b in day.hourly if b.taken} == {"09": 2, "11": 1}
    long = build_report(rows, Period(start - 3 * 86_400, start + 86_400, "shift", 3), tz=UTC)
    assert len(long.hourly) == 24 and long.hourly[9].start is None and long.hourly[9].taken == 2
    short = build_report(rows, Period(T0, T0 + 3 * 3600, "shift", 1), tz=UTC)
    assert [b.label for b in short.hourly] == ["09", "10", "11", "12"]


class RefundingReports(Reports):
    """The extension point the refund feature fills: one function."""

    def __init__(self, *args, refunds=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._refunds = list(refunds)

    def refunds_between(self, start: float, end: float) -> list[RefundLine]:
        return [r for r in self._refunds if start <= r.at < end]


def test_refunds_come_off_the_net_and_are_named_per_cashier(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        ledger.save_sale(sale(1, T0, cashier="ana"))
        ledger.save_sale(sale(2, T0 + 60, method="qr"))
        assert Reports(ledger).refunds_between(0, T0 * 2) == []  # none recorded yet
        reports = RefundingReports(ledger, clock=Clock(T0 + 7200), tz=UTC, refunds=[
            RefundLine(T0 + 600, 300_000, "s0001", cashier="max"),
            RefundLine(T0 - 86_400, 999, "old")])  # another day
        doc = reports.day(DAY).to_json()
    assert doc["refunds_msat"] == 300_000 and doc["net_msat"] == 2_000_000 - 300_000
    assert doc["by_cashier"]["max"] == {"sales": 0, "gross_msat": 0, "tips_msat": 0,
                                        "refunds_msat": 300_000}


# --------------------------------------------------------------------------- shifts


def test_a_z_report_closes_the_shift_and_the_boundary_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    clock = Clock(T0 + 4 * 3600)
    with Ledger(path) as ledger:
        reports = Reports(ledger, clock=clock, tz=UTC)
        empty = reports.shift()
        assert empty.total.taken == 0 and empty.period.shift == 1
        ledger.save_sale(sale(1, T0, cashier="ana"))
        ledger.save_sale(sale(2, T0 + 60, "queued"))
        x = reports.shift()
        assert x.period.start == T0 and x.total.taken == 2 and not x.period.closed
        assert x.title == "X report, shift 1"
        z = reports.shift(close=True)
        assert z.title == "Z report, shift 1" and z.total.taken == 2 and z.period.end == clock.now
        assert "SHIFT CLOSED" in "\n".join(report_lines(z))
    clock.now += 600
    with Ledger(path) as ledger:  # a restart: the next shift starts where the Z ended
        ledger.save_sale(sale(3, T0 + 4 * 3600 + 60, cashier="max"))
        reports = Reports(ledger, clock=clock, tz=UTC)
        assert ledger.get_meta(META_SHIFT)["number"] == 2
        x = reports.shift()
        assert x.period.shift == 2 and x.period.start == T0 + 4 * 3600
        assert x.total.taken == 1 and set(x.to_json()["by_cashier"]) == {"max"}
        again = reports.closed_shift(1)
        assert again is not None and again.total.taken == 2 and again.period.closed
        assert reports.closed_shift(7) is None


def test_a_failed_close_leaves_the_shift_open(tmp_path: Path) -> None:
    clock = Clock(T0 + 3600)
    with Ledger(tmp_path / "ledger.jsonl") as ledger:
        ledger.save_sale(sale(1, T0))
        reports = Reports(ledger, clock=clock, tz=UTC)
        original = ledger.set_meta
        calls = Counter()

        def set_meta(key, value):
            calls[key] += 1
            if key == META_SHIFT:
                raise OSError("disk full")  # the second write of the close's one transaction
            original(key, value)

        ledger.set_meta = set_meta
        with pytest.raises(OSError):
            reports.shift(close=True)
        ledger.set_meta = original
        assert ledger.get_meta("shift.closes") is None  # rolled back with it
        assert reports.shift().period.shift == 1 and reports.shift().period.start == T0


# --------------------------------------------------------------------------- end to end


def test_a_days_report_equals_the_sum_over_its_history_export_offline_sales_included(
        tmp_path: Path) -> None:
    data = tmp_path / "sandbox"
    sb = SandboxThread(data).start()
    port = sb.port
    config = sb.write_terminal_config()
    staffed = config.with_name("staffed.toml")
    from terminal.core.pins import hash_pin

    staffed.write_text(config.read_text() + '\n[[cashiers]]\nid = "ana"\nname = "Ana"\n'
                       f'pin_hash = "{hash_pin("1111", iterations=1000)}"\n'
                       "\n[ui]\nrequire_sign_in = false\n")
    staffed.chmod(0o600)
    card, poor, away = tmp_path / "card.json", tmp_path / "poor.json", tmp_path / "away.json"
    _card(sb, card, 100_000)
    _card(sb, poor, 10)
    _card(sb, away, 10_000)
    sb.stop()
    # Offline: accepted by the local checks, queued (counted, named apart).
    code, out = _cli("charge", "150", "--currency", "SAT", "--config", str(staffed),
                     "--card-file", str(away), "--cashier", "ana", "--json")
    assert code == 0 and json.loads(out)["status"] == "queued"
    sb = SandboxThread(data, port=port).start()
    try:
        for args in (["5", "--currency", "USD", "--tip", "10%", "--cashier", "ana"],
                     ["300", "--currency", "SAT"],
                     ["1", "--currency", "USD", "--tip", "0.25"]):
            code, out = _cli("charge", *args, "--config", str(staffed), "--card-file",
                             str(card), "--json")
            assert code == 0 and json.loads(out)["status"] == "paid", out
        code, out = _cli("charge", "5", "--currency", "USD", "--config", str(staffed),
                         "--card-file", str(poor), "--json")
        assert code == 4  # refused: an attempt, never a sale
    finally:
        sb.stop()
    today = dt.date.today().isoformat()
    code, out = _cli("history", "--from", today, "--to", today, "--export", "json",
                     "--config", str(staffed))
    sales = json.loads(out)
    assert code == 0 and Counter(s["state"] for s in sales) == {"paid": 3, "queued": 1,
                                                               "failed": 1}
    code, out = _cli("report", "--day", today, "--config", str(staffed), "--json")
    day = json.loads(out)
    assert code == 0 and set(day) == CONTRACT
    _compare(day, sales)
    assert day["queued_msat"] > 0 and day["tips_msat"] > 0
    assert day["by_cashier"]["ana"]["sales"] == 2
    # The shift so far (no Z yet: since the first sale) says the same; then a Z closes it.
    code, out = _cli("report", "--shift", "--config", str(staffed), "--json")
    assert code == 0 and json.loads(out)["gross_msat"] == day["gross_msat"]
    code, out = _cli("report", "--shift", "--close", "--config", str(staffed), "--json")
    z = json.loads(out)
    assert code == 0 and z["gross_msat"] == day["gross_msat"]
    code, out = _cli("report", "--shift", "--config", str(staffed), "--json")
    after = json.loads(out)
    assert after["sales"] == 0 and after["from"] == z["to"]
    code, out = _cli("report", "--day", today, "--cashier", "ana", "--config", str(staffed),
                     "--json")
    assert json.loads(out)["sales"] == 2
    code, out = _cli("report", "--day", today, "--config", str(staffed))
    assert code == 0 and "Day report" in out and "By cashier" in out


@pytest.mark.parametrize("argv, phrase", [
    (["report", "--json"], "one of the arguments --shift --day is required"),
    (["report", "--day", "2024-13-01"], "YYYY-MM-DD"),
    (["report", "--day", "2024-05-01", "--close"], "--close closes a shift"),
    (["report", "--shift", "--day", "2024-05-01"], "not allowed with"),
])
def test_report_usage_errors(argv, phrase, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and phrase in capsys.readouterr().err


# --------------------------------------------------------------------------- at the counter


def _journey(tmp_path: Path, script: str) -> tuple[list[dict], object]:
    import asyncio

    from terminal.app.demo_script import parse_script, run_script

    out = io.StringIO()
    seen: list = []
    code = asyncio.run(run_script(parse_script(script), out, work_dir=tmp_path,
                                  on_env=seen.append))
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()], seen[0]


def test_reports_at_the_counter_x_then_z_by_a_manager(tmp_path: Path) -> None:
    shots, env = _journey(tmp_path, """
        sign-in ana 1111
        amount 5
        charge
        tip 10
        tap A
        report
        report close
        sign-in max 2222
        amount 2
        charge
        tip none
        pay-qr
        report day
        report close
        report
        amount 1
    """)
    keys = {"step", "screen", "sale", "online", "queue", "message"}
    assert all(set(s) == keys for s in shots)
    x = shots[5]
    assert x["screen"] == "report"
    assert x["message"].startswith("X report, shift 1: 1 sales, ")
    assert "tips " in x["message"]
    refused = shots[6]  # Ana is no manager: no Z
    assert refused["message"].endswith("Closing a shift needs a manager (sign in, or Admin)")
    assert refused["message"].startswith("X report, shift 1")
    day = shots[12]
    assert day["message"].startswith("Day report") and ": 2 sales" in day["message"]
    z = shots[13]
    assert z["message"].startswith("Z report, shift 1: 2 sales")
    assert "Shift 1 closed" in z["message"]
    after = shots[14]
    assert after["message"].startswith("X report, shift 2: 0 sales")
    assert shots[15]["screen"] == "sale" and shots[15]["message"] == "$1"  # back at the counter
    reports = env.till.reports
    assert [c.number for c in reports.closes()] == [1]


def test_the_report_view_model_bars_and_lines(tmp_path: Path) -> None:
    import asyncio

    from terminal.app.demo import DemoEnvironment

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        try:
            c = env.controller()
            ledger = env.terminal.ledger
            now = env.till.clock()
            ledger.save_sale(sale(1, now - 5, cashier="ana", msat=3_000_000))
            ledger.save_sale(sale(2, now - 4, method="qr", msat=1_000_000))
            c.go(Screen.REPORT)
            vm = c.reports
            assert c.screen is Screen.REPORT and vm.mode == "shift"
            bars = vm.bars()
            tallest = max(bars, key=lambda b: b.msat)
            assert tallest.height == 1.0 and tallest.taken == 2
            assert tallest.text == "2 · 4,000 sats"
            lines = vm.lines()
            assert lines[0].startswith("2 sales") and "Ana: 1 · 3,000 sats" in lines
            assert "Boltcard: 1 · 3,000 sats" in lines and "Lightning QR: 1 · 1,000 sats" in lines
            assert not vm.can_close  # nobody with a manager's rights
            assert await vm.close_shift() is None and env.till.reports.closes() == []
            vm.show_day()
            assert vm.title == "Today so far" and vm.is_today
        finally:
            await env.stop()

    asyncio.run(scenario())


LOCAL_CONFIG = """
[terminal]
network = "regtest"
data_dir = "data"
[backend]
kind = "flash"
[backend.flash]
http_url = "http://127.0.0.1:9/graphql"
username = "shop"
"""


def test_a_z_from_the_command_line_while_the_app_holds_the_books_says_where_to_close_it(
        tmp_path: Path, capsys) -> None:
    config = tmp_path / "terminal.toml"
    config.write_text(LOCAL_CONFIG)
    (tmp_path / "data").mkdir()
    ledger = Ledger(tmp_path / "data" / "ledger.jsonl")  # the running app's writer lock
    try:
        ledger.save_sale(sale(1, T0))
        assert main(["report", "--shift", "--close", "--config", str(config), "--json"]) == 5
        err = capsys.readouterr().err
        assert "close the shift on its screen" in err and "Traceback" not in err
        # An X needs no lock: it reads the books as they are.
        assert main(["report", "--shift", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sales"] == 1
    finally:
        ledger.close()


def test_report_print_goes_to_the_receipt_printer(tmp_path: Path, capsys, pty_printer) -> None:
    fake, port = pty_printer
    config = tmp_path / "terminal.toml"
    config.write_text(LOCAL_CONFIG + f'[printer]\nenabled = true\nport = "{port}"\n')
    (tmp_path / "data").mkdir()
    with Ledger(tmp_path / "data" / "ledger.jsonl") as ledger:
        ledger.save_sale(sale(1, T0, cashier="ana", tip_minor=10, minor=110))
    day = dt.datetime.fromtimestamp(T0).date().isoformat()
    assert main(["report", "--day", day, "--print", "--config", str(config)]) == 0
    assert fake.cut.wait(5)
    printed = bytes(fake.received).decode("cp858", "replace")
    assert "Day report" in printed and "By cashier" in printed and "ana (1)" in printed
    assert "1,000 sats" in printed


def test_the_report_screen_says_the_report_not_a_notice_left_from_a_sign_in(tmp_path: Path) -> None:
    shots, _ = _journey(tmp_path, """
        sign-in ana 1111
        sign-out
        sign-in max 2222
        report
    """)
    assert shots[2]["message"] == "Signed in: Max"
    assert shots[3]["screen"] == "report"
    assert shots[3]["message"].startswith("X report, shift 1: 0 sales")


@pytest.mark.parametrize("argv", [["--day", "2024-05-01"], ["--shift"], ["--shift", "--close"]])
def test_damaged_books_exit_6_with_their_paragraph_never_a_traceback(tmp_path: Path, capsys,
                                                                      argv) -> None:
    """Loading the `report` command binds its module's name in the CLI package: the exit-code
    reporter must not be shadowed by it (it was: a traceback instead of exit 6)."""
    config = tmp_path / "terminal.toml"
    config.write_text(LOCAL_CONFIG)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ledger.jsonl").write_text("{garbage\n")
    assert main(["report", *argv, "--config", str(config), "--json"]) == 6
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith("flash-terminal report: The books need attention")
