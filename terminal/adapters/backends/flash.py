"""Flash (a Galoy fork) as a merchant backend: GraphQL over HTTP, status pushed over WebSocket.

Modes, chosen by which credential is configured:
- receive-only (no secret, `username`): `accountDefaultWallet` finds the merchant's USD wallet
  and invoices are created *on behalf of* it. Nothing on the terminal can spend.
- API key (`X-API-KEY: fk_…`): `me` lists the key owner's wallets. Scopes: read_user (for `me`;
  write scopes do not imply it), write_wallet (invoices; implies read_wallet), read_transactions
  (recovery, and the check that settles a payout whose invoice Flash purged).
- session token (`Authorization: Bearer …`): like the API key.

Refunds (`pay_invoice`, `find_sent`; `flash_send`): `lnInvoicePaymentSend` from the merchant's
wallet with an idempotency key, outcomes read back from the wallet's transactions. Receive-only
mode cannot send (`send_problem`); a key without write_wallet is refused by Flash before anything
is paid.

Flash does not support BTC wallets ("Flash does not support BTC wallets." from both BTC invoice
mutations): invoices are USD-denominated, amount in US cents with fractions (FractionalCentAmount,
sent exactly, not rounded to whole cents). SAT sales convert at `realtimePrice(USD).btcSatPrice`,
other fiat at `realtimePrice(<cur>).usdCentPrice`, through `terminal.core.money`. Flash prices the
BOLT11 itself: the msat amount and the expiry are read from the BOLT11 (USD invoices expire after
60 s whatever `expiresIn` asks; `satoshis` is null) and the amount is checked for plausibility.

Status needs no credential: `watch()` subscribes anonymously over graphql-transport-ws (`flash_ws`;
API keys are not accepted there) and polls `lnInvoicePaymentStatus` without the key (every keyed
request counts against the key's 120 a minute), batched (`flash_status`). The subscription pushes
EXPIRED at expiry + 1 s even when the payment's PAID is still on its way, and never completes: an
EXPIRED from the socket is confirmed by the query before the watch ends.

Limits (`budget`): invoice creation is limited per merchant account (20 per 120 s, then 300 s
blocked, TOO_MANY_REQUEST); the terminal paces itself and never sends the request that would trip
the block. Errors are mapped by `flash_errors`; temporary ones are retried (reads) and never turn
into a refusal. Invoice creation is never re-sent: a creation whose answer was lost raises
`BackendUnavailable(code="outcome_unknown")`, one that certainly never left `code="not_sent"`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from terminal.adapters.backends import flash_documents as docs
from terminal.adapters.backends import flash_errors, flash_ws
from terminal.adapters.backends.budget import BackendBudget
from terminal.adapters.backends.flash_graphql import Credentials, FlashTransport
from terminal.adapters.backends.flash_history import FlashHistory
from terminal.adapters.backends.flash_send import FlashSender
from terminal.adapters.backends.flash_status import StatusBatcher, status_from_payload
from terminal.adapters.backends.http import Backoff, RetryPolicy, clean_text
from terminal.adapters.backends.json_endpoint import JsonEndpoint
from terminal.core import money
from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    DisplayRate,
    Health,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
    ReceivedPayment,
)
from terminal.core.ports.refunds import CannotSend, SendResult, SentLookup
from terminal.protocols.invoice import (
    InvoiceCheckError,
    InvoiceCheckReason,
    check_decoded,
    decode_invoice,
)

logger = logging.getLogger(__name__)

# Our network names (terminal config) → what Flash's `globals.network` says.
FLASH_NETWORK = {
    "bitcoin": "mainnet",
    "testnet": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}
BOLT11_PREFIX = {"bitcoin": "lnbc", "testnet": "lntb", "signet": "lntbs", "regtest": "lnbcrt"}
WALLET_CURRENCIES = ("USD",)
BTC_UNSUPPORTED = ("Flash does not support BTC wallets: set backend.flash.wallet_currency to "
                   "\"USD\" (the merchant's USD wallet).")
SAT = "SAT"
USD = "USD"
USD_INVOICE_EXPIRY_S = 60  # invoice-expiration.ts: IBEX caps every USD receive invoice at 60 s
MAX_MEMO_BYTES = 639  # config/index.ts MAX_BYTES_FOR_MEMO
FRACTIONAL_CENT_PLACES = 4  # 0.0001 US cent ≈ 1 msat at 100,000 USD/BTC
PRICE_REUSE_S = 30.0  # how long a fetched price may price further invoices
MAX_ID = 128
MAX_BOLT11 = 4096

_IDEMPOTENCY_CACHE_SIZE = 256
_SAT_MSAT = 1000
_WATCH_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """WebSocket reconnect backoff (`http.Backoff`, jitter in [½, 1]); reset after each ack."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return Backoff(self.initial_s, self.max_s, 0.5).delay(attempt)


