"""Where the books live: the file names inside the terminal's data directory.

    ledger.jsonl          the journal (TinyDB): what is in flight
    ledger.jsonl.seq      the journal's sequence record (number of its last acknowledged record)
    ledger.jsonl.lock     held by the one process that writes the books
    ledger.archive.sqlite the archive of settled sales (+ its -wal and -shm while in use)
"""

from __future__ import annotations

from pathlib import Path

LEDGER_FILE = "ledger.jsonl"
ARCHIVE_SUFFIX = ".archive.sqlite"


def journal_path(data_dir: Path) -> Path:
    return Path(data_dir) / LEDGER_FILE


def sequence_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".seq")


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def archive_path(journal: Path) -> Path:
    stem = journal.name[: -len(".jsonl")] if journal.name.endswith(".jsonl") else journal.name
    return journal.with_name(stem + ARCHIVE_SUFFIX)


def book_files(journal: Path) -> list[Path]:
    """Every file that holds part of the books (some may not exist)."""
    archive = archive_path(journal)
    return [journal, sequence_path(journal), archive,
            archive.with_name(archive.name + "-wal"), archive.with_name(archive.name + "-shm")]


__all__ = ["LEDGER_FILE", "archive_path", "book_files", "journal_path", "lock_path",
           "sequence_path"]
