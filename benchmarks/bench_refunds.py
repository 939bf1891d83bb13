"""How long a refund takes, end to end against the local sandbox (real HTTP on loopback, the books
on disk), and what resolving an unclear one costs.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_refunds.py [--refunds 20] [--history 0,50,100]

Rows:
  to an address             resolve `name@127.0.0.1:PORT` (LUD-16: payRequest, callback, the
                            invoice checked), write-ahead, `lnInvoicePaymentSend`, recorded sent
  to the card that paid     the tap checked (SUN), its withdrawRequest read without calling back,
                            its LUD-19 payLink resolved, then as above
  a BOLT11 shown            no LNURL round trips: the invoice checked, sent, recorded
  resolve a pending refund  one `find_sent` over the wallet's transactions (`transactions` + one
                            `transactionDetails` per candidate row, cached), by how many rows the
                            wallet's history holds before the refund's own

Each refund is of one paid sale (a 1 sat refund of a large sale). Time is the terminal's wall
time for `RefundService.refund` (and `resolve_open`), the sandbox in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _row(name: str, samples: list[float], extra: str = "") -> str:
    ms = [s * 1000 for s in samples]
    return (f"{name:<34} {statistics.median(ms):>9.1f} {min(ms):>9.1f} {max(ms):>9.1f}"
            f"  {extra}")


async def _bench(refunds: int, histories: list[int]) -> None:
    from helpers.refund_flow import sending_config

    from terminal.adapters import simcards
    from terminal.app.config import load_config
    from terminal.app.root import build_refunds, build_terminal
    from terminal.core.money import Money, currency
    from terminal.protocols.boltcard.provisioning import BoltcardKeys
    from terminal.sandbox.limits import UNLIMITED
    from terminal.sandbox.server import Sandbox
    from terminal.services.refunds import RefundRequest

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sandbox = Sandbox(work / "sb", limits=UNLIMITED)
        await sandbox.start()
        try:
            uid = simcards.new_uid()
            issued = sandbox.register_card(uid, 10_000_000)
            keys = BoltcardKeys.of([bytes.fromhex(issued[f"k{n}"]) for n in range(5)],
                                   version=int(issued["version"]))
            card = work / "card.json"
            simcards.create_programmed(card, issued["lnurlw_base"].replace("lnurlw://",
                                                                            "http://", 1),
                                       keys, uid)
            config = load_config(sending_config(sandbox, work / "terminal.toml"))
            terminal = build_terminal(config)
            service = build_refunds(config, terminal)
            session = await terminal.checkout.open_sale(5_000_000, "SAT")
            await session.tap(simcards.tap(card))
            await session.wait_settled(10)
            sale_id = session.record.id
            one = Money(1, currency("SAT"))
            print(f"{'refund':<34} {'median ms':>9} {'min':>9} {'max':>9}")

            async def timed(request: RefundRequest) -> float:
                started = time.perf_counter()
                outcome = await service.refund(request)
                assert outcome.status == "sent", outcome
                return time.perf_counter() - started

            address = sandbox.address("bench")
            print(_row("to an address", [await timed(RefundRequest(sale_id, one, to=address))
                                          for _ in range(refunds)]))
            card_times = []
            for _ in range(refunds):
                card_times.append(await timed(RefundRequest(sale_id, one,
                                                            tap_url=simcards.tap(card))))
            print(_row("to the card that paid", card_times))
            bolt_times = []
            for _ in range(refunds):
                pr = sandbox.core.address_invoice("bench-pr", 1000)["pr"]
                bolt_times.append(await timed(RefundRequest(sale_id, None, to=pr)))
            print(_row("a BOLT11 shown", bolt_times))
            for rows in histories:
                for _ in range(rows):  # other sends before the refund's own row
                    pr = sandbox.core.address_invoice("bench-noise", 1000)["pr"]
                    sandbox.core.send(sandbox.wallet_id("USD"), pr, None)
                sandbox.faults.update({"send_pending_next": 1})
                service.pending_wait_s = 0
                outcome = await service.refund(RefundRequest(sale_id, one, to=address))
                assert outcome.status == "pending"
                payment_hash = next(iter(sandbox.core.in_flight))
                sandbox.core.finish_pending(payment_hash, True)
                started = time.perf_counter()
                [resolved] = [o for o in await service.resolve_open()
                              if o.refund_id == outcome.refund_id]
                took = time.perf_counter() - started
                assert resolved.status == "sent"
                print(_row(f"resolve a pending refund ({rows:>3} rows)", [took],
                           f"{len(sandbox.core.state.transactions)} rows in the wallet"))
            await terminal.aclose()
        finally:
            await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refunds", type=int, default=20)
    parser.add_argument("--history", default="0,50,100",
                        help="rows of other sends before the pending refund's own")
    args = parser.parse_args()
    asyncio.run(_bench(args.refunds, [int(n) for n in args.history.split(",") if n]))


if __name__ == "__main__":
    main()
