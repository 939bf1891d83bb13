"""Terminal-added latency on the tap path, against the sandbox with zero injected latency.

Two intervals, each minus the sandbox's own processing (timed on its side, same process clock):
- tap → callback sent: from `SaleSession.tap(url)` to the moment the callback request is handed
  to the LNURL client (SUN check, counter write, GET, withdrawRequest checks, write-ahead);
  the sandbox's GET handler time is subtracted.
- payment pushed → sale marked paid: from the end of the sandbox's settlement (it has just pushed
  the status on the WebSocket) to the ledger write that marks the sale paid.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tap_path.py [--sales 60]
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

from helpers.sync_rig import Rig  # noqa: E402

from terminal.app.root import build_keyring  # noqa: E402
from terminal.services.checkout import Checkout  # noqa: E402


def _row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"{name:<52}{statistics.median(ordered) * 1000:>9.2f}{p95 * 1000:>9.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=60)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    raw_tap, net_tap, net_push = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp))
        core = rig.sb.core
        marks: dict[str, float] = {}
        get_handler = core.withdraw_request
        settle = core.settle

        def timed_get(p, c):
            t0 = time.perf_counter()
            try:
                return get_handler(p, c)
            finally:
                marks["get_s"] = time.perf_counter() - t0

        def timed_settle(record, paid_by):
            settle(record, paid_by)
            marks["settled"] = time.perf_counter()

        core.withdraw_request, core.settle = timed_get, timed_settle
        card = rig.new_card(10_000_000)

        async def run() -> None:
            backend, withdraw = rig.parts()
            checkout = Checkout(backend=backend, withdraw=withdraw,
                                keyring=build_keyring(rig.config), ledger=rig.ledger,
                                terminal_id="bench", network=rig.config.network)
            submit = withdraw.submit
            save_sale = rig.ledger.save_sale

            async def marked_submit(*a, **k):
                marks["callback"] = time.perf_counter()
                return await submit(*a, **k)

            def marked_save(record):
                save_sale(record)
                if record.state == "paid":
                    marks["paid"] = time.perf_counter()

            withdraw.submit, rig.ledger.save_sale = marked_submit, marked_save
            try:
                for i in range(args.sales + 5):  # the first 5 warm connections and caches
                    # tap → callback sent
                    session = await checkout.open_sale(100, "SAT")
                    t0 = time.perf_counter()
                    result = await session.tap(rig.tap_url(card, 1 + i))
                    assert result.kind == "accepted", result
                    await session.wait_settled(10)
                    if i >= 5:
                        raw = marks["callback"] - t0
                        raw_tap.append(raw)
                        net_tap.append(raw - marks["get_s"])
                    # payment pushed → sale marked paid (QR, paid by a wallet)
                    session = await checkout.open_sale(100, "SAT")
                    waiting = asyncio.create_task(session.wait_settled(10))
                    await asyncio.sleep(0.05)  # let the subscription come up
                    await asyncio.to_thread(rig.sb.pay_invoice, session.invoice.bolt11)
                    outcome = await waiting
                    assert outcome.status == "paid"
                    if i >= 5:
                        net_push.append(marks["paid"] - marks["settled"])
            finally:
                await backend.aclose()
                await withdraw.aclose()

        try:
            asyncio.run(run())
        finally:
            rig.close()
    print(f"tap path, {args.sales} sales, sandbox on loopback with zero injected latency")
    print(f"{'interval (ms)':<52}{'median':>9}{'p95':>9}")
    print(_row("tap → callback sent (raw)", raw_tap))
    print(_row("tap → callback sent (minus sandbox GET handler)", net_tap))
    print(_row("payment pushed → sale marked paid", net_push))
    print("goal: ≤ 5 ms median for each terminal-added interval")


if __name__ == "__main__":
    main()
