"""BTCPay Server Greenfield backend (a store whose Lightning node may be the Flash plugin).

Greenfield calls used (all under `/api/v1`, header `Authorization: token <apiKey>`):
- `GET  stores/{storeId}/invoices?orderId=…`            find the invoice of a sale (idempotency)
- `POST stores/{storeId}/invoices`                       create (`btcpay.store.cancreateinvoice`)
- `GET  stores/{storeId}/invoices/{id}`                  status (`btcpay.store.canviewinvoices`)
- `GET  stores/{storeId}/invoices/{id}/payment-methods`  the BOLT11 (`destination` of BTC-LN)
- `POST stores/{storeId}/invoices/{id}/payment-methods/BTC-LN/activate`   lazy payment methods
- `GET  stores/{storeId}/rates?currencyPair=BTC_JMD`     `[{currencyPair, rate, errors}]`
                                                          (`btcpay.store.canviewstoresettings`)
- `GET  health`, `GET api-keys/current`                  health / permission check

Idempotency: the sale id goes in `metadata.orderId` (an indexed field). Creation is never retried
blindly; before every POST, and after an ambiguous POST failure, the invoice is looked up by
orderId, so a retried creation finds the invoice the first attempt made.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from terminal.adapters.backends.http import (
    RetryPolicy,
    body_excerpt,
    parse_json,
    retry_after_s,
    send,
    try_json,
    with_retries,
)
from terminal.core.money import Money, UnknownCurrency, currency, minor_per_sat_from_btc_price
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
from terminal.protocols.invoice import InvoiceCheckError, Network, check_invoice

SERVICE = "BTCPay"
PERM_CREATE_INVOICE = "btcpay.store.cancreateinvoice"
PERM_VIEW_INVOICES = "btcpay.store.canviewinvoices"
PERM_VIEW_STORE_SETTINGS = "btcpay.store.canviewstoresettings"
# Policies that include the two the terminal needs (BTCPay's permission hierarchy).
_SUPERSETS = (
    "unrestricted",
    "btcpay.store.canmodifystoresettings",
    "btcpay.store.canmodifyinvoices",
)

PAYMENT_METHOD_LN = "BTC-LN"
PAYMENT_METHOD_LN_LEGACY = "BTC-LightningNetwork"  # servers before 2.0
MSAT_PER_BTC = 10**11
BTCPAY_SATS = "SATS"  # BTCPay's currency code for whole sats

# Greenfield `InvoiceStatus` -> terminal status. `Processing` waits (on-chain confirmations; not
# expected for BTC-LN). `Invalid` means the merchant will not get the money: treat as failed.
_STATUS = {
    "New": InvoiceStatus.PENDING,
    "Processing": InvoiceStatus.PENDING,
    "Settled": InvoiceStatus.PAID,
    "Expired": InvoiceStatus.EXPIRED,
    "Invalid": InvoiceStatus.EXPIRED,
}


class BTCPayBackend:
    name = "btcpay"

    def __init__(
        self,
        base_url: str,
        store_id: str,
        api_key: str,
        *,
        network: Network | str,
        terminal_id: str,
        http_client: httpx.AsyncClient | None = None,
        poll_interval_s: float = 1.0,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("BTCPay API key is empty")
        self._base = base_url.rstrip("/") + "/api/v1"
        self.store_id = store_id
        self.__api_key = api_key  # name-mangled: never in vars() dumps by accident, nor in repr
        self.network = Network.parse(network)
        self.terminal_id = terminal_id
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"BTCPayBackend(base_url={self._base[: -len('/api/v1')]!r}, "
            f"store_id={self.store_id!r}, network={self.network.name.lower()})"
        )

    # ------------------------------------------------------------------ transport

    def _store_url(self, path: str = "") -> str:
        return f"{self._base}/stores/{self.store_id}{path}"

    async def _call(
        self,
        method: str,
        url: str,
        *,
        permission: str,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        response = await send(
            self._client,
            method,
            url,
            service=SERVICE,
            headers={"Authorization": f"token {self.__api_key}", "Accept": "application/json"},
            params=params,
            json_body=json_body,
            timeout_s=self._timeout_s,
        )
        if response.status_code >= 300:
            raise self._error(response, permission)
        if not expect_json:
            return None
        return parse_json(response, service=SERVICE)

    async def _read(
        self, url: str, *, permission: str, params: dict[str, str] | None = None
    ) -> Any:
        return await with_retries(
            lambda: self._call("GET", url, permission=permission, params=params), self._retry
        )

    def _error(self, response: httpx.Response, permission: str) -> BackendError:
        status = response.status_code
        body = try_json(response)
        if status == 401:
            return BackendUnauthorized(
                f"BTCPay refused the API key (HTTP 401). Check the key in the settings; it needs "
                f"{PERM_CREATE_INVOICE} and {PERM_VIEW_INVOICES} on store {self.store_id}.",
                code="unauthenticated",
            )
        if status == 403:
            missing = permission
            if isinstance(body, dict) and isinstance(body.get("missingPermission"), str):
                missing = body["missingPermission"]
            return BackendUnauthorized(
                f"the BTCPay API key lacks the permission {missing} on store {self.store_id}",
                code="missing_permission",
            )
        if status == 404:
            return BackendRejected(
                f"BTCPay has no such store or invoice (HTTP 404): check the store id "
                f"{self.store_id!r}. {_greenfield_message(body)}".strip(),
                code="not_found",
            )
        if status == 429:
            return BackendRateLimited(
                "BTCPay is rate limiting this terminal", retry_after_s=retry_after_s(response)
            )
        if status >= 500:
            return BackendUnavailable(
                f"BTCPay is not working right now (HTTP {status})", code=f"http_{status}"
            )
        if status in (400, 422):
            detail = _greenfield_message(body) or body_excerpt(response)
            return BackendRejected(f"BTCPay refused the request: {detail}", code="validation")
        return BackendProtocolError(
            f"BTCPay answered HTTP {status}: {body_excerpt(response)}", code=f"http_{status}"
        )

    # ------------------------------------------------------------------ invoices

    async def create_invoice(self, request: InvoiceRequest) -> Invoice:
        amount = _request_amount(request)
        order_id = request.idempotency_key
        created: dict[str, Any] | None = None
        for attempt in range(self._retry.attempts):
            created = await self._find_by_order_id(order_id)
            if created is not None:
                break
            try:
                created = await self._call(
                    "POST",
                    self._store_url("/invoices"),
                    permission=PERM_CREATE_INVOICE,
                    json_body=self._create_body(request, amount),
                )
                break
            except BackendUnavailable as exc:
                # Ambiguous: BTCPay may have created it. Look it up (top of loop) before anything.
                if attempt + 1 >= self._retry.attempts:
                    raise
                await self._retry.sleep(self._retry.delay(attempt + 1, exc))
        assert created is not None
        _require_same_sale(created, amount, order_id)
        return await self._invoice_from(created, amount)

    def _create_body(self, request: InvoiceRequest, amount: Money) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "orderId": request.idempotency_key,  # indexed by BTCPay: the idempotency key
            "terminalId": self.terminal_id,
            "itemDesc": request.memo,
            "posData": dict(request.metadata),
        }
        return {
            "amount": _amount_text(amount),
            "currency": BTCPAY_SATS if amount.currency.is_sat else amount.currency.code,
            "metadata": metadata,
            "checkout": {
                "paymentMethods": [PAYMENT_METHOD_LN],
                "expirationMinutes": max(1, math.ceil(request.expires_in_s / 60)),
            },
        }

    async def _find_by_order_id(self, order_id: str) -> dict[str, Any] | None:
        found = await self._read(
            self._store_url("/invoices"),
            permission=PERM_VIEW_INVOICES,
            params={"orderId": order_id},
        )
        if not isinstance(found, list):
            raise BackendProtocolError("BTCPay invoice search did not return a list", code="shape")
        # Filter ourselves too: a server that ignored the query must not hand us another sale.
        mine = [
            inv
            for inv in found
            if isinstance(inv, dict) and (inv.get("metadata") or {}).get("orderId") == order_id
        ]
        if not mine:
            return None
        # Prefer a live or paid invoice over a dead one, newest first.
        mine.sort(key=lambda inv: (inv.get("status") in ("New", "Processing", "Settled"),
                                   inv.get("createdTime") or 0), reverse=True)  # fmt: skip
        return mine[0]

    async def _invoice_from(self, data: dict[str, Any], amount: Money) -> Invoice:
        invoice_id = _field(data, "id", str)
        status = _status(data)
        if status is InvoiceStatus.EXPIRED:
            raise BackendRejected(
                "the invoice for this sale has already expired; start the sale again",
                code="invoice_expired",
            )
        method = await self._lightning_method(invoice_id)
        bolt11 = method.get("destination")
        if not isinstance(bolt11, str) or not bolt11:
            raise BackendProtocolError("BTCPay gave no Lightning invoice", code="no_destination")
        expected_msat = _expected_msat(amount, method)
        additional = method.get("additionalData")
        expected_hash = additional.get("paymentHash") if isinstance(additional, dict) else None
        try:
            decoded = check_invoice(
                bolt11,
                network=self.network,
                expected_msat=expected_msat,
                expected_payment_hash=expected_hash if isinstance(expected_hash, str) else None,
                now=self._clock(),
                allow_expired=status is InvoiceStatus.PAID,
            )
        except InvoiceCheckError as exc:
            raise BackendProtocolError(
                f"BTCPay returned an invoice the terminal refuses: {exc.message}",
                code=f"invoice_{exc.reason_code.value}",
            ) from exc
        return Invoice(
            bolt11=decoded.bolt11,
            payment_hash=decoded.payment_hash,
            amount_msat=decoded.amount_msat or 0,
            expires_at=float(decoded.expires_at),
            backend_ref=invoice_id,
        )

    async def _lightning_method(self, invoice_id: str) -> dict[str, Any]:
        url = self._store_url(f"/invoices/{invoice_id}/payment-methods")
        for activated_once in (False, True):
            methods = await self._read(url, permission=PERM_VIEW_INVOICES)
            if not isinstance(methods, list):
                raise BackendProtocolError("BTCPay payment methods are not a list", code="shape")
            method = next(
                (
                    m
                    for m in methods
                    if isinstance(m, dict)
                    and m.get("paymentMethodId") in (PAYMENT_METHOD_LN, PAYMENT_METHOD_LN_LEGACY)
                ),
                None,
            )
            if method is None:
                raise BackendRejected(
                    f"BTCPay store {self.store_id} has no Lightning payment method (BTC-LN) "
                    f"enabled for this invoice",
                    code="no_lightning",
                )
            if method.get("activated", True) and method.get("destination"):
                return method
            if activated_once:
                break
            pm_id = method["paymentMethodId"]
            # Activation is idempotent on BTCPay's side, so it may be retried like a read.
            await with_retries(
                functools.partial(self._call, "POST", f"{url}/{pm_id}/activate",
                                  permission=PERM_VIEW_INVOICES, expect_json=False),
                self._retry,
            )
        raise BackendProtocolError(
            "BTCPay did not activate the Lightning payment method", code="not_activated"
        )

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus:
        data = await self._read(
            self._store_url(f"/invoices/{invoice.backend_ref}"), permission=PERM_VIEW_INVOICES
        )
        if not isinstance(data, dict):
            raise BackendProtocolError("BTCPay invoice is not an object", code="shape")
        return _status(data)

    async def watch(self, invoice: Invoice) -> AsyncGenerator[InvoiceStatus, None]:
        """Poll every `poll_interval_s`; yield each change (the first status included) and stop
        after a final one. Errors (after the read retries) propagate to the caller."""
        last: InvoiceStatus | None = None
        while True:
            status = await self.invoice_status(invoice)
            if status is not last:
                last = status
                yield status
            if status.is_final:
                return
            await self._sleep(self.poll_interval_s)

    # ------------------------------------------------------------------ rates, health

    async def display_rate(self, currency_code: str) -> DisplayRate:
        try:
            cur = currency(currency_code)
        except UnknownCurrency as exc:
            raise BackendRejected(str(exc), code="currency") from exc
        now = self._clock()
        if cur.is_sat:
            return DisplayRate("SAT", Decimal(1), 0, now)
        pair = f"BTC_{cur.code}"
        rows = await self._read(
            self._store_url("/rates"),
            permission=PERM_VIEW_STORE_SETTINGS,
            params={"currencyPair": pair},
        )
        row = next(
            (r for r in rows if isinstance(r, dict) and r.get("currencyPair") == pair), None
        ) if isinstance(rows, list) else None  # fmt: skip
        if row is None:
            raise BackendProtocolError(f"BTCPay returned no {pair} rate", code="shape")
        errors = row.get("errors") or []
        btc_price = _decimal_or_none(row.get("rate"))
        if errors or btc_price is None:
            detail = "; ".join(str(e) for e in errors)[:160] or "no rate"
            raise BackendUnavailable(
                f"BTCPay could not get the BTC/{cur.code} rate: {detail}", code="rate_unavailable"
            )
        if btc_price <= 0:
            raise BackendProtocolError(f"BTCPay returned a non-positive {pair} rate", code="rate")
        return DisplayRate(
            currency=cur.code,
            minor_per_sat=minor_per_sat_from_btc_price(btc_price, cur.fraction_digits),
            fraction_digits=cur.fraction_digits,
            timestamp=now,  # Greenfield does not say when the rate was priced: use fetch time
        )

    async def health(self) -> Health:
        started = time.perf_counter()
        try:
            await self._call("GET", f"{self._base}/health", permission="(none)")
            key = await self._call("GET", f"{self._base}/api-keys/current", permission="(none)")
        except BackendError as exc:
            return Health(False, exc.message, _ms_since(started))
        latency = _ms_since(started)
        granted = key.get("permissions") if isinstance(key, dict) else None
        if not isinstance(granted, list):
            return Health(True, "BTCPay reachable; API key accepted", latency)
        missing = [
            p
            for p in (PERM_CREATE_INVOICE, PERM_VIEW_INVOICES)
            if not _has_permission([str(g) for g in granted], p, self.store_id)
        ]
        if missing:
            return Health(
                False,
                f"BTCPay reachable, but the API key lacks {', '.join(missing)} "
                f"on store {self.store_id}",
                latency,
            )
        return Health(True, "BTCPay reachable; API key may create and view invoices", latency)

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        raise BackendRejected("BTCPay: looking up received payments is not implemented yet.",
                              code="not_supported")

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        raise BackendRejected("BTCPay: looking up a payment is not implemented yet.",
                              code="not_supported")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


# ---------------------------------------------------------------------- helpers (pure)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _has_permission(granted: list[str], wanted: str, store_id: str) -> bool:
    for g in granted:
        policy, _, scope = g.partition(":")
        if scope and scope != store_id:
            continue
        if policy == wanted or policy in _SUPERSETS:
            return True
    return False


def _request_amount(request: InvoiceRequest) -> Money:
    if request.amount_minor <= 0:
        raise BackendRejected("the amount must be more than zero", code="amount")
    try:
        cur = currency(request.currency)
    except UnknownCurrency as exc:
        raise BackendRejected(str(exc), code="currency") from exc
    return Money(request.amount_minor, cur)


def _amount_text(amount: Money) -> str:
    return f"{amount.major:.{amount.currency.fraction_digits}f}"


def _decimal_or_none(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        dec = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        return None
    return dec if dec.is_finite() else None


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise BackendProtocolError(f"BTCPay invoice has no valid {name!r}", code="shape")
    return value


def _status(data: dict[str, Any]) -> InvoiceStatus:
    raw = data.get("status")
    try:
        return _STATUS[raw]  # type: ignore[index]
    except (KeyError, TypeError):
        raise BackendProtocolError(
            f"BTCPay invoice has unknown status {raw!r}", code="status"
        ) from None


def _require_same_sale(data: dict[str, Any], amount: Money, order_id: str) -> None:
    """An invoice found (or created) for this orderId must be for this sale's amount."""
    cur = str(data.get("currency") or "").upper()
    want_cur = BTCPAY_SATS if amount.currency.is_sat else amount.currency.code
    got = _decimal_or_none(data.get("amount"))
    if cur != want_cur or got is None or got != amount.major:
        raise BackendRejected(
            f"BTCPay already has an invoice for sale {order_id} with a different amount "
            f"({data.get('amount')} {cur}); use a new sale",
            code="idempotency_conflict",
        )


def _expected_msat(amount: Money, method: dict[str, Any]) -> int:
    """The msat the BOLT11 must carry. For a sat sale it is known exactly; for a fiat sale BTCPay
    converted at its own rate, and the payment method states the BTC amount due."""
    if amount.currency.is_sat:
        return amount.minor * 1000
    due = _decimal_or_none(method.get("due"))
    if due is None or due <= 0:
        due = _decimal_or_none(method.get("amount"))
    if due is None or due <= 0:
        raise BackendProtocolError("BTCPay did not state the Lightning amount", code="shape")
    msat = due * MSAT_PER_BTC
    if msat != msat.to_integral_value():
        raise BackendProtocolError(
            "BTCPay stated a Lightning amount finer than a millisatoshi", code="shape"
        )
    return int(msat)


def _greenfield_message(body: object) -> str:
    """Greenfield errors: `{code, message}` or a validation list `[{path, message}]`."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"][:200]
    if isinstance(body, list):
        parts = [
            f"{e.get('path')}: {e.get('message')}" if e.get("path") else str(e.get("message"))
            for e in body
            if isinstance(e, dict)
        ]
        return "; ".join(parts)[:200]
    return ""
