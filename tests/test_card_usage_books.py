"""Per-card usage counted by the books (`Ledger.card_usage`: SQL aggregates over the archive,
the journal's few in Python) against the one rule (`terminal.core.card_usage.card_usage`) over
the same records, and the archive's version 2 migration (the `cashier` column), on real files.
"""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.adapters.books import archive as archive_module
from terminal.adapters.books.layout import archive_path
from terminal.adapters.books.ledger import Ledger
from terminal.core.card_usage import UsageFilter, card_usage
from terminal.core.history import SaleQuery, SalesInMemory
from terminal.core.records import SaleRecord
from terminal.core.sale import SaleState

NEW_YORK = ZoneInfo("America/New_York")  # a DST change inside the range: days of 23 h
T0 = 1_709_874_000.0  # 2024-03-08 00:00 in New York (clocks go forward on the 10th)
DAY = 86_400.0
DAY0 = date(2024, 3, 8)
STATES = [s.value for s in SaleState]
FINAL = [s.value for s in SaleState if s.is_terminal]
CARDS = ["aa" * 16, "ab" * 16, "b0" * 16, "", None]
CASHIERS = ["ana", "max", None, "", "ANA"]
NEVER = {"move_batch": 1_000_000, "move_after_s": 1e12}  # the test decides what moves


@st.composite
def sales(draw: st.DrawFn, n: int) -> SaleRecord:
    code = draw(st.sampled_from(["USD", "JMD", "SAT"]))
    amount = draw(st.integers(0, 5_000_000))
    tip = draw(st.sampled_from([0, 0, draw(st.integers(0, max(amount, 0)))]))
    return SaleRecord(
        id=f"{n:032x}",
        # whole seconds, fractions, and exact local midnights around the DST change
        created_at=draw(st.one_of(
            st.floats(0, 6 * DAY).map(lambda s: T0 + s),
            st.integers(-1, 6).map(lambda d: T0 + d * DAY - 3600 * (d >= 3)),
            st.integers(0, 6 * 86_400).map(lambda s: T0 + s))),
        amount_minor=amount, currency=code, state=draw(st.sampled_from(STATES)),
        method=draw(st.sampled_from(["card", "qr", None])),
        amount_msat=draw(st.one_of(st.none(), st.integers(0, 10**12))),
        tip_minor=tip, tip_msat=draw(st.one_of(st.none(), st.integers(0, 10**10))),
        card_id=draw(st.sampled_from(CARDS)), cashier=draw(st.sampled_from(CASHIERS)),
    )


days = st.one_of(st.none(), st.integers(-1, 7).map(lambda d: DAY0 + timedelta(days=d)))
filters = st.builds(
    lambda start, span, state, states, method, card, cashier: UsageFilter(
        SaleQuery(date_from=start, date_to=None if span is None or start is None
                  else start + timedelta(days=span), state=state, method=method,
                  card_id=card, tz=NEW_YORK),
        states=states, cashier=cashier),
    days, st.one_of(st.none(), st.integers(0, 3)), st.one_of(st.none(), st.sampled_from(STATES)),
    st.one_of(st.none(), st.frozensets(st.sampled_from(STATES), min_size=1)),
    st.sampled_from([None, "card", "qr"]), st.sampled_from([None, "a", "AA", "b0" * 16]),
    st.sampled_from([None, "ana", "none", " Max ", "ANA"]),
)


@st.composite
def books(draw: st.DrawFn) -> tuple[list[SaleRecord], list[SaleRecord], list[SaleRecord]]:
    """(archived, then saved to the journal, then changed in the journal) sales."""
    count = draw(st.integers(0, 40))
    records = [draw(sales(n)) for n in range(count)]
    archived = [r for r in records if r.state in FINAL and draw(st.booleans())]
    journal = [r for r in records if r not in archived]
    changed = []  # archived sales saved again: the journal's copy wins
    for r in archived:
        if draw(st.integers(0, 4)) == 0:
            changed.append(draw(sales(int(r.id, 16))))
    return archived, journal, changed


def expected(records: list[SaleRecord], usage: UsageFilter) -> list:
    return card_usage(r for r in records if usage.matches(r))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books(), st.lists(filters, min_size=1, max_size=4))
def test_the_books_count_card_usage_as_the_rule_does_over_the_same_records(
        data: tuple[list[SaleRecord], list[SaleRecord], list[SaleRecord]],
        usages: list[UsageFilter]) -> None:
    archived, journal, changed = data
    current = {r.id: r for r in [*archived, *journal, *changed]}
    records = sorted(current.values(), key=lambda r: (r.created_at, r.id))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        led = Ledger(path, **NEVER)
        for r in archived:
            led.save_sale(r)
        led.settle()  # into the archive
        for r in [*journal, *changed]:
            led.save_sale(r)  # final ones wait in the journal (nothing moves by itself)
        assert led.counts()["sales_archived"] == len(archived)
        reader = Ledger(path, read_only=True)  # the history command's view, from disk
        try:
            for usage in [UsageFilter(), *usages]:
                want = expected(records, usage)
                assert led.card_usage(usage) == want, usage
                assert reader.card_usage(usage) == want, usage
                assert SalesInMemory(records).card_usage(usage) == want
        finally:
            reader.close()
            led.close()


