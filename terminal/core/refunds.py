"""Refunds (core, no I/O): the refund record, its state machine, and how much of a sale is left.

A refund pays money back to the customer out of the merchant's wallet, all or part of one paid
sale. It is written down before anything leaves (write-ahead), like a sale, and moves through an
explicit table:

    CREATED ─prepared→ PREPARED ─send→ SENDING ─sent→ SENT
                                          ├─pending→ PENDING ─sent→ SENT
                                          │                 └─fail→ FAILED
                                          └─fail→ FAILED
    CREATED / PREPARED ─fail→ FAILED       (nothing was sent: the destination refused, or a
                                            restart found the refund before its send)
    CREATED ─send→ SENDING                 (BTCPay: no invoice to fetch; the refund is a pull
                                            payment the customer claims by scanning its QR)

- CREATED: recorded; the destination (the card's payLink, an address, an LNURL-pay, a BOLT11)
  is being resolved into an invoice.
- PREPARED: the invoice is fetched and checked (amount, description hash, network, expiry).
- SENDING: written just before the send goes to the backend. After a crash a refund found here
  may or may not have been paid: it is resolved by the payment's status (the wallet's
  transactions), never sent again.
- PENDING: the backend took the send but its outcome is not known yet (Flash answered PENDING,
  or an error that may come after the debit): resolved the same way.
- SENT / FAILED: final. A failed refund sent nothing; the merchant may refund again.

The money rule: what is refunded (SENT) plus what may still be on its way (CREATED, PREPARED,
SENDING, PENDING) never exceeds what the sale took. `room()` says what is left.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from terminal.core.records import SaleRecord, StateChange
from terminal.core.sale import SaleState


class RefundState(enum.Enum):
    CREATED = "created"
    PREPARED = "prepared"
    SENDING = "sending"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RefundState.SENT, RefundState.FAILED)

    @property
    def holds_money(self) -> bool:
        """Counts against what is left to refund (sent, or possibly on its way)."""
        return self is not RefundState.FAILED


R = RefundState
TRANSITIONS: dict[str, dict[RefundState, RefundState]] = {
    "prepared": {R.CREATED: R.PREPARED},
    "send": {R.PREPARED: R.SENDING, R.CREATED: R.SENDING},
    "sent": {R.SENDING: R.SENT, R.PENDING: R.SENT},
    "pending": {R.SENDING: R.PENDING, R.PENDING: R.PENDING},
    "fail": {R.CREATED: R.FAILED, R.PREPARED: R.FAILED, R.SENDING: R.FAILED,
             R.PENDING: R.FAILED},
}
# States a restart finds with nothing sent: they are ended, not resolved.
NOTHING_SENT = frozenset({R.CREATED, R.PREPARED})
# States whose outcome only the backend can tell.
UNRESOLVED = frozenset({R.SENDING, R.PENDING})


class IllegalRefundTransition(Exception):
    def __init__(self, event: str, state: RefundState) -> None:
        super().__init__(f"refund event {event!r} is not allowed in state {state.value!r}")
        self.event = event
        self.state = state


class Destination(enum.Enum):
    CARD = "card"  # the card that paid: its LUD-19 payLink
    ADDRESS = "address"  # a Lightning Address (LUD-16)
    LNURL = "lnurl"  # an LNURL-pay (LUD-06, LUD-17 lnurlp://)
    BOLT11 = "bolt11"  # an invoice the customer shows
    PULL_PAYMENT = "pull-payment"  # BTCPay: a claim link the customer scans (LNURL-withdraw)


class Rail(enum.Enum):
    FLASH_SEND = "flash-send"  # lnInvoicePaymentSend from the merchant's Flash wallet
    BTCPAY_PULL_PAYMENT = "btcpay-pull-payment"  # BTCPay's invoice refund


@dataclass
class RefundRecord:
    id: str  # also the send's idempotency key
    sale_id: str
    created_at: float
    amount_msat: int
    destination: str  # Destination value
    rail: str  # Rail value
    state: str = RefundState.CREATED.value
    target: str = ""  # what the screen and slip name: "card 1a2b3c4d", "ana@example.com", …
    card_id: str | None = None
    currency: str | None = None  # what the merchant keyed (for the slip), when not the msat
    amount_minor: int | None = None
    bolt11: str | None = None
    payment_hash: str | None = None
    invoice_expires_at: float | None = None
    backend_ref: str | None = None  # BTCPay: the pull payment's id
    claim_link: str | None = None  # BTCPay: the LNURL-withdraw the customer scans
    # BTCPay: where the pull payment is paid out (a BOLT11, a Lightning Address, an LNURL-pay
    # as bech32), written with the SENDING record so a refund found again after a lost answer
    # or a restart is still paid there. Not a secret, but never logged (say its kind only).
    claim_destination: str | None = None
    cashier: str | None = None
    terminal_id: str | None = None
    reason: str | None = None  # a code (ledger, exports); `message` is the words
    message: str = ""
    sent_at: float | None = None
    updated_at: float | None = None
    receipt_printed: bool = False
    history: list[StateChange] = field(default_factory=list)

    @property
    def refund_state(self) -> RefundState:
        return RefundState(self.state)

    @property
    def is_final(self) -> bool:
        return self.refund_state.is_final

    def apply(self, event: str, at: float, detail: str | None = None) -> None:
        """Move by the table; records the change. Raises `IllegalRefundTransition`."""
        current = self.refund_state
        target = TRANSITIONS.get(event, {}).get(current)
        if target is None:
            raise IllegalRefundTransition(event, current)
        self.history.append(StateChange(at, event, current.value, target.value, detail))
        self.state = target.value
        self.updated_at = at
        if target is RefundState.SENT:
            self.sent_at = at
            self.reason = None
        elif target in (RefundState.FAILED, RefundState.PENDING) and detail:
            self.reason = detail

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RefundRecord:
        values = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        values["history"] = [StateChange(**h) for h in values.get("history", [])]
        return cls(**values)


# ------------------------------------------------------------------------- what is left


class NotRefundable(Exception):
    """This sale cannot be refunded (now); `code` for the books and tests, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Room:
    """What one sale can still give back, in msat."""

    paid_msat: int
    refunded_msat: int  # SENT
    reserved_msat: int  # CREATED, PREPARED, SENDING, PENDING: maybe on its way
    refunds: int  # how many refunds hold money (sent or on their way)

    @property
    def left_msat(self) -> int:
        return max(0, self.paid_msat - self.refunded_msat - self.reserved_msat)

    @property
    def fully_refunded(self) -> bool:
        return self.refunded_msat >= self.paid_msat > 0


