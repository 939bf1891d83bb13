"""BTCPay Server Greenfield backend (a store whose Lightning node may be the Flash plugin).

Supported: BTCPay Server 2.0.0 and later (the Flash plugin needs 2.0.0 too). `health()` refuses
1.x by its version (`GET /api/v1/server/info`): 1.x does not adjust `due` to a rounded BOLT11, so
every sale through a provider that rounds (the Flash plugin does) would be refused, and 1.x is no
longer maintained upstream. The invoice calls still read 1.x shapes without crashing (the request
names the Lightning method `BTC-LightningNetwork`, which 1.x and 2.x both accept; 2.x reports it
as `paymentMethodId: "BTC-LN"`, 1.x as `paymentMethod: "BTC-LightningNetwork"`).

Greenfield calls used (all under `/api/v1`, header `Authorization: token <apiKey>`):
- `GET  stores/{storeId}/invoices?orderId=…`            find the invoice of a sale (idempotency)
- `GET  stores/{storeId}/invoices?status=…&startDate=…&skip=…&take=…`   received payments
- `POST stores/{storeId}/invoices`                       create (`btcpay.store.cancreateinvoice`)
- `GET  stores/{storeId}/invoices/{id}`                  status (`btcpay.store.canviewinvoices`)
- `GET  stores/{storeId}/invoices/{id}/payment-methods`  the BOLT11 (`destination`), `due`, payments
- `POST stores/{storeId}/invoices/{id}/payment-methods/{pm}/activate`   lazy payment methods
- `GET  stores/{storeId}/rates?currencyPair=BTC_JMD`     (`btcpay.store.canviewstoresettings`)
- `GET  stores/{storeId}`                                the store exists (canviewstoresettings)
- `GET  health`, `GET api-keys/current`, `GET server/info`   health, permissions, version
- refunds (`btcpay_refunds`): `POST stores/{storeId}/invoices/{id}/refund` (a pull payment),
  `GET pull-payments/{id}/lnurl`, `GET stores/{storeId}/pull-payments`,
  `POST pull-payments/{id}/payouts`

Idempotency: the sale id goes in `metadata.orderId` (an indexed field). Creation is never retried
blindly; before every POST, and after an ambiguous POST failure, the invoice is looked up by
orderId, so a retried creation finds the invoice the first attempt made.

Status: `Settled` is paid; `Expired` with `additionalStatus` `PaidLate`/`PaidOver` is paid (the
money arrived after the invoice expired); `Expired` + `PaidPartial` is `UNDERPAID` (not paid,
money to refund); `Invalid` is not paid.

A wrong store id is answered 403 `missing-permission` (BTCPay fails the authorization before it
looks the store up), never 404: every 403 names both causes, and `health()` tells them apart.
Every answer is checked by type; server text is cleaned (no control characters, bounded) before it
reaches a message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from terminal.adapters.backends.btcpay_refunds import BTCPayRefunds
from terminal.adapters.backends.http import (
    RetryPolicy,
    body_excerpt,
    parse_json,
    retry_after_s,
    try_json,
    with_retries,
)
from terminal.adapters.backends.json_endpoint import HttpAnswer, HttpClient
from terminal.core.memo import parse_memo_tag
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
from terminal.core.ports.refunds import CannotSend, PullPaymentPayout, PullPaymentRefund
from terminal.core.text import clean_text as _clean
from terminal.protocols.invoice import (
    InvoiceCheckError,
    Network,
    check_invoice,
    decode_invoice,
)

log = logging.getLogger(__name__)

SERVICE = "BTCPay"
MIN_VERSION = (2, 0, 0)
PERM_CREATE_INVOICE = "btcpay.store.cancreateinvoice"
PERM_VIEW_INVOICES = "btcpay.store.canviewinvoices"
PERM_VIEW_STORE_SETTINGS = "btcpay.store.canviewstoresettings"
NEEDED_PERMISSIONS = (PERM_CREATE_INVOICE, PERM_VIEW_INVOICES, PERM_VIEW_STORE_SETTINGS)
# BTCPay's policy hierarchy (BTCPayServerServices.cs PolicyDefinitions; 1.13's PolicyMap):
# a policy grants the ones it includes, recursively; `unrestricted` grants everything.
POLICY_INCLUDES: Mapping[str, tuple[str, ...]] = {
    "btcpay.store.canmodifystoresettings": (
        "btcpay.store.canmodifyinvoices",
        PERM_VIEW_STORE_SETTINGS,
    ),
    "btcpay.store.canmodifyinvoices": (PERM_VIEW_INVOICES, PERM_CREATE_INVOICE),
    PERM_VIEW_STORE_SETTINGS: (PERM_VIEW_INVOICES,),
}
UNRESTRICTED = "unrestricted"

# The Lightning method as the request names it: 1.x and 2.x both accept the legacy name.
PAYMENT_METHOD_REQUEST = "BTC-LightningNetwork"
# As the answers name it: 2.x `paymentMethodId: "BTC-LN"`, 1.x `paymentMethod:
# "BTC-LightningNetwork"` (BTCPay compares ids without regard to case).
LN_METHOD_IDS = frozenset({"BTC-LN", "BTC-LIGHTNINGNETWORK"})
MSAT_PER_BTC = 10**11
BTCPAY_SATS = "SATS"  # BTCPay's currency code for whole sats
# A sats-priced sale is charged BTCPay's `due`, which BTCPay moves to the BOLT11's amount when
# the Lightning provider rounds (the Flash plugin goes through whole US cents, at least one). The
# difference is bounded: 2 % of the amount or 100 sats (a cent is 10–50 sats at any recent price),
# whichever is more; beyond that the invoice is refused, not charged to a card.
MAX_SAT_TWEAK_RATIO = Decimal("0.02")
MAX_SAT_TWEAK_FLOOR_MSAT = 100_000
# received_payments: an invoice is created before it is paid, at most its lifetime plus BTCPay's
# monitoring window (24 h by default) earlier; search that far back from `since`.
RECEIVED_LOOKBACK_S = 2 * 86400
SEARCH_PAGE = 100
SEARCH_MAX_PAGES = 200  # 20,000 invoices: beyond that, narrow `since`
MAX_TEXT = 200  # server text in a message, in characters

_STATUS = {
    "New": InvoiceStatus.PENDING,
    "Processing": InvoiceStatus.PENDING,  # paid in full, waiting for confirmations
    "Settled": InvoiceStatus.PAID,
    "Expired": InvoiceStatus.EXPIRED,
    "Invalid": InvoiceStatus.EXPIRED,  # the merchant will not get (keep) the money
}
PAID_LATE = frozenset({"PaidLate", "PaidOver"})
PAID_PARTIAL = "PaidPartial"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_POLICY = re.compile(r"(btcpay\.([a-z0-9]+\.)*[a-z0-9]+|unrestricted)")


# ---------------------------------------------------------------------- answers, checked by type


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """Server text fit for a message: printable, one line, at most `limit` characters."""
    return _clean(value, limit)


MAX_DECIMAL = Decimal(10) ** 15  # above any BTC amount or BTC price a server can mean


def _decimal_or_none(value: object) -> Decimal | None:
    """A finite decimal of sane size from a JSON number or numeric string, else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    if isinstance(value, str) and len(value) > 64:
        return None
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return dec if dec.is_finite() and abs(dec) < MAX_DECIMAL else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _btc_to_msat(value: Decimal) -> int | None:
    msat = value * MSAT_PER_BTC
    return int(msat) if msat == msat.to_integral_value() else None


