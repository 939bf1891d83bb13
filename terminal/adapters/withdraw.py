"""LNURL-withdraw over aiohttp, with the URL policy enforced on the wire.

The decisions live in `terminal.protocols.lnurl` (pure); this module makes the connections honour
them:

- Every new connection resolves its host through an injectable resolver, and the connection pool
  connects only to addresses the policy checked in that same answer (the pool's resolver IS the
  check), while the URL, Host header and TLS SNI/certificate check keep the name. A DNS answer
  cannot change between the check and the connect (DNS rebinding); a kept-alive connection was
  made to a checked address. An IP-literal host is checked before the request.
- Redirects: same scheme/host/port only, at most `policy.max_redirects`, each re-checked
  (withdrawRequest GET only; the callback never follows a redirect).
- Bodies are streamed and cut at `policy.max_response_bytes`; compressed bodies are refused
  (we ask for `identity`, so a gzip bomb cannot grow past the cap).
- Per-operation total deadline on top of connect/read timeouts: a server trickling one byte per
  100 ms satisfies every read timeout but not the deadline.
- No URL reaches a log or an exception message of ours: the callback URL carries k1, the
  invoice and the PIN. aiohttp logs no request URLs; its exceptions are never chained (`from
  None`) or formatted, only named.
- aiohttp, like every HTTP client here: a payout makes three or four of these requests, and
  httpx cost five times the CPU per request (`terminal.adapters.wire`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin

import aiohttp
import aiohttp.abc
import yarl

from terminal import __version__
from terminal.adapters.wire import (
    BodyTooLarge,
    LoopSession,
    never_sent,
    read_capped,
    tls_context,
)
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


class _PolicyResolver(aiohttp.abc.AbstractResolver):
    """The connection pool's resolver: the injectable resolver's answer with EVERY address
    checked against the policy. The pool connects only to what this returns, so the addresses
    checked are the addresses used."""

    def __init__(self, resolver: Resolver, policy: UrlPolicy, stats: ClientStats) -> None:
        self._resolver = resolver
        self._policy = policy
        self._stats = stats

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[aiohttp.abc.ResolveResult]:
        name = _norm_host(host)
        target = Target(url="", scheme="", host=name, port=port)
        if target.is_onion:  # never asked of DNS: the name would leak (checked before, too)
            raise IssuerUnreachable(f"{name}: .onion issuers need Tor (not configured)")
        self._stats.resolutions += 1
        addresses: object  # the resolver is pluggable: its answer is checked below
        try:
            addresses = await self._lookup(name, port)
        except OSError as exc:
            raise IssuerUnreachable(f"{name}: DNS lookup failed ({exc})") from None
        if isinstance(addresses, str | bytes) or not isinstance(addresses, Sequence):
            raise UrlRefused(f"{name}: resolver returned {type(addresses).__name__}")
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}
                for address in check_addresses(target, addresses, self._policy)]

    async def _lookup(self, host: str, port: int) -> object:
        resolver = self._resolver
        if inspect.iscoroutinefunction(resolver) or inspect.iscoroutinefunction(
            getattr(resolver, "__call__", None)  # noqa: B004 - async callable objects
        ):
            pending = resolver(host, port)
            return await pending if inspect.isawaitable(pending) else pending
        # getaddrinfo blocks: run it in a worker thread; on the deadline, abandon it.
        return await asyncio.get_running_loop().run_in_executor(None, resolver, host, port)

    async def close(self) -> None:
        return None


def _wire_trace(stats: ClientStats) -> aiohttp.TraceConfig:
    """Counts the requests that went on the wire, and marks a request's `_Progress` sent once it
    has a connection (a moment before its first byte leaves: "may have reached the issuer")."""

    async def connected(session: aiohttp.ClientSession, context: SimpleNamespace,
                        params: object) -> None:
        progress = context.trace_request_ctx
        if isinstance(progress, _Progress):
            progress.sent = True

    async def headers_sent(session: aiohttp.ClientSession, context: SimpleNamespace,
                           params: object) -> None:
        stats.requests_sent += 1

    config = aiohttp.TraceConfig()
    config.on_connection_create_end.append(connected)
    config.on_connection_reuseconn.append(connected)
    config.on_request_headers_sent.append(headers_sent)
    config.freeze()
    return config


def _counting_sockets(stats: ClientStats) -> Callable[[Any], socket.socket]:
    """The pool's socket factory: counts TCP connect attempts (each to a checked address)."""

    def new_socket(addr_info: Any) -> socket.socket:
        family, kind, proto, _canonical, _address = addr_info
        stats.connections_opened += 1
        return socket.socket(family=family, type=kind, proto=proto)

    return new_socket


