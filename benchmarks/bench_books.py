"""The books at scale: empty books and books holding N settled sales, measured side by side.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_books.py [--sales N] [--days D]
     [--dir DIR] [--samples S]

The filled books are written by `fill-history`'s writer (terminal/adapters/books/fill.py: a
realistic mix, real signed invoices, through the books' normal write path) into DIR/filled and
kept: a later run with the same --dir and --sales reuses them (filling a million sales takes
minutes, mostly signing invoices). Each measurement runs in a fresh Python process that has
already imported everything, so it times the books, not the interpreter:

- books open: `Ledger(path)` for writing, as the kiosk does at start (median of 7, and the first
  open in that process);
- peak RSS of the books: the process's peak resident size after opening the books, running a
  day's history and a month's CSV export, minus its size before opening them (interpreter and
  imports);
- one day's history: `sales_matching` for one local day, all records read, median over 20 days;
- a month's CSV export: `write_csv` of 30 days to a file, time and RSS growth over a day's export
  (constant memory: no growth with the range);
- appends: a new in-flight sale saved durably (the journal append every sale step makes), and a
  sale saved as settled (journal append; every `MOVE_BATCH`-th also moves the batch to the
  archive), median and 95th percentile.

Run it on the disk the terminal uses: fsync time is the disk's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import datetime as dt, gc, io, json, os, resource, statistics, sys, time
from terminal.adapters.books.ledger import Ledger
from terminal.core import history
from terminal.core.records import SaleRecord

path, samples = sys.argv[1], int(sys.argv[2])
def rss_mb():
    # VmHWM: this process's own peak (ru_maxrss would carry over the parent's peak across exec).
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gc.collect()
out = {"rss_before": rss_mb()}
start = time.perf_counter()
led = Ledger(path)
out["first_open_s"] = time.perf_counter() - start
led.close()
opens = []
for _ in range(7):
    start = time.perf_counter()
    led = Ledger(path)
    opens.append(time.perf_counter() - start)
    led.close()
out["open_s"] = statistics.median(opens)
led = Ledger(path)
out["rss_open"] = rss_mb()
counts = led.counts()
out["counts"] = counts
span = int(sys.argv[3])
today = dt.date.today()
days = [today - dt.timedelta(days=n) for n in range(1, span + 1)]  # the filled range
picked = days[:: max(1, len(days) // 20)][:20]
times, rows = [], []
for day in picked:
    q = history.SaleQuery(date_from=day, date_to=day)
    start = time.perf_counter()
    got = list(led.sales_matching(q))
    times.append(time.perf_counter() - start)
    rows.append(len(got))
out["day_s"] = statistics.median(times)
out["day_rows"] = statistics.median(rows)
out["rss_day"] = rss_mb()
with open(os.devnull, "w") as sink:
    q = history.SaleQuery(date_from=picked[0], date_to=picked[0])
    history.write_csv(led.sales_matching(q), sink)
    out["rss_day_export"] = rss_mb()
    last = max(days)
    q = history.SaleQuery(date_from=last - dt.timedelta(days=29), date_to=last)
    start = time.perf_counter()
    out["month_rows"] = history.write_csv(led.sales_matching(q), sink)
    out["month_s"] = time.perf_counter() - start
    out["rss_month_export"] = rss_mb()
q = history.SaleQuery(date_from=max(days) - dt.timedelta(days=364), date_to=max(days))
start = time.perf_counter()
report = history.report(led, q)
out["year_report_s"] = time.perf_counter() - start
out["year_report_sales"] = report.total.sales
inflight, settled = [], []
base = time.time()
for n in range(samples):
    r = SaleRecord(id=f"bench{os.getpid()}{n:020d}", created_at=base + n, amount_minor=1250,
                   currency="JMD", state="invoiced", method="qr", amount_msat=12_500_000,
                   bolt11="lnbc125u1p" + "q" * 320, payment_hash=os.urandom(32).hex())
    start = time.perf_counter()
    led.save_sale(r)
    inflight.append(time.perf_counter() - start)
    r.state = "paid"
    start = time.perf_counter()
    led.save_sale(r)
    settled.append(time.perf_counter() - start)
def stats(xs):
    xs = sorted(xs)
    return [statistics.median(xs), xs[int(0.95 * (len(xs) - 1))]]
out["append_inflight"] = stats(inflight)
out["append_settled"] = stats(settled)
led.close()
out["rss_peak"] = rss_mb()
print(json.dumps(out))
"""


def fill(directory: Path, sales: int, days: int) -> float | None:
    """Fill DIR/filled with `sales` settled sales unless it already holds them; the seconds."""
    from terminal.adapters.books.fill import HistoryWriter
    from terminal.adapters.books.ledger import Ledger

    path = directory / "ledger.jsonl"
    marker = directory / "filled.json"
    if marker.exists() and json.loads(marker.read_text()).get("sales") == sales:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    writer = HistoryWriter(terminal_id="ft-bench", cards=50, seed=1)
    start = time.perf_counter()
    with Ledger(path) as ledger:
        writer.fill(ledger, sales, days, dt.date.today())
    took = time.perf_counter() - start
    marker.write_text(json.dumps({"sales": sales, "days": days, "fill_s": took}))
    return took


