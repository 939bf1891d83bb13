"""Durable append latency: our journal ledger versus stock TinyDB JSONStorage, by ledger size.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_ledger.py [--dir DIR] [--samples N]
     [--stock-max N]

For each size (1k, 10k, 100k sales already recorded) the ledger is first filled (ours with group
commits, stock by writing its JSON file once), then `samples` new sales are appended one by one,
each durable (fsync) before the next, and timed in wall-clock time (fsync is I/O). The table
shows the median and 95th percentile time per append at that size. "ours (CPU)" is the same
append with fsync off: the storage's own cost, which must not grow with the ledger (O(1)).
Stock TinyDB is measured directly up to --stock-max records; beyond that its per-append time
is extrapolated linearly from the largest measured size (it re-reads and rewrites the whole file
on every append, O(n)).
The sales are settled (paid): the books acknowledge each with one journal append (and its
sequence record) and move them to the archive in batches, so the 95th percentile includes
the batches' moves. benchmarks/bench_books.py measures the books at a million sales.
Run it on the disk the terminal uses: fsync time is the disk's.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinydb import TinyDB
from tinydb.storages import JSONStorage

from terminal.adapters.books.ledger import Ledger
from terminal.core.records import SaleRecord, StateChange

SIZES = (1_000, 10_000, 100_000)
BOLT11 = "lnbc125u1p" + "q" * 320  # a realistic length: a sale keeps its invoice


def make_sale(n: int) -> SaleRecord:
    t = 1_700_000_000.0 + n
    return SaleRecord(
        id=f"{n:032x}", created_at=t, amount_minor=1250, currency="JMD", state="paid",
        terminal_id="ft-bench", method="card", amount_msat=12_500_000, bolt11=BOLT11,
        payment_hash=f"{n:064x}", invoice_expires_at=t + 300, card_id=f"{n % 500:032x}",
        issuer="issuer-1", counter=n, updated_at=t + 4,
        history=[StateChange(t, "created", "created", "created"),
                 StateChange(t + 1, "invoice_ready", "created", "invoiced"),
                 StateChange(t + 2, "tap", "invoiced", "card_read"),
                 StateChange(t + 4, "paid", "callback_sent", "paid")],
    )


def timed(samples: int, append: Callable[[SaleRecord], None], first: int) -> list[float]:
    """Seconds per append; the record is built before the clock starts."""
    gc.collect()  # start each window from the same garbage-collector state
    out = []
    for n in range(first, first + samples):
        record = make_sale(n)
        start = time.perf_counter()
        append(record)
        out.append(time.perf_counter() - start)
    return out


def ours(directory: Path, size: int, samples: int, fsync: bool) -> list[float]:
    path = directory / f"ours-{size}-{fsync}.jsonl"
    ledger = Ledger(path, fsync=fsync)
    for start in range(0, size, 1000):
        with ledger.transaction():  # group commit: one fsync per 1,000 sales while filling
            for n in range(start, min(size, start + 1000)):
                ledger.save_sale(make_sale(n))
    try:
        return timed(samples, ledger.save_sale, size)
    finally:
        ledger.close()
        path.unlink()


def stock(directory: Path, size: int, samples: int) -> list[float]:
    path = directory / f"stock-{size}.json"
    with path.open("w") as fh:
        json.dump({"sales": {str(n + 1): make_sale(n).to_doc() for n in range(size)}}, fh)
    db = TinyDB(path, storage=JSONStorage)  # JSONStorage flushes and fsyncs every write
    table = db.table("sales")
    try:
        return timed(samples, lambda r: table.insert(r.to_doc()), size)
    finally:
        db.close()
        path.unlink()


def stats(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(ordered), p95


def ms(value: float) -> str:
    return f"{value * 1000:9.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary dir)")
    parser.add_argument("--samples", type=int, default=500, help="timed appends per size")
    parser.add_argument("--stock-max", type=int, default=10_000,
                        help="largest size at which stock TinyDB is measured (default 10000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        rows = []
        stock_known: tuple[int, float, float] | None = None
        for size in SIZES:
            durable = stats(ours(directory, size, args.samples, fsync=True))
            cpu = stats(ours(directory, size, args.samples, fsync=False))
            if size <= args.stock_max:
                # Stock appends cost O(size): fewer samples at the larger sizes.
                n = max(20, min(args.samples, 200_000 // size))
                base = stats(stock(directory, size, n))
                stock_known = (size, *base)
                note = f"measured, {n} appends"
            else:
                assert stock_known is not None
                known_size, med, p95 = stock_known
                base = (med * size / known_size, p95 * size / known_size)
                note = f"extrapolated from {known_size:,}"
            rows.append((size, durable, cpu, base, note))

    print(f"Durable append (save_sale of a new sale, fsync each), ms per append; "
          f"{args.samples} timed appends per size for ours.")
    print(f"{'records':>8} | {'ours med':>9} {'ours p95':>9} | {'CPU med':>9} {'CPU p95':>9} | "
          f"{'stock med':>9} {'stock p95':>9} | {'ratio':>7} | stock")
    for size, (om, op), (cm, cp), (sm, sp), note in rows:
        print(f"{size:>8,} | {ms(om)} {ms(op)} | {ms(cm)} {ms(cp)} | {ms(sm)} {ms(sp)} | "
              f"{sm / om:6.0f}x | {note}")
    ten_k = next(r for r in rows if r[0] == 10_000)
    print(f"\nRatio at 10k (stock median / ours median): {ten_k[3][0] / ten_k[1][0]:.0f}x "
          "(goal >= 50x)")
    growth = rows[-1][2][0] / rows[0][2][0]
    print(f"Our CPU cost per append, 100k vs 1k records: {growth:.2f}x (O(1): ~1x)")


if __name__ == "__main__":
    main()
