"""Parse the SUN URL a Boltcard presents on a tap: `lnurlw://host/path?p=<32 hex>&c=<16 hex>`.

Parameters are found by name, never by position (issuers put other parameters around them), and the
names are configurable because issuers differ (`p`/`c`, `picc_data`/`cmac`, NXP's `e`/`c`). The card
writes plain ASCII hex, so anything else in `p` or `c` (percent-escapes, a trailing NUL, a wrong
length, a second copy) is refused rather than repaired: a server that repairs it differently from
us would see another tap than the one we checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from terminal.protocols.boltcard.errors import TapError

TAP_SCHEMES = frozenset({"lnurlw", "https", "http"})
P_HEX_LENGTH = 32  # encrypted PICCData, one AES block
C_HEX_LENGTH = 16  # SDMMAC, 8 bytes
# An NTAG 424 DNA NDEF file holds 256 bytes; anything far longer is not a card's URL.
MAX_TAP_URL_LENGTH = 2048

_PERCENT_ESCAPE = re.compile(r"%(?P<hex>[0-9A-Fa-f]{2})?")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.~-]+")


@dataclass(frozen=True, slots=True)
class TapParams:
    """The parts of a tap URL the terminal uses. `p` and `c` are raw bytes (16 and 8)."""

    scheme: str  # lower-cased
    host: str  # lower-cased, without port
    path: str
    p: bytes
    c: bytes


def check_param_name(name: str) -> str:
    """Validate a configured query parameter name (letters, digits, `_.~-`)."""
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise ValueError("a SUN parameter name must be letters, digits or _.~- (e.g. 'p', 'c')")
    return name


def parse_tap_url(url: str, p_param: str = "p", c_param: str = "c") -> TapParams:
    """Split a tap URL into host, path and the SUN fields; raise TapError(reason=malformed)."""
    if not isinstance(url, str):
        raise TapError("the tap is not text")
    url = url.strip(" \t\r\n")
    _check_characters(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise TapError("the URL cannot be split into host, path and query") from exc
    if parts.scheme.lower() not in TAP_SCHEMES:
        raise TapError("the URL scheme is not lnurlw, https or http")
    if not host:
        raise TapError("the URL has no host")
    params = _query_params(parts.query)
    p_hex = _single_hex(params, p_param, P_HEX_LENGTH)
    c_hex = _single_hex(params, c_param, C_HEX_LENGTH)
    return TapParams(
        scheme=parts.scheme.lower(),
        host=host.lower(),
        path=parts.path,
        p=bytes.fromhex(p_hex),
        c=bytes.fromhex(c_hex),
    )


def _check_characters(url: str) -> None:
    if not url:
        raise TapError("the URL is empty")
    if len(url) > MAX_TAP_URL_LENGTH:
        raise TapError(f"the URL is longer than {MAX_TAP_URL_LENGTH} characters")
    if not url.isascii():
        raise TapError("the URL contains non-ASCII characters")
    if not url.isprintable() or " " in url:  # isprintable() already refuses \t, \r, \n
        raise TapError("the URL contains control characters or spaces")
    for match in _PERCENT_ESCAPE.finditer(url):
        escaped = match.group("hex")
        if escaped is None:
            raise TapError("the URL contains a '%' that is not followed by two hex digits")
        value = int(escaped, 16)
        if value < 0x20 or value == 0x7F:
            raise TapError("the URL contains a percent-encoded control character (e.g. %00)")


def _query_params(query: str) -> dict[str, list[str]]:
    # Names are percent-decoded (so `%70=` counts as a second `p`); values are kept raw.
    params: dict[str, list[str]] = {}
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        params.setdefault(unquote(name), []).append(value)
    return params


def _single_hex(params: dict[str, list[str]], name: str, length: int) -> str:
    values = params.get(name, [])
    if not values:
        raise TapError(f"the URL has no '{name}' parameter")
    if len(values) > 1:
        raise TapError(f"the URL has {len(values)} '{name}' parameters; exactly one is allowed")
    value = values[0]
    if not _HEX_CHARS.issuperset(value):
        raise TapError(f"'{name}' contains characters other than hex digits")
    if len(value) != length:
        raise TapError(f"'{name}' must be exactly {length} hex characters, not {len(value)}")
    return value
