"""The archive of settled sales: SQLite on disk (WAL, synchronous=FULL), queried through indexes.

A sale that reaches a final state leaves the journal (which is held in memory) for this file, so
the terminal's memory and start-up follow the work in flight, not years of history. Nothing here
is loaded at open: every query reads from disk through an index.

Schema (version 2):

    meta(key PRIMARY KEY, value)   ledger id, schema version, `moves` (see below)
    sales(n INTEGER PRIMARY KEY, id UNIQUE, created_at, state, method, card_id, currency,
          amount_minor, amount_msat, tip_minor, tip_msat, payment_hash UNIQUE,
          awaiting_invoice, synced, cashier)
    docs(n INTEGER PRIMARY KEY, doc, crc)   the whole record: zlib-compressed JSON, and the
                                            CRC-32 of those stored bytes

`sales` holds the columns queries filter and total on (small rows: a year's totals read little);
`docs` holds each record whole (compressed: a record with its invoice is ~1.9 KB of JSON, ~0.8 KB
stored), checked against its CRC when read. Indexes: time (created_at, id),
card (card_id, created_at), payment hash (unique), and two partial ones for the few sales still
to be looked at: invoices the backend has not declared final, and sales not yet marked synced.

Version 2 added `cashier` (who rang the sale up: NULL for nobody), so per-card usage is counted
by SQL with every filter applied (`card_usage`). A version 1 archive is brought up to date when
it is first opened for writing (`_migrate_to_2`): the column is added, then filled from the
stored records in batches, each committed with how far it got (meta `migrate.cashier`), so a
crash resumes where it stopped; the version becomes 2 only once every row is filled. Software
that reads version 1 only refuses a version 2 archive (it would add rows without a cashier).

`moves` counts the transactions that moved sales in. The journal records the count after each
move; an archive whose count is lower than the journal's lost committed moves (a deleted WAL, an
old copy put back): that is damage, found at open in O(1).

SQLite guarantees a committed transaction survives a power cut with synchronous=FULL (the WAL is
fsynced at each commit). The move between the journal and this file is the books' own protocol,
tested by crash injection (tests/test_books_crash_states.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terminal.adapters.books.errors import BooksDamaged, Damage, StorageError, StorageFullError
from terminal.core.card_usage import CardUsage, ranked
from terminal.core.history import SaleSummary, awaiting_invoice
from terminal.core.records import SaleRecord

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MIGRATE_BATCH = 20_000  # rows filled per committed step of the version 2 migration
MIGRATE_MARK = "migrate.cashier"  # meta: the last row (n) the migration has filled
FILE_MODE = 0o600
FETCH = 500  # rows per fetch while streaming: constant memory whatever the range
ZLIB_LEVEL = 6
# A 4 KB window and a small hash (memLevel 4) instead of zlib's 32 KB / 8: a record is ~2 KB of
# JSON, so it compresses the same, in a quarter of the time (setting up the large tables was
# most of the cost). Still a plain zlib stream: `zlib.decompress` reads it as before.
ZLIB_WBITS = 12
ZLIB_MEM_LEVEL = 4

AFFECTS_ARCHIVE = (
    "Settled sales (history, totals, exports, and the check that a payment hash is never used "
    "twice) may be wrong or missing."
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS sales (
    n INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    method TEXT,
    card_id TEXT,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    amount_msat INTEGER,
    tip_minor INTEGER NOT NULL,
    tip_msat INTEGER,
    payment_hash TEXT UNIQUE,
    awaiting_invoice INTEGER NOT NULL,
    synced INTEGER NOT NULL,
    cashier TEXT
);
CREATE TABLE IF NOT EXISTS docs (n INTEGER PRIMARY KEY, doc BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sales_time ON sales (created_at, id);
CREATE INDEX IF NOT EXISTS sales_card ON sales (card_id, created_at) WHERE card_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS sales_awaiting ON sales (created_at) WHERE awaiting_invoice = 1;
CREATE INDEX IF NOT EXISTS sales_unsynced ON sales (created_at) WHERE synced = 0;
"""

