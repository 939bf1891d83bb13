"""The books: in-flight sales in the journal, settled sales in the SQLite archive, one query port.

terminal/adapters/books/ledger.py (the move), archive.py, and their damage cross-checks.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zlib
from datetime import date, timedelta, timezone
from pathlib import Path

import pytest
from helpers.books_damage import flip_a_bit_in_an_archived_sale
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.adapters.books import archive as archive_module
from terminal.adapters.books.errors import BooksDamaged
from terminal.adapters.books.ledger import DuplicatePaymentHash, Ledger
from terminal.core import history
from terminal.core.records import SaleRecord, StateChange
from terminal.core.sale import SaleState

JAMAICA = timezone(timedelta(hours=-5))
DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def sale(n: int, state: str = "paid", at: float | None = None, **fields) -> SaleRecord:
    values = {"amount_minor": 100 + n, "currency": "JMD", "method": "card",
              "card_id": f"{n % 3:032x}", "amount_msat": 1000 * (100 + n),
              "payment_hash": f"{n:064x}", "bolt11": f"lnbc{n}", **fields}
    return SaleRecord(id=f"{n:032x}", created_at=T0 + n * 3600.0 if at is None else at,
                      state=state, **values)


def journal_sales(led: Ledger) -> dict:
    return dict(led._db.journal.table_view("sales"))


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.jsonl"


# ------------------------------------------------------------------------------ the move
def test_a_final_sale_leaves_the_journal_for_the_archive(path):
    with Ledger(path, move_batch=1) as led:
        led.save_sale(sale(1, "invoiced"))
        assert len(journal_sales(led)) == 1
        done = sale(1, "paid")
        led.save_sale(done)
        assert journal_sales(led) == {}  # memory follows the work in flight
        assert led.get_sale(done.id) == done
        assert led.find_sale_by_payment_hash(done.payment_hash) == done
        assert led.find_sale_by_payment_hash(done.payment_hash.upper()) == done
    with Ledger(path) as led:
        assert led.sales() == [done] and led.open_sales() == []
        assert led.counts()["sales_archived"] == 1 and led.counts()["sales_in_flight"] == 0


def test_settled_sales_move_in_batches_and_when_the_books_close(path):
    with Ledger(path, move_batch=3) as led:
        led.save_sale(sale(1))
        led.save_sale(sale(2))
        assert len(journal_sales(led)) == 2  # acknowledged: one journal append each
        assert [r.id for r in led.sales()] == [sale(1).id, sale(2).id]
        led.save_sale(sale(3))  # the third: the batch moves together
        assert journal_sales(led) == {} and led.counts()["sales_archived"] == 3
        led.save_sale(sale(4))
    with Ledger(path, read_only=True) as led:  # closing moved the last one
        assert led.counts() | {"journal_records": 0} == {
            "sales_in_flight": 0, "sales_archived": 4, "payouts": 0, "cards": 0,
            "journal_records": 0}
    with Ledger(path, move_batch=100, move_after_s=0.0) as led:
        led.save_sale(sale(5))  # waited long enough (no wait at all): moved at once
        assert journal_sales(led) == {}


def test_a_transaction_moves_its_final_sales_once_committed(path):
    with Ledger(path, move_batch=1) as led:
        with led.transaction():
            led.save_sale(sale(1))
            led.save_sale(sale(2, "queued"))
            assert led.get_sale(sale(1).id).state == "paid"  # read inside: from the journal
            assert len(journal_sales(led)) == 2
        assert [d["state"] for d in journal_sales(led).values()] == ["queued"]
        with pytest.raises(RuntimeError), led.transaction():
            led.save_sale(sale(3))
            raise RuntimeError("abandon")
        assert led.get_sale(sale(3).id) is None
        assert led.counts()["sales_archived"] == 1


def test_a_settled_sale_can_still_be_paid_late_and_is_updated_in_the_archive(path):
    with Ledger(path, move_batch=1) as led:
        cancelled = sale(1, "cancelled", invoice_expires_at=T0 + 600)
        led.save_sale(cancelled)
        assert [r.id for r in led.sales_awaiting_invoice()] == [cancelled.id]
        late = led.get_sale(cancelled.id)
        late.state = "paid"
        late.history.append(StateChange(T0 + 60, "paid_late", "cancelled", "paid"))
        led.save_sale(late)
        assert journal_sales(led) == {}
        assert led.get_sale(cancelled.id).state == "paid"
        assert led.sales_awaiting_invoice() == []
        assert led.counts()["sales_archived"] == 1


def test_sales_awaiting_invoice_until_the_backend_declares_it_final(path):
    with Ledger(path) as led:
        for n, state in enumerate(["cancelled", "failed", "expired", "paid", "declined"]):
            led.save_sale(sale(n, state))
        led.save_sale(sale(9, "cancelled", bolt11=None, payment_hash=None))  # never invoiced
        assert [r.state for r in led.sales_awaiting_invoice()] == ["cancelled", "failed"]
        failed = led.get_sale(sale(1).id)
        failed.invoice_final = True  # the backend said: expired unpaid
        led.save_sale(failed)
        assert [r.id for r in led.sales_awaiting_invoice()] == [sale(0).id]


def test_one_payment_hash_one_sale_across_both_stores(path):
    with Ledger(path) as led:
        led.save_sale(sale(1))  # archived
        with pytest.raises(DuplicatePaymentHash):
            led.save_sale(sale(2, "invoiced", payment_hash=sale(1).payment_hash))
        led.save_sale(sale(3, "invoiced"))  # in flight
        with pytest.raises(DuplicatePaymentHash):
            led.save_sale(sale(4, "paid", payment_hash=sale(3).payment_hash))
        assert led.get_sale(sale(2).id) is None and led.get_sale(sale(4).id) is None
        assert led.find_sale_by_payment_hash("ff" * 32) is None


def test_a_new_payment_hash_is_looked_up_in_the_archive_once_until_a_move(path, monkeypatch):
    asked = []
    lookup = archive_module.SaleArchive.by_payment_hash

    def counting(self, payment_hash):
        asked.append(payment_hash)
        return lookup(self, payment_hash)

    monkeypatch.setattr(archive_module.SaleArchive, "by_payment_hash", counting)
    with Ledger(path, move_batch=1) as led:
        new = sale(7, "queued")
        assert led.find_sale_by_payment_hash(new.payment_hash) is None  # the sync worker's check
        led.save_sale(new)  # checks the hash again: the archive was just asked
        assert asked == [new.payment_hash]
        assert led.find_sale_by_payment_hash(sale(8).payment_hash) is None
        led.save_sale(sale(8))  # paid: moves to the archive, which forgets the miss
        assert journal_sales(led).keys() == {str(led._sale_doc[new.id])}
        assert led.find_sale_by_payment_hash(sale(8).payment_hash) == sale(8)
        assert asked == [new.payment_hash, sale(8).payment_hash, sale(8).payment_hash]
        with pytest.raises(DuplicatePaymentHash):
            led.save_sale(sale(9, payment_hash=sale(8).payment_hash))


def test_unsynced_sales_are_found_through_the_index(path):
    with Ledger(path) as led:
        for n in range(4):
            led.save_sale(sale(n, "paid" if n else "invoiced"))
        assert [r.id for r in led.unsynced_sales()] == [sale(n).id for n in (1, 2, 3)]
        with led.transaction():
            for record in led.unsynced_sales():
                record.synced = True
                led.save_sale(record)
        assert led.unsynced_sales() == []
        assert all(r.synced for r in led.sales() if r.is_final)


def test_a_move_interrupted_after_the_archive_commit_shows_the_sale_once(path):
    led = Ledger(path)
    led.save_sale(sale(1))
    led.save_sale(sale(2, "invoiced"))
    # The crash window of a move, by hand: the final record is in the journal (acknowledged)
    # and committed to the archive, but the journal's deletion never happened.
    paid = sale(3, "paid")
    with led._db.journal.group():  # a journal write that does not start the move
        led._db.table("sales").insert(paid.to_doc())
    led._archive.put([paid])
    led.close()
    reader = Ledger(path, read_only=True)
    assert [r.id for r in reader.sales()] == [sale(1).id, sale(2).id, sale(3).id]
    assert reader.counts()["sales_in_flight"] == 2  # sale 2, and sale 3's unfinished move
    reader.close()
    with Ledger(path) as led:  # a writer finishes the move
        assert [d["id"] for d in journal_sales(led).values()] == [sale(2).id]
        assert [r.id for r in led.sales()] == [sale(1).id, sale(2).id, sale(3).id]


def test_a_full_disk_for_the_archive_keeps_settled_sales_in_the_journal(path, monkeypatch):
    with Ledger(path, move_batch=1) as led:
        def full(self, docs, texts=None):
            raise archive_module.StorageFullError("the disk is full")

        monkeypatch.setattr(archive_module.SaleArchive, "put_docs", full)
        led.save_sale(sale(1))  # acknowledged: it is durable in the journal
        assert len(journal_sales(led)) == 1 and led.get_sale(sale(1).id).state == "paid"
        monkeypatch.undo()
        led.save_sale(sale(2))  # the next move takes the waiting one along
        assert journal_sales(led) == {}
        assert led.counts()["sales_archived"] == 2


# Property: an archived record is stored as the journal's JSON, compressed, and reads back as
# the same document whatever its size (the compressor's 4 KB window is smaller than some).
@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.integers(), st.text(max_size=3000), st.none(), st.booleans(),
    st.lists(st.text(max_size=40), max_size=200)), max_size=12))
def test_archived_documents_read_back_exactly(doc):
    blob = archive_module._doc_blob(doc, archive_module._doc_text(doc))
    assert blob == archive_module._doc_blob(doc)
    assert archive_module.decode_doc(blob) == doc
    assert zlib.decompress(blob) == archive_module._doc_text(doc).encode("utf-8")


def test_a_move_stores_the_json_the_journal_wrote(path):
    with Ledger(path, move_batch=2) as led:
        led.save_sale(sale(1))
        text = led._db.journal.doc_text("sales", str(led._sale_doc[sale(1).id]))
        led.save_sale(sale(2))  # the batch moves
        assert journal_sales(led) == {}
        blob = led._archive._read(lambda db: db.execute(
            "SELECT d.doc FROM sales s JOIN docs d ON d.n = s.n WHERE s.id = ?",
            (sale(1).id,)).fetchone()[0])
        assert zlib.decompress(blob) == text.encode("utf-8")
        assert led.get_sale(sale(1).id) == sale(1)


# ------------------------------------------------------------------------- the query port
def shop(led: Ledger) -> list[SaleRecord]:
    records = []
    for n in range(40):
        state = ["paid", "failed", "queued", "cancelled", "paid", "invoiced"][n % 6]
        record = sale(n, state, at=T0 + n * 5 * 3600.0, method="qr" if n % 4 == 0 else "card",
                      tip_minor=n % 3, tip_msat=(n % 3) * 1000)
        led.save_sale(record)
        records.append(record)
    return records


def test_the_query_port_reads_both_stores_like_a_list(path):
    with Ledger(path, move_batch=1) as led:
        records = shop(led)
        memory = history.SalesInMemory(records)
        assert led.counts()["sales_in_flight"] == 13  # queued and invoiced stay in flight
        queries = [
            history.SaleQuery(tz=JAMAICA),
            history.SaleQuery(date_from=date(2026, 1, 2), date_to=date(2026, 1, 4), tz=JAMAICA),
            history.SaleQuery(state="paid", tz=JAMAICA),
            history.SaleQuery(method="qr", date_to=date(2026, 1, 5), tz=JAMAICA),
            history.SaleQuery(card_id=f"{1:032x}"[:12], tz=JAMAICA),
        ]
        for query in queries:
            assert list(led.sales_matching(query)) == list(memory.sales_matching(query))
            assert list(led.sales_matching(query, newest_first=True)) == list(
                memory.sales_matching(query, newest_first=True))
            assert history.report(led, query) == history.report(memory, query)


# Property: for any mix of sales and any query, the books answer exactly as the same sales in
# a list do (the archive's SQL is only a pre-filter; the core's rules decide).
@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([s.value for s in SaleState]),
                          st.floats(0, 20 * DAY), st.sampled_from(["card", "qr", None]),
                          st.integers(0, 3)), max_size=25),
       st.integers(0, 21), st.integers(0, 5), st.sampled_from([None, "paid", "queued"]),
       st.sampled_from([None, "card", "qr"]))
def test_books_answer_queries_like_a_list(rows, first, span, state, method):
    with tempfile.TemporaryDirectory() as tmp:
        led = Ledger(Path(tmp) / "l.jsonl")
        records = []
        for n, (s, offset, how, card) in enumerate(rows):
            record = sale(n, s, at=T0 + offset, method=how, card_id=f"{card:032x}")
            led.save_sale(record)
            records.append(record)
        day0 = date(2026, 1, 1)
        query = history.SaleQuery(date_from=day0 + timedelta(days=first),
                                  date_to=day0 + timedelta(days=first + span), state=state,
                                  method=method, tz=JAMAICA)
        memory = history.SalesInMemory(records)
        assert list(led.sales_matching(query)) == list(memory.sales_matching(query))
        assert history.report(led, query) == history.report(memory, query)
        led.close()


def test_exports_stream_the_same_text_as_a_list(path):
    with Ledger(path) as led:
        records = shop(led)
        query = history.SaleQuery(tz=JAMAICA)
        csv_out, json_out = io.StringIO(), io.StringIO()
        assert history.write_csv(led.sales_matching(query), csv_out, JAMAICA) == 40
        assert csv_out.getvalue() == history.to_csv(records, JAMAICA)
        history.write_json(led.sales_matching(query), json_out)
        assert json_out.getvalue() == history.to_json(records)
        assert history.to_json([]) == "[]\n"


# --------------------------------------------------------------------- damage cross-checks
def files_of(path: Path) -> dict[str, bytes]:
    """The books' files (SQLite's -shm and an empty -wal are its readers' scratch, not data)."""
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir())
            if p.is_file() and not p.name.endswith((".lock", "-shm"))
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def assert_damaged(path: Path, needle: str) -> str:
    before = files_of(path)
    messages = []
    for read_only in (True, False):
        with pytest.raises(BooksDamaged) as info:
            Ledger(path, read_only=read_only)
        messages.append(str(info.value))
    assert files_of(path) == before  # nothing changed, nothing created
    assert needle in messages[0], messages[0]
    return messages[0]


