"""`flash-terminal history`: list, total and export the sales in the ledger.

    flash-terminal history [--from DATE] [--to DATE] [--state S] [--card [ID]] [--method card|qr]
                           [--cashier ID] [--export csv|json] [--output FILE] [--config FILE]

Dates are local YYYY-MM-DD, inclusive. Without --export: a readable table and the totals.
`--card` without an id is the per-card usage (the payout dashboard's Boltcard view): one row per
card with its sales, attempts, failures, amounts, tips and first and last use, most used first
(as a table, or exported: JSON objects `{"card_id", "sales", "attempts", "failed",
"gross_msat", "tips_msat", "queued_msat", "by_currency", "first_at", "last_at"}` or CSV rows),
counted by the books (`SalesHistory.card_usage`: SQL sums over the archive, no record read).
`--cashier ID` keeps the sales that cashier rang up (`none`: rung up without a sign-in).
The books are opened read-only (no lock), so this works while the terminal is running. Sales are
streamed from the books as they are written out: an export of any range runs in constant memory.
Exit codes: 0 ok, 2 usage (including an unusable configuration), 6 the books are damaged,
7 the books could not be read or the output not written (terminal.app.cli.exits).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from terminal.app.cli.exits import EXIT_OK, EXIT_STORAGE
from terminal.app.config import load_config
from terminal.core import history
from terminal.core.money import Money, UnknownCurrency, currency
from terminal.core.records import SaleRecord

if TYPE_CHECKING:
    from terminal.core.card_usage import CardUsage

EXIT_ERROR = EXIT_STORAGE  # the books could not be read, or the output not written

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BY_CARD = ""  # `--card` given without an id


def _date_arg(text: str) -> date:
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history",
        help="list, total and export past sales",
        description="Show the sales recorded in this terminal's ledger, with totals per day and "
        "per card, or export them as CSV or JSON. Dates are local and inclusive.",
    )
    parser.add_argument("--from", dest="date_from", type=_date_arg, metavar="DATE",
                        help="first day to include (YYYY-MM-DD)")
    parser.add_argument("--to", dest="date_to", type=_date_arg, metavar="DATE",
                        help="last day to include (YYYY-MM-DD)")
    parser.add_argument("--state", choices=history.STATES, metavar="S",
                        help=f"only sales in this state ({', '.join(history.STATES)})")
    parser.add_argument("--card", dest="card_id", metavar="ID", nargs="?", const=BY_CARD,
                        help="only sales by this card id (a prefix will do); without an id: "
                        "usage per card")
    parser.add_argument("--cashier", metavar="ID",
                        help="only the sales this cashier rang up (none: without a sign-in)")
    parser.add_argument("--method", choices=history.METHODS, help="only card taps or QR payments")
    parser.add_argument("--export", choices=("csv", "json"), help="print CSV or JSON instead")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $FLASH_TERMINAL_CONFIG)")
    parser.set_defaults(handler=run_history, parser=parser)


def run_history(args: argparse.Namespace) -> int:
    from terminal.adapters.books.errors import BooksDamaged, StorageError
    from terminal.adapters.books.layout import journal_path
    from terminal.adapters.books.ledger import Ledger  # imported here: `--help` stays fast

    by_card = args.card_id == BY_CARD
    try:
        query = history.SaleQuery(
            date_from=args.date_from, date_to=args.date_to, state=args.state,
            card_id=None if by_card else args.card_id, method=args.method,
        )
    except ValueError as exc:
        args.parser.error(str(exc))  # exits 2
    config = load_config(args.config)  # unusable: main reports it (exit 2, naming the keys)
    path = journal_path(config.data_dir)
    if not path.exists():
        print(f"flash-terminal history: no sales recorded yet ({path} does not exist)",
              file=sys.stderr)
    try:
        with Ledger(path, read_only=True) as ledger, _output(args.output) as out:
            if by_card:  # counted by the books (SQL over the archive), no record read
                from terminal.core.card_usage import UsageFilter

                usage = ledger.card_usage(UsageFilter(query, cashier=args.cashier or None))
                write_card_usage(usage, out, args.export)
                return EXIT_OK
            records: Iterable[SaleRecord] = ledger.sales_matching(query)
            if args.cashier:
                records = _of_cashier(records, args.cashier)
            if args.export == "json":
                history.write_json(records, out)
            elif args.export == "csv":
                history.write_csv(records, out)
            else:
                render_table(records, out)
    except BooksDamaged:
        raise  # exit 6, with its paragraph (terminal.app.cli)
    except StorageError as exc:
        print(f"flash-terminal history: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"flash-terminal history: cannot write {args.output}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _of_cashier(records: Iterable[SaleRecord], cashier: str) -> Iterator[SaleRecord]:
    from terminal.core.cashiers import NO_CASHIER

    wanted = cashier.strip().lower()
    return (r for r in records if (r.cashier or NO_CASHIER) == wanted)


def write_card_usage(usage: list[CardUsage], out: TextIO, export: str | None) -> None:
    """Per-card usage (`terminal.core.card_usage`, most used first): a table, or JSON / CSV
    rows."""
    import csv
    import json

    from terminal.core.card_usage import CSV_COLUMNS

    if export == "json":
        out.write(json.dumps([u.to_doc() for u in usage], indent=2) + "\n")
        return
    if export == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for u in usage:
            doc = u.to_doc()
            writer.writerow(["" if doc[c] is None else doc[c] for c in CSV_COLUMNS])
        return
    if not usage:
        out.write("No card payments match.\n")
        return
    out.write(f"{'CARD':<16} {'SALES':>5} {'TRIED':>5} {'FAILED':>6} {'SATS':>16} "
              f"{'TIPS':>14}  {'FIRST':<16}  {'LAST':<16}  AMOUNTS\n")
    for u in usage:
        t = u.totals
        amounts = ", ".join(_money(v, c) for c, v in sorted(t.minor.items())) or "-"
        out.write(f"{u.card_id[:16]:<16} {t.taken:>5} {t.sales:>5} {t.failed:>6} "
                  f"{_sats(t.taken_msat):>16} {_sats(t.tips_msat):>14}  "
                  f"{_when(u.first_at):<16}  {_when(u.last_at):<16}  {amounts}\n")
    out.write(f"{len(usage)} cards\n")


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M") if at is not None else "-"


@contextlib.contextmanager
def _output(output: str | None) -> Iterator[TextIO]:
    """stdout, or FILE written whole or not at all (a temporary file renamed when complete)."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(output)
    tmp = target.with_name(f".{target.name}.partial")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ------------------------------------------------------------------------------------ table
