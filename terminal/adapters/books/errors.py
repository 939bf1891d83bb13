"""What can go wrong with the books, as types the command line maps to exit codes.

Kept free of heavy imports: the CLI's central error mapping imports this module when a command
fails, not before.
"""

from __future__ import annotations

from dataclasses import dataclass

REPAIR_HINT = (
    "Stop the terminal; `flash-terminal ledger check` gives the details, `flash-terminal ledger "
    "repair` keeps a copy and salvages what verifies, then `flash-terminal recover --since DATE` "
    "restores paid sales from the backend."
)
MAX_PARAGRAPH = 600  # the command line's bound on one message (terminal.app.cli.exits)


class StorageError(Exception):
    """The books could not be read or written. The message says what to do."""


class StorageFullError(StorageError):
    """The disk is full: the write was NOT recorded."""


class StorageLockedError(StorageError):
    """Another process already has the books open for writing."""


class StorageReadOnlyError(StorageError):
    """A write was attempted on books opened read-only."""


@dataclass(frozen=True)
class Damage:
    """One finding about a damaged file: what is wrong, what it may affect, what to do."""

    file: str
    what: str
    affected: str
    fix: str = REPAIR_HINT

    def paragraph(self) -> str:
        return (
            f"The books need attention: {self.file}: {self.what}. {self.affected} "
            f"Nothing was changed. {self.fix}"
        )

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "what": self.what, "affected": self.affected, "fix": self.fix}


class BooksDamaged(StorageError):  # noqa: N818 - reads as the condition it reports
    """The books are damaged beyond an unacknowledged last write: they need a person.

    Every command that opens the books stops with exit code 6 and `str(exc)`, one paragraph
    naming the file, what is wrong, what may be affected and what to do. Nothing is changed.
    """

    def __init__(self, damage: Damage) -> None:
        super().__init__(damage.paragraph())
        self.damage = damage


# The journal's name for the same condition, kept for the callers that already catch it.
StorageCorruptError = BooksDamaged

EXIT_BOOKS_DAMAGED = 6

__all__ = [
    "EXIT_BOOKS_DAMAGED",
    "BooksDamaged",
    "Damage",
    "StorageCorruptError",
    "StorageError",
    "StorageFullError",
    "StorageLockedError",
    "StorageReadOnlyError",
]
