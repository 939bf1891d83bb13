"""What refunds need from the LNURL-pay client (`terminal.adapters.lnurl_pay.PayLinkClient`):
turn what the customer gave (a BOLT11, a Lightning address, an LNURL-pay link) into an invoice.

The destination and answer types are pure data from `terminal.protocols.lnurl_pay` (named here
for the type checker only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from terminal.protocols.lnurl_pay import ParsedDestination, Resolved


class PayLinks(Protocol):
    def parse(self, text: str) -> ParsedDestination: ...
    async def invoice_for(self, destination: ParsedDestination,
                          amount_msat: int | None) -> Resolved: ...
    async def invoice_from_pay_link(self, pay_link: str, amount_msat: int) -> Resolved: ...
