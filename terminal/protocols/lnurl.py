"""LNURL-withdraw as a point of sale uses it: decoding, URL policy, withdrawRequest checks.

Pure core: no I/O, no httpx. `terminal.withdraw` puts these decisions on the wire.

Sources: LUD-01 (bech32 `LNURL1…`, HRP `lnurl`, may exceed 90 characters), LUD-03
(withdrawRequest), LUD-14 (`currentBalance`, `balanceCheck`), LUD-17 (`lnurlw://` scheme),
LUD-19 (`payLink`), the open `pinLimit` proposal, and the behaviour of BTCPay, the boltcard
server and LNbits described in the payments-interop spec, section 1.

Secrets: the PIN is never kept on a record, never in a repr, never in exception text. `k1` is a
one-time tap token and stays out of reprs as well.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_plus, urlsplit

from bech32 import bech32_decode, bech32_encode, convertbits

from terminal.core.money import sats_figure
from terminal.core.text import clean_text

# --- constants ---------------------------------------------------------------------------------

LNURL_HRP = "lnurl"  # LUD-01
TAG_WITHDRAW_REQUEST = "withdrawRequest"  # LUD-03
STATUS_OK = "OK"
STATUS_ERROR = "ERROR"

MAX_LNURL_CHARS = 4096  # a card's NDEF record is far smaller; bounds the work on hostile input
MAX_K1_CHARS = 1024
MAX_MSAT = 21_000_000 * 100_000_000 * 1000  # every bitcoin there will ever be
MAX_REASON_CHARS = 160  # issuer text shown on the merchant's screen
PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 8
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_MAX_REDIRECTS = 2

_PIN_RE = re.compile(rf"[0-9]{{{PIN_MIN_DIGITS},{PIN_MAX_DIGITS}}}")
_HOSTNAME_RE = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_LNURLW_RE = re.compile(r"lnurlw://", re.IGNORECASE)
_LIGHTNING_PREFIX = "lightning:"
# NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address we must judge.
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")


# --- errors ------------------------------------------------------------------------------------


class LnurlError(Exception):
    """Base of every LNURL-withdraw failure.

    `code` is a stable machine string (ledger, metrics, tests); `user_message` is plain words for
    the merchant's screen, saying what happened and what to do next. Neither ever holds a PIN.
    """

    code = "lnurl-error"
    default_message = "The card payment failed. Ask for another payment method."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        self.detail = detail
        self.user_message = user_message or self.default_message
        super().__init__(detail or self.user_message)


class LnurlDecodeError(LnurlError):
    """The card (or QR) does not hold a usable LNURL."""

    code = "invalid-lnurl"
    default_message = (
        "This card does not hold a valid payment link. Ask for another payment method."
    )


class UrlRefused(LnurlError):
    """The URL policy refuses to contact this address (scheme, host, private address)."""

    code = "url-refused"
    default_message = (
        "This card points to an address the terminal will not contact. "
        "Ask for another payment method."
    )


class RedirectRefused(UrlRefused):
    code = "redirect-refused"


class CallbackHostRefused(UrlRefused):
    """The withdrawRequest's callback points to another host than the card's URL."""

    code = "callback-host-refused"


class AmountOutOfRange(LnurlError):
    code = "amount-out-of-range"

    def __init__(self, amount_msat: int, min_msat: int, max_msat: int) -> None:
        self.amount_msat = amount_msat
        self.min_msat = min_msat
        self.max_msat = max_msat
        super().__init__(
            f"amount {amount_msat} msat outside [{min_msat}, {max_msat}] msat",
            user_message=(
                f"This card accepts between {sats_figure(min_msat)} and "
                f"{sats_figure(max_msat)} sats per payment. Change the amount or ask for another "
                "payment method."
            ),
        )


class PinRequired(LnurlError):
    """The amount is at or above the card's `pinLimit`: collect the PIN and submit again."""

    code = "pin-required"

    def __init__(self, amount_msat: int, pin_limit_msat: int) -> None:
        self.amount_msat = amount_msat
        self.pin_limit_msat = pin_limit_msat
        super().__init__(
            f"amount {amount_msat} msat >= pinLimit {pin_limit_msat} msat",
            user_message=("Ask the customer to enter the card PIN for "
                          f"{sats_figure(amount_msat)} sats."),
        )


