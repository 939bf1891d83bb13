"""Per-card usage (`history --card`, the History screen's Cards view) over books of growing size:
before (every matching record read and counted in Python: `card_usage(sales_matching(...))`)
and after (`Ledger.card_usage`: SQL aggregates over the archive, the journal's few in Python),
and the archive's version 2 migration (the `cashier` column filled from the stored records).

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_card_usage.py [--sales N ...] [--dir DIR]
     [--runs R] [--before-runs B]

For each size the archive is written through its normal write path (`SaleArchive.put_docs`, in
batches of 5,000: a year of sales, ~1,000 cards, USD/JMD/SAT, tips on some, three cashiers and
nobody, a mix of states) and 40 sales are left in the journal (in flight, and settled ones not
moved yet). Each query runs in a fresh process (imports done first): median wall clock of R runs
(B for the slow "before" path) and the process's peak RSS growth over its size before opening the
books (VmHWM). Both paths are checked to give the same answer. The migration is timed on a copy
of the archive turned back into version 1: `Ledger(path)` opened for writing, as at the first
start after the update.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = 1_704_067_200.0  # 2024-01-01T00:00:00Z
DAYS = 365
CASHIERS = ("ana", "max", "zoe", None)
CURRENCIES = ("JMD", "JMD", "USD", "SAT")

CHILD = r"""
import gc, hashlib, json, statistics, sys, time, datetime as dt
def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
from terminal.adapters.books.ledger import Ledger
from terminal.core.card_usage import UsageFilter, card_usage
from terminal.core.history import SaleQuery
path, which, mode, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
UTC = dt.timezone.utc
day = dt.date(2024, 7, 15)
filters = {
    "every sale": UsageFilter(SaleQuery(tz=UTC)),
    "one cashier": UsageFilter(SaleQuery(tz=UTC), cashier="ana"),
    "a month": UsageFilter(SaleQuery(date_from=dt.date(2024, 7, 1), date_to=dt.date(2024, 7, 31),
                                     tz=UTC)),
    "a day (screen)": UsageFilter(SaleQuery(date_from=day, date_to=day, tz=UTC)),
}
usage = filters[which]
gc.collect()
base = rss_mb()
led = Ledger(path, read_only=True)
def before():
    return card_usage(r for r in led.sales_matching(usage.query) if usage.matches(r))
def after():
    return led.card_usage(usage)
work = before if mode == "before" else after
times = []
for _ in range(runs):
    gc.collect()
    t = time.perf_counter()
    got = work()
    times.append(time.perf_counter() - t)
digest = json.dumps([u.to_doc() for u in got], sort_keys=True)
print(json.dumps({"median": statistics.median(times), "rss": rss_mb() - base,
                  "cards": len(got),
                  "digest": hashlib.sha256(digest.encode()).hexdigest()}))
