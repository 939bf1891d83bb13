"""Crash-safe TinyDB storage: an append-only, checksummed, numbered journal with atomic compaction.

Why not TinyDB's own `JSONStorage`: it rewrites the whole file in place on every write (O(n) per
insert) and a power cut mid-rewrite leaves a file that no longer parses. Here:

- The file is a journal of lines. Line 1 is a header naming the format, the ledger (a random id)
  and, after a compaction, how many snapshot lines follow and the record number they stand for.
  Each later line is one acknowledged write, `<crc32 hex> <record number> <json>\\n`: a list of
  operations on documents (`put`, `del`, `clear` a table, `drop` a table). Records are numbered
  1, 2, 3, ... without gaps.
- A write returns only after its line is fsynced *and* its number is recorded in the sequence
  file beside the journal (`sequence.py`), which a truncation of the journal cannot also cut.
- On open, the journal is replayed into memory and checked against the sequence file. Only what
  lies after the last acknowledged record (a write a power cut interrupted) may be cut off. A
  line that fails its check at or before it, a gap in the numbers, a journal that ends before it,
  or an empty or missing journal where records were acknowledged are damage: `BooksDamaged`
  (one paragraph for a person, exit code 6), and the file is left exactly as it is.
- Each write appends only the documents that changed (O(changed), not O(database)). `JournalTable`
  hands TinyDB's updaters a staging view so changes are known without diffing whole tables; the
  plain `read()`/`write()` contract also works (it diffs per document against the last state).
- When the file grows past `compact_ratio` × the size of the live data, it is compacted: a fresh
  journal holding one `put` per live document is written to a temporary file, fsynced,
  `os.replace`d over the old one, and the directory is fsynced. Its header says how many lines
  the snapshot has, so a snapshot cut short is damage too.
- Memory never runs ahead of the disk: a change is applied in memory only after its line is durable.
  If the write fails (full disk: `StorageFullError`), the partial line is cut off and the error is
  raised, so the caller knows nothing was recorded.
- The files are created 0600 (the ledger holds one-time tap URLs) and one writer at a time holds
  an exclusive lock on `<file>.lock`. Read-only opens (history export) take no lock and never write.
- Every call that changes a file goes through a `FileOps` (`fileops.py`), so tests can record
  the writes and fsyncs and replay the crash states a POSIX file system allows.

Journals of format version 1 (no record numbers) are read and, on the first open for writing,
rewritten as version 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from terminal.adapters.books.errors import (
    BooksDamaged,
    Damage,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageLockedError,
    StorageReadOnlyError,
)
from terminal.adapters.books.fileops import DEFAULT_FILE_OPS, FileOps, read_all
from terminal.adapters.books.sequence import Mark, MarkReading, SequenceFile, mark_path, read_mark

log = logging.getLogger(__name__)

JOURNAL_FORMAT = "flash-terminal-journal"
JOURNAL_VERSION = 2
LEGACY_VERSION = 1  # lines without record numbers; upgraded on the first open for writing
FILE_MODE = 0o600
DIR_MODE = 0o700
CRC_HEX_LEN = 8  # "%08x" of a CRC-32, then one space, then the checked body
HEADER_PREFIX = b'{"format":"flash-terminal-journal","version":'

# Operation names as written in the journal.
OP_PUT = "put"  # ["put", table, doc_id, document]
OP_DEL = "del"  # ["del", table, doc_id]
OP_CLEAR = "clear"  # ["clear", table]: the table exists and is empty
OP_DROP = "drop"  # ["drop", table]: the table no longer exists

Op = tuple[Any, ...]
Tables = dict[str, dict[str, dict[str, Any]]]
WriteFn = Callable[[int, bytes | memoryview], int]
SyncFn = Callable[[int], None]

_MISSING = object()
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

AFFECTS_JOURNAL = (
    "Sales in progress, queued offline payments, card counters and settings recorded from that "
    "point on may be wrong or missing."
)


# Strict JSON (no NaN) so every line parses the same in any reader. One encoder for every write:
# `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _encode(value: Any) -> str:
    return _ENCODER.encode(value)


@functools.lru_cache(maxsize=64)
def _encode_name(name: str) -> str:
    """A table name as JSON (a handful of names, written in every operation: built once)."""
    return _encode(name)


def _encode_key(key: str) -> str:
    """A document id as JSON: ids are decimal digits, which JSON quotes as they are."""
    return f'"{key}"' if key.isascii() and key.isdigit() else _encode(key)


def _checked(body: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _header_line(header: Mapping[str, Any]) -> bytes:
    return _checked(_encode(dict(header)).encode("utf-8"))


def _record_line(seq: int, payload: str) -> bytes:
    return _checked(b"%d %s" % (seq, payload.encode("utf-8")))


def _verified_body(line: bytes) -> bytes:
    """The checked body of one complete line, or raise ValueError when it is damaged."""
    if len(line) <= CRC_HEX_LEN + 1 or line[CRC_HEX_LEN : CRC_HEX_LEN + 1] != b" ":
        raise ValueError("no checksum")
    crc = line[:CRC_HEX_LEN]
    if not all(c in b"0123456789abcdef" for c in crc):
        raise ValueError("no checksum")
    body = line[CRC_HEX_LEN + 1 :]
    if int(crc, 16) != zlib.crc32(body):
        raise ValueError("checksum mismatch")
    return body


def _parse_header(line: bytes) -> Any:
    return json.loads(_verified_body(line))


def _parse_record(line: bytes) -> tuple[int, Any]:
    """(record number, operations) of one complete version-2 line; ValueError when damaged."""
    number, space, payload = _verified_body(line).partition(b" ")
    if not space or not number.isdigit():
        raise ValueError("no record number")
    return int(number), json.loads(payload)


def _copy(value: Any) -> Any:
    """Deep copy of a JSON value (much faster than copy.deepcopy for this shape)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _fsync_dir(directory: Path) -> None:
    DEFAULT_FILE_OPS.fsync_dir(directory)


