"""The `flash-terminal` command line.

Each command group lives in its own module exposing `register(subparsers)`; this module only
assembles them, and imports only the group of the command being run (the others are named in
`COMMANDS` with their one-line help, so `--help` lists them without loading them): a `charge`
does not pay for the sandbox's web server or the touchscreen's toolkit at start-up.
It is also the one place where a failure a command did not handle becomes an exit code and a
one-paragraph message: `terminal.app.cli.exits` holds the table (a contract, also in the README).
A Python traceback never reaches the terminal: it goes to the log at DEBUG level.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from terminal import __version__
from terminal.app.cli import exits
from terminal.app.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

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
QUIET_LOGGERS = ("aiohttp", "websockets", "nfc", "uvicorn.access", "hpack")


def configure_logging(default: str = "WARNING") -> None:
    # A log line that cannot be written (stderr closed) must not print a traceback instead.
    logging.raiseExceptions = False
    level = os.environ.get(LOG_ENV, default).strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        level = default  # a misspelt level must not stop the command
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
        return exits.report(exc, command_name(args), sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`… | head`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush cannot complain either.
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last resort: a code and a paragraph
        # Damaged books (6), a held lock (5), a full disk (7), a bad configuration (2), an
        # unusable backend (8), or a bug (70): see terminal.app.cli.exits.
        # `exits.report`, not a bare `report`: importing the `report` command's module
        # rebinds that name in this package (a second command in one process then crashed).
        return exits.report(_unwrap(exc), command_name(args), sys.stderr)


def command_name(args: argparse.Namespace) -> str:
    """`charge`, `card decode`, `sandbox card new`…: how the message names the command."""
    words = [args.command]
    for attr in ("card_command", "simulate_command", "sandbox_command", "sandbox_card_command",
                 "ledger_command"):
        word = getattr(args, attr, None)
        if isinstance(word, str):
            words.append(word)
    return " ".join(words)


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


def console() -> None:  # pragma: no cover - console entry
    # Not `run`: the `run` command's module would rebind that name in this package.
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
