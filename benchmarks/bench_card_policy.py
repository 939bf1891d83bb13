"""What the card policy hook adds to a tap: `CardPolicy.check` over real books, by their size.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_card_policy.py [--samples N]

The books are filled with `--sales` settled sales (group commits, then archived), spread over the
last 30 days across 500 cards, plus `--today` sales of the tapped card today; a hotlist snapshot
of `--hotlist` card ids is installed. Each row times `check` on a verified tap (median and 95th
percentile, microseconds):
- no limits, not blocked: the hotlist lookup only (the common case);
- blocked: found in the hotlist, and the refusal recorded in the books (one durable event
  write: fsync, so this row is mostly the disk's);
- limits set: the hotlist lookup plus the day's spend counted from the books (an indexed query of
  the card's sales since midnight/the last hour).
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import tempfile
import time
from pathlib import Path

from terminal.adapters.books.ledger import Ledger
from terminal.core.card_limits import CardLimits
from terminal.core.hotlist import HotlistSnapshot
from terminal.core.records import SaleRecord
from terminal.protocols.boltcard import TapVerification
from terminal.services.card_policy import CardPolicy, CardPolicySettings

CARD = "c" * 32


def _sale(n: int, at: float, card_id: str) -> SaleRecord:
    return SaleRecord(id=f"{n:032x}", created_at=at, amount_minor=1000, currency="SAT",
                      state="paid", method="card", amount_msat=1_000_000, card_id=card_id,
                      issuer="bench", counter=n, payment_hash=f"{n:064x}", updated_at=at)


def _fill(ledger: Ledger, sales: int, today: int, now: float) -> None:
    batch = 500
    for start in range(0, sales, batch):
        with ledger.transaction():
            for n in range(start, min(sales, start + batch)):
                at = now - 30 * 86400 + n * (30 * 86400 / max(1, sales))
                ledger.save_sale(_sale(n, at, f"{n % 500:032x}"))
    with ledger.transaction():
        for k in range(today):
            ledger.save_sale(_sale(sales + k, now - 60 * k - 1, CARD))


def _time(samples: int, fn) -> list[float]:
    gc.collect()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"{name:<44}{statistics.median(ordered) * 1e6:>10.1f}{p95 * 1e6:>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--sales", type=int, default=20_000)
    parser.add_argument("--today", type=int, default=20)
    parser.add_argument("--hotlist", type=int, default=10_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    now = time.time()
    tap = TapVerification(True, None, "bench", CARD, 7)
    blocked_tap = TapVerification(True, None, "bench", f"{1:032x}", 7)
    url = "https://cards.example.com/ln?p=00&c=00"
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.jsonl")
        _fill(ledger, args.sales, args.today, now)
        free = CardPolicy(ledger, CardPolicySettings(sources=("issuer",)))
        free.store_snapshot(HotlistSnapshot("issuer", now, {
            f"{n:032x}": "lost" for n in range(1, args.hotlist + 1)}))
        limited = CardPolicy(ledger, CardPolicySettings(
            defaults=CardLimits(per_tap_msat=10**9, per_day_msat=10**12, taps_per_hour=1000),
            sources=("issuer",)))
        rows = [
            ("no limits, not blocked", _time(args.samples, lambda: free.check(
                tap, url, amount_msat=1000, online=True))),
            ("blocked (+ the refusal's durable event)", _time(args.samples, lambda: free.check(
                blocked_tap, url, amount_msat=1000, online=True))),
            ("limits set: spend counted from the books", _time(args.samples, lambda: limited.check(
                tap, url, amount_msat=1000, online=True))),
        ]
        ledger.close()
    print(f"card policy check, {args.sales:,} archived sales + {args.today} of the card today, "
          f"hotlist of {args.hotlist:,} cards")
    print(f"{'case (µs)':<44}{'median':>10}{'p95':>10}")
    for name, values in rows:
        print(_row(name, values))


if __name__ == "__main__":
    main()
