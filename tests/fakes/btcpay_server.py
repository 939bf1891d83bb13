"""A BTCPay Server Greenfield fake, served for real over HTTP on 127.0.0.1.

It answers as the real server does, read from btcpayserver (master 2.4.1 and tags v1.13.7–v2.4.1;
file names in brackets). `version` switches between the 2.x and 1.x behaviours listed here.

Authentication and permissions [Security/GreenField/*, Hosting/BTCPayServerServices.cs]
- `Authorization: token <key>`. A missing or unknown key answers 401 JSON
  `{"code": "unauthenticated", "message": …}` (`proxy_401_html`: the HTML page a reverse proxy in
  front may send instead).
- Policies include others: canmodifystoresettings ⊃ canmodifyinvoices, canviewstoresettings;
  canmodifyinvoices ⊃ canviewinvoices, cancreateinvoice; canviewstoresettings ⊃ canviewinvoices;
  unrestricted ⊃ all. A permission is scoped to one store (`policy:storeId`) or to all.
- A store id that does not exist answers 403 `{"code": "missing-permission",
  "missingPermission": <the route's policy>, "message": …}`, exactly like a key that lacks the
  permission: BTCPay fails the authorization before the store is looked up.
- `api_keys` maps a key to its permissions: `"policy"` (scoped to this fake's store),
  `"policy:OtherStore"` (another store), `"policy:*"` (every store; listed unscoped) or
  `"unrestricted"`.

Invoices [Controllers/GreenField/GreenfieldInvoiceController.cs, HostedServices/InvoiceWatcher.cs,
Services/Invoices/InvoiceRepository.cs, Payments/Lightning/LightningLikePaymentHandler.cs]
- `POST /api/v1/stores/{storeId}/invoices`: `checkout.paymentMethods` is validated per version:
  2.x accepts `BTC-LN` and the legacy `BTC-LightningNetwork`/`BTC-LightningLike`/`BTC_LightningLike`
  (all become `BTC-LN`) and refuses others with 422 `[{"path": "Checkout.PaymentMethods[0]",
  "message": "Invalid PaymentMethodId"}]`; 1.x refuses `BTC-LN` with 422 "Invalid payment method".
  The Lightning price is the amount / rate, rounded up to the msat.
- The Lightning provider may round: `flash_plugin_usd_price` makes the BOLT11 the way the Flash
  plugin does (msat truncated to sats, converted to whole US cents at that price, at least 1 cent,
  and back to sats). 2.x then "tweaks" the payment method fee so that `due` equals the BOLT11's
  amount; 1.x does not (its `due` stays the requested price).
- `GET …/invoices` filters: `orderId`, `status` (new, processing/paid, settled/complete/confirmed,
  expired, invalid), `startDate`/`endDate` (unix seconds, on the creation time; a bad value or
  start > end answers 422), `textSearch` (prefix of a search term: invoice id, order id, the
  BOLT11, store id, price), `skip`/`take`; newest first; archived invoices only with
  `includeArchived=true`.
- `GET …/invoices/{id}`; `GET …/invoices/{id}/payment-methods`: 2.x `{paymentMethodId: "BTC-LN",
  currency, due, amount, paymentMethodFee, payments, additionalData: {paymentHash, invoiceId}, …}`;
  1.x `{paymentMethod: "BTC-LightningNetwork", cryptoCode, networkFee, …}`. `due` is "uncapped"
  (0 once paid, negative when overpaid); `payments` carry `receivedDate` (unix seconds) and `value`.
  Lazy payment methods (`activated: false`, no destination) and `POST …/activate`.
- Statuses as InvoiceWatcher sets them: `New` → `Settled` when payments reach `due` (Lightning
  needs no confirmations), `additionalStatus` `PaidOver` when more; `PaidPartial` while short (the
  invoice stays `New`, then `Expired`); a payment that completes an `Expired` invoice gives
  `Expired` + `PaidLate`; `Settled` + `Marked` for a merchant's manual mark; `Invalid`.
- `GET /api/v1/server/info` (any valid key) `{version, supportedPaymentMethods, …}`;
  `GET /api/v1/stores/{storeId}` (canviewstoresettings); `GET …/rates?currencyPair=BTC_XXX`
  (canviewstoresettings) `[{currencyPair, rate, errors}]`; `GET /api/v1/health`;
  `GET /api/v1/api-keys/current`.

Boltcards [Controllers/GreenField/GreenfieldPullPaymentController.cs,
Data/BoltcardDataExtensions.cs, BoltCardTools IssuerKey.cs/CardKey.cs, Extensions.cs]
- `POST /api/v1/pull-payments/{ppId}/boltcards[?onExisting=UpdateVersion|KeepVersion]` (no auth)
  with `{"UID": "<14 hex>"}` or `{"LNURLW": "<tap URL>"}` → `{"LNURLW": "lnurlw://<host>/boltcard",
  "version", "K0".."K4"}` (upper-case hex). A new card starts at key version 0; re-registering a
  card whose registration was reset bumps the version. Keys: CardKey = CMAC(IssuerKey, 2D003F75 ‖
  UID ‖ version (4 bytes LE) ‖ UTF-8 pull-payment id), computed here with pycryptodome, not with
  the terminal's code. Errors: 404 `{"code": "pullpayment-not-found"}`, 422 `[{path, message}]`,
  400 `{"code": "lnurl-not-supported"}` for a pull payment not in BTC/SATS.

Refunds and pull payments [GreenfieldInvoiceController.cs `RefundInvoice`, InvoiceEntity.cs
`CanRefund`, GreenfieldPullPaymentController.cs, PullPaymentHostedService.cs `SupportsLNURL`]
- `POST …/stores/{storeId}/invoices/{id}/refund` needs
  `btcpay.store.cancreatenonapprovedpullpayments` (included in cancreatepullpayments ⊂
  canmanagepullpayments ⊂ canmodifystoresettings). An
  invoice that is not Settled, Invalid, or Expired with PaidLate/PaidOver/PaidPartial answers 400
  `{"code": "non-refundable", "message": "Cannot refund this invoice"}`; a missing `refundVariant`,
  a `customAmount` outside `Custom`, a Custom amount ≤ 0 or an unknown currency answer 422. The
  variants price as BTCPay does (RateThen: what was paid, in BTC; Fiat: the invoice's currency;
  Custom: as asked; OverpaidAmount only for PaidOver). Claims are auto-approved when the variant
  allows it (not Fiat; Custom only in BTC) AND the key has `btcpay.store.cancreatepullpayments`.
  The answer is the pull payment (`{id, name, description, currency, amount, autoApproveClaims,
  archived, BOLT11Expiration, viewLink, …}`, default name `Refund <invoice id>`).
- `GET /api/v1/pull-payments/{id}/lnurl` (no auth): `{lnurlBech32, lnurlUri}` for a BTC or SATS
  pull payment, 400 `lnurl-not-supported` otherwise, 404 `pullpayment-not-found`; the LNURL's
  withdrawRequest (`GET /BTC/UILNURL/withdraw/pp/{id}`) offers what is left of it.
- `GET …/stores/{storeId}/pull-payments[?includeArchived=true]` (canviewpullpayments), newest
  first; `POST /api/v1/pull-payments/{id}/payouts` (no auth) `{destination, amount,
  payoutMethodId}`: a BOLT11, Lightning Address or LNURL for `BTC-LN` (HandleCreatePayout,
  LightningLikePayoutHandler, ClaimRequest.GetClaimedAmount): 400 `overdraft` when the
  payouts not Cancelled plus this one exceed the pull payment's amount; 400
  `duplicate-destination` only for a BOLT11 whose payment hash an open (not Completed or
  Cancelled) payout of any pull payment holds (addresses and LNURLs are reusable: a second
  POST to one makes a second payout); 422 for a bad method or destination, an expired BOLT11,
  one expiring sooner than the pull payment's `BOLT11Expiration` (days), or one asking more
  than the amount claimed (a BOLT11's own amount is what is claimed). The payout is
  `AwaitingPayment` when claims are auto-approved, else `AwaitingApproval`.
- `GET /api/v1/pull-payments/{id}/payouts[?includeCancelled=true]` (no auth): its payouts
  (Cancelled ones only when asked), 404 `pullpayment-not-found`. `approve_payout`,
  `mark_payout` and `cancel_payout` move a payout as HandleApproval / HandleMarkPaid /
  HandleCancel do: AwaitingApproval → AwaitingPayment → InProgress → Completed, or Cancelled.

Failure injection: `fail_next(...)` (any status/body for the next matching requests) and
`fail_after_create` (the invoice is created, then the answer is lost as a 502). Tampering knobs
(a lying server): `bolt11_msat_offset`, `report_wrong_payment_hash`, `bolt11_network`.

What it does NOT model: webhooks, on-chain payments and confirmations, payment tolerance, paying
payouts out on its own (they stay awaiting until a test moves them), the `/boltcard` tap
endpoint, store/rate configuration, rate limits (BTCPay has none on API keys), the user's role
inside a store, `includePaymentMethods` (2.3.9+), Basic auth, the BitPay-compatible API.

Usage: `with FakeBTCPay() as fake: …fake.base_url…` (a background uvicorn thread).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import bolt11
from Crypto.Cipher import AES
from Crypto.Hash import CMAC
from helpers.loopback import LoopbackServer
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
BOLTCARD_ISSUER_KEY = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
MSAT_PER_BTC = 10**11
SATS_PER_BTC = 10**8
_BOLT11_PREFIX = {"mainnet": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt"}

# Policy hierarchy (BTCPayServerServices.cs AddPolicyDefinitions; the same in 1.13's PolicyMap).
POLICY_INCLUDES: dict[str, tuple[str, ...]] = {
    "btcpay.store.canmodifystoresettings": (
        "btcpay.store.canmodifyinvoices",
        "btcpay.store.canviewstoresettings",
        "btcpay.store.canmanagepullpayments",
    ),
    "btcpay.store.canmodifyinvoices": (
        "btcpay.store.canviewinvoices",
        "btcpay.store.cancreateinvoice",
    ),
    "btcpay.store.canviewstoresettings": ("btcpay.store.canviewinvoices",
                                          "btcpay.store.canviewpullpayments"),
    "btcpay.store.canmanagepullpayments": ("btcpay.store.cancreatepullpayments",
                                           "btcpay.store.canarchivepullpayments"),
    "btcpay.store.cancreatepullpayments": ("btcpay.store.cancreatenonapprovedpullpayments",),
    "btcpay.store.cancreatenonapprovedpullpayments": ("btcpay.store.canviewpullpayments",),
}
PERM_REFUND = "btcpay.store.cancreatenonapprovedpullpayments"
PERM_APPROVE = "btcpay.store.cancreatepullpayments"
REFUND_VARIANTS = ("RateThen", "CurrentRate", "OverpaidAmount", "Fiat", "Custom")
_PAYOUT_METHODS = {"BTC-LN", "BTC-LIGHTNINGNETWORK", "BTC_LIGHTNINGLIKE", "BTC-LIGHTNINGLIKE"}

# 2.x PaymentMethodId.TryParse: the Lightning payment type under its old and new names.
_LN_TYPES = {"ln", "lightninglike", "lightningnetwork", "offchain", "off-chain"}
# 1.x PaymentTypes.TryParse: only the type's id and its normalized name.
_LN_TYPES_V1 = {"lightninglike", "lightningnetwork"}
_STATUS_FILTER = {
    "new": "New",
    "paid": "Processing",
    "processing": "Processing",
    "complete": "Settled",
    "confirmed": "Settled",
    "settled": "Settled",
    "expired": "Expired",
    "invalid": "Invalid",
}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def policy_includes(granted: str, wanted: str) -> bool:
    if granted in (wanted, "unrestricted"):
        return True
    return any(policy_includes(child, wanted) for child in POLICY_INCLUDES.get(granted, ()))


def btc_text(msat: int) -> str:
    """A msat amount as BTCPay writes BTC decimals (NumericStringJsonConverter)."""
    return format(Decimal(msat) / MSAT_PER_BTC, "f")


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


def flash_plugin_msat(requested_msat: int, usd_price: Decimal) -> int:
    """The BOLT11 amount the Flash plugin gets for a requested amount: msat truncated to sats,
    sats to whole US cents (half away from zero, at least 1 cent), cents back to sats at the same
    price (FlashInvoiceService.CreateFlashInvoice)."""
    sats = requested_msat // 1000
    cents = (Decimal(sats) * usd_price * 100 / SATS_PER_BTC).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    cents = max(cents, Decimal(1))
    back = (cents / 100 / usd_price * SATS_PER_BTC).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(back) * 1000


# ---------------------------------------------------------------------- BTCPay's card keys


def _cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC.new(key, ciphermod=AES)
    mac.update(message)
    return mac.digest()


def btcpay_card_keys(issuer_key: bytes, uid: bytes, version: int, pull_payment_id: str
                     ) -> dict[str, bytes]:
    """BoltCardTools' derivation with BTCPay's pull-payment id (CreatePullPaymentCardKey)."""
    card_key = _cmac(issuer_key, bytes.fromhex("2D003F75") + uid + version.to_bytes(4, "little")
                     + pull_payment_id.encode())
    return {
        "K0": _cmac(card_key, bytes.fromhex("2D003F76")),
        "K1": _cmac(issuer_key, bytes.fromhex("2D003F77")),
        "K2": _cmac(card_key, bytes.fromhex("2D003F78")),
        "K3": _cmac(card_key, bytes.fromhex("2D003F79")),
        "K4": _cmac(card_key, bytes.fromhex("2D003F7A")),
    }


def boltcard_id(issuer_key: bytes, uid: bytes) -> str:
    return _cmac(issuer_key, bytes.fromhex("2D003F7B") + uid).hex()


def _sun_mac(k2: bytes, uid: bytes, counter: bytes) -> bytes:
    session = _cmac(k2, bytes.fromhex("3CC300010080") + uid + counter)
    return _cmac(session, b"")[1::2]


def _bad_gateway() -> HTMLResponse:
    """A proxy's answer for a request the server did carry out: the outcome is lost."""
    return HTMLResponse("<html><body>502 Bad Gateway</body></html>", 502)


