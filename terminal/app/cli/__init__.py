"""The `flash-terminal` command line.

Each command group lives in its own module exposing `register(subparsers)`; this module only
assembles them, and imports only the group of the command being run (the others are named in
`COMMANDS` with their one-line help, so `--help` lists them without loading them): a `charge`
does not pay for the sandbox's web server or the touchscreen's toolkit at start-up.
Exit codes are a contract: 0 success, 2 usage error (argparse's own), 3 invalid card data,
4 payment failed or declined, 6 the books are damaged (every command that opens them; the message
is one paragraph saying what to do, and nothing was changed).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from terminal import __version__

EXIT_OK = 0
EXIT_USAGE = 2

# command -> (module registering it, one-line help). A new command group is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "card": ("terminal.app.cli.card",
             "card tools: decode, keys, program, wipe, simulate, block, unblock, list"),
    "charge": ("terminal.app.cli.charge", "run one complete sale without the UI"),
    "sandbox": ("terminal.app.cli.sandbox", "local Flash API + Boltcard issuer stand-in"),
    "doctor": ("terminal.app.cli.doctor", "check reader, backend, clock, disk, ledger, printer"),
    "demo": ("terminal.app.cli.demo", "run the terminal against a local sandbox"),
    "enroll": ("terminal.app.cli.enroll", "enrol this terminal from a file or an FT1: code"),
    "sync": ("terminal.app.cli.sync", "send queued offline payments now (one pass)"),
    "history": ("terminal.app.cli.history", "sales, totals per day and card, exports"),
    "report": ("terminal.app.cli.report", "shift (X/Z) and day reports"),
    "ledger": ("terminal.app.cli.ledger", "check or repair the books (ledger files)"),
    "recover": ("terminal.app.cli.recover", "restore paid sales the books lack from the backend"),
    "refund": ("terminal.app.cli.refund", "refund all or part of a paid sale"),
    "run": ("terminal.app.cli.run", "run the touchscreen app (reader, screen, printer)"),
}


SANDBOX_ONLY = frozenset({"starlette", "uvicorn", "graphql"})  # the `sandbox` extra


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the full arguments of `command` only (every command when None)."""
    parser = argparse.ArgumentParser(
        prog="flash-terminal",
        description="Flash Terminal: Lightning point of sale for Boltcard taps and QR invoices.",
    )
    parser.add_argument("--version", action="version", version=f"flash-terminal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


LOG_ENV = "FLASH_TERMINAL_LOG"  # DEBUG | INFO | WARNING (default WARNING; `run` uses INFO)
# Libraries that log every request or frame at DEBUG/INFO: URLs there can carry tap data.
QUIET_LOGGERS = ("httpx", "httpcore", "websockets", "nfc", "uvicorn.access", "hpack")


def configure_logging(default: str = "WARNING") -> None:
    level = os.environ.get(LOG_ENV, default).upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command(argv)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    configure_logging("INFO" if args.command == "run" else "WARNING")
    try:
        return int(args.handler(args) or 0)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in SANDBOX_ONLY:
            print(f"flash-terminal {args.command}: the local sandbox is not installed here "
                  f"(it is not part of a kiosk's install): pip install "
                  f"'flash-terminal[sandbox]' in this environment.", file=sys.stderr)
            return EXIT_USAGE
        raise
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


def run() -> None:  # pragma: no cover - console entry
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
