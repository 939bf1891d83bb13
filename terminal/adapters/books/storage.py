"""Crash-safe TinyDB storage: an append-only, checksummed journal with atomic compaction.

Why not TinyDB's own `JSONStorage`: it rewrites the whole file in place on every write (O(n) per
insert) and a power cut mid-rewrite leaves a file that no longer parses. Here:

- The file is a journal of lines `<crc32 hex> <json>\\n`. Line 1 is a header naming the format;
  each later line is one acknowledged write: a list of operations on documents
  (`put`, `del`, `clear` a table, `drop` a table). A write returns only after its line is fsynced.
- On open, the journal is replayed into memory. A damaged *tail* (a line cut short by a crash or
  failing its checksum, with nothing valid after it) was never acknowledged: it is dropped and cut
  off the file. A damaged line followed by valid ones is real corruption: `StorageCorruptError`.
- Each write appends only the documents that changed (O(changed), not O(database)). `JournalTable`
  hands TinyDB's updaters a staging view so changes are known without diffing whole tables; the
  plain `read()`/`write()` contract also works (it diffs per document against the last state).
- When the file grows past `compact_ratio` × the size of the live data, it is compacted: a fresh
  journal holding one `put` per live document is written to a temporary file, fsynced,
  `os.replace`d over the old one, and the directory is fsynced.
- Memory never runs ahead of the disk: a change is applied in memory only after its line is durable.
  If the write fails (full disk: `StorageFullError`), the partial line is cut off and the error is
  raised, so the caller knows nothing was recorded.
- The file is created 0600 (the ledger holds one-time tap URLs) and one writer at a time holds an
  exclusive lock on `<file>.lock`. Read-only opens (history export) take no lock and never write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

log = logging.getLogger(__name__)

JOURNAL_FORMAT = "flash-terminal-journal"
JOURNAL_VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o700
CRC_HEX_LEN = 8  # "%08x" of a CRC-32, then one space, then the JSON payload

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


class StorageError(Exception):
    """The ledger file could not be read or written. The message says what to do."""


class StorageFullError(StorageError):
    """The disk is full: the write was NOT recorded."""


class StorageCorruptError(StorageError):
    """The ledger file is damaged before its last line (not a crash tail): it needs attention."""


class StorageLockedError(StorageError):
    """Another process already has the ledger open for writing."""


class StorageReadOnlyError(StorageError):
    """A write was attempted on a ledger opened read-only."""


def _encode(value: Any) -> str:
    # Strict JSON (no NaN) so every line parses the same in any reader.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _line(payload: str) -> bytes:
    body = payload.encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _parse_line(line: bytes) -> Any:
    """The payload of one complete line, or raise ValueError when it is damaged."""
    if len(line) <= CRC_HEX_LEN + 1 or line[CRC_HEX_LEN : CRC_HEX_LEN + 1] != b" ":
        raise ValueError("no checksum")
    body = line[CRC_HEX_LEN + 1 :]
    if int(line[:CRC_HEX_LEN], 16) != zlib.crc32(body):
        raise ValueError("checksum mismatch")
    return json.loads(body)


def _copy(value: Any) -> Any:
    """Deep copy of a JSON value (much faster than copy.deepcopy for this shape)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalStorage(Storage):
    """TinyDB storage over an append-only journal (see the module docstring).

    `write_fn`/`fsync_fn` default to `os.write`/`os.fsync`; tests inject failures through them.
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
        write_fn: WriteFn = os.write,
        fsync_fn: SyncFn = os.fsync,
    ) -> None:
        if compact_ratio <= 1.0:
            raise ValueError("compact_ratio must be greater than 1")
        self.path = Path(path)
        self.read_only = read_only
        self._fsync = fsync
        self._compact_ratio = compact_ratio
        self._compact_min_bytes = compact_min_bytes
        self._write_fn = write_fn
        self._fsync_fn = fsync_fn
        self._lock = threading.RLock()
        self._tables: Tables = {}
        self._sizes: dict[str, dict[str, int]] = {}  # encoded size of each live document
        self._live_bytes = 0
        self._size = 0  # bytes of the journal known to be valid
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._broken: str | None = None
        self._group_depth = 0
        self._group_ops: list[str] = []
        self._group_undo: list[tuple[Any, ...]] = []
        self._skip_compaction_until = 0
        self.compactions = 0
        if read_only:
            self._load_read_only()
        else:
            self._open_for_writing(create_dirs)

    # ------------------------------------------------------------------------------- opening
    def _load_read_only(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return  # no ledger yet: nothing recorded
        except OSError as exc:
            raise StorageError(f"cannot read the ledger {self.path}: {exc.strerror}") from exc
        self._replay(data)

    def _open_for_writing(self, create_dirs: bool) -> None:
        directory = self.path.parent
        if not directory.is_dir():
            if not create_dirs:
                raise StorageError(f"the ledger directory {directory} does not exist")
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        with contextlib.suppress(FileNotFoundError):
            self._compact_path().unlink()  # a compaction interrupted by a crash: never used
        self._acquire_lock()
        existed = self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
            os.fchmod(self._fd, FILE_MODE)
            data = self._read_all(self._fd)
        except OSError as exc:
            self.close()
            raise StorageError(f"cannot open the ledger {self.path}: {exc.strerror}") from exc
        try:
            good = self._replay(data)
        except StorageError:
            self.close()
            raise
        try:
            if good < len(data):
                # The tail was never acknowledged (crash mid-append): cut it off before appending.
                log.warning("ledger %s: dropped an incomplete last write", self.path.name)
                os.ftruncate(self._fd, good)
                self._sync(self._fd)
            self._size = good
            if good == 0:
                self._append(_line(self._header()))
            if not existed:
                _fsync_dir(directory)
        except OSError as exc:
            self.close()
            raise self._error("prepare", exc) from exc

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
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _header() -> str:
        return _encode({"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION})

    def _replay(self, data: bytes) -> int:
        """Load the journal into memory; returns the length of its valid prefix."""
        good = 0
        bad_at: int | None = None
        header = _line(self._header())
        if len(data) < len(header) and header.startswith(data):
            return 0  # a crash while the header itself was being written: nothing recorded
        lines = data.split(b"\n")
        if data and not self._is_header_line(lines[0]):
            # Never "repair" a file that is not ours: someone's data would be cut off.
            raise StorageCorruptError(f"{self.path} is not a Flash Terminal ledger")
        # The piece after the last newline is an unterminated (torn) line, or empty.
        for number, line in enumerate(lines[:-1], start=1):
            try:
                payload = _parse_line(line)
            except ValueError:
                if bad_at is None:
                    bad_at = number
                continue
            if bad_at is not None:
                raise StorageCorruptError(
                    f"the ledger {self.path} is damaged at line {bad_at} (later lines are intact): "
                    "stop the terminal and keep a copy of the file for support"
                )
            if number == 1:
                self._check_header(payload)
            else:
                try:
                    for op in payload:
                        if op[0] == OP_PUT:
                            size = len(line) if len(payload) == 1 else len(_encode(op)) + 12
                            self._apply(op, op[3], size)
                        else:
                            self._apply(op, None, 0)
                except (TypeError, IndexError, KeyError) as exc:
                    raise StorageCorruptError(
                        f"the ledger {self.path} has an unreadable record at line {number}"
                    ) from exc
            good += len(line) + 1
        return good

    @staticmethod
    def _is_header_line(line: bytes) -> bool:
        try:
            payload = _parse_line(line)
        except ValueError:
            return False
        return isinstance(payload, dict) and payload.get("format") == JOURNAL_FORMAT

    def _check_header(self, payload: Any) -> None:
        if not isinstance(payload, dict) or payload.get("format") != JOURNAL_FORMAT:
            raise StorageCorruptError(f"{self.path} is not a Flash Terminal ledger")
        if payload.get("version") != JOURNAL_VERSION:
            raise StorageCorruptError(
                f"the ledger {self.path} has format version {payload.get('version')}; "
                f"this software reads version {JOURNAL_VERSION}: update the terminal software"
            )

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
            for attr in ("_fd", "_lock_fd"):
                fd = getattr(self, attr)
                if fd is not None:
                    setattr(self, attr, None)
                    with contextlib.suppress(OSError):
                        os.close(fd)

    # ------------------------------------------------------------------------ journal access
    def table_view(self, name: str) -> Mapping[str, dict[str, Any]]:
        """The live documents of one table (read-only by contract: never mutate them)."""
        return self._tables.get(name, {})

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

    def commit(self, ops: list[Op]) -> None:
        """Make `ops` durable as one journal line, then apply them in memory.

        Inside `group()` the line is written when the outermost group ends.
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
            self._append(_line("[" + ",".join(text for text, _ in encoded) + "]"))
            for op, (text, doc_text) in zip(ops, encoded, strict=True):
                self._apply_encoded(op, text, doc_text)
            self._maybe_compact()

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """Group commit: every write inside becomes one journal line and one fsync, atomically.

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
                self._append(_line("[" + ",".join(texts) + "]"))
            except BaseException:
                self._group_ops = texts
                self._rollback_group()
                raise
            self._group_undo = []
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
            return f"[\"put\",{_encode(table)},{_encode(str(key))},{doc_text}]", doc_text
        if kind == OP_DEL:
            return _encode([OP_DEL, op[1], str(op[2])]), ""
        if kind in (OP_CLEAR, OP_DROP):
            return _encode([kind, op[1]]), ""
        raise ValueError(f"unknown journal operation {kind!r}")

    def _apply_encoded(self, op: Op, text: str, doc_text: str) -> None:
        # The stored copy is what a reopen would read: JSON types, no shared references.
        doc = json.loads(doc_text) if op[0] == OP_PUT else None
        self._apply(op, doc, len(text) + 12)

    def _apply(self, op: Op | list[Any], doc: Any, size: int) -> None:
        """Apply one operation in memory; `size` estimates its line in a compacted journal."""
        kind, name = op[0], op[1]
        if kind == OP_PUT:
            if not isinstance(doc, dict):
                raise TypeError("a document must be a JSON object")
            key = str(op[2])
            table = self._tables.setdefault(name, {})
            sizes = self._sizes.setdefault(name, {})
            table[key] = doc
            self._live_bytes += size - sizes.get(key, 0)
            sizes[key] = size
        elif kind == OP_DEL:
            key = str(op[2])
            self._tables.get(name, {}).pop(key, None)
            self._live_bytes -= self._sizes.get(name, {}).pop(key, 0)
        elif kind == OP_CLEAR:
            self._live_bytes -= sum(self._sizes.get(name, {}).values())
            self._tables[name] = {}
            self._sizes[name] = {}
        elif kind == OP_DROP:
            self._live_bytes -= sum(self._sizes.pop(name, {}).values())
            self._tables.pop(name, None)
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
        if kind == "table":
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
        table, sizes = self._tables[name], self._sizes[name]
        self._live_bytes -= sizes.pop(key, 0)
        table.pop(key, None)
        if doc is not _MISSING:
            table[key] = doc
            sizes[key] = size
            self._live_bytes += size

    # --------------------------------------------------------------------------------- disk
    def _append(self, line: bytes) -> None:
        if self._broken:
            raise StorageError(self._broken)
        if self._fd is None:
            raise StorageError(f"the ledger {self.path} is closed")
        start = self._size
        view = memoryview(line)
        try:
            written = 0
            while written < len(line):
                written += self._write_fn(self._fd, view[written:])
            self._sync(self._fd)
        except OSError as exc:
            self._cut_back(start)
            raise self._error("write", exc) from exc
        self._size = start + len(line)

    def _sync(self, fd: int) -> None:
        if self._fsync:
            self._fsync_fn(fd)

    def _cut_back(self, size: int) -> None:
        """Remove a partial or unsynced line so it can never be read as acknowledged."""
        try:
            os.ftruncate(self._fd, size)  # type: ignore[arg-type]
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
            tmp = self._compact_path()
            try:
                size = self._write_snapshot(tmp)
                new_fd = os.open(tmp, os.O_RDWR | os.O_APPEND)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise self._error("compact", exc) from exc
            try:
                os.replace(tmp, self.path)
            except OSError as exc:
                os.close(new_fd)
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise self._error("compact", exc) from exc
            # From here the new file is the ledger: appends must go to it, whatever happens next.
            old_fd, self._fd = self._fd, new_fd
            if old_fd is not None:
                os.close(old_fd)
            self._size = size
            self._skip_compaction_until = 0
            self.compactions += 1
            try:
                _fsync_dir(self.path.parent)  # make the rename itself survive a power cut
            except OSError as exc:
                raise self._error("compact", exc) from exc

    def _write_snapshot(self, tmp: Path) -> int:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            buffer: list[bytes] = [_line(self._header())]
            pending = len(buffer[0])
            total = 0

            def flush() -> None:
                nonlocal buffer, pending, total
                data = memoryview(b"".join(buffer))
                written = 0
                while written < len(data):
                    written += self._write_fn(fd, data[written:])
                total += len(data)
                buffer, pending = [], 0

            for name, table in self._tables.items():
                buffer.append(_line(_encode([[OP_CLEAR, name]])))
                for key, doc in table.items():
                    line = _line(f"[[\"put\",{_encode(name)},{_encode(key)},{_encode(doc)}]]")
                    buffer.append(line)
                    pending += len(line)
                    if pending >= 1 << 20:
                        flush()
            flush()
            self._sync(fd)
            return total
        finally:
            os.close(fd)


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
        """Store `document` as the whole of document `doc_id` (insert or overwrite), O(1)."""
        new = dict(document)

        def updater(table: MutableMapping) -> None:
            table[doc_id] = new

        self._update_table(updater)
        if self._next_id is not None and doc_id >= self._next_id:
            self._next_id = doc_id + 1


class JournalDB(TinyDB):
    """TinyDB over a `JournalStorage` with O(changed) tables: `JournalDB(path, **options)`."""

    table_class = JournalTable
    default_storage_class = JournalStorage  # type: ignore[assignment]

    @property
    def journal(self) -> JournalStorage:
        return self.storage  # type: ignore[return-value]

    def tables(self) -> set[str]:
        return self.journal.table_names()  # without copying every document like read() does


__all__ = [
    "JournalDB",
    "JournalStorage",
    "JournalTable",
    "StorageCorruptError",
    "StorageError",
    "StorageFullError",
    "StorageLockedError",
    "StorageReadOnlyError",
]