def measure(path: Path, samples: int, days: int) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(path), str(samples), str(days)],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout)


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=2000,
                        help="spread of the filled sales (default 2000: ~500 a day)")
    parser.add_argument("--dir", type=Path, help="where the books live (default: a temp dir)")
    parser.add_argument("--samples", type=int, default=300, help="timed appends of each kind")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-books-"))
    took = fill(base / "filled", args.sales, args.days)
    if took is not None:
        print(f"filled {args.sales:,} sales over {args.days} days in {took:.0f} s "
              f"({took / max(1, args.sales) * 1e3:.2f} ms per sale, invoice signing included)")
    empty_dir = base / "empty"
    empty_dir.mkdir(parents=True, exist_ok=True)
    for old in empty_dir.iterdir():
        old.unlink()
    from terminal.adapters.books.ledger import Ledger

    Ledger(empty_dir / "ledger.jsonl").close()
    empty = measure(empty_dir / "ledger.jsonl", args.samples, args.days)
    full = measure(base / "filled" / "ledger.jsonl", args.samples, args.days)
    report(args, empty, full, size_mb(empty_dir), size_mb(base / "filled"))


def report(args, empty: dict, full: dict, empty_mb: float, full_mb: float) -> None:
    n = full["counts"]["sales_archived"] + full["counts"]["sales_in_flight"]

    def books_rss(r: dict) -> float:
        return r["rss_peak"] - r["rss_before"]

    ratio = full["open_s"] / empty["open_s"]
    rows = [
        ("books open (kiosk start), median ms", f"{empty['open_s'] * 1e3:.1f}",
         f"{full['open_s'] * 1e3:.1f}", "<= 500 ms, <= 1.2x empty",
         full["open_s"] <= 0.5 and ratio <= 1.2, f"ratio {ratio:.2f}x"),
        ("first open in a new process, ms", f"{empty['first_open_s'] * 1e3:.1f}",
         f"{full['first_open_s'] * 1e3:.1f}", "", None, ""),
        ("peak RSS of the books, MB (process peak - before open)",
         f"{books_rss(empty):.1f}", f"{books_rss(full):.1f}", "<= 50 MB",
         books_rss(full) <= 50, f"process peak {full['rss_peak']:.0f} MB, "
         f"interpreter+imports {full['rss_before']:.0f} MB"),
        ("one day's history, median ms (rows)", f"{empty['day_s'] * 1e3:.1f}",
         f"{full['day_s'] * 1e3:.1f} ({full['day_rows']:.0f})", "<= 50 ms",
         full["day_s"] <= 0.05, ""),
        ("a month's CSV export, s (rows)", f"{empty['month_s']:.2f}",
         f"{full['month_s']:.2f} ({full['month_rows']:,})", "constant memory",
         full["rss_month_export"] - full["rss_day_export"] <= 2.0,
         f"RSS growth over a day's export: "
         f"{full['rss_month_export'] - full['rss_day_export']:.1f} MB"),
        ("a year's totals (report), s (sales)", f"{empty['year_report_s']:.2f}",
         f"{full['year_report_s']:.2f} ({full['year_report_sales']:,})", "", None, ""),
        ("in-flight append, durable, ms median / p95",
         "{:.3f} / {:.3f}".format(*(x * 1e3 for x in empty["append_inflight"])),
         "{:.3f} / {:.3f}".format(*(x * 1e3 for x in full["append_inflight"])), "<= 1 ms",
         full["append_inflight"][0] <= 0.001, ""),
        ("settled-sale save, durable, ms median / p95",
         "{:.3f} / {:.3f}".format(*(x * 1e3 for x in empty["append_settled"])),
         "{:.3f} / {:.3f}".format(*(x * 1e3 for x in full["append_settled"])), "<= 1 ms",
         full["append_settled"][0] <= 0.001, "p95: the batch's move to the archive"),
        ("files on disk, MB", f"{empty_mb:.2f}", f"{full_mb:,.0f}", "", None, ""),
    ]
    print(f"\nThe books: empty vs {n:,} settled sales ({args.days} days), one run, "
          f"{args.samples} appends of each kind\n")
    print(f"| measure | empty | {n:,} settled | goal | met | note |")
    print("|---|---|---|---|---|---|")
    for name, e, f, goal, met, note in rows:
        flag = "" if met is None else ("yes" if met else "NO")
        print(f"| {name} | {e} | {f} | {goal} | {flag} | {note} |")


if __name__ == "__main__":
    main()