"""


def make_doc(n: int, size: int) -> dict:
    from terminal.adapters.books.ledger import sale_doc
    from terminal.core.records import SaleRecord, StateChange

    at = START + n * (DAYS * 86_400 / size)
    state = ("failed" if n % 17 == 0 else "declined" if n % 53 == 0
             else "queued" if n % 101 == 0 else "expired" if n % 61 == 0 else "paid")
    code = CURRENCIES[n % 4]
    minor = 150 + n % 5000
    tip = (minor // 10) if n % 7 == 0 else 0
    record = SaleRecord(
        id=f"{n:032x}", created_at=at, amount_minor=minor, currency=code, state=state,
        method="card" if n % 3 else "qr", card_id=f"{n % 997:032x}" if n % 3 else None,
        tip_minor=tip, cashier=CASHIERS[n % 4], payment_hash=f"{n:064x}", updated_at=at + 4,
        bolt11=f"lnbc{n}", invoice_final=True, synced=True,
        history=[StateChange(at, "created", "created", "created"),
                 StateChange(at + 4, state, "invoiced", state)])
    record.priced(minor * 1000 if code == "SAT" else minor * 7_000)
    return sale_doc(record)


def fill(path: Path, size: int) -> float:
    from terminal.adapters.books.archive import SaleArchive
    from terminal.adapters.books.layout import archive_path
    from terminal.adapters.books.ledger import Ledger
    from terminal.core.records import SaleRecord

    begin = time.perf_counter()
    Ledger(path).close()  # a new ledger, whose archive it adopts
    archive = SaleArchive(archive_path(path))
    for start in range(0, size, 5000):
        archive.put_docs([make_doc(n, size) for n in range(start, min(size, start + 5000))])
    archive.close()
    with Ledger(path, move_batch=1_000_000, move_after_s=1e12) as led:
        for k in range(40):  # in flight, and settled ones not moved yet
            doc = make_doc(size + k, size)
            doc["created_at"] = START + (DAYS - 1) * 86_400 + k * 60
            doc["state"] = ("queued", "invoiced", "paid", "failed")[k % 4]
            led.save_sale(SaleRecord.from_doc(doc))
    return time.perf_counter() - begin


def child(path: Path, which: str, mode: str, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), which, mode, str(runs)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def migrate(path: Path, tmp: Path) -> float:
    from terminal.adapters.books.layout import archive_path
    from terminal.adapters.books.ledger import Ledger

    copy = tmp / "migrate" / path.name
    copy.parent.mkdir()
    for source in path.parent.iterdir():
        if source.name.startswith(path.name.split(".")[0]):
            shutil.copy2(source, copy.parent / source.name)
    db = sqlite3.connect(archive_path(copy))
    db.execute("ALTER TABLE sales DROP COLUMN cashier")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'schema'")
    db.commit()
    db.execute("VACUUM")
    db.close()
    begin = time.perf_counter()
    Ledger(copy).close()
    took = time.perf_counter() - begin
    shutil.rmtree(copy.parent)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary dir)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before-runs", type=int, default=3)
    parser.add_argument("--no-migration", action="store_true")
    parser.add_argument("--no-queries", action="store_true", help="time the migration only")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        for size in args.sales:
            path = tmp / f"s{size}" / "ledger.jsonl"
            path.parent.mkdir()
            filled = fill(path, size)
            print(f"{size:,} sales filled in {filled:.0f} s", file=sys.stderr, flush=True)
            for which in () if args.no_queries else ("every sale", "one cashier", "a month",
                                                      "a day (screen)"):
                before = child(path, which, "before", args.before_runs)
                after = child(path, which, "after", args.runs)
                if (before["digest"], before["cards"]) != (after["digest"], after["cards"]):
                    raise SystemExit(f"{size} {which}: the two paths disagree")
                rows.append((size, which, before, after))
                print(rows[-1], file=sys.stderr, flush=True)
            if not args.no_migration:
                took = migrate(path, tmp)
                rows.append((size, "migration v1 -> v2", {"median": took}, None))
                print(rows[-1], file=sys.stderr, flush=True)
            shutil.rmtree(path.parent)
    print(f"Per-card usage, sales spread over {DAYS} days (~1,000 cards); before: records read "
          "and counted in Python; after: Ledger.card_usage. Medians, wall clock; RSS: peak "
          "growth of the process over its size before opening the books.")
    print(f"{'sales':>9} | {'selection':<20} | {'before s':>9} | {'after s':>9} | "
          f"{'ratio':>6} | {'RSS before MB':>13} | {'RSS after MB':>12} | {'cards':>5}")
    for size, which, before, after in rows:
        if after is None:
            print(f"{size:>9,} | {which:<20} | {before['median']:9.2f} | (first open for "
                  "writing of a version 1 archive)")
            continue
        print(f"{size:>9,} | {which:<20} | {before['median']:9.3f} | {after['median']:9.3f} | "
              f"{before['median'] / after['median']:6.0f} | {before['rss']:13.1f} | "
              f"{after['rss']:12.1f} | {after['cards']:>5}")


if __name__ == "__main__":
    main()