@dataclass(frozen=True)
class _Wallet:
    id: str
    currency: str


@dataclass(frozen=True)
class _Price:
    currency: str
    minor_per_sat: Decimal  # display-currency minor units per sat
    minor_per_usd_cent: Decimal  # display-currency minor units per US cent
    timestamp: float


@dataclass(frozen=True)
class _CheckedBolt11:
    amount_msat: int
    expires_at: float


@dataclass
class _SocketState:
    """Shared by one watch's WebSocket and polling tasks."""

    live: bool = False  # subscribed right now
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # poll now (drop, EXPIRED push)

    def down(self) -> None:
        if self.live:
            self.live = False
            self.wake.set()


@dataclass(frozen=True)
class ScopeCheck:
    """One API-key scope: "ok", "missing" or "unknown" (could not be checked), with why."""

    scope: str
    state: str
    detail: str = ""


class FlashBackend:
    """`Backend` over Flash's public GraphQL API. See the module docstring for modes and units."""

    name = "flash"

    def __init__(
        self,
        http_url: str,
        ws_url: str | None,
        *,
        username: str | None = None,
        api_key: str | None = None,
        session_token: str | None = None,
        wallet_currency: str = USD,
        network: str = "bitcoin",
        terminal_id: str | Callable[[], str] | None = None,
        poll_interval_s: float = 1.5,
        ws_enabled: bool = True,
        safety_poll_s: float = 15.0,
        timeout_s: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        ws_timings: flash_ws.WSTimings = flash_ws.WSTimings(),
        amount_tolerance: Decimal | None = Decimal("0.05"),
        allow_insecure_http: bool = False,
        budget: BackendBudget | None = None,
        budget_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if wallet_currency == "BTC":
            raise ValueError(BTC_UNSUPPORTED)
        if wallet_currency not in WALLET_CURRENCIES:
            raise ValueError(f"wallet_currency must be one of {WALLET_CURRENCIES}")
        if network not in FLASH_NETWORK:
            raise ValueError(f"network must be one of {tuple(FLASH_NETWORK)}")
        if not (username or api_key or session_token):
            raise ValueError("Flash needs a username (receive-only) or an API key")
        http_url = _checked_url(http_url, ("https", "http"), allow_insecure_http)
        self._ws_url = _checked_url(ws_url, ("wss", "ws"), allow_insecure_http) if ws_url else None
        self._username = username
        self._credentials = Credentials(api_key=api_key, session_token=session_token)
        self._wallet_currency = wallet_currency
        self._network = network
        self._terminal_id = terminal_id
        self._poll_interval_s = poll_interval_s
        self._safety_poll_s = safety_poll_s
        # Status is public: the socket is used anonymously in every mode.
        self._ws_usable = bool(ws_enabled and self._ws_url)
        self._reconnect = reconnect
        self._ws_timings = ws_timings
        self._amount_tolerance = amount_tolerance
        self._prices: dict[str, tuple[_Price, float]] = {}  # currency -> (price, monotonic)
        self._clock = clock
        self.budget = budget or BackendBudget(path=budget_path, clock=clock)
        self._endpoint = JsonEndpoint(
            http_url, service=f"Flash at {urlsplit(http_url).netloc}",
            timeout_s=timeout_s, connect_timeout_s=min(timeout_s, 5.0))
        self._gql = FlashTransport(self._endpoint, self._credentials, self.budget, retry, clock)
        self._statuses = StatusBatcher(self._gql)
        self._history = FlashHistory(
            self._gql, self._wallet_id, terminal_id=terminal_id,
            network_check=lambda bolt11: _bolt11_network_ok(bolt11, network),
            can_read=lambda: self._credentials.present)
        # Refunds: payments out of the merchant's wallet (needs a credential with write_wallet).
        self._sender = FlashSender(self._gql, self._wallet_id, self._history,
                                   can_send=lambda: self._credentials.present)
        self._wallet: _Wallet | None = None
        self._wallet_lock = asyncio.Lock()
        self._create_locks: dict[str, asyncio.Lock] = {}
        self._fraction_digits: dict[str, int] | None = None
        self._created: collections.OrderedDict[str, Invoice] = collections.OrderedDict()

    def __repr__(self) -> str:
        gql = getattr(self, "_gql", None)
        url = gql.url if gql is not None else "?"
        return f"FlashBackend(http_url={url!r}, network={getattr(self, '_network', '?')!r})"

    @property
    def mode(self) -> str:
        credentials = getattr(self, "_credentials", None)
        if credentials is None:
            return "?"
        if credentials.api_key:
            return "api-key"
        if credentials.session_token:
            return "session"
        return "receive-only"

    @property
    def uses_websocket(self) -> bool:
        return self._ws_usable

    @property
    def status_requests(self) -> int:
        """Status requests sent so far (batched): for benchmarks."""
        return self._statuses.requests

    # ---------------------------------------------------------------- Backend interface

    async def create_invoice(self, request: InvoiceRequest) -> Invoice:
        """Create and check one invoice. The same `idempotency_key` (the sale id) asked again
        in this process returns the same invoice, even if it has expired since: the caller
        makes a new sale for a new invoice. Never retried; see the module docstring."""
        if request.amount_minor <= 0:
            raise BackendRejected("The amount must be greater than zero.", code="amount")
        if request.expires_in_s <= 0:
            raise BackendRejected("The invoice expiry must be positive.", code="expiry")
        if len(request.memo.encode()) > MAX_MEMO_BYTES:
            raise BackendRejected(f"The invoice memo is longer than Flash's {MAX_MEMO_BYTES} "
                                  "bytes.", code="memo_too_long")
        # One creation at a time per sale: two concurrent calls for one sale must not make two
        # invoices (different sales go concurrently: a queue drain creates many).
        lock = self._create_locks.setdefault(request.idempotency_key, asyncio.Lock())
        async with lock:
            cached = self._created.get(request.idempotency_key)
            if cached is not None:
                return cached
            wallet = await self._resolve_wallet()
            invoice = await self._create_usd_invoice(wallet, request)
            self._created[request.idempotency_key] = invoice
            while len(self._created) > _IDEMPOTENCY_CACHE_SIZE:
                old, _ = self._created.popitem(last=False)
                stale = self._create_locks.get(old)
                if stale is not None and not stale.locked():
                    del self._create_locks[old]
            return invoice

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus:
        return await self._statuses.status(invoice.backend_ref)

    async def invoice_statuses(self, invoices: list[Invoice]) -> list[InvoiceStatus | BackendError]:
        """Several invoices' statuses in as few requests as Flash allows (aliases); each entry
        is the status or that invoice's own error."""
        return await self._statuses.statuses([i.backend_ref for i in invoices])

    async def watch(self, invoice: Invoice) -> AsyncGenerator[InvoiceStatus, None]:
        """Yield each distinct status until PAID or EXPIRED.

        The WebSocket subscription pushes changes. Whenever it is not subscribed (not configured,
        connecting, dropped, backing off) the status query is polled every `poll_interval_s`;
        while it is, a slow safety poll every `safety_poll_s` still runs, because a subscription
        can stay connected yet never deliver. Each (re)subscription and each drop is followed by
        one query at once, to cover what the socket may have missed. EXPIRED is only ever taken
        from the query (PAID may follow a pushed EXPIRED).
        """
        queue: asyncio.Queue[InvoiceStatus | BaseException] = asyncio.Queue()
        link = _SocketState()
        tasks = [asyncio.create_task(self._poll_loop(invoice, queue, link))]
        if self._ws_usable:
            tasks.append(asyncio.create_task(self._ws_loop(invoice, queue, link)))
        last: InvoiceStatus | None = None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is not last:
                    last = item
                    yield item
                if item.is_final:
                    return
        finally:
            for task in tasks:
                task.cancel()
            done, stuck = await asyncio.wait(tasks, timeout=_WATCH_STOP_TIMEOUT_S)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("status watch helper failed: %r", task.exception())
            if stuck:
                logger.error("status watch: %d helper task(s) did not stop", len(stuck))

    async def display_rate(self, currency: str) -> DisplayRate:
        currency = currency.upper()
        if currency == SAT:
            return DisplayRate(SAT, Decimal(1), 0, self._clock())
        price = await self._realtime_price(currency, fresh=True)
        digits = await self._currency_fraction_digits(currency)
        return DisplayRate(currency, price.minor_per_sat, digits, price.timestamp)

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            data = await self._gql.call(docs.GLOBALS_NETWORK, {}, "GlobalsNetwork")
            globals_ = data.get("globals")
            network = globals_.get("network") if isinstance(globals_, dict) else None
            # An instance that does not report its network is not judged on it; BOLT11 checks
            # still refuse invoices for the wrong network.
            if isinstance(network, str) and network != FLASH_NETWORK[self._network]:
                return Health(
                    False,
                    f"Flash runs on {clean_text(network, 20)}, the terminal is configured for "
                    f"{self._network}",
                    _ms_since(started),
                )
            wallet = await self._resolve_wallet()
        except BackendError as exc:
            return Health(False, exc.message, _ms_since(started))
        return Health(
            True, f"Flash reachable ({self.mode}, {wallet.currency} wallet)", _ms_since(started)
        )

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        return await self._history.received_payments(since)

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        return await self._history.find_payment(invoice)

    # ---------------------------------------------------------------- refunds (InvoicePayer)

    def send_problem(self) -> CannotSend | None:
        """Why this terminal cannot pay refunds out (receive-only), or None."""
        return self._sender.send_problem()

    async def pay_invoice(self, bolt11: str, *, idempotency_key: str, memo: str) -> SendResult:
        """`lnInvoicePaymentSend` once, keyed; see `flash_send` for how answers are read."""
        return await self._sender.pay_invoice(bolt11, idempotency_key=idempotency_key,
                                              memo=memo)

    async def find_sent(self, bolt11: str) -> SentLookup:
        return await self._sender.find_sent(bolt11)

    async def check_scopes(self) -> list[ScopeCheck]:
        """Which API-key scopes the terminal needs does the key have (enrollment, doctor)?

        read_user: `me`; read_wallet: its wallets; write_wallet: an invoice creation with a memo
        Flash refuses before anything else ("Memo is too long": no invoice, no slot of the invoice
        limit used); read_transactions: one transaction row. Receive-only: nothing to check.
        """
        if not self._credentials.api_key:
            return []
        checks = [await self._scope_probe("read_user", docs.ME_ID, {}, "MeId")]
        wallet: _Wallet | None = None
        try:
            wallet = await self._resolve_wallet()
            checks.append(ScopeCheck("read_wallet", "ok"))
        except BackendError as exc:
            checks.append(_scope_result("read_wallet", exc))
        if wallet is None and checks[-1].state == "missing" and checks[0].state == "ok":
            # write:wallet implies read:wallet, so a key without read_wallet has no write_wallet.
            checks.append(ScopeCheck("write_wallet", "missing",
                                     "the key cannot even read the wallets"))
        elif wallet is None:
            checks.append(ScopeCheck("write_wallet", "unknown", "needs the wallet (read_wallet)"))
        else:
            checks.append(await self._write_wallet_probe(wallet))
        checks.append(await self._scope_probe(
            "read_transactions", docs.RECENT_TRANSACTIONS,
            {"first": 1, "walletIds": [wallet.id] if wallet else None}, "RecentTransactions"))
        return checks

    async def aclose(self) -> None:
        await self._statuses.aclose()
        await self._endpoint.aclose()

    # ---------------------------------------------------------------- invoices

    async def _create_usd_invoice(self, wallet: _Wallet, request: InvoiceRequest) -> Invoice:
        currency = request.currency.upper()
        # Price used to convert (SAT, fiat) and to judge Flash's msat amount for plausibility.
        price: _Price | None
        if currency == USD:
            cents = Fraction(request.amount_minor)
            price = None if self._amount_tolerance is None else await self._optional_price(USD)
        elif currency == SAT:
            price = await self._realtime_price(USD)
            cents = Fraction(request.amount_minor) * Fraction(price.minor_per_sat)
        else:
            price = await self._realtime_price(currency)
            cents = Fraction(request.amount_minor) / Fraction(price.minor_per_usd_cent)
        amount = money.fractional_minor(cents, FRACTIONAL_CENT_PLACES)
        if amount <= 0:
            raise BackendRejected("The amount is too small for an invoice.",
                                  code="amount_too_small")
        variables: dict[str, Any] = {
            # A JSON number (Flash reads FractionalCentAmount as one); exact at 4 places.
            "amount": float(amount),
            "memo": request.memo,
            "expiresIn": _minutes(request),
        }
        if self._credentials.present:
            document, field_name, op = docs.LN_USD_INVOICE_CREATE, "lnUsdInvoiceCreate", (
                "LnUsdInvoiceCreate")
            variables["walletId"] = wallet.id
        else:
            document, field_name, op = (
                docs.LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
                "lnUsdInvoiceCreateOnBehalfOfRecipient",
                "LnUsdInvoiceCreateOnBehalfOfRecipient",
            )
            variables["recipientWalletId"] = wallet.id
        raw = await self._create(document, variables, op, field_name,
                                 background=request.background)
        checked = self._check_bolt11(raw, expected_msat=None)
        if price is not None and self._amount_tolerance is not None:
            expected_msat = (Fraction(amount) * Fraction(price.minor_per_usd_cent)
                             / Fraction(price.minor_per_sat) * _SAT_MSAT)
            _check_plausible(checked.amount_msat, expected_msat, self._amount_tolerance)
        return _invoice(raw, checked)

    async def _create(
        self, document: str, input_: dict[str, Any], operation: str, field_name: str, *,
        background: bool,
    ) -> dict[str, Any]:
        """Send one creation mutation, exactly once (never retried here), within the budget."""
        ticket, wait = self.budget.take_invoice(background=background)
        if ticket is None:
            raise BackendRateLimited(
                f"Flash allows 20 new invoices every 2 minutes per merchant; the next one can be "
                f"created in {wait:.0f} s.", retry_after_s=wait, code="budget")
        try:
            data = await self._gql.call(document, {"input": input_}, operation, keyed=True,
                                        mutation=True)
        except BackendUnavailable as exc:
            if exc.code == "not_sent":
                self.budget.invoice_not_sent(ticket)
            else:
                self.budget.invoice_answered(ticket)
            raise
        except BackendRateLimited as exc:
            raise self._limited(ticket, exc) from None
        except BackendError:
            self.budget.invoice_answered(ticket)
            raise
        self.budget.invoice_answered(ticket)
        payload = data.get(field_name)
        if not isinstance(payload, dict):
            raise BackendProtocolError(f"Flash answered without {field_name}.", code="no_payload")
        errors = flash_errors.parse_errors(payload.get("errors"), field_name)
        if errors:
            error = flash_errors.payload_error(errors, field_name)
            if isinstance(error, BackendRateLimited):
                raise self._limited(None, error)
            raise error
        invoice = payload.get("invoice")
        if not isinstance(invoice, dict):
            raise BackendProtocolError(f"Flash's {field_name} answered without an invoice.",
                                       code="no_invoice")
        _require_text(invoice, "paymentRequest", field_name, MAX_BOLT11)
        _require_text(invoice, "paymentHash", field_name, 64)
        return invoice

    def _limited(self, ticket: Any, exc: BackendRateLimited) -> BackendRateLimited:
        """Record a refusal at a limit in the budget; the error to raise, its retry time the
        budget's (Flash gives none for its invoice limit: the block lasts up to 300 s and may
        be probed meanwhile)."""
        if exc.code != flash_errors.CODE_INVOICE_LIMIT:
            if ticket is not None:
                self.budget.invoice_not_sent(ticket)  # refused at the key limit: not counted
            return exc
        logger.warning("Flash's invoice limit for this merchant is reached (another terminal "
                       "may be using it): pausing invoice creation")
        self.budget.invoice_refused()
        wait = self.budget.invoice_wait_s(background=True)
        return BackendRateLimited(exc.message, retry_after_s=wait, code=exc.code)

    def _check_bolt11(self, raw: dict[str, Any], *, expected_msat: int | None) -> _CheckedBolt11:
        try:
            return check_bolt11(
                raw["paymentRequest"],
                network=self._network,
                payment_hash=raw["paymentHash"],
                expected_msat=expected_msat,
                now=self._clock(),
            )
        except InvoiceCheckError as exc:
            raise BackendProtocolError(
                f"Flash returned an invoice the terminal refuses: {exc.message}.",
                code=f"bad_invoice:{exc.reason_code.value}",
            ) from None

    # ---------------------------------------------------------------- wallet, prices

    async def _wallet_id(self) -> str:
        return (await self._resolve_wallet()).id

    async def _resolve_wallet(self) -> _Wallet:
        async with self._wallet_lock:
            if self._wallet is None:
                if self._credentials.present:
                    self._wallet = await self._own_wallet()
                else:
                    self._wallet = await self._recipient_wallet()
            return self._wallet

    async def _own_wallet(self) -> _Wallet:
        data = await self._gql.read(docs.ME_WALLETS, {}, "MeWallets", keyed=True)
        me = data.get("me")
        if me is None:
            raise BackendUnauthorized(
                "Flash did not recognise the API key (no account): check the key and its "
                "read_user scope.", code="no_account")
        wallets = _dig_list(me, "defaultAccount", "wallets")
        for wallet in wallets:
            if isinstance(wallet, dict) and wallet.get("walletCurrency") == self._wallet_currency:
                return _Wallet(_id(wallet.get("id"), "wallet"), self._wallet_currency)
        raise BackendRejected(
            f"This Flash account has no {self._wallet_currency} wallet.", code="no_wallet"
        )

    async def _recipient_wallet(self) -> _Wallet:
        try:
            data = await self._gql.read(
                docs.ACCOUNT_DEFAULT_WALLET,
                {"username": self._username, "walletCurrency": self._wallet_currency},
                "AccountDefaultWallet",
            )
        except BackendRejected as exc:
            raise BackendRejected(
                f"Flash could not find the merchant {self._username!r}: {exc.message}",
                code=exc.code or "no_wallet",
            ) from None
        wallet = data.get("accountDefaultWallet")
        if not isinstance(wallet, dict) or not wallet.get("id"):
            raise BackendRejected(
                f"Flash has no wallet for username {self._username!r}.", code="no_wallet"
            )
        if wallet.get("walletCurrency") != self._wallet_currency:
            raise BackendRejected(
                f"Flash user {self._username!r} has no {self._wallet_currency} wallet.",
                code="no_wallet",
            )
        return _Wallet(_id(wallet.get("id"), "wallet"), self._wallet_currency)

    async def _realtime_price(self, currency: str, *, fresh: bool = False) -> _Price:
        """The price, reused for `PRICE_REUSE_S` when pricing invoices: Flash prices each
        invoice itself, ours only converts the request and checks plausibility, so a price a few
        seconds old costs nothing and saves a round trip per invoice (a queue drain makes many).
        """
        cached = self._prices.get(currency)
        now = time.monotonic()
        if not fresh and cached is not None and now - cached[1] < PRICE_REUSE_S:
            return cached[0]
        data = await self._gql.read(docs.REALTIME_PRICE, {"currency": currency}, "RealtimePrice")
        price = _price_from(data.get("realtimePrice"), currency)
        self._prices[currency] = (price, now)
        return price

    async def _optional_price(self, currency: str) -> _Price | None:
        """A price for the plausibility check only: its failure must not block a USD sale."""
        try:
            return await self._realtime_price(currency)
        except BackendError as exc:
            logger.warning("skipping the invoice amount plausibility check: %s", exc.message)
            return None

    async def _currency_fraction_digits(self, currency: str) -> int:
        if self._fraction_digits is None:
            data = await self._gql.read(docs.CURRENCY_LIST, {}, "CurrencyList")
            entries = data.get("currencyList")
            if not isinstance(entries, list):
                raise BackendProtocolError("Flash's currencyList is not a list.")
            digits: dict[str, int] = {}
            for entry in entries[:500]:
                if not isinstance(entry, dict):
                    continue
                code, places = entry.get("id"), entry.get("fractionDigits")
                if (isinstance(code, str) and len(code) <= 8 and isinstance(places, int)
                        and not isinstance(places, bool) and 0 <= places <= 8):
                    digits[code.upper()] = places
            self._fraction_digits = digits
        if currency not in self._fraction_digits:
            raise BackendRejected(
                f"Flash does not support the display currency {currency}.", code="currency"
            )
        return self._fraction_digits[currency]

    # ---------------------------------------------------------------- scopes

    async def _scope_probe(self, scope: str, document: str, variables: dict[str, Any],
                           operation: str) -> ScopeCheck:
        try:
            await self._gql.call(document, variables, operation, keyed=True)
        except BackendError as exc:
            return _scope_result(scope, exc)
        return ScopeCheck(scope, "ok")

    async def _write_wallet_probe(self, wallet: _Wallet) -> ScopeCheck:
        variables = {"input": {"walletId": wallet.id, "amount": 1,
                               "memo": "x" * (MAX_MEMO_BYTES + 1)}}
        try:
            data = await self._gql.call(docs.LN_USD_INVOICE_CREATE, variables,
                                        "LnUsdInvoiceCreate", keyed=True, mutation=True)
        except BackendError as exc:
            return _scope_result("write_wallet", exc)
        payload = data.get("lnUsdInvoiceCreate")
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if isinstance(errors, list) and errors:
            return ScopeCheck("write_wallet", "ok")  # refused the memo: past the scope check
        return ScopeCheck("write_wallet", "unknown", "Flash accepted an over-long memo")

    # ---------------------------------------------------------------- status watching

    async def _poll_loop(
        self,
        invoice: Invoice,
        queue: asyncio.Queue[InvoiceStatus | BaseException],
        link: _SocketState,
    ) -> None:
        while True:
            delay = await self._poll_once(invoice, queue)
            if link.live:
                delay = max(delay, self._safety_poll_s)
            # Sleep, but wake at once when the socket goes down or pushes EXPIRED (a wake asked
            # for during the query is kept). (`asyncio.timeout`: 3.11's `wait_for` can swallow
            # our own cancellation.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await link.wake.wait()
            link.wake.clear()

    async def _poll_once(
        self, invoice: Invoice, queue: asyncio.Queue[InvoiceStatus | BaseException]
    ) -> float:
        """One status query; returns how long to wait before the next one."""
        try:
            queue.put_nowait(await self._statuses.status(invoice.backend_ref))
        except BackendRateLimited as exc:
            logger.info("status poll rate-limited; next in %.1f s", exc.retry_after_s)
            return max(self._poll_interval_s, exc.retry_after_s)
        except BackendUnavailable as exc:
            # IBEX_ERROR here also means "the provider does not know it (yet)": keep asking.
            logger.info("status poll failed (%s); retrying", exc.message)
        except BackendError as exc:
            queue.put_nowait(exc)  # refused or nonsense: the caller must know
        return self._poll_interval_s

    async def _ws_loop(
        self,
        invoice: Invoice,
        queue: asyncio.Queue[InvoiceStatus | BaseException],
        link: _SocketState,
    ) -> None:
        attempt = 0

        def subscribed() -> None:
            nonlocal attempt
            attempt = 0
            link.live = True
            link.wake.set()  # close the gap: the payment may have landed while connecting

        try:
            while True:
                try:
                    async for payload in flash_ws.subscribe(
                        self._ws_url or "",
                        docs.LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION,
                        {"input": {"paymentRequest": invoice.backend_ref}},
                        operation_name="LnInvoicePaymentStatusSubscription",
                        init_payload=None,  # anonymous: Flash's socket takes no API key
                        timings=self._ws_timings,
                        on_subscribed=subscribed,
                    ):
                        status = _status_from_push(payload)
                        if status is InvoiceStatus.EXPIRED:
                            # Pushed at expiry + 1 s even when PAID is on its way: ask the query.
                            link.wake.set()
                        elif status is not None:
                            queue.put_nowait(status)
                    logger.info("status subscription completed by the server; reconnecting")
                except flash_ws.WSConnectionLost as exc:
                    logger.info("status WebSocket lost (%s); polling meanwhile", exc)
                except (flash_ws.WSRefused, flash_ws.WSSubscriptionError) as exc:
                    logger.warning("status WebSocket refused (%s); polling only", exc)
                    return
                link.down()
                await asyncio.sleep(self._reconnect.delay(attempt))
                attempt += 1
        finally:
            link.down()


# -------------------------------------------------------------------- BOLT11 checks


def check_bolt11(
    bolt11: str,
    *,
    network: str,
    payment_hash: str,
    expected_msat: int | None,
    now: float,
) -> _CheckedBolt11:
    """Network, payment hash, expiry and (when known) exact amount of a backend's BOLT11.

    With `expected_msat=None` (USD invoices, priced by Flash) the amount is read from the BOLT11
    and only required to be present. Raises `InvoiceCheckError`.
    """
    decoded = decode_invoice(bolt11)  # once: the signature check is the costly part
    if expected_msat is None:
        expected_msat = decoded.amount_msat
        if expected_msat is None:
            raise InvoiceCheckError(InvoiceCheckReason.NO_AMOUNT, "invoice has no amount")
    decoded = check_decoded(
        decoded,
        network=network,
        expected_msat=expected_msat,
        expected_payment_hash=payment_hash,
        now=now,
    )
    return _CheckedBolt11(decoded.amount_msat or 0, float(decoded.expires_at))


# -------------------------------------------------------------------- helpers


def _checked_url(url: str, schemes: tuple[str, str], allow_insecure: bool) -> str:
    secure, insecure = schemes
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"Flash endpoint must be a {secure}:// URL, got {url!r}")
    if parts.scheme == insecure and not (allow_insecure or _is_loopback(parts.hostname)):
        raise ValueError(f"Flash endpoint {url!r} must use {secure}:// (plain only on loopback)")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bolt11_network_ok(bolt11: str, network: str) -> bool:
    prefix = BOLT11_PREFIX[network]
    text = bolt11.lower()
    if not text.startswith(prefix):
        return False
    rest = text[len(prefix):]
    # "lntb" is a prefix of "lntbs": the character after the prefix must be an amount digit or
    # the separator.
    return bool(rest) and (rest[0].isdigit() or rest[0] == "1")


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _minutes(request: InvoiceRequest) -> int:
    # Flash's expiresIn is in whole minutes (and USD invoices expire after 60 s whatever it
    # says); round down so the invoice never outlives the sale.
    return max(1, request.expires_in_s // 60)


def _check_plausible(actual_msat: int, expected_msat: Fraction, tolerance: Decimal) -> None:
    """Refuse a BOLT11 whose amount is far from what our own rate says (a pricing accident).

    One sat of slack on top of the relative tolerance: Flash rounds USD invoices to whole sats.
    """
    allowed = expected_msat * Fraction(tolerance) + _SAT_MSAT
    if expected_msat <= 0 or abs(Fraction(actual_msat) - expected_msat) > allowed:
        raise BackendProtocolError(
            f"Flash priced the invoice at {actual_msat // 1000} sat, but the current rate gives "
            f"about {int(expected_msat) // 1000} sat; refusing it.",
            code="implausible_amount",
        )


def _invoice(raw: dict[str, Any], checked: _CheckedBolt11) -> Invoice:
    return Invoice(
        bolt11=raw["paymentRequest"],
        payment_hash=raw["paymentHash"].lower(),
        amount_msat=checked.amount_msat,
        expires_at=checked.expires_at,
        backend_ref=raw["paymentRequest"],
    )


def _require_text(raw: dict[str, Any], key: str, where: str, limit: int) -> None:
    value = raw.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BackendProtocolError(f"Flash's {where} answered without a usable {key}.",
                                   code=f"bad_{key}")


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise BackendProtocolError(f"Flash answered a {what} id that is not a short text.",
                                   code="bad_id")
    return value


def _dig_list(value: Any, *keys: str) -> list[Any]:
    for key in keys:
        if not isinstance(value, dict):
            raise BackendProtocolError(f"Flash answered {key}'s parent with a non-object.",
                                       code="bad_shape")
        value = value.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BackendProtocolError(f"Flash answered {keys[-1]} that is not a list.",
                                   code="bad_shape")
    return value


def _price_from(raw: Any, currency: str) -> _Price:
    if not isinstance(raw, dict):
        raise BackendProtocolError("Flash answered realtimePrice without a price.")
    denominator = raw.get("denominatorCurrency")
    if not isinstance(denominator, str) or denominator.upper() != currency:
        raise BackendProtocolError(
            f"Flash priced {clean_text(str(denominator), 12)!r} when asked for {currency}."
        )
    try:
        per_sat = _price_value(raw["btcSatPrice"])
        per_cent = _price_value(raw["usdCentPrice"])
        timestamp = raw["timestamp"]
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float | Decimal):
            raise TypeError("timestamp")
        timestamp = float(timestamp)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise BackendProtocolError("Flash's realtimePrice is malformed.") from None
    if per_sat <= 0 or per_cent <= 0:
        # Never price from a zero rate: it once turned a 30.50 EUR sale into a 1-sat invoice.
        raise BackendProtocolError(f"Flash returned a zero or negative {currency} price.")
    return _Price(currency, per_sat, per_cent, timestamp)