class _Progress:
    """Whether the request may have reached the issuer (it had a connection)."""

    def __init__(self) -> None:
        self.sent = False


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
        self._ssl = ssl_context
        self._session = LoopSession(self._new_session)
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
        await self._session.aclose()

    def _new_session(self) -> aiohttp.ClientSession:
        # Every connection may be kept: with fewer kept than used, a drain of many taps (several
        # at once) opens and closes a connection per request. No proxy from the environment (a
        # proxy would resolve names itself), no cookies, no decompression (see `_read_capped`).
        connector = aiohttp.TCPConnector(
            limit=8, keepalive_timeout=30.0, use_dns_cache=False,
            resolver=_PolicyResolver(self._resolver, self.policy, self.stats),
            socket_factory=_counting_sockets(self.stats))
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(), trace_configs=[_wire_trace(self.stats)],
            requote_redirect_url=False)

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
            async with asyncio.timeout(self.timeouts.fetch_deadline):
                answer = await self._get(target, self.timeouts.read, follow_redirects=True)
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's own timeouts
            raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
        except TimeoutError:
            raise IssuerUnreachable(f"{target.host}: no answer within the deadline") from None
        except OSError as exc:
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
            async with asyncio.timeout(self.timeouts.callback_deadline):
                answer = await self._get(
                    target, self.timeouts.callback_read, follow_redirects=False, progress=progress
                )
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's own timeouts
            if never_sent(exc):
                raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
            # `from None`: aiohttp's exceptions carry the request, whose URL holds k1, pr, PIN.
            raise self._unsent_or_unknown(progress, target, type(exc).__name__) from None
        except TimeoutError:
            raise self._unsent_or_unknown(
                progress, target, "no answer within the deadline"
            ) from None
        except OSError as exc:
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
            async with asyncio.timeout(self.timeouts.fetch_deadline):
                answer = await self._get(target, self.timeouts.read, follow_redirects=True,
                                         headers=headers)
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's own timeouts
            raise IssuerUnreachable(f"{target.host}: {type(exc).__name__}") from None
        except TimeoutError:
            raise IssuerUnreachable(f"{target.host}: no answer within the deadline") from None
        except OSError as exc:
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
        session = self._session.get()
        t = self.timeouts
        # aiohttp's `connect` covers waiting for a pooled connection and making one.
        timeout = aiohttp.ClientTimeout(total=None, connect=2 * t.connect,
                                        sock_connect=t.connect, sock_read=read_timeout)
        for _hop in range(self.policy.max_redirects + 1):
            url = self._wire_url(target)
            async with session.get(url, headers={**self._headers, **(headers or {})},
                                   timeout=timeout, allow_redirects=False,
                                   ssl=self._tls() if target.scheme == "https" else True,
                                   trace_request_ctx=progress) as response:
                if follow_redirects and response.status in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise IssuerGarbage(f"{target.host}: redirect without Location")
                    try:
                        nxt = urljoin(target.url, location)
                    except ValueError:
                        raise IssuerGarbage(f"{target.host}: unusable redirect") from None
                    target = check_redirect(target, nxt, self.policy)
                    continue
                return _Answer(response.status, await self._read_capped(response))
        raise UrlRefused(f"{target.host}: more than {self.policy.max_redirects} redirects")

    def _tls(self) -> ssl.SSLContext:
        """The given context, else the one every https client here trusts (`wire.tls_context`)."""
        return self._ssl or tls_context()

    def _wire_url(self, target: Target) -> yarl.URL:
        """The URL as aiohttp will send it, once it agrees with the policy's reading: two URL
        parsers must agree on where we go, or the check proved nothing. Names are resolved
        and checked by the pool (`_PolicyResolver`); an IP literal is checked here."""
        if target.is_onion:
            # Resolving a .onion name through DNS would leak it; reaching it needs Tor.
            raise IssuerUnreachable(f"{target.host}: .onion issuers need Tor (not configured)")
        try:
            url = yarl.URL(target.url, encoded=True)  # sent as written: k1, pr and PIN included
            where = (url.scheme, _norm_host(url.raw_host or ""), url.port)
        except (ValueError, TypeError):
            raise UrlRefused(f"{target.host}: URL refused by the HTTP client") from None
        if where != (target.scheme, target.host, target.port):
            raise UrlRefused(f"{target.host}: URL parsers disagree on the destination")
        literal = target.ip_literal
        if literal is not None:
            check_addresses(target, [str(literal)], self.policy)
        return url

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self.policy.max_response_bytes
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise IssuerGarbage(f"unrequested content-encoding {encoding!r}")
        try:
            return await read_capped(response, cap)
        except BodyTooLarge as exc:
            if exc.declared is not None:
                raise ResponseTooLarge(
                    f"declared body of {exc.declared} bytes exceeds {cap}") from None
            raise ResponseTooLarge(f"body exceeds {cap} bytes") from None


def _norm_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _json_or_none(body: bytes) -> object | None:
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