@dataclass(frozen=True)
class GreenfieldInvoice:
    """The fields of a Greenfield `InvoiceData` the terminal uses, checked."""

    id: str
    status: str
    additional_status: str
    amount: Decimal | None
    currency: str
    metadata: Mapping[str, Any]
    created: int | None

    @classmethod
    def parse(cls, data: object) -> GreenfieldInvoice:
        if not isinstance(data, dict):
            raise _shape("an invoice is not a JSON object")
        invoice_id = data.get("id")
        if not isinstance(invoice_id, str) or not invoice_id or len(invoice_id) > 100:
            raise _shape("an invoice has no valid id")
        status = data.get("status")
        if not isinstance(status, str) or status not in _STATUS:
            raise BackendProtocolError(
                f"BTCPay invoice {clean_text(invoice_id, 40)} has an unknown status "
                f"{clean_text(str(status), 40)!r}",
                code="status",
            )
        additional = data.get("additionalStatus")
        metadata = data.get("metadata")
        cur = data.get("currency")
        return cls(
            id=invoice_id,
            status=status,
            additional_status=additional if isinstance(additional, str) else "None",
            amount=_decimal_or_none(data.get("amount")),
            currency=cur.upper() if isinstance(cur, str) else "",
            metadata=metadata if isinstance(metadata, dict) else {},
            created=_int_or_none(data.get("createdTime")),
        )

    @property
    def terminal_status(self) -> InvoiceStatus:
        if self.status == "Expired":
            if self.additional_status in PAID_LATE:
                return InvoiceStatus.PAID
            if self.additional_status == PAID_PARTIAL:
                return InvoiceStatus.UNDERPAID
        return _STATUS[self.status]

    @property
    def money_arrived(self) -> bool:
        """BTCPay holds a payment for it (all or part): settled, paid late/over/partially."""
        return self.status == "Settled" or self.additional_status in (*PAID_LATE, PAID_PARTIAL)

    def meta(self, name: str) -> str | None:
        """A metadata text field, also looked up in `posData` (the terminal's metadata)."""
        value = self.metadata.get(name)
        if not isinstance(value, str):
            pos = self.metadata.get("posData")
            value = pos.get(name) if isinstance(pos, dict) else None
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class LightningMethod:
    """The Lightning entry of `…/payment-methods`, checked."""

    method_id: str
    activated: bool
    destination: str | None
    due: Decimal | None  # BTC still due ("uncapped": 0 once paid, negative when overpaid)
    amount: Decimal | None  # BTC the invoice asks for in all (BTCPay's tweak included)
    payment_hash: str | None
    payments: tuple[tuple[int, int], ...]  # (received unix seconds, msat)

    @classmethod
    def pick(cls, methods: object, store_id: str) -> LightningMethod:
        if not isinstance(methods, list):
            raise _shape("payment methods are not a list")
        for entry in methods:
            if not isinstance(entry, dict):
                continue
            method_id = entry.get("paymentMethodId", entry.get("paymentMethod"))
            if isinstance(method_id, str) and method_id.upper() in LN_METHOD_IDS:
                return cls._parse(entry, method_id)
        raise BackendRejected(
            f"BTCPay store {store_id} has no Lightning payment method (BTC-LN) enabled for "
            f"this invoice",
            code="no_lightning",
        )

    @classmethod
    def _parse(cls, entry: dict[str, Any], method_id: str) -> LightningMethod:
        destination = entry.get("destination")
        if destination is not None and not isinstance(destination, str):
            raise _shape("the Lightning destination is not text")
        additional = entry.get("additionalData")
        stated = additional.get("paymentHash") if isinstance(additional, dict) else None
        payment_hash = stated.lower() if isinstance(stated, str) else None
        if payment_hash is not None and not _HEX64.fullmatch(payment_hash):
            raise _shape("the stated payment hash is not 64 hex characters")
        payments: list[tuple[int, int]] = []
        raw_payments = entry.get("payments")
        for payment in raw_payments if isinstance(raw_payments, list) else ():
            if not isinstance(payment, dict) or payment.get("status") == "Invalid":
                continue
            value = _decimal_or_none(payment.get("value"))
            received = _int_or_none(payment.get("receivedDate"))
            msat = _btc_to_msat(value) if value is not None else None
            if msat is None or msat <= 0 or received is None:
                raise _shape("a payment has no valid value or receivedDate")
            payments.append((received, msat))
        activated = entry.get("activated", True)
        return cls(
            method_id=method_id,
            activated=activated if isinstance(activated, bool) else True,
            destination=destination or None,
            due=_decimal_or_none(entry.get("due")),
            amount=_decimal_or_none(entry.get("amount")),
            payment_hash=payment_hash,
            payments=tuple(payments),
        )

    @property
    def paid_msat(self) -> int:
        return sum(msat for _, msat in self.payments)


