"""A realistic history of settled sales for demos, training and benchmarks (`fill-history`).

Sales are written through the books' normal write path (`Ledger.save_sale`, a transaction per
`BATCH` sales: each sale lands in the journal and moves to the archive like any other). The mix
is what a café sees: card taps and QR payments; mostly paid, some refused, expired, cancelled,
and offline taps declined or queued and paid later; JMD, USD and sats; tips on some; `cards`
regular cards; opening hours 07:00-21:00 local, spread over the `days` before today.

Each sale carries a real BOLT11 invoice signed by a throwaway node key, whose memo holds the
terminal's tag (`terminal.core.memo`) and whose payment hash is the sale's. Settled history is
final at the backend too: `invoice_final` and `synced` are set, so no reconcile asks about it.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from terminal.core.memo import sale_memo
from terminal.core.records import SaleRecord, StateChange
from terminal.protocols import bolt11

if TYPE_CHECKING:
    from terminal.adapters.books.ledger import Ledger

BATCH = 1000
OPEN_HOUR, CLOSE_HOUR = 7, 21
NETWORK_HRP = {"bitcoin": "bc", "mainnet": "bc", "testnet": "tb", "signet": "tbs",
               "regtest": "bcrt"}
# Price of one sat in minor units (a BTC at about US$100,000; J$157 to the dollar).
MINOR_PER_SAT = {"USD": Decimal("0.1"), "JMD": Decimal("15.7"), "SAT": Decimal(1)}
CURRENCIES = (("JMD", 0.55), ("USD", 0.35), ("SAT", 0.10))
ITEMS = ("Coffee", "Latte", "Patty and coco bread", "Juice", "Lunch special", "Pastries",
         "Groceries", "Ackee and saltfish", "Ice cream", "Bottled water", "")
# (outcome, weight) by method; offline taps are card taps accepted while the network was down.
CARD_OUTCOMES = (("paid", 0.86), ("offline-paid", 0.03), ("failed", 0.05),
                 ("cancelled", 0.03), ("declined", 0.02), ("expired", 0.01))
QR_OUTCOMES = (("paid", 0.86), ("expired", 0.08), ("cancelled", 0.06))


@dataclass
class FillReport:
    sales: int = 0
    first_day: date | None = None
    last_day: date | None = None
    states: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    currencies: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"sales": self.sales,
                "from": self.first_day.isoformat() if self.first_day else None,
                "to": self.last_day.isoformat() if self.last_day else None,
                "states": dict(sorted(self.states.items())),
                "methods": dict(sorted(self.methods.items())),
                "currencies": dict(sorted(self.currencies.items()))}


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*weighted, strict=True)
    return rng.choices(names, weights)[0]


def _amount_minor(rng: random.Random, code: str) -> int:
    if code == "JMD":
        return rng.randrange(30, 1500) * 1000  # J$300 .. J$15,000 in whole J$10
    if code == "USD":
        return rng.randrange(150, 6000, 25)  # $1.50 .. $60.00
    return rng.randrange(1000, 100_000, 100)  # sats


class HistoryWriter:
    """Makes the sales (`sale`) and writes them in batches (`fill`)."""

    def __init__(self, *, terminal_id: str, network: str = "bitcoin", cards: int = 20,
                 tz: tzinfo | None = None, seed: int | None = None) -> None:
        if cards < 1:
            raise ValueError("at least one card")
        self.rng = random.Random(seed)
        self.terminal_id = terminal_id
        self.hrp = NETWORK_HRP.get(network, "bc")
        self.tz = tz
        self.node_key = secrets.token_bytes(32)
        self.cards = [hashlib.sha256(f"fill-card-{n}-{seed}".encode()).hexdigest()[:32]
                      for n in range(cards)]
        self.counters = dict.fromkeys(self.cards, 0)

    def times(self, sales: int, days: int, today: date) -> list[float]:
        """`sales` moments in opening hours over the `days` before `today`, in order."""
        first = today - timedelta(days=days)
        start = datetime.combine(first, dtime(OPEN_HOUR), tzinfo=self.tz).timestamp()
        out = []
        for _ in range(sales):
            day = self.rng.randrange(days)
            offset = self.rng.uniform(0, (CLOSE_HOUR - OPEN_HOUR) * 3600.0)
            out.append(start + day * 86_400.0 + offset)
        out.sort()
        return out

    def sale(self, at: float) -> SaleRecord:
        rng = self.rng
        method = "card" if rng.random() < 0.6 else "qr"
        outcome = _pick(rng, CARD_OUTCOMES if method == "card" else QR_OUTCOMES)
        code = _pick(rng, CURRENCIES)
        amount = _amount_minor(rng, code)
        tip = amount // 10 if code != "SAT" and rng.random() < 0.2 else 0
        amount += tip
        rate = MINOR_PER_SAT[code]
        msat = int(Decimal(amount) / rate * 1000)
        sale_id = uuid.UUID(int=rng.getrandbits(128)).hex
        memo = sale_memo(rng.choice(ITEMS), terminal_id=self.terminal_id, sale_id=sale_id)
        record = SaleRecord(
            id=sale_id, created_at=at, amount_minor=amount, currency=code,
            terminal_id=self.terminal_id, memo=memo, tip_minor=tip, method=method,
            rate_minor_per_sat=str(rate), rate_age_s=round(rng.uniform(1, 50), 1),
            invoice_final=True, synced=True)
        record.priced(msat)
        if outcome != "declined":
            self._invoice(record, at)
        if method == "card":
            card = rng.choice(self.cards)
            self.counters[card] += 1
            record.card_id, record.issuer, record.counter = card, "issuer.example", \
                self.counters[card]
        record.history, record.state, record.reason = self._story(outcome, method, at)
        record.updated_at = record.history[-1].at
        record.receipt_printed = record.state == "paid" and rng.random() < 0.7
        return record

    def _invoice(self, record: SaleRecord, at: float) -> None:
        payment_hash = secrets.token_bytes(32)
        record.bolt11 = bolt11.encode(
            private_key=self.node_key, currency=self.hrp, amount_msat=record.amount_msat,
            timestamp=int(at), payment_hash=payment_hash,
            payment_secret=secrets.token_bytes(32), description=record.memo, expiry=300)
        record.payment_hash = payment_hash.hex()
        record.invoice_ref = record.bolt11
        record.invoice_expires_at = at + 300

    def _story(self, outcome: str, method: str,
               at: float) -> tuple[list[StateChange], str, str | None]:
        rng = self.rng
        steps: list[tuple[str, str, str, str | None]] = [("created", "created", "created", None)]
        if outcome in ("offline-paid", "declined"):
            if outcome == "declined":
                steps.append(("declined", "created", "declined", "offline-card-cap"))
            else:
                steps += [("queued", "created", "queued", None),
                          ("submitted", "queued", "submitted", None),
                          ("paid", "submitted", "paid", None)]
        else:
            steps.append(("invoice_ready", "created", "invoiced", None))
            if method == "card" and outcome in ("paid", "failed"):
                steps += [("tap", "invoiced", "card_read", None),
                          ("withdraw_requested", "card_read", "withdraw_requested", None),
                          ("callback_sent", "withdraw_requested", "callback_sent", None)]
            last = steps[-1][2]
            if outcome == "paid":
                steps.append(("paid", last, "paid", None))
            elif outcome == "failed":
                steps.append(("fail", last, "failed",
                              rng.choice(["issuer-error", "insufficient-balance", "card-limit"])))
            elif outcome == "cancelled":
                steps.append(("cancel", last, "cancelled", "cancelled"))
            else:
                steps.append(("expired", last, "expired", "expired"))
        history, moment = [], at
        for event, before, after, detail in steps:
            history.append(StateChange(round(moment, 3), event, before, after, detail))
            moment += rng.uniform(0.3, 4.0) if after != "expired" else 300.0
        if outcome == "offline-paid":  # settled when the network came back, hours later
            for change in history[-2:]:
                change.at = round(change.at + rng.uniform(600, 4 * 3600), 3)
        final = steps[-1]
        return history, final[2], final[3]

    def fill(self, ledger: Ledger, sales: int, days: int, today: date) -> FillReport:
        if sales < 0 or days < 1:
            raise ValueError("sales must be 0 or more and days 1 or more")
        report = FillReport()
        moments = self.times(sales, days, today)
        for start in range(0, sales, BATCH):
            with ledger.transaction():  # one journal record and one archive move per batch
                for at in moments[start : start + BATCH]:
                    record = self.sale(at)
                    ledger.save_sale(record)
                    report.states[record.state] += 1
                    report.methods[record.method or "-"] += 1
                    report.currencies[record.currency] += 1
        report.sales = sales
        if moments:
            report.first_day = datetime.fromtimestamp(moments[0], self.tz).date()
            report.last_day = datetime.fromtimestamp(moments[-1], self.tz).date()
        return report


__all__ = ["BATCH", "FillReport", "HistoryWriter"]
