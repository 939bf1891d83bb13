"""The terminal's ledger: sales, queued offline payouts, card counters, events and settings.

TinyDB over a `JournalStorage` (crash-safe, O(changed) per write). Every method that changes
something returns only once the change is on disk. Small in-memory indexes (built once when the
ledger opens) keep the hot paths off full scans: a sale or card is found by id in O(1), and the
offline exposure is summed over the queued payouts only.

Tables: sales, payouts, cards, events, meta. Documents are the `terminal.core.records` dataclasses'
`to_doc()`; the tap URLs in `payouts` are why the file is 0600.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.adapters.books.storage import JournalDB, JournalTable, _copy
from terminal.core.records import CardState, PayoutStatus, QueuedPayout, SaleRecord, TerminalEvent
from terminal.core.risk import Exposure
from terminal.core.sale import REOPENABLE_BY_PAYMENT, SaleState

if TYPE_CHECKING:
    from terminal.core.history import SaleQuery

SALES = "sales"
PAYOUTS = "payouts"
CARDS = "cards"
EVENTS = "events"
META = "meta"

# Sales that checkout must settle after a restart (QUEUED/SUBMITTED belong to the sync worker).
WAITING_FOR_SYNC = frozenset({SaleState.QUEUED.value, SaleState.SUBMITTED.value})
FINAL_STATES = frozenset(s.value for s in SaleState if s.is_terminal)
# Final states a payment can still turn PAID (as long as the invoice is not declared final).
_REOPENABLE = frozenset(s.value for s in REOPENABLE_BY_PAYMENT)
# Payouts the terminal is still owed for (SUBMITTING: outcome unknown, still counted).
EXPOSED_PAYOUTS = frozenset({PayoutStatus.QUEUED, PayoutStatus.SUBMITTING})
MSAT_PER_SAT = 1000
DEFAULT_MAX_EVENTS = 10_000


class DuplicatePayout(ValueError):
    """`add_payout` was given a payout id that is already recorded."""


class Ledger:
    """Implements `terminal.checkout.Ledger` plus the sync worker's and history's queries."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
        max_events: int = DEFAULT_MAX_EVENTS,
        **storage_options: Any,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.max_events = max_events
        self._db = JournalDB(self.path, read_only=read_only, **storage_options)
        self._sales = self._table(SALES)
        self._payouts = self._table(PAYOUTS)
        self._cards = self._table(CARDS)
        self._events = self._table(EVENTS)
        self._meta = self._table(META)
        # id -> TinyDB doc id, per table
        self._sale_doc: dict[str, int] = {}
        self._payout_doc: dict[str, int] = {}
        self._card_doc: dict[str, int] = {}
        self._meta_doc: dict[str, int] = {}
        self._event_docs: deque[int] = deque()
        # secondary indexes
        self._sale_state: dict[str, str] = {}
        self._by_payment_hash: dict[str, str] = {}  # hash -> the FIRST sale that recorded it
        self._awaiting_invoice: set[str] = set()  # sale ids: see sales_awaiting_invoice
        self._payout_status: dict[str, str] = {}
        self._exposed: dict[str, tuple[int, float]] = {}  # payout id -> (msat, created_at)
        self._build_indexes()

    def _table(self, name: str) -> JournalTable:
        return self._db.table(name)  # type: ignore[return-value]

    def _raw(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        for key, doc in self._db.journal.table_view(name).items():
            yield int(key), doc

    def _build_indexes(self) -> None:
        for doc_id, doc in sorted(self._raw(SALES), key=lambda item: item[0]):
            self._index_sale(doc_id, doc)  # in recording order: a hash keeps its first sale
        for doc_id, doc in self._raw(PAYOUTS):
            self._index_payout(doc_id, doc)
        self._card_doc = {doc["card_id"]: doc_id for doc_id, doc in self._raw(CARDS)}
        self._meta_doc = {doc["key"]: doc_id for doc_id, doc in self._raw(META)}
        self._event_docs = deque(sorted(doc_id for doc_id, _ in self._raw(EVENTS)))

    def _index_sale(self, doc_id: int, doc: dict[str, Any]) -> None:
        sale_id = doc["id"]
        self._sale_doc[sale_id] = doc_id
        self._sale_state[sale_id] = doc["state"]
        if doc.get("payment_hash"):
            # One payment, one sale: a hash stays with the sale that recorded it first.
            self._by_payment_hash.setdefault(doc["payment_hash"], sale_id)
        if (doc.get("bolt11") and not doc.get("invoice_final")
                and doc["state"] in _REOPENABLE):
            self._awaiting_invoice.add(sale_id)
        else:
            self._awaiting_invoice.discard(sale_id)

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
        """Everything written inside is recorded together (one journal line) or not at all.

        If the block raises (or the disk is full) nothing of it is recorded and the error is
        raised again.
        """
        try:
            with self._db.journal.group():
                yield
        except BaseException:
            self._rebuild_indexes()  # the storage rolled back; the indexes must follow
            raise

    def _rebuild_indexes(self) -> None:
        for index in (self._sale_doc, self._payout_doc, self._sale_state, self._by_payment_hash,
                      self._payout_status, self._exposed, self._awaiting_invoice):
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

    # -------------------------------------------------------------------------------- sales
    def save_sale(self, record: SaleRecord) -> None:
        doc = record.to_doc()
        previous_hash = self._sale_hash(record.id)
        doc_id = self._put(self._sales, self._sale_doc, record.id, doc)
        if (previous_hash and previous_hash != record.payment_hash
                and self._by_payment_hash.get(previous_hash) == record.id):
            self._by_payment_hash.pop(previous_hash, None)
        self._index_sale(doc_id, doc)

    def _sale_hash(self, sale_id: str) -> str | None:
        doc = self._db.journal.table_view(SALES).get(str(self._sale_doc.get(sale_id)))
        return None if doc is None else doc.get("payment_hash")

    def get_sale(self, sale_id: str) -> SaleRecord | None:
        doc = self._get(SALES, self._sale_doc.get(sale_id))
        return None if doc is None else SaleRecord.from_doc(doc)

    def find_sale_by_payment_hash(self, payment_hash: str) -> SaleRecord | None:
        """The sale that holds this payment hash (the first one that recorded it), or None.

        O(1). Checkout refuses an invoice whose hash another sale holds
        (`backend-replayed-invoice`) and settles a payment on this sale only.
        """
        sale_id = self._by_payment_hash.get(payment_hash.lower()) or self._by_payment_hash.get(
            payment_hash
        )
        return None if sale_id is None else self.get_sale(sale_id)

    def _sales_where(self, keep: Callable[[str], bool]) -> list[SaleRecord]:
        ids = sorted(
            (doc_id, sale_id) for sale_id, doc_id in self._sale_doc.items()
            if keep(self._sale_state[sale_id])
        )
        return [self.get_sale(sale_id) for _, sale_id in ids]  # type: ignore[misc]

    def open_sales(self) -> list[SaleRecord]:
        """Sales not yet final and not waiting for the sync worker, oldest first."""
        return self._sales_where(lambda s: s not in FINAL_STATES and s not in WAITING_FOR_SYNC)

    def sales_awaiting_invoice(self) -> list[SaleRecord]:
        """Final sales whose invoice may still be paid: cancelled, failed or expired, with an
        invoice the backend has not declared final (`invoice_final`). The reconcile asks about
        each until it is final, with no time window. Oldest first; O(such sales)."""
        ids = sorted((self._sale_doc[sale_id], sale_id) for sale_id in self._awaiting_invoice)
        return [self.get_sale(sale_id) for _, sale_id in ids]  # type: ignore[misc]

    def queued_sales(self) -> list[SaleRecord]:
        """Sales accepted offline (QUEUED or SUBMITTED), oldest first."""
        return self._sales_where(lambda s: s in WAITING_FOR_SYNC)

    def sales(self, start: float | None = None, end: float | None = None) -> list[SaleRecord]:
        """All sales created in [start, end) (unbounded where None), oldest first."""
        out = []
        for doc_id, doc in self._raw(SALES):
            created = doc["created_at"]
            if (start is None or created >= start) and (end is None or created < end):
                out.append((doc_id, SaleRecord.from_doc(_copy(doc))))
        return [record for _, record in sorted(out, key=lambda p: (p[1].created_at, p[0]))]

    def history(self, query: SaleQuery) -> list[SaleRecord]:
        """Sales matching a history query (dates are local), oldest first."""
        from terminal.core import history  # exports need csv etc.; the running terminal does not

        start, end = history.time_bounds(query)
        return history.select(self.sales(start, end), query)

    # -------------------------------------------------------------------------------- cards
    def card(self, card_id: str) -> CardState:
        doc = self._get(CARDS, self._card_doc.get(card_id))
        return CardState(card_id=card_id) if doc is None else CardState.from_doc(doc)

    def cards(self) -> list[CardState]:
        """Every card the terminal has seen."""
        return [CardState.from_doc(_copy(doc)) for _, doc in self._raw(CARDS)]

    def save_card(self, state: CardState) -> None:
        self._put(self._cards, self._card_doc, state.card_id, state.to_doc())

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
        doc = payout.to_doc()
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
        return [QueuedPayout.from_doc(self._get(PAYOUTS, doc_id)) for doc_id in ids]  # type: ignore[arg-type]

    def exposure(self) -> Exposure:
        """What queued (and submitting) offline payouts add up to: O(queued)."""
        if not self._exposed:
            return Exposure()
        return Exposure(
            queued_msat=sum(msat for msat, _ in self._exposed.values()),
            count=len(self._exposed),
            oldest_at=min(at for _, at in self._exposed.values()),
        )

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

    # ------------------------------------------------------------------------------- closing
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}, sales={len(self._sale_doc)})"


__all__ = ["DuplicatePayout", "Ledger"]