def _shape(what: str) -> BackendProtocolError:
    return BackendProtocolError(f"BTCPay answered something unexpected: {what}", code="shape")


# ---------------------------------------------------------------------- permissions, version


def policy_grants(granted: str, wanted: str) -> bool:
    """Whether BTCPay policy `granted` includes `wanted` (recursively)."""
    if granted in (wanted, UNRESTRICTED):
        return True
    return any(policy_grants(child, wanted) for child in POLICY_INCLUDES.get(granted, ()))


def _scoped(granted: Iterable[str]) -> list[tuple[str, str | None]]:
    """`policy:storeId` / `policy` (every store) as (policy, store or None)."""
    out = []
    for entry in granted:
        policy, _, scope = entry.partition(":")
        out.append((policy, scope or None))
    return out


def missing_permissions(granted: Iterable[str], store_id: str,
                        needed: Iterable[str] = NEEDED_PERMISSIONS) -> list[str]:
    """The permissions of `needed` that `granted` (as `api-keys/current` lists them) does not
    give on `store_id`."""
    scoped = _scoped(granted)
    return [
        want for want in needed
        if not any(policy_grants(policy, want) and scope in (None, store_id)
                   for policy, scope in scoped)
    ]


def other_stores(granted: Iterable[str], store_id: str) -> list[str]:
    """Stores the key holds a needed permission on, other than `store_id`."""
    return sorted({
        scope for policy, scope in _scoped(granted)
        if scope is not None and scope != store_id
        and any(policy_grants(policy, want) for want in NEEDED_PERMISSIONS)
    })