def settled_books(path: Path, n: int = 3) -> None:
    with Ledger(path) as led:
        for i in range(n):
            led.save_sale(sale(i))
        led.save_sale(sale(99, "invoiced"))


def test_a_missing_archive_is_damage(path):
    settled_books(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path.with_name('ledger.archive.sqlite')}{suffix}").unlink(missing_ok=True)
    assert_damaged(path, "the archive of settled sales is missing")


def test_an_archive_that_lost_committed_moves_is_damage(path):
    with Ledger(path) as led:
        led.save_sale(sale(1))
    archive = path.with_name("ledger.archive.sqlite")
    old = path.parent / "old-copy.sqlite"
    shutil.copy(archive, old)
    with Ledger(path) as led:
        led.save_sale(sale(2))
    shutil.copy(old, archive)  # an older copy put back
    old.unlink()
    assert_damaged(path, "committed sales were lost")


def test_a_lost_journal_beside_an_archive_of_sales_is_damage(path):
    settled_books(path)
    marks = path.with_name("ledger.jsonl.seq")
    path.unlink()
    marks.unlink()  # both gone: the archive still knows sales were recorded
    assert_damaged(path, "the journal is missing, but the archive")
    path.write_bytes(b"")
    assert_damaged(path, "the journal is empty, but the archive")


