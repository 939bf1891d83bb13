"""LNURL-pay as a refund uses it: where the money goes, and the checks before it is sent.

Pure core: no I/O. `terminal.adapters.lnurl_pay` puts these decisions on the wire, under the same
URL policy as LNURL-withdraw (`terminal.protocols.lnurl`).

Sources (lnurl/luds): LUD-06 (payRequest: `callback`, `minSendable`, `maxSendable`, `metadata`;
the callback answers `{pr, routes}`; the wallet checks that the invoice's description hash is
sha256 of the metadata string and that its amount is the one asked for), LUD-16 (a Lightning
Address `name@domain` is `https://domain/.well-known/lnurlp/name`, plain http only for `.onion`),
LUD-17 (`lnurlp://` stands for https, http for `.onion`), LUD-19 (a withdrawRequest's `payLink`:
a raw `lnurlp://` URL where the card's wallet receives; some issuers send a bech32 LNURL).

Where a refund can go (`parse_destination`): a Lightning Address, an LNURL-pay (`LNURL1…`,
`lnurlp://…`, `https://…`), or a BOLT11 invoice the customer shows. A development host the
policy names in `allow_insecure_hosts` (the sandbox's 127.0.0.1) is reached over plain http,
like `.onion`, so `name@127.0.0.1:8080` resolves in a sandbox configuration.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_plus

from terminal.core.money import sats_figure
from terminal.protocols import lnurl
from terminal.protocols.invoice import (
    DecodedInvoice,
    InvoiceCheckError,
    Network,
    decode_invoice,
)

TAG_PAY_REQUEST = "payRequest"
WELL_KNOWN = "/.well-known/lnurlp/"
MAX_DESTINATION_CHARS = 4096
MAX_METADATA_CHARS = 200_000  # LUD-06 allows a 136,536-character image; bounds the work
MAX_PR_CHARS = 4096
# LUD-16: the user part is limited to a-z0-9-_. (lower case only: upper case is folded).
_ADDRESS_USER = re.compile(r"[a-z0-9._+-]{1,64}")
_HOST_PORT = re.compile(r"(?P<host>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_LNURLP = re.compile(r"lnurlp://", re.IGNORECASE)
_LIGHTNING_PREFIX = "lightning:"
_BOLT11_PREFIXES = ("lnbcrt", "lntbs", "lnbc", "lntb")


class DestinationKind(enum.Enum):
    ADDRESS = "address"
    LNURL = "lnurl"
    BOLT11 = "bolt11"


# ------------------------------------------------------------------------------------ errors


class PayLinkError(lnurl.LnurlError):
    """A refund's destination failed. `code` for the books, `user_message` for the screen."""

    code = "destination-error"
    default_message = "The refund could not be sent to this destination. Nothing was sent."


class DestinationInvalid(PayLinkError):
    """What was keyed or scanned is not a usable destination (a usage error: say what is)."""

    code = "destination-invalid"
    default_message = ("That is not a Lightning Address, an LNURL-pay or an invoice. Check it "
                       "and try again.")


class DestinationRefused(PayLinkError):
    """The receiving service answered `{"status":"ERROR"}` (its reason, cleaned, is shown)."""

    code = "destination-refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        shown = f": {reason}" if reason else ""
        super().__init__(f"receiver refused: {reason}", user_message=lnurl.sentence(
            f"The customer's wallet refused the refund{shown}") + " Nothing was sent.")


class DestinationUnreachable(PayLinkError):
    code = "destination-unreachable"
    default_message = ("The customer's wallet could not be reached. Nothing was sent: try "
                       "again, or refund to another destination.")


class DestinationGarbage(PayLinkError):
    code = "destination-garbage"
    default_message = ("The customer's wallet answered something that is not LNURL-pay. "
                       "Nothing was sent.")


class AmountOutsideRange(PayLinkError):
    code = "amount-outside-range"

    def __init__(self, amount_msat: int, min_msat: int, max_msat: int) -> None:
        self.amount_msat, self.min_msat, self.max_msat = amount_msat, min_msat, max_msat
        super().__init__(
            f"amount {amount_msat} msat outside [{min_msat}, {max_msat}]",
            user_message=(f"The customer's wallet takes between {sats_figure(min_msat)} and "
                          f"{sats_figure(max_msat)} sats. Nothing was sent."))


