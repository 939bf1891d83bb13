"""Receipt content: what a sale and a day of sales print, at 58 and 80 mm."""

from __future__ import annotations

import asyncio
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from hw.printer import PrinterStatus, as_text
from terminal.adapters.receipts import (
    daily_summary,
    method_text,
    print_receipt,
    rate_text,
    sale_receipt,
    summarize,
)
from terminal.app.config import PrinterSettings
from terminal.app.root import build_printer
from terminal.core.records import SaleRecord, StateChange

UTC = dt.UTC
DAY = dt.date(2025, 3, 14)
NOON = dt.datetime(2025, 3, 14, 12, 30, 5, tzinfo=UTC).timestamp()
HASH = "ab" * 32
CARD_ID = "c0ffee" * 10 + "9f3a"


def record(**kw) -> SaleRecord:
    values = dict(
        id="0123456789abcdef0123", created_at=NOON - 20, amount_minor=1250, currency="USD",
        state="paid", terminal_id="ft-abc123", method="qr", amount_msat=18_500_000,
        rate_minor_per_sat="0.0675675675675675675", payment_hash=HASH,
        history=[StateChange(NOON, "paid", "invoiced", "paid")],
    )
    values.update(kw)
    return SaleRecord(**values)


def test_qr_sale_receipt_has_every_field():
    text = as_text(sale_receipt(record(), merchant="Blue Mountain Coffee", tz=UTC), 32)
    assert "Blue Mountain" in text
    assert "2025-03-14 12:30:05" in text
    assert "$12.50" in text
    assert "18,500 sats" in text
    assert "$67,567.57/BTC" in text
    assert "Lightning QR" in text
    assert HASH[:16] in text and HASH[:17] not in text
    assert "ft-abc123" in text
    assert "PAID" in text
    assert all(len(line) <= 32 for line in text.split("\n"))


def test_card_sale_shows_issuer_and_last_card_id_digits_only():
    r = record(method="card", issuer="sandbox", card_id=CARD_ID)
    assert method_text(r) == "Boltcard sandbox card c0ffeec0"
    text = as_text(sale_receipt(r, merchant="M", tz=UTC), 48)
    assert "card c0ffeec0" in text
    assert CARD_ID[:12] not in text and CARD_ID[-4:] not in text
    assert all(len(line) <= 48 for line in text.split("\n"))


def test_offline_accepted_and_unpaid_sales_say_so():
    queued = as_text(sale_receipt(record(state="queued"), merchant="M", tz=UTC), 32)
    assert "ACCEPTED OFFLINE" in queued
    expired = as_text(sale_receipt(record(state="expired"), merchant="M", tz=UTC), 32)
    assert "NOT PAID (EXPIRED)" in expired
    reprint = as_text(sale_receipt(record(), merchant="M", tz=UTC, reprint=True), 32)
    assert "REPRINT" in reprint


def test_sat_priced_sale_has_no_rate_line():
    r = record(currency="SAT", amount_minor=21_000, amount_msat=21_000_000,
               rate_minor_per_sat=None)
    assert rate_text(r) is None
    text = as_text(sale_receipt(r, merchant="M", tz=UTC), 32)
    assert "21,000 sats" in text and "Rate" not in text


def test_terminal_id_argument_wins_over_the_record():
    text = as_text(sale_receipt(record(), merchant="M", terminal_id="ft-zzz", tz=UTC), 32)
    assert "ft-zzz" in text and "ft-abc123" not in text


def _day_records() -> list[SaleRecord]:
    yesterday = NOON - 86_400
    return [
        record(id="a", method="qr", amount_minor=1000, amount_msat=15_000_000),
        record(id="b", method="card", amount_minor=250, amount_msat=3_700_000,
               card_id=CARD_ID, issuer="x"),
        record(id="c", method="card", amount_minor=500, amount_msat=7_400_000, state="queued",
               history=[StateChange(NOON, "queued", "card_read", "queued")]),
        record(id="d", method="qr", currency="JMD", amount_minor=100_000,
               amount_msat=9_000_000),
        record(id="e", method="qr", state="expired"),
        # rung up yesterday (paid then too): a sale belongs to the day it was sold
        record(id="f", method="qr", created_at=yesterday,
               history=[StateChange(yesterday, "paid", "invoiced", "paid")]),
    ]


def test_summary_counts_and_totals_per_method():
    s = summarize(_day_records(), DAY, tz=UTC)
    assert s.by_method["qr"].count == 2
    assert s.by_method["qr"].fiat_minor == {"USD": 1000, "JMD": 100_000}
    assert s.by_method["qr"].msat == 24_000_000
    assert s.by_method["card"].count == 2
    assert s.by_method["card"].fiat_minor == {"USD": 750}
    assert s.offline_pending.count == 1
    assert s.total.count == 4 and s.total.msat == 35_100_000


def test_summary_slip_prints_per_method_and_total():
    text = as_text(daily_summary(_day_records(), DAY, merchant="M", terminal_id="ft-1", tz=UTC,
                                 printed_at=NOON), 32)
    assert "Daily summary 2025-03-14" in text
    assert "Boltcard" in text and "Lightning QR" in text
    assert "J$1,000.00" in text and "$17.50" in text
    assert "35,100 sats" in text
    assert "accepted offline" in text


def test_empty_day_says_no_sales():
    text = as_text(daily_summary([], DAY, merchant="M", tz=UTC), 32)
    assert "No sales" in text and "0 sats" in text


@given(st.lists(st.tuples(st.sampled_from(["qr", "card"]), st.integers(0, 10**6),
                          st.integers(0, 10**9), st.sampled_from(["paid", "queued", "failed"])),
                max_size=30))
def test_total_is_the_sum_of_the_methods(rows):
    # Property: the total line equals the sum over methods, and failed sales never count.
    records = [record(id=str(i), method=m, amount_minor=a, amount_msat=msat, state=state,
                      history=[StateChange(NOON, state, "invoiced", state)])
               for i, (m, a, msat, state) in enumerate(rows)]
    s = summarize(records, DAY, tz=UTC)
    counted = [r for r in rows if r[3] != "failed"]
    assert s.total.count == len(counted)
    assert s.total.msat == sum(r[2] for r in counted)
    assert s.total.fiat_minor.get("USD", 0) == sum(r[1] for r in counted)


def test_disabled_printer_is_none_and_prints_nothing():
    assert build_printer(PrinterSettings(enabled=False, port="/dev/ttyUSB0")) is None
    result = asyncio.run(print_receipt(None, sale_receipt(record(), merchant="M")))
    assert result.status is PrinterStatus.DISABLED


def test_unplugged_printer_never_blocks_a_sale(tmp_path):
    printer = build_printer(PrinterSettings(enabled=True, port=str(tmp_path / "ttyUSB0"),
                                            width_mm=80))
    assert printer is not None and printer.width == 48
    result = asyncio.run(print_receipt(printer, sale_receipt(record(), merchant="M")))
    assert result.status is PrinterStatus.OFFLINE
