"""Sandbox domain logic: the merchant's Flash account, its invoices, and the Boltcard issuer.

Everything here runs on the server's event loop thread (one writer, no locks); every change is
persisted before it is acknowledged, and invoice status changes are pushed to subscribers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

# the fast decoder (the `bolt11` package takes ~16 ms an invoice)
from terminal.protocols import bolt11
from terminal.protocols.bolt11 import Bolt11EncodeError

from .faults import Faults
from .issuer_keys import TapRejected, card_id_for, check_c, decrypt_p, derive_card_keys, k1_for
from .lightning import Rates, currency_for, mint_invoice
from .limits import FixedWindowLimiter, FlashLimits
from .store import (
    ApiKeyRecord,
    Card,
    CustomerWallet,
    InvoiceRecord,
    Keys,
    SendRecord,
    State,
    Store,
    TransactionRecord,
    WithdrawSession,
)

# API-key scopes as Flash names them (domain/api-keys/scope-map.ts); write:X implies read:X.
KNOWN_SCOPES = frozenset({"read:user", "write:user", "read:wallet", "write:wallet",
                          "read:transactions", "admin"})
# The sandbox's own key (keys.json): what a receiving terminal's key needs.
DEFAULT_KEY_SCOPES = ("read:user", "read:wallet", "write:wallet", "read:transactions")


def _key_id(key: str) -> str:
    parts = key.split("_")
    return parts[1] if len(parts) >= 3 else key[:12]


def has_scope(granted: list[str], required: str) -> bool:
    """Flash's hasApiKeyScope: admin grants all; write:X implies read:X."""
    if "admin" in granted or required in granted:
        return True
    if required.startswith("read:"):
        return f"write:{required[5:]}" in granted
    return False

MAX_EXPIRES_IN_MIN = 24 * 60
MIN_WITHDRAWABLE_MSAT = 1000
WITHDRAW_SESSION_TTL_S = 10 * 60
DEFAULT_DESCRIPTION = "Boltcard payment"
MEMO_MAX_BYTES = 639  # Flash's Memo scalar: "Memo is too long" above this many UTF-8 bytes
IBEX_ERROR_MESSAGE = "An error occurred. Contact support if error persists."
INVOICE_LIMIT_MESSAGE = "Too many invoices creation, please wait for a while and try again."
CARD_PAY_MIN_MSAT = 1000
CARD_PAY_MAX_MSAT = 10_000_000_000  # 10M sats: far above any test or training top-up
CARD_PAY_EXPIRY_S = 10 * 60
CUSTOMER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# lnInvoicePaymentSend's answers (lnflash/flash: ln-invoice-payment-send.ts, error-map.ts).
SEND_KEY_MAX = 256
SEND_KEY_INVALID = ("Invalid format for the provided ImpotencyKey. You must use a UUID-v4 "
                    "format")
SEND_KEY_REUSED = ("This idempotency key was already used for a different payment. Use a new "
                   "key for a new payment.")
SEND_PROVIDER_ERROR = "An unexpected error occurred. Please try again later."


class InvoiceStatus(enum.Enum):
    PENDING = "PENDING"
    PAID = "PAID"
    EXPIRED = "EXPIRED"


class SandboxError(Exception):
    """A request the sandbox refuses; `code` follows Flash's payload error codes (None: Flash
    sends that error without a code)."""

    def __init__(self, message: str, code: str | None = "INVALID_INPUT") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class IbexFailure(SandboxError):
    """The Lightning provider failed, or does not know the invoice (Flash's IBEX_ERROR)."""

    def __init__(self) -> None:
        super().__init__(IBEX_ERROR_MESSAGE, "IBEX_ERROR")


