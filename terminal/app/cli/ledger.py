"""`flash-terminal ledger check|repair`: verify the books, and salvage damaged ones.

    flash-terminal ledger check [--config FILE] [--json]
        Verifies the journal, its sequence record and every archived sale, changing nothing
        (works while the terminal runs). Exit 0 intact, 6 damaged (one paragraph per finding:
        the file, what is wrong, what may be affected, what to do).
    flash-terminal ledger repair [--config FILE] [--json]
        With the terminal stopped: keeps a copy of every file of the books in
        `ledger-damaged-<time>/` beside them, then rebuilds what is damaged from every record that
        still verifies. Exit 0 when the books are intact afterwards (or were already), 5 the
        terminal is running (stop it first), 6 when they are still damaged, 7 a disk error
        (terminal.app.cli.exits).

JSON (`--json`): check prints {"status": "intact"|"damaged", "journal", "damage": [{"file",
"what", "affected", "fix"}], "message", "counts", "files"}; repair prints {"status", "repaired",
"copy", "journal": {...}, "archive": {...}, "before", "after", "notes"}.
"""

from __future__ import annotations

import argparse
import json
import sys

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_BOOKS_DAMAGED, EXIT_BUSY, EXIT_OK, EXIT_STORAGE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ledger", help="check or repair the books (ledger files)")
    sub = parser.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="verify the books without changing them (exit 0 intact, 6 damaged)",
        description="Verify the journal, its sequence record and every archived sale.")
    repair = sub.add_parser(
        "repair", help="keep a copy of damaged books, then salvage what verifies",
        description="With the terminal stopped: copy the books aside, then rebuild damaged "
        "files from every record that still verifies. Then run `flash-terminal recover`.")
    for command, handler in ((check, _check), (repair, _repair)):
        command.add_argument("--config", metavar="FILE",
                             help="terminal configuration (default: $FLASH_TERMINAL_CONFIG)")
        command.add_argument("--json", action="store_true", help="print the result as JSON")
        command.set_defaults(handler=handler, parser=command)


def _journal(args: argparse.Namespace):
    from terminal.adapters.books.layout import journal_path

    return journal_path(load_config_or_exit(args).data_dir)


def _check(args: argparse.Namespace) -> int:
    from terminal.adapters.books.check import check_books

    report = check_books(_journal(args))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.intact:
        print(report.message())
    else:
        for damage in report.damage:
            print(damage.paragraph(), file=sys.stderr)
    return EXIT_OK if report.intact else EXIT_BOOKS_DAMAGED


def _repair(args: argparse.Namespace) -> int:
    from terminal.adapters.books.errors import StorageError, StorageLockedError
    from terminal.adapters.books.repair import repair_books

    try:
        report = repair_books(_journal(args))
    except (StorageError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"flash-terminal ledger repair: {text}", file=sys.stderr)
        return EXIT_BUSY if isinstance(exc, StorageLockedError) else EXIT_STORAGE
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_repair(report)
    return EXIT_OK if report.intact else EXIT_BOOKS_DAMAGED


def _print_repair(report) -> None:
    if report.after is None:
        print("The books are intact: nothing to repair.")
        return
    print(f"A copy of the damaged books is in {report.copy_dir}.")
    if report.archive_rebuilt:
        print(f"Archive rebuilt: {report.archive_sales_kept:,} settled sale(s) kept, "
              f"{report.archive_sales_dropped:,} left out (they did not verify).")
    if report.journal_rebuilt:
        print(f"Journal rebuilt: {report.journal_records_kept:,} record(s) kept, "
              f"{report.journal_lines_dropped:,} line(s) left out (they did not verify).")
    for note in report.notes:
        print(f"  {note}")
    if report.intact:
        print("The books are intact again. Restore paid sales the books may have lost from the "
              "backend: flash-terminal recover --since DATE")
    else:
        print(report.after.message(), file=sys.stderr)
