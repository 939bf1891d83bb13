"""LNURL-pay over the wire, for refunds: resolve a Lightning Address or an LNURL-pay (a card's
LUD-19 payLink too) and fetch an invoice for an amount, checked before anyone pays it.

The decisions are `terminal.protocols.lnurl_pay`'s; the wire is `WithdrawClient.get`'s: every
request resolves its host, checks every address against the URL policy, connects only to the
addresses checked, follows same-host redirects only, caps the body and bounds the whole
operation (see `terminal.adapters.withdraw`). One difference from a card's issuer: the policy
given here has no issuer allowlist (a customer's wallet may be at any public https host) and a
larger body cap (a payRequest may carry a 100 KB image).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from terminal.adapters.withdraw import WithdrawClient
from terminal.protocols import lnurl
from terminal.protocols.invoice import DecodedInvoice, Network
from terminal.protocols.lnurl_pay import (
    DestinationGarbage,
    DestinationInvalid,
    DestinationKind,
    DestinationUnreachable,
    ParsedDestination,
    PayLinkError,
    PayRequest,
    Resolved,
    build_pay_callback,
    check_bolt11,
    check_pay_invoice,
    parse_destination,
    parse_pay_callback,
    parse_pay_request,
    pay_url,
)

log = logging.getLogger(__name__)

PAY_MAX_RESPONSE_BYTES = 256 * 1024


class DestinationNotAllowed(PayLinkError):
    code = "destination-not-allowed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, user_message=(
            f"The terminal will not contact that destination ({detail}). Nothing was sent: "
            "refund to another address."))


def pay_policy(policy: lnurl.UrlPolicy) -> lnurl.UrlPolicy:
    """The refund destinations' policy: the configured one (https only, public addresses, the
    development hosts it allows) without the card-issuer allowlist, with room for a thumbnail."""
    return lnurl.UrlPolicy(
        allow_insecure_hosts=policy.allow_insecure_hosts,
        allow_private_hosts=policy.allow_private_hosts,
        issuer_hosts=None,
        max_response_bytes=max(policy.max_response_bytes, PAY_MAX_RESPONSE_BYTES),
        max_redirects=policy.max_redirects,
    )


class PayLinkClient:
    """Resolves refund destinations into checked invoices. Raises `PayLinkError`s only."""

    def __init__(self, transport: WithdrawClient, *, network: Network | str,
                 clock: Callable[[], float]) -> None:
        self.transport = transport
        self.policy = transport.policy
        self.network = Network.parse(network)
        self.clock = clock

    async def aclose(self) -> None:
        await self.transport.aclose()

    def parse(self, text: str) -> ParsedDestination:
        return parse_destination(text, insecure_hosts=self.policy.allow_insecure_hosts)

    async def invoice_for(self, destination: ParsedDestination,
                          amount_msat: int | None) -> Resolved:
        """The invoice to pay for `amount_msat` (None: a BOLT11's own amount)."""
        if destination.kind is DestinationKind.BOLT11:
            assert destination.bolt11 is not None
            invoice = check_bolt11(destination.bolt11, amount_msat, network=self.network,
                                   now=self.clock())
            return Resolved(invoice, destination.shown)
        if amount_msat is None:
            raise DestinationInvalid("an amount is needed for an address or LNURL-pay")
        assert destination.url is not None
        request = await self.pay_request(destination.url)
        invoice = await self.fetch_invoice(request, amount_msat)
        return Resolved(invoice, destination.shown, request.description)

    async def invoice_from_pay_link(self, pay_link: str, amount_msat: int) -> Resolved:
        """A card's LUD-19 `payLink` (`lnurlp://…`, or a bech32 LNURL): its invoice."""
        try:
            url = pay_url(pay_link, insecure_hosts=self.policy.allow_insecure_hosts)
        except lnurl.LnurlDecodeError as exc:
            raise DestinationGarbage(f"the card's payLink is unusable: {exc.detail}") from None
        request = await self.pay_request(url)
        invoice = await self.fetch_invoice(request, amount_msat)
        return Resolved(invoice, "", request.description)

    async def pay_request(self, url: str) -> PayRequest:
        payload = await self._get_json(url)
        try:
            return parse_pay_request(payload, url, self.policy)
        except lnurl.UrlRefused as exc:
            raise DestinationNotAllowed(str(exc.detail or exc)) from None

    async def fetch_invoice(self, request: PayRequest, amount_msat: int) -> DecodedInvoice:
        request.check_amount(amount_msat)
        payload = await self._get_json(build_pay_callback(request, amount_msat))
        pr = parse_pay_callback(payload)
        return check_pay_invoice(pr, request, amount_msat, network=self.network,
                                 now=self.clock())

    async def _get_json(self, url: str) -> object:
        try:
            status, body = await self.transport.get(url)
        except lnurl.UrlRefused as exc:
            raise DestinationNotAllowed(str(exc.detail or exc)) from None
        except lnurl.IssuerUnreachable as exc:
            raise DestinationUnreachable(str(exc.detail or exc)) from None
        except lnurl.LnurlError as exc:  # too large, compressed, …
            raise DestinationGarbage(str(exc.detail or exc)) from None
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            if status >= 500:
                raise DestinationUnreachable(f"HTTP {status} without JSON") from None
            raise DestinationGarbage(f"HTTP {status}, the body is not JSON") from None
        if isinstance(payload, dict) and isinstance(payload.get("status"), str) \
                and payload["status"].upper() == lnurl.STATUS_ERROR:
            return payload  # the parser raises the refusal with its reason
        if not 200 <= status < 300:
            raise DestinationGarbage(f"HTTP {status} without an LNURL error")
        return payload


__all__ = ["DestinationNotAllowed", "PayLinkClient", "Resolved", "pay_policy"]
