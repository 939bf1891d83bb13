"""The file-system calls the books make, in one injectable place.

Everything the journal and its sequence record do to the disk goes through a `FileOps`: the
default one calls `os` directly; tests pass one that fails on cue (a full disk) or records every
write, fsync and rename so that the crash states a POSIX file system allows can be replayed
(tests/crashstates.py). Reads are not recorded: they change nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


class FileOps:
    """`os` calls by name. Subclasses observe or change them; the default adds nothing."""

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fchmod(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, directory: Path) -> None:
        """Make the directory's entries (a new file, a rename) survive a power cut."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


DEFAULT_FILE_OPS = FileOps()


def read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


__all__ = ["DEFAULT_FILE_OPS", "FileOps", "read_all"]
