"""LNURL-withdraw over httpx, with the URL policy enforced on the wire.

The decisions live in `terminal.protocols.lnurl` (pure); this module makes the connections honour
them:

- Every request resolves its host through an injectable resolver, checks EVERY resolved address
  against the policy, then connects only to those addresses (a network backend pinned per
  request), while the URL, Host header and TLS SNI/certificate check keep the name. A DNS answer
  cannot change between the check and the connect (DNS rebinding).
- Redirects: same scheme/host/port only, at most `policy.max_redirects`, each re-checked
  (withdrawRequest GET only; the callback never follows a redirect).
- Bodies are streamed and cut at `policy.max_response_bytes`; compressed bodies are refused
  (we ask for `identity`, so a gzip bomb cannot grow past the cap).
- Per-operation total deadline on top of connect/read timeouts: a server trickling one byte per
  100 ms satisfies every read timeout but not the deadline.
- Requests go straight to the transport, not through `httpx.AsyncClient`: the client logs every
  request URL at INFO, and the callback URL carries k1, the invoice and the PIN.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpcore
import httpx

from terminal import __version__
from terminal.adapters.backends.http import LivenessBackend, pooled_transport
from terminal.protocols.lnurl import (
    CallbackAccepted,
    CallbackOutcomeUnknown,
    IssuerGarbage,
    IssuerUnreachable,
    ResponseTooLarge,
    Target,
    UrlPolicy,
    UrlRefused,
    WithdrawRequest,
    build_callback_url,
    check_addresses,
    check_amount,
    check_redirect,
    check_url,
    decode_lnurl,
    parse_callback_response,
    parse_withdraw_request,
    raise_for_error_status,
)

log = logging.getLogger(__name__)

# host, port -> addresses; sync (run in a worker thread) or async.
Resolver = Callable[[str, int], Sequence[str] | Awaitable[Sequence[str]]]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def system_resolver(host: str, port: int) -> list[str]:
    """The default resolver: `socket.getaddrinfo` (the client runs it in a worker thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `*_deadline` bounds a whole operation: DNS, connect, redirects and body."""

    connect: float = 3.0
    read: float = 5.0
    write: float = 5.0
    fetch_deadline: float = 8.0
    # BTCPay holds the callback up to ~10 s while it pays, then answers OK "pending".
    callback_read: float = 15.0
    callback_deadline: float = 20.0


@dataclass
class ClientStats:
    """Counters for tests and `doctor`: what actually went on the wire."""

    resolutions: int = 0  # resolver calls
    connections_opened: int = 0  # TCP connect attempts (only ever to checked addresses)
    requests_sent: int = 0  # requests handed to the transport


@dataclass(frozen=True)
class _Pin:
    host: str
    port: int
    addresses: tuple[str, ...]


# The addresses checked for the request in flight in this task. httpcore opens the connection
# inside `handle_async_request`, in the caller's task, so a context variable reaches it.
_PINNED: contextvars.ContextVar[_Pin | None] = contextvars.ContextVar("lnurl_pin", default=None)


class _PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy checked for this request's host; fails closed."""

    def __init__(self, stats: ClientStats) -> None:
        self._inner = LivenessBackend()
        self._stats = stats

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PINNED.get()
        if pin is None or pin.host != _norm_host(host) or pin.port != port:
            raise UrlRefused(f"connection to unchecked host {host}:{port} refused")
        last: Exception | None = None
        for address in pin.addresses:
            self._stats.connections_opened += 1
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # pin.addresses is never empty (check_addresses)
        raise last

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("unix sockets are not LNURL targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Progress:
    """Whether the request may have reached the issuer (request headers started going out)."""

    def __init__(self) -> None:
        self.sent = False

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.sent = True


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class WithdrawClient:
    """LNURL-withdraw for the tap path. One instance per terminal: connections are reused.

    `fetch_request` turns a card's LNURL into a validated `WithdrawRequest`; `submit` sends the
    invoice to the callback. Every failure is a `terminal.protocols.lnurl.LnurlError` subclass.
    """

    def __init__(
        self,
        policy: UrlPolicy,
        resolver: Resolver | None = None,
        timeouts: Timeouts | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.timeouts = timeouts or Timeouts()
        self.stats = ClientStats()
        self._resolver: Resolver = resolver or system_resolver
        # Every connection may be kept: with fewer kept than used, a drain of many taps (several
        # at once) opens and closes a connection per request. No proxy from the environment: a
        # proxy would resolve names itself.
        self._transport = pooled_transport(
            httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=30),
            ssl_context=ssl_context or httpx.create_ssl_context(),
            network_backend=_PinnedNetworkBackend(self.stats),
        )
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": f"flash-terminal/{__version__}",
        }

    async def __aenter__(self) -> WithdrawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- public API ----------------------------------------------------------------------------

    async def fetch_request(self, lnurl_or_url: str) -> WithdrawRequest:
        """GET the card's URL and validate the withdrawRequest.

        Raises `LnurlDecodeError`, `UrlRefused` (and subclasses), `IssuerError` (and subclasses,
        e.g. `ReplayedTap` for "This link is already used."), `IssuerUnreachable`,
        `IssuerGarbage` (and `ResponseTooLarge`).
        """
        url = decode_lnurl(lnurl_or_url, insecure_hosts=self.policy.allow_insecure_hosts)
        target = check_url(url, self.policy)
        try:
            with anyio.fail_after(self.timeouts.fetch_deadline):
                answer = await self._get(target, self.timeouts.read, follow_redirects=True)
        except TimeoutError:
            raise IssuerUnreachable(f"{target.host}: no answer within the deadline") from None
        except httpx.TransportError as exc:
            raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
        payload = _json_or_none(answer.body)
        if payload is None:
            if answer.status >= 500:
                raise IssuerUnreachable(f"{target.host}: HTTP {answer.status} without JSON")
            raise IssuerGarbage(f"{target.host}: HTTP {answer.status}, body is not JSON")
        if isinstance(payload, dict):
            raise_for_error_status(payload, http_status=answer.status)
        if not 200 <= answer.status < 300:
            raise IssuerGarbage(f"{target.host}: HTTP {answer.status} without an LNURL error")
        request = parse_withdraw_request(payload, url, self.policy)
        log.debug(
            "withdrawRequest from %s: %d..%d msat",
            target.host,
            request.min_withdrawable_msat,
            request.max_withdrawable_msat,
        )
        return request

    async def submit(
        self,
        request: WithdrawRequest,
        bolt11: str,
        amount_msat: int,
        pin: str | None = None,
    ) -> CallbackAccepted:
        """Send `pr` (and `pin`) to the callback, merged into its query. Call ONCE per tap.

        `CallbackAccepted` means accepted, NOT paid: the sale is paid when the backend reports
        the invoice settled. Raises before sending: `AmountOutOfRange`, `PinRequired`,
        `InvalidPin`, `UrlRefused`. After: `IssuerError` subclasses (a definite LNURL refusal),
        `IssuerUnreachable` (the request never left), `CallbackOutcomeUnknown` (it may have
        arrived, or the answer was not LNURL: resolve through the invoice status, never
        re-send).
        """
        check_amount(request, amount_msat, pin)
        url = build_callback_url(request, bolt11, pin)
        target = check_url(url, self.policy)
        progress = _Progress()
        try:
            with anyio.fail_after(self.timeouts.callback_deadline):
                answer = await self._get(
                    target, self.timeouts.callback_read, follow_redirects=False, progress=progress
                )
        except TimeoutError:
            raise self._unsent_or_unknown(
                progress, target, "no answer within the deadline"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # `from None`: httpx exceptions carry the request, whose URL holds k1, pr and PIN.
            raise self._unsent_or_unknown(progress, target, type(exc).__name__) from None
        except IssuerGarbage as exc:  # e.g. an oversized or compressed answer
            raise self._unsent_or_unknown(progress, target, exc.args[0]) from None
        # From here the request was answered, so it reached something. Only a well-formed LNURL
        # answer is definite; anything else (a proxy's HTML page, a 502, a JSON of another
        # shape) may sit in front of an issuer that is paying: the outcome is unknown.
        payload = _json_or_none(answer.body)
        if payload is None:
            raise CallbackOutcomeUnknown(f"{target.host}: HTTP {answer.status} without JSON")
        try:
            return parse_callback_response(payload, http_status=answer.status)
        except IssuerGarbage as exc:
            raise CallbackOutcomeUnknown(f"{target.host}: {exc.args[0]}") from None

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """A plain GET under the same policy and wire rules (checked and pinned addresses,
        same-host redirects, capped body, the fetch deadline): hotlists and issuers' card lists.
        Returns (HTTP status, body). Raises `UrlRefused`, `IssuerUnreachable`, `IssuerGarbage`
        (`ResponseTooLarge`). `headers` (an API key) go to this host only: redirects never
        leave it."""
        target = check_url(url, self.policy)
        try:
            with anyio.fail_after(self.timeouts.fetch_deadline):
                answer = await self._get(target, self.timeouts.read, follow_redirects=True,
                                         headers=headers)
        except TimeoutError:
            raise IssuerUnreachable(f"{target.host}: no answer within the deadline") from None
        except httpx.TransportError as exc:
            raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
        return answer.status, answer.body

    # --- wire ----------------------------------------------------------------------------------

    @staticmethod
    def _unsent_or_unknown(progress: _Progress, target: Target, why: str) -> Exception:
        if progress.sent:
            return CallbackOutcomeUnknown(f"{target.host}: {why} after the callback was sent")
        return IssuerUnreachable(f"{target.host}: {why} before the callback was sent")

    async def _get(
        self,
        target: Target,
        read_timeout: float,
        *,
        follow_redirects: bool,
        progress: _Progress | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        for _hop in range(self.policy.max_redirects + 1):
            addresses = await self._resolve(target)
            response = await self._send(target, addresses, read_timeout, progress, headers)
            try:
                if follow_redirects and response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise IssuerGarbage(f"{target.host}: redirect without Location")
                    try:
                        nxt = str(httpx.URL(target.url).join(location))
                    except httpx.InvalidURL:
                        raise IssuerGarbage(f"{target.host}: unusable redirect") from None
                    target = check_redirect(target, nxt, self.policy)
                    continue
                return _Answer(response.status_code, await self._read_capped(response))
            finally:
                await response.aclose()
        raise UrlRefused(f"{target.host}: more than {self.policy.max_redirects} redirects")

    async def _resolve(self, target: Target) -> list[str]:
        if target.is_onion:
            # Resolving a .onion name through DNS would leak it; reaching it needs Tor.
            raise IssuerUnreachable(f"{target.host}: .onion issuers need Tor (not configured)")
        literal = target.ip_literal
        if literal is not None:
            return check_addresses(target, [str(literal)], self.policy)
        self.stats.resolutions += 1
        resolver = self._resolver
        addresses: object  # the resolver is pluggable: its answer is checked below
        try:
            if inspect.iscoroutinefunction(resolver) or inspect.iscoroutinefunction(
                getattr(resolver, "__call__", None)  # noqa: B004 - async callable objects
            ):
                pending = resolver(target.host, target.port)
                addresses = await pending if inspect.isawaitable(pending) else pending
            else:
                # getaddrinfo blocks: run it in a worker thread; on the deadline, abandon it.
                addresses = await anyio.to_thread.run_sync(
                    resolver, target.host, target.port, abandon_on_cancel=True
                )
        except OSError as exc:
            raise IssuerUnreachable(f"{target.host}: DNS lookup failed ({exc})") from None
        if isinstance(addresses, str | bytes) or not isinstance(addresses, Sequence):
            raise UrlRefused(f"{target.host}: resolver returned {type(addresses).__name__}")
        return check_addresses(target, addresses, self.policy)

    async def _send(
        self,
        target: Target,
        addresses: list[str],
        read_timeout: float,
        progress: _Progress | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            url = httpx.URL(target.url)
        except httpx.InvalidURL:
            raise UrlRefused(f"{target.host}: URL refused by the HTTP client") from None
        default_port = 443 if url.scheme == "https" else 80
        # Two URL parsers must agree on where we go, or the check proved nothing.
        if (url.scheme, _norm_host(url.host), url.port or default_port) != (
            target.scheme,
            target.host,
            target.port,
        ):
            raise UrlRefused(f"{target.host}: URL parsers disagree on the destination")
        t = self.timeouts
        extensions: dict[str, Any] = {
            "timeout": {
                "connect": t.connect,
                "read": read_timeout,
                "write": t.write,
                "pool": t.connect,
            }
        }
        if progress is not None:
            extensions["trace"] = progress.trace
        request = httpx.Request("GET", url, headers={**self._headers, **(headers or {})},
                                extensions=extensions)
        token = _PINNED.set(_Pin(target.host, target.port, tuple(addresses)))
        try:
            self.stats.requests_sent += 1
            return await self._transport.handle_async_request(request)
        finally:
            _PINNED.reset(token)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.policy.max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"declared body of {declared} bytes exceeds {cap}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise IssuerGarbage(f"unrequested content-encoding {encoding!r}")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > cap:
                raise ResponseTooLarge(f"body exceeds {cap} bytes")
        return bytes(body)


def _norm_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _json_or_none(body: bytes) -> object | None:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
