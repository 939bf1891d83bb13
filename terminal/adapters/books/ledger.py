"""The terminal's books: the journal of what is in flight, and the archive of settled sales.

- The journal (TinyDB over `JournalStorage`: crash-safe, O(changed) per write, held in memory)
  keeps what is in flight: open sales, the offline payout queue, card counters and state,
  settings and recent events.
- A sale that reaches a final state moves to the archive (`archive.py`: SQLite on disk, indexed),
  so memory and start-up follow the work in flight, not years of history.

Every method that changes something returns only once the change is on disk.

The move, and why a crash anywhere in it leaves each sale readable exactly once:
1. the final record is written to the journal like any other change (this is the acknowledged
   write; inside `transaction()` it is part of the transaction's one record);
2. later, in a batch (`MOVE_BATCH` settled sales, or `MOVE_AFTER_S`, or when the books are
   opened or closed), they are inserted into (or replaced in) the archive: one SQLite
   transaction, durable;
3. they are deleted from the journal, with the archive's new move count (one journal record).
Rule: where both stores hold a sale, the journal's copy wins (it is never older), so a crash
between 2 and 3 shows one sale. Final sales still in the journal are moves to finish: they are
finished when the books are next opened for writing (or written), and until then read from the
journal. The move count catches an archive that lost committed moves (see `archive.py`).

Tables: sales, payouts, cards, events, meta, refunds (kept in the journal: few, and written
together with their sale). Documents are the `terminal.core.records` dataclasses'
`to_doc()`; the tap URLs in `payouts` are why the files are 0600. The queries of past sales are
those of the `terminal.core.history.SalesHistory` port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.adapters.books.archive import SaleArchive, UsageWhere, Where
from terminal.adapters.books.errors import BooksDamaged, Damage, StorageError
from terminal.adapters.books.layout import archive_path
from terminal.adapters.books.storage import JournalDB, JournalTable, _copy
from terminal.core.history import SaleSummary, awaiting_invoice
from terminal.core.records import CardState, PayoutStatus, QueuedPayout, SaleRecord, TerminalEvent
from terminal.core.refunds import RefundRecord, RefundState
from terminal.core.risk import Exposure
from terminal.core.sale import SaleState

if TYPE_CHECKING:
    from terminal.core.card_usage import CardUsage, UsageFilter
    from terminal.core.history import SaleFacts, SaleQuery

log = logging.getLogger(__name__)

SALES = "sales"
REFUNDS = "refunds"
PAYOUTS = "payouts"
CARDS = "cards"
EVENTS = "events"
META = "meta"
ARCHIVE_MOVES = "archive.moves"  # meta: the archive's move count after the last finished move

# Sales that checkout must settle after a restart (QUEUED/SUBMITTED belong to the sync worker).
WAITING_FOR_SYNC = frozenset({SaleState.QUEUED.value, SaleState.SUBMITTED.value})
FINAL_STATES = frozenset(s.value for s in SaleState if s.is_terminal)
# Payouts the terminal is still owed for (SUBMITTING: outcome unknown, still counted).
EXPOSED_PAYOUTS = frozenset({PayoutStatus.QUEUED, PayoutStatus.SUBMITTING})
MSAT_PER_SAT = 1000
DEFAULT_MAX_EVENTS = 10_000
MOVE_BATCH = 32  # settled sales moved to the archive together
MOVE_AFTER_S = 30.0  # ... or once the oldest of them has waited this long
CLOSE_COMPACT_BYTES = 64 * 1024  # a journal over this (and twice its live data) is compacted at
# close, so the next start replays little


class DuplicatePayout(ValueError):
    """`add_payout` was given a payout id that is already recorded."""


class DuplicatePaymentHash(ValueError):
    """`save_sale` was given a payment hash another sale already holds (one payment, one sale)."""


def _order(record: SaleFacts) -> tuple[float, str]:
    return (record.created_at, record.id)


_SALE_FIELDS = tuple(f.name for f in dataclasses.fields(SaleRecord))


def sale_doc(record: SaleRecord) -> dict[str, Any]:
    """`record.to_doc()` without `dataclasses.asdict`'s deep copies (~10x faster): the books
    serialise a document as soon as they are given it, so sharing scalars is safe."""
    doc = {name: getattr(record, name) for name in _SALE_FIELDS}
    doc["history"] = [dict(vars(change)) for change in record.history]
    return doc


_PAYOUT_FIELDS = tuple(f.name for f in dataclasses.fields(QueuedPayout))
_CARD_FIELDS = tuple(f.name for f in dataclasses.fields(CardState))


def payout_doc(payout: QueuedPayout) -> dict[str, Any]:
    """`payout.to_doc()` without the deep copies, as `sale_doc` (the metadata is shared: it is
    serialised before `save_payout` returns and never kept)."""
    return {name: getattr(payout, name) for name in _PAYOUT_FIELDS}


def card_doc(state: CardState) -> dict[str, Any]:
    """`state.to_doc()` without `dataclasses.asdict` (every field is a scalar)."""
    return {name: getattr(state, name) for name in _CARD_FIELDS}


class Ledger:
    """Implements checkout's and the sync worker's `Ledger` and the `SalesHistory` port."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
        max_events: int = DEFAULT_MAX_EVENTS,
        move_batch: int = MOVE_BATCH,
        move_after_s: float = MOVE_AFTER_S,
        **storage_options: Any,
    ) -> None:
        if move_batch < 1:
            raise ValueError("move_batch must be 1 or more")
        self.path = Path(path)
        self.archive_path = archive_path(self.path)
        self.clock = clock
        self.read_only = read_only
        self.max_events = max_events
        self.move_batch = move_batch
        self.move_after_s = move_after_s
        self._pending_since: float | None = None  # time.monotonic() of the oldest waiting move
        self._refuse_a_lost_journal()
        self._db = JournalDB(self.path, read_only=read_only, **storage_options)
        try:
            self._archive = self._open_archive()
        except BaseException:
            self._db.close()
            raise
        self._sales = self._table(SALES)
        self._payouts = self._table(PAYOUTS)
        self._cards = self._table(CARDS)
        self._events = self._table(EVENTS)
        self._meta = self._table(META)
        self._refunds = self._table(REFUNDS)
        # id -> TinyDB doc id, per table
        self._sale_doc: dict[str, int] = {}
        self._payout_doc: dict[str, int] = {}
        self._card_doc: dict[str, int] = {}
        self._meta_doc: dict[str, int] = {}
        self._refund_doc: dict[str, int] = {}
        self._event_docs: deque[int] = deque()
        # secondary indexes
        self._sale_state: dict[str, str] = {}
        self._by_payment_hash: dict[str, str] = {}
        self._payout_status: dict[str, str] = {}
        self._exposed: dict[str, tuple[int, float]] = {}  # payout id -> (msat, created_at)
        # The last payment hash the archive was found not to hold: a new invoice's hash is looked
        # up by the sync worker, then again by `save_sale`. Only this writer adds to the archive
        # (the moves, which forget it); a read-only ledger never remembers it.
        self._not_archived: str | None = None
        self._build_indexes()
        # Final sales still in the journal: moves to finish (after a crash, or a failed move).
        self._pending_moves = {s for s, state in self._sale_state.items() if state in FINAL_STATES}
        if not read_only:
            try:
                self.settle()
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------------------ opening
    def _refuse_a_lost_journal(self) -> None:
        """A missing or empty journal beside an archive of sales is damage, not a new ledger."""
        try:
            empty = self.path.stat().st_size == 0
        except FileNotFoundError:
            empty = True
        if not empty or not self.archive_path.exists():
            return
        archive = SaleArchive(self.archive_path, read_only=True)
        try:
            holds_sales = not archive.is_empty()
        finally:
            archive.close()
        if holds_sales:
            state = "empty" if self.path.exists() else "missing"
            raise BooksDamaged(Damage(
                str(self.path), f"the journal is {state}, but the archive "
                f"{self.archive_path.name} holds settled sales", "Sales in progress, offline "
                "payments waiting to be sent, card counters and settings may all be lost."))

    def _open_archive(self) -> SaleArchive:
        journal = self._db.journal
        moves = self._journal_meta(ARCHIVE_MOVES, 0)
        if moves and not self.archive_path.exists():
            raise BooksDamaged(Damage(
                str(self.archive_path), f"the archive of settled sales is missing, but the "
                f"journal records {moves} move(s) into it", "Every settled sale may be lost "
                "from history, totals and exports."))
        archive = SaleArchive(self.archive_path, read_only=self.read_only)
        try:
            owner = archive.ledger_id
            if owner is None and archive.exists and not self.read_only and journal.ledger_id:
                if not archive.is_empty():
                    raise self._archive_damage(archive, "it names no ledger but holds sales")
                archive.adopt(journal.ledger_id)
            elif owner is not None and journal.ledger_id and owner != journal.ledger_id:
                raise self._archive_damage(archive, "it belongs to another ledger")
            if archive.moves < moves:
                raise self._archive_damage(
                    archive, f"it records {archive.moves} move(s) of settled sales but the "
                    f"journal saw {moves}: committed sales were lost (a deleted -wal file, or an "
                    "older copy put back)")
        except BaseException:
            archive.close()
            raise
        return archive

    @staticmethod
    def _archive_damage(archive: SaleArchive, what: str) -> BooksDamaged:
        return BooksDamaged(Damage(
            str(archive.path), what, "Settled sales in history, totals and exports may be "
            "wrong or missing."))

    def _journal_meta(self, key: str, default: Any) -> Any:
        for doc in self._db.journal.table_view(META).values():
            if doc.get("key") == key:
                return doc.get("value", default)
        return default

    def _table(self, name: str) -> JournalTable:
        table = self._db.table(name)
        if not isinstance(table, JournalTable):  # JournalDB.table_class: never happens
            raise TypeError(f"{name}: not a journal table")
        return table

    def _raw(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        for key, doc in list(self._db.journal.table_view(name).items()):
            yield int(key), doc

    def _build_indexes(self) -> None:
        for doc_id, doc in self._raw(SALES):
            self._index_sale(doc_id, doc)
        for doc_id, doc in self._raw(PAYOUTS):
            self._index_payout(doc_id, doc)
        self._card_doc = {doc["card_id"]: doc_id for doc_id, doc in self._raw(CARDS)}
        self._meta_doc = {doc["key"]: doc_id for doc_id, doc in self._raw(META)}
        self._refund_doc = {doc["id"]: doc_id for doc_id, doc in self._raw(REFUNDS)}
        self._event_docs = deque(sorted(doc_id for doc_id, _ in self._raw(EVENTS)))

    def _index_sale(self, doc_id: int, doc: dict[str, Any]) -> None:
        sale_id = doc["id"]
        self._sale_doc[sale_id] = doc_id
        self._sale_state[sale_id] = doc["state"]
        if doc.get("payment_hash"):
            self._by_payment_hash[doc["payment_hash"]] = sale_id

    def _unindex_sale(self, sale_id: str, payment_hash: str | None) -> None:
        self._sale_doc.pop(sale_id, None)
        self._sale_state.pop(sale_id, None)
        if payment_hash and self._by_payment_hash.get(payment_hash) == sale_id:
            del self._by_payment_hash[payment_hash]

    def _index_payout(self, doc_id: int, doc: dict[str, Any]) -> None:
        payout_id = doc["id"]
        self._payout_doc[payout_id] = doc_id
        self._payout_status[payout_id] = doc["status"]
        if doc["status"] in EXPOSED_PAYOUTS:
            self._exposed[payout_id] = (doc["amount_sats"] * MSAT_PER_SAT, doc["created_at"])
        else:
            self._exposed.pop(payout_id, None)

    # ------------------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside is recorded together (one journal record) or not at all.

        If the block raises (or the disk is full) nothing of it is recorded and the error is
        raised again. Sales it made final move to the archive once it has committed.
        """
        try:
            with self._db.journal.group():
                yield
        except BaseException:
            self._rebuild_indexes()  # the storage rolled back; the indexes must follow
            raise
        if not self._db.journal.in_group:
            self._maybe_settle()

    def _rebuild_indexes(self) -> None:
        for index in (self._sale_doc, self._payout_doc, self._sale_state, self._by_payment_hash,
                      self._payout_status, self._exposed, self._refund_doc):
            index.clear()
        self._build_indexes()

    def _put(self, table: JournalTable, index: dict[str, int], key: str, doc: dict) -> int:
        """Upsert by our own id: O(1) through the index, durable when it returns."""
        doc_id = index.get(key)
        if doc_id is None:
            doc_id = table.insert(doc)
        else:
            table.replace(doc_id, doc)
        index[key] = doc_id
        return doc_id

    def _get(self, table: str, doc_id: int | None) -> dict[str, Any] | None:
        if doc_id is None:
            return None
        doc = self._db.journal.table_view(table).get(str(doc_id))
        # A private copy: callers may change what they get without touching the ledger.
        return None if doc is None else _copy(doc)

    # ------------------------------------------------------------------------------- moving
    def _maybe_settle(self) -> None:
        """Move settled sales in batches: when `move_batch` wait, or the oldest has waited
        `move_after_s` (checked at each write), so an acknowledged write costs one journal
        append and the move's cost is shared."""
        if not self._pending_moves:
            self._pending_since = None
            return
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        if (len(self._pending_moves) >= self.move_batch
                or now - self._pending_since >= self.move_after_s):
            self.settle()

    def settle(self) -> None:
        """Move every settled sale still in the journal to the archive now (also done when the
        books are opened or closed for writing, and in batches as sales settle).

        A full disk or an unusable archive leaves them in the journal, where they are read from
        and moved at the next attempt; damage is raised.
        """
        if self.read_only:
            return
        self._settle_moves()
        self._pending_since = None if not self._pending_moves else time.monotonic()

    def _settle_moves(self) -> None:
        ids = [s for s in self._pending_moves if self._sale_state.get(s) in FINAL_STATES]
        self._pending_moves.intersection_update(ids)
        if not ids or self.read_only:
            return
        journal = self._db.journal
        view = journal.table_view(SALES)
        keys = [str(self._sale_doc[s]) for s in ids]
        docs = [view[key] for key in keys]  # serialised at once: not copied
        texts = [journal.doc_text(SALES, key) for key in keys]  # their JSON, already written
        self._not_archived = None  # the archive is about to change
        try:
            moves = self._archive.put_docs(docs, texts)
        except BooksDamaged:
            raise
        except StorageError as exc:
            log.warning("settled sales stay in the journal for now: %s", exc)
            return
        hashes = [doc.get("payment_hash") for doc in docs]
        try:
            with self._db.journal.group():
                self._sales.remove(doc_ids=[self._sale_doc[s] for s in ids])
                self.set_meta(ARCHIVE_MOVES, moves)
        except StorageError as exc:
            self._rebuild_indexes()
            log.warning("settled sales archived but still in the journal: %s", exc)
            return
        for sale_id, payment_hash in zip(ids, hashes, strict=True):
            self._unindex_sale(sale_id, payment_hash)
        self._pending_moves.difference_update(ids)

    def _journal_sale(self, sale_id: str) -> SaleRecord | None:
        doc_id = self._sale_doc.get(sale_id)
        doc = None if doc_id is None else self._db.journal.table_view(SALES).get(str(doc_id))
        # The live document, not a copy: `from_doc` copies its lists, the rest are scalars.
        return None if doc is None else SaleRecord.from_doc(doc)

    # -------------------------------------------------------------------------------- sales
    def save_sale(self, record: SaleRecord) -> None:
        if record.payment_hash and self._by_payment_hash.get(record.payment_hash) != record.id:
            holder = self.find_sale_by_payment_hash(record.payment_hash)
            if holder is not None and holder.id != record.id:
                raise DuplicatePaymentHash(
                    f"sale {holder.id} already holds the payment hash of sale {record.id}")
        doc = sale_doc(record)
        previous_hash = self._sale_hash(record.id)
        doc_id = self._put(self._sales, self._sale_doc, record.id, doc)
        if previous_hash and previous_hash != record.payment_hash:
            self._by_payment_hash.pop(previous_hash, None)
        self._index_sale(doc_id, doc)
        if record.state in FINAL_STATES:
            self._pending_moves.add(record.id)
        if not self._db.journal.in_group:
            self._maybe_settle()

    def _sale_hash(self, sale_id: str) -> str | None:
        doc = self._db.journal.table_view(SALES).get(str(self._sale_doc.get(sale_id)))
        return None if doc is None else doc.get("payment_hash")

    def get_sale(self, sale_id: str) -> SaleRecord | None:
        record = self._journal_sale(sale_id)
        if record is not None or sale_id in self._sale_doc:
            return record
        return self._archive.get(sale_id)

    def find_sale_by_payment_hash(self, payment_hash: str) -> SaleRecord | None:
        """The one sale holding `payment_hash`, in flight or archived (indexed in both)."""
        for key in dict.fromkeys((payment_hash.lower(), payment_hash)):
            sale_id = self._by_payment_hash.get(key)
            if sale_id is not None:
                return self._journal_sale(sale_id)
            archived = self._archived_by_payment_hash(key)
            if archived is None:
                continue
            if archived.id in self._sale_doc:  # the journal's copy wins
                current = self._journal_sale(archived.id)
                return current if current is not None and current.payment_hash == key else None
            return archived
        return None

    def _archived_by_payment_hash(self, payment_hash: str) -> SaleRecord | None:
        if payment_hash == self._not_archived:
            return None
        archived = self._archive.by_payment_hash(payment_hash)
        if archived is None and not self.read_only:
            self._not_archived = payment_hash
        return archived

    def _sales_where(self, keep: Callable[[str], bool]) -> list[SaleRecord]:
        ids = sorted(
            (doc_id, sale_id) for sale_id, doc_id in self._sale_doc.items()
            if keep(self._sale_state[sale_id])
        )
        found = (self._journal_sale(sale_id) for _, sale_id in ids)
        return [sale for sale in found if sale is not None]  # the index names only stored sales

    def open_sales(self) -> list[SaleRecord]:
        """Sales not yet final and not waiting for the sync worker, oldest first."""
        return self._sales_where(lambda s: s not in FINAL_STATES and s not in WAITING_FOR_SYNC)

    def queued_sales(self) -> list[SaleRecord]:
        """Sales accepted offline (QUEUED or SUBMITTED), oldest first."""
        return self._sales_where(lambda s: s in WAITING_FOR_SYNC)

    def sales_awaiting_invoice(self) -> list[SaleRecord]:
        """Final sales whose invoice a wallet may still pay (`history.awaiting_invoice`):
        cancelled or failed, with an invoice the backend has not declared final. Indexed in the
        archive; the reconcile asks the backend about each until it is final. Oldest first."""
        live = [r for r in self._journal_sales() if awaiting_invoice(r)]
        archived = self._archive.awaiting_invoice(skip=frozenset(self._sale_doc))
        return list(heapq.merge(sorted(live, key=_order), archived, key=_order))

    def unsynced_sales(self) -> list[SaleRecord]:
        """Final sales not yet marked synced (indexed in the archive), oldest first."""
        live = [r for r in self._journal_sales() if r.is_final and not r.synced]
        archived = self._archive.unsynced(skip=frozenset(self._sale_doc))
        return list(heapq.merge(sorted(live, key=_order), archived, key=_order))

    def _journal_sales(self) -> Iterator[SaleRecord]:
        for _, doc in self._raw(SALES):
            yield SaleRecord.from_doc(doc)  # copies what it keeps (see `_journal_sale`)

    def sales(self, start: float | None = None, end: float | None = None) -> list[SaleRecord]:
        """All sales created in [start, end) (unbounded where None), oldest first.

        Both stores; for anything but a short range prefer `sales_matching`, which streams.
        """
        return list(self._merged(Where(start=start, end=end), lambda r: True))

    def _merged(self, where: Where, keep: Callable[[SaleRecord], bool],
                newest_first: bool = False) -> Iterator[SaleRecord]:
        live = [r for r in self._journal_sales()
                if (where.start is None or r.created_at >= where.start)
                and (where.end is None or r.created_at < where.end) and keep(r)]
        live.sort(key=_order, reverse=newest_first)
        skip = frozenset(self._sale_doc)  # the journal's copy wins
        archived = (r for r in self._archive.records(where, newest_first=newest_first, skip=skip)
                    if keep(r))
        yield from heapq.merge(live, archived, key=_order, reverse=newest_first)

    # ------------------------------------------------------------------ SalesHistory port
    @staticmethod
    def _where(query: SaleQuery) -> Where:
        from terminal.core import history

        start, end = history.time_bounds(query)
        card = query.card_id.lower() if query.card_id else None
        return Where(start=start, end=end, state=query.state, method=query.method,
                     card_prefix=card)

    def sales_matching(self, query: SaleQuery, *,
                       newest_first: bool = False) -> Iterator[SaleRecord]:
        """Sales matching a history query (dates are local), streamed from both stores."""
        from terminal.core import history

        return self._merged(self._where(query), lambda r: history.matches(r, query),
                            newest_first)

    def summaries_matching(self, query: SaleQuery) -> Iterator[SaleFacts]:
        """The totals' columns of the sales matching `query`, oldest first, streamed."""
        from terminal.core import history

        where = self._where(query)
        live = sorted((r for r in self._journal_sales() if history.matches(r, query)),
                      key=_order)
        archived = (s for s in self._archive.summaries(where, skip=frozenset(self._sale_doc))
                    if history.matches(s, query))
        merged: Iterable[SaleFacts] = heapq.merge(
            (SaleSummary.of(r) for r in live), archived, key=_order)
        return iter(merged)

    def card_usage(self, usage: UsageFilter) -> list[CardUsage]:
        """Per-card usage of the sales `usage` selects, most used first (`SalesHistory`):
        the archive's counted by SQL (no record read), the journal's few by the same rule in
        Python, added up; the journal's copy of a sale wins, as everywhere."""
        from terminal.core import card_usage as usage_rule
        from terminal.core import history
        from terminal.core.cashiers import NO_CASHIER

        live = usage_rule.card_usage(r for r in self._journal_sales() if usage.matches(r))
        if usage.cashier is not None and not self._archive.knows_cashiers:
            # A version 1 archive opened read-only (it is migrated when opened for writing).
            records = (r for r in self._archive.records(
                self._where(usage.query), skip=frozenset(self._sale_doc)) if usage.matches(r))
            return usage_rule.merged(live, usage_rule.card_usage(records))
        query = usage.query
        start, end = history.time_bounds(query)

        def on_the_days(at: float) -> bool:
            return history.in_days(at, query)

        where = UsageWhere(
            start=start, end=end, in_days=on_the_days if (start, end) != (None, None) else None,
            state=query.state, states=usage.states, method=query.method,
            card_prefix=query.card_id.lower() if query.card_id else None,
            cashier=usage.cashier, no_cashier=NO_CASHIER)
        archived = self._archive.card_usage(where, skip=frozenset(self._sale_doc))
        return usage_rule.merged(live, archived)

    def history(self, query: SaleQuery) -> list[SaleRecord]:
        """Sales matching a history query (dates are local), oldest first."""
        return list(self.sales_matching(query))

    # -------------------------------------------------------------------------------- cards
    def card(self, card_id: str) -> CardState:
        doc = self._get(CARDS, self._card_doc.get(card_id))
        return CardState(card_id=card_id) if doc is None else CardState.from_doc(doc)

    def cards(self) -> list[CardState]:
        """Every card the terminal has seen."""
        return [CardState.from_doc(_copy(doc)) for _, doc in self._raw(CARDS)]

    def save_card(self, state: CardState) -> None:
        self._put(self._cards, self._card_doc, state.card_id, card_doc(state))

    def advance_counter(self, card_id: str, issuer: str, counter: int) -> int:
        """Store `counter` as the card's last one only if strictly greater; return the previous.

        -1 for a card never seen. Checkout refuses the tap when the result is >= counter, so
        the same `p`/`c` can never pay twice, even across restarts.
        """
        state = self.card(card_id)
        previous = state.last_counter
        if counter > previous:
            state.last_counter = counter
            state.issuer = issuer
            self.save_card(state)
        return previous

    # ------------------------------------------------------------------------------ payouts
    def add_payout(self, payout: QueuedPayout) -> None:
        if payout.id in self._payout_doc:
            raise DuplicatePayout(f"payout {payout.id} is already recorded")
        self.save_payout(payout)

    def save_payout(self, payout: QueuedPayout) -> None:
        doc = payout_doc(payout)
        doc_id = self._put(self._payouts, self._payout_doc, payout.id, doc)
        self._index_payout(doc_id, doc)

    def get_payout(self, payout_id: str) -> QueuedPayout | None:
        doc = self._get(PAYOUTS, self._payout_doc.get(payout_id))
        return None if doc is None else QueuedPayout.from_doc(doc)

    def payouts(self, status: str | None = None) -> list[QueuedPayout]:
        """Payouts in capture order (the order they were added), optionally of one status."""
        ids = sorted(
            doc_id for payout_id, doc_id in self._payout_doc.items()
            if status is None or self._payout_status[payout_id] == status
        )
        docs = (self._get(PAYOUTS, doc_id) for doc_id in ids)
        return [QueuedPayout.from_doc(doc) for doc in docs if doc is not None]

    def exposure(self) -> Exposure:
        """What queued (and submitting) offline payouts add up to: O(queued)."""
        if not self._exposed:
            return Exposure()
        return Exposure(
            queued_msat=sum(msat for msat, _ in self._exposed.values()),
            count=len(self._exposed),
            oldest_at=min(at for _, at in self._exposed.values()),
        )

    # ------------------------------------------------------------------------------ refunds
    # Refunds stay in the journal (they are few: a refund per hundreds of sales), so the
    # write-ahead record, its sale and its outcome can change together in one transaction.

    def save_refund(self, refund: RefundRecord) -> None:
        self._put(self._refunds, self._refund_doc, refund.id, refund.to_doc())

    def get_refund(self, refund_id: str) -> RefundRecord | None:
        doc = self._get(REFUNDS, self._refund_doc.get(refund_id))
        return None if doc is None else RefundRecord.from_doc(doc)

    def refunds(self, sale_id: str | None = None) -> list[RefundRecord]:
        """Refunds in the order they were recorded, optionally those of one sale."""
        view = self._db.journal.table_view(REFUNDS)
        out = []
        for doc_id in sorted(self._refund_doc.values()):
            doc = view.get(str(doc_id))
            if doc is not None and (sale_id is None or doc.get("sale_id") == sale_id):
                out.append(RefundRecord.from_doc(_copy(doc)))
        return out

    def open_refunds(self) -> list[RefundRecord]:
        """Refunds whose outcome is not final yet (after a crash: to resolve), oldest first."""
        return [r for r in self.refunds() if not r.is_final]

    def refunds_between(self, start: float, end: float) -> list[RefundRecord]:
        """Refunds SENT in [start, end), by the time they were sent."""
        return [r for r in self.refunds()
                if r.state == RefundState.SENT.value and r.sent_at is not None
                and start <= r.sent_at < end]

    # --------------------------------------------------------------------------------- meta
    def set_meta(self, key: str, value: Any) -> None:
        self._put(self._meta, self._meta_doc, key, {"key": key, "value": value})

    def get_meta(self, key: str, default: Any = None) -> Any:
        doc = self._get(META, self._meta_doc.get(key))
        return default if doc is None else doc["value"]

    # ------------------------------------------------------------------------------- events
    def log_event(self, kind: str, detail: str = "") -> None:
        """Record an event; the oldest ones go once there are more than `max_events`."""
        event = TerminalEvent(self.clock(), kind, detail)
        with self.transaction():
            doc_id = self._events.insert(event.to_doc())
            excess = len(self._event_docs) + 1 - self.max_events
            old = [self._event_docs[i] for i in range(max(0, excess))]
            if old:
                self._events.remove(doc_ids=old)
        for _ in old:
            self._event_docs.popleft()
        self._event_docs.append(doc_id)

    def events(self, limit: int = 50) -> list[TerminalEvent]:
        """The most recent events, newest first."""
        picked = list(self._event_docs)[-limit:] if limit > 0 else []
        view = self._db.journal.table_view(EVENTS)
        out = []
        for doc_id in reversed(picked):
            doc = view[str(doc_id)]
            out.append(TerminalEvent(doc["at"], doc["kind"], doc.get("detail", "")))
        return out

    # ---------------------------------------------------------------------------- checking
    def counts(self) -> dict[str, int]:
        """How much the books hold (the archive count reads its index: O(archived))."""
        return {
            "sales_in_flight": len(self._sale_doc),
            "sales_archived": self._archive.count(),
            "payouts": len(self._payout_doc),
            "cards": len(self._card_doc),
            "journal_records": self._db.journal.last_seq,
        }

    def verify(self) -> list[Damage]:
        """A full check of the archive (the journal was checked when it was opened)."""
        return self._archive.verify()

    # ------------------------------------------------------------------------------- closing
    def close(self) -> None:
        archive = getattr(self, "_archive", None)
        if archive is not None:
            if not self.read_only and getattr(self, "_pending_moves", None):
                try:
                    self.settle()
                except StorageError as exc:  # they are in the journal: moved at the next open
                    log.warning("settled sales left in the journal: %s", exc)
            if not self.read_only:
                self._db.journal.compact_if_worthwhile(CLOSE_COMPACT_BYTES)
            archive.close()
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, sales in flight={len(self._sale_doc)})"


__all__ = ["DuplicatePaymentHash", "DuplicatePayout", "Ledger"]
