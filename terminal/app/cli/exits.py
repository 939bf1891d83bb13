"""Exit codes of every command (a contract: scripts and systemd read them) and the one place where
a failure that escaped a command becomes one of them, with a one-paragraph message.

| code | meaning                                                                              |
|------|--------------------------------------------------------------------------------------|
| 0    | done (charge: paid or queued)                                                        |
| 1    | a check or a non-payment command failed (doctor, enroll, card program/wipe, history) |
| 2    | usage: bad arguments or an unusable configuration                                    |
| 3    | the card gave no valid tap (card decode, card simulate tap)                          |
| 4    | not paid: charge failed, declined, expired, cancelled, unconfirmed or still pending;  |
|      | sync: a payout failed                                                                |
| 5    | busy: another process (the running terminal app) holds the ledger                    |
| 6    | the books (ledger) are damaged: nothing was changed                                  |
| 7    | storage: the disk is full or a file could not be read or written; nothing was lost   |
| 8    | the backend or a card issuer could not be used (sync: nothing lost, retried later)   |
| 70   | internal error (a bug): the traceback is in the log at DEBUG level                   |
| 130  | interrupted (Ctrl-C)                                                                 |

A Python traceback is never a user's answer: `main` catches what a command lets escape and
`explain` turns it into (code, paragraph).
"""

from __future__ import annotations

import errno
import logging
import unicodedata
from typing import TextIO

log = logging.getLogger("terminal.app.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INVALID_CARD = 3
EXIT_NOT_PAID = 4
EXIT_BUSY = 5
EXIT_BOOKS_DAMAGED = 6
EXIT_STORAGE = 7
EXIT_BACKEND = 8
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

MAX_MESSAGE_CHARS = 600
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_PORT_TAKEN = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


def paragraph(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One printable paragraph: control characters (ANSI escapes, newlines) become spaces,
    runs of spaces collapse, and the length is bounded (server text may reach here)."""
    raw = str(text)
    clean = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in raw)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def explain(exc: BaseException, command: str) -> tuple[int, str]:
    """The exit code and message for an exception a command did not handle itself."""
    # Imported here: `--help` and `card decode` stay fast, and this module stays import-light.
    from terminal.adapters.books.errors import (
        BooksDamaged,
        StorageError,
        StorageFullError,
        StorageLockedError,
    )
    from terminal.app.config import ConfigError
    from terminal.core.ports.backend import BackendError
    from terminal.protocols.lnurl import LnurlError

    if isinstance(exc, ConfigError):
        return EXIT_USAGE, f"the configuration cannot be used: {exc}"
    if isinstance(exc, StorageLockedError):
        return EXIT_BUSY, (
            f"{exc}. The terminal app (or another command) has the ledger open; use its screen, "
            "or stop it first (systemctl stop flash-terminal), then try again.")
    if isinstance(exc, BooksDamaged):  # its own paragraph: the file, what, what to do
        return EXIT_BOOKS_DAMAGED, str(exc)
    if isinstance(exc, StorageFullError):
        return EXIT_STORAGE, f"{exc}."
    if isinstance(exc, StorageError):
        return EXIT_STORAGE, f"{exc}. Nothing recorded before was lost."
    if isinstance(exc, OSError) and exc.errno in _PORT_TAKEN:  # `sandbox serve --port N`
        return EXIT_USAGE, (f"that address cannot be used: {exc.strerror or exc}. Choose "
                            "another --port, or stop what is using it.")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in _NO_SPACE:
            return EXIT_STORAGE, (f"the disk is full{where}: the last change was not saved. "
                                  "Free some space and try again.")
        return EXIT_STORAGE, (f"a file could not be read or written{where}: "
                              f"{exc.strerror or type(exc).__name__}.")
    if isinstance(exc, BackendError):
        return EXIT_BACKEND, f"the backend could not be used: {exc.message}"
    if isinstance(exc, LnurlError):
        return EXIT_BACKEND, f"the card's issuer could not be used: {exc.user_message}"
    return EXIT_INTERNAL, (
        f"internal error while running `{command}` ({type(exc).__name__}). This is a bug: "
        "run again with FLASH_TERMINAL_LOG=DEBUG for the details. What the ledger recorded is "
        "safe; if a sale was in progress, check `flash-terminal history` before charging again.")


def report(exc: BaseException, command: str, stream: TextIO) -> int:
    """Print the paragraph for `exc` on `stream` and return its exit code; the traceback goes
    to the log at DEBUG only."""
    code, message = explain(exc, command)
    log.debug("`%s` ended with %s", command, type(exc).__name__, exc_info=exc)
    from terminal.app.config import ConfigError

    if isinstance(exc, ConfigError):  # its own report: one line per problem, naming the key
        lines = exc.report(f"flash-terminal {command}").split("\n")[:50]
        text = "\n".join(paragraph(line) if not line.startswith("  ")
                         else "  " + paragraph(line) for line in lines)
    else:
        text = f"flash-terminal {command}: {paragraph(message)}"
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):  # stderr closed or broken: the exit code still tells
        pass
    return code
