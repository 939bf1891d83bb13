"""The journal's sequence record: the number of its last acknowledged record, kept in its own file.

Every journal record carries a sequence number (1, 2, 3, ...). After a record's line is durable,
its number is written here and made durable too, and only then is the write acknowledged. So on
open:
- the journal must reach at least this number: if it ends earlier (truncated, zeroed, emptied,
  deleted), acknowledged records are gone, and a cut of the journal cannot also cut this file;
- a damaged line *after* this number was never acknowledged (a power cut mid-write) and may be
  cut; a damaged line at or before it was acknowledged: that is damage, never cut.

The file holds two 512-byte slots (two disk sectors), written alternately: a write torn by a power
cut spoils at most the slot being written, and the other still holds the previous number. Each
slot is `<crc32 hex> <json>\\n`, the JSON naming the ledger (so a file from another ledger is not
taken for ours) and the number.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from terminal.adapters.books.fileops import DEFAULT_FILE_OPS, FileOps

SLOT_SIZE = 512
SLOTS = 2
FILE_MODE = 0o600


@dataclass(frozen=True)
class Mark:
    ledger_id: str
    seq: int


@dataclass(frozen=True)
class MarkReading:
    """What the file says: missing, unreadable (no slot verifies) or a mark."""

    exists: bool
    mark: Mark | None

    @property
    def unreadable(self) -> bool:
        return self.exists and self.mark is None


def mark_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".seq")


def _slot(mark: Mark) -> bytes:
    body = _body_prefix(mark.ledger_id) + b"%d}" % mark.seq
    line = b"%08x %s\n" % (zlib.crc32(body), body)
    return line.ljust(SLOT_SIZE, b"\0")


@functools.lru_cache(maxsize=8)
def _body_prefix(ledger_id: str) -> bytes:
    """`{"ledger":"<id>","seq":` as json.dumps writes it (written per record: built once)."""
    return json.dumps({"ledger": ledger_id, "seq": 0}, separators=(",", ":")).encode()[:-2]


def _parse_slot(data: bytes) -> Mark | None:
    line, newline, _ = data.partition(b"\n")
    if not newline or len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        doc = json.loads(body)
        ledger_id, seq = doc["ledger"], doc["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(ledger_id, str) or not isinstance(seq, int) or seq < 0:
        return None
    return Mark(ledger_id, seq)


def parse_marks(data: bytes) -> list[Mark]:
    """Every slot of the file that verifies."""
    slots = [data[n * SLOT_SIZE : (n + 1) * SLOT_SIZE] for n in range(SLOTS)]
    return [m for m in (_parse_slot(s) for s in slots) if m is not None]


def read_mark(path: Path) -> MarkReading:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return MarkReading(False, None)
    marks = parse_marks(data)
    if not marks:
        return MarkReading(True, None)
    newest = max(marks, key=lambda m: m.seq)
    return MarkReading(True, newest)


class SequenceFile:
    """The writer's handle on the sequence record (opened by the journal's writer only)."""

    def __init__(self, path: Path, files: FileOps = DEFAULT_FILE_OPS, *,
                 fsync: bool = True) -> None:
        self.path = path
        self._files = files
        self._fsync = fsync
        self._fd: int | None = None

    def create(self, mark: Mark) -> None:
        """A new record holding `mark` in both slots, durable (directory entry included)."""
        fd = self._files.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            self._files.fchmod(fd, FILE_MODE)
            data = _slot(mark) * SLOTS
            written = 0
            while written < len(data):
                written += self._files.write(fd, memoryview(data)[written:])
            if self._fsync:
                self._files.fsync(fd)
                self._files.fsync_dir(self.path.parent)
        except BaseException:
            self._files.close(fd)
            raise
        self._close()
        self._fd = fd

    def open(self) -> None:
        fd = self._files.open(self.path, os.O_RDWR, FILE_MODE)
        self._close()
        self._fd = fd
        self._files.fchmod(fd, FILE_MODE)

    def write(self, mark: Mark) -> None:
        """Record `mark` durably in the slot of its parity (the other keeps the one before)."""
        if self._fd is None:
            raise OSError(9, "the sequence record is not open")
        self._files.pwrite(self._fd, _slot(mark), SLOT_SIZE * (mark.seq % SLOTS))
        if self._fsync:
            self._files.fsync(self._fd)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._files.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self._close()


__all__ = ["Mark", "MarkReading", "SequenceFile", "mark_path", "parse_marks", "read_mark"]
