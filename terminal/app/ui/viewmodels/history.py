"""The History screen: today's sales with filters, totals per day and per card, a detail view,
reprint and export (CSV or JSON) — shown only after the admin PIN.

It reads sales through a small protocol (`SalesSource`), which the ledger implements, so the
screen's logic is tested with plain lists.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from terminal.adapters.receipts import method_text, paid_at
from terminal.app.ui.strings import reason_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core import history as core_history
from terminal.core.money import Money, Msat, currency, format_money, format_msat
from terminal.core.records import SaleRecord

COUNTED = ("paid", "queued", "submitted")
STATE_FILTERS = ("all", "paid", "failed", "queued")
METHOD_FILTERS = ("all", "card", "qr")
_FAILED = ("failed", "expired", "cancelled", "declined")


class SalesSource(Protocol):
    def sales(self) -> Iterable[SaleRecord]: ...


class ListSource:
    """A `SalesSource` over records in memory (the demo's ledger and the tests)."""

    def __init__(self, records: Iterable[SaleRecord] = ()) -> None:
        self.records = list(records)

    def sales(self) -> list[SaleRecord]:
        return list(self.records)


@dataclass(frozen=True)
class Totals:
    count: int
    msat: int
    fiat: tuple[Money, ...]

    @property
    def text(self) -> str:
        parts = [format_money(m) for m in self.fiat if not m.currency.is_sat]
        parts.append(format_msat(Msat(self.msat)))
        key = "history.total.one" if self.count == 1 else "history.total"
        return t(key, count=self.count, total=" + ".join(parts[:-1]) +
                 (f" ({parts[-1]})" if len(parts) > 1 else parts[-1]))


def totals(records: Iterable[SaleRecord]) -> Totals:
    """Count and sum of the sales that were paid (or accepted offline)."""
    count, msat = 0, 0
    fiat: dict[str, int] = {}
    for r in records:
        if r.state not in COUNTED:
            continue
        count += 1
        msat += r.amount_msat or 0
        fiat[r.currency] = fiat.get(r.currency, 0) + r.amount_minor
    return Totals(count, msat, tuple(Money(v, currency(k)) for k, v in sorted(fiat.items())))


@dataclass(frozen=True)
class HistoryRow:
    sale_id: str
    time_text: str
    amount_text: str
    method_text: str
    state: str
    tone: Tone


class HistoryViewModel(Observable):
    def __init__(self, source: SalesSource, *, clock: Callable[[], float] = time.time,
                 tz: dt.tzinfo | None = None) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.tz = tz
        self.state_filter = "all"
        self.method_filter = "all"
        self.card_filter: str | None = None
        self.selected: str | None = None

    def _day(self, ts: float) -> dt.date:
        moment = dt.datetime.fromtimestamp(ts, tz=self.tz) if self.tz else \
            dt.datetime.fromtimestamp(ts)
        return moment.date()

    # -- filters ----------------------------------------------------------------------------
    def set_filter(self, *, state: str | None = None, method: str | None = None,
                   card: str | None = ..., ) -> None:  # type: ignore[assignment]
        if state is not None:
            if state not in STATE_FILTERS:
                raise ValueError(f"state filter must be one of {STATE_FILTERS}")
            self.state_filter = state
        if method is not None:
            if method not in METHOD_FILTERS:
                raise ValueError(f"method filter must be one of {METHOD_FILTERS}")
            self.method_filter = method
        if card is not ...:
            self.card_filter = card
        self.changed()

    def cycle_state_filter(self) -> str:
        i = STATE_FILTERS.index(self.state_filter)
        self.set_filter(state=STATE_FILTERS[(i + 1) % len(STATE_FILTERS)])
        return self.state_filter

    def cycle_method_filter(self) -> str:
        i = METHOD_FILTERS.index(self.method_filter)
        self.set_filter(method=METHOD_FILTERS[(i + 1) % len(METHOD_FILTERS)])
        return self.method_filter

    def _matches(self, r: SaleRecord) -> bool:
        if self.state_filter == "paid" and r.state != "paid":
            return False
        if self.state_filter == "failed" and r.state not in _FAILED:
            return False
        if self.state_filter == "queued" and r.state not in ("queued", "submitted"):
            return False
        if self.method_filter != "all" and r.method != self.method_filter:
            return False
        return self.card_filter is None or r.card_id == self.card_filter

    # -- what is shown ----------------------------------------------------------------------
    def today(self) -> list[SaleRecord]:
        today = self._day(self.clock())
        records = [r for r in self.source.sales() if self._day(r.created_at) == today]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def visible(self) -> list[SaleRecord]:
        return [r for r in self.today() if self._matches(r)]

    def rows(self) -> list[HistoryRow]:
        return [
            HistoryRow(
                sale_id=r.id,
                time_text=dt.datetime.fromtimestamp(r.created_at, tz=self.tz).strftime("%H:%M"),
                amount_text=format_money(Money(r.amount_minor, currency(r.currency))),
                method_text=method_text(r) if r.method else "—",
                state=r.state,
                tone=Tone.SUCCESS if r.state == "paid" else
                Tone.WARNING if r.state in ("queued", "submitted") else
                Tone.ERROR if r.state in _FAILED else Tone.BUSY,
            )
            for r in self.visible()
        ]

    @property
    def filter_text(self) -> str:
        parts = [f"state: {self.state_filter}", f"method: {self.method_filter}"]
        if self.card_filter:
            parts.append(f"card …{self.card_filter[-4:]}")
        return " · ".join(parts)

    def total_today(self) -> Totals:
        return totals(self.visible())

    def per_day(self) -> dict[dt.date, Totals]:
        days: dict[dt.date, list[SaleRecord]] = {}
        for r in self.source.sales():
            days.setdefault(self._day(paid_at(r)), []).append(r)
        return {d: totals(rs) for d, rs in sorted(days.items(), reverse=True)}

    def per_card(self) -> dict[str, Totals]:
        cards: dict[str, list[SaleRecord]] = {}
        for r in self.today():
            if r.card_id:
                cards.setdefault(r.card_id, []).append(r)
        return {c: totals(rs) for c, rs in sorted(cards.items())}

    def select(self, sale_id: str | None) -> None:
        self.selected = sale_id
        self.changed()

    def detail(self) -> list[str]:
        record = next((r for r in self.source.sales() if r.id == self.selected), None)
        if record is None:
            return []
        lines = [
            f"Sale {record.id[:16]}",
            f"{format_money(Money(record.amount_minor, currency(record.currency)))}"
            + (f" · {format_msat(Msat(record.amount_msat))}" if record.amount_msat else ""),
            f"State: {record.state}" + (f" ({reason_text(record.reason)})"
                                        if record.reason and record.state != "paid" else ""),
            f"Paid by: {method_text(record) if record.method else '—'}",
        ]
        if record.memo:
            lines.append(f"Memo: {record.memo}")
        if record.payment_hash:
            lines.append(f"Payment: {record.payment_hash[:16]}")
        return lines

    # -- export -----------------------------------------------------------------------------
    def export(self, path: Path, fmt: str = "csv") -> int:
        """Write the visible sales to `path` (CSV or JSON); returns how many were written.

        Card UIDs are never in a record (only keyed card ids), so an export holds no secrets.
        """
        records = self.visible()
        if fmt == "json":
            text = core_history.to_json(records)
        elif fmt == "csv":
            text = core_history.to_csv(records, self.tz)
        else:
            raise ValueError("export format must be csv or json")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return len(records)
