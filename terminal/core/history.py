"""Sales history: the one query interface, the one counting rule, and exports (core, no I/O).

`SalesHistory` is the port every reader of past sales uses (the history command, reports, exports,
the history screen, the till's totals): the books implement it over the journal and the archive,
`SalesInMemory` over a list. Queries are `SaleQuery`s; results stream oldest first (or newest
first), so an export of any range runs in constant memory.

Totals follow the one counting rule, `terminal.core.totals` (taken = paid + pending offline sales,
pending also named apart, failures counted only as attempts); `Report` and `report()` apply it to
a query's selection, overall, per day and per card, reading only the columns it needs.

Dates are the merchant's local calendar dates (`tz=None` means the system's local time zone);
a date range is inclusive at both ends. Exports never contain secrets: sales hold no tap URLs, and
`SECRET_FIELDS` is removed should one ever be added.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from terminal.core.records import SaleRecord
from terminal.core.sale import REOPENABLE_BY_PAYMENT, SaleState
from terminal.core.totals import (
    Countable,
    Totals,
    day_bounds,
    local_day,
    totals_by_card,
    totals_by_day,
)
from terminal.core.totals import totals as total

if TYPE_CHECKING:
    from terminal.core.card_usage import CardUsage, UsageFilter

METHODS = ("card", "qr")
STATES = tuple(s.value for s in SaleState)
SECRET_FIELDS = frozenset({"tap_url", "k1", "pin"})
CSV_COLUMNS = (
    "id", "created_at", "local_time", "state", "method", "amount_minor", "currency",
    "amount_msat", "card_id", "issuer", "payment_hash", "reason", "memo", "terminal_id",
    "updated_at", "recovered",
    # added after the first release: the tip's share and who rang the sale up (at the end, so
    # a spreadsheet reading columns by position still reads the older ones)
    "tip_minor", "tip_msat", "cashier",
    # added with refunds: what was paid back of the sale (sent refunds), in msat
    "refunded_msat",
)
# Sales the reconcile keeps asking about: cancelled or failed ones (a wallet or an issuer may
# still pay their invoice). An EXPIRED sale was ended by the backend's own word (and, long after
# expiry, a payment lookup): its invoice is final, though `recover` may still find it paid.
_REOPENABLE = frozenset(s.value for s in REOPENABLE_BY_PAYMENT if s is not SaleState.EXPIRED)
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


class SaleFacts(Countable, Protocol):
    """What queries and totals read of a sale: a `SaleRecord`, or a `SaleSummary` row (what
    the counting rule reads, plus what filters need)."""

    @property
    def id(self) -> str: ...
    @property
    def method(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SaleSummary:
    """The columns queries and totals need, without the whole record (the archive streams
    these)."""

    id: str
    created_at: float
    state: str
    method: str | None
    card_id: str | None
    currency: str
    amount_minor: int
    amount_msat: int | None
    tip_minor: int = 0
    tip_msat: int | None = None

    @classmethod
    def of(cls, record: SaleRecord) -> SaleSummary:
        return cls(record.id, record.created_at, record.state, record.method, record.card_id,
                   record.currency, record.amount_minor, record.amount_msat, record.tip_minor,
                   record.tip_msat)


@dataclass
class Report:
    """Totals of a selection (the counting rule of `terminal.core.totals`), overall, per local
    day and per card, built in one pass over a stream."""

    tz: tzinfo | None = None
    total: Totals = field(default_factory=Totals)
    by_day: dict[date, Totals] = field(default_factory=dict)
    by_card: dict[str, Totals] = field(default_factory=dict)  # sales without a card left out

    def add(self, sale: SaleFacts) -> None:
        self.total.add(sale)
        day = local_day(sale.created_at, self.tz)
        self.by_day.setdefault(day, Totals()).add(sale)
        if sale.card_id:
            self.by_card.setdefault(sale.card_id, Totals()).add(sale)

    def to_doc(self) -> dict[str, Any]:
        return {"total": asdict(self.total),
                "by_day": {d.isoformat(): asdict(t) for d, t in sorted(self.by_day.items())},
                "by_card": {c: asdict(t) for c, t in sorted(self.by_card.items())}}


class InvoiceFacts(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def bolt11(self) -> str | None: ...
    @property
    def invoice_final(self) -> bool: ...


def awaiting_invoice(record: InvoiceFacts) -> bool:
    """A final sale whose invoice a wallet may still pay: cancelled or failed with an invoice the
    backend has not declared final (`invoice_final`). The reconcile keeps asking about these."""
    return bool(record.bolt11) and record.state in _REOPENABLE and not record.invoice_final


# ------------------------------------------------------------------------------------ select
def time_bounds(query: SaleQuery) -> tuple[float | None, float | None]:
    """[start, end) in epoch seconds covering the query's local dates (None: unbounded)."""
    start = day_bounds(query.date_from, query.tz)[0] if query.date_from else None
    end = day_bounds(query.date_to, query.tz)[1] if query.date_to else None
    return start, end


