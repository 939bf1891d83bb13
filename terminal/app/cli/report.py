"""`flash-terminal report`: the shift (X, or Z with --close) or a day, as the counter prints it.

    flash-terminal report (--shift | --day YYYY-MM-DD) [--close] [--cashier ID] [--print]
                          [--config FILE] [--json]

Contract (`--json`): `{"from", "to", "sales", "gross_msat", "tips_msat", "refunds_msat",
"net_msat", "by_method": {…}, "by_cashier": {…}, "by_currency": {…}, "queued_msat", "failed": N}`
(`terminal.core.reports`). Totals follow the one counting rule history uses: the report of a day
equals the sum over `history --from DAY --to DAY --export json`. A shift starts where the last Z
ended; `--close` makes this report the Z (the next shift starts now); it needs the books for
writing, so close from the terminal's screen while the terminal app runs.
Exit codes: 0 ok, 1 the books could not be read (or are held by the running terminal, for
--close), 2 usage (also an unusable configuration), 6 the books are damaged.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_BUSY
from terminal.app.cli.history import _date_arg

EXIT_OK = 0
EXIT_ERROR = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="shift (X/Z) and day reports",
        description="What a shift (since the last Z) or a day adds up to: sales, tips, refunds, "
        "net, per method, cashier and currency, offline sales not settled yet, failed attempts.")
    period = parser.add_mutually_exclusive_group(required=True)
    period.add_argument("--shift", action="store_true",
                        help="the shift in progress, since the last Z report (X report)")
    period.add_argument("--day", type=_date_arg, metavar="YYYY-MM-DD", help="one local day")
    parser.add_argument("--close", action="store_true",
                        help="close the shift: this report is its Z, the next shift starts now")
    parser.add_argument("--cashier", metavar="ID", help="only the sales of this cashier id "
                        "(`none`: rung up without a sign-in)")
    parser.add_argument("--print", dest="print_", action="store_true",
                        help="also print it on the configured receipt printer")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run_report, parser=parser)


def run_report(args: argparse.Namespace) -> int:
    from terminal.adapters.books.errors import BooksDamaged, StorageError
    from terminal.adapters.books.layout import journal_path
    from terminal.adapters.books.ledger import Ledger
    from terminal.adapters.books.storage import StorageLockedError
    from terminal.services.reports import Reports, ShiftError

    parser: argparse.ArgumentParser = args.parser
    if args.close and not args.shift:
        parser.error("--close closes a shift: use it with --shift")
    if args.close and args.cashier:
        parser.error("a shift closes for every cashier at once: leave out --cashier")
    cashier = args.cashier.strip().lower() if args.cashier else None
    config = load_config_or_exit(args)  # an unusable configuration: exit 2, as everywhere
    path = journal_path(config.data_dir)
    if not path.exists() and not args.close:
        print(f"flash-terminal report: no sales recorded yet ({path} does not exist)",
              file=sys.stderr)
    try:
        with Ledger(path, read_only=not args.close) as ledger:
            reports = Reports(ledger)
            if args.shift:
                report = reports.shift(close=args.close, cashier=cashier)
            else:
                report = reports.day(args.day or date.today(), cashier=cashier)
    except StorageLockedError:
        print("flash-terminal report: the terminal app is running and holds the books: close "
              "the shift on its screen (Admin > Reports), or stop the service first",
              file=sys.stderr)
        return EXIT_BUSY  # 5, as every command that finds the books held
    except BooksDamaged:
        raise  # exit 6, with its paragraph (terminal.app.cli)
    except ShiftError as exc:
        print(f"flash-terminal report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except StorageError:
        raise  # exit 7 (a full disk, an unreadable file), with its paragraph
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        from terminal.adapters.receipts import report_lines

        print("\n".join(report_lines(report)))
    if args.print_:
        return _print(config, report)
    return EXIT_OK


def _print(config, report) -> int:
    from terminal.adapters.receipts import print_receipt, report_slip
    from terminal.app.root import build_printer

    printer = build_printer(config.printer)
    if printer is None:
        print("flash-terminal report: no printer configured ([printer] enabled and port)",
              file=sys.stderr)
        return EXIT_ERROR
    import asyncio

    slip = report_slip(report, merchant=config.name, terminal_id=config.terminal_id)
    result = asyncio.run(print_receipt(printer, slip))
    if result.status.value != "ok":
        print(f"flash-terminal report: not printed: {result.message or result.status.value}",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
