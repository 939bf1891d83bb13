"""`flash-terminal doctor [--json] [--config FILE]`: check the terminal and say how to fix it.

Exit 0 when no check failed (warnings allowed), 1 when one did, 2 when the configuration is
unusable (wrong types, unknown keys, missing: as every command), 6 when the books are damaged
(every check that can still runs and is reported).
"""

from __future__ import annotations

import argparse
import json

from terminal.app.cli.exits import EXIT_USAGE

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BOOKS_DAMAGED = 6


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check reader, backend, clock, disk, ledger, printer and service")
    parser.add_argument("--config", metavar="FILE",
                        help="terminal configuration (default: $FLASH_TERMINAL_CONFIG or "
                             "/etc/flash-terminal/terminal.toml)")
    parser.add_argument("--json", action="store_true",
                        help='print {"ok": bool, "checks": [{name, status, detail, fix}]}')
    parser.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from terminal.app.doctor import Status, format_report, run_doctor

    report = run_doctor(args.config)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report))
    if report.ok:
        return EXIT_OK
    if report.check("config").status is Status.FAIL:
        return EXIT_USAGE  # the report says which key, and the fix
    ledger = next((c for c in report.checks if c.name == "ledger"), None)
    if ledger is not None and ledger.detail.startswith("the books are damaged"):
        return EXIT_BOOKS_DAMAGED
    return EXIT_CHECK_FAILED