def _could_be_torn_header(data: bytes) -> bool:
    """A first write cut short before its newline: zeros, or the start of our header."""
    if b"\n" in data:
        return False
    if not data.strip(b"\0"):
        return True
    crc, body = data[:CRC_HEX_LEN], data[CRC_HEX_LEN + 1 :]
    hexdigits = all(c in b"0123456789abcdef" for c in crc)
    return hexdigits and data[CRC_HEX_LEN : CRC_HEX_LEN + 1] in (b" ", b"") and (
        HEADER_PREFIX.startswith(body) or body.startswith(HEADER_PREFIX)
    )


@dataclass
class Replay:
    """What reading the journal found (see `JournalStorage._replay`)."""

    version: int = JOURNAL_VERSION
    ledger_id: str | None = None
    last_seq: int = 0
    good: int = 0  # bytes of the verified prefix
    new: bool = False  # no journal yet (missing, empty or a torn first write)
    bad_line: int | None = None  # first line that does not verify (a tail, if allowed)


class JournalStorage(Storage):
    """TinyDB storage over an append-only journal (see the module docstring).

    `files` is the file-system layer (tests record or fail its calls); `write_fn`/`fsync_fn`
    override only the journal's appends (tests inject a full disk through them).
    `fsync=False` skips fsync (only for throwaway data: writes are then not crash-safe).
    `compact_ratio`/`compact_min_bytes`: compact when the file is larger than both
    `compact_min_bytes` and `compact_ratio` × the live data.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create_dirs: bool = False,
        read_only: bool = False,
        fsync: bool = True,
        compact_ratio: float = 2.0,
        compact_min_bytes: int = 1 << 20,
        files: FileOps = DEFAULT_FILE_OPS,
        write_fn: WriteFn | None = None,
        fsync_fn: SyncFn | None = None,
    ) -> None:
        if compact_ratio <= 1.0:
            raise ValueError("compact_ratio must be greater than 1")
        self.path = Path(path)
        self.read_only = read_only
        self._fsync = fsync
        self._compact_ratio = compact_ratio
        self._compact_min_bytes = compact_min_bytes
        self._files = files
        self._write_fn: WriteFn = write_fn or files.write
        self._fsync_fn: SyncFn = fsync_fn or files.fsync
        self._lock = threading.RLock()
        self._tables: Tables = {}
        self._sizes: dict[str, dict[str, int]] = {}  # encoded size of each live document
        # The JSON each live document was committed as, so a compaction writes it again instead
        # of encoding every document anew (most of its cost). A cache: a document without an
        # entry (read at open, or after a rollback) is encoded when needed.
        self._texts: dict[str, dict[str, str]] = {}
        self._live_bytes = 0
        self._size = 0  # bytes of the journal known to be valid
        self._seq = 0  # number of the last record in the journal
        self.ledger_id = ""
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._marks = SequenceFile(mark_path(self.path), files, fsync=fsync)
        self._broken: str | None = None
        self._group_depth = 0
        self._group_ops: list[str] = []
        self._group_undo: list[tuple[Any, ...]] = []
        self._skip_compaction_until = 0
        self.compactions = 0
        self.dropped_tail = False  # an unacknowledged last write was found (and cut when writing)
        if read_only:
            self._load_read_only()
        else:
            self._open_for_writing(create_dirs)

    # ------------------------------------------------------------------------------- opening
    @property
    def sequence_path(self) -> Path:
        return mark_path(self.path)

    @property
    def last_seq(self) -> int:
        """Number of the last record in the journal (0: none yet)."""
        return self._seq

    def _load_read_only(self) -> None:
        # The sequence record first: the journal read after it can only be longer.
        marks = read_mark(self.sequence_path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise StorageError(f"cannot read the ledger {self.path}: {exc.strerror}") from exc
        replay = self._replay(data, marks)
        self._seq, self._size = replay.last_seq, replay.good
        self.ledger_id = replay.ledger_id or ""
        self.dropped_tail = replay.bad_line is not None

    def _open_for_writing(self, create_dirs: bool) -> None:
        directory = self.path.parent
        if not directory.is_dir():
            if not create_dirs:
                raise StorageError(f"the ledger directory {directory} does not exist")
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        with contextlib.suppress(FileNotFoundError):
            self._files.unlink(self._compact_path())  # an interrupted compaction: never used
        self._acquire_lock()
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        marks = read_mark(self.sequence_path)
        try:
            data: bytes | None = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise StorageError(f"cannot open the ledger {self.path}: {exc.strerror}") from exc
        replay = self._replay(data, marks)  # raises BooksDamaged before anything is changed
        try:
            if replay.new:
                self._create(marks)
            elif replay.version == LEGACY_VERSION:
                self._upgrade(marks, data or b"", replay)
            else:
                self._resume(marks, data or b"", replay)
        except OSError as exc:
            raise self._error("prepare", exc) from exc

    def _create(self, marks: MarkReading) -> None:
        """A new journal: the sequence record first, so a journal never exists without one."""
        mark = marks.mark
        self.ledger_id = mark.ledger_id if mark is not None else uuid.uuid4().hex
        if mark is None or mark.seq != 0:
            self._marks.create(Mark(self.ledger_id, 0))
        else:
            self._marks.open()
        self._fd = self._files.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                                    FILE_MODE)
        self._files.fchmod(self._fd, FILE_MODE)
        header = _header_line(self._header(0, 0))
        self._write_all(self._fd, header)
        self._sync(self._fd)
        if self._fsync:
            self._files.fsync_dir(self.path.parent)
        self._seq, self._size = 0, len(header)

    def _resume(self, marks: MarkReading, data: bytes, replay: Replay) -> None:
        self.ledger_id = replay.ledger_id or ""
        self._fd = self._files.open(self.path, os.O_RDWR | os.O_APPEND, FILE_MODE)
        self._files.fchmod(self._fd, FILE_MODE)
        if replay.good < len(data):
            # Only a write that was never acknowledged is cut (the replay checked it).
            log.warning("ledger %s: cut off a write a power cut interrupted (after record %d)",
                        self.path.name, replay.last_seq)
            self._files.ftruncate(self._fd, replay.good)
            self._sync(self._fd)
        self._seq, self._size = replay.last_seq, replay.good
        mark = marks.mark
        if mark is None:
            self._marks.create(Mark(self.ledger_id, self._seq))  # only when no record exists
        else:
            self._marks.open()
            if mark.seq < self._seq:
                self._marks.write(Mark(self.ledger_id, self._seq))

    def _upgrade(self, marks: MarkReading, data: bytes, replay: Replay) -> None:
        """A version-1 journal: give it an id and a sequence record, rewrite it as version 2."""
        self.ledger_id = uuid.uuid4().hex
        self._fd = self._files.open(self.path, os.O_RDWR | os.O_APPEND, FILE_MODE)
        if replay.good < len(data):
            log.warning("ledger %s: cut off an incomplete last write", self.path.name)
            self._files.ftruncate(self._fd, replay.good)
            self._sync(self._fd)
        self._size = replay.good
        self._marks.create(Mark(self.ledger_id, 0))
        self.compact()
        log.info("ledger %s: upgraded to journal format %d", self.path.name, JOURNAL_VERSION)

    def _acquire_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StorageLockedError(
                f"the ledger {self.path} is in use by another process "
                "(is the terminal service running?)"
            ) from None

    @staticmethod
    def _read_all(fd: int) -> bytes:
        return read_all(fd)

    def _header(self, seq: int, lines: int) -> dict[str, Any]:
        return {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "ledger": self.ledger_id,
                "seq": seq, "lines": lines}

    def _damage(self, what: str, affected: str = AFFECTS_JOURNAL) -> BooksDamaged:
        return BooksDamaged(Damage(str(self.path), what, affected))

    # ------------------------------------------------------------------------------- replay
    def _replay(self, data: bytes | None, marks: MarkReading) -> Replay:
        """Load the journal into memory and check it against the sequence record.

        Raises `BooksDamaged` for anything but an unacknowledged last write.
        """
        mark = marks.mark
        acknowledged = mark.seq if mark is not None else 0
        if not data or _could_be_torn_header(data):
            if acknowledged > 0:
                state = "missing" if data is None else "empty" if not data else "unreadable"
                raise self._damage(
                    f"the journal is {state}, but the sequence record "
                    f"{self.sequence_path.name} shows {acknowledged} record(s) were written",
                    AFFECTS_JOURNAL.replace("from that point on", "in it"),
                )
            return Replay(new=True, ledger_id=mark.ledger_id if mark else None)
        lines = data.split(b"\n")  # the piece after the last newline is a torn line, or b""
        try:
            header = _parse_header(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            # Never "repair" a file that is not ours: someone's data would be cut off.
            raise StorageCorruptError(Damage(
                str(self.path), "this is not a Flash Terminal ledger (its first line is not a "
                "journal header)", "No sale can be read from it.",
                "Check the data_dir setting; move the file away if it does not belong there."))
        version = header.get("version")
        if version == LEGACY_VERSION:
            return self._replay_legacy(lines)
        if version != JOURNAL_VERSION:
            raise StorageCorruptError(Damage(
                str(self.path), f"it has format version {version}; this software reads "
                f"version {JOURNAL_VERSION}", "Nothing can be read until the software is updated.",
                "Update the terminal software."))
        return self._replay_numbered(lines, header, marks)

    def _replay_numbered(self, lines: list[bytes], header: dict[str, Any],
                         marks: MarkReading) -> Replay:
        ledger_id, snapshot_seq, snapshot_lines = (header.get("ledger"), header.get("seq"),
                                                   header.get("lines"))
        if not (isinstance(ledger_id, str) and isinstance(snapshot_seq, int)
                and isinstance(snapshot_lines, int)):
            raise self._damage("its header is incomplete")
        replay = Replay(ledger_id=ledger_id, good=len(lines[0]) + 1)
        read_snapshot = 0
        last = snapshot_seq
        for number, line in enumerate(lines[1:-1], start=2):
            try:
                seq, payload = _parse_record(line)
            except ValueError:
                if replay.bad_line is None:
                    replay.bad_line = number
                continue
            if replay.bad_line is not None:
                raise self._damage(
                    f"line {replay.bad_line} fails its check while later lines are intact "
                    f"(record {last + 1} is damaged)")
            in_snapshot = read_snapshot < snapshot_lines
            expected = snapshot_seq if in_snapshot else last + 1
            if seq != expected:
                raise self._damage(
                    f"records are missing: line {number} holds record {seq} where record "
                    f"{expected} should be (a gap in the sequence)")
            self._apply_payload(payload, number, len(line))
            if in_snapshot:
                read_snapshot += 1
            else:
                last = seq
            replay.good += len(line) + 1
        if lines[-1] and replay.bad_line is None:
            replay.bad_line = len(lines)  # an unterminated last line
        if read_snapshot < snapshot_lines:
            raise self._damage(
                f"it ends inside its snapshot ({read_snapshot} of {snapshot_lines} lines): "
                "the file was cut short", AFFECTS_JOURNAL.replace("from that point on", ""))
        replay.last_seq = last
        self._check_against_marks(replay, marks)
        return replay

    def _check_against_marks(self, replay: Replay, marks: MarkReading) -> None:
        mark, last = marks.mark, replay.last_seq
        seq_name = self.sequence_path.name
        if mark is None:
            if last > 0:
                state = "unreadable" if marks.unreadable else "missing"
                raise self._damage(
                    f"its sequence record {seq_name} is {state}, so the journal cannot be "
                    f"checked for lost records (it holds records up to {last})",
                    "Records written after the last one in the journal may be missing.")
            return
        if mark.ledger_id != replay.ledger_id:
            raise self._damage(
                f"its sequence record {seq_name} belongs to another ledger",
                "The journal cannot be checked for lost records.")
        if last < mark.seq:
            where = (f"line {replay.bad_line} fails its check" if replay.bad_line is not None
                     else "the file ends there")
            raise self._damage(
                f"it ends at record {last} but records up to {mark.seq} were acknowledged "
                f"({where}): it was cut short, zeroed or damaged")

    def _replay_legacy(self, lines: list[bytes]) -> Replay:
        """Version 1: no record numbers; only an unterminated last line may be cut."""
        replay = Replay(version=LEGACY_VERSION, good=len(lines[0]) + 1)
        for number, line in enumerate(lines[1:-1], start=2):
            try:
                payload = json.loads(_verified_body(line))
            except ValueError:
                raise self._damage(f"line {number} fails its check") from None
            self._apply_payload(payload, number, len(line))
            replay.good += len(line) + 1
        if lines[-1]:
            replay.bad_line = len(lines)
        return replay

    def _apply_payload(self, payload: Any, number: int, line_size: int) -> None:
        try:
            for op in payload:
                if op[0] == OP_PUT:
                    size = line_size if len(payload) == 1 else len(_encode(op)) + 12
                    self._apply(op, op[3], size)
                else:
                    self._apply(op, None, 0)
        except (TypeError, IndexError, KeyError) as exc:
            raise self._damage(f"line {number} is not a readable record") from exc

    # ------------------------------------------------------------------------- TinyDB contract
    def read(self) -> Tables:
        """A private copy of everything (TinyDB's stock tables mutate what they read)."""
        with self._lock:
            return {name: {k: _copy(d) for k, d in t.items()} for name, t in self._tables.items()}

    def write(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Record the difference between `data` and the current state (per document)."""
        with self._lock:
            ops: list[Op] = [(OP_DROP, name) for name in self._tables if name not in data]
            for name, table in data.items():
                live = self._tables.get(name)
                if live is None:
                    ops.append((OP_CLEAR, name))
                    live = {}
                keys = {str(k) for k in table}
                ops.extend((OP_DEL, name, k) for k in live if k not in keys)
                for key, doc in table.items():
                    if live.get(str(key), _MISSING) != doc:
                        ops.append((OP_PUT, name, str(key), doc))
            self.commit(ops)

    def close(self) -> None:
        with self._lock:
            self._marks.close()
            fd, self._fd = self._fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    self._files.close(fd)
            lock_fd, self._lock_fd = self._lock_fd, None
            if lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(lock_fd)

    # ------------------------------------------------------------------------ journal access
    def table_view(self, name: str) -> Mapping[str, dict[str, Any]]:
        """The live documents of one table (read-only by contract: never mutate them)."""
        return self._tables.get(name, {})

    def doc_text(self, name: str, key: str) -> str:
        """The JSON of a live document as it was committed (encoded now when not cached)."""
        text = self._texts.get(name, {}).get(key)
        return text if text is not None else _encode(self._tables[name][key])

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def table_names(self) -> set[str]:
        return set(self._tables)

    @property
    def journal_bytes(self) -> int:
        return self._size

    @property
    def live_bytes(self) -> int:
        return self._live_bytes

    @property
    def in_group(self) -> bool:
        return self._group_depth > 0

    def commit(self, ops: list[Op]) -> None:
        """Make `ops` durable as one journal record, then apply them in memory.

        Inside `group()` the record is written when the outermost group ends.
        """
        if not ops:
            return
        with self._lock:
            if self.read_only:
                raise StorageReadOnlyError(f"the ledger {self.path} was opened read-only")
            encoded = [self._encode_op(op) for op in ops]  # raises before anything changes
            if self._group_depth:
                for op, (text, doc_text) in zip(ops, encoded, strict=True):
                    self._group_undo.append(self._undo_record(op))
                    self._apply_encoded(op, text, doc_text)
                    self._group_ops.append(text)
                return
            acknowledged = self._append("[" + ",".join(text for text, _ in encoded) + "]")
            for op, (text, doc_text) in zip(ops, encoded, strict=True):
                self._apply_encoded(op, text, doc_text)
            acknowledged.check()
            self._maybe_compact()

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Group commit: every write inside becomes one journal record and one fsync, atomically.

        Reads inside the block see the new state; if the block raises or the final write
        fails, memory is rolled back to the state before the block.
        """
        with self._lock:
            self._group_depth += 1
            try:
                yield
            except BaseException:
                self._group_depth -= 1
                if not self._group_depth:
                    self._rollback_group()
                raise
            self._group_depth -= 1
            if self._group_depth:
                return
            texts, self._group_ops = self._group_ops, []
            if not texts:
                self._group_undo = []
                return
            try:
                acknowledged = self._append("[" + ",".join(texts) + "]")
            except BaseException:
                self._group_ops = texts
                self._rollback_group()
                raise
            self._group_undo = []
            acknowledged.check()
            self._maybe_compact()

    def _rollback_group(self) -> None:
        for record in reversed(self._group_undo):
            self._restore(record)
        self._group_undo = []
        self._group_ops = []

    # ---------------------------------------------------------------------------- in memory
    @staticmethod
    def _encode_op(op: Op) -> tuple[str, str]:
        kind = op[0]
        if kind == OP_PUT:
            _, table, key, doc = op
            if not isinstance(doc, Mapping):
                raise TypeError("a document must be a mapping")
            doc_text = _encode(dict(doc))
            return (f"[\"put\",{_encode_name(table)},{_encode_key(str(key))},{doc_text}]",
                    doc_text)
        if kind == OP_DEL:
            return _encode([OP_DEL, op[1], str(op[2])]), ""
        if kind in (OP_CLEAR, OP_DROP):
            return _encode([kind, op[1]]), ""
        raise ValueError(f"unknown journal operation {kind!r}")

    def _apply_encoded(self, op: Op, text: str, doc_text: str) -> None:
        # The stored copy is what a reopen would read: JSON types, no shared references.
        if op[0] == OP_PUT:
            self._apply(op, json.loads(doc_text), len(text) + 12, doc_text)
        else:
            self._apply(op, None, len(text) + 12)

    def _apply(self, op: Op | list[Any], doc: Any, size: int, doc_text: str | None = None
               ) -> None:
        """Apply one operation in memory; `size` estimates its line in a compacted journal;
        `doc_text` is the JSON a `put` was written as (None: not known)."""
        kind, name = op[0], op[1]
        if kind == OP_PUT:
            if not isinstance(doc, dict):
                raise TypeError("a document must be a JSON object")
            key = str(op[2])
            table = self._tables.setdefault(name, {})
            sizes = self._sizes.setdefault(name, {})
            texts = self._texts.setdefault(name, {})
            table[key] = doc
            self._live_bytes += size - sizes.get(key, 0)
            sizes[key] = size
            if doc_text is None:
                texts.pop(key, None)
            else:
                texts[key] = doc_text
        elif kind == OP_DEL:
            key = str(op[2])
            self._tables.get(name, {}).pop(key, None)
            self._live_bytes -= self._sizes.get(name, {}).pop(key, 0)
            self._texts.get(name, {}).pop(key, None)
        elif kind == OP_CLEAR:
            self._live_bytes -= sum(self._sizes.get(name, {}).values())
            self._tables[name] = {}
            self._sizes[name] = {}
            self._texts[name] = {}
        elif kind == OP_DROP:
            self._live_bytes -= sum(self._sizes.pop(name, {}).values())
            self._tables.pop(name, None)
            self._texts.pop(name, None)
        else:
            raise KeyError(kind)

    def _undo_record(self, op: Op) -> tuple[Any, ...]:
        name = op[1]
        if op[0] in (OP_PUT, OP_DEL):
            key = str(op[2])
            table = self._tables.get(name)
            if table is None:
                return ("table", name, None, None)
            return ("doc", name, key, table.get(key, _MISSING), self._sizes[name].get(key))
        table = self._tables.get(name)
        sizes = self._sizes.get(name)
        return ("table", name, None if table is None else dict(table),
                None if sizes is None else dict(sizes))

    def _restore(self, record: tuple[Any, ...]) -> None:
        kind, name = record[0], record[1]
        # Rolled-back documents lose their cached JSON (encoded again if a compaction needs it).
        if kind == "table":
            self._texts.pop(name, None)
            _, _, table, sizes = record
            self._live_bytes -= sum(self._sizes.get(name, {}).values())
            if table is None:
                self._tables.pop(name, None)
                self._sizes.pop(name, None)
            else:
                self._tables[name], self._sizes[name] = table, sizes
                self._live_bytes += sum(sizes.values())
            return
        _, _, key, doc, size = record
        self._texts.get(name, {}).pop(key, None)
        table, sizes = self._tables[name], self._sizes[name]
        self._live_bytes -= sizes.pop(key, 0)
        table.pop(key, None)
        if doc is not _MISSING:
            table[key] = doc
            sizes[key] = size
            self._live_bytes += size

    # --------------------------------------------------------------------------------- disk
    def _append(self, payload: str) -> _Acknowledgement:
        """Write one record durably; the returned acknowledgement raises if it is in doubt.

        The record is in the journal once this returns (memory must follow it); if its number
        could not be recorded in the sequence file, `check()` raises afterwards and the storage
        refuses further writes until it is reopened.
        """
        if self._broken:
            raise StorageError(self._broken)
        if self._fd is None:
            raise StorageError(f"the ledger {self.path} is closed")
        start = self._size
        seq = self._seq + 1
        line = _record_line(seq, payload)
        try:
            self._write_all(self._fd, line, self._write_fn)
            if self._fsync:
                self._fsync_fn(self._fd)
        except OSError as exc:
            self._cut_back(start)
            raise self._error("write", exc) from exc
        self._size = start + len(line)
        self._seq = seq
        try:
            self._marks.write(Mark(self.ledger_id, seq))
        except OSError as exc:
            # The record is durable in the journal (a reopen reads it), but not acknowledged.
            self._broken = (f"the sequence record of the ledger {self.path} could not be "
                            f"written ({exc.strerror}): restart the terminal")
            return _Acknowledgement(StorageError(self._broken))
        return _Acknowledgement(None)

    def _write_all(self, fd: int, data: bytes, write: WriteFn | None = None) -> None:
        write = write or self._files.write
        view = memoryview(data)
        written = 0
        while written < len(data):
            written += write(fd, view[written:])

    def _sync(self, fd: int) -> None:
        if self._fsync:
            self._files.fsync(fd)

    def _cut_back(self, size: int) -> None:
        """Remove a partial or unsynced line so it can never be read as acknowledged."""
        try:
            if self._fd is None:
                raise OSError("the ledger file is closed")
            self._files.ftruncate(self._fd, size)
        except OSError:
            self._broken = (
                f"the ledger {self.path} could not be repaired after a failed write: "
                "restart the terminal"
            )

    def _error(self, action: str, exc: OSError) -> StorageError:
        if exc.errno in _NO_SPACE:
            return StorageFullError(
                f"the disk holding the ledger {self.path} is full: the last change was NOT saved. "
                "Free some space (old exports, logs) and try again"
            )
        return StorageError(f"could not {action} the ledger {self.path}: {exc.strerror}")

    # --------------------------------------------------------------------------- compaction
    def _compact_path(self) -> Path:
        return self.path.with_name(self.path.name + ".compact")

    def compact_if_worthwhile(self, min_bytes: int) -> None:
        """Compact now if the journal is over `min_bytes` and the usual ratio of its live data
        (the ledger does this when it closes, so the next start replays little)."""
        with self._lock:
            if self.read_only or self._fd is None or self._broken or self._group_depth:
                return
            if self._size > max(min_bytes, self._compact_ratio * self._live_bytes):
                try:
                    self.compact()
                except StorageError as exc:
                    log.warning("ledger compaction postponed: %s", exc)

    def _maybe_compact(self) -> None:
        if self._size < max(self._compact_min_bytes, self._skip_compaction_until):
            return
        if self._size <= self._compact_ratio * self._live_bytes:
            return
        try:
            self.compact()
        except StorageError as exc:
            # The journal is still complete and valid; only its size suffers. Retry later.
            log.warning("ledger compaction postponed: %s", exc)
            self._skip_compaction_until = int(self._size * 1.5)

    def compact(self) -> None:
        """Rewrite the journal as one `put` per live document (atomically)."""
        with self._lock:
            if self.read_only or self._group_depth:
                raise StorageError("the ledger cannot be compacted now")
            if self._broken:
                raise StorageError(self._broken)
            tmp = self._compact_path()
            try:
                size = self._write_snapshot(tmp)
                new_fd = self._files.open(tmp, os.O_RDWR | os.O_APPEND, FILE_MODE)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self._files.unlink(tmp)
                raise self._error("compact", exc) from exc
            try:
                self._files.replace(tmp, self.path)
            except OSError as exc:
                self._files.close(new_fd)
                with contextlib.suppress(OSError):
                    self._files.unlink(tmp)
                raise self._error("compact", exc) from exc
            # From here the new file is the ledger: appends must go to it, whatever happens next.
            old_fd, self._fd = self._fd, new_fd
            if old_fd is not None:
                self._files.close(old_fd)
            self._size = size
            self._skip_compaction_until = 0
            self.compactions += 1
            try:
                if self._fsync:
                    self._files.fsync_dir(self.path.parent)  # the rename survives a power cut
            except OSError as exc:
                # Appending to a file whose name may not survive would lose acknowledged writes.
                self._broken = (f"the ledger {self.path} could not be made durable after a "
                                f"compaction ({exc.strerror}): restart the terminal")
                raise self._error("compact", exc) from exc

    def _write_snapshot(self, tmp: Path) -> int:
        return write_snapshot(tmp, self._tables, self.ledger_id, self._seq, files=self._files,
                              write_fn=self._write_fn, fsync=self._fsync, texts=self._texts)


def snapshot_chunks(tables: Mapping[str, Mapping[str, Any]], ledger_id: str, seq: int,
                    texts: Mapping[str, Mapping[str, str]] | None = None) -> Iterator[bytes]:
    """A whole journal holding `tables` as they stand after record `seq`, in ~1 MB chunks.

    `texts` (optional, per table and key): documents already encoded as JSON, written as they
    are; the others are encoded here."""
    lines = len(tables) + sum(len(t) for t in tables.values())
    header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "ledger": ledger_id,
              "seq": seq, "lines": lines}
    buffer: list[bytes] = [_header_line(header)]
    pending = len(buffer[0])
    no_texts: Mapping[str, str] = {}
    for name, table in tables.items():
        buffer.append(_record_line(seq, _encode([[OP_CLEAR, name]])))
        encoded = texts.get(name, no_texts) if texts is not None else no_texts
        for key, doc in table.items():
            doc_text = encoded.get(key)
            if doc_text is None:
                doc_text = _encode(doc)
            line = _record_line(
                seq, f"[[\"put\",{_encode_name(name)},{_encode_key(key)},{doc_text}]]")
            buffer.append(line)
            pending += len(line)
            if pending >= 1 << 20:
                yield b"".join(buffer)
                buffer, pending = [], 0
    yield b"".join(buffer)


def write_snapshot(tmp: Path, tables: Mapping[str, Mapping[str, Any]], ledger_id: str, seq: int,
                   *, files: FileOps = DEFAULT_FILE_OPS, write_fn: WriteFn | None = None,
                   fsync: bool = True, texts: Mapping[str, Mapping[str, str]] | None = None
                   ) -> int:
    """Write a snapshot journal to `tmp` (new, 0600, fsynced); returns its size. `texts`: as
    in `snapshot_chunks`."""
    write = write_fn or files.write
    fd = files.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        files.fchmod(fd, FILE_MODE)
        total = 0
        for chunk in snapshot_chunks(tables, ledger_id, seq, texts):
            view = memoryview(chunk)
            written = 0
            while written < len(chunk):
                written += write(fd, view[written:])
            total += len(chunk)
        if fsync:
            files.fsync(fd)
        return total
    finally:
        files.close(fd)


@dataclass(frozen=True)
class _Acknowledgement:
    """Raised by `check()` when a durable record's number could not be recorded."""

    error: StorageError | None

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class _StagedTable(MutableMapping):
    """What TinyDB's updaters see in `JournalTable`: the live table plus staged changes.

    Documents handed out for in-place updates are copies; `ops()` lists what really changed.
    """

    def __init__(self, live: Mapping[str, dict[str, Any]], id_class: Callable[[str], Any]):
        self._live = live
        self._id_class = id_class
        self._cleared = False
        self._staged: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()

    def _in_live(self, key: str) -> bool:
        return not self._cleared and key not in self._removed and key in self._live

    def __contains__(self, doc_id: object) -> bool:
        key = str(doc_id)
        return key in self._staged or self._in_live(key)

    def __getitem__(self, doc_id: Any) -> dict[str, Any]:
        key = str(doc_id)
        if key in self._staged:
            return self._staged[key]
        if not self._in_live(key):
            raise KeyError(doc_id)
        doc = self._staged[key] = _copy(self._live[key])
        return doc

    def __setitem__(self, doc_id: Any, doc: dict[str, Any]) -> None:
        key = str(doc_id)
        self._staged[key] = doc
        self._removed.discard(key)

    def __delitem__(self, doc_id: Any) -> None:
        key = str(doc_id)
        if key not in self:
            raise KeyError(doc_id)
        self._staged.pop(key, None)
        self._removed.add(key)

    def pop(self, doc_id: Any, *default: Any) -> Any:
        key = str(doc_id)
        if key not in self:
            if default:
                return default[0]
            raise KeyError(doc_id)
        doc = self._staged[key] if key in self._staged else self._live[key]
        del self[doc_id]
        return doc

    def __iter__(self) -> Iterator[Any]:
        if not self._cleared:
            for key in self._live:
                if key not in self._removed and key not in self._staged:
                    yield self._id_class(key)
        for key in self._staged:
            yield self._id_class(key)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def clear(self) -> None:
        self._cleared = True
        self._staged.clear()
        self._removed.clear()

    def ops(self, name: str, table_exists: bool) -> list[Op]:
        ops: list[Op] = []
        if self._cleared or not table_exists:
            ops.append((OP_CLEAR, name))
        if not self._cleared:
            ops.extend((OP_DEL, name, k) for k in self._removed if k in self._live)
        for key, doc in self._staged.items():
            if self._in_live(key) and self._live[key] == doc:
                continue  # handed out for an update that changed nothing
            ops.append((OP_PUT, name, key, doc))
        return ops


class JournalTable(Table):
    """A TinyDB table whose writes cost O(changed documents) on a `JournalStorage`.

    Stock `Table._update_table` reads, copies and rewrites the whole database on every write;
    this one stages the updater's changes and commits only those. As with stock TinyDB, returned
    documents are shallow copies: do not mutate their nested lists or dicts in place.
    """

    _storage: JournalStorage

    def _read_table(self) -> Mapping[str, Mapping]:  # type: ignore[override]
        return self._storage.table_view(self.name)

    def _update_table(self, updater: Callable[[dict[int, Mapping]], None]) -> None:
        storage = self._storage
        staged = _StagedTable(storage.table_view(self.name), self.document_id_class)
        updater(staged)  # type: ignore[arg-type]
        storage.commit(staged.ops(self.name, storage.has_table(self.name)))
        self.clear_cache()

    def replace(self, doc_id: int, document: Mapping) -> None:
        """Store `document` as the whole of document `doc_id` (insert or overwrite), O(1).

        The operations `_update_table` would stage for it, built directly (the ledger's every
        write comes here)."""
        storage, name, key = self._storage, self.name, str(doc_id)
        new = dict(document)
        ops: list[Op] = [] if storage.has_table(name) else [(OP_CLEAR, name)]
        if storage.table_view(name).get(key, _MISSING) != new:  # else: nothing changed
            ops.append((OP_PUT, name, key, new))
        storage.commit(ops)
        self.clear_cache()
        if self._next_id is not None and doc_id >= self._next_id:
            self._next_id = doc_id + 1


class JournalDB(TinyDB):
    """TinyDB over a `JournalStorage` with O(changed) tables: `JournalDB(path, **options)`."""

    table_class = JournalTable
    default_storage_class = JournalStorage  # type: ignore[assignment]

    @property
    def journal(self) -> JournalStorage:
        storage = self.storage
        if not isinstance(storage, JournalStorage):  # default_storage_class: never happens
            raise TypeError("JournalDB runs on a JournalStorage")
        return storage

    def tables(self) -> set[str]:
        return self.journal.table_names()  # without copying every document like read() does


__all__ = [
    "BooksDamaged",
    "JournalDB",
    "JournalStorage",
    "JournalTable",
    "StorageCorruptError",
    "StorageError",
    "StorageFullError",
    "StorageLockedError",
    "StorageReadOnlyError",
]