def parse_version(value: object) -> tuple[int, int, int] | None:
    """`2.4.1`, `v2.4.1`, `2.4.1+abcdef` → (2, 4, 1); anything else → None."""
    if not isinstance(value, str):
        return None
    match = re.match(r"\s*v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?", value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_text(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class Diagnosis:
    """What `health()` found, with the fix a technician should make (enroll and doctor)."""

    ok: bool
    detail: str
    fix: str = ""
    version: str | None = None
    latency_ms: float | None = None


# ---------------------------------------------------------------------- the backend


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
        self._http = HttpClient(service=SERVICE, timeout_s=timeout_s,
                                https=base_url.lower().startswith("https:"))
        self.poll_interval_s = poll_interval_s
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._refunds = BTCPayRefunds(self)

    def __repr__(self) -> str:
        return (
            f"BTCPayBackend(base_url={self._base[: -len('/api/v1')]!r}, "
            f"store_id={self.store_id!r}, network={self.network.name.lower()})"
        )

    # ------------------------------------------------------------------ transport

    def _store_url(self, path: str = "") -> str:
        return f"{self._base}/stores/{self.store_id}{path}"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.__api_key}", "Accept": "application/json"}

    async def _call(
        self,
        method: str,
        url: str,
        *,
        permission: str | None,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        response = await self._http.request(method, url, headers=self._auth_headers(),
                                            params=params, json_body=json_body)
        if response.status_code >= 300:
            raise self._error(response, permission)
        if not expect_json:
            return None
        try:
            return parse_json(response, service=SERVICE)
        except BackendProtocolError as exc:
            raise BackendProtocolError(clean_text(exc.message), code=exc.code) from None

    async def _read(
        self, url: str, *, permission: str, params: dict[str, str] | None = None
    ) -> Any:
        return await with_retries(
            lambda: self._call("GET", url, permission=permission, params=params), self._retry
        )

    def _error(self, response: HttpAnswer, permission: str | None) -> BackendError:
        status = response.status_code
        body = try_json(response)
        code = clean_text(body.get("code"), 60) if isinstance(body, dict) else ""
        said = _greenfield_message(body)
        if status == 401:
            why = f": {said}" if said else ""
            return BackendUnauthorized(
                f"BTCPay refused the API key (HTTP 401{why}). Check backend.btcpay.api_key; the "
                f"key needs {', '.join(NEEDED_PERMISSIONS)} on store {self.store_id}.",
                code="unauthenticated",
            )
        if status == 403:
            missing = body.get("missingPermission") if isinstance(body, dict) else None
            if not (isinstance(missing, str) and _POLICY.fullmatch(missing)):
                missing = permission or "a permission"
            return BackendUnauthorized(
                f"BTCPay refused {missing} on store {self.store_id}: either that store does not "
                f"exist (check backend.btcpay.store_id; BTCPay answers a wrong store id this "
                f"way) or the API key lacks {missing} on it",
                code="missing_permission",
            )
        if status == 404:
            if code == "invoice-not-found":
                return BackendRejected("BTCPay has no such invoice in this store",
                                       code="not_found")
            detail = said or body_excerpt(response)
            return BackendRejected(
                f"BTCPay answered HTTP 404 ({clean_text(detail, 80) or 'not found'}): check "
                f"backend.btcpay.url and store_id {self.store_id!r}",
                code="not_found",
            )
        if status == 429:
            return BackendRateLimited(
                "BTCPay (or a proxy in front of it) is rate limiting this terminal",
                retry_after_s=retry_after_s(response),
            )
        if status >= 500:
            return BackendUnavailable(
                f"BTCPay is not working right now (HTTP {status})", code=f"http_{status}"
            )
        if status in (400, 422):
            detail = said or clean_text(body_excerpt(response))
            return BackendRejected(f"BTCPay refused the request: {detail}", code="validation")
        return BackendProtocolError(
            f"BTCPay answered HTTP {status}: {clean_text(body_excerpt(response))}",
            code=f"http_{status}",
        )

    # ------------------------------------------------------------------ invoices

    async def create_invoice(self, request: InvoiceRequest) -> Invoice:
        amount = _request_amount(request)
        order_id = request.idempotency_key
        created: GreenfieldInvoice | None = None
        for attempt in range(self._retry.attempts):
            created = await self._find_by_order_id(order_id)
            if created is not None:
                break
            try:
                answer = await self._call(
                    "POST",
                    self._store_url("/invoices"),
                    permission=PERM_CREATE_INVOICE,
                    json_body=self._create_body(request, amount),
                )
                created = GreenfieldInvoice.parse(answer)
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
                "paymentMethods": [PAYMENT_METHOD_REQUEST],
                "expirationMinutes": max(1, math.ceil(request.expires_in_s / 60)),
            },
        }

    async def _find_by_order_id(self, order_id: str) -> GreenfieldInvoice | None:
        found = await self._read(
            self._store_url("/invoices"),
            permission=PERM_VIEW_INVOICES,
            params={"orderId": order_id},
        )
        if not isinstance(found, list):
            raise _shape("the invoice search did not return a list")
        # Filter ourselves too: a server that ignored the query must not hand us another sale.
        mine = [
            inv for inv in (GreenfieldInvoice.parse(item) for item in found)
            if inv.metadata.get("orderId") == order_id
        ]
        if not mine:
            return None
        # Prefer a paid invoice, then a live one, over a dead one; newest first.
        rank = {InvoiceStatus.PAID: 2, InvoiceStatus.PENDING: 1}
        mine.sort(key=lambda inv: (rank.get(inv.terminal_status, 0), inv.created or 0),
                  reverse=True)
        return mine[0]

    async def _invoice_from(self, data: GreenfieldInvoice, amount: Money) -> Invoice:
        status = data.terminal_status
        if status in (InvoiceStatus.EXPIRED, InvoiceStatus.UNDERPAID):
            raise BackendRejected(
                "the invoice for this sale has already expired; start the sale again",
                code="invoice_expired",
            )
        method = await self._lightning_method(data.id)
        bolt11 = method.destination
        if bolt11 is None:
            raise BackendProtocolError("BTCPay gave no Lightning invoice", code="no_destination")
        expected_msat = _expected_msat(amount, method)
        try:
            decoded = check_invoice(
                bolt11,
                network=self.network,
                expected_msat=expected_msat,
                expected_payment_hash=method.payment_hash,
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
            backend_ref=data.id,
        )

    async def _payment_methods(self, invoice_id: str) -> LightningMethod:
        methods = await self._read(
            self._store_url(f"/invoices/{invoice_id}/payment-methods"),
            permission=PERM_VIEW_INVOICES,
        )
        return LightningMethod.pick(methods, self.store_id)

    async def _lightning_method(self, invoice_id: str) -> LightningMethod:
        url = self._store_url(f"/invoices/{invoice_id}/payment-methods")
        for activated_once in (False, True):
            method = await self._payment_methods(invoice_id)
            if method.activated and method.destination:
                return method
            if activated_once:
                break
            # Activation is idempotent on BTCPay's side, so it may be retried like a read.
            activate = functools.partial(
                self._call, "POST", f"{url}/{method.method_id}/activate",
                permission=PERM_VIEW_INVOICES, expect_json=False,
            )
            await with_retries(activate, self._retry)
        raise BackendProtocolError(
            "BTCPay did not activate the Lightning payment method", code="not_activated"
        )

    async def _get_invoice(self, invoice_id: str) -> GreenfieldInvoice:
        data = await self._read(
            self._store_url(f"/invoices/{invoice_id}"), permission=PERM_VIEW_INVOICES
        )
        found = GreenfieldInvoice.parse(data)
        if found.id != invoice_id:
            raise _shape("the invoice answered is not the one asked for")
        return found

    async def invoice_status(self, invoice: Invoice) -> InvoiceStatus:
        found = await self._get_invoice(invoice.backend_ref)
        if found.terminal_status is InvoiceStatus.UNDERPAID:
            log.warning("BTCPay invoice %s expired with only part of its amount paid",
                        clean_text(found.id, 40))
        return found.terminal_status

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

    # ------------------------------------------------------------------ received payments

    async def received_payments(self, since: float) -> list[ReceivedPayment]:
        """Payments BTCPay holds as received for this terminal's invoices since `since` (unix
        seconds), newest first: settled invoices, and expired ones paid late, over or in part
        (`metadata["btcpayAdditionalStatus"]` says which; a partial payment's `amount_msat` is
        what arrived, less than the sale). An invoice is this terminal's when its metadata
        `terminalId`, or the tag in its memo (`itemDesc`), names this terminal."""
        start = max(0, int(since) - RECEIVED_LOOKBACK_S)
        found: list[ReceivedPayment] = []
        for status in ("Settled", "Expired"):
            async for inv in self._search({"status": status, "startDate": str(start)}):
                if not inv.money_arrived or not self._is_mine(inv):
                    continue
                payment = await self._received(inv)
                if payment is not None and payment.settled_at >= since:
                    found.append(payment)
        found.sort(key=lambda p: p.settled_at, reverse=True)
        return found

    async def find_payment(self, invoice: Invoice) -> ReceivedPayment | None:
        """The payment BTCPay holds for `invoice` (by its BTCPay id, else by its BOLT11), or
        None when none arrived. A partial payment is returned with the amount that arrived."""
        found: GreenfieldInvoice | None = None
        if invoice.backend_ref:
            try:
                found = await self._get_invoice(invoice.backend_ref)
            except BackendRejected as exc:
                if exc.code != "not_found":
                    raise
        if found is None:
            async for inv in self._search({"textSearch": invoice.bolt11[:512]}):
                found = inv
                break
        if found is None:
            return None
        return await self._received(found, expected_hash=invoice.payment_hash)

    def _is_mine(self, inv: GreenfieldInvoice) -> bool:
        if inv.meta("terminalId") == self.terminal_id:
            return True
        tag = parse_memo_tag(inv.meta("itemDesc"))
        return tag is not None and tag.terminal_id == self.terminal_id

    async def _search(self, query: dict[str, str]) -> AsyncGenerator[GreenfieldInvoice, None]:
        """Invoices matching a Greenfield search, newest first, page by page."""
        for page in range(SEARCH_MAX_PAGES):
            params = dict(query, skip=str(page * SEARCH_PAGE), take=str(SEARCH_PAGE))
            rows = await self._read(self._store_url("/invoices"), permission=PERM_VIEW_INVOICES,
                                    params=params)
            if not isinstance(rows, list):
                raise _shape("the invoice search did not return a list")
            for row in rows:
                try:
                    yield GreenfieldInvoice.parse(row)
                except BackendProtocolError as exc:  # one odd invoice must not hide the rest
                    log.warning("BTCPay invoice search: skipped one invoice (%s)", exc.message)
            if len(rows) < SEARCH_PAGE:
                return
        log.warning("BTCPay invoice search stopped after %d invoices", SEARCH_MAX_PAGES *
                    SEARCH_PAGE)

    async def _received(self, inv: GreenfieldInvoice, expected_hash: str | None = None
                        ) -> ReceivedPayment | None:
        method = await self._payment_methods(inv.id)
        payment_hash = method.payment_hash
        if method.destination is not None:
            try:
                decoded = decode_invoice(method.destination)
            except InvoiceCheckError:
                raise _shape(f"invoice {clean_text(inv.id, 40)} carries no valid BOLT11") from None
            if payment_hash is not None and payment_hash != decoded.payment_hash:
                raise _shape(f"invoice {clean_text(inv.id, 40)}'s payment hash does not match "
                             "its BOLT11")
            payment_hash = decoded.payment_hash
        if payment_hash is None:
            return None
        if expected_hash is not None and payment_hash != expected_hash.lower():
            raise BackendProtocolError(
                f"BTCPay invoice {clean_text(inv.id, 40)} is for another payment hash",
                code="hash_mismatch",
            )
        if method.payments:
            amount_msat = method.paid_msat
            settled_at = float(max(received for received, _ in method.payments))
        elif inv.status == "Settled":  # marked settled by the merchant: no payment recorded
            amount = method.amount
            amount_msat = (_btc_to_msat(amount) or 0) if amount is not None else 0
            settled_at = float(inv.created or 0)
        else:
            return None
        metadata = {
            "btcpayStatus": inv.status,
            "btcpayAdditionalStatus": inv.additional_status,
        }
        for name in ("orderId", "saleId", "terminalId"):
            value = inv.meta(name)
            if value is not None:
                metadata[name] = clean_text(value, 100)
        memo = inv.meta("itemDesc")
        return ReceivedPayment(
            payment_hash=payment_hash,
            amount_msat=amount_msat,
            settled_at=settled_at,
            bolt11=method.destination,
            memo=clean_text(memo, 700) if memo is not None else None,
            backend_ref=inv.id,
            metadata=metadata,
        )

    # ------------------------------------------------------------------ rates, health

    # ------------------------------------------------------------------ refunds

    def send_problem(self) -> CannotSend | None:
        return self._refunds.send_problem()

    async def refund_invoice(self, invoice_ref: str, amount_msat: int, *, name: str,
                             description: str) -> PullPaymentRefund:
        """BTCPay's refund of a sale's invoice: a pull payment (see `btcpay_refunds`)."""
        return await self._refunds.refund_invoice(invoice_ref, amount_msat, name=name,
                                                  description=description)

    async def find_refund(self, name: str) -> PullPaymentRefund | None:
        return await self._refunds.find_refund(name)

    async def claim(self, pull_payment_id: str, destination: str, amount_msat: int) -> str:
        return await self._refunds.claim(pull_payment_id, destination, amount_msat)

    async def payouts(self, pull_payment_id: str) -> list[PullPaymentPayout]:
        return await self._refunds.payouts(pull_payment_id)

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
            texts = errors if isinstance(errors, list) else [errors]
            detail = clean_text("; ".join(clean_text(e) for e in texts if isinstance(e, str)),
                                160) or "no rate"
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

    async def server_version(self) -> tuple[int, int, int] | None:
        """BTCPay Server's version (`GET server/info`, any valid key), or None if unreadable."""
        info = await self._call("GET", f"{self._base}/server/info", permission=None)
        return parse_version(info.get("version")) if isinstance(info, dict) else None

    async def diagnose(self) -> Diagnosis:
        """Reachable, the key accepted, a supported version, the permissions on the store, and
        the store itself; the first problem found, with its fix."""
        started = time.perf_counter()
        try:
            await self._call("GET", f"{self._base}/health", permission=None)
            key = await self._call("GET", f"{self._base}/api-keys/current", permission=None)
            version = await self.server_version()
        except BackendUnauthorized as exc:
            return Diagnosis(False, exc.message, "check backend.btcpay.api_key (a Greenfield API "
                             "key of the store's owner or a manager)", None, _ms_since(started))
        except BackendError as exc:
            return Diagnosis(False, exc.message, "check backend.btcpay.url and the network",
                             None, _ms_since(started))
        shown = version_text(version) if version else None
        if version is not None and version < MIN_VERSION:
            return Diagnosis(
                False,
                f"BTCPay Server {shown} is older than {version_text(MIN_VERSION)}, the oldest "
                f"version this terminal supports (the Flash plugin needs it too)",
                f"upgrade BTCPay Server to {version_text(MIN_VERSION)} or later",
                shown, _ms_since(started))
        granted = key.get("permissions") if isinstance(key, dict) else None
        if not isinstance(granted, list) or not all(isinstance(g, str) for g in granted):
            return Diagnosis(False, "BTCPay did not list the API key's permissions",
                             "check backend.btcpay.url points at BTCPay Server itself", shown,
                             _ms_since(started))
        need = ", ".join(NEEDED_PERMISSIONS)
        missing = missing_permissions(granted, self.store_id)
        if missing:
            others = other_stores(granted, self.store_id)
            if others:
                stores = ", ".join(clean_text(s, 60) for s in others[:5])
                return Diagnosis(
                    False,
                    f"the API key is for store {stores}, not {self.store_id}: it lacks "
                    f"{', '.join(missing)} on {self.store_id}",
                    "check backend.btcpay.store_id (the id in the store's URL in BTCPay), or "
                    f"create a key for this store with {need}",
                    shown, _ms_since(started))
            return Diagnosis(
                False,
                f"the API key lacks {', '.join(missing)} on store {self.store_id}",
                f"create an API key with {need} on this store", shown, _ms_since(started))
        try:
            store = await self._read(self._store_url(), permission=PERM_VIEW_STORE_SETTINGS)
        except BackendUnauthorized:
            return Diagnosis(
                False,
                f"BTCPay has no store {self.store_id} that this API key may use (it answers a "
                "store id that does not exist with \"missing permission\")",
                "check backend.btcpay.store_id (the id in the store's URL in BTCPay)",
                shown, _ms_since(started))
        except BackendError as exc:
            return Diagnosis(False, exc.message, "check backend.btcpay.url and store_id", shown,
                             _ms_since(started))
        name = clean_text(store.get("name"), 60) if isinstance(store, dict) else ""
        where = f"store {name!r} ({self.store_id})" if name else f"store {self.store_id}"
        return Diagnosis(
            True,
            f"BTCPay {shown or '(version unknown)'} reachable; {where}: the API key may create "
            "and view invoices and read rates",
            "", shown, _ms_since(started))

    async def health(self) -> Health:
        found = await self.diagnose()
        return Health(found.ok, found.detail, found.latency_ms)

    async def aclose(self) -> None:
        await self._http.aclose()


