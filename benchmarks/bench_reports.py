"""Shift and day reports over books of growing size: how long an X report, a day report and the
per-card usage take, and the memory they need (streamed: by groups, not by sales).

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_reports.py [--dir DIR] [--runs N]

For each size (10k and 100k settled sales over 30 days, 40 cards, three cashiers, a few failed
and queued ones) the books are filled with group commits (fsync off: filling is not measured),
then each report is timed `runs` times (median and worst, wall clock). "shift" is an X report
with no Z yet: every sale of the books; "day" one day's sales (a thirtieth); "day of one
cashier" the same day filtered; "cards" `history --card`'s per-card usage over every sale, as it
was (every record read, counted in Python) and as the books count it (`Ledger.card_usage`; see
also bench_card_usage.py). The
peak RSS of the whole run (VmHWM) shows the books plus the reports' working set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from terminal.adapters.books.ledger import Ledger
from terminal.core.card_usage import UsageFilter, card_usage
from terminal.core.history import SaleQuery
from terminal.core.records import SaleRecord, StateChange
from terminal.services.reports import Reports

SIZES = (10_000, 100_000)
DAYS = 30
UTC = dt.UTC
START = dt.datetime(2024, 5, 1, tzinfo=UTC).timestamp()
CASHIERS = ("ana", "max", "zoe")


def make_sale(n: int, size: int) -> SaleRecord:
    t = START + n * (DAYS * 86_400 / size)
    state = "failed" if n % 17 == 0 else "queued" if n % 101 == 0 else "paid"
    return SaleRecord(
        id=f"{n:032x}", created_at=t, amount_minor=1250 + n % 700, currency="JMD", state=state,
        method="card" if n % 3 else "qr", amount_msat=12_500_000, tip_minor=n % 5 * 10,
        tip_msat=n % 5 * 100_000, card_id=f"{n % 40:032x}" if n % 3 else None,
        cashier=CASHIERS[n % 3], payment_hash=f"{n:064x}", updated_at=t + 4,
        history=[StateChange(t, "created", "created", "created"),
                 StateChange(t + 4, state, "invoiced", state)],
    )


def fill(path: Path, size: int) -> None:
    with Ledger(path, fsync=False) as ledger:
        for start in range(0, size, 1000):
            with ledger.transaction():
                for n in range(start, min(size, start + 1000)):
                    ledger.save_sale(make_sale(n, size))


def timed(runs: int, work: Callable[[], object]) -> tuple[float, float]:
    out = []
    for _ in range(runs):
        gc.collect()
        begin = time.perf_counter()
        work()
        out.append(time.perf_counter() - begin)
    return statistics.median(out), max(out)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(path: Path, size: int, runs: int) -> list[tuple[int, str, tuple[float, float]]]:
    now = START + DAYS * 86_400
    day = dt.date(2024, 5, 15)
    with Ledger(path, read_only=True) as ledger:
        reports = Reports(ledger, clock=lambda: now, tz=UTC)
        check = reports.shift()
        assert check.total.sales == size, (check.total.sales, size)
        return [
            (size, "shift (X, every sale)", timed(runs, reports.shift)),
            (size, "day", timed(runs, lambda: reports.day(day))),
            (size, "day of one cashier", timed(runs, lambda: reports.day(day, cashier="ana"))),
            (size, "cards (records, before)",
             timed(runs, lambda: card_usage(ledger.sales_matching(SaleQuery())))),
            (size, "cards (books' SQL)", timed(runs, lambda: ledger.card_usage(UsageFilter()))),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary dir)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per report")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in SIZES:
            path = Path(tmp) / f"ledger-{size}.jsonl"
            fill(path, size)
            rows += measure(path, size, args.runs)
    print(f"Reports over settled sales spread over {DAYS} days, {args.runs} runs each "
          "(wall clock, ms)")
    print(f"{'sales':>8} | {'report':<24} | {'median':>9} | {'worst':>9} | {'per sale (µs)':>13}")
    for size, name, (med, worst) in rows:
        share = size / DAYS if name.startswith("day") else size
        print(f"{size:>8,} | {name:<24} | {med * 1000:9.1f} | {worst * 1000:9.1f} | "
              f"{med / share * 1e6:13.1f}")
    print(f"\nPeak RSS of the run (books and reports): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
