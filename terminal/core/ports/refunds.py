"""What refunds need from a merchant backend: send a payment from the merchant's wallet (Flash),
or issue the backend's own refund (BTCPay: a pull payment the customer claims), and read the
outcome back when the answer was unclear.

A backend that cannot send says so before anything is recorded (`send_problem`), with the way to
refund instead. Implemented by `terminal.adapters.backends.flash` (`InvoicePayer`) and
`terminal.adapters.backends.btcpay` (`PullPaymentRefunder`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class CannotSend(Exception):
    """This backend (or its credential) cannot pay refunds out. `message` says why, `advice`
    how to refund instead; `code` for the books and tests."""

    def __init__(self, code: str, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.advice = advice

    @property
    def text(self) -> str:
        return f"{self.message} {self.advice}".strip()


class SendStatus(enum.Enum):
    SENT = "sent"  # the backend reports it paid
    PENDING = "pending"  # in flight, or an answer that may come after the debit: look it up
    FAILED = "failed"  # definitely not paid (refused before any debit, or a final failure)


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    code: str | None = None  # why, as a short code (insufficient-balance, unclear, …)
    message: str = ""  # plain words, cleaned of control characters
    # True when the backend answered "already paid": paid, but perhaps not by this send (the
    # lookup tells).
    already_paid: bool = False


class Lookup(enum.Enum):
    SENT = "sent"  # the wallet's transactions hold this payment, settled
    NOT_FOUND = "not-found"  # they cover the invoice's whole life and hold no such payment
    UNKNOWN = "unknown"  # cannot tell (history too short, no read scope, backend down)


@dataclass(frozen=True)
class SentLookup:
    result: Lookup
    message: str = ""
    sent_at: float | None = None


@runtime_checkable
class InvoicePayer(Protocol):
    """Flash: `lnInvoicePaymentSend` from the merchant's wallet, keyed by an idempotency key."""

    def send_problem(self) -> CannotSend | None:
        """Why this backend cannot send at all (receive-only), or None."""
        ...

    async def pay_invoice(self, bolt11: str, *, idempotency_key: str, memo: str) -> SendResult:
        """Send once. Never retried inside: a PENDING (or unclear) result is resolved with
        `find_sent`, not by sending again."""
        ...

    async def find_sent(self, bolt11: str) -> SentLookup:
        """Whether the wallet's transactions hold a settled payment of this invoice."""
        ...


@dataclass(frozen=True)
class PullPaymentRefund:
    """BTCPay's refund of an invoice: a pull payment and the LNURL-withdraw that claims it."""

    pull_payment_id: str
    amount_msat: int
    claim_link: str  # bech32 LNURL (as a QR shows it), or "" when BTCPay gives none
    claim_uri: str = ""  # lnurlw://…
    auto_approved: bool = False
    name: str = ""


@dataclass(frozen=True)
class PullPaymentPayout:
    """One payout of a pull payment as BTCPay lists it (`GET /api/v1/pull-payments/{id}/payouts`
    with `includeCancelled=true`): its state as BTCPay names it (`AwaitingApproval`,
    `AwaitingPayment`, `InProgress`, `Completed`, `Cancelled`) and where it goes (cleaned text,
    compared, never logged)."""

    payout_id: str
    state: str
    destination: str = ""

    @property
    def cancelled(self) -> bool:
        return self.state == "Cancelled"


@runtime_checkable
class PullPaymentRefunder(Protocol):
    """BTCPay: `POST …/invoices/{id}/refund` (a pull payment), its `lnurl`, the list of the
    store's pull payments to find one whose creation answer was lost, and a payout of it to a
    destination the customer gives."""

    def send_problem(self) -> CannotSend | None: ...

    async def refund_invoice(self, invoice_ref: str, amount_msat: int, *, name: str,
                             description: str) -> PullPaymentRefund: ...

    async def find_refund(self, name: str) -> PullPaymentRefund | None: ...

    async def claim(self, pull_payment_id: str, destination: str, amount_msat: int) -> str:
        """Pay the pull payment out to a BOLT11, Lightning Address or LNURL-pay at once;
        returns the payout's state as BTCPay names it. Not idempotent on BTCPay's side: ask
        `payouts` first when an earlier claim may have been made."""
        ...

    async def payouts(self, pull_payment_id: str) -> list[PullPaymentPayout]:
        """Every payout of the pull payment, cancelled ones included."""
        ...
