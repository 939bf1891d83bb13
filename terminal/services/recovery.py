"""Recovery from the backend, the system of record: restore the paid sales the books lack.

`recover` lists the payments the backend holds for this terminal since a time
(`Backend.received_payments`: Flash's wallet transactions matched by the memo tag of
`terminal.core.memo`, BTCPay's invoices by their metadata) and, for each:
- a sale the books hold as paid: nothing to do ("present");
- a sale the books hold but not as paid (cancelled or failed while the wallet paid anyway, or
  left open by a crash): settled as paid, with the state machine's own event (`paid` or
  `paid_late`), marked recovered ("settled");
- no sale with that payment hash or id: restored as a paid sale, marked recovered, in sats (the
  backend does not keep the fiat price), created at the payment's time ("restored");
- anything else is reported, never forced ("skipped"): another terminal's payment, a partial
  payment, a payment hash another sale holds, a sale the state machine cannot move to paid (an
  expired one, or an offline one the sync worker settles).
Running it twice restores nothing new: the second run finds every sale by its payment hash.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from terminal.core.memo import parse_memo_tag
from terminal.core.ports.backend import Backend, ReceivedPayment
from terminal.core.ports.books import RecoveryLedger
from terminal.core.records import SaleRecord, StateChange
from terminal.core.sale import IllegalTransition, SaleState

RESTORED, SETTLED, PRESENT, SKIPPED = "restored", "settled", "present", "skipped"
RECOVERED_EVENT = "recovered"
PARTIAL_STATUSES = frozenset({"PaidPartial"})  # BTCPay: less than the invoice arrived
MAX_MEMO = 639
WAITING_FOR_SYNC = frozenset({SaleState.QUEUED.value, SaleState.SUBMITTED.value})


@dataclass(frozen=True)
class RecoveryItem:
    outcome: str  # restored | settled | present | skipped
    payment_hash: str
    amount_msat: int
    settled_at: float
    sale_id: str | None = None
    state_before: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"sale_id": self.sale_id, "payment_hash": self.payment_hash,
                                  "amount_msat": self.amount_msat, "settled_at": self.settled_at}
        if self.state_before is not None:
            doc["state_before"] = self.state_before
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc


@dataclass
class RecoveryReport:
    since: float
    dry_run: bool
    payments: int = 0
    items: list[RecoveryItem] = field(default_factory=list)

    def of(self, outcome: str) -> list[RecoveryItem]:
        return [i for i in self.items if i.outcome == outcome]

    def to_json(self) -> dict[str, object]:
        return {
            "since": self.since,
            "dry_run": self.dry_run,
            "payments": self.payments,
            "restored": [i.to_json() for i in self.of(RESTORED)],
            "settled": [i.to_json() for i in self.of(SETTLED)],
            "present": len(self.of(PRESENT)),
            "skipped": [i.to_json() for i in self.of(SKIPPED)],
        }


def _clean(text: str | None, limit: int = MAX_MEMO) -> str:
    """Server text as the books may keep it: no control characters, bounded."""
    if not text:
        return ""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")[:limit]


class Recovery:
    def __init__(self, backend: Backend, ledger: RecoveryLedger, *, terminal_id: str,
                 clock: Callable[[], float]) -> None:
        self.backend = backend
        self.ledger = ledger
        self.terminal_id = terminal_id
        self.clock = clock

    async def run(self, since: float, *, dry_run: bool = False) -> RecoveryReport:
        """Restore what the books lack (see the module docstring). Backend errors propagate
        (`BackendError`); nothing is written before every payment has been looked at."""
        payments = await self.backend.received_payments(since)
        report = RecoveryReport(since=since, dry_run=dry_run, payments=len(payments))
        writes: list[SaleRecord] = []
        seen: set[str] = set()
        for payment in payments:
            item, record = self._decide(payment, seen)
            report.items.append(item)
            if record is not None:
                writes.append(record)
                seen.add(payment.payment_hash.lower())
        if writes and not dry_run:
            with self.ledger.transaction():  # all of them, or none
                for record in writes:
                    self.ledger.save_sale(record)
        return report

    def _sale_id(self, payment: ReceivedPayment) -> str | None:
        """The sale this terminal tagged the payment with (memo tag, else BTCPay metadata)."""
        tag = parse_memo_tag(payment.memo)
        if tag is not None:
            return tag.sale_id if tag.terminal_id == self.terminal_id else None
        if payment.metadata.get("terminalId") == self.terminal_id:
            return payment.metadata.get("saleId") or payment.metadata.get("orderId")
        return None

    def _decide(self, payment: ReceivedPayment,
                seen: set[str]) -> tuple[RecoveryItem, SaleRecord | None]:
        payment_hash = payment.payment_hash.lower()

        def item(outcome: str, sale_id: str | None = None, state: str | None = None,
                 reason: str | None = None) -> RecoveryItem:
            return RecoveryItem(outcome, payment_hash, payment.amount_msat, payment.settled_at,
                                sale_id, state, reason)

        sale_id = self._sale_id(payment)
        if sale_id is None:
            return item(SKIPPED, reason="not tagged by this terminal"), None
        if payment_hash in seen:
            return item(SKIPPED, sale_id, reason="listed twice by the backend"), None
        if payment.metadata.get("btcpayAdditionalStatus") in PARTIAL_STATUSES:
            return item(SKIPPED, sale_id, reason="partly paid: settle it with the customer"), None
        held = self.ledger.find_sale_by_payment_hash(payment_hash)
        if held is not None and held.id != sale_id:
            return item(SKIPPED, sale_id, reason=f"sale {held.id} holds this payment hash"), None
        existing = held or self.ledger.get_sale(sale_id)
        if existing is None:
            return item(RESTORED, sale_id), self._restored(sale_id, payment)
        if existing.state == SaleState.PAID.value:
            return item(PRESENT, sale_id, existing.state), None
        if existing.state in WAITING_FOR_SYNC:
            return item(SKIPPED, sale_id, existing.state,
                        "accepted offline: `flash-terminal sync` settles it with its payout"), None
        if existing.payment_hash and existing.payment_hash.lower() != payment_hash:
            return item(SKIPPED, sale_id, existing.state,
                        "the sale holds another invoice's payment hash"), None
        before = existing.state
        settled = self._settled(existing, payment)
        if settled is None:
            return item(SKIPPED, sale_id, before,
                        f"a {before} sale cannot become paid here"), None
        return item(SETTLED, sale_id, before), settled

    def _restored(self, sale_id: str, payment: ReceivedPayment) -> SaleRecord:
        at = payment.settled_at
        detail = f"restored from the payments {self.backend.name} holds"
        return SaleRecord(
            id=sale_id, created_at=at, amount_minor=payment.amount_msat // 1000, currency="SAT",
            state=SaleState.PAID.value, terminal_id=self.terminal_id, memo=_clean(payment.memo),
            amount_msat=payment.amount_msat, bolt11=payment.bolt11,
            payment_hash=payment.payment_hash.lower(),
            invoice_ref=_clean(payment.backend_ref, 200) or None,
            history=[StateChange(at, "created", "created", "created"),
                     StateChange(at, RECOVERED_EVENT, "created", "paid", detail)],
            synced=True, updated_at=self.clock(), invoice_final=True, recovered=True,
        )

    def _settled(self, record: SaleRecord, payment: ReceivedPayment) -> SaleRecord | None:
        machine = record.to_sale()
        detail = f"recovered: {self.backend.name} holds the payment"
        for event in ("paid", "paid_late"):
            try:
                machine.apply(event, payment.settled_at, detail)
            except IllegalTransition:
                continue
            break
        else:
            return None
        record.follow(machine)
        record.payment_hash = record.payment_hash or payment.payment_hash.lower()
        record.bolt11 = record.bolt11 or payment.bolt11
        record.amount_msat = record.amount_msat or payment.amount_msat
        record.recovered, record.invoice_final = True, True
        record.updated_at = self.clock()
        return record


__all__ = ["Recovery", "RecoveryItem", "RecoveryLedger", "RecoveryReport"]
