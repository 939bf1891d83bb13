"""`ledger repair`: keep a copy of the damaged books, then salvage every record that verifies.

Only run with the terminal stopped (it takes the books' writer lock). Steps:
1. check the books; intact books are left alone;
2. copy every file of the books into `ledger-damaged-<UTC time>/` beside them (0700);
3. the archive: kept if it verifies, else rebuilt from the rows that still read and verify;
4. the journal: kept if it verifies, else rebuilt from the lines that still verify, applied in
   order (a record that does not verify is left out whole), with a new sequence record;
5. the cross-checks (ledger id, move count) are set to agree, and the books are checked again.

What was lost is whatever did not verify: the report counts it, and `flash-terminal recover`
restores paid sales from the backend (the system of record).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.adapters.books.archive import SaleArchive, decode_doc
from terminal.adapters.books.check import BooksReport, check_books
from terminal.adapters.books.errors import BooksDamaged, StorageError, StorageLockedError
from terminal.adapters.books.fileops import DEFAULT_FILE_OPS
from terminal.adapters.books.layout import archive_path, book_files, lock_path, sequence_path
from terminal.adapters.books.sequence import Mark, SequenceFile, read_mark
from terminal.adapters.books.storage import (
    JOURNAL_FORMAT,
    OP_CLEAR,
    OP_DEL,
    OP_DROP,
    OP_PUT,
    _parse_header,
    _parse_record,
    _verified_body,
    write_snapshot,
)
from terminal.core.records import SaleRecord

ARCHIVE_MOVES = "archive.moves"  # as terminal.adapters.books.ledger.ARCHIVE_MOVES
META = "meta"


@dataclass
class RepairReport:
    before: BooksReport
    after: BooksReport | None = None
    copy_dir: Path | None = None
    journal_rebuilt: bool = False
    journal_records_kept: int = 0
    journal_lines_dropped: int = 0
    archive_rebuilt: bool = False
    archive_sales_kept: int = 0
    archive_sales_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return (self.after or self.before).intact

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "intact" if self.intact else "damaged",
            "repaired": self.after is not None,
            "copy": None if self.copy_dir is None else str(self.copy_dir),
            "journal": {"rebuilt": self.journal_rebuilt, "records_kept": self.journal_records_kept,
                        "lines_dropped": self.journal_lines_dropped},
            "archive": {"rebuilt": self.archive_rebuilt, "sales_kept": self.archive_sales_kept,
                        "sales_dropped": self.archive_sales_dropped},
            "before": self.before.to_json(),
            "after": None if self.after is None else self.after.to_json(),
            "notes": self.notes,
        }


@contextlib.contextmanager
def _writer_lock(journal: Path):
    fd = os.open(lock_path(journal), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageLockedError(
                f"the books {journal} are in use by another process: stop the terminal service "
                "(systemctl stop flash-terminal) before repairing them") from None
        yield
    finally:
        os.close(fd)


def repair_books(journal: Path, *, now: float | None = None) -> RepairReport:
    journal = Path(journal)
    with _writer_lock(journal):
        report = RepairReport(before=check_books(journal))
        if report.before.intact:
            return report
        _refuse_what_is_not_ours(report.before)
        report.copy_dir = _keep_a_copy(journal, time.time() if now is None else now)
        ledger_id = _ledger_id(journal)
        journal_moves = _journal_moves(journal)
        moves = _repair_archive(journal, report, ledger_id, journal_moves)
        _repair_journal(journal, report, ledger_id, moves)
    report.after = check_books(journal)
    return report


def _refuse_what_is_not_ours(before: BooksReport) -> None:
    for damage in before.damage:
        if "not a Flash Terminal ledger" in damage.what or "format version" in damage.what \
                or "schema version" in damage.what:
            raise StorageError(damage.paragraph())


def _keep_a_copy(journal: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = journal.with_name(f"ledger-damaged-{stamp}")
    suffix = 0
    while target.exists():
        suffix += 1
        target = journal.with_name(f"ledger-damaged-{stamp}-{suffix}")
    target.mkdir(mode=0o700)
    for path in book_files(journal):
        if path.exists():
            copy = target / path.name
            shutil.copy2(path, copy)
            os.chmod(copy, 0o600)
            with open(copy, "rb") as fh:
                os.fsync(fh.fileno())
    DEFAULT_FILE_OPS.fsync_dir(target)
    DEFAULT_FILE_OPS.fsync_dir(journal.parent)
    return target


def _ledger_id(journal: Path) -> str:
    """The ledger's id: from the journal's header, else its archive, else its sequence record."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        header = _parse_header(journal.read_bytes().split(b"\n", 1)[0])
        if isinstance(header, dict) and isinstance(header.get("ledger"), str):
            return str(header["ledger"])
    with contextlib.suppress(sqlite3.Error, StorageError):
        archive = SaleArchive(archive_path(journal), read_only=True)
        try:
            owner = archive.ledger_id
        finally:
            archive.close()
        if owner:
            return owner
    mark = read_mark(sequence_path(journal)).mark
    return mark.ledger_id if mark is not None else uuid.uuid4().hex