# ---------------------------------------------------------------------- records


@dataclass
class FakePayment:
    id: str
    received: int  # unix seconds
    msat: int


@dataclass
class FakeInvoice:
    id: str
    amount: Decimal
    currency: str
    metadata: dict[str, Any]
    created: int
    expiration: int
    msat: int  # the Lightning price BTCPay computed (amount / rate, to the msat)
    bolt11_msat: int  # what the provider's BOLT11 asks for
    fee_msat: int  # BTCPay's tweak: `due` = msat + fee_msat (2.x); 0 on 1.x
    payment_hash: str
    bolt11: str
    status: str = "New"
    additional_status: str = "None"
    activated: bool = True
    archived: bool = False
    payments: list[FakePayment] = field(default_factory=list)

    @property
    def due_msat(self) -> int:
        return self.msat + self.fee_msat

    @property
    def paid_msat(self) -> int:
        return sum(p.msat for p in self.payments)

    def search_terms(self, store_id: str) -> list[str]:
        terms = [self.id, store_id, str(self.amount), str(self.created)]
        if self.metadata.get("orderId"):
            terms.append(str(self.metadata["orderId"]))
        if self.activated:
            terms.append(self.bolt11)
        return terms


@dataclass
class FakePullPayment:
    id: str
    name: str
    description: str | None
    currency: str
    amount: Decimal
    auto_approve: bool
    created: int
    invoice_id: str | None = None
    archived: bool = False
    payouts: list[dict[str, Any]] = field(default_factory=list)

    bolt11_expiration_days: int = 30  # the store's RefundBOLT11Expiration (StoreBlob: 30)

    @property
    def claimed(self) -> Decimal:
        """What its payouts hold (Cancelled ones give theirs back)."""
        return sum((Decimal(p["originalAmount"]) for p in self.payouts
                    if p["state"] != "Cancelled"), Decimal(0))


