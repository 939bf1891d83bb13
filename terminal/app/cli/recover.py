"""`flash-terminal recover`: restore the paid sales the books lack, from the backend.

    flash-terminal recover --since DATE [--config FILE] [--dry-run] [--json]

Lists the payments the backend holds for this terminal since DATE (YYYY-MM-DD, local midnight,
or an ISO 8601 time) and restores every paid sale the books lack, marked as recovered; a sale
the books hold as cancelled or failed whose payment arrived is settled as paid (see
terminal/services/recovery.py). Running it twice restores nothing new. With --dry-run nothing is
written (the books are opened read-only, so it also works while the terminal runs).

Flash needs an API key with the `read_transactions` scope; BTCPay the `canviewinvoices`
permission.

JSON (--json): {"since", "dry_run", "payments", "restored": [{"sale_id", "payment_hash",
"amount_msat", "settled_at"}], "settled": [... "state_before"], "present": N, "skipped": [...
"reason"]}.
Exit codes (terminal.app.cli.exits): 0 done (also when nothing was missing), 2 usage, 5 the books
are in use (stop the terminal first), 6 the books are damaged (run `flash-terminal ledger repair`
first), 7 the books could not be read or written, 8 the backend could not list its payments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from datetime import date, datetime

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_BACKEND, EXIT_BUSY, EXIT_OK, EXIT_STORAGE

EXIT_FAILED = EXIT_STORAGE  # kept: the name other modules may import
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def since_arg(text: str) -> float:
    """YYYY-MM-DD (local midnight) or an ISO 8601 time, as unix seconds."""
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day).timestamp()
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date as YYYY-MM-DD or an ISO 8601 time, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recover", help="restore paid sales the books lack from the backend",
        description="Restore every paid sale the backend holds for this terminal since DATE "
        "that the books lack, marked as recovered. Idempotent.")
    parser.add_argument("--since", type=since_arg, required=True, metavar="DATE",
                        help="look at payments from this local date (YYYY-MM-DD) or ISO time")
    parser.add_argument("--config", metavar="FILE",
                        help="terminal configuration (default: $FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be restored")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_recover, parser=parser)


def _recover(args: argparse.Namespace) -> int:
    from terminal.adapters.books.errors import BooksDamaged, StorageError, StorageLockedError
    from terminal.core.ports.backend import BackendError

    if args.since > time.time():
        args.parser.error("--since is in the future")
    config = load_config_or_exit(args)
    try:
        report = asyncio.run(_run(config, args.since, args.dry_run))
    except BooksDamaged:
        raise  # exit 6, with its paragraph (terminal.app.cli)
    except StorageError as exc:
        print(f"flash-terminal recover: {exc}", file=sys.stderr)
        return EXIT_BUSY if isinstance(exc, StorageLockedError) else EXIT_STORAGE
    except BackendError as exc:  # its message names a missing scope or permission
        print(f"flash-terminal recover: the backend could not list its payments: "
              f"{exc.message}", file=sys.stderr)
        return EXIT_BACKEND
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        _print(report)
    return EXIT_OK


async def _run(config, since: float, dry_run: bool):
    from terminal.adapters.books.layout import journal_path
    from terminal.adapters.books.ledger import Ledger
    from terminal.app.root import build_backend, open_ledger, terminal_id
    from terminal.services.recovery import Recovery

    # The books first: damaged or in use, nothing is asked of the backend.
    ledger = (Ledger(journal_path(config.data_dir), read_only=True) if dry_run
              else open_ledger(config))
    try:
        backend = build_backend(config)
        try:
            recovery = Recovery(backend, ledger, terminal_id=terminal_id(config),
                                clock=time.time)
            return await recovery.run(since, dry_run=dry_run)
        finally:
            await backend.aclose()
    finally:
        ledger.close()


def _print(report) -> None:
    verb = "would be " if report.dry_run else ""
    for item in report.items:
        if item.outcome in ("restored", "settled"):
            was = f" (was {item.state_before})" if item.state_before else ""
            print(f"sale {item.sale_id[:12]}  {item.amount_msat // 1000:>9,} sats  "
                  f"{verb}{item.outcome}{was}")
        elif item.outcome == "skipped":
            print(f"payment {item.payment_hash[:12]}  skipped: {item.reason}")
    print(f"{report.payments} payment(s) since "
          f"{datetime.fromtimestamp(report.since):%Y-%m-%d %H:%M}: "
          f"{len(report.of('restored'))} {verb}restored, {len(report.of('settled'))} "
          f"{verb}settled, {len(report.of('present'))} already in the books, "
          f"{len(report.of('skipped'))} skipped")