def room(sale: SaleRecord, refunds: Iterable[RefundRecord]) -> Room:
    """What is left to refund of `sale` given its refunds (those of other sales are ignored)."""
    paid = (sale.amount_msat or 0) if sale.state == SaleState.PAID.value else 0
    refunded = reserved = count = 0
    for refund in refunds:
        if refund.sale_id != sale.id:
            continue
        state = refund.refund_state
        if state is RefundState.SENT:
            refunded += refund.amount_msat
        elif state.holds_money:
            reserved += refund.amount_msat
        else:
            continue
        count += 1
    return Room(paid, refunded, reserved, count)


def refundable(sale: SaleRecord) -> None:
    """Raise `NotRefundable` unless the money of `sale` is in the merchant's wallet."""
    state = sale.state
    if state in (SaleState.QUEUED.value, SaleState.SUBMITTED.value):
        raise NotRefundable(
            "not-settled", "This sale was accepted offline and is not settled yet: refund it "
            "once it is paid.")
    if state != SaleState.PAID.value:
        raise NotRefundable(
            "not-paid", f"This sale was not paid ({state}): there is nothing to refund.")
    if not sale.amount_msat:
        raise NotRefundable("no-amount", "This sale has no amount in sats to refund.")


def proportional_msat(sale: SaleRecord, minor: int) -> int | None:
    """`minor` units of the sale's own currency as msat at the rate the sale was made at (a
    refund of half the price gives back half the sats). None when the sale says no rate."""
    if not sale.amount_msat or sale.amount_minor <= 0:
        return None
    return minor * sale.amount_msat // sale.amount_minor


def sent_refunds_msat(refunds: Iterable[RefundRecord]) -> int:
    return sum(r.amount_msat for r in refunds if r.refund_state is RefundState.SENT)


__all__ = [
    "NOTHING_SENT", "UNRESOLVED", "Destination", "IllegalRefundTransition", "NotRefundable",
    "Rail", "RefundRecord", "RefundState", "Room", "proportional_msat", "refundable", "room",
    "sent_refunds_msat",
]
