"""JSON POSTs to one URL (Flash's GraphQL endpoint) on aiohttp: see `terminal.adapters.wire`
for why not httpx. Failures are mapped to the same three codes as `http.transport_error`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
import yarl

from terminal.adapters.wire import WIRE_ERRORS, BodyTooLarge, LoopSession, never_sent, read_capped
from terminal.core.ports.backend import BackendProtocolError, BackendUnavailable


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """An HTTP answer read whole: what the parsers below need of a response."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class JsonEndpoint:
    """JSON POSTs to one URL over pooled, kept-alive connections (aiohttp: see
    `terminal.adapters.wire` for why not httpx). Transport failures are mapped like `send`
    maps httpx's; answers are read whole (at most `max_body_bytes`), never decompressed (none is
    asked for), no cookies kept, no proxy taken from the environment."""

    def __init__(self, url: str, *, service: str, timeout: httpx.Timeout,
                 max_connections: int = 16, max_body_bytes: int = 4 * 1024 * 1024) -> None:
        self.url = yarl.URL(url)
        self.service = service
        connect = timeout.connect if timeout.connect is not None else timeout.pool
        # aiohttp's `connect` covers waiting for a pooled connection too.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=_added(timeout.pool, connect), sock_connect=connect,
            sock_read=timeout.read)
        self._max_body = max_body_bytes
        self._max_connections = max_connections
        self._headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                         "Content-Type": "application/json", "User-Agent": "flash-terminal"}
        self._session = LoopSession(self._new_session)

    def _new_session(self) -> aiohttp.ClientSession:
        # httpx's context (certifi's CAs, like every other client here), only for https: it
        # takes ~20 ms to load.
        tls = httpx.create_ssl_context(trust_env=False) if self.url.scheme == "https" else True
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30.0,
                                         ssl=tls)
        return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=self._timeout)

    async def post(self, content: bytes, headers: Mapping[str, str] | None = None
                   ) -> HttpAnswer:
        session = self._session.get()
        try:
            async with session.post(self.url, data=content,
                                    headers={**self._headers, **(headers or {})}) as response:
                body = await read_capped(response, self._max_body)
                return HttpAnswer(response.status, response.headers, body)
        except BodyTooLarge:
            raise BackendProtocolError(
                f"{self.service} answered more than {self._max_body // 1024} KiB",
                code="too_large") from None
        except WIRE_ERRORS as exc:
            raise wire_error(exc, self.service) from None

    async def aclose(self) -> None:
        await self._session.aclose()


def wire_error(exc: BaseException, service: str) -> BackendUnavailable:
    """`transport_error` for an aiohttp failure: the same three codes."""
    if never_sent(exc):
        return BackendUnavailable(
            f"cannot reach {service} ({type(exc).__name__}); check the network connection",
            code="not_sent")
    if isinstance(exc, TimeoutError):
        return BackendUnavailable(f"{service} did not answer in time", code="timeout")
    return BackendUnavailable(
        f"{service} did not answer ({type(exc).__name__}); check the network connection",
        code="network")


def _added(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b
