"""httpx helpers shared by the HTTP backends: one request with its errors mapped, one backoff
(exponential with full jitter) for retries and reconnects, retries for idempotent reads honouring
Retry-After, JSON without floats, and server text made fit for a screen or a log.

Nothing here ever formats request headers into a message: credentials travel in headers only.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpcore
import httpx

from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendUnavailable,
)
from terminal.core.text import clean_text as _clean

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_AFTER_S = 30.0  # never park a request longer than this on a server's say-so
MAX_SERVER_TEXT = 200  # characters of server-supplied text kept in a message
_TAG_RE = re.compile(r"<[^>]*>")
# ANSI/VT escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL/ST), and two-byte escapes.
def clean_text(value: object, limit: int = MAX_SERVER_TEXT) -> str:
    """Server-supplied text fit for a screen, a log line or stdout (`terminal.core.text`)."""
    return _clean(value, limit)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: delay n (0-based) is uniform in [floor, cap] where
    cap = min(max_s, base_s·2ⁿ) and floor = cap·(1 - jitter). The one backoff of every HTTP
    retry and WebSocket reconnect."""

    base_s: float = 0.25
    max_s: float = 4.0
    jitter: float = 1.0  # 1: full jitter ([0, cap]); 0.5: [cap/2, cap]
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, attempt: int) -> float:
        cap = min(self.max_s, self.base_s * 2 ** min(max(attempt, 0), 30))
        return self.rng.uniform(cap * (1.0 - self.jitter), cap)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for idempotent requests only. `attempts` counts the first try. A server's
    Retry-After longer than `max_retry_after_s` is raised to the caller, not slept through."""

    attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    max_retry_after_s: float = MAX_RETRY_AFTER_S
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_delay_s, self.max_delay_s, 1.0, self.rng)

    def delay(self, attempt: int, error: BackendError) -> float:
        """Delay before retry number `attempt` (1-based): the server's retry time when it gave
        one (plus up to 10 % jitter, so terminals told the same time do not return together),
        else the backoff."""
        if isinstance(error, BackendRateLimited):
            return max(error.retry_after_s, 0.0) * self.rng.uniform(1.0, 1.1)
        return self.backoff.delay(attempt - 1)


NO_RETRY = RetryPolicy(attempts=1)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Run `call`, retrying on retryable `BackendError`s. Use ONLY for idempotent requests."""
    attempt = 1
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                raise
            if isinstance(exc, BackendRateLimited) and exc.retry_after_s > policy.max_retry_after_s:
                raise
            await policy.sleep(policy.delay(attempt, exc))
            attempt += 1


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    service: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    content: bytes | None = None,
    timeout_s: float | None = None,
) -> httpx.Response:
    """One HTTP exchange. Transport failures become `BackendUnavailable` with a message naming
    `service` and the kind of failure, never the URL's query or any header. The code tells
    whether the request certainly never left (`not_sent`: connect failures) or may have reached
    the server (`timeout`, `network`): a non-idempotent caller must not resend the latter."""
    kwargs: dict[str, Any] = {"headers": dict(headers or {}), "params": params}
    if json_body is not None:
        content = json.dumps(json_body, default=_json_default).encode()
    if content is not None:
        kwargs["content"] = content
        kwargs["headers"]["Content-Type"] = "application/json"
    if timeout_s is not None:
        kwargs["timeout"] = timeout_s
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise transport_error(exc, service) from exc


