"""Flash (a Galoy fork) as a merchant backend: GraphQL over HTTP, status pushed over WebSocket.

Modes, chosen by which credential is configured:
- receive-only (no secret, `username`): `accountDefaultWallet` finds the merchant's wallet and
  invoices are created *on behalf of* it. Nothing on the terminal can spend.
- API key (`X-API-KEY: fk_…`, scopes read_wallet + write_wallet): `me` lists the key owner's
  wallets; invoices are created in the wallet whose currency is `wallet_currency`.
- session token (`Authorization: Bearer …`): like the API key, and also usable on the WebSocket.

Amounts (most Flash accounts only have a USD wallet):
- USD wallet: invoices are USD-denominated (`lnUsdInvoiceCreate…`, amount in US cents, min 1).
  SAT requests are converted to cents at `realtimePrice(USD).btcSatPrice`; other fiat (JMD) at
  `realtimePrice(<cur>).usdCentPrice`. Flash then prices the BOLT11 itself, so the msat amount is
  read from the BOLT11 and only checked for plausibility (within `amount_tolerance` of our rate).
- BTC wallet: sat-denominated `lnInvoiceCreate…`; fiat is converted to sats at
  `realtimePrice(<cur>).btcSatPrice` and the BOLT11 amount must equal sats × 1000 exactly.

Status: `watch()` subscribes over graphql-transport-ws (`flash_ws`) without credentials, or
with `Authorization: Bearer` in connection_init for a session token; API keys do not work on the
socket, so with only a key the status is polled. While the socket is down the status query is
polled every `poll_interval_s`; while it is up, a slow safety poll still runs.

Retries: reads (status, price, currency list, wallet lookup) retry on 5xx/timeouts with exponential
backoff + jitter and honour `retryAfterSeconds` when rate-limited. Invoice creation is never
re-sent: a creation whose answer was lost raises `BackendUnavailable(code="outcome_unknown")`,
and one that certainly never left raises `code="not_sent"`; the caller decides.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from terminal.adapters.backends import flash_documents as docs
from terminal.adapters.backends import flash_ws
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
WALLET_CURRENCIES = ("USD", "BTC")
SAT = "SAT"
USD = "USD"

# GraphQL `extensions.code` values the gateway and Galoy use.
CODE_TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "NOT_AUTHORIZED", "FORBIDDEN"})
_SCHEMA_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT"})

_STATUS = {
    "PENDING": InvoiceStatus.PENDING,
    "PAID": InvoiceStatus.PAID,
    "EXPIRED": InvoiceStatus.EXPIRED,
}
_IDEMPOTENCY_CACHE_SIZE = 256
_MAX_MESSAGE = 200
_SAT_MSAT = 1000
_WATCH_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for idempotent reads. Delay n = min(max, base·2ⁿ) scaled by a jitter in [½, 1]."""

    attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    max_retry_after_s: float = 30.0  # a longer retryAfterSeconds is raised, not slept through

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2**attempt) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class ReconnectPolicy:
    """WebSocket reconnect backoff (exponential, jittered); reset after each connection_ack."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.initial_s * 2**attempt) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Wallet:
    id: str
    currency: str


PRICE_REUSE_S = 30.0  # how long a fetched price may price further invoices


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
    went_down: asyncio.Event = field(default_factory=asyncio.Event)

    def down(self) -> None:
        if self.live:
            self.live = False
            self.went_down.set()


@dataclass
class _Credentials:
    api_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def http_headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-KEY": self.api_key}
        if self.session_token:
            return {"Authorization": f"Bearer {self.session_token}"}
        return {}


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
        http_client: httpx.AsyncClient | None = None,
        poll_interval_s: float = 1.5,
        ws_enabled: bool = True,
        safety_poll_s: float = 15.0,
        timeout_s: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        reconnect: ReconnectPolicy = ReconnectPolicy(),
        ws_timings: flash_ws.WSTimings = flash_ws.WSTimings(),
        amount_tolerance: Decimal | None = Decimal("0.05"),
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if wallet_currency not in WALLET_CURRENCIES:
            raise ValueError(f"wallet_currency must be one of {WALLET_CURRENCIES}")
        if network not in FLASH_NETWORK:
            raise ValueError(f"network must be one of {tuple(FLASH_NETWORK)}")
        if not (username or api_key or session_token):
            raise ValueError("Flash needs a username (receive-only) or an API key")
        self._http_url = _checked_url(http_url, ("https", "http"), allow_insecure_http)
        self._ws_url = _checked_url(ws_url, ("wss", "ws"), allow_insecure_http) if ws_url else None
        self._username = username
        self._credentials = _Credentials(api_key=api_key, session_token=session_token)
        self._wallet_currency = wallet_currency
        self._network = network
        self._poll_interval_s = poll_interval_s
        self._safety_poll_s = safety_poll_s
        # API keys do not work on Flash's WebSocket: with only a key, status is polled.
        self._ws_usable = bool(ws_enabled and self._ws_url and not (api_key and not session_token))
        self._retry = retry
        self._reconnect = reconnect
        self._ws_timings = ws_timings
        self._amount_tolerance = amount_tolerance
        self._prices: dict[str, tuple[_Price, float]] = {}  # currency -> (price, monotonic)
        self._clock = clock
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            follow_redirects=False,
        )
        self._wallet: _Wallet | None = None
        self._wallet_lock = asyncio.Lock()
        self._create_lock = asyncio.Lock()
        self._fraction_digits: dict[str, int] | None = None
        self._created: collections.OrderedDict[str, Invoice] = collections.OrderedDict()

    def __repr__(self) -> str:
        return (
            f"FlashBackend(http_url={self._http_url!r}, mode={self.mode!r}, "
            f"wallet_currency={self._wallet_currency!r}, network={self._network!r})"
        )

    @property
    def mode(self) -> str:
        if self._credentials.api_key:
            return "api-key"
        if self._credentials.session_token:
            return "session"
        return "receive-only"

    @property
    def uses_websocket(self) -> bool:
        return self._ws_usable

    # ---------------------------------------------------------------- Backend interface

    async def create_invoice(self, request: InvoiceRequest) -> Invoice:
        """Create and check one invoice. The same `idempotency_key` (the sale id) asked again
        in this process returns the same invoice, even if it has expired since: the caller
        makes a new sale for a new invoice. Never retried; see the module docstring."""
        if request.amount_minor <= 0:
            raise BackendRejected("The amount must be greater than zero.", code="amount")
        if request.expires_in_s <= 0:
            raise BackendRejected("The invoice expiry must be positive.", code="expiry")
        # One creation at a time: two concurrent calls for one sale must not make two invoices.
        async with self._create_lock:
            cached = self._created.get(request.idempotency_key)
            if cached is not None:
                return cached
            wallet = await self._resolve_wallet()
            if wallet.currency == USD:
                invoice = await self._create_usd_invoice(wallet, request)
            else:
                invoice = await self._create_sat_invoice(wallet, request)
            self._created[request.idempotency_key] = invoice
            while len(self._created) > _IDEMPOTENCY_CACHE_SIZE:
                self._created.popitem(last=False)
            return invoice

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus:
        data = await self._read(
            docs.LN_INVOICE_PAYMENT_STATUS,
            {"input": {"paymentRequest": invoice.backend_ref}},
            "LnInvoicePaymentStatus",
        )
        return _status_from(data, "lnInvoicePaymentStatus")

    async def watch(self, invoice: Invoice) -> AsyncGenerator[InvoiceStatus, None]:
        """Yield each distinct status until PAID or EXPIRED.

        The WebSocket subscription pushes changes. Whenever it is not subscribed (not configured,
        connecting, dropped, backing off) the status query is polled every `poll_interval_s`;
        while it is, a slow safety poll every `safety_poll_s` still runs, because a subscription
        can stay connected yet never deliver. Each (re)subscription and each drop is followed by
        one HTTP query at once, to cover what the socket may have missed.
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
            data = await self._post(docs.GLOBALS_NETWORK, {}, "GlobalsNetwork")
            network = (data.get("globals") or {}).get("network")
            # An instance that does not report its network is not judged on it; BOLT11 checks
            # still refuse invoices for the wrong network.
            if network is not None and network != FLASH_NETWORK[self._network]:
                return Health(
                    False,
                    f"Flash runs on {network}, the terminal is configured for {self._network}",
                    _ms_since(started),
                )
            wallet = await self._resolve_wallet()
        except BackendError as exc:
            return Health(False, exc.message, _ms_since(started))
        return Health(
            True, f"Flash reachable ({self.mode}, {wallet.currency} wallet)", _ms_since(started)
        )

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        raise BackendRejected("Flash: looking up received payments is not implemented yet.",
                              code="not_supported")

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        raise BackendRejected("Flash: looking up a payment is not implemented yet.",
                              code="not_supported")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # ---------------------------------------------------------------- invoices

    async def _create_usd_invoice(self, wallet: _Wallet, request: InvoiceRequest) -> Invoice:
        currency = request.currency.upper()
        # Price used to convert (SAT, fiat) and to judge Flash's msat amount for plausibility.
        price: _Price | None
        if currency == USD:
            cents = request.amount_minor
            price = None if self._amount_tolerance is None else await self._optional_price(USD)
        elif currency == SAT:
            price = await self._realtime_price(USD)
            cents = _round_minor(request.amount_minor * price.minor_per_sat)
        else:
            price = await self._realtime_price(currency)
            cents = _round_minor(request.amount_minor / price.minor_per_usd_cent)
        if cents < 1:
            raise BackendRejected(
                "The amount is below Flash's minimum of 1 US cent.", code="amount_too_small"
            )
        variables = {"amount": cents, "memo": request.memo, "expiresIn": _minutes(request)}
        if self._has_secret:
            document, field_name, op = docs.LN_USD_INVOICE_CREATE, "lnUsdInvoiceCreate", (
                "LnUsdInvoiceCreate"
            )
            variables["walletId"] = wallet.id
        else:
            document, field_name, op = (
                docs.LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
                "lnUsdInvoiceCreateOnBehalfOfRecipient",
                "LnUsdInvoiceCreateOnBehalfOfRecipient",
            )
            variables["recipientWalletId"] = wallet.id
        raw = await self._create(document, variables, op, field_name)
        checked = self._check_bolt11(raw, expected_msat=None)
        if price is not None and self._amount_tolerance is not None:
            # Judge against the cents actually requested (after rounding), not the sale amount.
            expected_msat = Decimal(cents) * price.minor_per_usd_cent / price.minor_per_sat * 1000
            _check_plausible(checked.amount_msat, expected_msat, self._amount_tolerance)
        return _invoice(raw, checked)

    async def _create_sat_invoice(self, wallet: _Wallet, request: InvoiceRequest) -> Invoice:
        currency = request.currency.upper()
        if currency == SAT:
            sats = request.amount_minor
        else:
            price = await self._realtime_price(currency)
            sats = _round_minor(request.amount_minor / price.minor_per_sat)
        if sats < 1:
            raise BackendRejected("The amount is below 1 sat.", code="amount_too_small")
        variables = {"amount": sats, "memo": request.memo, "expiresIn": _minutes(request)}
        if self._has_secret:
            document, field_name, op = docs.LN_INVOICE_CREATE, "lnInvoiceCreate", "LnInvoiceCreate"
            variables["walletId"] = wallet.id
        else:
            document, field_name, op = (
                docs.LN_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
                "lnInvoiceCreateOnBehalfOfRecipient",
                "LnInvoiceCreateOnBehalfOfRecipient",
            )
            variables["recipientWalletId"] = wallet.id
        raw = await self._create(document, variables, op, field_name)
        return _invoice(raw, self._check_bolt11(raw, expected_msat=sats * 1000))

    async def _create(
        self, document: str, input_: dict[str, Any], operation: str, field_name: str
    ) -> dict[str, Any]:
        """Send one creation mutation, exactly once (never retried here)."""
        data = await self._post(document, {"input": input_}, operation, mutation=True)
        payload = _payload(data, field_name)
        invoice = payload.get("invoice")
        if not isinstance(invoice, dict) or not invoice.get("paymentRequest"):
            raise BackendProtocolError(f"Flash's {field_name} answered without an invoice.")
        if not isinstance(invoice.get("paymentHash"), str):
            raise BackendProtocolError(f"Flash's {field_name} answered without a paymentHash.")
        return invoice

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

    @property
    def _has_secret(self) -> bool:
        return bool(self._credentials.api_key or self._credentials.session_token)

    async def _resolve_wallet(self) -> _Wallet:
        async with self._wallet_lock:
            if self._wallet is None:
                if self._has_secret:
                    self._wallet = await self._own_wallet()
                else:
                    self._wallet = await self._recipient_wallet()
            return self._wallet

    async def _own_wallet(self) -> _Wallet:
        data = await self._read(docs.ME_WALLETS, {}, "MeWallets")
        me = data.get("me")
        if not isinstance(me, dict):
            raise BackendUnauthorized(
                "Flash did not recognise the API key (no account): check the key and its "
                "read_wallet scope."
            )
        wallets = (me.get("defaultAccount") or {}).get("wallets") or []
        for wallet in wallets:
            if isinstance(wallet, dict) and wallet.get("walletCurrency") == self._wallet_currency:
                return _Wallet(str(wallet["id"]), self._wallet_currency)
        raise BackendRejected(
            f"This Flash account has no {self._wallet_currency} wallet.", code="no_wallet"
        )

    async def _recipient_wallet(self) -> _Wallet:
        try:
            data = await self._read(
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
                f"Flash user {self._username!r} has no {self._wallet_currency} wallet "
                f"(default is {wallet.get('walletCurrency')}).",
                code="no_wallet",
            )
        return _Wallet(str(wallet["id"]), self._wallet_currency)

    async def _realtime_price(self, currency: str, *, fresh: bool = False) -> _Price:
        """The price, reused for `PRICE_REUSE_S` when pricing invoices: Flash prices each
        invoice itself, ours only converts the request and checks plausibility, so a price a few
        seconds old costs nothing and saves a round trip per invoice (a queue drain makes many).
        """
        cached = self._prices.get(currency)
        now = time.monotonic()
        if not fresh and cached is not None and now - cached[1] < PRICE_REUSE_S:
            return cached[0]
        data = await self._read(docs.REALTIME_PRICE, {"currency": currency}, "RealtimePrice")
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
            data = await self._read(docs.CURRENCY_LIST, {}, "CurrencyList")
            entries = data.get("currencyList")
            if not isinstance(entries, list):
                raise BackendProtocolError("Flash's currencyList is not a list.")
            self._fraction_digits = {
                str(e["id"]).upper(): int(e["fractionDigits"])
                for e in entries
                if isinstance(e, dict) and "id" in e and "fractionDigits" in e
            }
        if currency not in self._fraction_digits:
            raise BackendRejected(
                f"Flash does not support the display currency {currency}.", code="currency"
            )
        return self._fraction_digits[currency]

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
            # Sleep, but wake at once when the socket goes down. (`asyncio.timeout`: 3.11's
            # `wait_for` can swallow our own cancellation when the event fires at that moment.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await link.went_down.wait()
            link.went_down.clear()

    async def _poll_once(
        self, invoice: Invoice, queue: asyncio.Queue[InvoiceStatus | BaseException]
    ) -> float:
        """One status query; returns how long to wait before the next one."""
        try:
            data = await self._post(
                docs.LN_INVOICE_PAYMENT_STATUS,
                {"input": {"paymentRequest": invoice.backend_ref}},
                "LnInvoicePaymentStatus",
            )
            queue.put_nowait(_status_from(data, "lnInvoicePaymentStatus"))
        except BackendRateLimited as exc:
            logger.info("status poll rate-limited; next in %.1f s", exc.retry_after_s)
            return max(self._poll_interval_s, exc.retry_after_s)
        except BackendUnavailable as exc:
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
        catch_up: set[asyncio.Task[Any]] = set()

        def subscribed() -> None:
            nonlocal attempt
            attempt = 0
            link.live = True
            # Close the gap: the payment may have landed while we were connecting.
            task = asyncio.create_task(self._poll_once(invoice, queue))
            catch_up.add(task)
            task.add_done_callback(catch_up.discard)

        init_payload = None
        if self._credentials.session_token:
            init_payload = {"Authorization": f"Bearer {self._credentials.session_token}"}
        try:
            while True:
                try:
                    async for payload in flash_ws.subscribe(
                        self._ws_url or "",
                        docs.LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION,
                        {"input": {"paymentRequest": invoice.backend_ref}},
                        operation_name="LnInvoicePaymentStatusSubscription",
                        init_payload=init_payload,
                        timings=self._ws_timings,
                        on_subscribed=subscribed,
                    ):
                        status = _status_from_push(payload)
                        if status is not None:
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
            for task in catch_up:
                task.cancel()

    # ---------------------------------------------------------------- GraphQL over HTTP

    async def _read(self, document: str, variables: dict[str, Any], operation: str) -> dict:
        """An idempotent query, retried on unavailability and rate limiting."""
        for attempt in range(self._retry.attempts):
            last = attempt == self._retry.attempts - 1
            try:
                return await self._post(document, variables, operation)
            except BackendRateLimited as exc:
                if last or exc.retry_after_s > self._retry.max_retry_after_s:
                    raise
                delay = exc.retry_after_s * random.uniform(1.0, 1.1)
            except BackendUnavailable:
                if last:
                    raise
                delay = self._retry.delay(attempt)
            logger.info("Flash %s: retry %d in %.2f s", operation, attempt + 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(
        self,
        document: str,
        variables: dict[str, Any],
        operation: str,
        *,
        mutation: bool = False,
    ) -> dict[str, Any]:
        body = {"query": document, "variables": variables, "operationName": operation}
        headers = {"Accept": "application/json", **self._credentials.http_headers()}
        try:
            response = await self._client.post(self._http_url, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise BackendUnavailable(
                f"Cannot reach Flash at {_host(self._http_url)} ({type(exc).__name__}).",
                code="not_sent",
            ) from None
        except httpx.TransportError as exc:
            if mutation:
                raise BackendUnavailable(
                    f"Flash's answer to {operation} was lost ({type(exc).__name__}): the invoice "
                    "may or may not exist. Not re-sent; check before creating another.",
                    code="outcome_unknown",
                ) from None
            raise BackendUnavailable(
                f"Flash did not answer {operation} ({type(exc).__name__}).", code="transport"
            ) from None
        return self._parse(response, operation, mutation=mutation)

    def _parse(
        self, response: httpx.Response, operation: str, *, mutation: bool = False
    ) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            raise BackendUnauthorized(self._unauthorized_message(response), code=f"http_{status}")
        if status == 429:
            retry_after = _float_or(response.headers.get("Retry-After"), 1.0)
            raise BackendRateLimited(
                f"Flash is rate limiting the terminal; retry in {retry_after:g} s.",
                retry_after_s=retry_after,
                code=CODE_TOO_MANY_REQUESTS,
            )
        if status >= 500:
            if mutation:
                # A gateway 502/504 can come after the upstream already created the invoice.
                raise BackendUnavailable(
                    f"Flash answered HTTP {status} to {operation}: the invoice may or may not "
                    "exist. Not re-sent; check before creating another.",
                    code="outcome_unknown",
                )
            raise BackendUnavailable(f"Flash answered HTTP {status} to {operation}.", code="5xx")
        try:
            body = response.json()
        except ValueError:
            raise BackendProtocolError(
                f"Flash answered HTTP {status} to {operation} with a body that is not JSON."
            ) from None
        if not isinstance(body, dict):
            raise BackendProtocolError(f"Flash answered {operation} with a non-object body.")
        errors = body.get("errors")
        if errors:
            raise _top_level_error(errors if isinstance(errors, list) else [errors], operation)
        if status >= 400:
            raise BackendProtocolError(f"Flash answered HTTP {status} to {operation}.")
        data = body.get("data")
        if not isinstance(data, dict):
            raise BackendProtocolError(f"Flash answered {operation} without data.")
        return data

    def _unauthorized_message(self, response: httpx.Response) -> str:
        code = None
        try:
            body = response.json()
            if isinstance(body, dict):
                code = body.get("error")
        except ValueError:
            pass  # HTML from the gateway
        if not self._has_secret:
            return (
                f"Flash refused an anonymous request (HTTP {response.status_code}). Check the "
                "Flash URL, or configure an API key."
            )
        what = "invalid API key" if code == "invalid_api_key" else "credential refused"
        return (
            f"Flash refused the terminal's API key (HTTP {response.status_code}, {what}). "
            "Check the key in the terminal settings: it may be wrong, revoked or lack a scope."
        )


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


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _minutes(request: InvoiceRequest) -> int:
    # Flash's expiresIn is in whole minutes; round down so the invoice never outlives the sale.
    return max(1, request.expires_in_s // 60)


def _round_minor(amount: Decimal) -> int:
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def _float_or(value: Any, default: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if result >= 0 else default


def _check_plausible(actual_msat: int, expected_msat: Decimal, tolerance: Decimal) -> None:
    """Refuse a BOLT11 whose amount is far from what our own rate says (a pricing accident).

    One sat of slack on top of the relative tolerance: Flash rounds USD invoices to whole sats.
    """
    allowed = expected_msat * tolerance + _SAT_MSAT
    if expected_msat <= 0 or abs(Decimal(actual_msat) - expected_msat) > allowed:
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


def _price_from(raw: Any, currency: str) -> _Price:
    if not isinstance(raw, dict):
        raise BackendProtocolError("Flash answered realtimePrice without a price.")
    if str(raw.get("denominatorCurrency", "")).upper() != currency:
        raise BackendProtocolError(
            f"Flash priced {raw.get('denominatorCurrency')!r} when asked for {currency}."
        )
    try:
        per_sat = _price_value(raw["btcSatPrice"])
        per_cent = _price_value(raw["usdCentPrice"])
        timestamp = float(raw["timestamp"])
    except (KeyError, TypeError, ValueError):
        raise BackendProtocolError("Flash's realtimePrice is malformed.") from None
    if per_sat <= 0 or per_cent <= 0:
        # Never price from a zero rate: it once turned a 30.50 EUR sale into a 1-sat invoice.
        raise BackendProtocolError(f"Flash returned a zero or negative {currency} price.")
    return _Price(currency, per_sat, per_cent, timestamp)


def _price_value(raw: dict[str, Any]) -> Decimal:
    # base / 10^offset, exactly: both are integers in the schema (SafeInt, Int).
    return Decimal(int(raw["base"])).scaleb(-int(raw["offset"]))


def _payload(data: dict[str, Any], field_name: str) -> dict[str, Any]:
    payload = data.get(field_name)
    if not isinstance(payload, dict):
        raise BackendProtocolError(f"Flash answered without {field_name}.")
    errors = payload.get("errors") or []
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        message = "; ".join(
            str(e.get("message", "?"))[:_MAX_MESSAGE] for e in errors if isinstance(e, dict)
        )
        raise BackendRejected(f"Flash refused the request: {message}", code=first.get("code"))
    return payload


def _status_from(data: dict[str, Any], field_name: str) -> InvoiceStatus:
    payload = _payload(data, field_name)
    return _status_value(payload.get("status"))


def _status_value(raw: Any) -> InvoiceStatus:
    status = _STATUS.get(raw) if isinstance(raw, str) else None
    if status is None:
        raise BackendProtocolError(f"Flash reported an unknown invoice status {raw!r}.")
    return status


def _status_from_push(payload: dict[str, Any]) -> InvoiceStatus | None:
    """A subscription `next` payload; errors are logged and left to the HTTP poll to judge."""
    if payload.get("errors"):
        logger.warning("status subscription error: %s", json.dumps(payload["errors"])[:300])
        return None
    try:
        return _status_from(payload.get("data") or {}, "lnInvoicePaymentStatus")
    except BackendError as exc:
        logger.warning("status subscription: %s", exc.message)
        return None


def _top_level_error(errors: list[Any], operation: str) -> BackendError:
    entries = [e for e in errors if isinstance(e, dict)]
    message = "; ".join(str(e.get("message", "?"))[:_MAX_MESSAGE] for e in entries) or "error"
    for entry in entries:
        extensions = entry.get("extensions") or {}
        code = extensions.get("code")
        if code == CODE_TOO_MANY_REQUESTS:
            retry_after = _float_or(extensions.get("retryAfterSeconds"), 1.0)
            return BackendRateLimited(
                f"Flash is rate limiting the terminal; retry in {retry_after:g} s.",
                retry_after_s=retry_after,
                code=code,
            )
        if code in _AUTH_CODES:
            return BackendUnauthorized(f"Flash refused {operation}: {message}", code=code)
        if code in _SCHEMA_CODES:
            return BackendProtocolError(
                f"Flash does not accept the terminal's {operation} ({message}): "
                "the API may have changed.",
                code=code,
            )
        if code == "INTERNAL_SERVER_ERROR":
            return BackendUnavailable(f"Flash failed on {operation}: {message}", code=code)
    first_code = (entries[0].get("extensions") or {}).get("code") if entries else None
    return BackendRejected(f"Flash refused {operation}: {message}", code=first_code)