# --------------------------------------------------------------------------------- journal
def _salvage_lines(data: bytes) -> tuple[dict[str, dict[str, Any]], int, int, int]:
    """(tables, records kept, lines dropped, highest record number) from what verifies."""
    tables: dict[str, dict[str, Any]] = {}
    kept = dropped = highest = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines):
        if not line:
            continue
        if number == 0:
            with contextlib.suppress(ValueError):
                header = _parse_header(line)
                if isinstance(header, dict) and header.get("format") == JOURNAL_FORMAT:
                    highest = max(highest, int(header.get("seq") or 0))
                    continue
        try:
            seq, payload = _parse_record(line)
        except ValueError:
            try:
                seq, payload = 0, json.loads(_verified_body(line))  # a version-1 line
            except ValueError:
                dropped += 1
                continue
        if not isinstance(payload, list) or not _apply_ops(tables, payload):
            dropped += 1
            continue
        kept += 1
        highest = max(highest, seq)
    return tables, kept, dropped, highest


def _apply_ops(tables: dict[str, dict[str, Any]], payload: list[Any]) -> bool:
    staged = {name: dict(table) for name, table in tables.items()}
    try:
        for op in payload:
            kind, name = op[0], op[1]
            if kind == OP_PUT and isinstance(op[3], dict):
                staged.setdefault(name, {})[str(op[2])] = op[3]
            elif kind == OP_DEL:
                staged.get(name, {}).pop(str(op[2]), None)
            elif kind == OP_CLEAR:
                staged[name] = {}
            elif kind == OP_DROP:
                staged.pop(name, None)
            else:
                return False
    except (TypeError, IndexError, KeyError):
        return False
    tables.clear()
    tables.update(staged)
    return True


def _journal_moves(journal: Path) -> int:
    with contextlib.suppress(OSError):
        tables, *_ = _salvage_lines(journal.read_bytes())
        for doc in tables.get(META, {}).values():
            if isinstance(doc, dict) and doc.get("key") == ARCHIVE_MOVES:
                return int(doc.get("value") or 0)
    return 0


def _set_meta(tables: dict[str, dict[str, Any]], key: str, value: Any) -> None:
    meta = tables.setdefault(META, {})
    for doc in meta.values():
        if isinstance(doc, dict) and doc.get("key") == key:
            doc["value"] = value
            return
    next_id = max((int(k) for k in meta if k.isdigit()), default=0) + 1
    meta[str(next_id)] = {"key": key, "value": value}


