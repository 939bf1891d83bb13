"""Sales history: filters, totals and exports (core: pure functions over `SaleRecord`s, no I/O).

Dates are the merchant's local calendar dates (`tz=None` means the system's local time zone);
a date range is inclusive at both ends. Totals count every selected sale but add up money only
for PAID sales: a declined or expired sale took no money. Exports never contain secrets: sales
hold no tap URLs, and `SECRET_FIELDS` is removed should one ever be added.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from typing import Any

from terminal.core.records import SaleRecord
from terminal.core.sale import SaleState

METHODS = ("card", "qr")
STATES = tuple(s.value for s in SaleState)
SECRET_FIELDS = frozenset({"tap_url", "k1", "pin"})
CSV_COLUMNS = (
    "id", "created_at", "local_time", "state", "method", "amount_minor", "currency",
    "amount_msat", "card_id", "issuer", "payment_hash", "reason", "memo", "terminal_id",
    "updated_at",
)
# Spreadsheets run cells starting with these as formulas (CSV injection): quote them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class SaleQuery:
    date_from: date | None = None
    date_to: date | None = None
    state: str | None = None
    card_id: str | None = None
    method: str | None = None
    tz: tzinfo | None = None  # None: the system's local time zone

    def __post_init__(self) -> None:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("the start date is after the end date")
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"unknown sale state {self.state!r} (one of {', '.join(STATES)})")
        if self.method is not None and self.method not in METHODS:
            raise ValueError("method must be 'card' or 'qr'")


@dataclass
class Totals:
    sales: int = 0  # every selected sale
    paid: int = 0  # PAID sales: the ones below add up
    msat: int = 0
    minor: dict[str, int] = field(default_factory=dict)  # currency -> minor units

    def add(self, record: SaleRecord) -> None:
        self.sales += 1
        if record.state != SaleState.PAID.value:
            return
        self.paid += 1
        self.msat += record.amount_msat or 0
        self.minor[record.currency] = self.minor.get(record.currency, 0) + record.amount_minor

    def to_doc(self) -> dict[str, Any]:
        return {"sales": self.sales, "paid": self.paid, "msat": self.msat,
                "minor": dict(sorted(self.minor.items()))}


# ------------------------------------------------------------------------------------ select
def local_date(timestamp: float, tz: tzinfo | None = None) -> date:
    return datetime.fromtimestamp(timestamp, tz).date()


def _midnight(day: date, tz: tzinfo | None) -> float:
    return datetime.combine(day, dtime.min, tzinfo=tz).timestamp()


def time_bounds(query: SaleQuery) -> tuple[float | None, float | None]:
    """[start, end) in epoch seconds covering the query's local dates (None: unbounded)."""
    start = _midnight(query.date_from, query.tz) if query.date_from else None
    end = _midnight(query.date_to + timedelta(days=1), query.tz) if query.date_to else None
    return start, end


def matches(record: SaleRecord, query: SaleQuery) -> bool:
    if query.state is not None and record.state != query.state:
        return False
    # The table shows card ids shortened: a prefix (as shown) selects that card too.
    if query.card_id is not None and not (record.card_id or "").startswith(
        query.card_id.lower()
    ):
        return False
    if query.method is not None and record.method != query.method:
        return False
    if query.date_from is None and query.date_to is None:
        return True
    day = local_date(record.created_at, query.tz)
    return (query.date_from is None or day >= query.date_from) and (
        query.date_to is None or day <= query.date_to
    )


def select(records: Iterable[SaleRecord], query: SaleQuery) -> list[SaleRecord]:
    """The matching sales, oldest first."""
    return sorted((r for r in records if matches(r, query)), key=lambda r: (r.created_at, r.id))


# ------------------------------------------------------------------------------------ totals
def total(records: Iterable[SaleRecord]) -> Totals:
    out = Totals()
    for record in records:
        out.add(record)
    return out


def totals_by_day(records: Iterable[SaleRecord], tz: tzinfo | None = None) -> dict[date, Totals]:
    out: dict[date, Totals] = {}
    for record in records:
        out.setdefault(local_date(record.created_at, tz), Totals()).add(record)
    return dict(sorted(out.items()))


def totals_by_card(records: Iterable[SaleRecord]) -> dict[str, Totals]:
    """Per card id; sales without a card (QR, or no tap yet) are left out."""
    out: dict[str, Totals] = {}
    for record in records:
        if record.card_id:
            out.setdefault(record.card_id, Totals()).add(record)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------------------------ export
def export_doc(record: SaleRecord) -> dict[str, Any]:
    """One sale as exported: every record field (history included) except secrets."""
    doc = record.to_doc()
    for name in SECRET_FIELDS:
        doc.pop(name, None)
    return doc


def to_json(records: Iterable[SaleRecord]) -> str:
    return json.dumps([export_doc(r) for r in records], indent=2, ensure_ascii=False) + "\n"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(records: Iterable[SaleRecord], tz: tzinfo | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        doc = export_doc(record)
        doc["local_time"] = datetime.fromtimestamp(record.created_at, tz).isoformat(
            timespec="seconds"
        )
        writer.writerow([_cell(doc.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


__all__ = [
    "CSV_COLUMNS",
    "METHODS",
    "STATES",
    "SaleQuery",
    "Totals",
    "export_doc",
    "local_date",
    "matches",
    "select",
    "time_bounds",
    "to_csv",
    "to_json",
    "total",
    "totals_by_card",
    "totals_by_day",
]