def test_the_counting_is_exact_at_a_local_day_bound(tmp_path: Path) -> None:
    """Sales a second either side of local midnights (one of them on a 23-hour day) count on
    the day the calendar puts them, with the range far wider than the margin and within it."""
    card = "cc" * 16
    mids = [T0 + d * DAY - 3600 * (d >= 3) for d in range(0, 7)]
    records = [SaleRecord(id=f"{n:032x}", created_at=at, amount_minor=100 * (n + 1),
                          currency="USD", state="paid", method="card", card_id=card,
                          amount_msat=1000 * (n + 1))
               for n, at in enumerate(x + d for x in mids for d in (-1.0, 0.0, 0.5))]
    with Ledger(tmp_path / "ledger.jsonl", move_batch=1) as led:
        for r in records:
            led.save_sale(r)
        assert led.counts()["sales_in_flight"] == 0
        for first, last in [(1, 1), (2, 2), (1, 4), (0, 5), (3, 3)]:
            query = SaleQuery(date_from=DAY0 + timedelta(days=first),
                              date_to=DAY0 + timedelta(days=last), tz=NEW_YORK)
            usage = UsageFilter(query)
            got = led.card_usage(usage)
            assert got == expected(records, usage)
            assert got[0].totals.sales == 3 * (last - first + 1)


# ------------------------------------------------------------------------- the migration
def as_version_1(path: Path) -> None:
    """Turn a version 2 archive into the version 1 file older software wrote."""
    db = sqlite3.connect(archive_path(path))
    db.execute("DROP INDEX IF EXISTS sales_cashier")
    db.execute("ALTER TABLE sales DROP COLUMN cashier")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
    db.commit()
    db.close()


def shop(path: Path) -> list[SaleRecord]:
    records = [SaleRecord(id=f"{n:032x}", created_at=T0 + n * 600.0, amount_minor=100 + n,
                          currency="JMD", state="paid" if n % 5 else "failed", method="card",
                          card_id=CARDS[n % 3], cashier=["ana", None, "max"][n % 3],
                          amount_msat=1000 * n) for n in range(50)]
    with Ledger(path, move_batch=1) as led:
        for r in records:
            led.save_sale(r)
    return records


def columns(path: Path) -> tuple[int, list]:
    db = sqlite3.connect(archive_path(path))
    try:
        schema = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        names = [row[1] for row in db.execute("PRAGMA table_info(sales)")]
        cashiers = (db.execute("SELECT cashier FROM sales ORDER BY n").fetchall()
                    if "cashier" in names else [])
        return schema, [c for (c,) in cashiers]
    finally:
        db.close()


def test_a_version_1_archive_gains_its_cashiers_when_first_opened_for_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.jsonl"
    records = shop(path)
    as_version_1(path)
    by_ana = UsageFilter(cashier="ana")
    nobody = UsageFilter(cashier="none")
    # Read-only (the history command beside a terminal not yet updated): still exact, read
    # from the records.
    with Ledger(path, read_only=True) as reader:
        assert not reader._archive.knows_cashiers
        assert reader.card_usage(by_ana) == expected(records, by_ana)
        assert reader.card_usage(UsageFilter()) == expected(records, UsageFilter())
    assert columns(path)[0] == 1
    # A crash in the middle of the migration: the steps committed so far stay, the version is
    # still 1, and the next open finishes it.
    monkeypatch.setattr(archive_module, "MIGRATE_BATCH", 7)
    real = archive_module.SaleArchive._stored_cashier
    calls = 0

    def crash_at_the_20th(self, *args):
        nonlocal calls
        calls += 1
        if calls == 20:
            raise KeyboardInterrupt  # the process dies here
        return real(self, *args)

    monkeypatch.setattr(archive_module.SaleArchive, "_stored_cashier", crash_at_the_20th)
    with pytest.raises(KeyboardInterrupt):
        Ledger(path)
    schema, cashiers = columns(path)
    assert schema == 1 and cashiers[:14] == [r.cashier for r in records[:14]]
    assert cashiers[14:] == [None] * 36  # the step that crashed left nothing
    monkeypatch.setattr(archive_module.SaleArchive, "_stored_cashier", real)
    with Ledger(path) as led:
        assert led._archive.knows_cashiers
        for usage in (by_ana, nobody, UsageFilter(cashier="max"), UsageFilter()):
            assert led.card_usage(usage) == expected(records, usage)
    assert columns(path) == (2, [r.cashier for r in records])
    with Ledger(path) as led:  # once done, opening again changes nothing
        assert led.card_usage(by_ana) == expected(records, by_ana)
    assert columns(path) == (2, [r.cashier for r in records])


def test_a_newer_archive_is_refused(tmp_path: Path) -> None:
    from terminal.adapters.books.errors import BooksDamaged

    path = tmp_path / "ledger.jsonl"
    shop(path)
    db = sqlite3.connect(archive_path(path))
    db.execute("UPDATE meta SET value = 3 WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(BooksDamaged, match="schema version 3"):
        Ledger(path)


def test_the_check_finds_a_counting_column_that_disagrees_with_its_record(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    records = shop(path)
    with Ledger(path, read_only=True) as reader:
        assert reader.verify() == []
    db = sqlite3.connect(archive_path(path))
    db.execute("UPDATE sales SET cashier = 'max' WHERE id = ?", (records[0].id,))
    db.execute("UPDATE sales SET tip_msat = 5 WHERE id = ?", (records[1].id,))
    db.commit()
    db.close()
    with Ledger(path, read_only=True) as reader:
        found = [d.what for d in reader.verify()]
    assert found == [f"the archived sale {records[0].id} does not match its index columns",
                     f"the archived sale {records[1].id} does not match its index columns"]
