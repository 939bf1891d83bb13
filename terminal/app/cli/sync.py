"""`flash-terminal sync`: one sync pass by hand, printing what it did.

Settles sales through their invoice status (open ones as after a restart, and every cancelled,
failed or unconfirmed one whose invoice the backend has not declared final, however old), sends
queued offline payouts, and marks finished sales synced.

Exit 0 when nothing failed (also when the running terminal holds the ledger: it syncs itself),
4 when a payout failed, 8 when the backend could not be reached (nothing is lost: the next run
retries), 2 usage errors (including an unusable configuration), 6 damaged books, 7 a full disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from terminal.adapters.books.storage import StorageLockedError
from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_BACKEND, EXIT_NOT_PAID, EXIT_OK, paragraph

EXIT_PAYMENT_FAILED = EXIT_NOT_PAID


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sync", help="send queued offline payments now (one pass)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_sync, parser=parser)


def _sync(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args)
    try:
        recovered, report, unreachable = asyncio.run(_run(config))
    except StorageLockedError:
        # The kiosk app holds the ledger and runs the same sync worker itself.
        message = "the running terminal has the ledger open and syncs it itself: nothing to do"
        print(json.dumps({"skipped": message}) if args.json else message)
        return EXIT_OK
    if report.backend_down is None and unreachable:
        # No payout needed the backend, but a sale's invoice could not be asked about: that
        # sale is still open (nothing lost) and this pass could not settle it.
        report.backend_down = paragraph(unreachable)
    if args.json:
        print(json.dumps({
            "sales": [o.to_json() for o in recovered],
            **report.to_json(),
        }))
    else:
        _print(recovered, report)
    if not report.ok:
        return EXIT_PAYMENT_FAILED
    return EXIT_BACKEND if report.backend_down else EXIT_OK


async def _run(config):
    from terminal.app.root import build_terminal, terminal_id
    from terminal.core.connectivity import Link
    from terminal.services.sync import SyncWorker

    terminal = build_terminal(config)
    try:
        recovered = await terminal.checkout.recover()
        worker = SyncWorker(
            terminal.ledger,
            terminal.backend,
            terminal.withdraw,
            terminal.checkout.connectivity,
            terminal_id=terminal_id(config),
            invoice_expiry_s=config.invoice_expiry_s,
        )
        report = await worker.run_once(force=True)  # by hand: try everything now
        link = terminal.checkout.connectivity
        return recovered, report, link.last_error if link.state is Link.OFFLINE else None
    finally:
        await terminal.aclose()


def _print(recovered, report) -> None:
    for outcome in recovered:
        print(f"sale {outcome.sale_id[:12]}  {outcome.status}"
              + (f"  ({paragraph(outcome.reason)})" if outcome.reason else ""))
    if not report.items:
        print("no queued offline payments")
    for item in report.items:
        reason = f"  {item.reason}" if item.reason else ""
        print(f"sale {item.sale_id[:12]}  card {item.card_id[:8]}…  {item.amount_sats:>9,} sats  "
              f"{item.outcome.upper()}{reason}  {paragraph(item.message)}")
    print(f"paid {report.paid}, failed {report.failed}, still pending {report.pending}; "
          f"{report.reported_sales} finished sale(s) marked synced")
    if report.backend_down:
        print(f"backend unreachable: {paragraph(report.backend_down)}")
