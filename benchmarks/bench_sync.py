"""Sync drain of N queued offline payouts against the sandbox (goal: 1,000 in ≤ 10 s).

Taps are queued through the real `Checkout` while invoice creation fails (sandbox fault), then a
`SyncWorker` drains them over loopback HTTP: per payout an invoice, the LNURL GET, the callback
and a status check, with the ledger's write-ahead fsyncs. The sandbox's own processing time
(it rewrites and fsyncs its whole state file on every change) is timed separately on its side.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sync.py [--payouts 1000] [--cards 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_sync import Rig, SyncPolicy  # noqa: E402


def _timed_sandbox(rig: Rig) -> list[float]:
    """Wrap the sandbox's request handlers to time its own work (runs on its loop thread)."""
    spent: list[float] = []
    core = rig.sb.core
    for name in ("create_invoice", "withdraw_request", "withdraw_check", "withdraw_pay", "status"):
        original = getattr(core, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        setattr(core, name, timed)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payouts", type=int, default=1000)
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--durable-sandbox", action="store_true",
        help="keep the sandbox's own fsynced whole-state rewrite on every change (it grows with "
        "every invoice, so the sandbox, not the terminal, dominates at 1,000)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one "offline mode" line per queued sale otherwise
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp))
        try:
            cards = [rig.new_card(10_000_000) for _ in range(args.cards)]
            taps = [(cards[i % args.cards], 1 + i // args.cards, 100) for i in range(args.payouts)]
            started = time.perf_counter()
            asyncio.run(rig.queue(taps))
            queued_s = time.perf_counter() - started
            if not args.durable_sandbox:
                rig.sb.core.store.save_state = lambda state: None  # sandbox state in memory only
            sandbox_spent = _timed_sandbox(rig)
            per_item: list[float] = []

            async def drain():
                backend, withdraw = rig.parts()
                worker = rig.worker(backend, withdraw, concurrency=args.concurrency,
                                    policy=SyncPolicy())
                original = worker._submit

                async def timed_submit(payout, state):
                    t0 = time.perf_counter()
                    try:
                        return await original(payout, state)
                    finally:
                        per_item.append(time.perf_counter() - t0)

                worker._submit = timed_submit
                try:
                    return await worker.run_once()
                finally:
                    await backend.aclose()
                    await withdraw.aclose()

            started = time.perf_counter()
            report = asyncio.run(drain())
            drain_s = time.perf_counter() - started
        finally:
            rig.close()
    assert report.paid == args.payouts, report.to_json()["items"][:3]
    per_item.sort()
    p95 = per_item[int(0.95 * (len(per_item) - 1))]
    sandbox_s = sum(sandbox_spent)
    print(f"sync drain: {args.payouts} payouts, {args.cards} cards, "
          f"concurrency {args.concurrency} (queueing took {queued_s:.1f} s; sandbox state "
          f"{'fsynced per change' if args.durable_sandbox else 'in memory'})")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'drain wall time (s)':<44}{drain_s:>12.2f}")
    print(f"{'payouts per second':<44}{args.payouts / drain_s:>12.1f}")
    print(f"{'per payout, median (ms)':<44}{statistics.median(per_item) * 1000:>12.1f}")
    print(f"{'per payout, p95 (ms)':<44}{p95 * 1000:>12.1f}")
    print(f"{'sandbox own processing, total (s)':<44}{sandbox_s:>12.2f}")
    print(f"{'drain minus sandbox processing (s)':<44}{drain_s - sandbox_s:>12.2f}")
    print(f"goal: ≤ 10 s for 1,000 → {'met' if drain_s <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
