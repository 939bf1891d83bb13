"""Payments the merchant's Flash wallet received: the system of record behind `recover` and the
check that settles an in-flight payout whose invoice the provider has purged.

How Flash serves it (lnflash/flash at 892346e, app/wallets/get-transactions-for-wallet.ts,
get-transaction-by-id.ts, graphql/connections.ts):
- `transactions(first: n)` lists at most the newest 100 rows of a wallet (`last` the oldest) and
  ignores cursors. Lightning rows have `memo: null` and an empty payment hash.
- `transactionDetails(transactionId)` has the memo, payment hash, invoice and time of one row. Its
  complexity allows one per request, and each request carries the API key (scope
  read_transactions), so lookups are paced by the key's budget and cached (settled rows do not
  change).

A payment belongs to this terminal when its memo carries the terminal's tag
(`terminal.core.memo`). Amount and payment hash are read from the BOLT11 itself and must agree
with what the row says.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from terminal.adapters.backends import flash_documents as docs
from terminal.adapters.backends import flash_errors
from terminal.adapters.backends.flash_graphql import FlashTransport
from terminal.adapters.backends.http import clean_text
from terminal.core.memo import parse_memo_tag
from terminal.core.ports.backend import (
    BackendProtocolError,
    BackendRejected,
    BackendUnauthorized,
    Invoice,
    ReceivedPayment,
)
from terminal.protocols.invoice import InvoiceCheckError, decode_invoice

log = logging.getLogger(__name__)

MAX_ROWS = 100  # Flash's DEFAULT_MAX_CONNECTION_LIMIT
DETAILS_CACHE = 512
# A payment settles between its invoice's creation and expiry; the row's time is the provider's
# clock, the invoice's the terminal's: allow for both clocks and for a late settlement.
CLOCK_SKEW_S = 300.0
LATE_SETTLEMENT_S = 600.0
MAX_BOLT11 = 4096
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Row:
    """One `transactions` row, as much as the list tells."""

    id: str
    created_at: float
    receive: bool
    lightning: bool
    settled: bool
    pending: bool = False  # Flash's TxStatus PENDING: a send still in flight

    @property
    def candidate(self) -> bool:
        return self.receive and self.lightning and self.settled

    @property
    def sent_candidate(self) -> bool:
        return not self.receive and self.lightning and (self.settled or self.pending)


@dataclass(frozen=True)
class Details:
    id: str
    payment_hash: str | None
    bolt11: str | None
    memo: str | None
    created_at: float | None


class LookupIncomplete(BackendRejected):
    """The wallet's history as Flash serves it (newest 100 rows) does not reach back far enough
    to answer: neither "paid" nor "not paid" can be said."""


class PaymentInFlight(BackendRejected):
    """The wallet lists a send of this invoice that is still PENDING: neither sent nor failed
    yet (a refund must then be neither recorded as failed nor sent again)."""


def parse_rows(data: dict[str, Any]) -> list[Row]:
    me = data.get("me")
    if me is None:
        raise BackendUnauthorized("Flash did not recognise the API key (no account).",
                                  code="no_account")
    connection = _dig(me, "defaultAccount", "transactions")
    if connection is None:
        return []
    edges = connection.get("edges") if isinstance(connection, dict) else None
    if edges is None:
        return []
    if not isinstance(edges, list):
        raise BackendProtocolError("Flash's transactions are not a list.", code="bad_rows")
    rows = []
    for edge in edges[: MAX_ROWS * 2]:
        node = edge.get("node") if isinstance(edge, dict) else None
        if not isinstance(node, dict):
            raise BackendProtocolError("Flash answered a transaction that is not an object.",
                                       code="bad_rows")
        row_id = node.get("id")
        created = node.get("createdAt")
        if not isinstance(row_id, str) or not 0 < len(row_id) <= 128:
            raise BackendProtocolError("Flash answered a transaction without an id.",
                                       code="bad_rows")
        if isinstance(created, bool) or not isinstance(created, int | float | Decimal):
            raise BackendProtocolError("Flash answered a transaction without a time.",
                                       code="bad_rows")
        via = node.get("initiationVia")
        typename = via.get("__typename") if isinstance(via, dict) else None
        rows.append(Row(
            id=row_id,
            created_at=float(created),
            receive=node.get("direction") == "RECEIVE",
            lightning=typename == "InitiationViaLn",
            settled=node.get("status") == "SUCCESS",
            pending=node.get("status") == "PENDING",
        ))
    return rows


def parse_details(data: dict[str, Any], transaction_id: str) -> Details:
    payload = data.get("transactionDetails")
    if not isinstance(payload, dict):
        raise BackendProtocolError("Flash answered transactionDetails without a payload.",
                                   code="bad_details")
    errors = payload.get("errors")
    if errors:
        parsed = flash_errors.parse_errors(errors, "TransactionDetails")
        # Flash maps any provider failure here to IBEX_ERROR's text, without a code: temporary.
        raise flash_errors.top_level_error(parsed, "TransactionDetails")
    raw = payload.get("transactionDetails")
    if not isinstance(raw, dict):
        raise BackendProtocolError("Flash answered transactionDetails without details.",
                                   code="bad_details")
    payment_hash = _text(raw.get("paymentHash"), 64)
    if payment_hash is not None and not _HEX64.fullmatch(payment_hash):
        payment_hash = None
    return Details(
        id=_text(raw.get("id"), 128) or transaction_id,
        payment_hash=payment_hash.lower() if payment_hash else None,
        bolt11=_text(raw.get("invoice"), MAX_BOLT11),
        memo=raw.get("memo") if isinstance(raw.get("memo"), str) else None,
        created_at=_iso_time(raw.get("createdAt")),
    )


def to_payment(row: Row, details: Details, network_prefix_check: Callable[[str], bool]
               ) -> ReceivedPayment | None:
    """The payment a row and its details describe, or None when they do not describe one the
    terminal can vouch for (no invoice, an invoice that does not decode or disagrees)."""
    if not details.bolt11:
        return None
    try:
        decoded = decode_invoice(details.bolt11)
    except InvoiceCheckError:
        log.warning("transaction %s: its invoice does not decode; skipped", clean_text(row.id))
        return None
    if details.payment_hash and decoded.payment_hash != details.payment_hash:
        log.warning("transaction %s: invoice and payment hash disagree; skipped",
                    clean_text(row.id))
        return None
    if not decoded.amount_msat or not network_prefix_check(details.bolt11):
        return None
    tag = parse_memo_tag(details.memo)
    metadata = {"saleId": tag.sale_id, "terminalId": tag.terminal_id} if tag else {}
    return ReceivedPayment(
        payment_hash=decoded.payment_hash,
        amount_msat=int(decoded.amount_msat),
        settled_at=row.created_at,
        bolt11=details.bolt11,
        memo=clean_text(details.memo, 700) if details.memo else None,
        backend_ref=row.id,
        metadata=metadata,
    )


class FlashHistory:
    """Received payments of the merchant's wallet, looked up through `transactionDetails`."""

    def __init__(
        self,
        transport: FlashTransport,
        wallet_id: Callable[[], Awaitable[str]],
        *,
        terminal_id: str | Callable[[], str] | None,
        network_check: Callable[[str], bool],
        can_read: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self._wallet_id = wallet_id
        self._terminal_id = terminal_id
        self._network_check = network_check
        self._can_read = can_read
        self._details: collections.OrderedDict[str, Details] = collections.OrderedDict()

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        rows = await self._rows()
        if len(rows) >= MAX_ROWS and min(r.created_at for r in rows) > since:
            log.warning("Flash lists only the newest %d transactions of a wallet: payments "
                        "older than %d rows cannot be looked up", MAX_ROWS, MAX_ROWS)
        payments = []
        for row in rows:
            if not row.candidate or row.created_at < since:
                continue
            payment = to_payment(row, await self._details_of(row), self._network_check)
            if payment is None or not payment.metadata:
                continue
            mine = self._terminal_id() if callable(self._terminal_id) else self._terminal_id
            if mine and payment.metadata.get("terminalId") != mine:
                continue
            payments.append(payment)
        payments.sort(key=lambda p: p.settled_at, reverse=True)
        return payments

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        """The payment of `invoice`, or None when the wallet's history covers the invoice's
        whole life and holds none; `LookupIncomplete` when it does not reach back that far."""
        return await self._find(invoice, sent=False)

    async def find_sent(self, invoice: Invoice) -> ReceivedPayment | None:
        """The wallet's settled payment OF `invoice` (a send: a refund), as `find_payment` finds
        a received one: None when the history covers the invoice's life and holds none."""
        return await self._find(invoice, sent=True)

    async def _find(self, invoice: Invoice, *, sent: bool) -> ReceivedPayment | None:
        try:
            decoded = decode_invoice(invoice.bolt11)
        except InvoiceCheckError as exc:
            raise BackendRejected(f"The invoice to look up does not decode: {exc.message}",
                                  code="bad_invoice") from None
        created = float(decoded.timestamp)
        earliest = created - CLOCK_SKEW_S
        latest = float(decoded.expires_at) + LATE_SETTLEMENT_S + CLOCK_SKEW_S
        rows = await self._rows()
        for row in rows:
            wanted = row.sent_candidate if sent else row.candidate
            if not wanted or not earliest <= row.created_at <= latest:
                continue
            details = await self._details_of(row)
            if details.payment_hash not in (None, invoice.payment_hash):
                continue
            if row.pending:
                if details.payment_hash == invoice.payment_hash:
                    raise PaymentInFlight(
                        "The wallet lists this payment as still in flight (PENDING): it is "
                        "neither sent nor failed yet.", code="payment_pending")
                continue
            payment = to_payment(row, details, self._network_check)
            if payment is not None and payment.payment_hash == invoice.payment_hash:
                return payment
        if len(rows) >= MAX_ROWS and min(r.created_at for r in rows) > earliest:
            raise LookupIncomplete(
                "Flash lists only the newest 100 transactions of a wallet, and they do not reach "
                "back to this invoice: whether it was paid cannot be told from here.",
                code="lookup_incomplete")
        return None

    async def _rows(self) -> list[Row]:
        if not self._can_read():
            raise BackendUnauthorized(
                "Looking up received payments needs a Flash API key with the read_transactions "
                "scope; this terminal is receive-only.", code="needs_api_key")
        wallet_id = await self._wallet_id()
        data = await self._transport.read(
            docs.RECENT_TRANSACTIONS, {"first": MAX_ROWS, "walletIds": [wallet_id]},
            "RecentTransactions", keyed=True, background=True)
        return parse_rows(data)

    async def _details_of(self, row: Row) -> Details:
        cached = self._details.get(row.id)
        if cached is not None:
            self._details.move_to_end(row.id)
            return cached
        data = await self._transport.read(
            docs.TRANSACTION_DETAILS, {"input": {"transactionId": row.id}}, "TransactionDetails",
            keyed=True, background=True)
        details = parse_details(data, row.id)
        self._details[row.id] = details
        while len(self._details) > DETAILS_CACHE:
            self._details.popitem(last=False)
        return details


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise BackendProtocolError(f"Flash answered {key}'s parent with a non-object.",
                                       code="bad_rows")
        value = value.get(key)
    return value


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value or len(value) > limit:
        return None
    return value


def _iso_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None
