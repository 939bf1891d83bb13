"""`ledger check`: verify every part of the books without changing anything.

Opening the books already checks what start-up needs (the journal, its sequence record and the
cross-checks with the archive). The check goes further: every archived sale is read back and
verified against its checksum, and SQLite's own integrity check runs over the archive file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.adapters.books.errors import BooksDamaged, Damage
from terminal.adapters.books.layout import book_files


@dataclass
class BooksReport:
    journal: Path
    damage: list[Damage] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, int | None] = field(default_factory=dict)  # path -> size (None: missing)

    @property
    def intact(self) -> bool:
        return not self.damage

    def message(self) -> str:
        if self.intact:
            counts = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in self.counts.items())
            return f"The books are intact ({counts})."
        return " ".join(d.paragraph() for d in self.damage)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "intact" if self.intact else "damaged",
            "journal": str(self.journal),
            "damage": [d.to_json() for d in self.damage],
            "message": self.message(),
            "counts": self.counts,
            "files": self.files,
        }


def check_books(journal: Path) -> BooksReport:
    """Everything that can be verified about the books at `journal` (read-only, no lock)."""
    from terminal.adapters.books.ledger import Ledger

    report = BooksReport(journal)
    for path in book_files(journal):
        report.files[str(path)] = path.stat().st_size if path.exists() else None
    try:
        ledger = Ledger(journal, read_only=True)
    except BooksDamaged as exc:
        report.damage.append(exc.damage)
        return report
    try:
        report.counts = ledger.counts()
        report.damage.extend(ledger.verify())
    finally:
        ledger.close()
    return report


__all__ = ["BooksReport", "check_books"]
