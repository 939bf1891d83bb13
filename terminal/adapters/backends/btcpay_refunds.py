"""BTCPay's own refunds (Greenfield): the refund of an invoice is a pull payment the customer
claims with a Lightning wallet (its LNURL-withdraw, shown as a QR), or that is paid out at once
to a destination the customer gives.

As BTCPay answers (btcpayserver at 2.x: Controllers/GreenField/GreenfieldInvoiceController.cs
`RefundInvoice`, GreenfieldPullPaymentController.cs):
- `POST /api/v1/stores/{storeId}/invoices/{invoiceId}/refund` `{refundVariant, customAmount,
  customCurrency, subtractPercentage, name, description, payoutMethodId}` needs
  `btcpay.store.cancreatenonapprovedpullpayments`; its claims are approved at once only when
  the key also has `btcpay.store.cancreatepullpayments` (and not for `Fiat`). An invoice that is
  not Settled, Invalid or Expired with a payment answers 400 `{"code": "non-refundable"}`.
  The terminal asks `Custom` in BTC, to the satoshi: a partial refund is any amount, and a BTC
  pull payment's claims need no rate.
- `GET /api/v1/pull-payments/{id}/lnurl` (no auth) → `{lnurlBech32, lnurlUri}` for BTC/SATS
  pull payments; `lnurl-not-supported` otherwise.
- `GET /api/v1/stores/{storeId}/pull-payments?includeArchived=true`
  (`btcpay.store.canviewpullpayments`, included in the refund permission): newest first; a
  refund whose answer was lost is found again by its name (`Refund <refund id>`).
- `POST /api/v1/pull-payments/{id}/payouts` (no auth) `{destination, amount, payoutMethodId}`:
  a payout to a BOLT11, a Lightning Address or an LNURL-pay; errors `duplicate-destination`,
  `overdraft`, `expired`, `archived`, `amount-too-low`, 422 for a destination BTCPay rejects
  (an expired BOLT11, or one expiring sooner than the pull payment's `BOLT11Expiration`: the
  store's RefundBOLT11Expiration, 30 days unless changed). Not idempotent: a second POST makes
  a second payout (up to the pull payment's limit).
- `GET /api/v1/pull-payments/{id}/payouts?includeCancelled=true` (no auth) → `[{id, state,
  destination, originalAmount, …}]`: what was claimed, so a claim whose answer was lost is not
  made twice. States: AwaitingApproval → AwaitingPayment → InProgress → Completed, or Cancelled.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from terminal.adapters.backends.http import clean_text, try_json, with_retries
from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
)
from terminal.core.ports.refunds import CannotSend, PullPaymentPayout, PullPaymentRefund

if TYPE_CHECKING:
    from terminal.adapters.backends.btcpay import BTCPayBackend

PERM_REFUND = "btcpay.store.cancreatenonapprovedpullpayments"
PERM_APPROVE = "btcpay.store.cancreatepullpayments"
PERM_VIEW_PULL_PAYMENTS = "btcpay.store.canviewpullpayments"
PAYOUT_METHOD = "BTC-LN"
MSAT_PER_BTC = 10**11
SATS_PER_BTC = Decimal(10**8)
MAX_PULL_PAYMENTS = 2000  # looked through for a lost refund
MAX_PAYOUTS = 200  # payouts read of one pull payment (a refund's has one, or a few)

REFUND_ADVICE = (f"Refund from the invoice's page in BTCPay, or give the terminal's API key "
                 f"{PERM_REFUND} (and {PERM_APPROVE}, so claims are paid without approval).")


def btc_amount(msat: int) -> str:
    """Whole sats as BTC text, 8 decimals ("0.00012345")."""
    return format(Decimal(msat // 1000) / SATS_PER_BTC, ".8f")


class BTCPayRefunds:
    """`PullPaymentRefunder` over one `BTCPayBackend`'s transport and credential."""

    def __init__(self, backend: BTCPayBackend) -> None:
        self._backend = backend

    def send_problem(self) -> CannotSend | None:
        return None  # BTCPay decides by the key's permissions; a refusal says what is missing

    async def refund_invoice(self, invoice_ref: str, amount_msat: int, *, name: str,
                             description: str) -> PullPaymentRefund:
        """Create the refund (once: never retried, its answer may be lost after BTCPay made
        it; `find_refund` finds it again by `name`), then read its LNURL-withdraw."""
        b = self._backend
        body = {"refundVariant": "Custom", "customAmount": btc_amount(amount_msat),
                "customCurrency": "BTC", "name": name, "description": description,
                "payoutMethodId": PAYOUT_METHOD}
        try:
            response = await b._http.request("POST",
                                             b._store_url(f"/invoices/{invoice_ref}/refund"),
                                             headers=b._auth_headers(), json_body=body)
        except BackendProtocolError as exc:
            # An answer too large to read: BTCPay had the request, it may have made the refund.
            raise BackendUnavailable(f"BTCPay may have made the refund, but its answer could "
                                     f"not be read ({exc.message}).",
                                     code="answer_unreadable") from None
        if response.status_code >= 300:
            raise self._refund_error(response)
        try:
            return await self._with_link(self._pull_payment(_json(response)))
        except BackendError as exc:
            # BTCPay made it (2xx): whatever went wrong reading it, it exists. Never "nothing
            # was sent" (another refund would be issued): unclear, found again by its name.
            raise BackendUnavailable(f"BTCPay made the refund, but its answer could not be "
                                     f"read ({exc.message}).", code="answer_unreadable") from None

    def _refund_error(self, response: Any) -> Exception:
        body = try_json(response)
        code = clean_text(body.get("code"), 60) if isinstance(body, dict) else ""
        if response.status_code == 400 and code == "non-refundable":
            return BackendRejected(
                "BTCPay cannot refund this invoice: it is not settled (or was paid only in "
                "part). Refund it from its page in BTCPay.", code="non-refundable")
        error = self._backend._error(response, PERM_REFUND)
        if isinstance(error, BackendUnauthorized):
            return BackendUnauthorized(f"{error.message}. {REFUND_ADVICE}",
                                       code=error.code or "missing_permission")
        return error

    async def find_refund(self, name: str) -> PullPaymentRefund | None:
        b = self._backend
        data = await b._read(b._store_url("/pull-payments"), permission=PERM_VIEW_PULL_PAYMENTS,
                             params={"includeArchived": "true"})
        if not isinstance(data, list):
            raise BackendProtocolError("BTCPay's pull payments are not a list.",
                                       code="bad_shape")
        for entry in data[:MAX_PULL_PAYMENTS]:
            if isinstance(entry, dict) and entry.get("name") == name:
                return await self._with_link(self._pull_payment(entry))
        return None

    async def claim(self, pull_payment_id: str, destination: str, amount_msat: int) -> str:
        """Pay the pull payment out to `destination` (a BOLT11, a Lightning Address, an
        LNURL-pay). Returns the payout's state (`AwaitingApproval`, `AwaitingPayment`, …)."""
        b = self._backend
        body = {"destination": destination, "amount": btc_amount(amount_msat),
                "payoutMethodId": PAYOUT_METHOD}
        response = await b._http.request("POST",
                                         f"{b._base}/pull-payments/{pull_payment_id}/payouts",
                                         json_body=body)
        if response.status_code >= 300:
            raise b._error(response, None)
        data = _json(response)
        state = data.get("state") if isinstance(data, dict) else None
        return clean_text(state, 40) if isinstance(state, str) else "unknown"

    async def payouts(self, pull_payment_id: str) -> list[PullPaymentPayout]:
        """The pull payment's payouts, cancelled ones included (a cancelled claim is still a
        claim the merchant made a decision on: it is not made again)."""
        b = self._backend

        async def read() -> Any:
            return await b._call("GET", f"{b._base}/pull-payments/{pull_payment_id}/payouts",
                                 permission=None, params={"includeCancelled": "true"})

        data = await with_retries(read, b._retry)
        if not isinstance(data, list):
            raise BackendProtocolError("BTCPay's payouts of the refund are not a list.",
                                       code="bad_shape")
        found = []
        for entry in data[:MAX_PAYOUTS]:
            if not isinstance(entry, dict):
                raise BackendProtocolError("BTCPay's payout is not an object.", code="bad_shape")
            payout_id, state = entry.get("id"), entry.get("state")
            if not isinstance(state, str) or not state:
                raise BackendProtocolError("BTCPay answered a payout without a state.",
                                           code="bad_shape")
            destination = entry.get("destination")
            found.append(PullPaymentPayout(
                clean_text(payout_id, 100) if isinstance(payout_id, str) else "",
                clean_text(state, 40),
                clean_text(destination, 2048) if isinstance(destination, str) else ""))
        return found

    async def _with_link(self, refund: PullPaymentRefund) -> PullPaymentRefund:
        b = self._backend

        async def read() -> Any:
            return await b._call("GET", f"{b._base}/pull-payments/{refund.pull_payment_id}"
                                 "/lnurl", permission=None)

        try:
            data = await with_retries(read, b._retry)
        except BackendRejected:
            return refund  # not a BTC pull payment: BTCPay's own page claims it
        if not isinstance(data, dict):
            raise BackendProtocolError("BTCPay's LNURL of the refund is not an object.",
                                       code="bad_shape")
        bech32, uri = data.get("lnurlBech32"), data.get("lnurlUri")
        return PullPaymentRefund(
            refund.pull_payment_id, refund.amount_msat,
            _link(bech32), _link(uri), refund.auto_approved, refund.name)

    @staticmethod
    def _pull_payment(data: Any) -> PullPaymentRefund:
        if not isinstance(data, dict):
            raise BackendProtocolError("BTCPay's pull payment is not an object.",
                                       code="bad_shape")
        pp_id = data.get("id")
        if not isinstance(pp_id, str) or not 0 < len(pp_id) <= 100 or not pp_id.isascii() \
                or not pp_id.replace("-", "").replace("_", "").isalnum():
            raise BackendProtocolError("BTCPay answered a pull payment without a usable id.",
                                       code="bad_id")
        amount_msat = 0
        if str(data.get("currency", "")).upper() == "BTC":
            try:
                amount = Decimal(str(data.get("amount")))
                amount_msat = int(amount * MSAT_PER_BTC) if amount.is_finite() else 0
            except InvalidOperation:
                amount_msat = 0
        name = data.get("name")
        return PullPaymentRefund(pp_id, amount_msat, "", "",
                                 data.get("autoApproveClaims") is True,
                                 clean_text(name, 120) if isinstance(name, str) else "")


def _json(response: Any) -> Any:
    body = try_json(response)
    if body is None:
        raise BackendProtocolError(f"BTCPay answered HTTP {response.status_code} with "
                                   "something that is not JSON.", code="not_json")
    return body


def _link(value: object) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        return ""
    text = value.strip()
    if text[:10].lower() == "lightning:":
        text = text[10:]
    return text if text.isascii() and text.isprintable() and " " not in text else ""