SUMMARY_COLUMNS = ("id, created_at, state, method, card_id, currency, amount_minor, amount_msat, "
                   "tip_minor, tip_msat")


@dataclass(frozen=True)
class Where:
    """A pre-filter on the indexed columns; the caller still applies the exact rules."""

    start: float | None = None
    end: float | None = None
    state: str | None = None
    method: str | None = None
    card_prefix: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.start is not None:
            clauses.append("created_at >= ?")
            params.append(self.start)
        if self.end is not None:
            clauses.append("created_at < ?")
            params.append(self.end)
        if self.state is not None:
            clauses.append("state = ?")
            params.append(self.state)
        if self.method is not None:
            clauses.append("method = ?")
            params.append(self.method)
        if self.card_prefix:
            # A prefix range the card index can serve (card ids are lower-case hex).
            clauses.append("card_id >= ? AND card_id < ?")
            params.extend([self.card_prefix, self.card_prefix + "\uffff"])
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


# Per-card usage: a day's bounds are never this far from where the local calendar puts them (UTC
# offsets span -12 h..+14 h, a day is 23-25 h): rows further inside the bounds match for sure,
# rows near them are asked the exact day rule (`UsageWhere.in_days`).
DAY_MARGIN_S = 2 * 86_400.0


@dataclass(frozen=True)
class UsageWhere:
    """Which archived sales per-card usage counts: the exact filter (not a pre-filter).

    `start`/`end`: the bounds of the query's local days (`history.time_bounds`), with `in_days`
    the exact rule for a creation time (`history.matches`' dates), asked only near the bounds.
    """

    start: float | None = None
    end: float | None = None
    in_days: Callable[[float], bool] | None = None
    state: str | None = None
    states: frozenset[str] | None = None
    method: str | None = None
    card_prefix: str | None = None
    cashier: str | None = None  # NO_CASHIER ("none") also names the sales without one
    no_cashier: str = "none"

    def sql(self) -> tuple[str, list[Any]]:
        clauses = ["card_id IS NOT NULL", "card_id != ''"]
        params: list[Any] = []
        if self.start is not None or self.end is not None:
            if self.in_days is None:
                raise ValueError("a date range needs its day rule")
            outer, inner, inner_params = [], [], []
            if self.start is not None:
                outer.append("created_at >= ?")
                params.append(self.start - DAY_MARGIN_S)
                inner.append("created_at >= ?")
                inner_params.append(self.start + DAY_MARGIN_S)
            if self.end is not None:
                outer.append("created_at < ?")
                params.append(self.end + DAY_MARGIN_S)
                inner.append("created_at < ?")
                inner_params.append(self.end - DAY_MARGIN_S)
            clauses += outer
            # SQLite stops at the first true term of an OR: the rule is asked near the bounds.
            clauses.append(f"(({' AND '.join(inner)}) OR in_days(created_at))")
            params += inner_params
        if self.state is not None:
            clauses.append("state = ?")
            params.append(self.state)
        if self.states is not None:
            clauses.append(f"state IN ({_marks(self.states)})")
            params += sorted(self.states)
        if self.method is not None:
            clauses.append("method = ?")
            params.append(self.method)
        if self.card_prefix:
            # The bound lets the card index serve it; substr is `str.startswith` exactly.
            clauses.append("card_id >= ? AND substr(card_id, 1, ?) = ?")
            params += [self.card_prefix, len(self.card_prefix), self.card_prefix]
        if self.cashier is not None:
            clauses.append("coalesce(cashier, ?) = ?")
            params += [self.no_cashier, self.cashier]
        return " WHERE " + " AND ".join(clauses), params


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


