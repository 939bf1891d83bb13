"""A backend and an issuer whose every answer the test decides: for property tests of the sale
logic, where hypothesis explores sequences no real server would produce on demand (replayed
invoices, a payment pushed for a cancelled sale, EXPIRED for a paid invoice that was purged…).

Both implement the ports the terminal uses (`terminal.core.ports.backend.Backend`, and the two
calls checkout makes on `terminal.adapters.withdraw.WithdrawClient`), in process. The end-to-end
behaviour over real HTTP is tested against the sandbox and the loopback fakes; this is for
breadth.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from terminal.core.ports.backend import (
    BackendRejected,
    BackendUnavailable,
    DisplayRate,
    Health,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
    ReceivedPayment,
)
from terminal.protocols import lnurl


@dataclass
class ScriptedInvoice:
    invoice: Invoice
    status: InvoiceStatus = InvoiceStatus.PENDING
    paid: bool = False  # the money arrived (even if `status` says EXPIRED: a purged invoice)


@dataclass
class ScriptedBackend:
    clock: Callable[[], float] = time.time
    name: str = "scripted"
    invoices: dict[str, ScriptedInvoice] = field(default_factory=dict)
    replay_next: str | None = None  # the next creation answers this existing hash again
    status_down: bool = False  # status calls raise BackendUnavailable
    lookup: str = "supported"  # find_payment: supported | not_supported | down
    status_calls: int = 0
    lookups: int = 0

    def __post_init__(self) -> None:
        self._changed = asyncio.Event()

    # -- what the test does --------------------------------------------------------------
    def pay(self, payment_hash: str) -> None:
        entry = self.invoices[payment_hash]
        if entry.status is InvoiceStatus.PENDING:
            entry.status, entry.paid = InvoiceStatus.PAID, True
            self._wake()

    def expire(self, payment_hash: str) -> None:
        entry = self.invoices[payment_hash]
        if entry.status is InvoiceStatus.PENDING:
            entry.status = InvoiceStatus.EXPIRED
            self._wake()

    def purge(self, payment_hash: str) -> None:
        """The provider forgets the invoice: paid or not, its status now reads EXPIRED."""
        self.invoices[payment_hash].status = InvoiceStatus.EXPIRED
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the Backend port ----------------------------------------------------------------
    async def create_invoice(self, request: InvoiceRequest) -> Invoice:
        if self.replay_next is not None:
            replayed, self.replay_next = self.invoices[self.replay_next].invoice, None
            return replayed
        # Deterministic (hypothesis replays a run and must meet the same hashes).
        payment_hash = hashlib.sha256(f"scripted-{len(self.invoices)}".encode()).hexdigest()
        invoice = Invoice(
            bolt11=f"lnbcrt{request.amount_minor}n1scripted{payment_hash[:16]}",
            payment_hash=payment_hash,
            amount_msat=request.amount_minor * 1000,
            expires_at=self.clock() + request.expires_in_s,
            backend_ref=f"ref-{payment_hash[:16]}",
        )
        self.invoices[payment_hash] = ScriptedInvoice(invoice)
        return invoice

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus:
        self.status_calls += 1
        if self.status_down:
            raise BackendUnavailable("scripted: down")
        return self.invoices[invoice.payment_hash].status

    async def watch(self, invoice: Invoice) -> AsyncIterator[InvoiceStatus]:
        while True:
            changed = self._changed
            status = await self.invoice_status(invoice)
            yield status
            if status.is_final:
                return
            await changed.wait()

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        self.lookups += 1
        if self.lookup == "not_supported":
            raise BackendRejected("scripted: not supported", code="not_supported")
        if self.lookup == "down":
            raise BackendUnavailable("scripted: down")
        entry = self.invoices[invoice.payment_hash]
        if not entry.paid:
            return None
        return ReceivedPayment(invoice.payment_hash, invoice.amount_msat, self.clock(),
                               bolt11=invoice.bolt11)

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        raise BackendRejected("scripted: not supported", code="not_supported")

    async def display_rate(self, currency: str) -> DisplayRate:
        return DisplayRate(currency, Decimal(1), 0, self.clock())

    async def health(self) -> Health:
        return Health(True, "scripted")

    async def aclose(self) -> None:
        return None


@dataclass
class ScriptedIssuer:
    """`fetch_request` answers a withdrawRequest; `submit` does what `next_answer` says:
    ok | error (status ERROR) | unknown (no definite answer) | unreachable (never sent),
    and pays the invoice first when `pays` is set (an issuer paying while it says ERROR)."""

    backend: ScriptedBackend
    next_answer: str = "ok"
    pays: bool = True
    callbacks: int = 0
    sent: set[str] = field(default_factory=set)  # invoices whose callback reached the issuer

    async def fetch_request(self, url: str) -> lnurl.WithdrawRequest:
        return lnurl.WithdrawRequest(card_url=url, callback="https://issuer.example/cb",
                                     k1="k1", min_withdrawable_msat=1,
                                     max_withdrawable_msat=10**12)

    async def submit(self, request: lnurl.WithdrawRequest, bolt11: str, amount_msat: int,
                     pin: str | None = None) -> lnurl.CallbackAccepted:
        if self.next_answer == "unreachable":
            raise lnurl.IssuerUnreachable("scripted: not sent")
        self.callbacks += 1
        self.sent.add(bolt11)
        if self.pays:
            for payment_hash, entry in self.backend.invoices.items():
                if entry.invoice.bolt11 == bolt11:
                    self.backend.pay(payment_hash)
        if self.next_answer == "error":
            raise lnurl.InsufficientBalance("Payment failed - Insufficient balance.")
        if self.next_answer == "unknown":
            raise lnurl.CallbackOutcomeUnknown("scripted: no answer")
        return lnurl.CallbackAccepted()

    async def aclose(self) -> None:
        return None