def test_an_archive_of_another_ledger_is_damage(path, tmp_path):
    settled_books(path)
    other = tmp_path / "other" / "ledger.jsonl"
    other.parent.mkdir()
    settled_books(other)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path.with_name('ledger.archive.sqlite')}{suffix}").unlink(missing_ok=True)
    shutil.copy(other.with_name("ledger.archive.sqlite"), path.with_name("ledger.archive.sqlite"))
    assert_damaged(path, "it belongs to another ledger")


def test_a_flipped_bit_in_an_archived_sale_is_damage_when_read_and_checked(path):
    from terminal.adapters.books.check import check_books

    settled_books(path)
    flip_a_bit_in_an_archived_sale(path.with_name("ledger.archive.sqlite"), sale(1).id)
    with Ledger(path, read_only=True) as led:  # opening is O(1): it does not read every sale
        with pytest.raises(BooksDamaged, match="fails its check"):
            led.sales()
        assert led.get_sale(sale(0).id) is not None
    report = check_books(path)
    assert not report.intact
    assert "archived sale" in report.damage[0].what and "fails its check" in report.damage[0].what


def test_the_books_document_of_a_sale_is_its_to_doc():
    from terminal.adapters.books.fill import HistoryWriter
    from terminal.adapters.books.ledger import sale_doc

    writer = HistoryWriter(terminal_id="ft-test", cards=3, seed=7)
    records = [writer.sale(T0 + n * 60.0) for n in range(40)] + [sale(1), SaleRecord("x", 0.0, 1,
                                                                                    "SAT")]
    for record in records:
        assert sale_doc(record) == record.to_doc()
