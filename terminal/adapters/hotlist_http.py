"""Hotlist fetches over the LNURL client's wire (`terminal.adapters.withdraw`).

Issuer traffic is issuer traffic: a hotlist or an LNbits card list is fetched under the same URL
policy as a tap (https only unless a development host is named, every resolved address checked
and pinned, same-host redirects only, a capped and uncompressed body, a deadline). The hotlist's
hosts are added to `issuer_allowlist` when one is set: the merchant named them in the
configuration. An API key goes only to the configured URL's host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from terminal.adapters.withdraw import Resolver, Timeouts, WithdrawClient
from terminal.protocols.hotlist import HotlistUnavailable
from terminal.protocols.lnurl import LnurlError, UrlPolicy


class HotlistClient:
    def __init__(self, policy: UrlPolicy, urls: tuple[str, ...] = (), *,
                 max_bytes: int | None = None, timeouts: Timeouts | None = None,
                 resolver: Resolver | None = None) -> None:
        hosts = frozenset((urlsplit(u).hostname or "").lower() for u in urls) - {""}
        if policy.issuer_hosts is not None:
            policy = replace(policy, issuer_hosts=policy.issuer_hosts | hosts)
        if max_bytes is not None:
            policy = replace(policy, max_response_bytes=max_bytes)
        self.policy = policy
        self._client = WithdrawClient(policy, resolver, timeouts)

    async def get(self, url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            return await self._client.get(url, headers=headers)
        except LnurlError as exc:
            # The message names the host and what went wrong, never the headers (the key).
            raise HotlistUnavailable(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        await self._client.aclose()