def transport_error(exc: httpx.TransportError, service: str) -> BackendUnavailable:
    """The one mapping of a transport failure: `not_sent` when the request certainly never
    left (connect failures), `timeout`/`network` when it may have reached the server."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return BackendUnavailable(
            f"cannot reach {service} ({type(exc).__name__}); check the network connection",
            code="not_sent")
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(f"{service} did not answer in time", code="timeout")
    return BackendUnavailable(
        f"{service} did not answer ({type(exc).__name__}); check the network connection",
        code="network")


class _LivenessStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream whose "is the idle connection still open?" answer is cheap.

    httpcore's pool asks it of every idle connection at every request (`has_expired`), and its
    anyio stream looks the socket up through anyio's attribute table each time, which rebuilds
    a dict of every attribute per call: a tenth of a request's CPU with a handful of pooled
    connections. Here the socket is looked up once; the answer is the one httpcore computes
    (a poll for readability: an idle HTTP/1.1 connection that is readable was closed by the
    server). Reads, writes, TLS and every other attribute are the wrapped stream's.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _LivenessStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _is_readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


def _is_readable(sock: socket.socket | None) -> bool:
    """httpcore's `is_socket_readable`: a socket that is gone counts as readable (closed)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class LivenessBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend (anyio, or `inner`) with `_LivenessStream` streams."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return _LivenessStream(await self._inner.connect_tcp(host, port, timeout, local_address,
                                                             socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return _LivenessStream(await self._inner.connect_unix_socket(path, timeout,
                                                                     socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pooled_transport(limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None,
                     network_backend: httpcore.AsyncNetworkBackend | None = None
                     ) -> httpx.AsyncHTTPTransport:
    """httpx's transport (HTTP/1.1, no retries, no proxy from the environment) over a
    connection pool on `network_backend` (default: `LivenessBackend()`). httpx builds its pool
    itself and offers no way to pass a network backend, so the pool is rebuilt here with the
    same settings."""
    context = ssl_context or httpx.create_ssl_context(trust_env=False)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, limits=limits,
                                         retries=0)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        # httpx's internals moved: its own pool is slower here, never wrong. Never fail for it.
        log.warning("httpx transport internals changed: using its default connection pool")
        return transport
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        retries=0,
        network_backend=network_backend or LivenessBackend(),
    )
    return transport


class JsonEndpoint:
    """JSON POSTs to one URL over a pooled, kept-alive connection, straight to httpx's public
    transport API: no client layer (redirects, cookies, auth, event hooks, per-request URL
    merging), which an API call of ours never uses and which costs a third of the CPU of a
    request. Transport failures are mapped by `transport_error`; responses are read whole
    (at most `max_body_bytes`) and closed."""

    def __init__(self, url: str, *, service: str, timeout: httpx.Timeout,
                 limits: httpx.Limits | None = None, max_body_bytes: int = 4 * 1024 * 1024
                 ) -> None:
        self.url = httpx.URL(url)
        self.service = service
        self._timeout = {"connect": timeout.connect, "read": timeout.read,
                         "write": timeout.write, "pool": timeout.pool}
        self._max_body = max_body_bytes
        self._transport = pooled_transport(
            limits or httpx.Limits(max_connections=16, max_keepalive_connections=16,
                                   keepalive_expiry=30.0))
        self._base = [("Host", self.url.netloc.decode("ascii")), ("Accept", "application/json"),
                      ("Content-Type", "application/json"), ("User-Agent", "flash-terminal")]

    async def post(self, content: bytes, headers: Mapping[str, str] | None = None
                   ) -> httpx.Response:
        request = httpx.Request("POST", self.url, content=content,
                                headers=[*self._base, *(headers or {}).items()],
                                extensions={"timeout": self._timeout})
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.service) from exc
        try:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self._max_body:
                    raise BackendProtocolError(
                        f"{self.service} answered more than {self._max_body // 1024} KiB",
                        code="too_large")
        except httpx.TransportError as exc:
            raise transport_error(exc, self.service) from exc
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers,
                              content=bytes(body), request=request)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_json(response: httpx.Response, *, service: str) -> Any:
    """The body as JSON, numbers with a fraction as `Decimal` (money never becomes a float)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BackendProtocolError(
            f"{service} answered HTTP {response.status_code} with something that is not JSON: "
            f"{body_excerpt(response)!r}",
            code="not_json",
        ) from exc


def try_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def body_excerpt(response: httpx.Response, limit: int = 120) -> str:
    """A short, tag-free, cleaned excerpt of a body for an error message (a proxy's HTML error
    page becomes its visible text)."""
    text = response.content[: limit * 8].decode("utf-8", "replace") if response.content else ""
    return clean_text(_TAG_RE.sub(" ", text), limit)


def retry_after_s(response: httpx.Response, default: float = 1.0, *,
                  now: Callable[[], float] = time.time) -> float:
    """Retry-After as seconds: delta-seconds or an HTTP-date; `default` when absent or garbage."""
    return parse_retry_after(response.headers.get("Retry-After", ""), default, now=now)


def parse_retry_after(value: object, default: float = 1.0, *,
                      now: Callable[[], float] = time.time) -> float:
    """A server's retry time (Retry-After header, GraphQL `retryAfterSeconds`) as seconds ≥ 0."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        return seconds if 0 <= seconds < float("inf") else default
    if not isinstance(value, str) or not value.strip():
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return default
        if when.tzinfo is None:
            return default
        return max(0.0, when.timestamp() - now())
    return seconds if 0 <= seconds < float("inf") else default
