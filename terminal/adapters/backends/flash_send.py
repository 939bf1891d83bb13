"""Payments out of the merchant's Flash wallet (refunds): `lnInvoicePaymentSend` with an
idempotency key, and the wallet's transactions to read an unclear outcome.

How Flash answers (lnflash/flash at 892346e: graphql/public/root/mutation/
ln-invoice-payment-send.ts, app/payments/idempotency.ts, services/ibex/payment-status.ts,
graphql/error-map.ts):
- `status` SUCCESS, FAILURE, PENDING (IBEX still routing, or a response Flash could not read),
  ALREADY_PAID; null with `errors` when an input scalar refused the request before anything ran.
- A definitive status is kept under (wallet, key) for 24 h and answered again for the same
  invoice (a PENDING is kept too: repeating the key never shows the final outcome). The same key
  with another invoice: "This idempotency key was already used for a different payment"
  (INVALID_INPUT). A key over 256 characters is refused (INVALID_INPUT).
- Errors are not kept: INSUFFICIENT_BALANCE (refused before any debit); and IBEX's generic
  failure ("An unexpected error occurred. Please try again later.", status FAILURE, no code),
  which IBEX may answer after it debited — the same key sent again can pay twice. A concurrent
  request with the same key gets a lock error (UNEXPECTED_CLIENT_ERROR).

So: a send goes out once. SUCCESS is sent; FAILURE without an error, INSUFFICIENT_BALANCE,
INVALID_INPUT and refusals before the resolver (scope, credential) are definite failures (nothing
left the wallet); PENDING, the generic error, a lock error, a lost answer (a gateway 5xx, a
timeout after the request left) are PENDING for the caller, who reads the wallet's transactions
(`find_sent`) and never sends again. A request that never left (`not_sent`) is a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from terminal.adapters.backends import flash_documents as docs
from terminal.adapters.backends import flash_errors
from terminal.adapters.backends.flash_graphql import FlashTransport
from terminal.adapters.backends.flash_history import FlashHistory, LookupIncomplete
from terminal.adapters.backends.http import clean_text
from terminal.core.memo import MAX_MEMO_BYTES
from terminal.core.ports.backend import (
    BackendError,
    BackendRateLimited,
    BackendUnauthorized,
    BackendUnavailable,
    Invoice,
)
from terminal.core.ports.refunds import (
    CannotSend,
    Lookup,
    SendResult,
    SendStatus,
    SentLookup,
)
from terminal.protocols.invoice import InvoiceCheckError, decode_invoice

log = logging.getLogger(__name__)

OPERATION = "LnInvoicePaymentSend"
FIELD = "lnInvoicePaymentSend"
MAX_KEY = 256
CODE_INSUFFICIENT = "INSUFFICIENT_BALANCE"
# Refused before the payment ran: nothing left the wallet.
DEFINITE_CODES = frozenset({CODE_INSUFFICIENT, "INVALID_INPUT", "NOT_FOUND", "NOT_AUTHORIZED",
                            "NOT_AUTHENTICATED", "CANT_PAY_SELF", "INVALID_COUNTRY"})

RECEIVE_ONLY_ADVICE = (
    "Refund from the merchant's Flash app (pay the customer's invoice or address there), or "
    "configure this terminal with a Flash API key that has the write_wallet and "
    "read_transactions scopes.")


def receive_only() -> CannotSend:
    return CannotSend(
        "receive-only",
        "This terminal is receive-only (a Flash username, no API key): it cannot send money "
        "out of the merchant's wallet.", RECEIVE_ONLY_ADVICE)


class FlashSender:
    """`InvoicePayer` for a Flash backend (built by `FlashBackend`, sharing its transport)."""

    def __init__(
        self,
        transport: FlashTransport,
        wallet_id: Callable[[], Awaitable[str]],
        history: FlashHistory,
        *,
        can_send: Callable[[], bool],
    ) -> None:
        self._gql = transport
        self._wallet_id = wallet_id
        self._history = history
        self._can_send = can_send

    def send_problem(self) -> CannotSend | None:
        return None if self._can_send() else receive_only()

    async def pay_invoice(self, bolt11: str, *, idempotency_key: str, memo: str) -> SendResult:
        problem = self.send_problem()
        if problem is not None:
            return SendResult(SendStatus.FAILED, problem.code, problem.text)
        if not 0 < len(idempotency_key.strip()) <= MAX_KEY:
            raise ValueError(f"an idempotency key is 1 to {MAX_KEY} characters")
        memo = memo.encode()[:MAX_MEMO_BYTES].decode("utf-8", "ignore")
        try:
            wallet_id = await self._wallet_id()
        except BackendError as exc:  # before any send: nothing left the wallet
            return _failed(exc)
        variables = {"input": {"walletId": wallet_id, "paymentRequest": bolt11, "memo": memo,
                               "idempotencyKey": idempotency_key}}
        try:
            answer = await self._gql.exchange(docs.LN_INVOICE_PAYMENT_SEND, variables, OPERATION,
                                              keyed=True, mutation=True)
        except BackendUnavailable as exc:
            if exc.code == "not_sent":
                return SendResult(SendStatus.FAILED, "not-sent",
                                  f"Flash could not be reached: nothing was sent. {exc.message}")
            return _unclear("answer-lost", exc.message)
        except BackendRateLimited as exc:  # refused before GraphQL ran
            return SendResult(SendStatus.FAILED, "rate-limited",
                              f"{exc.message} Nothing was sent.")
        except BackendError as exc:  # a credential refused at the gateway, or a bad answer
            if isinstance(exc, BackendUnauthorized):
                return _failed(exc)
            return _unclear(exc.code or "bad-answer", exc.message)
        return self._interpret(answer.data, answer.errors)

    def _interpret(self, data: dict[str, Any] | None,
                   top: list[flash_errors.FlashError]) -> SendResult:
        if top:
            error = flash_errors.top_level_error(top, OPERATION)
            if isinstance(error, BackendUnauthorized | BackendRateLimited):
                return _failed(error)  # refused before the resolver ran
            return _unclear(error.code or "flash-error", error.message)
        payload = data.get(FIELD) if isinstance(data, dict) else None
        if not isinstance(payload, dict):
            return _unclear("no-payload", "Flash answered the send without its payload.")
        try:
            errors = flash_errors.parse_errors(payload.get("errors"), OPERATION)
        except BackendError as exc:
            return _unclear("bad-answer", exc.message)
        status = payload.get("status")
        first = errors[0] if errors else None
        if status is None:
            if first is not None:  # an input scalar refused it: nothing ran
                return SendResult(SendStatus.FAILED, "invalid-input",
                                  f"Flash refused the refund: {first.message}")
            return _unclear("no-status", "Flash answered the send without a status.")
        if status == "SUCCESS":
            return SendResult(SendStatus.SENT, None, "Sent.")
        if status == "ALREADY_PAID":
            return SendResult(SendStatus.SENT, "already-paid",
                              "Flash says this invoice was already paid.", already_paid=True)
        if status == "PENDING":
            return SendResult(SendStatus.PENDING, "pending",
                              "Flash is still routing the payment.")
        if status != "FAILURE":
            return _unclear("bad-status", f"Flash answered an unknown status "
                            f"{clean_text(str(status), 20)!r}.")
        if first is None:  # IBEX reported the payment failed: final, nothing paid
            return SendResult(SendStatus.FAILED, "payment-failed",
                              "The payment failed (no route to the customer's wallet). Nothing "
                              "was sent.")
        if first.code == CODE_INSUFFICIENT:
            return SendResult(SendStatus.FAILED, "insufficient-balance",
                              "The merchant's Flash wallet does not hold enough for this refund."
                              " Nothing was sent.")
        if first.code in DEFINITE_CODES:
            return SendResult(SendStatus.FAILED, (first.code or "").lower().replace("_", "-"),
                              f"Flash refused the refund: {first.message} Nothing was sent.")
        # IBEX's generic error (no code), a lock on the key, anything else: it may have paid.
        return _unclear((first.code or "provider-error").lower().replace("_", "-"),
                        first.message)

    async def find_sent(self, bolt11: str) -> SentLookup:
        """The wallet's transactions (newest 100 rows, each one's details): a settled send of
        this invoice is SENT; none while the history covers the invoice's life is NOT_FOUND."""
        try:
            decoded = decode_invoice(bolt11)
        except InvoiceCheckError as exc:
            return SentLookup(Lookup.UNKNOWN, f"the invoice does not decode: {exc.message}")
        invoice = Invoice(bolt11=bolt11, payment_hash=decoded.payment_hash,
                          amount_msat=decoded.amount_msat or 0,
                          expires_at=float(decoded.expires_at), backend_ref=bolt11)
        try:
            found = await self._history.find_sent(invoice)
        except LookupIncomplete as exc:
            return SentLookup(Lookup.UNKNOWN, exc.message)
        except BackendError as exc:
            return SentLookup(Lookup.UNKNOWN, exc.message)
        if found is None:
            return SentLookup(Lookup.NOT_FOUND, "The wallet's transactions hold no such payment.")
        return SentLookup(Lookup.SENT, "Found in the wallet's transactions.", found.settled_at)


def _failed(exc: BackendError) -> SendResult:
    code = exc.code or "refused"
    if code.startswith("missing_scope:"):
        scope = code.split(":", 1)[1]
        return SendResult(SendStatus.FAILED, "cannot-send",
                          f"The Flash API key cannot send money (it lacks the {scope} scope): "
                          f"nothing was sent. {RECEIVE_ONLY_ADVICE}")
    return SendResult(SendStatus.FAILED, code.lower().replace("_", "-"),
                      f"{exc.message} Nothing was sent.")


def _unclear(code: str, message: str) -> SendResult:
    log.warning("refund send: unclear answer (%s): %s", code, message)
    return SendResult(SendStatus.PENDING, "unclear",
                      f"Flash's answer does not say whether the refund was paid ({message}). "
                      "Checking the wallet's transactions; it is not sent again.")
