"""Ledger (terminal/ledger.py) and history queries/totals/exports (terminal/history.py)."""

from __future__ import annotations

import csv
import io
import json
import stat
import tempfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.adapters.books.ledger import DuplicatePayout, Ledger
from terminal.adapters.books.storage import StorageFullError
from terminal.core import history
from terminal.core.records import CardState, PayoutStatus, QueuedPayout, SaleRecord, StateChange
from terminal.core.risk import Exposure
from terminal.core.sale import Sale, SaleState

TAP_URL = "lnurlw://issuer.example/ln?p=00112233445566778899AABBCCDDEEFF&c=0011223344556677"
JAMAICA = timezone(timedelta(hours=-5))


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", clock=Clock())
    yield led
    led.close()


def reopen(led: Ledger) -> Ledger:
    led.close()
    return Ledger(led.path, clock=led.clock)


def sale(sale_id: str, state: str = "created", created_at: float = 1_700_000_000.0,
         **fields) -> SaleRecord:
    values = {"amount_minor": 1250, "currency": "JMD", **fields}
    return SaleRecord(id=sale_id, created_at=created_at, state=state, **values)


def payout(payout_id: str, sats: int = 1000, status: str = PayoutStatus.QUEUED,
           created_at: float = 100.0, card_id: str = "card-a") -> QueuedPayout:
    return QueuedPayout(
        id=payout_id, sale_id=f"sale-{payout_id}", store_id=None, amount_sats=sats,
        card_id=card_id, issuer="iss", counter=7, tap_url=TAP_URL, status=status,
        created_at=created_at,
    )


# ------------------------------------------------------------------------------ sales
def test_save_sale_upserts_by_id_and_is_durable(ledger):
    record = sale("s1")
    machine = Sale("s1", record.created_at)
    machine.apply("invoice_ready", 1.0)
    record.follow(machine)
    record.payment_hash = "ab" * 32
    ledger.save_sale(record)
    record.amount_msat = 123_000
    ledger.save_sale(record)
    led = reopen(ledger)
    got = led.get_sale("s1")
    assert got == record
    assert got.history[-1] == StateChange(1.0, "invoice_ready", "created", "invoiced")
    assert led.sales() == [record]
    assert led.get_sale("nope") is None
    led.close()


def test_returned_records_are_copies(ledger):
    ledger.save_sale(sale("s1", history=[StateChange(0.0, "created", "created", "created")]))
    got = ledger.get_sale("s1")
    got.history.append(StateChange(1.0, "x", "created", "paid"))
    got.history[0].at = 5.0
    got.state = "paid"
    got.refund_ids.append("r1")
    assert ledger.get_sale("s1").history == [StateChange(0.0, "created", "created", "created")]
    assert ledger.get_sale("s1").state == "created"
    assert ledger.get_sale("s1").refund_ids == []
    for record in (ledger.open_sales() + ledger.sales()):
        record.refund_ids.append("r2")
        record.history.clear()
    assert ledger.get_sale("s1").refund_ids == [] and len(ledger.get_sale("s1").history) == 1


def test_open_and_queued_sales_follow_state_changes(ledger):
    states = ["created", "invoiced", "card_read", "callback_sent", "queued", "submitted",
              "paid", "failed", "expired", "cancelled", "declined"]
    for n, state in enumerate(states):
        ledger.save_sale(sale(f"s{n}", state, created_at=float(n)))
    assert [r.state for r in ledger.open_sales()] == states[:4]
    assert [r.state for r in ledger.queued_sales()] == ["queued", "submitted"]
    moved = ledger.get_sale("s1")
    moved.state = "paid"
    ledger.save_sale(moved)
    queued = ledger.get_sale("s4")
    queued.state = "submitted"
    ledger.save_sale(queued)
    led = reopen(ledger)
    assert [r.id for r in led.open_sales()] == ["s0", "s2", "s3"]
    assert [r.id for r in led.queued_sales()] == ["s4", "s5"]
    led.close()


def test_find_sale_by_payment_hash_follows_changes(ledger):
    ledger.save_sale(sale("s1", payment_hash="aa" * 32))
    assert ledger.find_sale_by_payment_hash("aa" * 32).id == "s1"
    changed = ledger.get_sale("s1")
    changed.payment_hash = "bb" * 32
    ledger.save_sale(changed)
    assert ledger.find_sale_by_payment_hash("aa" * 32) is None
    led = reopen(ledger)
    assert led.find_sale_by_payment_hash("bb" * 32).id == "s1"
    led.close()