def matches(record: SaleFacts, query: SaleQuery) -> bool:
    if query.state is not None and record.state != query.state:
        return False
    # The table shows card ids shortened: a prefix (as shown) selects that card too.
    if query.card_id is not None and not (record.card_id or "").startswith(
        query.card_id.lower()
    ):
        return False
    if query.method is not None and record.method != query.method:
        return False
    return in_days(record.created_at, query)


def in_days(created_at: float, query: SaleQuery) -> bool:
    """A sale created at `created_at` is on one of the query's local days."""
    if query.date_from is None and query.date_to is None:
        return True
    day = local_day(created_at, query.tz)
    return (query.date_from is None or day >= query.date_from) and (
        query.date_to is None or day <= query.date_to
    )


def select(records: Iterable[SaleRecord], query: SaleQuery) -> list[SaleRecord]:
    """The matching sales, oldest first."""
    return sorted((r for r in records if matches(r, query)), key=lambda r: (r.created_at, r.id))


# ---------------------------------------------------------------------------- the port
class SalesHistory(Protocol):
    """How every reader of past sales asks for them (implemented by the books)."""

    def get_sale(self, sale_id: str) -> SaleRecord | None: ...

    def sales_matching(self, query: SaleQuery, *,
                       newest_first: bool = False) -> Iterator[SaleRecord]:
        """Every sale matching `query`, ordered by (created_at, id), streamed."""
        ...

    def summaries_matching(self, query: SaleQuery) -> Iterator[SaleFacts]:
        """The same selection with only the columns totals need (cheaper), oldest first."""
        ...

    def card_usage(self, usage: UsageFilter) -> list[CardUsage]:
        """Per-card usage of the sales `usage` selects, most used first: the same as
        `terminal.core.card_usage.card_usage` of them (the books count it without reading
        records)."""
        ...


def report(book: SalesHistory, query: SaleQuery) -> Report:
    """Totals of the sales matching `query`: overall, per local day, per card."""
    out = Report(tz=query.tz)
    for sale in book.summaries_matching(query):
        out.add(sale)
    return out


class SalesInMemory:
    """`SalesHistory` over records held in memory (the demo and tests)."""

    def __init__(self, records: Iterable[SaleRecord] = ()) -> None:
        self.records = list(records)

    def get_sale(self, sale_id: str) -> SaleRecord | None:
        return next((r for r in self.records if r.id == sale_id), None)

    def sales_matching(self, query: SaleQuery, *,
                       newest_first: bool = False) -> Iterator[SaleRecord]:
        selected = select(self.records, query)
        return iter(reversed(selected) if newest_first else selected)

    def summaries_matching(self, query: SaleQuery) -> Iterator[SaleFacts]:
        return iter(select(self.records, query))

    def card_usage(self, usage: UsageFilter) -> list[CardUsage]:
        from terminal.core.card_usage import card_usage

        return card_usage(r for r in self.records if usage.matches(r))


# ------------------------------------------------------------------------------------ export
_RECORD_FIELDS = tuple(f.name for f in fields(SaleRecord))


def export_doc(record: SaleRecord) -> dict[str, Any]:
    """One sale as exported: every record field (history included) except secrets.

    The same as `record.to_doc()` minus secrets, built without `dataclasses.asdict`'s deep
    copies (exports stream many sales; records hold scalars and the history list only)."""
    doc = {name: getattr(record, name) for name in _RECORD_FIELDS if name not in SECRET_FIELDS}
    doc["history"] = [dict(vars(change)) for change in record.history]
    return doc


def to_json(records: Iterable[SaleRecord]) -> str:
    buffer = io.StringIO()
    write_json(records, buffer)
    return buffer.getvalue()


def write_json(records: Iterable[SaleRecord], out: TextIO) -> int:
    """Stream a JSON array of the records to `out` (constant memory); returns how many."""
    count = 0
    out.write("[")
    for record in records:
        text = json.dumps(export_doc(record), indent=2, ensure_ascii=False)
        out.write(("," if count else "") + "\n  " + text.replace("\n", "\n  "))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(records: Iterable[SaleRecord], tz: tzinfo | None = None) -> str:
    buffer = io.StringIO()
    write_csv(records, buffer, tz)
    return buffer.getvalue()


def write_csv(records: Iterable[SaleRecord], out: TextIO, tz: tzinfo | None = None) -> int:
    """Stream CSV (a header, then one row per sale) to `out`; returns how many sales."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        doc = export_doc(record)
        doc["local_time"] = datetime.fromtimestamp(record.created_at, tz).isoformat(
            timespec="seconds"
        )
        writer.writerow([_cell(doc.get(column)) for column in CSV_COLUMNS])
        count += 1
    return count


__all__ = [
    "CSV_COLUMNS",
    "METHODS",
    "STATES",
    "Report",
    "SaleFacts",
    "SaleQuery",
    "SaleSummary",
    "SalesHistory",
    "SalesInMemory",
    "Totals",
    "awaiting_invoice",
    "export_doc",
    "in_days",
    "matches",
    "report",
    "select",
    "time_bounds",
    "to_csv",
    "to_json",
    "total",
    "totals_by_card",
    "totals_by_day",
    "write_csv",
    "write_json",
]