class InvalidPin(LnurlError):
    """The PIN is not 4–8 ASCII digits. The PIN itself is never part of the message."""

    code = "invalid-pin"
    default_message = (
        f"The PIN must be {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits. Enter it again."
    )


class IssuerError(LnurlError):
    """The issuer answered `{"status":"ERROR"}`; `reason` is its text, cleaned for display."""

    code = "issuer-error"

    def __init__(self, reason: str, *, http_status: int | None = None) -> None:
        self.reason = reason
        self.http_status = http_status
        super().__init__(f"issuer refused: {reason}", user_message=self._message(reason))

    def _message(self, reason: str) -> str:
        shown = f": {reason}" if reason else ""
        return sentence(f"The card's issuer declined the payment{shown}") + (
            " Ask for another payment method.")


class InsufficientBalance(IssuerError):
    code = "insufficient-balance"

    def _message(self, reason: str) -> str:
        return (
            "The card does not have enough balance for this amount. "
            "Try a smaller amount or ask for another payment method."
        )


class LimitExceeded(IssuerError):
    code = "limit-exceeded"

    def _message(self, reason: str) -> str:
        return (
            "This amount is over the card's spending limit. "
            "Try a smaller amount or ask for another payment method."
        )


class CardDisabled(IssuerError):
    code = "card-disabled"

    def _message(self, reason: str) -> str:
        return "This card is disabled by its issuer. Ask for another payment method."


class ReplayedTap(IssuerError):
    """The tap's counter / link / k1 was already used: only a new tap can pay."""

    code = "replayed-tap"

    def _message(self, reason: str) -> str:
        return "This tap was already used. Ask the customer to tap the card again."


class WrongPin(IssuerError):
    code = "wrong-pin"

    def _message(self, reason: str) -> str:
        return "Wrong PIN. Ask the customer to tap the card again and re-enter the PIN."


class IssuerUnreachable(LnurlError):
    """No usable answer: connection failed, timed out, or a 5xx without JSON."""

    code = "issuer-unreachable"
    default_message = (
        "The card's issuer could not be reached. Check the network, then ask the customer "
        "to tap again."
    )


class IssuerGarbage(LnurlError):
    """The issuer answered something that is not LNURL (not JSON, wrong shape, bad numbers)."""

    code = "issuer-garbage"
    default_message = "The card's issuer sent an invalid answer. Ask for another payment method."


class ResponseTooLarge(IssuerGarbage):
    code = "response-too-large"


class CallbackOutcomeUnknown(LnurlError):
    """The callback was (or may have been) received but no definite answer came back.

    Never re-send it: the tap is spent. Resolve the sale through the invoice status; the invoice
    is the idempotency key.
    """

    code = "outcome-unknown"
    default_message = (
        "The card's issuer did not answer in time. Checking whether the invoice was paid: "
        "do not charge again yet."
    )


# --- decoding (LUD-01, LUD-17) -----------------------------------------------------------------


