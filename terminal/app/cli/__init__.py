"""The `flash-terminal` command line.

Each command group lives in its own module exposing `register(subparsers)`; this module only
assembles them. Exit codes are a contract: 0 success, 2 usage error (argparse's own), 3 invalid
card data, 4 payment failed or declined, 6 the books are damaged (every command that opens them;
the message is one paragraph saying what to do, and nothing was changed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from terminal import __version__
from terminal.app.cli import (
    card,
    charge,
    demo,
    doctor,
    enroll,
    history,
    ledger,
    run,
    sandbox,
    sync,
)

EXIT_OK = 0
EXIT_USAGE = 2

COMMAND_GROUPS = [card, charge, sandbox, doctor, demo, enroll, sync, history, ledger, run]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flash-terminal",
        description="Flash Terminal: Lightning point of sale for Boltcard taps and QR invoices.",
    )
    parser.add_argument("--version", action="version", version=f"flash-terminal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


LOG_ENV = "FLASH_TERMINAL_LOG"  # DEBUG | INFO | WARNING (default WARNING; `run` uses INFO)
# Libraries that log every request or frame at DEBUG/INFO: URLs there can carry tap data.
QUIET_LOGGERS = ("httpx", "httpcore", "websockets", "nfc", "uvicorn.access", "hpack")


def configure_logging(default: str = "WARNING") -> None:
    level = os.environ.get(LOG_ENV, default).upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("INFO" if args.command == "run" else "WARNING")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        code = _books_damaged(args.command, exc)
        if code is None:
            raise
        return code


def _books_damaged(command: str, exc: Exception) -> int | None:
    """Exit 6 with the books' one-paragraph explanation, for any command that opened them."""
    from terminal.adapters.books.errors import EXIT_BOOKS_DAMAGED, BooksDamaged

    if not isinstance(exc, BooksDamaged):
        return None
    print(f"flash-terminal {command}: {exc}", file=sys.stderr)
    return EXIT_BOOKS_DAMAGED


def run() -> None:  # type: ignore[no-redef]  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