class InvoiceMismatch(PayLinkError):
    """The invoice the receiver sent does not match what was asked (amount, description hash,
    network, expiry): never paid."""

    code = "invoice-mismatch"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, user_message=(
            f"The customer's wallet sent an invoice the terminal will not pay ({detail}). "
            "Nothing was sent."))


# ------------------------------------------------------------------------------ destinations


@dataclass(frozen=True)
class ParsedDestination:
    kind: DestinationKind
    url: str | None = None  # the https (or allowed http) URL to GET: address and LNURL
    address: str | None = None  # "name@domain" as shown
    bolt11: str | None = None  # the invoice, lower case, without "lightning:"

    @property
    def shown(self) -> str:
        """What a screen, slip or export may say about it (never more than this)."""
        if self.address:
            return self.address
        if self.bolt11:
            return self.bolt11[:24] + "…"
        return _short_url(self.url or "")


def _short_url(url: str) -> str:
    text = lnurl.clean_reason(url)
    return text if len(text) <= 60 else text[:59] + "…"


def parse_destination(text: str, *, insecure_hosts: Iterable[str] = ()) -> ParsedDestination:
    """What a keyed or scanned refund destination is. Raises `DestinationInvalid` only.

    Accepts, with or without `lightning:`: a Lightning Address (`name@domain[:port]`, LUD-16),
    a bech32 `LNURL1…`, `lnurlp://…` (LUD-17), an `https://…` LNURL-pay URL, and a BOLT11
    invoice. Whether the URL may be contacted is the URL policy's decision, made when it is."""
    if not isinstance(text, str):
        raise DestinationInvalid("destination must be text")
    s = text.strip()
    if not s:
        raise DestinationInvalid("empty destination")
    if len(s) > MAX_DESTINATION_CHARS:
        raise DestinationInvalid(f"destination longer than {MAX_DESTINATION_CHARS} characters")
    if s[: len(_LIGHTNING_PREFIX)].lower() == _LIGHTNING_PREFIX:
        s = s[len(_LIGHTNING_PREFIX):]
    hosts = frozenset(h.strip().lower() for h in insecure_hosts)
    lowered = s.lower()
    if lowered.startswith(_BOLT11_PREFIXES) and not lowered.startswith("lnurl"):
        try:
            decoded = decode_invoice(s)
        except InvoiceCheckError as exc:
            raise DestinationInvalid(f"the invoice does not decode: {exc.message}") from None
        return ParsedDestination(DestinationKind.BOLT11, bolt11=decoded.bolt11)
    if "@" in s and "://" not in s:
        return _address(s, hosts)
    try:
        url = pay_url(s, insecure_hosts=hosts)
    except lnurl.LnurlDecodeError as exc:
        raise DestinationInvalid(str(exc.detail or exc)) from None
    return ParsedDestination(DestinationKind.LNURL, url=url)


def _address(text: str, insecure_hosts: frozenset[str]) -> ParsedDestination:
    user, _, domain = text.lower().rpartition("@")
    if not _ADDRESS_USER.fullmatch(user):
        raise DestinationInvalid("a Lightning Address's name is letters, digits, '-', '_', "
                                 "'.' (and '+') before the @")
    match = _HOST_PORT.fullmatch(domain.rstrip("."))
    if match is None or not match.group("host").strip("."):
        raise DestinationInvalid("a Lightning Address needs a domain after the @")
    host = match.group("host")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise DestinationInvalid("the address's port is out of range")
    bare = host.strip("[]")
    plain = bare.endswith(".onion") or bare in insecure_hosts
    scheme = "http" if plain else "https"
    authority = host + (f":{port}" if port else "")
    url = f"{scheme}://{authority}{WELL_KNOWN}{user}"
    return ParsedDestination(DestinationKind.ADDRESS, url=url, address=f"{user}@{authority}")