def decode_lnurl(text: str, *, insecure_hosts: Iterable[str] = ()) -> str:
    """Return the http(s) URL a card or QR points to.

    Accepts `lnurlw://…` (LUD-17: scheme case-insensitive; `https://`, or `http://` for
    `.onion` and for the development hosts in `insecure_hosts`, i.e. the policy's
    `allow_insecure_hosts`, empty in production), a bech32 `LNURL1…` (LUD-01: either case,
    any length, optional `lightning:`), and a plain `https://`/`http://` URL. Whether the URL
    may be contacted is `check_url`'s decision, not this function's. Raises only `LnurlDecodeError`.
    """
    if not isinstance(text, str):
        raise LnurlDecodeError("LNURL must be text")
    s = text.strip()
    if len(s) > MAX_LNURL_CHARS:
        raise LnurlDecodeError(f"LNURL longer than {MAX_LNURL_CHARS} characters")
    if s[: len(_LIGHTNING_PREFIX)].lower() == _LIGHTNING_PREFIX:
        s = s[len(_LIGHTNING_PREFIX) :]
    if _LNURLW_RE.match(s):
        rest = s[len("lnurlw://") :]
        host = _hostname_of("https://" + rest)
        plain = host.endswith(".onion") or host.lower() in insecure_hosts
        scheme = "http" if plain else "https"
        return _require_http_url(f"{scheme}://{rest}")
    lowered = s.lower()
    if lowered.startswith(LNURL_HRP + "1"):
        return _require_http_url(_decode_bech32_lnurl(s))
    if lowered.startswith(("https://", "http://")):
        return _require_http_url(s)
    raise LnurlDecodeError("not an lnurlw:// link, an LNURL1… string or an http(s) URL")


def encode_lnurl(url: str) -> str:
    """bech32-encode a URL as LUD-01 `LNURL1…` (upper case, as cards and QR codes carry it)."""
    data = convertbits(url.encode("utf-8"), 8, 5, True)
    if data is None:  # pragma: no cover - convertbits only fails on out-of-range input
        raise LnurlDecodeError("cannot encode URL")
    return bech32_encode(LNURL_HRP, data).upper()


def _decode_bech32_lnurl(s: str) -> str:
    # bech32 1.2 lifts BIP-173's 90-character limit, which LNURLs routinely exceed (LUD-01).
    hrp, data = bech32_decode(s)
    if hrp is None or data is None:
        raise LnurlDecodeError("bad bech32 (checksum, characters or mixed case)")
    if hrp != LNURL_HRP:
        raise LnurlDecodeError(f"bech32 prefix is {hrp!r}, expected {LNURL_HRP!r}")
    raw = convertbits(data, 5, 8, False)
    if raw is None:
        raise LnurlDecodeError("bech32 payload has invalid padding")
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise LnurlDecodeError("bech32 payload is not UTF-8 text") from None


def _hostname_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        raise LnurlDecodeError("malformed URL") from None
    if not host:
        raise LnurlDecodeError("URL has no host")
    return host.rstrip(".")