def _price_value(raw: Any) -> Decimal:
    # base / 10^offset, exactly: both are integers in the schema (SafeInt, Int).
    base, offset = raw["base"], raw["offset"]
    for value in (base, offset):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("price parts must be integers")
    if not 0 <= offset <= 40 or abs(base) >= 10**40:
        raise ValueError("price out of range")
    return Decimal(base).scaleb(-offset)


def _status_from_push(payload: dict[str, Any]) -> InvoiceStatus | None:
    """A subscription `next` payload; errors are logged and left to the HTTP poll to judge."""
    try:
        errors = flash_errors.parse_errors(payload.get("errors"), "status subscription")
        if errors:
            logger.warning("status subscription error: %s", errors[0].message)
            return None
        data = payload.get("data")
        if not isinstance(data, dict):
            return None
        return status_from_payload(data.get("lnInvoicePaymentStatus"), "status subscription")
    except BackendError as exc:
        logger.warning("status subscription: %s", exc.message)
        return None


def _scope_result(scope: str, exc: BackendError) -> ScopeCheck:
    named = flash_errors.missing_scope(exc.message) if exc.code is None else None
    code = exc.code or ""
    if code.startswith("missing_scope:"):
        named = code.split(":", 1)[1]
    if named is not None:
        state = "missing" if named == scope else "unknown"
        return ScopeCheck(scope, state, exc.message)
    if isinstance(exc, BackendUnauthorized):
        return ScopeCheck(scope, "missing", exc.message)
    return ScopeCheck(scope, "unknown", exc.message)