# Per (card, state, currency): the sums the counting rule reads (`Totals.add_group` applies it).
USAGE_SQL = (
    "SELECT card_id, state, currency, count(*), sum(coalesce(amount_msat, 0)), "
    "sum(coalesce(tip_msat, 0)), sum(amount_minor), sum(tip_minor != 0), sum(tip_minor), "
    "min(created_at), max(created_at) FROM sales{where} GROUP BY card_id, state, currency"
)


def _usage_of(rows: Iterable[tuple[Any, ...]]) -> list[CardUsage]:
    """`CardUsage`s from `USAGE_SQL`'s rows (a card's groups added up), ranked."""
    cards: dict[str, CardUsage] = {}
    for card_id, state, code, *sums, first_at, last_at in rows:
        usage = cards.get(card_id)
        if usage is None:
            cards[card_id] = usage = CardUsage(card_id)
        usage.totals.add_group(state, code, *sums)
        usage.first_at = first_at if usage.first_at is None else min(usage.first_at, first_at)
        usage.last_at = last_at if usage.last_at is None else max(usage.last_at, last_at)
    return ranked(cards.values())


def _doc_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _doc_blob(doc: dict[str, Any], text: str | None = None) -> bytes:
    """`doc` as stored: its JSON (`text` when the caller has it already), compressed."""
    return _compress((_doc_text(doc) if text is None else text).encode("utf-8"))


def _compress(data: bytes) -> bytes:
    packer = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, ZLIB_WBITS, ZLIB_MEM_LEVEL)
    return packer.compress(data) + packer.flush()


def decode_doc(blob: bytes) -> dict[str, Any]:
    """The record document stored as `blob` (ValueError when it does not decode)."""
    try:
        doc = json.loads(zlib.decompress(blob))
    except zlib.error as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise ValueError("not a record")
    return doc


def _crc(blob: bytes) -> int:
    return zlib.crc32(blob)


@dataclass(frozen=True)
class _InvoiceFacts:
    state: str
    bolt11: str | None
    invoice_final: bool


COLUMNS = ("id", "created_at", "state", "method", "card_id", "currency", "amount_minor",
           "amount_msat", "tip_minor", "tip_msat", "payment_hash", "awaiting_invoice", "synced",
           "cashier")  # `sales`' columns but n, in `_columns`' order (cashier last: version 2)


def _columns(doc: dict[str, Any]) -> tuple[Any, ...]:
    """The indexed columns of one record document (`SaleRecord.to_doc()`)."""
    awaiting = awaiting_invoice(_InvoiceFacts(doc["state"], doc.get("bolt11"),
                                              bool(doc.get("invoice_final"))))
    return (doc["id"], doc["created_at"], doc["state"], doc.get("method"), doc.get("card_id"),
            doc["currency"], doc["amount_minor"], doc.get("amount_msat"),
            doc.get("tip_minor") or 0, doc.get("tip_msat"), doc.get("payment_hash"),
            int(awaiting), int(bool(doc.get("synced"))), doc.get("cashier") or None)