# ------------------------------------------------------------------------------ cards
def test_advance_counter_semantics(ledger):
    assert ledger.advance_counter("c1", "iss", 5) == -1  # unknown card
    assert ledger.card("c1").last_counter == 5
    assert ledger.advance_counter("c1", "iss", 5) == 5  # replay: not stored
    assert ledger.advance_counter("c1", "iss", 3) == 5  # older: not stored
    assert ledger.card("c1").last_counter == 5
    assert ledger.advance_counter("c1", "iss", 6) == 5
    led = reopen(ledger)
    assert led.card("c1") == CardState("c1", issuer="iss", last_counter=6)
    assert led.advance_counter("c1", "iss", 6) == 6
    led.close()


# Property: advance_counter returns the highest counter stored before (or -1), and what is
# stored (also after a reopen) is the highest counter ever offered.
@settings(max_examples=40)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=15))
def test_advance_counter_keeps_the_maximum(counters):
    with tempfile.TemporaryDirectory() as tmp:
        led = Ledger(Path(tmp) / "l.jsonl")
        highest = -1
        for counter in counters:
            assert led.advance_counter("card", "iss", counter) == highest
            highest = max(highest, counter)
        led = reopen(led)
        assert led.card("card").last_counter == highest
        led.close()


def test_advance_counter_is_not_stored_when_the_disk_is_full(tmp_path):
    led = Ledger(tmp_path / "l.jsonl")
    led.advance_counter("c1", "iss", 1)
    led._db.journal._write_fn = _enospc
    with pytest.raises(StorageFullError):
        led.advance_counter("c1", "iss", 2)
    assert led.card("c1").last_counter == 1
    led.close()


def _enospc(fd, data):
    raise OSError(28, "No space left on device")


def test_card_unknown_is_a_default_and_save_card_round_trips(ledger):
    assert ledger.card("new") == CardState("new")
    state = CardState("c2", issuer="iss", last_counter=3, queued_msat=5000, blocked=True,
                      blocked_reason="lost")
    ledger.save_card(state)
    led = reopen(ledger)
    assert led.card("c2") == state
    assert led.cards() == [state]
    led.close()


# ------------------------------------------------------------------------------ payouts
def test_exposure_counts_queued_and_submitting_only(ledger):
    assert ledger.exposure() == Exposure()
    ledger.add_payout(payout("p1", 1000, created_at=50.0))
    ledger.add_payout(payout("p2", 2000, created_at=40.0))
    ledger.add_payout(payout("p3", 4000, PayoutStatus.PAID, created_at=10.0))
    assert ledger.exposure() == Exposure(3_000_000, 2, 40.0)
    p2 = ledger.get_payout("p2")
    p2.status = PayoutStatus.SUBMITTING
    ledger.save_payout(p2)
    assert ledger.exposure() == Exposure(3_000_000, 2, 40.0)
    p2.status = PayoutStatus.FAILED
    p2.error_message = "card limit"
    ledger.save_payout(p2)
    assert ledger.exposure() == Exposure(1_000_000, 1, 50.0)
    led = reopen(ledger)
    assert led.exposure() == Exposure(1_000_000, 1, 50.0)
    assert led.get_payout("p2").error_message == "card limit"
    led.close()


def test_payouts_in_capture_order_and_by_status(ledger):
    for n, created in enumerate([30.0, 10.0, 20.0]):
        ledger.add_payout(payout(f"p{n}", created_at=created))
    p1 = ledger.get_payout("p1")
    p1.status = PayoutStatus.PAID
    ledger.save_payout(p1)
    assert [p.id for p in ledger.payouts()] == ["p0", "p1", "p2"]
    assert [p.id for p in ledger.payouts(PayoutStatus.QUEUED)] == ["p0", "p2"]
    assert [p.id for p in ledger.payouts(PayoutStatus.PAID)] == ["p1"]
    assert ledger.get_payout("p0").tap_url == TAP_URL
    with pytest.raises(DuplicatePayout):
        ledger.add_payout(payout("p0"))


