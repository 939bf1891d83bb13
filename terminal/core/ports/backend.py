"""The one interface every merchant backend implements (Flash GraphQL, BTCPay Greenfield).

The sale logic talks only to `Backend`; backends differ only in transport-level details.
Amounts are integers with their unit in the name: msat, sats, or minor units of a fiat currency.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable


class InvoiceStatus(enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    # Expired with only part of the amount paid (BTCPay `Expired` + `PaidPartial`): not paid,
    # but money arrived that the merchant must refund or settle by hand. Never shown as a plain
    # "expired". A later payment of the rest can still turn it PAID (BTCPay's `PaidLate`).
    UNDERPAID = "underpaid"

    @property
    def is_final(self) -> bool:
        return self is not InvoiceStatus.PENDING


@dataclass(frozen=True)
class InvoiceRequest:
    """What the terminal asks for. `amount_minor` is in minor units of `currency`
    (USD cents, JMD cents) or whole sats when `currency == "SAT"`."""

    amount_minor: int
    currency: str
    memo: str
    idempotency_key: str  # the sale id: creation is retried only with the same key
    expires_in_s: int = 300
    metadata: dict[str, str] = field(default_factory=dict)
    # Background work (the offline queue's drain): under a backend's rate limit it yields to
    # sales at the counter (it leaves part of every window free for them).
    background: bool = False


@dataclass(frozen=True)
class Invoice:
    bolt11: str
    payment_hash: str  # lower-case hex
    amount_msat: int
    expires_at: float  # unix seconds, from the BOLT11 itself
    backend_ref: str  # backend's own id (BTCPay invoice id; Flash: the payment request)


@dataclass(frozen=True)
class ReceivedPayment:
    """A payment the backend holds as received (the system of record), for `recover` and for
    settling an in-flight payout whose invoice the provider has purged.

    `memo` carries the terminal's tag (`terminal.core.memo`) on Flash; `metadata` carries
    BTCPay's invoice metadata (`orderId`, `saleId`, `terminalId`). Either names the sale.
    """

    payment_hash: str  # lower-case hex
    amount_msat: int
    settled_at: float  # unix seconds
    bolt11: str | None = None
    memo: str | None = None
    backend_ref: str | None = None  # BTCPay invoice id, Flash transaction id
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DisplayRate:
    """Price of one sat in minor units of `currency` (e.g. JMD cents per sat)."""

    currency: str
    minor_per_sat: Decimal
    fraction_digits: int
    timestamp: float  # when the backend priced it (unix seconds)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str
    latency_ms: float | None = None


class BackendError(Exception):
    """A backend call failed. `message` is safe to show a merchant (no secrets)."""

    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def reason(self, default: str) -> str:
        """The code as a ledger reason (`TOO_MANY_REQUESTS` → `too-many-requests`)."""
        return self.code.lower().replace("_", "-") if self.code else default


class BackendUnavailable(BackendError):
    """Network error, timeout, 5xx: the backend could not be reached or did not answer."""

    retryable = True


class BackendUnauthorized(BackendError):
    """The credential was refused (401/403, invalid API key, missing scope)."""


class BackendRateLimited(BackendError):
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class BackendRejected(BackendError):
    """The backend understood the request and refused it (payload errors, validation)."""


class BackendProtocolError(BackendError):
    """The backend answered something that is not what its API promises."""


@runtime_checkable
class Backend(Protocol):
    name: str

    async def create_invoice(self, request: InvoiceRequest) -> Invoice: ...

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus: ...

    def watch(self, invoice: Invoice) -> AsyncGenerator[InvoiceStatus, None]:
        """Yield status changes until a final one (PAID or EXPIRED), then stop."""
        ...

    async def display_rate(self, currency: str) -> DisplayRate: ...

    async def health(self) -> Health: ...

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        """Payments received since `since` (unix seconds) that carry this terminal's sale tag
        (memo or metadata), newest first. Needs Flash's read_transactions scope."""
        ...

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        """The received payment of one invoice, looked up in the wallet's transactions (not the
        invoice status, which a provider may have purged), or None when none arrived."""
        ...

    async def aclose(self) -> None: ...