def _require_http_url(url: str) -> str:
    if _has_space_or_control(url):
        raise LnurlDecodeError("URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise LnurlDecodeError("malformed URL") from None
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise LnurlDecodeError("LNURL does not decode to an http(s) URL with a host")
    return url


def _has_space_or_control(text: str) -> bool:
    """Any character of Unicode category C* (control, format, unassigned...) or Z* (spaces,
    separators). `str.isprintable` is False for exactly those but the ASCII space: the same
    answer, in C instead of a lookup per character."""
    return not text.isprintable() or " " in text


# --- URL policy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlPolicy:
    """Which LNURL targets the terminal contacts. Built from configuration.

    - https only; http only for `.onion` or hosts in `allow_insecure_hosts` (development only;
      empty by default).
    - `issuer_hosts`: if set, only these hosts (exact, lower case) may be contacted, and a
      callback may move between them. If unset, any public host, and callbacks stay on the
      card's host.
    - Addresses: private, loopback, link-local, multicast, reserved, unspecified, shared (CGNAT)
      and otherwise non-global addresses are refused (IPv4, IPv6, IPv4-mapped, NAT64, 6to4),
      unless the host is in `allow_private_hosts`. The client applies this to the RESOLVED
      addresses and connects only to the addresses it checked.
    - Redirects: only to the same scheme, host and port, at most `max_redirects` hops, each
      re-checked. A redirect to another host is refused (a hostile card must not bounce the
      terminal into the shop's LAN or to an unvetted issuer).
    """

    allow_insecure_hosts: frozenset[str] = frozenset()
    allow_private_hosts: frozenset[str] = frozenset()
    issuer_hosts: frozenset[str] | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def __post_init__(self) -> None:
        # Normalise so configuration may use any case / iterable.
        object.__setattr__(self, "allow_insecure_hosts", _host_set(self.allow_insecure_hosts))
        object.__setattr__(self, "allow_private_hosts", _host_set(self.allow_private_hosts))
        if self.issuer_hosts is not None:
            object.__setattr__(self, "issuer_hosts", _host_set(self.issuer_hosts))
        if self.max_response_bytes <= 0 or self.max_redirects < 0:
            raise ValueError("max_response_bytes must be > 0 and max_redirects >= 0")

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> UrlPolicy:
        """Build from a configuration mapping (keys as the field names; lists for host sets)."""
        issuers = cfg.get("issuer_hosts")
        return cls(
            allow_insecure_hosts=_host_set(_str_list(cfg.get("allow_insecure_hosts", ()))),
            allow_private_hosts=_host_set(_str_list(cfg.get("allow_private_hosts", ()))),
            issuer_hosts=None if issuers is None else _host_set(_str_list(issuers)),
            max_response_bytes=_int_setting(cfg, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            max_redirects=_int_setting(cfg, "max_redirects", DEFAULT_MAX_REDIRECTS),
        )


def _int_setting(cfg: Mapping[str, object], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{key} must be a number, not {type(value).__name__}")
    return int(value)


def _str_list(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError("host lists must be lists of strings")
    return [str(v) for v in value]


def _host_set(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(h.strip().lower().rstrip(".") for h in hosts)


@dataclass(frozen=True)
class Target:
    """A URL the policy accepted: what to resolve and where to connect."""

    url: str
    scheme: str  # "https" | "http"
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int

    @property
    def is_onion(self) -> bool:
        return self.host.endswith(".onion")

    @property
    def ip_literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return _ip_or_none(self.host)


@functools.lru_cache(maxsize=64)
def check_url(url: str, policy: UrlPolicy) -> Target:
    """Apply the static part of the policy (scheme, host syntax, allowlist). Raises `UrlRefused`.

    The address part needs DNS: the client calls `check_addresses` on what the host resolves
    to (an IP literal host is checked right here, no DNS needed). A pure function of its
    arguments, so the answer is cached (a card's URL is checked when it is fetched and again
    with its answer); a refusal is not cached, it is raised anew.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("malformed URL") from None
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        # `https://good.example@evil.example/` reads as one host and connects to another.
        raise UrlRefused("URL carries user credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("URL has no host")
    literal = _ip_or_none(host)
    if literal is None and (not host.isascii() or not _HOSTNAME_RE.fullmatch(host)):
        raise UrlRefused(f"host {host!r} is not a plain DNS name or IP address")
    if scheme == "http":
        if not (host.endswith(".onion") or host in policy.allow_insecure_hosts):
            raise UrlRefused(f"plain http to {host} refused (https only)")
    elif scheme != "https":
        raise UrlRefused(f"scheme {scheme!r} refused (https only)")
    if policy.issuer_hosts is not None and host not in policy.issuer_hosts:
        raise UrlRefused(f"{host} is not an allowed card issuer")
    if port is None:
        port = 443 if scheme == "https" else 80
    target = Target(url=url, scheme=scheme, host=host, port=port)
    if literal is not None:
        check_addresses(target, [str(literal)], policy)
    return target


def check_addresses(target: Target, addresses: Iterable[str], policy: UrlPolicy) -> list[str]:
    """Return the addresses to connect to, or raise `UrlRefused`.

    EVERY address must be public: a name answering one public and one private address is a
    DNS-rebinding setup, and we cannot know which one the happy-eyeballs race would pick.
    """
    out: list[str] = []
    for text in addresses:
        ip = _ip_or_none(text)
        if ip is None:
            raise UrlRefused(f"resolver returned a non-address for {target.host}")
        if target.host not in policy.allow_private_hosts and not is_public_address(ip):
            raise UrlRefused(f"{target.host} resolves to non-public address {ip}")
        out.append(str(ip))
    if not out:
        raise UrlRefused(f"{target.host} resolved to no address")
    return out


@functools.lru_cache(maxsize=256)
def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for globally routable unicast addresses, judging embedded IPv4 too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64_WKP:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
        if ip.teredo is not None and not all(is_public_address(a) for a in ip.teredo):
            return False
    bad = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    return not bad and ip.is_global


def check_redirect(current: Target, location_url: str, policy: UrlPolicy) -> Target:
    """Accept a redirect only to the same scheme, host and port; re-apply the policy."""
    nxt = check_url(location_url, policy)
    if (nxt.scheme, nxt.host, nxt.port) != (current.scheme, current.host, current.port):
        raise RedirectRefused(f"redirect from {current.host} to {nxt.host} refused")
    return nxt


@functools.lru_cache(maxsize=256)  # a few hosts, parsed several times per request
@functools.lru_cache(maxsize=256)
def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` spells, or None (cached: the same few issuer hosts every tap, and
    a name costs `ipaddress` two failed parses)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


# --- withdrawRequest (LUD-03, -14, -19, pinLimit) ----------------------------------------------


@dataclass(frozen=True)
class WithdrawRequest:
    """A validated withdrawRequest. Amounts in msat."""

    # The URL the tap resolved to; it carries a p/c that may still be spendable (BTCPay keeps
    # the counter only when `pr` arrives), so it never goes into a repr or a log.
    card_url: str = field(repr=False)
    callback: str
    k1: str = field(repr=False)  # one-time tap token (BTCPay: "<p>-<c>")
    min_withdrawable_msat: int
    max_withdrawable_msat: int
    default_description: str = ""
    current_balance_msat: int | None = None  # LUD-14
    balance_check: str | None = None  # LUD-14
    pay_link: str | None = None  # LUD-19 (lnurlp:// top-up / refund link)
    pin_limit_msat: int | None = None

    @property
    def spendable_msat(self) -> int:
        """Best guess of what the card can pay: LUD-14's balance beats maxWithdrawable."""
        if self.current_balance_msat is None:
            return self.max_withdrawable_msat
        return min(self.current_balance_msat, self.max_withdrawable_msat)

    def requires_pin(self, amount_msat: int) -> bool:
        return self.pin_limit_msat is not None and amount_msat >= self.pin_limit_msat


@dataclass(frozen=True)
class CallbackAccepted:
    """`{"status":"OK"}`: the issuer accepted the invoice. NOT paid: wait for the backend to
    report the invoice settled. `reason` is informational (e.g. BTCPay's "pending")."""

    reason: str | None = None


def parse_withdraw_request(payload: object, card_url: str, policy: UrlPolicy) -> WithdrawRequest:
    """Validate the JSON answer to the card URL. Raises `IssuerError` (status ERROR),
    `IssuerGarbage` (wrong shape) or `UrlRefused`/`CallbackHostRefused` (callback)."""
    if not isinstance(payload, dict):
        raise IssuerGarbage("withdrawRequest is not a JSON object")
    raise_for_error_status(payload)
    if payload.get("tag") != TAG_WITHDRAW_REQUEST:
        raise IssuerGarbage(f"tag is {_short(payload.get('tag'))}, expected withdrawRequest")
    callback = payload.get("callback")
    if not isinstance(callback, str) or not callback:
        raise IssuerGarbage("callback missing")
    card = check_url(card_url, policy)
    cb = check_url(callback, policy)
    if cb.host != card.host and policy.issuer_hosts is None:
        raise CallbackHostRefused(f"callback host {cb.host} differs from card host {card.host}")
    k1 = payload.get("k1")
    if not isinstance(k1, str) or not k1 or len(k1) > MAX_K1_CHARS:
        raise IssuerGarbage("k1 missing or malformed")
    lo = _msat(payload, "minWithdrawable", required=True)
    hi = _msat(payload, "maxWithdrawable", required=True)
    assert lo is not None and hi is not None
    if lo > hi:
        raise IssuerGarbage(f"minWithdrawable {lo} > maxWithdrawable {hi}")
    return WithdrawRequest(
        card_url=card_url,
        callback=callback,
        k1=k1,
        min_withdrawable_msat=lo,
        max_withdrawable_msat=hi,
        default_description=_opt_str(payload, "defaultDescription") or "",
        current_balance_msat=_msat(payload, "currentBalance"),
        balance_check=_opt_str(payload, "balanceCheck"),
        pay_link=_opt_str(payload, "payLink"),
        pin_limit_msat=_msat(payload, "pinLimit"),
    )


def _msat(payload: Mapping[str, object], key: str, *, required: bool = False) -> int | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise IssuerGarbage(f"{key} missing")
        return None
    # JSON numbers: accept 1000 and 1000.0, refuse booleans, fractions, strings and negatives.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IssuerGarbage(f"{key} is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise IssuerGarbage(f"{key} is not a whole number of msat")
    msat = int(value)
    if not 0 <= msat <= MAX_MSAT:
        raise IssuerGarbage(f"{key} is out of range")
    return msat


def _opt_str(payload: Mapping[str, object], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise IssuerGarbage(f"{key} is not text")
    return value


def _short(value: object) -> str:
    return repr(value)[:40]


# --- amount and PIN ----------------------------------------------------------------------------


def validate_pin(pin: str) -> str:
    """Return the PIN if it is 4–8 ASCII digits; the exception never contains it."""
    if not isinstance(pin, str) or not _PIN_RE.fullmatch(pin):
        raise InvalidPin("PIN format invalid")
    return pin


def check_amount(request: WithdrawRequest, amount_msat: int, pin: str | None = None) -> None:
    """Raise `AmountOutOfRange`, `PinRequired` or `InvalidPin`; return None when submittable."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int):
        raise TypeError("amount_msat must be an int")
    lo, hi = request.min_withdrawable_msat, request.max_withdrawable_msat
    balance = request.current_balance_msat
    if balance is not None and amount_msat > balance:
        # LUD-14's currentBalance says it plainly: tell the merchant "balance", not "range".
        raise InsufficientBalance(
            f"balance {sats_figure(balance)} sats < {sats_figure(amount_msat)} sats"
        )
    if amount_msat <= 0 or not lo <= amount_msat <= hi:
        raise AmountOutOfRange(amount_msat, lo, hi)
    if pin is not None:
        validate_pin(pin)
    elif request.requires_pin(amount_msat):
        assert request.pin_limit_msat is not None
        raise PinRequired(amount_msat, request.pin_limit_msat)


# --- callback ----------------------------------------------------------------------------------

_CALLBACK_KEYS = ("k1", "pr", "pin")


def build_callback_url(request: WithdrawRequest, bolt11: str, pin: str | None = None) -> str:
    """The callback URL with `k1`, `pr` (and `pin`) MERGED into its existing query.

    Same result as `httpx.URL(cb).copy_merge_params({...})`, but the issuer's own query pairs
    are kept byte for byte (some issuers sign them); only pairs named k1/pr/pin are replaced.
    The returned string holds the PIN: hand it to the request and let it go.
    """
    base, _, fragment = request.callback.partition("#")
    path, sep, query = base.partition("?")
    kept = [
        p for p in query.split("&") if p and unquote_plus(p.split("=", 1)[0]) not in _CALLBACK_KEYS
    ]
    added = {"k1": request.k1, "pr": bolt11}
    if pin is not None:
        added["pin"] = validate_pin(pin)
    kept += [f"{k}={_query_value(v)}" for k, v in added.items()]
    del fragment  # a fragment is never sent to the server
    return f"{path}?{'&'.join(kept)}"


def _query_value(value: str) -> str:
    """`quote(value, safe="")`; letters and digits only (a BOLT11 invoice, a hex k1) are left as
    they are without going through `quote` (a Python call per character)."""
    return value if value.isascii() and value.isalnum() else quote(value, safe="")


def raise_for_error_status(
    payload: Mapping[str, object], *, http_status: int | None = None
) -> None:
    """Raise the typed error for `{"status":"ERROR","reason":…}`; return if not an error."""
    status = payload.get("status")
    if not isinstance(status, str) or status.upper() != STATUS_ERROR:
        return
    reason = clean_reason(payload.get("reason"))
    raise error_for_reason(reason, http_status=http_status)


def parse_callback_response(payload: object, *, http_status: int | None = None) -> CallbackAccepted:
    """`{"status":"OK"}` → `CallbackAccepted`; `{"status":"ERROR"}` → typed `IssuerError`;
    anything else → `IssuerGarbage`."""
    if not isinstance(payload, dict):
        raise IssuerGarbage("callback answer is not a JSON object")
    raise_for_error_status(payload, http_status=http_status)
    status = payload.get("status")
    if isinstance(status, str) and status.upper() == STATUS_OK:
        return CallbackAccepted(reason=clean_reason(payload.get("reason")) or None)
    raise IssuerGarbage(f"callback status is {_short(status)}")


def sentence(text: str) -> str:
    """`text` ending in one full stop: issuers' reasons often end with their own (LNbits: "Card
    UID mis-match."), and a message must not come out "mis-match..". """
    text = text.rstrip()
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def clean_reason(reason: object) -> str:
    """Issuer text fit for a screen: printable, single line, bounded length."""
    return clean_text(reason, MAX_REASON_CHARS)


# Reason texts seen in the field, matched case-insensitively in this order (first match wins).
# BTCPay: "Replayed or expired query", "Pr was not within bounds"; LNbits: "This link is already
# used.", "Payment already claimed", "Card is disabled.", "Max daily limit spent.", "Amount too
# high", "Payment failed - Insufficient balance."; the boltcard server answers vaguely.
_REASON_RULES: tuple[tuple[type[IssuerError], re.Pattern[str]], ...] = (
    (
        WrongPin,
        re.compile(
            r"\b(wrong|invalid|incorrect|bad|missing)\s+pin\b"
            r"|\bpin\s+(is\s+)?(wrong|invalid|incorrect|required|missing|needed)"
        ),
    ),
    (
        ReplayedTap,
        re.compile(
            r"replay|already\s+(been\s+)?(used|claimed|spent|paid)|counter"
            r"|k1\s+(already\s+)?used|used\s+k1|expired\s+query|tap\s+again"
        ),
    ),
    (
        InsufficientBalance,
        re.compile(r"insufficient|not\s+enough\s+(balance|funds|money)|balance\s+too\s+low"),
    ),
    (
        CardDisabled,
        re.compile(r"card\s+(is\s+)?(disabled|blocked|frozen|not\s+(enabled|active))|\bdisabled\b"),
    ),
    (
        LimitExceeded,
        re.compile(r"limit|exceed|too\s+(high|large|big)|not\s+within\s+bounds|out\s+of\s+bounds"),
    ),
)


def error_for_reason(reason: str, *, http_status: int | None = None) -> IssuerError:
    """Map an issuer's free-text reason to the most specific `IssuerError` subclass."""
    lowered = reason.lower()
    for cls, pattern in _REASON_RULES:
        if pattern.search(lowered):
            return cls(reason, http_status=http_status)
    return IssuerError(reason, http_status=http_status)