def test_transaction_is_all_or_nothing_and_indexes_follow(ledger):
    ledger.save_sale(sale("s0"))
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.add_payout(payout("p1"))
        ledger.save_card(CardState("c1", queued_msat=1_000_000))
        ledger.save_sale(sale("s1", "queued"))
        raise RuntimeError("power cut simulation")
    assert ledger.exposure() == Exposure()
    assert ledger.get_payout("p1") is None
    assert ledger.card("c1") == CardState("c1")
    assert ledger.queued_sales() == []
    with ledger.transaction():
        ledger.add_payout(payout("p1"))
        ledger.save_sale(sale("s1", "queued"))
    led = reopen(ledger)
    assert led.exposure().count == 1
    assert [r.id for r in led.queued_sales()] == ["s1"]
    led.close()


# ------------------------------------------------------------------------ meta and events
def test_meta_round_trips(ledger):
    assert ledger.get_meta("rate", "none") == "none"
    ledger.set_meta("rate", {"USD": "0.0004"})
    ledger.set_meta("rate", {"USD": "0.0005"})
    led = reopen(ledger)
    assert led.get_meta("rate") == {"USD": "0.0005"}
    led.close()


def test_events_newest_first_and_capped(tmp_path):
    clock = Clock(0.0)
    led = Ledger(tmp_path / "l.jsonl", clock=clock, max_events=3)
    for n in range(5):
        clock.now = float(n)
        led.log_event("offline", f"e{n}")
    assert [e.detail for e in led.events(10)] == ["e4", "e3", "e2"]
    assert [e.detail for e in led.events(2)] == ["e4", "e3"]
    led.close()
    led = Ledger(tmp_path / "l.jsonl", clock=clock, max_events=3)
    assert [(e.at, e.detail) for e in led.events(10)] == [(4.0, "e4"), (3.0, "e3"), (2.0, "e2")]
    led.log_event("online")
    assert [e.kind for e in led.events(10)] == ["online", "offline", "offline"]
    led.close()


def test_ledger_file_is_private_and_the_repr_shows_no_secrets(ledger):
    ledger.add_payout(payout("p1"))
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert "lnurlw" not in repr(ledger)
    assert "lnurlw" not in repr(ledger.get_payout("p1"))


def test_read_only_ledger_sees_a_running_writer(ledger):
    ledger.save_sale(sale("s1", "paid"))
    reader = Ledger(ledger.path, read_only=True)
    assert [r.id for r in reader.sales()] == ["s1"]
    reader.close()


# ------------------------------------------------------------------------------ history
def at(day: int, hour: int, tz=JAMAICA) -> float:
    return datetime(2026, 3, day, hour, 0, tzinfo=tz).timestamp()


@pytest.fixture
def shop(ledger):
    rows = [
        # id, local day/hour (Jamaica), state, method, card, minor, currency, msat
        ("a", 1, 9, "paid", "card", "card-1", 1000, "JMD", 64_000_000),
        ("b", 1, 23, "paid", "qr", None, 500, "USD", 50_000_000),
        ("c", 2, 0, "declined", "card", "card-2", 9000, "JMD", None),
        ("d", 2, 12, "paid", "card", "card-1", 2000, "JMD", 128_000_000),
        ("e", 3, 8, "expired", "qr", None, 700, "USD", 70_000_000),
        ("f", 3, 20, "queued", "card", "card-2", 300, "JMD", 19_000_000),
    ]
    for sid, day, hour, state, method, card, minor, cur, msat in rows:
        ledger.save_sale(sale(sid, state, at(day, hour), method=method, card_id=card,
                              amount_minor=minor, currency=cur, amount_msat=msat,
                              reason="offline-card-cap" if state == "declined" else None))
    ledger.add_payout(payout("p-f", card_id="card-2"))  # holds a tap URL: must never export
    return ledger


def q(**kw) -> history.SaleQuery:
    return history.SaleQuery(tz=JAMAICA, **kw)


def test_history_date_range_is_local_and_inclusive(shop):
    ids = lambda records: [r.id for r in records]  # noqa: E731
    assert ids(shop.history(q(date_from=date(2026, 3, 2), date_to=date(2026, 3, 2)))) == ["c", "d"]
    assert ids(shop.history(q(date_from=date(2026, 3, 2)))) == ["c", "d", "e", "f"]
    assert ids(shop.history(q(date_to=date(2026, 3, 1)))) == ["a", "b"]
    # 23:00 in Jamaica on the 1st is already the 2nd in UTC: local dates decide.
    utc = history.SaleQuery(tz=UTC, date_to=date(2026, 3, 1))
    assert ids(shop.history(utc)) == ["a"]


