"""JournalStorage: crash-safe, O(changed) TinyDB storage (terminal/storage.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tinydb import Query, TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document

from terminal.adapters.books.storage import (
    BooksDamaged,
    JournalDB,
    JournalStorage,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageLockedError,
    StorageReadOnlyError,
    snapshot_chunks,
)

TABLES = ("sales", "payouts", "cards")
values = st.one_of(st.integers(-5, 5), st.text(max_size=6), st.none(), st.booleans(),
                   st.lists(st.integers(0, 3), max_size=3))
documents = st.fixed_dictionaries({"k": st.integers(0, 3)},
                                  optional={"v": values, "w": values, "ü": values})
table_names = st.sampled_from(TABLES)
operations = st.one_of(
    st.tuples(st.just("insert"), table_names, documents),
    st.tuples(st.just("insert_multiple"), table_names, st.lists(documents, max_size=3)),
    st.tuples(st.just("update"), table_names, documents, st.integers(0, 3)),
    st.tuples(st.just("update_ids"), table_names, documents, st.lists(st.integers(1, 8))),
    st.tuples(st.just("upsert_id"), table_names, documents, st.integers(1, 8)),
    st.tuples(st.just("remove"), table_names, st.integers(0, 3)),
    # TinyDB itself raises KeyError for a repeated id in one remove: ids are distinct here.
    st.tuples(st.just("remove_ids"), table_names,
              st.lists(st.integers(1, 8), max_size=3, unique=True)),
    st.tuples(st.just("truncate"), table_names),
    st.tuples(st.just("drop"), table_names),
    st.tuples(st.just("reopen")),
)


def apply(db: TinyDB, op: tuple) -> None:
    kind, *args = op
    q = Query()
    if kind == "insert":
        db.table(args[0]).insert(args[1])
    elif kind == "insert_multiple":
        db.table(args[0]).insert_multiple(args[1])
    elif kind == "update":
        db.table(args[0]).update(args[1], q.k == args[2])
    elif kind == "update_ids":
        db.table(args[0]).update(args[1], doc_ids=args[2])
    elif kind == "upsert_id":
        db.table(args[0]).upsert(Document(args[1], doc_id=args[2]))
    elif kind == "remove":
        db.table(args[0]).remove(q.k == args[1])
    elif kind == "remove_ids":
        db.table(args[0]).remove(doc_ids=args[1])
    elif kind == "truncate":
        db.table(args[0]).truncate()
    elif kind == "drop":
        db.drop_table(args[0])


def run_against_model(path: Path, ops: list[tuple], open_db) -> None:
    model = TinyDB(storage=MemoryStorage)
    db = open_db(path)
    for op in ops:
        if op[0] == "reopen":
            db.close()
            db = open_db(path)
            # A reopened TinyDB derives each table's next id from the ids stored (so an id freed
            # by removing the last document is used again, as with stock JSONStorage): the
            # reference forgets its cached tables the same way.
            model.clear_cache()
            model._tables.clear()
            continue
        apply(model, op)
        apply(db, op)
        assert db.storage.read() == (model.storage.read() or {})
    expected = db.storage.read()
    db.close()
    reopened = open_db(path)
    assert reopened.storage.read() == expected == (model.storage.read() or {})
    reopened.close()


# Property: any sequence of TinyDB operations, with reopens and compactions in between, leaves
# the same documents as TinyDB's in-memory reference, and a reopen reads back exactly that.
@settings(max_examples=60)
@given(st.lists(operations, max_size=25))
@example([("insert", "sales", {"k": 0}), ("remove", "sales", 0), ("reopen",),
          ("insert", "sales", {"k": 0})])
@example([("insert", "sales", {"k": 0}), ("remove_ids", "sales", [1])])
def test_journal_tables_match_tinydb_reference(ops):
    with tempfile.TemporaryDirectory() as tmp:
        run_against_model(Path(tmp) / "l.jsonl", ops,
                          lambda p: JournalDB(p, compact_min_bytes=256, compact_ratio=1.5))


# Property: the plain read()/write() contract (stock TinyDB tables) gives the same result.
@settings(max_examples=40)
@given(st.lists(operations, max_size=20))
def test_stock_tables_over_journal_storage_match_reference(ops):
    with tempfile.TemporaryDirectory() as tmp:
        run_against_model(Path(tmp) / "l.jsonl", ops,
                          lambda p: TinyDB(p, storage=JournalStorage, compact_min_bytes=256))


def _writes(path: Path, docs: list[dict]) -> tuple[list[dict], list[int], list[bytes]]:
    """Insert then update each doc; the state, journal size and sequence file after each write
    (index 0: the new, empty journal)."""
    db = JournalDB(path)
    marks = path.with_name(path.name + ".seq")
    states, sizes, seqs = [db.storage.read()], [db.journal.journal_bytes], [marks.read_bytes()]

    def note() -> None:
        states.append(db.storage.read())
        sizes.append(db.journal.journal_bytes)
        seqs.append(marks.read_bytes())

    t = db.table("t")
    for n, doc in enumerate(docs):
        doc_id = t.insert(doc)
        note()
        t.update({"n": n}, doc_ids=[doc_id])
        note()
    db.close()
    return states, sizes, seqs


# Property: a power cut during a write leaves a prefix of its line (or that line with any bytes
# spoiled) after the last acknowledged record: a reopen drops exactly that write, and the damaged
# tail is cut off so later writes survive.
@settings(max_examples=60)
@given(st.lists(documents, min_size=1, max_size=6), st.data())
def test_an_interrupted_write_is_dropped_at_any_cut(docs, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.jsonl"
        states, sizes, seqs = _writes(path, docs)
        write = data.draw(st.integers(1, len(sizes) - 1), label="interrupted write")
        cut = data.draw(st.integers(sizes[write - 1], sizes[write]), label="cut")
        spoil = data.draw(st.one_of(st.none(), st.integers(sizes[write - 1], sizes[write] - 1)),
                          label="spoiled byte")
        content = bytearray(path.read_bytes()[: sizes[write]])
        if spoil is not None:
            content[spoil] ^= 0x20
        path.write_bytes(bytes(content[:cut]))
        path.with_name("l.jsonl.seq").write_bytes(seqs[write - 1])  # not acknowledged yet
        expected = states[write] if cut == sizes[write] and spoil is None else states[write - 1]
        db = JournalDB(path)
        assert db.storage.read() == expected
        db.table("t").insert({"after": True})
        after = db.storage.read()
        db.close()
        db = JournalDB(path)
        assert db.storage.read() == after
        db.close()


# Property: cutting the journal anywhere inside acknowledged records is damage: the open fails
# with a paragraph naming the file, and neither file is changed.
@settings(max_examples=40)
@given(st.lists(documents, min_size=1, max_size=5), st.data())
def test_a_journal_cut_inside_acknowledged_records_is_damage(docs, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.jsonl"
        _states, sizes, _seqs = _writes(path, docs)
        cut = data.draw(st.integers(0, sizes[-1] - 1))
        path.write_bytes(path.read_bytes()[:cut])
        before = path.read_bytes(), path.with_name("l.jsonl.seq").read_bytes()
        for read_only in (False, True):
            with pytest.raises(BooksDamaged) as info:
                JournalDB(path, read_only=read_only)
            assert str(path) in str(info.value) and "ledger repair" in str(info.value)
        assert (path.read_bytes(), path.with_name("l.jsonl.seq").read_bytes()) == before


def test_garbage_tail_and_bad_checksum_tail_are_dropped(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    db.table("t").insert({"a": 1})
    state = db.storage.read()
    size = db.journal.journal_bytes
    db.close()
    with path.open("ab") as fh:
        fh.write(b'00000000 [["put","t","2",{"a":2}]]\n\x00\x00\x00')
    db = JournalDB(path)
    assert db.storage.read() == state
    assert path.stat().st_size == size  # cut off before the next append
    db.close()


def test_damage_before_the_tail_is_reported_not_skipped(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    for i in range(3):
        db.table("t").insert({"a": i})
    db.close()
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"a":1', b'"a":7')  # checksum no longer matches
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageCorruptError, match="line 3"):
        JournalDB(path)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('{"_default": {}}\n')
    with pytest.raises(StorageCorruptError, match="not a Flash Terminal ledger"):
        JournalDB(path)


def test_each_write_appends_only_what_changed(tmp_path):
    db = JournalDB(tmp_path / "l.jsonl", compact_min_bytes=1 << 30)
    t = db.table("t")
    growth = []
    for n in range(2000):
        before = db.journal.journal_bytes
        doc_id = t.insert({"n": n, "pad": "x" * 40})
        growth.append(db.journal.journal_bytes - before)
    before = db.journal.journal_bytes
    t.update({"n": -1}, doc_ids=[doc_id])
    # An insert into a table of 2,000 documents writes no more than one into an empty table.
    assert max(growth) <= growth[0] + 8
    assert db.journal.journal_bytes - before < 120
    db.close()


def test_compaction_keeps_everything_and_shrinks_the_file(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path, compact_min_bytes=4096, compact_ratio=2.0)
    t = db.table("t")
    ids = [t.insert({"n": i, "s": "v" * 20}) for i in range(50)]
    for round_ in range(40):
        t.update({"round": round_}, doc_ids=ids[round_ % 10 :: 10])
    t.remove(doc_ids=ids[:5])
    db.table("empty").truncate()
    state = db.storage.read()
    assert db.journal.compactions > 0
    assert db.journal.journal_bytes <= max(4096, 2.0 * db.journal.live_bytes) + 200
    assert db.journal.journal_bytes == path.stat().st_size
    db.close()
    assert not path.with_name("l.jsonl.compact").exists()
    db = JournalDB(path)
    assert db.storage.read() == state
    assert "empty" in db.tables()
    db.close()


def test_leftover_compaction_file_is_ignored_and_removed(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    db.table("t").insert({"a": 1})
    state = db.storage.read()
    db.close()
    leftover = path.with_name("l.jsonl.compact")
    leftover.write_bytes(b"half a snapsh")
    db = JournalDB(path)
    assert db.storage.read() == state
    assert not leftover.exists()
    db.close()


def test_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        db = JournalDB(tmp_path / "l.jsonl", compact_min_bytes=256)
        for i in range(30):
            db.table("t").upsert(Document({"i": i, "pad": "p" * 30}, doc_id=1))
        assert db.journal.compactions > 0  # the compacted file is private too
        db.close()
    finally:
        os.umask(old)
    for name in ("l.jsonl", "l.jsonl.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_an_existing_file_is_made_private(tmp_path):
    path = tmp_path / "l.jsonl"
    JournalDB(path).close()
    path.chmod(0o644)
    JournalDB(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


class FailingWrites:
    """os.write that writes `partial` bytes then fails with `err` while armed."""

    def __init__(self, err: int = errno.ENOSPC, partial: int = 7) -> None:
        self.armed = False
        self.err = err
        self.partial = partial

    def __call__(self, fd: int, data) -> int:
        if not self.armed:
            return os.write(fd, data)
        os.write(fd, bytes(data[: self.partial]))
        raise OSError(self.err, os.strerror(self.err))


def test_full_disk_raises_and_memory_keeps_the_durable_state(tmp_path):
    path = tmp_path / "l.jsonl"
    failing = FailingWrites()
    db = JournalDB(path, write_fn=failing)
    t = db.table("t")
    t.insert({"a": 1})
    durable = db.storage.read()
    failing.armed = True
    with pytest.raises(StorageFullError, match="full") as info:
        t.insert({"a": 2, "secret": "lnurlw://x?p=1&c=2"})
    assert "lnurlw" not in str(info.value)
    with pytest.raises(StorageFullError):
        t.update({"a": 9}, doc_ids=[1])
    assert db.storage.read() == durable
    assert t.all() == [{"a": 1}]
    failing.armed = False
    t.insert({"a": 3})  # space freed: writing works again, after the cut-off partial line
    after = db.storage.read()
    db.close()
    db = JournalDB(path)
    assert db.storage.read() == after
    assert [d["a"] for d in db.table("t").all()] == [1, 3]
    db.close()


def test_full_disk_on_fsync_is_also_not_acknowledged(tmp_path):
    path = tmp_path / "l.jsonl"
    calls = {"fail": False}

    def fsync(fd: int) -> None:
        if calls["fail"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)

    db = JournalDB(path, fsync_fn=fsync)
    db.table("t").insert({"a": 1})
    durable = db.storage.read()
    calls["fail"] = True
    with pytest.raises(StorageFullError):
        db.table("t").insert({"a": 2})
    assert db.storage.read() == durable
    db.close()
    db = JournalDB(path)
    assert db.storage.read() == durable
    db.close()


def test_other_write_errors_are_storage_errors(tmp_path):
    failing = FailingWrites(err=errno.EIO)
    db = JournalDB(tmp_path / "l.jsonl", write_fn=failing)
    failing.armed = True
    with pytest.raises(StorageError, match="could not write") as info:
        db.table("t").insert({"a": 1})
    assert not isinstance(info.value, StorageFullError)
    assert db.storage.read() == {}
    db.close()


def test_full_disk_during_compaction_loses_nothing(tmp_path):
    path = tmp_path / "l.jsonl"
    failing = FailingWrites()
    db = JournalDB(path, write_fn=failing, compact_min_bytes=512)
    t = db.table("t")
    t.insert({"n": 0})
    def write(fd, data):
        # Only the snapshot (another file) fails; journal lines go through.
        failing.armed = fd != db.journal._fd
        return failing(fd, data)

    db.journal._write_fn = write
    for i in range(60):
        t.update({"n": i}, doc_ids=[1])
    state = db.storage.read()
    assert db.journal.compactions == 0
    db.close()
    assert not path.with_name("l.jsonl.compact").exists()
    db = JournalDB(path)
    assert db.storage.read() == state
    db.close()


def test_group_commit_is_one_line_and_atomic(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    t, u = db.table("t"), db.table("u")
    t.insert({"a": 0})
    size = db.journal.journal_bytes
    with db.journal.group():
        t.insert({"a": 1})
        u.insert({"b": 1})
        t.update({"a": 5}, doc_ids=[1])
        assert t.get(doc_id=1) == {"a": 5}  # reads inside see the group's writes
    assert path.read_bytes()[size:].count(b"\n") == 1
    committed = db.storage.read()
    with pytest.raises(RuntimeError), db.journal.group():
        t.insert({"a": 2})
        db.drop_table("u")
        t.truncate()
        raise RuntimeError("abandon")
    assert db.storage.read() == committed
    db.close()
    db = JournalDB(path)
    assert db.storage.read() == committed
    db.close()


def test_group_commit_failure_rolls_back(tmp_path):
    failing = FailingWrites()
    db = JournalDB(tmp_path / "l.jsonl", write_fn=failing)
    db.table("t").insert({"a": 0})
    before = db.storage.read()
    with pytest.raises(StorageFullError), db.journal.group():
        db.table("t").insert({"a": 1})
        db.table("v").insert({"c": 1})
        failing.armed = True
    assert db.storage.read() == before
    db.close()


def test_documents_that_are_not_json_change_nothing(tmp_path):
    db = JournalDB(tmp_path / "l.jsonl")
    db.table("t").insert({"a": 1})
    before = db.storage.read()
    with pytest.raises(TypeError):
        db.table("t").insert({"a": object()})
    with pytest.raises(ValueError):
        db.table("t").insert({"a": float("nan")})
    assert db.storage.read() == before
    db.close()


def test_stored_documents_do_not_share_the_callers_objects(tmp_path):
    db = JournalDB(tmp_path / "l.jsonl")
    doc = {"items": [1, 2]}
    db.table("t").insert(doc)
    doc["items"].append(3)
    assert db.table("t").get(doc_id=1) == {"items": [1, 2]}
    db.close()


def test_one_writer_at_a_time_readers_need_no_lock(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    db.table("t").insert({"a": 1})
    with pytest.raises(StorageLockedError, match="in use"):
        JournalDB(path)
    reader = JournalDB(path, read_only=True)
    assert reader.table("t").all() == [{"a": 1}]
    with pytest.raises(StorageReadOnlyError):
        reader.table("t").insert({"a": 2})
    reader.close()
    db.close()
    JournalDB(path).close()  # the lock is released on close


def test_read_only_open_of_a_missing_file_is_empty_and_creates_nothing(tmp_path):
    db = JournalDB(tmp_path / "none.jsonl", read_only=True)
    assert db.tables() == set()
    db.close()
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_a_clear_error_unless_asked_to_create(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        JournalDB(tmp_path / "no" / "l.jsonl")
    db = JournalDB(tmp_path / "new" / "l.jsonl", create_dirs=True)
    db.table("t").insert({"a": 1})
    db.close()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


# ------------------------------------------------------------------------------ damage
def _journal_with_records(path: Path, n: int = 4) -> list[bytes]:
    db = JournalDB(path)
    for i in range(n):
        db.table("t").insert({"a": i, "pad": "x" * 40})
    db.close()
    return path.read_bytes().split(b"\n")


def _damage_of(path: Path) -> str:
    """The paragraph both a writer and a reader get; asserts neither changed a file."""
    files = [p for p in (path, path.with_name(path.name + ".seq")) if p.exists()]
    before = [p.read_bytes() for p in files]
    messages = []
    for read_only in (False, True):
        with pytest.raises(BooksDamaged) as info:
            JournalDB(path, read_only=read_only)
        messages.append(str(info.value))
    assert [p.read_bytes() for p in files] == before
    assert not path.with_name(path.name + ".compact").exists()
    assert messages[0] == messages[1]
    assert messages[0].count("\n") == 0 and str(path) in messages[0]
    return messages[0]


def test_a_flipped_bit_in_the_last_acknowledged_line_is_damage_not_a_torn_write(tmp_path):
    path = tmp_path / "l.jsonl"
    lines = _journal_with_records(path)
    lines[-2] = lines[-2].replace(b'"a":3', b'"a":2')  # the last complete, fsynced line
    path.write_bytes(b"\n".join(lines))
    message = _damage_of(path)
    assert "records up to 4 were acknowledged" in message and "line 5 fails its check" in message


def test_an_empty_or_missing_journal_after_records_is_damage(tmp_path):
    path = tmp_path / "l.jsonl"
    _journal_with_records(path)
    path.write_bytes(b"")
    assert "the journal is empty" in _damage_of(path)
    path.unlink()
    assert "the journal is missing" in _damage_of(path)
    assert not path.exists()


def test_a_zeroed_tail_is_damage(tmp_path):
    path = tmp_path / "l.jsonl"
    _journal_with_records(path)
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(100)
    path.write_bytes(bytes(data))
    assert "cut short, zeroed or damaged" in _damage_of(path)


def test_a_truncation_at_a_line_boundary_is_damage(tmp_path):
    path = tmp_path / "l.jsonl"
    lines = _journal_with_records(path)
    path.write_bytes(b"\n".join(lines[:-2]) + b"\n")  # every remaining line verifies
    assert "it ends at record 3 but records up to 4" in _damage_of(path)


def test_a_gap_in_the_record_numbers_is_damage(tmp_path):
    path = tmp_path / "l.jsonl"
    lines = _journal_with_records(path)
    del lines[2]  # record 2: every line left verifies, but one is missing
    path.write_bytes(b"\n".join(lines))
    assert "holds record 3 where record 2 should be" in _damage_of(path)


def test_a_missing_or_foreign_sequence_record_is_damage(tmp_path):
    path = tmp_path / "l.jsonl"
    _journal_with_records(path)
    marks = path.with_name("l.jsonl.seq")
    ours = marks.read_bytes()
    marks.unlink()
    assert "sequence record l.jsonl.seq is missing" in _damage_of(path)
    marks.write_bytes(b"\0" * 1024)
    assert "is unreadable" in _damage_of(path)
    _journal_with_records(tmp_path / "other.jsonl")
    marks.write_bytes((tmp_path / "other.jsonl.seq").read_bytes())
    assert "belongs to another ledger" in _damage_of(path)
    marks.write_bytes(ours)
    JournalDB(path).close()


def test_one_torn_sequence_slot_falls_back_to_the_other(tmp_path):
    path = tmp_path / "l.jsonl"
    db = JournalDB(path)
    db.table("t").insert({"a": 1})
    db.table("t").insert({"a": 2})  # record 2: slot 0
    state = db.storage.read()
    db.close()
    marks = path.with_name("l.jsonl.seq")
    data = bytearray(marks.read_bytes())
    data[100:512] = bytes(412)  # slot 0 spoiled: slot 1 still says record 1
    marks.write_bytes(bytes(data))
    db = JournalDB(path)  # record 2 is in the journal: nothing is lost, the record is renewed
    assert db.storage.read() == state
    db.close()
    from terminal.adapters.books.sequence import parse_marks

    assert sorted(m.seq for m in parse_marks(marks.read_bytes())) == [1, 2]


def test_a_new_journal_interrupted_while_being_created_starts_again(tmp_path):
    path = tmp_path / "l.jsonl"
    JournalDB(path).close()
    header = path.read_bytes()
    for torn in (b"", header[:13], bytes(40)):
        path.write_bytes(torn)
        db = JournalDB(path)
        db.table("t").insert({"a": 1})
        db.close()
        assert JournalDB(path, read_only=True).table("t").all() == [{"a": 1}]
        path.unlink()
        path.with_name("l.jsonl.seq").write_bytes(bytes(1024))  # its creation was torn too


def test_a_version_1_journal_is_read_and_upgraded(tmp_path):
    import json
    import zlib

    def line(payload) -> bytes:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return b"%08x %s\n" % (zlib.crc32(body), body)

    path = tmp_path / "l.jsonl"
    path.write_bytes(line({"format": "flash-terminal-journal", "version": 1})
                     + line([["put", "t", "1", {"a": 1}]]) + line([["put", "t", "2", {"a": 2}]])
                     + b"0000 torn")
    assert JournalDB(path, read_only=True).table("t").all() == [{"a": 1}, {"a": 2}]
    db = JournalDB(path)
    assert db.table("t").all() == [{"a": 1}, {"a": 2}]
    db.table("t").insert({"a": 3})
    db.close()
    assert b'"version":2' in path.read_bytes().split(b"\n")[0]
    assert JournalDB(path).table("t").all() == [{"a": 1}, {"a": 2}, {"a": 3}]


# Property: a compaction writes each document's JSON as committed (kept since its write, so it
# is not encoded again); the file is byte for byte the snapshot of the state encoded anew, also
# after writes rolled back and tables cleared or dropped.
@settings(max_examples=40)
@given(st.lists(st.tuples(operations, st.booleans()), max_size=20))
@example([(("insert", "sales", {"k": 0}), False), (("upsert_id", "sales", {"k": 1}, 1), True)])
@example([(("insert", "sales", {"k": 0}), False), (("truncate", "sales"), True)])
def test_compaction_reuses_committed_json_byte_for_byte(steps):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.jsonl"
        db = JournalDB(path)
        for op, rolled_back in steps:
            if op[0] == "reopen":
                db.close()
                db = JournalDB(path)
                continue
            with contextlib.suppress(RuntimeError), db.journal.group():
                apply(db, op)
                if rolled_back:
                    raise RuntimeError("abandon the group")
        journal = db.journal
        expected = b"".join(snapshot_chunks(journal.read(), journal.ledger_id, journal.last_seq))
        journal.compact()
        db.close()
        assert path.read_bytes() == expected


# Property: `JournalTable.replace` (the ledger's every write) leaves each document exactly as
# given, writes nothing when nothing changed, and a reopen reads back the same.
@settings(max_examples=60)
@given(st.lists(st.one_of(st.tuples(st.integers(1, 4), documents), st.just("truncate"),
                          st.just("drop")), max_size=20))
def test_replace_stores_whole_documents_and_skips_unchanged_ones(steps):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.jsonl"
        db = JournalDB(path)
        model: dict[int, dict] = {}
        for step in steps:
            size = db.journal.journal_bytes
            if step == "truncate":
                db.table("t").truncate()
                model.clear()
            elif step == "drop":
                db.drop_table("t")
                model.clear()
            else:
                doc_id, doc = step
                unchanged = model.get(doc_id) == doc and "t" in db.tables()
                db.table("t").replace(doc_id, doc)
                model[doc_id] = dict(doc)
                assert (db.journal.journal_bytes == size) == unchanged
            assert {d.doc_id: dict(d) for d in db.table("t").all()} == model
        db.close()
        db = JournalDB(path)
        assert {d.doc_id: dict(d) for d in db.table("t").all()} == model
        db.close()