def pay_url(link: str, *, insecure_hosts: Iterable[str] = ()) -> str:
    """The http(s) URL of an LNURL-pay link: `lnurlp://` (LUD-17: https, http for `.onion` and
    allowed development hosts), a bech32 `LNURL1…`, or a plain URL. A card's LUD-19 `payLink`
    comes here too. Raises `lnurl.LnurlDecodeError`."""
    s = link.strip()
    if s[: len(_LIGHTNING_PREFIX)].lower() == _LIGHTNING_PREFIX:
        s = s[len(_LIGHTNING_PREFIX):]
    if _LNURLP.match(s):
        # The same rule as lnurlw:// (decode_lnurl): rewrite the scheme, then decode.
        return lnurl.decode_lnurl("lnurlw://" + s[len("lnurlp://"):],
                                  insecure_hosts=insecure_hosts)
    if s.lower().startswith(("lnurlw://", "keyauth://", "lnurlc://")):
        raise lnurl.LnurlDecodeError("that link is not an LNURL-pay (lnurlp://)")
    return lnurl.decode_lnurl(s, insecure_hosts=insecure_hosts)


@dataclass(frozen=True)
class Resolved:
    """An invoice a refund may pay, checked against what was asked."""

    invoice: DecodedInvoice
    shown: str  # what screens and slips name (an address, a shortened link)
    description: str = ""  # the receiver's own words (its metadata's text/plain)


# ------------------------------------------------------------------------------ payRequest


@dataclass(frozen=True)
class PayRequest:
    """A validated LUD-06 payRequest. Amounts in msat."""

    url: str
    callback: str
    min_sendable_msat: int
    max_sendable_msat: int
    metadata: str = field(repr=False)  # the raw string: its sha256 is the invoice's `h`
    description: str = ""  # the text/plain entry, cleaned
    identifier: str | None = None  # text/identifier or text/email (LUD-16)

    @property
    def metadata_hash(self) -> str:
        return hashlib.sha256(self.metadata.encode("utf-8")).hexdigest()

    def check_amount(self, amount_msat: int) -> None:
        if not self.min_sendable_msat <= amount_msat <= self.max_sendable_msat:
            raise AmountOutsideRange(amount_msat, self.min_sendable_msat,
                                     self.max_sendable_msat)


def parse_pay_request(payload: object, url: str, policy: lnurl.UrlPolicy) -> PayRequest:
    """Validate the answer to an LNURL-pay URL. Raises `DestinationRefused` (status ERROR),
    `DestinationGarbage` (wrong shape) or `lnurl.UrlRefused` (a callback the policy refuses).

    The callback may live on another host than the link (Lightning Address services do that);
    the policy (https, public addresses) still applies to it."""
    if not isinstance(payload, dict):
        raise DestinationGarbage("payRequest is not a JSON object")
    _raise_for_error(payload)
    if payload.get("tag") != TAG_PAY_REQUEST:
        raise DestinationGarbage(f"tag is {repr(payload.get('tag'))[:40]}, expected payRequest")
    callback = payload.get("callback")
    if not isinstance(callback, str) or not callback or len(callback) > lnurl.MAX_LNURL_CHARS:
        raise DestinationGarbage("callback missing")
    lnurl.check_url(callback, policy)
    lo = _msat(payload, "minSendable")
    hi = _msat(payload, "maxSendable")
    if lo < 1 or lo > hi:
        raise DestinationGarbage(f"minSendable {lo} / maxSendable {hi} make no range")
    metadata = payload.get("metadata")
    if not isinstance(metadata, str) or len(metadata) > MAX_METADATA_CHARS:
        raise DestinationGarbage("metadata missing or too long")
    description, identifier = _metadata_entries(metadata)
    return PayRequest(url=url, callback=callback, min_sendable_msat=lo, max_sendable_msat=hi,
                      metadata=metadata, description=description, identifier=identifier)


def _metadata_entries(metadata: str) -> tuple[str, str | None]:
    """(text/plain, text/identifier or text/email) of LUD-06 metadata: a JSON array of arrays
    whose first item names the type."""
    try:
        entries = json.loads(metadata)
    except (ValueError, RecursionError):
        raise DestinationGarbage("metadata is not JSON") from None
    if not isinstance(entries, list) or not all(isinstance(e, list) and e for e in entries):
        raise DestinationGarbage("metadata is not an array of arrays")
    text, identifier = "", None
    for entry in entries:
        kind = entry[0]
        value = entry[1] if len(entry) > 1 else None
        if kind == "text/plain" and isinstance(value, str) and not text:
            text = lnurl.clean_reason(value)
        elif kind in ("text/identifier", "text/email") and isinstance(value, str):
            identifier = lnurl.clean_reason(value)
    return text, identifier


