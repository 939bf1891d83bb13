"""The provisioning journal: card keys and completed steps, on disk before the card changes.

An append-only JSON-lines file (0600, fsynced after every line) holds, per operation:
  {"entry": id, "event": "begin", "op": "program"|"wipe", "card_ref": …, "keys": {k0..k4},
   "version": N, "url": …, "random_uid": bool, "card_id": …}
  {"entry": id, "event": "step", "step": "…"}            after the card confirmed the step
  {"entry": id, "event": "end", "outcome": "done"|"abandoned"}
The `begin` line is written before the first command that changes the card, so a card is never
left with keys recorded nowhere. The card itself says where a resumed operation stands (key
versions, file settings, a verified tap); the steps here are a record for people and for the
steps the card cannot show. A torn last line (power cut while writing) is ignored.

`card_ref` is HMAC-SHA256(K2 of the entry's keys, UID) cut to 16 bytes: it identifies the card
without writing its UID down. The file holds keys: it is created 0600 and never exported.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from terminal.protocols.boltcard.provisioning import BoltcardKeys, JournalUnusable

JOURNAL_SUFFIX = ".provisioning.jsonl"
JOURNAL_NAME = "provisioning.jsonl"
CARD_REF_BYTES = 16


def card_ref(keys: BoltcardKeys, uid: bytes) -> str:
    """A keyed hash of the UID: matches a card to its entry, reveals nothing without K2."""
    return hmac.digest(keys.k2, uid, "sha256")[:CARD_REF_BYTES].hex()


def journal_for_card_file(card_file: str | os.PathLike[str]) -> Path:
    """The journal of a simulated card lives next to the card file."""
    path = Path(card_file)
    return path.with_name(path.name + JOURNAL_SUFFIX)


class JournalError(JournalUnusable):
    """The journal cannot be written: programming must not start (keys would be unrecorded)."""


@dataclass
class JournalEntry:
    entry_id: str
    op: str  # "program" | "wipe"
    card_ref: str
    keys: BoltcardKeys = field(repr=False)
    url: str | None
    random_uid: bool = False
    card_id: str | None = None
    started: float = 0.0
    steps: list[str] = field(default_factory=list)
    outcome: str | None = None

    @property
    def pending(self) -> bool:
        return self.outcome is None

    def matches(self, uid: bytes | None) -> bool:
        return uid is not None and hmac.compare_digest(card_ref(self.keys, uid), self.card_ref)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class ProvisioningJournal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # --- writing ----------------------------------------------------------------------------

    def _append(self, record: dict[str, object]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                if _ends_torn(fd):
                    # A power cut mid-line left no newline: start on a fresh line, or this
                    # record (perhaps the one holding the keys) would be glued to the torn one
                    # and skipped with it on reading.
                    line = b"\n" + line
                _write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                # The new name must survive a power cut too.
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as error:
            raise JournalError(
                f"cannot write the provisioning journal {self.path}: {error.strerror}"
            ) from None

    def begin(
        self, op: str, uid: bytes, keys: BoltcardKeys, *, url: str | None = None,
        random_uid: bool = False, card_id: str | None = None,
    ) -> JournalEntry:
        entry = JournalEntry(
            entry_id=secrets.token_hex(8), op=op, card_ref=card_ref(keys, uid), keys=keys,
            url=url, random_uid=random_uid, card_id=card_id, started=time.time(),
        )
        self._append({
            "entry": entry.entry_id, "event": "begin", "op": op, "card_ref": entry.card_ref,
            "keys": {f"k{n}": keys.key(n).hex() for n in range(5)}, "version": keys.version,
            "url": url, "random_uid": random_uid, "card_id": card_id, "time": entry.started,
        })
        return entry

    def step(self, entry: JournalEntry, step: str) -> None:
        self._append({"entry": entry.entry_id, "event": "step", "step": step})
        entry.steps.append(step)

    def end(self, entry: JournalEntry, outcome: str = "done") -> None:
        self._append({"entry": entry.entry_id, "event": "end", "outcome": outcome})
        entry.outcome = outcome

    # --- reading ----------------------------------------------------------------------------

    def _records(self) -> Iterator[dict[str, object]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line from a power cut
            if isinstance(record, dict):
                yield record

    def entries(self) -> list[JournalEntry]:
        entries: dict[str, JournalEntry] = {}
        for record in self._records():
            entry_id = str(record.get("entry"))
            event = record.get("event")
            if event == "begin":
                try:
                    keys_hex = record["keys"]
                    if not isinstance(keys_hex, dict):
                        continue
                    keys = BoltcardKeys.of(
                        [bytes.fromhex(str(keys_hex[f"k{n}"])) for n in range(5)],
                        version=int(str(record["version"])),
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                entries[entry_id] = JournalEntry(
                    entry_id=entry_id, op=str(record.get("op")),
                    card_ref=str(record.get("card_ref")),
                    keys=keys, url=_text_or_none(record.get("url")),
                    random_uid=bool(record.get("random_uid")),
                    card_id=_text_or_none(record.get("card_id")),
                    started=_seconds(record.get("time")),
                )
            elif entry_id in entries and event == "step":
                entries[entry_id].steps.append(str(record.get("step")))
            elif entry_id in entries and event == "end":
                entries[entry_id].outcome = str(record.get("outcome"))
        return list(entries.values())

    def pending(self, op: str | None = None) -> list[JournalEntry]:
        """Unfinished operations, newest first."""
        found = [e for e in self.entries() if e.pending and (op is None or e.op == op)]
        return sorted(found, key=lambda e: e.started, reverse=True)

    def find(self, uid: bytes | None, op: str | None = None) -> JournalEntry | None:
        for entry in self.pending(op):
            if entry.matches(uid):
                return entry
        return None