# ---------------------------------------------------------------------- helpers (pure)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


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


def _require_same_sale(data: GreenfieldInvoice, amount: Money, order_id: str) -> None:
    """An invoice found (or created) for this orderId must be for this sale's amount."""
    want_cur = BTCPAY_SATS if amount.currency.is_sat else amount.currency.code
    if data.currency != want_cur or data.amount is None or data.amount != amount.major:
        raise BackendRejected(
            f"BTCPay already has an invoice for sale {order_id} with a different amount "
            f"({data.amount} {clean_text(data.currency, 12)}); use a new sale",
            code="idempotency_conflict",
        )


def _expected_msat(amount: Money, method: LightningMethod) -> int:
    """The msat the BOLT11 must carry: what BTCPay says is due. BTCPay prices a fiat sale at its
    own rate, and moves `due` to the BOLT11's amount when the provider rounds; a sats sale must
    stay within the rounding bound of its price."""
    due = method.due
    if due is None or due <= 0:  # already paid: `due` is 0, the total is in `amount`
        due = method.amount
    if due is None or due <= 0:
        raise BackendProtocolError("BTCPay did not state the Lightning amount", code="shape")
    msat = _btc_to_msat(due)
    if msat is None:
        raise BackendProtocolError(
            "BTCPay stated a Lightning amount finer than a millisatoshi", code="shape"
        )
    if amount.currency.is_sat:
        requested = amount.minor * 1000
        bound = max(int(requested * MAX_SAT_TWEAK_RATIO), MAX_SAT_TWEAK_FLOOR_MSAT)
        if abs(msat - requested) > bound:
            raise BackendProtocolError(
                f"BTCPay asks {msat // 1000} sats for a {amount.minor}-sat sale (more than its "
                f"Lightning provider's rounding can explain)",
                code="invoice_amount_mismatch",
            )
    return msat


def _greenfield_message(body: object) -> str:
    """Greenfield errors: `{code, message}` or a validation list `[{path, message}]`, cleaned."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return clean_text(body["message"])
    if isinstance(body, list):
        parts = []
        for e in body:
            if not isinstance(e, dict):
                continue
            path, message = clean_text(e.get("path"), 60), clean_text(e.get("message"))
            parts.append(f"{path}: {message}" if path else message)
        return clean_text("; ".join(p for p in parts if p))
    return ""
