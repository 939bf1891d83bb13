"""The backends' HTTP on aiohttp (see `terminal.adapters.wire` for why not httpx): `JsonEndpoint`
posts JSON to one URL (Flash's GraphQL endpoint, on the payout path); `HttpClient` makes any
request of one service (BTCPay's Greenfield API). Both answer an `HttpAnswer` read whole under a
size cap, never decompressed (identity is asked), keep no cookies, take no proxy from the
environment, follow no redirect (a 307 would post a mutation again, credentials included,
wherever it points), and map a failure on the wire to the one set of codes (`wire_error`):
`not_sent` only when the request certainly never left."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from terminal.adapters.backends.http import json_default
from terminal.adapters.wire import (
    WIRE_ERRORS,
    BodyTooLarge,
    LoopSession,
    never_sent,
    read_capped,
    tls_context,
)
from terminal.core.ports.backend import BackendProtocolError, BackendUnavailable

MAX_BODY_BYTES = 4 * 1024 * 1024
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity",
            "User-Agent": "flash-terminal"}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP answer read whole: what the parsers in `http` need of a response."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def client_timeout(read_s: float, connect_s: float | None = None) -> aiohttp.ClientTimeout:
    """No overall limit; `connect_s` (default `read_s`) to connect, `read_s` between reads.
    aiohttp's `connect` covers waiting for a pooled connection too: that wait gets `read_s`."""
    connect = read_s if connect_s is None else connect_s
    return aiohttp.ClientTimeout(total=None, connect=read_s + connect, sock_connect=connect,
                                 sock_read=read_s)


def new_session(*, https: bool, max_connections: int, timeout: aiohttp.ClientTimeout
                ) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30.0,
                                     ssl=tls_context() if https else True)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout)


class JsonEndpoint:
    """JSON POSTs to one URL: an `HttpClient` whose method and URL are fixed."""

    def __init__(self, url: str, *, service: str, timeout_s: float,
                 connect_timeout_s: float | None = None, max_connections: int = 16,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.url = yarl.URL(url)
        self.service = service
        self._client = HttpClient(service=service, timeout_s=timeout_s,
                                  connect_timeout_s=connect_timeout_s,
                                  https=self.url.scheme == "https",
                                  max_connections=max_connections, max_body_bytes=max_body_bytes)

    async def post(self, content: bytes, headers: Mapping[str, str] | None = None
                   ) -> HttpAnswer:
        """`content` is JSON already (the caller encodes it once)."""
        return await self._client.request("POST", self.url, headers=headers, content=content)

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpClient:
    """Requests to one service (any method and URL) over pooled, kept-alive connections; a
    redirect is answered to the caller, not followed. Messages name the service and the kind
    of failure, never a URL or a header (credentials travel in headers)."""

    def __init__(self, *, service: str, timeout_s: float, https: bool,
                 connect_timeout_s: float | None = None, max_connections: int = 8,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.service = service
        self._timeout = client_timeout(timeout_s, connect_timeout_s)
        self._max_body = max_body_bytes
        self._max_connections = max_connections
        self._https = https  # certifi's CAs for https (else the system's); none loaded for http
        self._session = LoopSession(self._new_session)

    def _new_session(self) -> aiohttp.ClientSession:
        return new_session(https=self._https, max_connections=self._max_connections,
                           timeout=self._timeout)

    async def request(self, method: str, url: str | yarl.URL, *,
                      headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, json_body: Any = None,
                      content: bytes | None = None, timeout_s: float | None = None
                      ) -> HttpAnswer:
        """One exchange. `json_body` is sent as JSON (a `Decimal` as its text), `content` as
        JSON already encoded. Failures on the wire become `BackendUnavailable` (`wire_error`); a
        body over the cap is a `BackendProtocolError` `too_large`, though the request did reach
        the server."""
        sent = {**_HEADERS, **(headers or {})}
        data = content
        if json_body is not None:
            data = json.dumps(json_body, default=json_default).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        timeout = self._timeout if timeout_s is None else client_timeout(timeout_s)
        session = self._session.get()
        try:
            async with session.request(method, url, params=params, data=data, headers=sent,
                                       allow_redirects=False, timeout=timeout) as response:
                body = await read_capped(response, self._max_body)
                return HttpAnswer(response.status, response.headers, body)
        except BodyTooLarge:
            raise too_large(self.service, self._max_body) from None
        except WIRE_ERRORS as exc:
            raise wire_error(exc, self.service) from None

    async def aclose(self) -> None:
        await self._session.aclose()


async def one_request(method: str, url: str, *, service: str, timeout_s: float,
                      headers: Mapping[str, str] | None = None, json_body: Any = None,
                      max_body_bytes: int = MAX_BODY_BYTES) -> HttpAnswer:
    """A single request on a session of its own (made and closed here), for the rare callers:
    enrolment's checks, the key exchange, the sandbox's command line."""
    client = HttpClient(service=service, timeout_s=timeout_s, max_connections=1,
                        https=url[:6].lower() == "https:", max_body_bytes=max_body_bytes)
    try:
        return await client.request(method, url, headers=headers, json_body=json_body)
    finally:
        await client.aclose()


def too_large(service: str, cap: int) -> BackendProtocolError:
    return BackendProtocolError(f"{service} answered more than {cap // 1024} KiB",
                                code="too_large")


def wire_error(exc: BaseException, service: str) -> BackendUnavailable:
    """The one mapping of a failure on the wire: `not_sent` when the request certainly never
    left (no connection was made), `timeout`/`network` when it may have reached the server (a
    non-idempotent caller must not resend those)."""
    if never_sent(exc):
        return BackendUnavailable(
            f"cannot reach {service} ({type(exc).__name__}); check the network connection",
            code="not_sent")
    if isinstance(exc, TimeoutError):
        return BackendUnavailable(f"{service} did not answer in time", code="timeout")
    return BackendUnavailable(
        f"{service} did not answer ({type(exc).__name__}); check the network connection",
        code="network")