def _money(minor: int, code: str) -> str:
    try:
        return str(Money(minor, currency(code)))
    except (UnknownCurrency, TypeError):
        return f"{minor} {code} (minor units)"


def _sats(msat: int | None) -> str:
    return "" if msat is None else f"{msat / 1000:,.3f}".rstrip("0").rstrip(".") + " sat"


def _totals_line(label: str, t: history.Totals) -> str:
    amounts = ", ".join(_money(v, c) for c, v in sorted(t.minor.items())) or "-"
    line = (f"  {label:<20} {t.sales:>5} sales {t.taken:>5} taken  {_sats(t.taken_msat):>18}  "
            f"{amounts}")
    if t.pending:
        line += f"  ({t.pending} pending offline: {_sats(t.pending_msat)})"
    return line


def render_table(records: Iterable[SaleRecord], out: TextIO) -> None:
    """One line per sale as it streams by, then the totals (counted in the same pass)."""
    report = history.Report()
    for r in records:
        if not report.total.sales:
            out.write(f"{'TIME':<19}  {'STATE':<18} {'METHOD':<6} {'AMOUNT':>14} {'SATS':>16}  "
                      f"{'CARD':<16} {'REASON'}\n")
        report.add(r)
        when = datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        out.write(
            f"{when:<19}  {r.state:<18} {r.method or '-':<6} "
            f"{_money(r.amount_minor, r.currency):>14} {_sats(r.amount_msat):>16}  "
            f"{(r.card_id or '-')[:16]:<16} {r.reason or ''}".rstrip() + "\n"
        )
    if not report.total.sales:
        out.write("No sales match.\n")
        return
    out.write("\nTotals per day (taken: paid, or accepted offline and not settled yet "
              "(pending); the rest are attempts):\n")
    for day, t in sorted(report.by_day.items()):
        out.write(_totals_line(day.isoformat(), t) + "\n")
    if report.by_card:
        out.write("Totals per card:\n")
        for card_id, t in sorted(report.by_card.items()):
            out.write(_totals_line(card_id[:20], t) + "\n")
    out.write(_totals_line("All", report.total) + "\n")