def _msat(payload: Mapping[str, object], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DestinationGarbage(f"{key} missing or not a number")
    if isinstance(value, float) and not value.is_integer():
        raise DestinationGarbage(f"{key} is not a whole number of msat")
    msat = int(value)
    if not 0 <= msat <= lnurl.MAX_MSAT:
        raise DestinationGarbage(f"{key} is out of range")
    return msat


def _raise_for_error(payload: Mapping[str, object]) -> None:
    status = payload.get("status")
    if isinstance(status, str) and status.upper() == lnurl.STATUS_ERROR:
        raise DestinationRefused(lnurl.clean_reason(payload.get("reason")))


# ------------------------------------------------------------------------------ callback


def build_pay_callback(request: PayRequest, amount_msat: int) -> str:
    """The callback URL with `amount` (msat) MERGED into its query (the service's own pairs are
    kept byte for byte; only an `amount` pair is replaced)."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat <= 0:
        raise ValueError("amount_msat must be a positive int")
    base, _, _fragment = request.callback.partition("#")
    path, _, query = base.partition("?")
    kept = [p for p in query.split("&") if p and unquote_plus(p.split("=", 1)[0]) != "amount"]
    kept.append(f"amount={quote(str(amount_msat), safe='')}")
    return f"{path}?{'&'.join(kept)}"


def parse_pay_callback(payload: object) -> str:
    """The invoice (`pr`) of a callback answer. Raises `DestinationRefused` or
    `DestinationGarbage`."""
    if not isinstance(payload, dict):
        raise DestinationGarbage("callback answer is not a JSON object")
    _raise_for_error(payload)
    pr = payload.get("pr")
    if not isinstance(pr, str) or not pr or len(pr) > MAX_PR_CHARS:
        raise DestinationGarbage("callback answer has no invoice (pr)")
    return pr


def check_pay_invoice(pr: str, request: PayRequest, amount_msat: int, *,
                      network: Network | str, now: float) -> DecodedInvoice:
    """LUD-06 steps 6 and 7, and what any invoice must pass before it is paid: it decodes, is
    for this network, asks exactly `amount_msat`, commits to the metadata (description hash =
    sha256 of the metadata string), and has not expired. Raises `InvoiceMismatch`."""
    invoice = check_bolt11(pr, amount_msat, network=network, now=now)
    if invoice.description_hash is None:
        raise InvoiceMismatch("it carries no description hash")
    if invoice.description_hash.lower() != request.metadata_hash:
        raise InvoiceMismatch("its description hash is not that of the wallet's metadata")
    return invoice


def check_bolt11(pr: str, amount_msat: int | None, *, network: Network | str,
                 now: float) -> DecodedInvoice:
    """An invoice to be paid: decodes, this network, an amount (equal to `amount_msat` when
    given), not expired. Raises `InvoiceMismatch`."""
    want = Network.parse(network)
    try:
        invoice = decode_invoice(pr)
    except InvoiceCheckError as exc:
        raise InvoiceMismatch(f"it does not decode: {exc.message}") from None
    if invoice.network is not want:
        raise InvoiceMismatch(f"it is for {invoice.network.name.lower()}, the terminal for "
                              f"{want.name.lower()}")
    if invoice.amount_msat is None:
        raise InvoiceMismatch("it has no amount")
    if amount_msat is not None and invoice.amount_msat != amount_msat:
        raise InvoiceMismatch(f"it asks {sats_figure(invoice.amount_msat)} sats, the refund is "
                              f"{sats_figure(amount_msat)} sats")
    if invoice.is_expired(now):
        raise InvoiceMismatch("it has expired")
    return invoice


__all__ = [
    "AmountOutsideRange", "DestinationGarbage", "DestinationInvalid", "DestinationKind",
    "DestinationRefused", "DestinationUnreachable", "InvoiceMismatch", "ParsedDestination",
    "PayLinkError", "PayRequest", "Resolved", "build_pay_callback", "check_bolt11",
    "check_pay_invoice", "parse_destination", "parse_pay_callback", "parse_pay_request", "pay_url",
]