@dataclass
class BoltcardRegistration:
    pull_payment_id: str | None
    version: int
    counter: int = 0


@dataclass
class _Failure:
    method: str
    path_contains: str
    status: int
    body: str
    content_type: str
    remaining: int


# ---------------------------------------------------------------------- the server


@dataclass
class FakeBTCPay:
    store_id: str = "FakeStore1"
    store_name: str = "Fake Store"
    network: str = "regtest"
    version: str = "2.4.1"
    # BTC price in major units of each currency (what BTCPay's rates endpoint returns).
    rates: dict[str, Decimal] = field(
        default_factory=lambda: {"USD": Decimal("100000"), "JMD": Decimal("15600000.00")}
    )
    api_keys: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {DEFAULT_KEY: ALL_PERMISSIONS}
    )
    proxy_401_html: bool = False
    lazy_payment_methods: bool = False
    flash_plugin_usd_price: Decimal | None = None  # the store's Lightning node is the plugin
    fail_after_create: int = 0  # create the invoice, then answer 502 this many times
    fail_after_refund: int = 0  # create the refund's pull payment, then answer 502
    fail_after_payout: int = 0  # create the payout, then answer 502
    garble_after_refund: int = 0  # create it, then answer 200 with a proxy's HTML page
    # Tampering knobs (a lying server), to test that the terminal refuses a bad invoice:
    bolt11_msat_offset: int = 0  # BOLT11 amount differs from `due`, no tweak declared
    report_wrong_payment_hash: bool = False  # additionalData.paymentHash is not the BOLT11's
    bolt11_network: str | None = None  # mint for another network than `network`
    # Boltcards: the server-wide issuer key and the pull payments (id -> currency).
    boltcard_issuer_key: bytes = BOLTCARD_ISSUER_KEY
    pull_payments: dict[str, str] = field(default_factory=dict)
    boltcards: dict[str, BoltcardRegistration] = field(default_factory=dict)  # by card id
    clock: Callable[[], float] = time.time
    refunds: dict[str, FakePullPayment] = field(default_factory=dict)  # pull payments by id

    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    created_bodies: list[dict[str, Any]] = field(default_factory=list)  # POST …/invoices bodies
    # Set whenever a terminal reads one invoice's status (GET …/invoices/{id}): a test can wait on
    # it to act while the terminal is waiting for settlement, with no sleeps.
    status_read: threading.Event = field(default_factory=threading.Event)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: LoopbackServer | None = None
    _sequence: int = 0
    base_url: str = ""

    @property
    def is_v1(self) -> bool:
        return version_tuple(self.version) < (2,)

    @property
    def ln_method_id(self) -> str:
        return "BTC-LightningNetwork" if self.is_v1 else "BTC-LN"

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
        """The whole amount due arrives over Lightning now."""
        with self._lock:
            self._refresh_expiry()
            inv = self.invoices[invoice_id]
            self._record_payment(inv, max(inv.due_msat - inv.paid_msat, 0))

    def pay(self, bolt11: str) -> str:
        """Pay the invoice carrying this BOLT11 (a wallet scanning the QR, or a card issuer
        paying the `pr` it was sent, knows nothing else): its whole amount arrives. Returns the
        invoice id; KeyError for an unknown BOLT11, ValueError if it cannot be paid any more."""
        with self._lock:
            self._refresh_expiry()
            inv = next((i for i in self.invoices.values() if i.bolt11 == bolt11), None)
            if inv is None:
                raise KeyError("no invoice carries this BOLT11")
            if inv.status != "New":
                raise ValueError(f"invoice {inv.id} is {inv.status}: it cannot be paid")
            self._record_payment(inv, inv.bolt11_msat)
            return inv.id

    def receive(self, invoice_id: str, msat: int) -> None:
        """`msat` arrive for this invoice whatever its state (a partial, an over- or a late
        payment, as the merchant's node reports it to BTCPay within the monitoring window)."""
        with self._lock:
            self._refresh_expiry()
            self._record_payment(self.invoices[invoice_id], msat)

    def mark_settled(self, invoice_id: str) -> None:
        """The merchant marks the invoice settled by hand (no payment)."""
        with self._lock:
            inv = self.invoices[invoice_id]
            inv.status, inv.additional_status = "Settled", "Marked"

    def expire(self, invoice_id: str) -> None:
        self._set_status(invoice_id, "Expired")

    def invalidate(self, invoice_id: str) -> None:
        self._set_status(invoice_id, "Invalid")

    def archive(self, invoice_id: str) -> None:
        with self._lock:
            self.invoices[invoice_id].archived = True

    def _set_status(self, invoice_id: str, status: str) -> None:
        with self._lock:
            self.invoices[invoice_id].status = status

    def _record_payment(self, inv: FakeInvoice, msat: int) -> None:
        """InvoiceWatcher.UpdateInvoice for a Lightning payment (confirmed at once)."""
        inv.payments.append(FakePayment(uuid.uuid4().hex, int(self.clock()), msat))
        paid, due = inv.paid_msat, inv.due_msat
        if inv.status not in ("New", "Expired"):
            return
        if paid >= due:
            if inv.status == "New":
                inv.status = "Settled"
                inv.additional_status = "PaidOver" if paid > due else "None"
            elif inv.additional_status != "PaidLate":
                inv.additional_status = "PaidLate"
        elif paid > 0:
            inv.additional_status = "PaidPartial"

    def count(self, method: str, path_suffix: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.endswith(path_suffix))

    def card_keys(self, uid: bytes, version: int, pull_payment_id: str) -> dict[str, bytes]:
        return btcpay_card_keys(self.boltcard_issuer_key, uid, version, pull_payment_id)

    # ------------------------------------------------------------------ server

    def __enter__(self) -> FakeBTCPay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._server = LoopbackServer(self.app(), name="fake-btcpay", loop="asyncio").start()
        self.base_url = self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def app(self) -> Starlette:
        s = "/api/v1/stores/{store_id}"
        return Starlette(
            routes=[
                Route("/api/v1/health", self._health),
                Route("/api/v1/server/info", self._server_info),
                Route("/api/v1/api-keys/current", self._current_key),
                Route(s, self._store),
                Route(s + "/invoices", self._invoices, methods=["GET", "POST"]),
                Route(s + "/invoices/{invoice_id}", self._get_invoice),
                Route(s + "/invoices/{invoice_id}/payment-methods", self._payment_methods),
                Route(
                    s + "/invoices/{invoice_id}/payment-methods/{pm_id}/activate",
                    self._activate,
                    methods=["POST"],
                ),
                Route(s + "/rates", self._rates),
                Route("/api/v1/pull-payments/{pp_id}/boltcards", self._register_boltcard,
                      methods=["POST"]),
                Route(s + "/invoices/{invoice_id}/refund", self._refund, methods=["POST"]),
                Route(s + "/pull-payments", self._list_pull_payments),
                Route("/api/v1/pull-payments/{pp_id}/lnurl", self._pull_payment_lnurl),
                Route("/api/v1/pull-payments/{pp_id}/payouts", self._create_payout,
                      methods=["POST"]),
                Route("/api/v1/pull-payments/{pp_id}/payouts", self._list_payouts),
                Route("/BTC/UILNURL/withdraw/pp/{pp_id}", self._pull_payment_withdraw),
            ]
        )

    # ------------------------------------------------------------------ plumbing

    def _log_and_inject(self, request: Request) -> Response | None:
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
        return None

    def _key(self, request: Request) -> tuple[str, ...] | Response:
        """The permissions of the request's API key, or the 401 answer."""
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        granted = self.api_keys.get(key.strip()) if scheme.lower() == "token" else None
        if granted is not None:
            return granted
        if self.proxy_401_html:
            return HTMLResponse(
                "<html><head><title>401 Authorization Required</title></head>"
                "<body><center><h1>401 Authorization Required</h1></center></body></html>",
                401,
            )
        reason = ("ApiKey authentication failed: Unknown API Key" if auth
                  else "Authentication is required for accessing this endpoint")
        return JSONResponse({"code": "unauthenticated", "message": reason}, 401)

    def _scoped(self, granted: tuple[str, ...]) -> list[tuple[str, str | None]]:
        """(policy, store id or None for every store) of each permission."""
        out: list[tuple[str, str | None]] = []
        for entry in granted:
            policy, sep, scope = entry.partition(":")
            if policy == "unrestricted" or scope == "*":
                out.append((policy, None))
            else:
                out.append((policy, scope if sep else self.store_id))
        return out

    def _pre(self, request: Request, permission: str | None) -> Response | None:
        """Log, inject failures, authenticate, authorize. A Response means: answer this."""
        injected = self._log_and_inject(request)
        if injected is not None or permission is None:
            return injected
        granted = self._key(request)
        if isinstance(granted, Response):
            return granted
        store = request.path_params.get("store_id")
        allowed = any(
            policy_includes(policy, permission) and (scope is None or scope == store)
            for policy, scope in self._scoped(granted)
        )
        # An unknown store fails authorization like a missing permission does.
        if not allowed or (store is not None and store != self.store_id):
            return self._missing_permission(permission)
        return None

    @staticmethod
    def _missing_permission(permission: str) -> Response:
        return JSONResponse(
            {
                "code": "missing-permission",
                "message": f'Insufficient API Permissions. Please use an API key with permission '
                f'"{permission}". You can create an API key in your account\'s settings / Api '
                f"Keys.",
                "missingPermission": permission,
            },
            403,
        )

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

    @staticmethod
    def _validation(*errors: tuple[str, str]) -> Response:
        return JSONResponse([{"path": path, "message": message} for path, message in errors], 422)

    def _invoice_json(self, inv: FakeInvoice) -> dict[str, Any]:
        return {
            "id": inv.id,
            "storeId": self.store_id,
            "amount": str(inv.amount),
            "currency": inv.currency,
            "type": "Standard",
            "checkoutLink": f"{self.base_url}/i/{inv.id}",
            "createdTime": inv.created,
            "expirationTime": inv.expiration,
            "monitoringExpiration": inv.expiration + 86400,
            "status": inv.status,
            "additionalStatus": inv.additional_status,
            "metadata": inv.metadata,
            "checkout": {
                "paymentMethods": [self.ln_method_id],
                "expirationMinutes": (inv.expiration - inv.created) // 60,
            },
            "availableStatusesForManualMarking": [],
            "archived": inv.archived,
        }

    def _method_json(self, inv: FakeInvoice) -> dict[str, Any]:
        stated_hash = "00" * 32 if self.report_wrong_payment_hash else inv.payment_hash
        method: dict[str, Any] = {
            "activated": inv.activated,
            "destination": inv.bolt11 if inv.activated else None,
            "paymentLink": f"lightning:{inv.bolt11}" if inv.activated else "",
            "rate": str(self.rates.get(inv.currency, Decimal(SATS_PER_BTC))),
            "paymentMethodPaid": btc_text(inv.paid_msat),
            "totalPaid": btc_text(inv.paid_msat),
            "due": btc_text(inv.due_msat - inv.paid_msat),
            "amount": btc_text(inv.due_msat),
            "payments": [
                {
                    "id": p.id,
                    "receivedDate": p.received,
                    "value": btc_text(p.msat),
                    "fee": "0",
                    "status": "Settled",
                    "destination": inv.bolt11,
                }
                for p in inv.payments
            ],
        }
        if self.is_v1:
            method |= {
                "paymentMethod": "BTC-LightningNetwork",
                "cryptoCode": "BTC",
                "networkFee": "0",
                "additionalData": {"paymentHash": stated_hash} if inv.activated else {},
            }
        else:
            method |= {
                "paymentMethodId": "BTC-LN",
                "currency": "BTC",
                "paymentMethodFee": btc_text(inv.fee_msat),
                "additionalData": {"paymentHash": stated_hash, "invoiceId": inv.id,
                                   "nodeInfo": None} if inv.activated else None,
            }
        return method

    # ------------------------------------------------------------------ endpoints

    async def _health(self, request: Request) -> Response:
        return self._log_and_inject(request) or JSONResponse({"synchronized": True})

    async def _server_info(self, request: Request) -> Response:
        early = self._log_and_inject(request)
        if early:
            return early
        granted = self._key(request)
        if isinstance(granted, Response):
            return granted
        methods = (["BTC", "BTC_LightningLike"] if self.is_v1
                   else ["BTC-CHAIN", "BTC-LN", "BTC-LNURL"])
        return JSONResponse({"version": self.version, "onion": None,
                             "supportedPaymentMethods": methods, "fullySynched": True,
                             "syncStatus": []})

    async def _current_key(self, request: Request) -> Response:
        early = self._log_and_inject(request)
        if early:
            return early
        granted = self._key(request)
        if isinstance(granted, Response):
            return granted
        perms = [policy if scope is None else f"{policy}:{scope}"
                 for policy, scope in self._scoped(granted)]
        key = request.headers.get("authorization", "").partition(" ")[2].strip()
        return JSONResponse({"apiKey": key, "label": "terminal", "permissions": perms})

    async def _store(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewstoresettings")
        return early or JSONResponse({"id": self.store_id, "name": self.store_name,
                                      "website": None, "defaultCurrency": "USD",
                                      "archived": False})

    async def _invoices(self, request: Request) -> Response:
        if request.method == "POST":
            early = self._pre(request, "btcpay.store.cancreateinvoice")
            return early or await self._create(request)
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        q = request.query_params
        errors: list[tuple[str, str]] = []
        bounds: dict[str, int | None] = {}
        for name in ("startDate", "endDate"):
            raw = q.get(name)
            try:
                bounds[name] = None if raw is None else int(raw)
            except ValueError:
                bounds[name] = None
                errors.append((name, "Invalid unix timestamp"))
        start, end = bounds["startDate"], bounds["endDate"]
        if start is not None and end is not None and start > end:
            errors += [("startDate", "startDate should not be above endDate"),
                       ("endDate", "endDate should not be below startDate")]
        paging: dict[str, int | None] = {}
        for name in ("skip", "take"):
            raw = q.get(name)
            try:
                paging[name] = None if raw is None else int(raw)
            except ValueError:
                paging[name] = None
                errors.append((name, f"The value '{raw}' is not valid."))
        if errors:
            return self._validation(*errors)
        order_ids = q.getlist("orderId")
        statuses = {_STATUS_FILTER[s.lower()] for s in q.getlist("status")
                    if s.lower() in _STATUS_FILTER}
        text = (q.get("textSearch") or "")[:512]
        archived = q.get("includeArchived", "false").lower() == "true"
        with self._lock:
            self._refresh_expiry()
            found = [
                inv for inv in reversed(self.invoices.values())
                if (archived or not inv.archived)
                and (not order_ids or inv.metadata.get("orderId") in order_ids)
                and (not statuses or inv.status in statuses)
                and (start is None or start <= inv.created)
                and (end is None or inv.created <= end)
                and (not text or any(t.startswith(text) for t in inv.search_terms(self.store_id)))
            ]
            found.sort(key=lambda i: i.created, reverse=True)  # stable: newest insert first
            skip, take = paging["skip"] or 0, paging["take"]
            found = found[skip:] if take is None else found[skip:skip + take]
            return JSONResponse([self._invoice_json(inv) for inv in found])

    def _payment_method_errors(self, methods: object) -> list[tuple[str, str]]:
        if not isinstance(methods, list):
            return []
        errors = []
        for i, pm in enumerate(methods):
            crypto, _, kind = str(pm).replace("_", "-").partition("-")
            ok_types = _LN_TYPES_V1 if self.is_v1 else _LN_TYPES
            if crypto.upper() != "BTC" or kind.lower() not in ok_types:
                message = "Invalid payment method" if self.is_v1 else "Invalid PaymentMethodId"
                errors.append((f"Checkout.PaymentMethods[{i}]", message))
        return errors

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.created_bodies.append(body)
        errors: list[tuple[str, str]] = []
        try:
            amount = Decimal(str(body.get("amount")))
            if not amount.is_finite() or amount < 0:
                raise InvalidOperation
        except InvalidOperation:
            errors.append(("Amount", "The amount should be 0 or more."))
            amount = Decimal(0)
        checkout = body.get("checkout") or {}
        errors += self._payment_method_errors(checkout.get("paymentMethods"))
        cur = str(body.get("currency") or "").upper()
        if errors:
            return self._validation(*errors)
        if cur != "SATS" and cur not in self.rates:
            # CreateInvoiceCoreRaw finds no payment method with a rate and throws; the
            # controller answers CreateAPIError(null, …): code "generic-error", a multi-line text.
            return JSONResponse({"code": "generic-error", "message": (
                "Error retrieving a matching payment method or rate.\n"
                f"BTC-LN: The rate for BTC_{cur} is not available\n")}, 400)
        minutes = Decimal(str(checkout.get("expirationMinutes") or 15))
        now = int(self.clock())
        expiration = now + int(minutes * 60)
        if cur == "SATS":
            msat = int(amount) * 1000
        else:  # BTCPay prices LN to the msat: amount / rate, rounded up to 11 BTC decimals
            msat = math.ceil(amount / self.rates[cur] * MSAT_PER_BTC)
        bolt11_msat = msat
        if self.flash_plugin_usd_price is not None:
            bolt11_msat = flash_plugin_msat(msat, self.flash_plugin_usd_price)
        fee = 0 if self.is_v1 else bolt11_msat - msat  # 2.x AddTweakFee: due = the BOLT11's
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        metadata = dict(body.get("metadata") or {})
        with self._lock:
            self._sequence += 1
            invoice_id = f"{uuid.uuid4().hex[:14]}{self._sequence:08d}"
        inv = FakeInvoice(
            id=invoice_id,
            amount=amount,
            currency=cur,
            metadata=metadata,
            created=now,
            expiration=expiration,
            msat=msat,
            bolt11_msat=bolt11_msat,
            fee_msat=fee,
            payment_hash=payment_hash,
            bolt11=mint_bolt11(
                network=self.bolt11_network or self.network,
                amount_msat=bolt11_msat + self.bolt11_msat_offset,
                payment_hash=payment_hash,
                description=str(metadata.get("itemDesc") or "invoice"),
                expiry_s=expiration - now,
                timestamp=now,
            ),
            activated=not self.lazy_payment_methods,
        )
        with self._lock:
            self.invoices[inv.id] = inv
            if self._spend("fail_after_create"):  # done, but its answer is lost
                return _bad_gateway()
            return JSONResponse(self._invoice_json(inv))

    def _spend(self, knob: str) -> bool:
        """Take one from a fault counter (`fail_after_*`, `garble_after_*`): True while any is
        left. Called under the lock."""
        left = getattr(self, knob)
        if left <= 0:
            return False
        setattr(self, knob, left - 1)
        return True

    async def _get_invoice(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            self._refresh_expiry()
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            answer = JSONResponse(self._invoice_json(inv))
        self.status_read.set()
        return answer

    async def _payment_methods(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            self._refresh_expiry()
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            return JSONResponse([self._method_json(inv)])

    async def _activate(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewinvoices")
        if early:
            return early
        with self._lock:
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            if self._payment_method_errors([request.path_params["pm_id"]]):
                return self._validation(("paymentMethod", "Invalid payment method"))
            inv.activated = True
        return Response(status_code=200)

    async def _rates(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewstoresettings")
        if early:
            return early
        out = []
        for pair in request.query_params.getlist("currencyPair"):
            base, sep, quote = pair.partition("_")
            if not sep or not base or not quote:
                return self._validation(("currencyPair", f"Invalid currency pair '{pair}' (it "
                                         "should be formatted like BTC_USD,BTC_CAD)"))
            rate = self.rates.get(quote)
            out.append(
                {"currencyPair": pair, "rate": str(rate), "errors": []}
                if rate is not None
                else {"currencyPair": pair, "rate": None,
                      "errors": ["RateUnavailable"]}  # RateRulesErrors names
            )
        return JSONResponse(out)

    # ------------------------------------------------------------------ boltcards

    async def _register_boltcard(self, request: Request) -> Response:
        early = self._log_and_inject(request)
        if early:
            return early
        pp_id = request.path_params["pp_id"]
        if pp_id not in self.pull_payments:
            return JSONResponse({"code": "pullpayment-not-found",
                                 "message": "The pull payment was not found"}, 404)
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        k1 = _cmac(self.boltcard_issuer_key, bytes.fromhex("2D003F77"))
        uid = _hex_bytes(body.get("UID"))
        picc: tuple[bytes, bytes] | None = None  # (uid, counter bytes)
        lnurlw = body.get("LNURLW")
        if lnurlw is not None:
            if body.get("UID") is not None:
                return self._validation(("LNURLW", "You should pass either LNURLW or UID but "
                                         "not both"))
            p = _extract(str(lnurlw), "p", 32)
            if p is None:
                return self._validation(("LNURLW", "The LNURLW should contains a 'p=' parameter"))
            plain = AES.new(k1, AES.MODE_ECB).decrypt(bytes.fromhex(p))
            if plain[0] != 0xC7:
                return self._validation(("LNURLW", "The LNURLW 'p=' parameter cannot be "
                                         "decrypted"))
            picc = (plain[1:8], plain[8:11])
            uid = picc[0]
        if uid is None or len(uid) != 7:
            return self._validation(("UID", "The UID is required and should be 7 bytes"))
        if self.pull_payments[pp_id].upper() not in ("BTC", "SATS"):
            return JSONResponse({"code": "lnurl-not-supported", "message": "This pull payment "
                                 "currency should be BTC or SATS and accept lightning"}, 400)
        on_existing = request.query_params.get("onExisting") or body.get("onExisting")
        card_id = boltcard_id(self.boltcard_issuer_key, uid)
        with self._lock:
            reg = self.boltcards.get(card_id)
            if on_existing == "UpdateVersion" or (on_existing is None and (
                    reg is None or reg.pull_payment_id is None)):
                if reg is None:
                    reg = self.boltcards[card_id] = BoltcardRegistration(pp_id, 0)
                else:  # ON CONFLICT … version = boltcards.version + 1
                    reg.pull_payment_id, reg.version = pp_id, reg.version + 1
                version = reg.version
            else:
                if reg is None or reg.pull_payment_id is None:
                    return self._validation(("UID", "This card isn't registered"))
                if reg.pull_payment_id != pp_id:
                    return self._validation(("UID", "This card is registered on a different "
                                             "pull payment"))
                version = reg.version
                c = _extract(str(lnurlw), "c", 16) if lnurlw is not None else None
                retries = 0
                while picc is not None and c is not None:
                    k2 = self.card_keys(uid, version, pp_id)["K2"]
                    if _sun_mac(k2, picc[0], picc[1]).hex() == c.lower():
                        break
                    retries += 1
                    version -= 1
                    if version < 0 or retries > 5:
                        return self._validation(("UID", "Unable to get keys of this card, it "
                                                 "might be caused by a version mismatch"))
        keys = self.card_keys(uid, version, pp_id)
        host = urlsplit(str(request.url)).netloc
        return JSONResponse({"LNURLW": f"lnurlw://{host}/boltcard", "version": version,
                             **{name: key.hex().upper() for name, key in keys.items()}})

    # ------------------------------------------------------------------ refunds

    def _granted(self, request: Request, permission: str) -> bool:
        granted = self._key(request)
        if isinstance(granted, Response):
            return False
        store = request.path_params.get("store_id")
        return any(policy_includes(policy, permission) and (scope is None or scope == store)
                   for policy, scope in self._scoped(granted))

    @staticmethod
    def _api_error(code: str, message: str, status: int = 400) -> Response:
        return JSONResponse({"code": code, "message": message}, status)

    def _pull_payment_json(self, pp: FakePullPayment) -> dict[str, Any]:
        return {"id": pp.id, "name": pp.name, "description": pp.description,
                "currency": pp.currency, "amount": str(pp.amount),
                "BOLT11Expiration": str(pp.bolt11_expiration_days),
                "autoApproveClaims": pp.auto_approve, "archived": pp.archived,
                "startsAt": pp.created, "expiresAt": None,
                "viewLink": f"{self.base_url}/pull-payments/{pp.id}"}

    async def _refund(self, request: Request) -> Response:
        early = self._pre(request, PERM_REFUND)
        if early:
            return early
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        with self._lock:
            self._refresh_expiry()
            inv = self._invoice_or_404(request)
            if isinstance(inv, Response):
                return inv
            refundable = inv.status in ("Settled", "Invalid") or (
                inv.status == "Expired"
                and inv.additional_status in ("PaidLate", "PaidOver", "PaidPartial"))
            if not refundable:
                return self._api_error("non-refundable", "Cannot refund this invoice")
            method = body.get("payoutMethodId")
            if method is not None and str(method).upper() not in _PAYOUT_METHODS:
                return self._validation(("PayoutMethodId", "Please select one of the payment "
                                         "methods which were available for the original "
                                         "invoice"))
            variant = body.get("refundVariant")
            if variant is None:
                return self._validation(("RefundVariant", "`refundVariant` is mandatory"))
            if variant not in REFUND_VARIANTS:
                return self._validation(("RefundVariant", "Please select a valid refund option"))
            custom_amount, custom_currency = body.get("customAmount"), body.get("customCurrency")
            if variant != "Custom" and (custom_amount is not None or custom_currency is not None):
                errors = []
                if custom_amount is not None:
                    errors.append(("CustomAmount", "CustomAmount should only be set if the "
                                   "refundVariant is Custom"))
                if custom_currency is not None:
                    errors.append(("CustomCurrency", "CustomCurrency should only be set if the "
                                   "refundVariant is Custom"))
                return self._validation(*errors)
            paid_btc = Decimal(inv.paid_msat or (inv.due_msat if inv.additional_status ==
                                                 "Marked" else 0)) / MSAT_PER_BTC
            rate = self.rates.get(inv.currency, Decimal(SATS_PER_BTC))
            if variant in ("RateThen", "CurrentRate"):  # CurrentRate: the same BTC, here
                cur, amount, auto = "BTC", paid_btc.quantize(Decimal("1e-8")), True
            elif variant == "Fiat":
                cur, amount, auto = inv.currency, (paid_btc * rate).quantize(Decimal("0.01")), \
                    False
            elif variant == "OverpaidAmount":
                if inv.additional_status != "PaidOver":
                    return self._validation(("RefundVariant", "Invoice is not overpaid"))
                over = Decimal(inv.paid_msat - inv.due_msat) / MSAT_PER_BTC
                cur, amount, auto = "BTC", over.quantize(Decimal("1e-8")), True
            else:
                errors = []
                try:
                    amount = Decimal(str(custom_amount))
                    if not amount.is_finite() or amount <= 0:
                        raise InvalidOperation
                except InvalidOperation:
                    amount = Decimal(0)
                    errors.append(("CustomAmount", "Amount must be greater than 0"))
                cur = str(custom_currency or "").upper()
                if cur not in ("BTC", "SATS") and cur not in self.rates:
                    errors.append(("CustomCurrency", "Invalid currency"))
                if errors:
                    return self._validation(*errors)
                auto = cur == "BTC"
            percentage = body.get("subtractPercentage")
            if percentage is not None:
                try:
                    pct = Decimal(str(percentage))
                except InvalidOperation:
                    pct = Decimal(-1)
                if not 0 <= pct <= 100:
                    return self._validation(("SubtractPercentage", "Percentage must be a "
                                             "numeric value between 0 and 100"))
                amount -= amount * pct / 100
            auto = auto and self._granted(request, PERM_APPROVE)
            self._sequence += 1
            pp = FakePullPayment(
                id=f"{uuid.uuid4().hex[:20]}{self._sequence:04d}",
                name=str(body.get("name") or f"Refund {inv.id}"),
                description=body.get("description"), currency=cur, amount=amount,
                auto_approve=auto, created=int(self.clock()), invoice_id=inv.id)
            self.refunds[pp.id] = pp
            if self._spend("fail_after_refund"):  # done, but its answer is lost
                return _bad_gateway()
            if self._spend("garble_after_refund"):
                return HTMLResponse("<html><body>Welcome</body></html>", 200)
            return JSONResponse(self._pull_payment_json(pp))

    async def _list_pull_payments(self, request: Request) -> Response:
        early = self._pre(request, "btcpay.store.canviewpullpayments")
        if early:
            return early
        archived = request.query_params.get("includeArchived", "false").lower() == "true"
        with self._lock:
            found = [pp for pp in self.refunds.values() if archived or not pp.archived]
            found.sort(key=lambda pp: pp.created, reverse=True)
            return JSONResponse([self._pull_payment_json(pp) for pp in found])

    def _pull_payment_or_404(self, request: Request) -> FakePullPayment | Response:
        pp = self.refunds.get(request.path_params["pp_id"])
        if pp is None:
            return self._api_error("pullpayment-not-found", "The pull payment was not found",
                                   404)
        return pp

    async def _pull_payment_lnurl(self, request: Request) -> Response:
        early = self._log_and_inject(request)
        if early:
            return early
        pp = self._pull_payment_or_404(request)
        if isinstance(pp, Response):
            return pp
        if pp.currency not in ("BTC", "SATS"):
            return self._api_error("lnurl-not-supported",
                                   "LNURL not supported for this pull payment")
        from terminal.protocols.lnurl import encode_lnurl

        url = f"{self.base_url}/BTC/UILNURL/withdraw/pp/{pp.id}"
        return JSONResponse({
            "lnurlBech32": "lightning:" + encode_lnurl(url).lower(),
            "lnurlUri": url.replace("http://", "lnurlw://", 1).replace("https://", "lnurlw://",
                                                                         1),
        })

    async def _pull_payment_withdraw(self, request: Request) -> Response:
        """The pull payment's LNURL-withdraw as a wallet reads it (no callback served)."""
        pp = self._pull_payment_or_404(request)
        if isinstance(pp, Response):
            return JSONResponse({"status": "ERROR", "reason": "Pull payment not found"}, 404)
        # UILNURLController.GetLNURLForPullPayment: what is left, both as the maximum and as
        # the balance; the minimum never above it; the callback is the same URL.
        left = pp.amount - pp.claimed
        msat = int(left * (1000 if pp.currency == "SATS" else MSAT_PER_BTC))
        url = f"{self.base_url}/BTC/UILNURL/withdraw/pp/{pp.id}"
        return JSONResponse({"tag": "withdrawRequest", "k1": pp.id, "callback": url,
                             "balanceCheck": url, "minWithdrawable": min(1000, msat),
                             "maxWithdrawable": msat, "currentBalance": msat,
                             "defaultDescription": pp.name})

    async def _create_payout(self, request: Request) -> Response:
        early = self._log_and_inject(request)
        if early:
            return early
        try:
            body = await request.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        if str(body.get("payoutMethodId") or "").upper() not in _PAYOUT_METHODS:
            return self._validation(("PayoutMethodId", "Invalid payment method"))
        with self._lock:
            pp = self._pull_payment_or_404(request)
            if isinstance(pp, Response):
                return pp
            destination = str(body.get("destination") or "").strip()
            lowered = destination.lower().removeprefix("lightning:")
            invoice: bolt11.Bolt11 | None = None
            if lowered.startswith("ln" + _BOLT11_PREFIX.get(self.network, "bc")):
                try:
                    invoice = bolt11.decode(lowered)
                except Exception:  # noqa: BLE001 - any undecodable text is "not a BOLT11"
                    invoice = None
            valid = invoice is not None or ("@" in lowered and "." in lowered.split("@")[-1]) \
                or lowered.startswith("lnurl1")
            if not valid:
                return self._validation(("Destination", "A valid BOLT11 invoice or LNURL Pay or "
                                         "Lightning address was not provided."))
            dedup_id: str | None = None
            invoice_btc: Decimal | None = None
            if invoice is not None:
                expires_at = invoice.date + invoice.expiry
                left_s = expires_at - self.clock()
                if left_s < 0:
                    return self._validation(("Destination", "The BOLT11 invoice submitted has "
                                             "expired."))
                if left_s < pp.bolt11_expiration_days * 86400:
                    return self._validation((
                        "Destination", f"The BOLT11 invoice must have an expiry date of at least "
                        f"{pp.bolt11_expiration_days} days from submission (Provided was only "
                        f"{int(left_s // 86400)})."))
                dedup_id = invoice.payment_hash
                if invoice.amount_msat:
                    invoice_btc = Decimal(int(invoice.amount_msat)) / MSAT_PER_BTC
            try:
                asked = body.get("amount")
                amount: Decimal | None = None if asked is None else Decimal(str(asked))
            except InvalidOperation:
                return self._validation(("Amount", "The amount is invalid"))
            # GetClaimedAmount (a BTC pull payment: the BOLT11's amount is comparable).
            if invoice_btc is not None and pp.currency == "BTC":
                if amount is not None and invoice_btc > amount:
                    return self._validation((
                        "Amount", f"The destination's amount ({invoice_btc} BTC) is more than "
                        f"the claimed amount ({amount} BTC)."))
                if amount is None or invoice_btc < amount:
                    amount = invoice_btc
            # HandleCreatePayout, in its order: archived, duplicate, overdraft, too low.
            if pp.archived:
                return self._api_error("archived", "This pull payment has been archived")
            if dedup_id is not None and any(
                    p.get("_dedup") == dedup_id and p["state"] not in ("Completed", "Cancelled")
                    for other in self.refunds.values() for p in other.payouts):
                return self._api_error("duplicate-destination", "This address is already used "
                                       "for another payout")
            claimed = amount if amount is not None else pp.amount - pp.claimed
            if pp.claimed + claimed > pp.amount:
                return self._api_error("overdraft", "The payout amount overdraft the pull "
                                       "payment's limit")
            if claimed <= 0:
                return self._api_error("amount-too-low", "The requested payout amount is too "
                                       "low")
            payout = {"id": uuid.uuid4().hex[:20], "pullPaymentId": pp.id,
                      "date": int(self.clock()), "destination": destination,
                      "originalCurrency": pp.currency, "originalAmount": str(claimed),
                      "payoutCurrency": "BTC", "payoutAmount": None,
                      "payoutMethodId": "BTC-LN", "revision": 0,
                      "state": "AwaitingApproval", "paymentProof": None, "metadata": {},
                      "_dedup": dedup_id}
            pp.payouts.append(payout)
            if pp.auto_approve:
                self._approve(payout)
            if self._spend("fail_after_payout"):  # done, but its answer is lost
                return _bad_gateway()
            return JSONResponse(self._payout_json(payout))

    async def _list_payouts(self, request: Request) -> Response:
        """GreenfieldPullPaymentController.GetPayouts: Cancelled ones only when asked."""
        early = self._log_and_inject(request)
        if early:
            return early
        cancelled = request.query_params.get("includeCancelled", "false").lower() == "true"
        with self._lock:
            pp = self._pull_payment_or_404(request)
            if isinstance(pp, Response):
                return pp
            return JSONResponse([self._payout_json(p) for p in pp.payouts
                                 if cancelled or p["state"] != "Cancelled"])

    @staticmethod
    def _payout_json(payout: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payout.items() if not k.startswith("_")}

    def _payout(self, payout_id: str) -> dict[str, Any]:
        for pp in self.refunds.values():
            for payout in pp.payouts:
                if payout["id"] == payout_id:
                    return payout
        raise KeyError(payout_id)

    @staticmethod
    def _approve(payout: dict[str, Any]) -> None:
        """HandleApproval: only an AwaitingApproval payout; its BTC amount is set (rate 1)."""
        if payout["state"] != "AwaitingApproval":
            raise ValueError(f"payout {payout['id']} is {payout['state']}: InvalidState")
        payout["state"] = "AwaitingPayment"
        payout["payoutAmount"] = payout["originalAmount"]

    def approve_payout(self, payout_id: str) -> None:
        """The merchant approves a claim (POST /api/v1/stores/{id}/payouts/{payoutId})."""
        with self._lock:
            self._approve(self._payout(payout_id))

    def mark_payout(self, payout_id: str, state: str) -> None:
        """HandleMarkPaid: the Lightning payout runs (InProgress) and completes; a Completed
        payout moves no more; InProgress/Completed only from AwaitingPayment or InProgress."""
        with self._lock:
            payout = self._payout(payout_id)
            current = payout["state"]
            if current == "Completed" or (
                    state in ("Completed", "InProgress")
                    and current not in ("AwaitingPayment", "InProgress", "Completed")) or (
                    state == "AwaitingPayment" and current != "InProgress"):
                raise ValueError(f"payout {payout_id} is {current}: InvalidState")
            payout["state"] = state

    def cancel_payout(self, payout_id: str) -> None:
        """HandleCancel: any payout not Completed or InProgress becomes Cancelled."""
        with self._lock:
            payout = self._payout(payout_id)
            if payout["state"] not in ("Completed", "InProgress"):
                payout["state"] = "Cancelled"

    def reset_boltcard(self, uid: bytes) -> None:
        """The card was wiped through BTCPay (SetBoltcardResetState: unlinked, counter 0)."""
        with self._lock:
            reg = self.boltcards[boltcard_id(self.boltcard_issuer_key, uid)]
            reg.pull_payment_id, reg.counter = None, 0


def _hex_bytes(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _extract(url: str, name: str, size: int) -> str | None:
    """GreenfieldPullPaymentController.Extract: the first `name=` with `size` hex digits."""
    query = url.partition("?")[2]
    if not query:
        return None
    match = re.search(name + "=([a-f0-9A-F]{" + str(size) + "})", "?" + query)
    return match.group(1) if match else None