class WithdrawRefused(Exception):
    """An LNURL-withdraw callback refused; `reason` goes into {"status":"ERROR","reason":…}."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SandboxCore:
    def __init__(
        self,
        data_dir: Path,
        *,
        network: str,
        faults: Faults,
        rates: Rates,
        username: str,
        issuer_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
        limits: FlashLimits | None = None,
    ) -> None:
        currency_for(network)  # fail early on an unknown network
        self.network = network
        self.faults = faults
        self.rates = rates
        self.clock = clock
        self.limits = limits or FlashLimits()
        self.store = Store(data_dir)
        self.keys: Keys = self.store.load_keys(issuer_key)
        self.state: State = self.store.load_state(username)
        self.public_base = ""  # http://host:port, set once the socket is bound
        self._watchers: dict[str, set[asyncio.Queue[InvoiceStatus]]] = {}
        # Sends in flight (PENDING): payment hash -> (wallet id, cents debited, invoice).
        self.in_flight: dict[str, tuple[str, int, str]] = {}
        lim = self.limits
        # Flash counts the two creation mutations apart, each keyed by the recipient's account.
        self.invoice_limiters = {
            "self": FixedWindowLimiter(lim.invoice_points, lim.invoice_window_s,
                                       lim.invoice_block_s),
            "recipient": FixedWindowLimiter(lim.invoice_points, lim.invoice_window_s,
                                            lim.invoice_block_s),
        }
        self.key_limiters: dict[int, FixedWindowLimiter] = {}

    # --- limits ----------------------------------------------------------------------------------

    def reset_limits(self) -> None:
        """Forget what every limiter counted (as if long enough had passed)."""
        for limiter in [*self.invoice_limiters.values(), *self.key_limiters.values()]:
            limiter.reset()

    def consume_invoice_limit(self, kind: str) -> None:
        """One invoice creation against the account's limit; raises TOO_MANY_REQUEST."""
        if not self.limits.enforce:
            return
        if self.invoice_limiters[kind].consume(self.state.account.id, self.clock()) is not None:
            raise SandboxError(INVOICE_LIMIT_MESSAGE, "TOO_MANY_REQUEST")

    def consume_key_limit(self, key_id: str, per_minute: int | None) -> float | None:
        """One request with an API key; None when allowed, else seconds until it may retry."""
        if not self.limits.enforce:
            return None
        points = per_minute or self.limits.key_points
        limiter = self.key_limiters.get(points)
        if limiter is None:
            limiter = FixedWindowLimiter(points, self.limits.key_window_s)
            self.key_limiters[points] = limiter
        return limiter.consume(key_id, self.clock())

    def limit_state(self) -> dict[str, Any]:
        now = self.clock()
        account = self.state.account.id
        return {
            "enforced": self.limits.enforce,
            "invoices": {k: v.state(account, now) for k, v in self.invoice_limiters.items()},
            "invoice_blocks": sum(v.blocks for v in self.invoice_limiters.values()),
        }

    # --- API keys --------------------------------------------------------------------------------

    def create_api_key(self, scopes: list[str], rate_limit: int | None = None) -> str:
        """A new API key with exactly these scopes (`read:user`, `read:wallet`, `write:wallet`,
        `read:transactions`, …), as the merchant creates one in the Flash app."""
        unknown = set(scopes) - KNOWN_SCOPES
        if unknown:
            raise SandboxError(f"unknown scopes {sorted(unknown)}")
        key = Keys.new_api_key()
        self.state.api_keys[key] = ApiKeyRecord(key=key, scopes=list(scopes),
                                                rate_limit=rate_limit)
        self.save()
        return key

    def api_key_scopes(self, key: str) -> tuple[str, list[str], int | None] | None:
        """(key id, scopes, per-minute limit) of a key, or None for a key Flash does not know."""
        if secrets.compare_digest(key.encode(), self.keys.api_key.encode()):
            return _key_id(key), list(DEFAULT_KEY_SCOPES), None
        record = self.state.api_keys.get(key)
        if record is None:
            return None
        return _key_id(key), list(record.scopes), record.rate_limit

    # --- persistence and notifications -------------------------------------------------------

    def save(self) -> None:
        self.store.save_state(self.state)

    def watch(self, payment_hash: str) -> asyncio.Queue[InvoiceStatus]:
        queue: asyncio.Queue[InvoiceStatus] = asyncio.Queue()
        self._watchers.setdefault(payment_hash, set()).add(queue)
        return queue

    def unwatch(self, payment_hash: str, queue: asyncio.Queue[InvoiceStatus]) -> None:
        queues = self._watchers.get(payment_hash)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._watchers[payment_hash]

    def _notify(self, payment_hash: str, status: InvoiceStatus) -> None:
        for queue in self._watchers.get(payment_hash, ()):
            queue.put_nowait(status)

    # --- invoices ------------------------------------------------------------------------------

    def create_invoice(
        self,
        wallet_id: str,
        *,
        usd_cents: Decimal,
        memo: str | None = None,
        expires_in_min: int | None = None,
        limiter: str = "recipient",
    ) -> InvoiceRecord:
        """lnUsdInvoiceCreate[OnBehalfOfRecipient] after its input scalars passed, in Flash's
        order (add-invoice-for-wallet.ts): the wallet must be a USD wallet, the account's invoice
        limit is consumed, then IBEX creates the invoice (any failure there: IBEX_ERROR). IBEX
        caps a USD invoice's expiry at 60 s, whatever `expiresIn` asks."""
        wallet = self.state.account.wallet(wallet_id)
        if wallet is None:
            raise SandboxError(f"Wallet {wallet_id} not found", "NOT_FOUND")
        if expires_in_min is not None and not 1 <= expires_in_min <= MAX_EXPIRES_IN_MIN:
            raise SandboxError(f"expiresIn must be between 1 and {MAX_EXPIRES_IN_MIN} minutes")
        if wallet.currency not in ("USD", "USDT"):
            raise SandboxError("Unsupported operation for wallet's currency.")
        if self.faults.take("invoice_create_error_next"):
            raise SandboxError("Account is inactive.", "INVALID_INPUT")  # AccountValidator
        self.consume_invoice_limit(limiter)
        if self.faults.take("ibex_error_next"):
            raise IbexFailure()
        if not usd_cents.is_finite() or usd_cents <= 0:
            raise IbexFailure()  # IBEX refuses a zero or negative amount
        memo = memo or ""
        amount_msat = self.rates.msat_for_usd_cents(usd_cents)
        requested_s = (expires_in_min or 1) * 60
        expiry_s = max(1, math.ceil(min(requested_s, self.limits.usd_invoice_expiry_s)))
        now = self.clock()
        try:
            minted = mint_invoice(self.keys.node_key, self.network, amount_msat, memo, expiry_s,
                                  int(now))
        except Bolt11EncodeError:  # a BOLT11 description holds at most 639 bytes
            raise SandboxError("Memo is too long", None) from None
        record = InvoiceRecord(
            payment_hash=minted.payment_hash,
            payment_request=minted.payment_request,
            preimage=minted.preimage,
            payment_secret=minted.payment_secret,
            amount_msat=amount_msat,
            wallet_id=wallet.id,
            memo=memo,
            created_at=now,
            # The BOLT11's own expiry (whole seconds from its whole-second timestamp), unless the
            # limits are scaled below a second.
            expires_at=(int(now) + expiry_s if self.limits.usd_invoice_expiry_s >= 1
                        else now + self.limits.usd_invoice_expiry_s),
            usd_cents=str(usd_cents),
            satoshis=None,  # Flash answers null for USD invoices
        )
        self._purge(now)
        self.state.invoices[record.payment_hash] = record
        self.save()
        return record

    def _purge(self, now: float) -> None:
        """The provider forgets invoices some time after they expire, paid or not (their
        transactions stay): a status query then reads EXPIRED from the BOLT11 alone."""
        cutoff = now - self.limits.purge_after_s
        for payment_hash in [h for h, r in self.state.invoices.items() if r.expires_at < cutoff]:
            del self.state.invoices[payment_hash]

    def purge_now(self, record: InvoiceRecord) -> None:
        """Admin: the provider forgets this invoice at once (it must have expired)."""
        if self.clock() < record.expires_at:
            raise SandboxError("Only an expired invoice can be purged", "INVALID_INPUT")
        del self.state.invoices[record.payment_hash]
        self.save()

    def find_invoice(self, payment_request: str) -> InvoiceRecord | None:
        try:
            decoded = bolt11.decode(payment_request.strip())
        except bolt11.Bolt11Error:
            return None
        return self.state.invoices.get(decoded.payment_hash)

    def status(self, record: InvoiceRecord) -> InvoiceStatus:
        if record.paid_at is not None:
            return InvoiceStatus.PAID
        if self.clock() >= record.expires_at:
            return InvoiceStatus.EXPIRED
        return InvoiceStatus.PENDING

    def query_status(self, payment_request: str) -> InvoiceStatus:
        """`lnInvoicePaymentStatus` as Flash answers it (payment-status-checker.ts): the BOLT11
        must decode; the provider is asked for the invoice by hash; one it does not know (never
        issued here, or purged) reads EXPIRED once the BOLT11 has expired, and IBEX_ERROR
        before."""
        try:
            decoded = bolt11.decode(payment_request.strip())
        except bolt11.Bolt11Error:
            raise SandboxError("Unknown error occurred (code: LnInvoiceDecodeError)",
                               "DB_ERROR") from None
        if self.faults.take("ibex_error_next"):
            raise IbexFailure()
        record = self.state.invoices.get(decoded.payment_hash)
        if record is None:
            if self.clock() >= decoded.timestamp + decoded.expiry:
                return InvoiceStatus.EXPIRED
            raise IbexFailure()
        return self.status(record)

    def settle(self, record: InvoiceRecord, paid_by: str) -> None:
        """Mark paid, credit the merchant wallet, record the wallet transaction, persist, then
        tell subscribers (after the provider's webhook delay, if any)."""
        now = self.clock()
        record.paid_at = now
        record.paid_by = paid_by
        wallet = self.state.account.wallet(record.wallet_id)
        card = self.state.cards.get(record.card_id) if record.card_id else None
        customer = self.state.customers.get(record.customer) if record.customer else None
        if card is not None:  # a card's payLink invoice: the money goes onto the card
            card.balance_msat += record.amount_msat
        elif customer is not None:  # a Lightning Address invoice: onto the customer's wallet
            customer.balance_msat += record.amount_msat
        else:
            cents = Decimal(record.usd_cents) if record.usd_cents is not None else Decimal(0)
            if wallet is not None:
                wallet.balance += int(cents)
            self._record_transaction(record.wallet_id, 1, cents, record, now)
        self.save()
        delay = self.limits.paid_push_delay_s
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._notify, record.payment_hash,
                                                  InvoiceStatus.PAID)
        else:
            self._notify(record.payment_hash, InvoiceStatus.PAID)

    def _record_transaction(self, wallet_id: str, type_id: int, cents: Decimal,
                            record: InvoiceRecord, now: float,
                            status: str = "SUCCESS") -> TransactionRecord:
        tx = TransactionRecord(
            id=str(uuid.uuid4()),
            wallet_id=wallet_id,
            type_id=type_id,
            amount=str(cents / 100),  # IBEX reports USD amounts in dollars
            created_at=now,
            payment_hash=record.payment_hash,
            bolt11=record.payment_request,
            memo=record.memo,
            preimage=record.preimage,
            status=status,
        )
        self.state.transactions[tx.id] = tx
        return tx

    def _pending_send_row(self, wallet_id: str, payment_hash: str) -> TransactionRecord | None:
        return next((t for t in self.state.transactions.values()
                     if t.wallet_id == wallet_id and t.type_id == 2 and t.status == "PENDING"
                     and t.payment_hash == payment_hash), None)

    def wallet_transactions(self, wallet_ids: set[str]) -> list[TransactionRecord]:
        """A wallet's transactions, newest first (as IBEX sorts by settledAt)."""
        rows = [t for t in self.state.transactions.values() if t.wallet_id in wallet_ids]
        rows.sort(key=lambda t: t.created_at, reverse=True)
        return rows

    def transaction(self, transaction_id: str) -> TransactionRecord:
        if self.faults.take("ibex_error_next"):
            raise IbexFailure()
        tx = self.state.transactions.get(transaction_id)
        if tx is None:
            raise IbexFailure()  # IBEX answers 404; Flash maps it to its generic error
        return tx

    def expire_now(self, record: InvoiceRecord) -> None:
        """Admin: end an unpaid invoice's life at once (tests and training)."""
        if record.paid_at is not None:
            raise SandboxError("Invoice already paid", "ALREADY_PAID")
        record.expires_at = min(record.expires_at, self.clock())
        self.save()
        self._notify(record.payment_hash, InvoiceStatus.EXPIRED)

    def pay(self, payment_request: str, paid_by: str = "sandbox-pay") -> InvoiceStatus:
        """The phone-wallet stand-in. Returns PAID, or raises for unknown/expired/already paid."""
        record = self.find_invoice(payment_request)
        if record is None:
            raise SandboxError("Unknown invoice: not issued by this sandbox", "NOT_FOUND")
        status = self.status(record)
        if status is InvoiceStatus.PAID:
            raise SandboxError("Invoice already paid", "ALREADY_PAID")
        if status is InvoiceStatus.EXPIRED:
            raise SandboxError("Invoice expired", "EXPIRED")
        self.settle(record, paid_by)
        return InvoiceStatus.PAID

    def send(self, wallet_id: str, payment_request: str, idempotency_key: str | None) -> str:
        """lnInvoicePaymentSend as Flash answers it (ln-invoice-payment-send.ts wrapped in
        app/payments/idempotency.ts): a definitive status (SUCCESS, FAILURE, PENDING) is kept
        under (wallet, key) and answered again for the same invoice; the same key with another
        invoice is refused; an error (insufficient balance, a provider error, even one after the
        debit) is not kept, so the same key sent again runs again. Raises `SandboxError` for the
        payload's errors (the resolver answers them with status FAILURE)."""
        key = (idempotency_key or "").strip()
        if len(key) > SEND_KEY_MAX:
            raise SandboxError(SEND_KEY_INVALID, "INVALID_INPUT")
        scoped = f"{wallet_id}:{key}"
        if key:
            kept = self.state.sends.get(scoped) or self.state.sends.get(key)
            if kept is not None:
                if kept.fingerprint and kept.fingerprint != payment_request:
                    raise SandboxError(SEND_KEY_REUSED, "INVALID_INPUT")
                return kept.status
        status, payment_hash = self._execute_send(wallet_id, payment_request)
        if key:
            self.state.sends[scoped] = SendRecord(key, payment_hash, status, payment_request,
                                                  wallet_id, self.clock())
            self.save()
        return status

    def _execute_send(self, wallet_id: str, payment_request: str) -> tuple[str, str]:
        """One payment through the provider: (status, payment hash), or `SandboxError`."""
        wallet = self.state.account.wallet(wallet_id)
        if wallet is None:
            raise SandboxError(f"Wallet {wallet_id} not found", "NOT_FOUND")
        try:
            decoded = bolt11.decode(payment_request.strip())
        except bolt11.Bolt11Error:
            raise SandboxError(SEND_PROVIDER_ERROR, None) from None  # IBEX refuses it
        if decoded.currency != currency_for(self.network) or not decoded.amount_msat:
            raise SandboxError(SEND_PROVIDER_ERROR, None)
        own = self.state.invoices.get(decoded.payment_hash)
        if own is not None and self.status(own) is not InvoiceStatus.PENDING:
            # Paid already ("payment already prepared": CompletedInvoice) or expired: IBEX
            # refuses, and Flash answers its generic error.
            raise SandboxError(SEND_PROVIDER_ERROR, None)
        if own is None or self.faults.take("send_failure_next"):
            # Not an invoice of this sandbox's network of wallets: no route. IBEX reports the
            # payment FAILED (a definitive status, kept under the key); nothing is debited.
            return "FAILURE", decoded.payment_hash
        amount_msat = int(decoded.amount_msat)
        cost = math.ceil(Decimal(-(-amount_msat // 1000)) * self.rates.usd_cents_per_sat())
        if cost > wallet.balance:
            raise SandboxError(
                f"Payment failed - Insufficient balance. Balance: {wallet.balance} cents, "
                f"needed: {cost} cents", "INSUFFICIENT_BALANCE")
        wallet.balance -= cost
        if self.faults.take("send_pending_next"):
            self._hold_send(wallet.id, own, cost, payment_request)
            return "PENDING", decoded.payment_hash
        self._complete_send(wallet.id, own, cost, payment_request)
        if self.faults.take("send_error_after_debit_next"):
            raise SandboxError(SEND_PROVIDER_ERROR, None)  # paid, yet answered as an error
        return "SUCCESS", decoded.payment_hash

    def _complete_send(self, wallet_id: str, own: InvoiceRecord, cost: int,
                       payment_request: str) -> None:
        """The payment arrives: the send's transaction row, and the receiver credited."""
        now = self.clock()
        held = self._pending_send_row(wallet_id, own.payment_hash)
        if held is not None:  # the row listed while it was in flight now says SUCCESS
            held.status = "SUCCESS"
        else:
            self._record_transaction(wallet_id, 2, Decimal(cost),
                                     self._send_record(wallet_id, own, payment_request, now), now)
        self.settle(own, "send")

    @staticmethod
    def _send_record(wallet_id: str, own: InvoiceRecord, payment_request: str,
                     now: float) -> InvoiceRecord:
        return InvoiceRecord(payment_hash=own.payment_hash, payment_request=payment_request,
                             preimage="", payment_secret="", amount_msat=own.amount_msat,
                             wallet_id=wallet_id, memo=own.memo, created_at=now, expires_at=now)

    def _hold_send(self, wallet_id: str, own: InvoiceRecord, cost: int,
                   payment_request: str) -> None:
        """A payment in flight: settles (or fails, refunding the wallet) later. The wallet's
        transactions list it meanwhile, as Flash does, with status PENDING."""
        self.in_flight[own.payment_hash] = (wallet_id, cost, payment_request)
        now = self.clock()
        self._record_transaction(wallet_id, 2, Decimal(cost),
                                 self._send_record(wallet_id, own, payment_request, now), now,
                                 status="PENDING")
        self.save()
        delay = self.faults.send_pending_settle_s
        if delay is not None:
            asyncio.get_running_loop().call_later(
                delay, self.finish_pending, own.payment_hash, not self.faults.send_pending_fails)

    def finish_pending(self, payment_hash: str, success: bool = True) -> bool:
        """Settle (or fail) a payment in flight; False when there is none by that hash."""
        held = self.in_flight.pop(payment_hash, None)
        own = self.state.invoices.get(payment_hash)
        if held is None:
            return False
        wallet_id, cost, payment_request = held
        if success and own is not None and self.status(own) is InvoiceStatus.PENDING:
            self._complete_send(wallet_id, own, cost, payment_request)
        else:
            wallet = self.state.account.wallet(wallet_id)
            if wallet is not None:
                wallet.balance += cost  # the payment failed: the money comes back
            if own is not None and (row := self._pending_send_row(wallet_id, payment_hash)):
                row.status = "FAILURE"
            self.save()
        return True

    # --- customers' wallets behind Lightning Addresses (LUD-16) -------------------------------

    def customer_wallet(self, name: str) -> CustomerWallet:
        """The wallet behind `name@<this sandbox>`, made on first use."""
        name = name.lower()
        if not CUSTOMER_NAME.fullmatch(name):
            raise WithdrawRefused("Unknown user: an address name is a-z, 0-9, '-', '_' or '.'")
        wallet = self.state.customers.get(name)
        if wallet is None:
            wallet = CustomerWallet(name, 0, self.clock())
            self.state.customers[name] = wallet
            self.save()
        return wallet

    def address_metadata(self, name: str) -> str:
        authority = self.public_base.split("://", 1)[-1]
        return json.dumps([["text/plain", f"Pay to {name}"],
                           ["text/identifier", f"{name}@{authority}"]])

    def address_pay_request(self, name: str) -> dict[str, Any]:
        """GET /.well-known/lnurlp/<name>: the LUD-06 payRequest of a customer's address."""
        wallet = self.customer_wallet(name)
        return {
            "tag": "payRequest",
            "callback": f"{self.public_base}/lnurlp/wallet/{wallet.name}/callback",
            "minSendable": CARD_PAY_MIN_MSAT,
            "maxSendable": CARD_PAY_MAX_MSAT,
            "metadata": self.address_metadata(wallet.name),
            "commentAllowed": 0,
        }

    def address_invoice(self, name: str, amount_msat: int) -> dict[str, Any]:
        """The callback: an invoice committing to the address's metadata; paying it credits
        the customer's wallet."""
        wallet = self.customer_wallet(name)
        if not CARD_PAY_MIN_MSAT <= amount_msat <= CARD_PAY_MAX_MSAT:
            raise WithdrawRefused(f"Amount must be between {CARD_PAY_MIN_MSAT} and "
                                  f"{CARD_PAY_MAX_MSAT} msat")
        digest = hashlib.sha256(self.address_metadata(wallet.name).encode()).digest()
        record = self._pay_invoice(amount_msat, digest)
        record.customer = wallet.name
        self.save()
        return {"pr": record.payment_request, "routes": []}

    def _pay_invoice(self, amount_msat: int, description_hash: bytes) -> InvoiceRecord:
        now = int(self.clock())
        minted = mint_invoice(self.keys.node_key, self.network, amount_msat, "",
                              CARD_PAY_EXPIRY_S, now, description_hash=description_hash)
        record = InvoiceRecord(
            payment_hash=minted.payment_hash, payment_request=minted.payment_request,
            preimage=minted.preimage, payment_secret=minted.payment_secret,
            amount_msat=amount_msat, wallet_id="", memo="", created_at=now,
            expires_at=now + CARD_PAY_EXPIRY_S, satoshis=amount_msat // 1000,
        )
        self._purge(now)
        self.state.invoices[record.payment_hash] = record
        return record

    # --- Boltcard issuer ---------------------------------------------------------------------

    @property
    def lnurlw_base(self) -> str:
        return self.public_base.replace("http://", "lnurlw://", 1) + "/ln"

    def register_card(
        self,
        uid: bytes,
        balance_sats: int,
        *,
        pin: str | None = None,
        pin_limit_sats: int | None = None,
        per_tap_limit_sats: int | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Issue (or re-issue, with the next key version and a reset counter) a card."""
        if len(uid) != 7:
            raise SandboxError("UID must be 7 bytes")
        if balance_sats < 0:
            raise SandboxError("balance_sats must not be negative")
        if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise SandboxError("PIN must be 4 to 8 digits")
        card_id = card_id_for(self.keys.issuer_key, uid).hex()
        previous = self.state.cards.get(card_id)
        version = previous.version + 1 if previous else 1
        card = Card(
            card_id=card_id,
            uid=uid.hex(),
            version=version,
            balance_msat=balance_sats * 1000,
            enabled=enabled,
            per_tap_limit_msat=per_tap_limit_sats * 1000 if per_tap_limit_sats else None,
            pin=pin,
            pin_limit_msat=pin_limit_sats * 1000 if pin_limit_sats is not None else None,
        )
        self.state.cards[card_id] = card
        self.save()
        keys = derive_card_keys(self.keys.issuer_key, uid, version)
        return {
            "card_id": card_id,
            "uid": uid.hex(),
            "version": version,
            "k0": keys.k0.hex(),
            "k1": keys.k1.hex(),
            "k2": keys.k2.hex(),
            "k3": keys.k3.hex(),
            "k4": keys.k4.hex(),
            "lnurlw_base": self.lnurlw_base,
            "balance_msat": card.balance_msat,
        }

    def update_card(self, card_id: str, changes: dict[str, Any]) -> Card:
        card = self.state.cards.get(card_id)
        if card is None:
            raise SandboxError("Card not found", "NOT_FOUND")
        allowed = {"enabled", "balance_msat", "per_tap_limit_msat", "pin", "pin_limit_msat",
                   "counter"}
        unknown = set(changes) - allowed
        if unknown:
            raise SandboxError(f"cannot change {sorted(unknown)}")
        for key, value in changes.items():
            setattr(card, key, value)
        self.save()
        return card

    def withdraw_request(self, p: str, c: str) -> dict[str, Any]:
        """GET /ln?p=&c=: verify SUN, consume the counter (like the boltcard service), open k1."""
        picc = decrypt_p(k1_for(self.keys.issuer_key), p)
        card = self.state.cards.get(card_id_for(self.keys.issuer_key, picc.uid).hex())
        if card is None:
            raise TapRejected("Card not found")
        keys = derive_card_keys(self.keys.issuer_key, picc.uid, card.version)
        check_c(keys.k2, picc, c)
        if picc.counter <= card.counter:
            raise TapRejected("This link is already used: tap counter did not increase")
        card.counter = picc.counter
        if not card.enabled:
            self.save()
            raise TapRejected("Card is disabled")
        max_msat = card.balance_msat
        if card.per_tap_limit_msat is not None:
            max_msat = min(max_msat, card.per_tap_limit_msat)
        self._prune_withdrawals()
        session = WithdrawSession(
            k1=secrets.token_hex(16),
            card_id=card.card_id,
            created_at=self.clock(),
            min_msat=MIN_WITHDRAWABLE_MSAT,
            max_msat=max_msat,
        )
        self.state.withdrawals[session.k1] = session
        self.save()
        answer: dict[str, Any] = {
            "tag": "withdrawRequest",
            "callback": f"{self.public_base}/ln/callback",
            "k1": session.k1,
            "minWithdrawable": session.min_msat,
            "maxWithdrawable": (
                self.faults.advertise_max_withdrawable_msat
                if self.faults.advertise_max_withdrawable_msat is not None
                else max_msat
            ),
            "currentBalance": card.balance_msat,  # LUD-14
            "defaultDescription": DEFAULT_DESCRIPTION,
            "payLink": self.card_pay_link(card.card_id),  # LUD-19: pays back onto the card
        }
        if self.faults.withdraw_omit_pay_link:
            del answer["payLink"]
        if card.pin is not None and card.pin_limit_msat is not None:
            answer["pinLimit"] = card.pin_limit_msat
        return answer

    # --- the card's LNURL-pay (its LUD-19 payLink): top-ups and refunds onto the card ---------

    def card_pay_link(self, card_id: str) -> str:
        return self.public_base.replace("http://", "lnurlp://", 1) + f"/lnurlp/card/{card_id}"

    @staticmethod
    def card_pay_metadata(card_id: str) -> str:
        return json.dumps([["text/plain", f"Pay onto Boltcard {card_id[:8]}"]])

    def card_pay_request(self, card_id: str) -> dict[str, Any]:
        """LUD-06 payRequest for a card (what its payLink answers)."""
        if card_id not in self.state.cards:
            raise WithdrawRefused("Card not found")
        return {
            "tag": "payRequest",
            "callback": f"{self.public_base}/lnurlp/card/{card_id}/callback",
            "minSendable": CARD_PAY_MIN_MSAT,
            "maxSendable": CARD_PAY_MAX_MSAT,
            "metadata": self.card_pay_metadata(card_id),
        }

    def card_pay_invoice(self, card_id: str, amount_msat: int) -> dict[str, Any]:
        """LUD-06 callback: an invoice whose description hash commits to the metadata; paying
        it credits the card."""
        if card_id not in self.state.cards:
            raise WithdrawRefused("Card not found")
        if not CARD_PAY_MIN_MSAT <= amount_msat <= CARD_PAY_MAX_MSAT:
            raise WithdrawRefused(f"Amount must be between {CARD_PAY_MIN_MSAT} and "
                                  f"{CARD_PAY_MAX_MSAT} msat")
        digest = hashlib.sha256(self.card_pay_metadata(card_id).encode()).digest()
        record = self._pay_invoice(amount_msat, digest)
        record.card_id = card_id
        self.save()
        return {"pr": record.payment_request, "routes": []}

    def _prune_withdrawals(self) -> None:
        cutoff = self.clock() - WITHDRAW_SESSION_TTL_S
        for k1 in [k for k, s in self.state.withdrawals.items() if s.created_at < cutoff]:
            del self.state.withdrawals[k1]

    def withdraw_check(self, k1: str, pr: str, pin: str | None) -> tuple[Card, InvoiceRecord]:
        """GET /ln/callback: every check, in issuer order; consumes k1 at the first attempt."""
        session = self.state.withdrawals.get(k1)
        if session is None or self.clock() - session.created_at > WITHDRAW_SESSION_TTL_S:
            raise WithdrawRefused("Unknown or expired withdraw request: tap again")
        if session.used:
            raise WithdrawRefused("Withdraw request already used (k1 replayed): tap again")
        session.used = True
        self.save()
        if self.faults.take("decline_withdraw_next"):
            raise WithdrawRefused(self.faults.decline_reason)
        card = self.state.cards.get(session.card_id)
        if card is None:
            raise WithdrawRefused("Card not found")
        if not card.enabled:
            raise WithdrawRefused("Card is disabled")
        try:
            decoded = bolt11.decode(pr.strip())
        except bolt11.Bolt11Error:
            raise WithdrawRefused("Invalid payment request") from None
        if decoded.currency != currency_for(self.network):
            raise WithdrawRefused("Invoice is for another network")
        if not decoded.amount_msat:
            raise WithdrawRefused("Invoice must have an amount")
        amount = int(decoded.amount_msat)
        needs_pin = card.pin is not None and card.pin_limit_msat is not None
        if needs_pin and card.pin_limit_msat is not None and amount >= card.pin_limit_msat:
            if not pin:
                raise WithdrawRefused("PIN required for this amount")
            if not secrets.compare_digest(pin.encode(), (card.pin or "").encode()):
                raise WithdrawRefused("Wrong PIN")
        if amount < session.min_msat:
            raise WithdrawRefused(f"Amount below minimum of {session.min_msat} msat")
        if card.per_tap_limit_msat is not None and amount > card.per_tap_limit_msat:
            raise WithdrawRefused("Amount exceeds the card's per-payment limit")
        if amount > card.balance_msat:
            raise WithdrawRefused("Insufficient balance")
        record = self.state.invoices.get(decoded.payment_hash)
        if record is None:
            raise WithdrawRefused("Payment failed: no route to destination")
        status = self.status(record)
        if status is InvoiceStatus.PAID:
            raise WithdrawRefused("Invoice already paid")
        if status is InvoiceStatus.EXPIRED:
            raise WithdrawRefused("Invoice expired")
        return card, record

    def withdraw_pay(self, card: Card, record: InvoiceRecord) -> None:
        """Debit the card and settle the invoice (re-checked: a delayed payout may race)."""
        if record.paid_at is not None or card.balance_msat < record.amount_msat:
            return
        card.balance_msat -= record.amount_msat
        self.settle(record, f"boltcard:{card.card_id}")

    def card_state(self, card_id: str) -> dict[str, Any]:
        card = self.state.cards.get(card_id)
        if card is None:
            raise SandboxError("Card not found", "NOT_FOUND")
        return card.public()

    def invoice_state(self, record: InvoiceRecord) -> dict[str, Any]:
        data = dataclasses.asdict(record)
        data.pop("preimage")
        data.pop("payment_secret")
        data["status"] = self.status(record).value
        return data