def _repair_journal(journal: Path, report: RepairReport, ledger_id: str, moves: int) -> None:
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        data = b""
    tables, kept, dropped, highest = _salvage_lines(data)
    mark = read_mark(sequence_path(journal)).mark
    seq = max(highest, mark.seq if mark is not None else 0)
    journal_ok = not any(d.file in (str(journal), str(sequence_path(journal)))
                         for d in report.before.damage)
    if journal_ok and _journal_moves(journal) <= moves:
        return
    _set_meta(tables, ARCHIVE_MOVES, moves)
    # The sequence record first (as for a new journal): a journal never exists without one.
    SequenceFile(sequence_path(journal)).create(Mark(ledger_id, seq))
    tmp = journal.with_name(journal.name + ".repair")
    write_snapshot(tmp, tables, ledger_id, seq)
    os.replace(tmp, journal)
    DEFAULT_FILE_OPS.fsync_dir(journal.parent)
    report.journal_rebuilt = True
    report.journal_records_kept, report.journal_lines_dropped = kept, dropped
    if dropped:
        report.notes.append(f"{dropped} journal line(s) did not verify and were left out; "
                            "sales in progress or offline payments they held may be missing")


# --------------------------------------------------------------------------------- archive
def _repair_archive(journal: Path, report: RepairReport, ledger_id: str,
                    journal_moves: int) -> int:
    """The archive's move count once it verifies (rebuilt when needed)."""
    path = archive_path(journal)
    archive_damaged = any(d.file == str(path) for d in report.before.damage)
    if path.exists() and not archive_damaged:
        archive = SaleArchive(path, read_only=True)
        try:
            return archive.moves
        finally:
            archive.close()
    rows, dropped, old_moves = _read_archive_rows(path)
    tmp = path.with_name(path.name + ".repair")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    rebuilt = SaleArchive(tmp)
    try:
        rebuilt.adopt(ledger_id)
        seen_hashes: set[str] = set()
        keep: list[SaleRecord] = []
        for record in rows:
            if record.payment_hash and record.payment_hash in seen_hashes:
                dropped += 1
                continue
            if record.payment_hash:
                seen_hashes.add(record.payment_hash)
            keep.append(record)
        for start in range(0, len(keep), 1000):
            rebuilt.put(keep[start : start + 1000])
        target = max(old_moves, journal_moves) + 1
        rebuilt.set_moves(target)
        rebuilt.checkpoint()
    finally:
        rebuilt.close()
    for name in (path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(name).unlink()
    os.replace(tmp, path)
    for name in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            tmp.with_name(tmp.name + name).unlink()
    DEFAULT_FILE_OPS.fsync_dir(path.parent)
    report.archive_rebuilt = True
    report.archive_sales_kept, report.archive_sales_dropped = len(keep), dropped
    if dropped:
        report.notes.append(f"{dropped} archived sale(s) did not verify and were left out")
    return target


def _read_archive_rows(path: Path) -> tuple[list[SaleRecord], int, int]:
    """Every archived record that still reads and verifies; (records, dropped, move count)."""
    if not path.exists():
        return [], 0, 0
    records: dict[str, SaleRecord] = {}
    dropped = 0
    moves = 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return [], 0, 0
    try:
        with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
            moves = int(db.execute("SELECT value FROM meta WHERE key = 'moves'").fetchone()[0])
        try:
            highest = int(db.execute("SELECT max(n) FROM docs").fetchone()[0] or 0)
        except sqlite3.Error:
            highest = 0
        for n in range(1, highest + 1):  # row by row: one bad page loses only its rows
            try:
                row = db.execute("SELECT doc, crc FROM docs WHERE n = ?", (n,)).fetchone()
            except sqlite3.Error:
                dropped += 1
                continue
            if row is None:
                continue
            doc, crc = row
            try:
                if not isinstance(doc, bytes) or zlib.crc32(doc) != crc:
                    raise ValueError("checksum")
                record = SaleRecord.from_doc(decode_doc(doc))
            except (ValueError, TypeError, KeyError):
                dropped += 1
                continue
            records[record.id] = record
    finally:
        db.close()
    return list(records.values()), dropped, moves


__all__ = ["BooksDamaged", "RepairReport", "repair_books"]
