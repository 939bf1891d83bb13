"""Crash states beyond SIGKILL: record what the books ask of the file system, then rebuild every
state a POSIX file system may leave after a power cut, as ALICE and the SQLite crash studies do.

`RecordingFileOps` is the books' file layer (terminal/adapters/books/fileops.py) doing the real
calls and logging each change: file creation, writes (with their offsets), truncations, fsyncs,
renames, unlinks and directory fsyncs. The archive is SQLite: its own crash safety with
synchronous=FULL is SQLite's guarantee (a commit is all or nothing, durable once it returns), so
each archive write is logged as one atomic step carrying the committed database image.

`crash_states(log, k)` yields the file system states possible if power is cut right after the
k-th logged change. What is on disk is what an fsync made durable, plus any subset of what was
not synced yet:
- each unsynced write is split at 512-byte sector boundaries, and any subset of the sectors may
  have reached the disk (writes dropped, torn, and reordered: a later sector without an earlier
  one);
- a file's length may already cover an unsynced append whose data did not arrive (zeros);
- a directory entry (a new file, a rename, an unlink) is durable only after the directory's
  fsync: any subset of the pending ones may have happened;
- archive commits happened up to the crash point, or not at all.
The number of states is bounded per crash point (all when few, else a seeded sample that always
includes the extremes), so the whole run fits in the normal test suite.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from terminal.adapters.books.fileops import FileOps

SECTOR = 512


@dataclass
class Op:
    kind: str  # create | write | truncate | fsync | rename | unlink | fsync_dir | archive
    path: str = ""
    inode: int = -1
    offset: int = 0
    data: bytes = b""
    size: int = 0
    target: str = ""


@dataclass
class CallMark:
    """Where one call to the books started and returned, in log positions."""

    name: str
    start: int
    end: int | None = None


class RecordingFileOps(FileOps):
    """Real file calls, each change logged (see the module docstring)."""

    def __init__(self) -> None:
        self.log: list[Op] = []
        self._names: dict[str, int] = {}  # path -> inode
        self._fd_inode: dict[int, int] = {}
        self._fd_path: dict[int, str] = {}
        self._next_inode = 0

    def _inode_of(self, path: str) -> int:
        if path not in self._names:  # a file that existed before recording started
            self._next_inode += 1
            self._names[path] = self._next_inode
        return self._names[path]

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        name = str(path)
        existed = os.path.exists(name)
        fd = os.open(path, flags, mode)
        if flags & os.O_CREAT and not existed:
            self._next_inode += 1
            self._names[name] = self._next_inode
            self.log.append(Op("create", name, self._next_inode))
        inode = self._inode_of(name)
        self._fd_inode[fd], self._fd_path[fd] = inode, name
        if flags & os.O_TRUNC and existed:
            self.log.append(Op("truncate", name, inode, size=0))
        return fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        offset = os.fstat(fd).st_size if _appending(fd) else os.lseek(fd, 0, os.SEEK_CUR)
        written = os.write(fd, data)
        self.log.append(Op("write", self._fd_path[fd], self._fd_inode[fd], offset=offset,
                           data=bytes(data[:written])))
        return written

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        written = os.pwrite(fd, data, offset)
        self.log.append(Op("write", self._fd_path[fd], self._fd_inode[fd], offset=offset,
                           data=bytes(data[:written])))
        return written

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        self.log.append(Op("fsync", self._fd_path[fd], self._fd_inode[fd]))

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)
        self.log.append(Op("truncate", self._fd_path[fd], self._fd_inode[fd], size=size))

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)
        inode = self._inode_of(str(src))
        self._names[str(dst)] = inode
        del self._names[str(src)]
        self.log.append(Op("rename", str(src), inode, target=str(dst)))

    def unlink(self, path: Path) -> None:
        os.unlink(path)
        inode = self._names.pop(str(path), -1)
        self.log.append(Op("unlink", str(path), inode))

    def fsync_dir(self, directory: Path) -> None:
        super().fsync_dir(directory)
        self.log.append(Op("fsync_dir", str(directory)))

    def archive_commit(self, path: Path, image: bytes) -> None:
        """A committed SQLite transaction: the whole database as it now stands."""
        self.log.append(Op("archive", str(path), data=image))


def _appending(fd: int) -> bool:
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)


# --------------------------------------------------------------------------------- replay
@dataclass
class _Inode:
    durable: bytearray = field(default_factory=bytearray)
    pending: list[Op] = field(default_factory=list)


def _apply(content: bytearray, op: Op) -> None:
    if op.kind == "truncate":
        del content[op.size:]
    else:
        end = op.offset + len(op.data)
        if len(content) < op.offset:
            content.extend(bytes(op.offset - len(content)))
        content[op.offset:end] = op.data


def _sectors(op: Op) -> list[Op]:
    if op.kind != "write":
        return [op]
    pieces, start = [], op.offset
    end = op.offset + len(op.data)
    while start < end:
        stop = min(end, (start // SECTOR + 1) * SECTOR)
        pieces.append(Op("write", op.path, op.inode, offset=start,
                         data=op.data[start - op.offset : stop - op.offset]))
        start = stop
    return pieces


@dataclass
class CrashState:
    files: dict[str, bytes]  # path -> content
    archive: bytes | None
    label: str


def crash_states(log: list[Op], upto: int, *, limit: int = 48,
                 seed: int = 0) -> Iterator[CrashState]:
    """The states possible when power is cut right after `log[upto - 1]` (see module doc)."""
    inodes: dict[int, _Inode] = {}
    durable_names: dict[str, int] = {}
    pending_dir: list[Op] = []
    names: dict[str, int] = {}
    archive: bytes | None = None
    for op in log[:upto]:
        if op.kind == "archive":
            archive = op.data
        elif op.kind == "create":
            inodes.setdefault(op.inode, _Inode())
            names[op.path] = op.inode
            pending_dir.append(op)
        elif op.kind in ("write", "truncate"):
            inodes.setdefault(op.inode, _Inode()).pending.append(op)
        elif op.kind == "fsync":
            node = inodes.setdefault(op.inode, _Inode())
            for pending in node.pending:
                _apply(node.durable, pending)
            node.pending = []
        elif op.kind in ("rename", "unlink"):
            if op.kind == "rename":
                names[op.target] = names.pop(op.path)
            else:
                names.pop(op.path, None)
            pending_dir.append(op)
        elif op.kind == "fsync_dir":
            for pending in pending_dir:
                _dir_apply(durable_names, pending)
            pending_dir = []
    pieces = [(inode, piece) for inode, node in inodes.items()
              for pending in node.pending for piece in _sectors(pending)]
    choices = len(pieces) + len(pending_dir) + 1  # +1: lengths ahead of data
    rng = random.Random(seed * 1_000_003 + upto)
    for mask in _masks(choices, limit, rng):
        chosen = {i for i in range(choices) if mask >> i & 1}
        dir_names = dict(durable_names)
        for j, op in enumerate(pending_dir):
            if len(pieces) + j in chosen:
                _dir_apply(dir_names, op)
        size_ahead = choices - 1 in chosen
        contents: dict[int, bytearray] = {}
        for inode, node in inodes.items():
            content = bytearray(node.durable)
            ends = [len(content)]
            for i, (owner, piece) in enumerate(pieces):
                if owner != inode:
                    continue
                if piece.kind == "write":
                    ends.append(piece.offset + len(piece.data))
                if i in chosen:
                    _apply(content, piece)
            if size_ahead and len(content) < max(ends):
                content.extend(bytes(max(ends) - len(content)))
            contents[inode] = content
        files = {path: bytes(contents.get(inode, b"")) for path, inode in dir_names.items()}
        yield CrashState(files, archive, f"after op {upto}, mask {mask:b}")


def _dir_apply(names: dict[str, int], op: Op) -> None:
    if op.kind == "create":
        names[op.path] = op.inode
    elif op.kind == "rename":
        if op.path in names:
            names[op.target] = names.pop(op.path)
        else:  # the file's own creation is not durable: the rename moves nothing
            names.pop(op.target, None)
            names[op.target] = op.inode
    elif op.kind == "unlink":
        names.pop(op.path, None)


def _masks(choices: int, limit: int, rng: random.Random) -> Iterator[int]:
    full = (1 << choices) - 1
    if choices <= 12 and (1 << choices) <= limit:
        yield from range(1 << choices)
        return
    seen = {0, full}
    yield 0
    yield full
    for i in range(choices):  # each single change lost, and each alone
        for mask in (full & ~(1 << i), 1 << i):
            if mask not in seen and len(seen) < limit:
                seen.add(mask)
                yield mask
    for mask in itertools.islice(iter(lambda: rng.getrandbits(choices), None), limit * 4):
        if len(seen) >= limit:
            return
        if mask not in seen:
            seen.add(mask)
            yield mask


def materialise(state: CrashState, directory: Path, archive_path: Path) -> None:
    """Write a crash state's files into `directory` (empty), the archive image included."""
    for path, content in state.files.items():
        target = directory / Path(path).name
        target.write_bytes(content)
        os.chmod(target, 0o600)
    if state.archive is not None:
        (directory / archive_path.name).write_bytes(state.archive)
