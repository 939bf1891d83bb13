"""A small BTCPay Server Greenfield fake, served for real over HTTP on 127.0.0.1.

What it models (shapes as in BTCPay's Greenfield swagger):
- `Authorization: token <key>` with per-key permissions; unknown key -> 401 (an HTML page, as a
  reverse proxy in front of BTCPay may send), missing permission -> 403
  `{"code": "missing-permission", "missingPermission": …}`;
- `POST /api/v1/stores/{storeId}/invoices` (amount as a decimal string, currency incl. `SATS`,
  metadata incl. the indexed `orderId`, `checkout.expirationMinutes`, `checkout.paymentMethods`),
  validation errors as HTTP 422 `[{"path", "message"}]`;
- `GET …/invoices?orderId=…` (search by orderId), `GET …/invoices/{id}`;
- `GET …/invoices/{id}/payment-methods` with a `BTC-LN` entry (or the pre-2.0
  `BTC-LightningNetwork` id) whose `destination` is a real BOLT11, signed with a test node key via
  the `bolt11` package; lazy payment methods (`activated: false`, no destination) and
  `POST …/payment-methods/{pmId}/activate`;
- `GET /api/v1/stores/{storeId}/rates?currencyPair=BTC_XXX` -> `[{currencyPair, rate, errors}]`
  from a static price table; `GET /api/v1/health`; `GET /api/v1/api-keys/current`;
- statuses `New`, `Settled` (`settle()`, or `pay(bolt11)` as a wallet or card issuer holding only
  the BOLT11 would), `Expired` (`expire()`, or the fake's clock passing
  `expirationTime`), `Invalid` (`invalidate()`);
- failure injection: `fail_next(...)` (any status/body for the next matching requests) and
  `fail_after_create` (the invoice is created, then the answer is lost as a 502).

What it does NOT model: webhooks, on-chain payments, `Processing`, partial/over/late payments,
payment tolerance, refunds and pull payments (Boltcards), payouts, store/rate configuration,
real Lightning (nothing pays: tests call `settle()`), pagination (`skip`/`take`), archiving,
the BitPay-compatible API, LNURL, monitoring windows, Basic auth.

Usage: `with FakeBTCPay() as fake: …fake.base_url…` (a background uvicorn thread).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import bolt11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

TEST_NODE_KEY = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734"
DEFAULT_KEY = "fake-btcpay-api-key-0123456789abcdef"
ALL_PERMISSIONS = (
    "btcpay.store.cancreateinvoice",
    "btcpay.store.canviewinvoices",
    "btcpay.store.canviewstoresettings",
)
MSAT_PER_BTC = 10**11
_BOLT11_PREFIX = {"mainnet": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt"}


def mint_bolt11(
    *,
    network: str,
    amount_msat: int,
    payment_hash: str,
    description: str,
    expiry_s: int,
    timestamp: int,
    node_key: str = TEST_NODE_KEY,
) -> str:
    """A real, signed BOLT11 (bolt11 2.2.0 encodes and signs with coincurve)."""
    tags = bolt11.Tags()
    tags.add(bolt11.TagChar.payment_hash, payment_hash)
    tags.add(bolt11.TagChar.payment_secret, secrets.token_hex(32))
    tags.add(bolt11.TagChar.description, description)
    tags.add(bolt11.TagChar.expire_time, expiry_s)
    tags.add(bolt11.TagChar.min_final_cltv_expiry, 80)
    invoice = bolt11.Bolt11(
        currency=_BOLT11_PREFIX.get(network, network),
        date=timestamp,
        tags=tags,
        amount_msat=bolt11.MilliSatoshi(amount_msat),
    )
    return bolt11.encode(invoice, node_key)


@dataclass
class FakeInvoice:
    id: str
    amount: Decimal
    currency: str
    metadata: dict[str, Any]
    created: int
    expiration: int
    msat: int
    payment_hash: str
    bolt11: str
    status: str = "New"
    activated: bool = True

    def to_json(self, store_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "storeId": store_id,
            "amount": str(self.amount),
            "currency": self.currency,
            "type": "Standard",
            "checkoutLink": f"http://127.0.0.1/i/{self.id}",
            "createdTime": self.created,
            "expirationTime": self.expiration,
            "monitoringExpiration": self.expiration + 86400,
            "status": self.status,
            "additionalStatus": "None",
            "metadata": self.metadata,
            "checkout": {"paymentMethods": ["BTC-LN"]},
            "archived": False,
        }


@dataclass
class _Failure:
    method: str
    path_contains: str
    status: int
    body: str
    content_type: str
    remaining: int


@dataclass
class FakeBTCPay:
    store_id: str = "FakeStore1"
    network: str = "regtest"
    # BTC price in major units of each currency (what BTCPay's rates endpoint returns).
    rates: dict[str, Decimal] = field(
        default_factory=lambda: {"USD": Decimal("100000"), "JMD": Decimal("15600000.00")}
    )
    api_keys: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {DEFAULT_KEY: ALL_PERMISSIONS}
    )
    lazy_payment_methods: bool = False
    legacy_payment_method_id: bool = False
    fail_after_create: int = 0  # create the invoice, then answer 502 this many times
    # Tampering knobs, to test that the terminal refuses a bad invoice:
    bolt11_msat_offset: int = 0  # BOLT11 amount differs from the stated `amount`
    report_wrong_payment_hash: bool = False  # additionalData.paymentHash is not the BOLT11's
    bolt11_network: str | None = None  # mint for another network than `network`
    clock: Callable[[], float] = time.time

    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    # Set whenever a terminal reads one invoice's status (GET …/invoices/{id}): a test can wait on
    # it to act while the terminal is waiting for settlement, with no sleeps.
    status_read: threading.Event = field(default_factory=threading.Event)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    base_url: str = ""

    # ------------------------------------------------------------------ control

    def fail_next(
        self,
        method: str,
        path_contains: str,
        *,
        status: int,
        body: str = '{"code":"generic-error","message":"Internal Server Error"}',
        content_type: str = "application/json",
        times: int = 1,
    ) -> None:
        with self._lock:
            self._failures.append(
                _Failure(method.upper(), path_contains, status, body, content_type, times)
            )

    def settle(self, invoice_id: str) -> None:
        self._set_status(invoice_id, "Settled")

    def pay(self, bolt11: str) -> str:
        """Pay the invoice carrying this BOLT11 (a wallet scanning the QR, or a card issuer
        paying the `pr` it was sent, knows nothing else): a `New` invoice becomes `Settled`.
        Returns the invoice id; KeyError for an unknown BOLT11, ValueError if not payable."""
        with self._lock:
            self._refresh_expiry()
            inv = next((i for i in self.invoices.values() if i.bolt11 == bolt11), None)
            if inv is None:
                raise KeyError("no invoice carries this BOLT11")
            if inv.status != "New":
                raise ValueError(f"invoice {inv.id} is {inv.status}: it cannot be paid")
            inv.status = "Settled"
            return inv.id

    def expire(self, invoice_id: str) -> None:
        self._set_status(invoice_id, "Expired")

    def invalidate(self, invoice_id: str) -> None:
        self._set_status(invoice_id, "Invalid")

    def _set_status(self, invoice_id: str, status: str) -> None:
        with self._lock:
            self.invoices[invoice_id].status = status

    def count(self, method: str, path_suffix: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.endswith(path_suffix))

    # ------------------------------------------------------------------ server

    def __enter__(self) -> FakeBTCPay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # Bind and listen here, before the thread starts: connections queue in the backlog until
        # uvicorn accepts them, so no "is it up yet?" waiting is needed.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.app(), log_level="warning", access_log=False, lifespan="off", loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-btcpay"
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def app(self) -> Starlette:
        s = "/api/v1/stores/{store_id}"
        return Starlette(
            routes=[
                Route("/api/v1/health", self._health),
                Route("/api/v1/api-keys/current", self._current_key),
                Route(s + "/invoices", self._invoices, methods=["GET", "POST"]),
                Route(s + "/invoices/{invoice_id}", self._get_invoice),
                Route(s + "/invoices/{invoice_id}/payment-methods", self._payment_methods),
                Route(
                    s + "/invoices/{invoice_id}/payment-methods/{pm_id}/activate",
                    self._activate,
                    methods=["POST"],
                ),
                Route(s + "/rates", self._rates),
            ]
        )

    # ------------------------------------------------------------------ plumbing

    def _pre(self, request: Request, permission: str | None) -> Response | None:
        """Log, inject failures, authenticate. A Response means: answer this instead."""
        with self._lock:
            self.requests.append(
                (request.method, request.url.path, dict(request.query_params.multi_items()))
            )
            for failure in self._failures:
                if (
                    failure.remaining > 0
                    and failure.method == request.method
                    and failure.path_contains in request.url.path
                ):
                    failure.remaining -= 1
                    return Response(failure.body, failure.status, media_type=failure.content_type)
        if permission is None:
            return None
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        granted = self.api_keys.get(key) if scheme.lower() == "token" else None
        if granted is None:
            return HTMLResponse(
                "<html><head><title>401 Authorization Required</title></head>"
                "<body><center><h1>401 Authorization Required</h1></center></body></html>",
                401,
            )
        if request.path_params.get("store_id") not in (None, self.store_id):
            return JSONResponse({"code": "store-not-found", "message": "Store not found"}, 404)
        if permission not in granted:
            return JSONResponse(
                {
                    "code": "missing-permission",
                    "message": f"Insufficient API Permissions. Please use an API key with "
                    f'permission "{permission}".',
                    "missingPermission": permission,
                },
                403,
            )
        return None

    def _refresh_expiry(self) -> None:
        now = self.clock()
        for inv in self.invoices.values():
            if inv.status == "New" and now >= inv.expiration:
                inv.status = "Expired"

    def _invoice_or_404(self, request: Request) -> FakeInvoice | Response:
        inv = self.invoices.get(request.path_params["invoice_id"])
        if inv is None:
            return JSONResponse(
                {"code": "invoice-not-found", "message": "The invoice was not found"}, 404
            )
        return inv

    # ------------------------------------------------------------------ endpoints

    async def _health(self, request: Request) -> Response:
        return self._pre(request, None) or JSONResponse({"synchronized": True})

    async def _current_key(self, request: Request) -> Response:
        early = self._pre(request, None)
        if early:
            return early
        key = request.headers.get("authorization", "").partition(" ")[2]
        if key not in self.api_keys:
            return HTMLResponse("<html><body>401 Unauthorized</body></html>", 401)
        perms = [f"{p}:{self.store_id}" for p in self.api_keys[key]]
        return JSONResponse({"apiKey": key, "label": "terminal", "permissions": perms})

    async def _invoices(self, request: Request) -> Response:
        if request.method == "POST":
            early = self._pre(request, "btcpay.store.cancreateinvoice")
            return early or await self._create(request)
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        wanted = request.query_params.getlist("orderId")
        with self._lock:
            self._refresh_expiry()
            found = [
                inv.to_json(self.store_id)
                for inv in self.invoices.values()
                if not wanted or inv.metadata.get("orderId") in wanted
            ]
        found.sort(key=lambda i: i["createdTime"], reverse=True)
        return JSONResponse(found)

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        errors = []
        try:
            amount = Decimal(str(body.get("amount")))
            if not amount.is_finite() or amount <= 0:
                raise InvalidOperation
        except InvalidOperation:
            errors.append({"path": "amount", "message": "Amount should be greater than 0"})
            amount = Decimal(0)
        cur = str(body.get("currency") or "").upper()
        if cur != "SATS" and cur not in self.rates:
            errors.append({"path": "currency", "message": f"Currency {cur} is not supported"})
        if errors:
            return JSONResponse(errors, 422)
        checkout = body.get("checkout") or {}
        minutes = Decimal(str(checkout.get("expirationMinutes") or 15))
        now = int(self.clock())
        expiration = now + int(minutes * 60)
        if cur == "SATS":
            msat = int(amount) * 1000
        else:  # BTCPay prices LN to the msat: amount / rate, rounded up to 11 BTC decimals
            msat = math.ceil(amount / self.rates[cur] * MSAT_PER_BTC)
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        inv = FakeInvoice(
            id=uuid.uuid4().hex[:22],
            amount=amount,
            currency=cur,
            metadata=dict(body.get("metadata") or {}),
            created=now,
            expiration=expiration,
            msat=msat,
            payment_hash=payment_hash,
            bolt11=mint_bolt11(
                network=self.bolt11_network or self.network,
                amount_msat=msat + self.bolt11_msat_offset,
                payment_hash=payment_hash,
                description=str((body.get("metadata") or {}).get("itemDesc") or "invoice"),
                expiry_s=expiration - now,
                timestamp=now,
            ),
            activated=not self.lazy_payment_methods,
        )
        with self._lock:
            self.invoices[inv.id] = inv
            if self.fail_after_create > 0:
                self.fail_after_create -= 1
                return HTMLResponse("<html><body>502 Bad Gateway</body></html>", 502)
        return JSONResponse(inv.to_json(self.store_id))

    async def _get_invoice(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            self._refresh_expiry()
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            answer = JSONResponse(inv.to_json(self.store_id))
        self.status_read.set()
        return answer

    async def _payment_methods(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            btc = Decimal(inv.msat) / MSAT_PER_BTC
            paid = inv.status == "Settled"
            stated_hash = "00" * 32 if self.report_wrong_payment_hash else inv.payment_hash
            method = {
                "paymentMethodId": "BTC-LightningNetwork"
                if self.legacy_payment_method_id
                else "BTC-LN",
                "currency": "BTC",
                "destination": inv.bolt11 if inv.activated else None,
                "paymentLink": f"lightning:{inv.bolt11}" if inv.activated else None,
                "rate": str(self.rates.get(inv.currency, Decimal(1))),
                "paymentMethodPaid": f"{btc if paid else 0:.11f}",
                "totalPaid": f"{btc if paid else 0:.11f}",
                "due": f"{0 if paid else btc:.11f}",
                "amount": f"{btc:.11f}",
                "paymentMethodFee": "0.00000000000",
                "payments": [],
                "activated": inv.activated,
                "additionalData": {"paymentHash": stated_hash, "invoiceId": inv.id}
                if inv.activated
                else {},
            }
        return JSONResponse([method])

    async def _activate(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            if request.path_params["pm_id"] not in ("BTC-LN", "BTC-LightningNetwork"):
                return JSONResponse(
                    {"code": "invalid-payment-method", "message": "Payment method not found"}, 404
                )
            inv.activated = True
        return Response(status_code=200)

    async def _rates(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewstoresettings")
        if early:
            return early
        out = []
        for pair in request.query_params.getlist("currencyPair"):
            quote = pair.partition("_")[2]
            rate = self.rates.get(quote)
            out.append(
                {"currencyPair": pair, "rate": str(rate), "errors": []}
                if rate is not None
                else {"currencyPair": pair, "rate": None, "errors": [f"No rate for {pair}"]}
            )
        return JSONResponse(out)
