"""aiohttp under every HTTP client of the terminal (Flash, BTCPay, LNURL, key exchange, enrolment).

Why aiohttp and not httpx (which the terminal spoke before): a kept-alive loopback JSON request
costs ~110 µs of CPU through aiohttp (a C parser, no per-request cancel scopes or pool
bookkeeping) against ~560 µs through httpx's bare transport, and every queued payout makes three
or four of them. The sync drain's goal (≤ 2 ms of terminal CPU per payout,
`benchmarks/bench_sync.py`) is out of reach on httpx.

What every HTTP client of the terminal shares lives here: a session made lazily on the running
event loop (a client is built by the composition root before any loop runs, and the command
line runs one loop per command), the one classification of a failure into "certainly never
sent" or "may have reached the server", a body read under a size cap, and the TLS trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
from collections.abc import Callable

import aiohttp
import certifi

# The failures that happen before a request can leave: no connection was made (refused,
# unreachable, DNS, TLS handshake, connect or pool timeout).
_UNSENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,
                                            aiohttp.ConnectionTimeoutError)
# Everything a request can fail with on the wire (aiohttp's timeouts are TimeoutErrors).
WIRE_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The CAs every https request of the terminal trusts: SSL_CERT_FILE or SSL_CERT_DIR when
    set (a site's own CA, as httpx honoured them), else certifi's bundle. Made once, on the first
    https request: loading it takes ~20 ms."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return ssl.create_default_context(cafile=certifi.where())


def never_sent(exc: BaseException) -> bool:
    """True when the request certainly never left: a caller may send it again safely."""
    return isinstance(exc, _UNSENT)


class BodyTooLarge(Exception):
    """A body over the cap (declared or read); the connection is dropped, not drained."""

    def __init__(self, cap: int, declared: int | None = None) -> None:
        super().__init__(cap, declared)
        self.cap = cap
        self.declared = declared


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, at most `cap` bytes: a declared larger length is refused before reading,
    and a body that grows past the cap is cut (the connection closed, not returned to the
    pool half-read)."""
    declared = response.content_length
    if declared is not None and declared > cap:
        response.close()
        raise BodyTooLarge(cap, declared)
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > cap:
            response.close()
            raise BodyTooLarge(cap)
    return bytes(body)


class LoopSession:
    """One `aiohttp.ClientSession` per event loop, made on first use by `factory`.

    A session belongs to the loop it was made on. When a later command runs on a new loop
    the old session's connections are dead with their loop: it is let go quietly (its sockets
    closed) and a new one made."""

    def __init__(self, factory: Callable[[], aiohttp.ClientSession]) -> None:
        self._factory = factory
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or self._loop is not loop or session.closed:
            if session is not None and self._loop is not loop:
                _let_go(session)
            session = self._session = self._factory()
            self._loop = loop
        return session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is self._loop:
            await session.close()
        else:
            _let_go(session)


def _let_go(session: aiohttp.ClientSession) -> None:
    """Drop a session whose loop is gone: its connector closes its sockets without the loop
    (which may be closed), and the session is marked closed so nothing warns about it."""
    connector = session.connector
    session.detach()
    if connector is not None:
        with contextlib.suppress(Exception):  # a closed loop cannot schedule the callbacks
            connector._close()  # noqa: SLF001 - close() would await on the dead loop