class SaleArchive:
    """The settled sales of one ledger. One writer (the journal's lock holder), many readers."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._closed = False
        if read_only:
            if self.path.exists():
                self._db = self._connect(read_only=True)
        else:
            self._open_for_writing()

    # ------------------------------------------------------------------------------- opening
    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        try:
            if read_only:
                db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True,
                                     isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA query_only = 1")
            else:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous = FULL")
            return db
        except sqlite3.DatabaseError as exc:
            raise self._damage_from(exc) from exc

    def _open_for_writing(self) -> None:
        created = not self.path.exists()
        if created:
            # Private from the first byte: sqlite creates files with the process umask.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
            os.close(fd)
        os.chmod(self.path, FILE_MODE)
        db = self._connect(read_only=False)
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError(f"the archive {self.path} cannot use a write-ahead log")
            db.executescript(SCHEMA)
            # A new archive starts at the current version; an older one keeps its own until
            # it is migrated below.
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                       (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('moves', 0)")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._damage_from(exc) from exc
        self._db = db
        schema = self._meta("schema")
        if schema == 1:
            try:
                self._migrate_to_2()
            except BaseException:
                self.close()
                raise
            schema = self._meta("schema")
        if schema != SCHEMA_VERSION:
            self.close()
            raise BooksDamaged(Damage(
                str(self.path), f"it has schema version {schema}; this software reads version "
                f"{SCHEMA_VERSION}", "Nothing can be read until the software is updated.",
                "Update the terminal software."))
        if created:
            from terminal.adapters.books.fileops import DEFAULT_FILE_OPS

            DEFAULT_FILE_OPS.fsync_dir(self.path.parent)

    def _migrate_to_2(self) -> None:
        """Version 1 -> 2: add `cashier` and fill it from the stored records (see the module's
        doc). Each step is one transaction; the version changes last, so a crash anywhere
        leaves a version 1 archive that this resumes (a row filled twice is filled the same)."""

        def add_column(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                names = {row[1] for row in db.execute("PRAGMA table_info(sales)")}
                if "cashier" not in names:
                    db.execute("ALTER TABLE sales ADD COLUMN cashier TEXT")
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)",
                           (MIGRATE_MARK,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

        def fill_step(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                mark = db.execute("SELECT value FROM meta WHERE key = ?",
                                  (MIGRATE_MARK,)).fetchone()[0]
                rows = db.execute(
                    "SELECT s.n, s.id, d.doc, d.crc FROM sales s LEFT JOIN docs d ON d.n = s.n "
                    "WHERE s.n > ? ORDER BY s.n LIMIT ?", (mark, MIGRATE_BATCH)).fetchall()
                if rows:
                    db.executemany("UPDATE sales SET cashier = ? WHERE n = ?",
                                   [(self._stored_cashier(*row[1:]), row[0]) for row in rows])
                    db.execute("UPDATE meta SET value = ? WHERE key = ?",
                               (rows[-1][0], MIGRATE_MARK))
                else:
                    db.execute("UPDATE meta SET value = 2 WHERE key = 'schema'")
                    db.execute("DELETE FROM meta WHERE key = ?", (MIGRATE_MARK,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return bool(rows)

        self._run(add_column)
        while self._run(fill_step):
            pass

    def _stored_cashier(self, sale_id: str, blob: bytes | None, crc: int | None) -> str | None:
        """The cashier of a stored record; None for one that does not read (the full check,
        `ledger check`, reports it; reading that sale reports it too)."""
        try:
            if not isinstance(blob, bytes) or _crc(blob) != crc:
                raise ValueError("fails its check")
            cashier = decode_doc(blob).get("cashier")  # not a whole SaleRecord: ~2x faster
        except ValueError:
            log.warning("the archived sale %s does not read: its cashier is left unknown",
                        sale_id)
            return None
        return cashier if isinstance(cashier, str) and cashier else None

    def _damage_from(self, exc: sqlite3.Error) -> StorageError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "full" in text:
            return StorageFullError(
                f"the disk holding the archive {self.path} is full: settled sales stay in the "
                "journal until there is room. Free some space (old exports, logs)")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError | sqlite3.IntegrityError):
            return BooksDamaged(Damage(str(self.path), f"SQLite reports: {text}", AFFECTS_ARCHIVE))
        return StorageError(f"the archive {self.path} could not be used: {text}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            db, self._db = self._db, None
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    @property
    def exists(self) -> bool:
        return self._db is not None

    # ------------------------------------------------------------------------------- meta
    def _meta(self, key: str) -> Any:
        row = self._read(lambda db: db.execute("SELECT value FROM meta WHERE key = ?",
                                               (key,)).fetchone())
        return None if row is None else row[0]

    @property
    def ledger_id(self) -> str | None:
        value = self._meta("ledger")
        return value if isinstance(value, str) else None

    def adopt(self, ledger_id: str) -> None:
        """Name the ledger this archive belongs to (once, when it is new)."""
        self._write(lambda db: db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger', ?)", (ledger_id,)))

    @property
    def moves(self) -> int:
        value = self._meta("moves")
        return int(value) if isinstance(value, int) else 0

    def set_moves(self, moves: int) -> None:
        """Set the move count (only `ledger repair`, on the archive it rebuilds)."""
        self._write(lambda db: db.execute("UPDATE meta SET value = ? WHERE key = 'moves'",
                                          (moves,)))

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file (before the file is moved or copied)."""
        self._write(lambda db: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    def is_empty(self) -> bool:
        return self._read(lambda db: db.execute("SELECT 1 FROM sales LIMIT 1").fetchone()) is None

    # ------------------------------------------------------------------------------ writing
    def put(self, records: Sequence[SaleRecord]) -> int:
        """Insert or replace `records` in one durable transaction; returns the new move count."""
        return self.put_docs([record.to_doc() for record in records])

    def put_docs(self, docs: Sequence[dict[str, Any]],
                 texts: Sequence[str] | None = None) -> int:
        """`put` for record documents (`SaleRecord.to_doc()`), as the journal holds them;
        `texts`, when given, are their JSON as the journal wrote it (not encoded again)."""
        if texts is not None and len(texts) != len(docs):
            raise ValueError("one text per document")

        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                for n, doc in enumerate(docs):
                    self._upsert(db, doc, None if texts is None else texts[n])
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'moves'")
                moves = db.execute("SELECT value FROM meta WHERE key = 'moves'").fetchone()[0]
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return int(moves)

        return self._write(work)

    @staticmethod
    def _upsert(db: sqlite3.Connection, doc: dict[str, Any], text: str | None) -> None:
        columns = _columns(doc)
        blob = _doc_blob(doc, text)
        row = db.execute("SELECT n FROM sales WHERE id = ?", (columns[0],)).fetchone()
        if row is None:
            n = db.execute(
                "INSERT INTO sales (id, created_at, state, method, card_id, currency, "
                "amount_minor, amount_msat, tip_minor, tip_msat, payment_hash, "
                "awaiting_invoice, synced, cashier) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                columns).lastrowid
            db.execute("INSERT INTO docs (n, doc, crc) VALUES (?, ?, ?)", (n, blob, _crc(blob)))
            return
        n = row[0]
        db.execute(
            "UPDATE sales SET created_at = ?, state = ?, method = ?, card_id = ?, currency = ?, "
            "amount_minor = ?, amount_msat = ?, tip_minor = ?, tip_msat = ?, payment_hash = ?, "
            "awaiting_invoice = ?, synced = ?, cashier = ? WHERE n = ?", (*columns[1:], n))
        db.execute("INSERT OR REPLACE INTO docs (n, doc, crc) VALUES (?, ?, ?)",
                   (n, blob, _crc(blob)))

    def _write(self, work: Any) -> Any:
        if self.read_only or self._db is None:
            raise StorageError(f"the archive {self.path} was opened read-only")
        return self._run(work)

    def _read(self, work: Any, default: Any = None) -> Any:
        """`work(connection)` for a read; `default` when there is no archive. A closed archive
        still answers, through a short-lived read-only connection (as a closed journal does)."""
        with self._lock:
            if self._db is not None:
                return self._run(work)
            if not self._closed or not self.path.exists():
                return default
        reader = self._connect(read_only=True)
        try:
            return work(reader)
        except sqlite3.Error as exc:
            raise self._damage_from(exc) from exc
        finally:
            reader.close()

    def _run(self, work: Any) -> Any:
        with self._lock:
            if self._db is None:
                raise StorageError(f"the archive {self.path} is closed")
            try:
                return work(self._db)
            except sqlite3.Error as exc:
                raise self._damage_from(exc) from exc

    # ------------------------------------------------------------------------------ reading
    def _record(self, sale_id: str, blob: bytes, crc: int) -> SaleRecord:
        if not isinstance(blob, bytes) or _crc(blob) != crc:
            raise BooksDamaged(Damage(
                str(self.path), f"the archived sale {sale_id} fails its check", AFFECTS_ARCHIVE))
        try:
            return SaleRecord.from_doc(decode_doc(blob))
        except (ValueError, TypeError, KeyError) as exc:
            raise BooksDamaged(Damage(
                str(self.path), f"the archived sale {sale_id} is not a readable record",
                AFFECTS_ARCHIVE)) from exc

    def get(self, sale_id: str) -> SaleRecord | None:
        row = self._read(lambda db: db.execute(
            "SELECT s.id, d.doc, d.crc FROM sales s JOIN docs d ON d.n = s.n WHERE s.id = ?",
            (sale_id,)).fetchone())
        return None if row is None else self._record(*row)

    def by_payment_hash(self, payment_hash: str) -> SaleRecord | None:
        row = self._read(lambda db: db.execute(
            "SELECT s.id, d.doc, d.crc FROM sales s JOIN docs d ON d.n = s.n "
            "WHERE s.payment_hash = ?", (payment_hash,)).fetchone())
        return None if row is None else self._record(*row)

    def present(self, sale_ids: Iterable[str]) -> set[str]:
        """Which of `sale_ids` are archived (one indexed lookup each)."""
        ids = list(sale_ids)

        def work(db: sqlite3.Connection) -> set[str]:
            return {sid for sid in ids
                    if db.execute("SELECT 1 FROM sales WHERE id = ?", (sid,)).fetchone()}

        return self._read(work, set())

    def count(self) -> int:
        return int(self._read(lambda db: db.execute("SELECT count(*) FROM sales").fetchone()[0],
                              0))

    def records(self, where: Where = Where(), *, newest_first: bool = False,
                skip: frozenset[str] = frozenset()) -> Iterator[SaleRecord]:
        """Archived sales matching `where`, ordered by (created_at, id), streamed."""
        clause, params = where.sql()
        order = "DESC" if newest_first else "ASC"
        # Only fixed column names are spliced in; every value is a bound parameter.
        sql = (f"SELECT s.id, d.doc, d.crc FROM sales s JOIN docs d ON d.n = s.n{clause} "  # noqa: S608
               f"ORDER BY s.created_at {order}, s.id {order}")
        for sale_id, doc, crc in self._stream(sql, params):
            if sale_id not in skip:
                yield self._record(sale_id, doc, crc)

    def summaries(self, where: Where = Where(), *,
                  skip: frozenset[str] = frozenset()) -> Iterator[SaleSummary]:
        """The columns totals need, streamed without reading whole records."""
        clause, params = where.sql()
        sql = f"SELECT {SUMMARY_COLUMNS} FROM sales{clause} ORDER BY created_at, id"  # noqa: S608
        for row in self._stream(sql, params):
            if row[0] not in skip:
                yield SaleSummary(*row)

    def awaiting_invoice(self, skip: frozenset[str] = frozenset()) -> Iterator[SaleRecord]:
        sql = ("SELECT s.id, d.doc, d.crc FROM sales s JOIN docs d ON d.n = s.n "
               "WHERE s.awaiting_invoice = 1 ORDER BY s.created_at")
        for sale_id, doc, crc in self._stream(sql, []):
            if sale_id not in skip:
                yield self._record(sale_id, doc, crc)

    def unsynced(self, skip: frozenset[str] = frozenset()) -> Iterator[SaleRecord]:
        sql = ("SELECT s.id, d.doc, d.crc FROM sales s JOIN docs d ON d.n = s.n "
               "WHERE s.synced = 0 ORDER BY s.created_at")
        for sale_id, doc, crc in self._stream(sql, []):
            if sale_id not in skip:
                yield self._record(sale_id, doc, crc)

    @property
    def knows_cashiers(self) -> bool:
        """Rows name their cashier (version 2; a version 1 archive opened read-only does not)."""
        return self._meta("schema") == SCHEMA_VERSION

    def card_usage(self, where: UsageWhere, *,
                   skip: frozenset[str] = frozenset()) -> list[CardUsage]:
        """Per-card usage of the archived sales matching `where` (exactly), but those in
        `skip`: SQL sums per card, state and currency in one pass over the small `sales` rows
        (no record is read), to which the counting rule is applied. Ranked."""
        if where.cashier is not None and not self.knows_cashiers:
            raise StorageError(f"the archive {self.path} does not know its sales' cashiers yet")
        clause, params = where.sql()
        if skip:
            clause += " AND id NOT IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(skip)))
        functions = {"in_days": where.in_days} if where.in_days is not None else {}
        return _usage_of(self._stream(USAGE_SQL.format(where=clause), params, functions))

    def _stream(self, sql: str, params: Sequence[Any],
                functions: dict[str, Callable[[float], bool]] | None = None,
                ) -> Iterator[tuple[Any, ...]]:
        """Rows of one query on a connection of its own: a consistent snapshot, streamed, that
        never blocks the writer's connection. `functions`: one-argument SQL functions."""
        if self._db is None and not (self._closed and self.path.exists()):
            return
        reader = self._connect(read_only=True)
        for name, function in (functions or {}).items():
            reader.create_function(name, 1, function, deterministic=True)
        try:
            cursor = reader.execute(sql, params)
            while rows := cursor.fetchmany(FETCH):
                yield from rows
        except sqlite3.Error as exc:
            raise self._damage_from(exc) from exc
        finally:
            reader.close()

    # ---------------------------------------------------------------------------- checking
    def verify(self, limit: int = 5) -> list[Damage]:
        """SQLite's integrity check plus every record against its checksum and columns."""
        if self._db is None:
            return []
        found: list[Damage] = []
        try:
            rows = [r[0] for r in self._stream("PRAGMA integrity_check", [])]
        except BooksDamaged as exc:
            return [exc.damage]
        if rows != ["ok"]:
            found.append(Damage(str(self.path), "SQLite's integrity check fails: "
                                + "; ".join(str(r) for r in rows[:3]), AFFECTS_ARCHIVE))
        bad = 0
        # Every column against its record: totals and per-card usage are counted from them.
        width = len(COLUMNS) if self.knows_cashiers else len(COLUMNS) - 1
        sql = (f"SELECT {', '.join('s.' + c for c in COLUMNS[:width])}, d.doc, d.crc "  # noqa: S608
               "FROM sales s LEFT JOIN docs d ON d.n = s.n")
        try:
            for row in self._stream(sql, []):
                problem = self._row_problem(row[:width], row[width], row[width + 1])
                if problem is None:
                    continue
                bad += 1
                if bad <= limit:
                    found.append(Damage(str(self.path), problem, AFFECTS_ARCHIVE))
        except BooksDamaged as exc:
            found.append(exc.damage)
        if bad > limit:
            found.append(Damage(str(self.path), f"{bad - limit} more archived sale(s) fail "
                                "their check", AFFECTS_ARCHIVE))
        return found

    def _row_problem(self, columns: tuple[Any, ...], doc: bytes | None,
                     crc: int | None) -> str | None:
        sale_id = columns[0]
        if doc is None or crc is None:
            return f"the archived sale {sale_id} has no record"
        try:
            record = self._record(sale_id, doc, crc)
        except BooksDamaged as exc:
            return exc.damage.what
        if _columns(record.to_doc())[:len(columns)] != columns:
            return f"the archived sale {sale_id} does not match its index columns"
        return None


__all__ = ["SCHEMA_VERSION", "SaleArchive", "UsageWhere", "Where", "decode_doc"]
