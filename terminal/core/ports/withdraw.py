"""What the services need from the LNURL-withdraw client (`terminal.adapters.withdraw`): read a
card's withdrawRequest, send it an invoice, and fetch other documents over the same wire.

The request and answer types are pure data from `terminal.protocols.lnurl` (named here for the
type checker only: the core imports nothing above it at run time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from terminal.protocols.lnurl import CallbackAccepted, WithdrawRequest


class CardReader(Protocol):
    """A card's withdrawRequest, read without calling back (refunds read the card's issuer)."""

    async def fetch_request(self, lnurl_or_url: str) -> WithdrawRequest: ...


class Withdraw(CardReader, Protocol):
    """The full LNURL-withdraw exchange: checkout and the sync worker pay with it.

    `submit` is called ONCE per tap; `CallbackAccepted` means accepted, not paid.
    """

    async def submit(self, request: WithdrawRequest, bolt11: str, amount_msat: int,
                     pin: str | None = None) -> CallbackAccepted: ...


class HotlistFetcher(Protocol):
    """A plain GET under the withdraw client's wire rules (hotlists published by issuers)."""

    async def get(self, url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(HTTP status, body); raises HotlistUnavailable."""
        ...