def test_history_filters_by_state_card_and_method(shop):
    ids = lambda records: [r.id for r in records]  # noqa: E731
    assert ids(shop.history(q(state="paid"))) == ["a", "b", "d"]
    assert ids(shop.history(q(card_id="card-2"))) == ["c", "f"]
    assert ids(shop.history(q(method="qr"))) == ["b", "e"]
    assert ids(shop.history(q(method="card", state="paid", card_id="card-1"))) == ["a", "d"]
    with pytest.raises(ValueError, match="after"):
        q(date_from=date(2026, 3, 3), date_to=date(2026, 3, 1))
    with pytest.raises(ValueError, match="state"):
        q(state="settled")


def test_totals_per_day_and_card_follow_the_one_counting_rule(shop):
    records = shop.history(q())
    by_day = history.totals_by_day(records, JAMAICA)
    one = by_day[date(2026, 3, 1)]
    assert (one.sales, one.taken, one.taken_msat, one.minor) == (
        2, 2, 114_000_000, {"JMD": 1000, "USD": 500})
    two = by_day[date(2026, 3, 2)]
    assert (two.sales, two.taken, two.failed, two.minor) == (2, 1, 1, {"JMD": 2000})
    # The queued offline sale is taken and pending: expected, not received yet.
    three = by_day[date(2026, 3, 3)]
    assert (three.sales, three.taken, three.pending, three.pending_msat, three.failed) == (
        2, 1, 1, 19_000_000, 1)
    by_card = history.totals_by_card(records)
    assert list(by_card) == ["card-1", "card-2"]
    assert (by_card["card-1"].taken, by_card["card-1"].minor) == (2, {"JMD": 3000})
    assert history.total(records).taken_msat == 261_000_000
    # The same numbers from the summaries the books stream.
    report = history.report(shop, q())
    assert report.total == history.total(records)
    assert report.by_day == by_day and report.by_card == by_card
    assert report.to_doc()["total"]["taken"] == 4


def test_json_export_has_the_full_records_and_no_tap_url(shop):
    text = history.to_json(shop.history(q()))
    assert "lnurlw" not in text and "tap_url" not in text
    docs = json.loads(text)
    assert [d["id"] for d in docs] == list("abcdef")
    for key in ("id", "state", "amount_msat", "currency", "payment_hash", "created_at", "method",
                "card_id", "reason", "history", "amount_minor", "memo", "bolt11"):
        assert key in docs[0]
    assert docs[2]["reason"] == "offline-card-cap"
    assert docs[0]["history"] == []  # these records were saved without a state machine


def test_json_export_keeps_state_history_with_timestamps(ledger):
    machine = Sale("s1", 10.0)
    machine.apply("invoice_ready", 11.0)
    machine.apply("paid", 12.5)
    record = sale("s1", created_at=10.0)
    record.follow(machine)
    ledger.save_sale(record)
    doc = json.loads(history.to_json(ledger.sales()))[0]
    assert [(h["at"], h["to_state"]) for h in doc["history"]] == [
        (10.0, "created"), (11.0, "invoiced"), (12.5, "paid")]


def test_csv_export_one_row_per_sale_and_formula_cells_quoted(shop):
    evil = sale("g", "paid", at(3, 21), memo="=HYPERLINK(\"http://x\")", amount_msat=1000)
    shop.save_sale(evil)
    text = history.to_csv(shop.history(q()), JAMAICA)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == list("abcdefg")
    assert rows[0]["local_time"] == "2026-03-01T09:00:00-05:00"
    assert rows[0]["amount_msat"] == "64000000" and rows[0]["card_id"] == "card-1"
    assert rows[1]["card_id"] == ""
    assert rows[-1]["memo"].startswith("'=")
    assert tuple(rows[0]) == history.CSV_COLUMNS
    assert "lnurlw" not in text


def test_history_state_values_are_the_sale_states():
    assert set(history.STATES) == {s.value for s in SaleState}


def test_history_card_filter_accepts_the_shortened_id_the_table_shows():
    from terminal.core.history import SaleQuery, matches
    from terminal.core.records import SaleRecord

    record = SaleRecord(id="s", created_at=0.0, amount_minor=1, currency="SAT",
                        card_id="2f91a78879adaccc98fbc7af9c14b22c")
    assert matches(record, SaleQuery(card_id="2f91a78879adaccc"))
    assert matches(record, SaleQuery(card_id="2F91A78879ADACCC98FBC7AF9C14B22C"))
    assert not matches(record, SaleQuery(card_id="2f91a78879adaccd"))
