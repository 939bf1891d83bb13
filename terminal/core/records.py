"""Ledger records: what the terminal writes down about sales, queued payouts, cards and events.

Plain dataclasses that serialise to JSON-friendly dicts (`to_doc` / `from_doc`). The card's raw UID
never appears here: cards are known by their keyed card id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from terminal.core.ports.backend import Invoice
from terminal.core.sale import Sale, SaleState, Transition

CARD_ID_SHORT = 8  # how screens, receipts and reports name a card: its card id's first 8 chars


def short_card_id(card_id: str) -> str:
    return card_id[:CARD_ID_SHORT]


@dataclass
class StateChange:
    at: float
    event: str
    from_state: str
    to_state: str
    detail: str | None = None

    @classmethod
    def of(cls, t: Transition) -> StateChange:
        return cls(t.at, t.event, t.from_state.value, t.to_state.value, t.detail)


@dataclass
class SaleRecord:
    id: str
    created_at: float
    amount_minor: int  # in minor units of `currency` (whole sats for SAT), tip included
    currency: str
    state: str = SaleState.CREATED.value
    terminal_id: str | None = None
    memo: str = ""
    tip_minor: int = 0  # the tip within amount_minor
    tip_msat: int | None = None  # the tip's share of amount_msat, once the amount is priced
    method: str | None = None  # "card" | "qr"
    amount_msat: int | None = None
    rate_minor_per_sat: str | None = None  # Decimal as text
    rate_age_s: float | None = None
    bolt11: str | None = None
    payment_hash: str | None = None
    invoice_ref: str | None = None
    invoice_expires_at: float | None = None
    card_id: str | None = None
    issuer: str | None = None
    counter: int | None = None
    reason: str | None = None
    history: list[StateChange] = field(default_factory=list)
    receipt_printed: bool = False
    synced: bool = False
    updated_at: float | None = None
    # The backend has declared the invoice final (paid, or expired unpaid and no payment found):
    # a cancelled, failed or expired sale whose invoice is not final may still be paid late, so
    # the reconcile keeps asking (no time window); records older than the field are asked once.
    invoice_final: bool = False
    recovered: bool = False  # restored from the backend's payments (`flash-terminal recover`)
    cashier: str | None = None  # who rang it up (terminal.core.cashiers); None: nobody signed in
    # The card's balance after this payment (LUD-14 currentBalance less the amount), kept only
    # when the merchant opted in to show it ([ui] show_card_balance): the receipt prints it.
    card_balance_msat: int | None = None
    # Refunds of this sale (terminal.core.refunds): what has been paid back (SENT refunds), and
    # the ids of every refund tried, in order (the refunds themselves are in the books).
    refunded_msat: int = 0
    refund_ids: list[str] = field(default_factory=list)

    @property
    def is_final(self) -> bool:
        return SaleState(self.state).is_terminal

    def priced(self, amount_msat: int) -> None:
        """The sale's value in msat is known: the tip gets its proportional share."""
        self.amount_msat = amount_msat
        self.tip_msat = (amount_msat * self.tip_minor // self.amount_minor
                         if self.tip_minor and self.amount_minor else 0)

    def follow(self, sale: Sale) -> None:
        """Copy the state machine's state, reason and history into the record."""
        self.state = sale.state.value
        self.reason = sale.reason
        self.history = [StateChange.of(t) for t in sale.history]

    def invoice(self) -> Invoice | None:
        """The sale's invoice as the backends know it (None before one was created)."""
        if not self.bolt11:
            return None
        return Invoice(
            bolt11=self.bolt11,
            payment_hash=self.payment_hash or "",
            amount_msat=self.amount_msat or 0,
            expires_at=self.invoice_expires_at or 0.0,
            backend_ref=self.invoice_ref or self.bolt11,
        )

    def to_sale(self) -> Sale:
        sale = Sale(self.id, self.created_at, SaleState(self.state), self.reason)
        if not self.history:  # a new record: keep the sale's own "created" entry
            return sale
        sale.history = [
            Transition(h.at, h.event, SaleState(h.from_state), SaleState(h.to_state), h.detail)
            for h in self.history
        ]
        return sale

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SaleRecord:
        """The record of `doc`, sharing nothing mutable with it (the books hand over their
        live documents): its lists are copied, every other field is a scalar."""
        values = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        values["history"] = [StateChange(**h) for h in values.get("history", [])]
        if isinstance(values.get("refund_ids"), list):
            values["refund_ids"] = list(values["refund_ids"])
        return cls(**values)


class PayoutStatus:
    QUEUED = "queued"
    SUBMITTING = "submitting"  # the callback may have reached the issuer: outcome unknown
    PAID = "paid"
    FAILED = "failed"


@dataclass
class QueuedPayout:
    """An offline-accepted tap waiting to be executed against the card's issuer.

    Field names follow the seed's payout record (id, store id, amount sats, status, card id,
    created/completed, payment hash, error message, metadata). `tap_url` is a one-time p/c pair:
    it is submitted at most once and never resent once its outcome is unknown.
    """

    id: str
    sale_id: str
    store_id: str | None
    amount_sats: int
    card_id: str
    issuer: str
    counter: int
    tap_url: str = field(repr=False)
    status: str = PayoutStatus.QUEUED
    created_at: float = 0.0
    completed_at: float | None = None
    payment_hash: str | None = None
    error_message: str | None = None
    attempts: int = 0
    next_attempt_at: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> QueuedPayout:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


@dataclass
class CardState:
    card_id: str
    issuer: str | None = None
    last_counter: int = -1
    queued_msat: int = 0
    blocked: bool = False
    blocked_reason: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CardState:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


@dataclass
class TerminalEvent:
    at: float
    kind: str
    detail: str = ""

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
