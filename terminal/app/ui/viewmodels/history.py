"""The History screen: any day's sales (a date picker, today by default), one line per sale,
filters, the day's totals under the one counting rule (`terminal.core.totals`), a detail view
with the lasting reason of a sale that did not happen, reprint and export. No PIN: a cashier
reprints; a refund (History > a paid sale > Refund) and settings are a manager's."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from terminal.adapters.receipts import method_text
from terminal.app.ui.strings import reason_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core import history as core_history
from terminal.core.card_usage import CardUsage, UsageFilter
from terminal.core.cashiers import NO_CASHIER
from terminal.core.money import Money, Msat, currency, format_money, format_msat
from terminal.core.records import SaleRecord, short_card_id
from terminal.core.totals import FAILED_STATES, PENDING_STATES, Totals, totals
from terminal.services.till import Till

STATE_FILTERS = ("all", "paid", "failed", "queued")
METHOD_FILTERS = ("all", "card", "qr")
def card_label(card_id: str | None) -> str:
    return f"card {short_card_id(card_id)}" if card_id else ""


def totals_text(tot: Totals) -> str:
    """"12 sales · $40.00 + J$1,200.00 (48,210 sats)", pending offline ones named apart."""
    key = "history.total.one" if tot.taken == 1 else "history.total"
    text = t(key, count=tot.taken, total=_money_and_sats(tot, " ({})"))
    if tot.pending:
        text += " · " + t("history.pending", count=tot.pending)
    return text


def _money_and_sats(tot: Totals, sats_format: str = " · {}") -> str:
    """What was taken in each pricing currency, then the sats of it all: "$14.38 + 150,000 sats
    (165,137 sats)". Sales priced in sats are named in the sum too, or a merchant reading "$14.38
    (165,137 sats)" would take the sats for the dollars' worth."""
    fiat = [format_money(Money(v, currency(k))) for k, v in sorted(tot.minor.items())
            if k != "SAT"]
    sats = format_msat(Msat(tot.taken_msat))
    if not fiat:
        return sats
    priced_in_sats = tot.minor.get("SAT", 0)
    if priced_in_sats:
        fiat.append(format_money(Money(priced_in_sats, currency("SAT"))))
    return " + ".join(fiat) + sats_format.format(sats)


@dataclass(frozen=True)
class HistoryRow:
    sale_id: str
    text: str  # one line: time, amount, how, state (and the reason of a failure, short)
    tone: Tone


def _tone(state: str) -> Tone:
    if state == "paid":
        return Tone.SUCCESS
    if state in PENDING_STATES:
        return Tone.WARNING
    if state in FAILED_STATES:
        return Tone.ERROR
    return Tone.BUSY


class HistoryViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        self.day = till.today()
        self.state_filter = "all"
        self.method_filter = "all"
        self.card_filter: str | None = None
        self.by_card = False  # the per-card usage view (the payout dashboard's Boltcard view)
        self.cashier_filter: str | None = None  # a cashier id, NO_CASHIER, or None: everyone
        self.selected: str | None = None
        self._records: list[SaleRecord] | None = None

    # -- the day ----------------------------------------------------------------------------
    def show_day(self, day: dt.date) -> None:
        self.day = min(day, self.till.today())
        self.selected, self._records = None, None
        self.changed()

    def previous_day(self) -> None:
        self.show_day(self.day - dt.timedelta(days=1))

    def next_day(self) -> None:
        self.show_day(self.day + dt.timedelta(days=1))

    def today(self) -> None:
        self.show_day(self.till.today())

    @property
    def is_today(self) -> bool:
        return self.day == self.till.today()

    @property
    def day_text(self) -> str:
        label = t("history.today") if self.is_today else self.day.strftime("%a %d %b %Y")
        return label

    def reload(self) -> None:
        self._records = None
        self.changed()

    def records(self) -> list[SaleRecord]:
        if self._records is None:
            self._records = self.till.sales_on(self.day)
        return self._records

    # -- filters ----------------------------------------------------------------------------
    def set_filter(self, *, state: str | None = None, method: str | None = None) -> None:
        if state is not None:
            if state not in STATE_FILTERS:
                raise ValueError(f"state filter must be one of {STATE_FILTERS}")
            self.state_filter = state
        if method is not None:
            if method not in METHOD_FILTERS:
                raise ValueError(f"method filter must be one of {METHOD_FILTERS}")
            self.method_filter = method
        self.changed()

    def set_card(self, card_id: str | None) -> None:
        self.card_filter = card_id
        self.by_card = False  # a card chosen: its sales
        self.changed()

    def cycle_cashier_filter(self) -> str | None:
        """Everyone, then each cashier of the roster, then sales rung up by nobody."""
        choices: list[str | None] = [None, *(c.id for c in self.till.staff.roster), NO_CASHIER]
        at = choices.index(self.cashier_filter) if self.cashier_filter in choices else 0
        self.cashier_filter, self.selected = choices[(at + 1) % len(choices)], None
        self.changed()
        return self.cashier_filter

    @property
    def cashier_filter_text(self) -> str:
        who = self.cashier_filter
        if who is None:
            name = t("history.filter.everyone")
        elif who == NO_CASHIER:
            name = t("report.no_cashier")
        else:
            cashier = self.till.staff.roster.get(who)
            name = cashier.name if cashier is not None else who
        return t("history.filter.cashier", name=name)

    def toggle_by_card(self) -> bool:
        """Switch between the sales and the per-card usage of the day."""
        self.by_card, self.selected = not self.by_card, None
        self.card_filter = None  # back from one card's sales: every card again
        self.changed()
        return self.by_card

    def card_rows(self) -> list[HistoryRow]:
        """One row per card of the day (filters other than the card applied): how often it
        paid, how much, how often it was refused, first and last use; most used first."""
        rows = []
        for usage in self.card_usage():
            tot = usage.totals
            text = t("history.card_row", card=short_card_id(usage.card_id), count=tot.taken,
                     total=_money_and_sats(tot))
            if tot.failed:
                text += " · " + t("history.card_refused", count=tot.failed)
            rows.append(HistoryRow(usage.card_id, text,
                                   Tone.SUCCESS if tot.taken else Tone.ERROR))
        return rows

    def card_usage(self) -> list[CardUsage]:
        """The day's per-card usage under the filters (the card's aside), counted by the books
        (`SalesHistory.card_usage`): the same as the rule over the day's sales shown."""
        states = {"all": None, "paid": frozenset({"paid"}), "failed": FAILED_STATES,
                  "queued": PENDING_STATES}[self.state_filter]
        query = core_history.SaleQuery(
            date_from=self.day, date_to=self.day, tz=self.till.tz,
            method=None if self.method_filter == "all" else self.method_filter)
        return self.till.card_usage(UsageFilter(query, states=states,
                                                cashier=self.cashier_filter))

    def card_detail(self) -> list[str]:
        """Beside the cards: each one's first and last use of the day and its tips."""
        lines = []
        for usage in self.card_usage():
            first, last = (dt.datetime.fromtimestamp(at, tz=self.till.tz).strftime("%H:%M")
                           for at in (usage.first_at or 0.0, usage.last_at or 0.0))
            line = t("history.card_times", card=short_card_id(usage.card_id), first=first,
                     last=last)
            if usage.totals.tips_msat:
                line += " · " + t("history.card_tips",
                                  tips=format_msat(Msat(usage.totals.tips_msat)))
            lines.append(line)
        return lines

    def cycle_state_filter(self) -> str:
        i = STATE_FILTERS.index(self.state_filter)
        self.set_filter(state=STATE_FILTERS[(i + 1) % len(STATE_FILTERS)])
        return self.state_filter

    def cycle_method_filter(self) -> str:
        i = METHOD_FILTERS.index(self.method_filter)
        self.set_filter(method=METHOD_FILTERS[(i + 1) % len(METHOD_FILTERS)])
        return self.method_filter

    @property
    def filtered(self) -> bool:
        return (self.state_filter, self.method_filter, self.card_filter,
                self.cashier_filter) != ("all", "all", None, None)

    def _matches(self, r: SaleRecord, *, any_card: bool = False) -> bool:
        if self.state_filter == "paid" and r.state != "paid":
            return False
        if self.state_filter == "failed" and r.state not in FAILED_STATES:
            return False
        if self.state_filter == "queued" and r.state not in PENDING_STATES:
            return False
        if self.method_filter != "all" and r.method != self.method_filter:
            return False
        if self.cashier_filter is not None and (r.cashier or NO_CASHIER) != self.cashier_filter:
            return False
        return any_card or self.card_filter is None or r.card_id == self.card_filter

    # -- what is shown ----------------------------------------------------------------------
    def visible(self) -> list[SaleRecord]:
        return [r for r in self.records() if self._matches(r)]

    def rows(self) -> list[HistoryRow]:
        rows = []
        for r in self.visible():
            when = dt.datetime.fromtimestamp(r.created_at, tz=self.till.tz).strftime("%H:%M")
            amount = format_money(Money(r.amount_minor, currency(r.currency)))
            how = method_text(r) if r.method else "—"
            state = t(f"state.{r.state}")
            if r.reason and r.state in FAILED_STATES and r.state != "cancelled":
                state = f"{state}: {reason_text(r.reason).rstrip('.')}"
            rows.append(HistoryRow(r.id, f"{when}  {amount}  {how}  {state}", _tone(r.state)))
        return rows

    @property
    def empty_text(self) -> str:
        if self.filtered and self.records():
            return t("history.empty.filtered")
        return t("history.empty.today") if self.is_today else t("history.empty.day")

    def totals(self) -> Totals:
        return totals(self.visible())

    @property
    def totals_text(self) -> str:
        return totals_text(self.totals())

    @property
    def filter_text(self) -> str:
        parts = [t("history.filter.state", state=self.state_filter),
                 t("history.filter.method", method=self.method_filter)]
        if self.card_filter:
            parts.append(card_label(self.card_filter))
        return " · ".join(parts)

    def per_card(self) -> dict[str, Totals]:
        cards: dict[str, Totals] = {}
        for r in self.records():
            if r.card_id:
                cards.setdefault(r.card_id, Totals()).add(r)
        return dict(sorted(cards.items()))

    def select(self, sale_id: str | None) -> None:
        self.selected = sale_id
        self.changed()

    def selected_record(self) -> SaleRecord | None:
        return next((r for r in self.records() if r.id == self.selected), None)

    @property
    def can_refund(self) -> bool:
        """The selected sale is paid and not all refunded, on a till that refunds."""
        record = self.selected_record()
        return (record is not None and record.state == "paid" and self.till.refunds is not None
                and (record.refunded_msat or 0) < (record.amount_msat or 0))

    def detail(self) -> list[str]:
        record = self.selected_record()
        if record is None:
            return []
        money = Money(record.amount_minor, currency(record.currency))
        lines = [
            t("history.detail.sale", sale=record.id[:16]),
            format_money(money) + (f" · {format_msat(Msat(record.amount_msat))}"
                                   if record.amount_msat else ""),
        ]
        if record.tip_minor:
            lines.append(t("history.detail.tip",
                           tip=format_money(Money(record.tip_minor, money.currency))))
        state = t(f"state.{record.state}")
        if record.reason and record.state != "paid":
            state += f" — {reason_text(record.reason)}"
        lines.append(t("history.detail.state", state=state))
        lines.append(t("history.detail.method", method=method_text(record)
                       if record.method else "—"))
        if record.cashier:
            cashier = self.till.staff.roster.get(record.cashier)
            lines.append(t("history.detail.cashier",
                           name=cashier.name if cashier is not None else record.cashier))
        if record.memo:
            lines.append(t("history.detail.memo", memo=record.memo))
        if record.payment_hash:
            lines.append(t("history.detail.payment", hash=record.payment_hash[:16]))
        if record.refunded_msat:
            lines.append(t("history.detail.refunded", sats=format_msat(Msat(
                record.refunded_msat)), count=len(record.refund_ids)))
        return lines

    # -- export -----------------------------------------------------------------------------
    def export(self, path: Path, fmt: str = "csv") -> int:
        """Write the visible sales to `path` (CSV or JSON); returns how many were written.
        Card UIDs are never in a record (only keyed card ids), so an export holds no secrets."""
        records = self.visible()
        if fmt == "json":
            text = core_history.to_json(records)
        elif fmt == "csv":
            text = core_history.to_csv(records, self.till.tz)
        else:
            raise ValueError("export format must be csv or json")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return len(records)
