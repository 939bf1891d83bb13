"""The `flash-terminal` command line.

Each command group lives in its own module exposing `register(subparsers)`; this module only
assembles them, and is the one place where a failure a command did not handle becomes an exit
code and a one-paragraph message (`terminal.app.cli.exits` holds the table: a contract). A Python
traceback never reaches the terminal: it goes to the log at DEBUG level.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from terminal import __version__
from terminal.app.cli import card, charge, demo, doctor, enroll, history, sandbox, sync
from terminal.app.cli import run as run_command
from terminal.app.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, report

__all__ = ["EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

COMMAND_GROUPS = [card, charge, sandbox, doctor, demo, enroll, sync, history, run_command]


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
    # A log line that cannot be written (stderr closed) must not print a traceback instead.
    logging.raiseExceptions = False
    level = os.environ.get(LOG_ENV, default).strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = default  # a misspelt level must not stop the command
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def command_name(args: argparse.Namespace) -> str:
    """`charge`, `card decode`, `sandbox card new`…: how the message names the command."""
    words = [args.command]
    for attr in ("card_command", "simulate_command", "sandbox_command", "sandbox_card_command"):
        word = getattr(args, attr, None)
        if isinstance(word, str):
            words.append(word)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("INFO" if args.command == "run" else "WARNING")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`… | head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush cannot complain either.
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last resort: a code and a paragraph
        return report(_unwrap(exc), command_name(args), sys.stderr)


def _unwrap(exc: BaseException) -> BaseException:
    """The first real failure inside an exception group (asyncio task groups raise those)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
