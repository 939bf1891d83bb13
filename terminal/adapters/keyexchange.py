"""Card keys from an issuer: key-exchange responses, key files and the `boltcard://` deeplinks.

Issuers answer in different shapes (spec §4); they are told apart by the fields present, never by
`protocol_name`, and field names are matched without regard to case:
- boltcard service: `protocol_name, protocol_version, card_name, lnurlw_base, k0..k4, uid_privacy`
- LNbits: `LNURLW_BASE, K0..K4, CARD_NAME` (and `"action": "wipe"` when wiping)
- BTCPay Server: `LNURLW, version, K0..K4`
- wipe JSON: `action: "wipe", k0..k4, uid, version`
A key file holds any of these. Programming POSTs `{"UID": "<14 hex>"}` to the issuer; resetting
POSTs `{"LNURLW": "<the card's tap URL>"}`. Nothing here ever puts a key into a message.

The URL written to a card always has a lower-case scheme and host (LNbits' POST answers
`"LNURLW_BASE": "LNURLW://HOST/…"`; phone wallets match URL schemes case-sensitively); its path
and query stay as the issuer gave them. A refusal shows the issuer's own reason, cleaned:
LNbits `{"detail": "Card does not exist."}` (FastAPI; a validation `detail` is a list of
`{loc, msg}`), `{"status": "ERROR", "reason": …}`, BTCPay Greenfield `{"code", "message"}` and
validation lists `[{"path", "message"}]`, or any `{"message": …}`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from terminal.adapters.backends.json_endpoint import one_request
from terminal.core.ports.backend import BackendProtocolError, BackendUnavailable
from terminal.protocols.boltcard import CardKeys, derive_card_keys, derive_k1, verify_tap_url
from terminal.protocols.boltcard.provisioning import (
    BoltcardKeys,
    CardFacts,
    KeyOffer,
    KeySourceError,
    ProvisioningError,
)
from terminal.protocols.lnurl import (
    UrlPolicy,
    UrlRefused,
    check_addresses,
    check_url,
    clean_reason,
)

KEY_NAMES = ("k0", "k1", "k2", "k3", "k4")
URL_FIELDS = ("lnurlw_base", "lnurlw")
DEEPLINK_SCHEME = "boltcard"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024  # a key-exchange answer is a few hundred bytes
DEFAULT_KEY_VERSION = 1
REDIRECTS = frozenset({301, 302, 303, 307, 308})
BTCPAY_FIRST_KEY_VERSION = 0  # BTCPay registers a new card at version 0


class KeyExchangeError(KeySourceError):
    """The issuer's keys could not be obtained or understood (message safe to show and log)."""


class Action(Enum):
    PROGRAM = "program"
    WIPE = "wipe"


@dataclass(frozen=True)
class IssuerResponse:
    """Keys for one card, as an issuer (or a key file) gave them.

    `issuer_version` is the key version the issuer derived them at (BTCPay registers a new card at
    0); `keys.version` is what the card's key slots will carry, at least 1 (0 means factory keys
    to every programmer, and BTCPay's own programmer writes 1 too).
    """

    keys: BoltcardKeys
    lnurlw_base: str | None = None
    action: Action = Action.PROGRAM
    card_name: str | None = None
    uid: bytes | None = field(default=None, repr=False)  # keep the UID out of logs
    issuer_version: int = DEFAULT_KEY_VERSION


@dataclass(frozen=True)
class Deeplink:
    action: Action
    url: str  # the https (or allowed http) key-exchange endpoint


def _folded(payload: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in payload.items():
        if not isinstance(name, str):
            continue
        key = name.lower()
        if key in out:
            raise KeyExchangeError(f"issuer response has field {key!r} twice (in different case)")
        out[key] = value
    return out


def _key(fields: Mapping[str, object], name: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, str):
        raise KeyExchangeError(f"issuer response has no {name.upper()} (32 hex characters)")
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        key = b""
    if len(key) != 16:
        # Never echo the value: it is (almost) a key.
        raise KeyExchangeError(f"{name.upper()} in the issuer response is not 32 hex characters")
    return key


def _version(fields: Mapping[str, object]) -> int:
    value = fields.get("version", DEFAULT_KEY_VERSION)
    if isinstance(value, bool):
        raise KeyExchangeError("key version in the issuer response is not a number")
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise KeyExchangeError("key version in the issuer response is not a number") from None
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise KeyExchangeError("key version in the issuer response must be 0..255")
    return value


def _uid(fields: Mapping[str, object]) -> bytes | None:
    value = fields.get("uid")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            uid = bytes.fromhex(value.strip())
        except ValueError:
            uid = b""
        if len(uid) == 7:
            return uid
    raise KeyExchangeError("uid in the issuer response is not 14 hex characters")


def card_url(url: str) -> str:
    """`url` with its scheme and host in lower case, the rest as given: what a card carries.
    Phone wallets match `lnurlw://` case-sensitively; SUN offsets count the characters, which
    lower-casing does not change."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return url.strip()
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo, at, host = authority.rpartition("@")
    return f"{scheme.lower()}://{userinfo}{at}{host.lower()}{tail}"


def _lnurlw(fields: Mapping[str, object]) -> str | None:
    for name in URL_FIELDS:
        value = fields.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise KeyExchangeError(f"{name.upper()} in the issuer response is not text")
        url = value.strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("lnurlw", "https", "http") or not parts.netloc:
            raise KeyExchangeError(f"{name.upper()} in the issuer response is not a card URL")
        return card_url(url)
    return None


def issuer_reason(payload: object) -> str:
    """The issuer's own words for a refusal, cleaned for a screen ("" when it gave none)."""
    parts: list[str] = []
    if isinstance(payload, list):  # Greenfield validation errors: [{"path", "message"}]
        for item in payload[:5]:
            if isinstance(item, Mapping):
                path, message = clean_reason(item.get("path")), clean_reason(item.get("message"))
                parts.append(f"{path}: {message}" if path and message else message)
    elif isinstance(payload, Mapping):
        fields = {str(k).lower(): v for k, v in payload.items()}
        detail = fields.get("detail")  # FastAPI (LNbits): text, or a list of {loc, msg}
        if isinstance(detail, list):
            for item in detail[:5]:
                if isinstance(item, Mapping):
                    loc = item.get("loc")
                    where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
                    message = clean_reason(item.get("msg"))
                    parts.append(f"{clean_reason(where)}: {message}" if where else message)
        for name in ("detail", "reason", "message", "error"):
            if isinstance(fields.get(name), str):
                parts.append(clean_reason(fields[name]))
                break
    return clean_reason("; ".join(p for p in parts if p))


def parse_issuer_response(payload: object) -> IssuerResponse:
    """Keys (and card URL) from any supported issuer response; raises `KeyExchangeError`."""
    if not isinstance(payload, Mapping):
        reason = issuer_reason(payload)
        raise KeyExchangeError(f"issuer refused: {reason}" if reason
                               else "issuer response is not a JSON object")
    fields = _folded(payload)
    status = fields.get("status")
    if isinstance(status, str) and status.upper() == "ERROR":
        raise KeyExchangeError(f"issuer refused: {issuer_reason(payload) or 'no reason given'}")
    missing = [n.upper() for n in KEY_NAMES if n not in fields]
    if missing:
        reason = issuer_reason(payload)
        if reason:
            raise KeyExchangeError(f"issuer refused: {reason}")
        raise KeyExchangeError(f"issuer response lacks {', '.join(missing)}: not a key response")
    action_text = fields.get("action")
    action = Action.PROGRAM
    if isinstance(action_text, str) and action_text.strip().lower() == "wipe":
        action = Action.WIPE
    card_name = fields.get("card_name")
    keys = [_key(fields, name) for name in KEY_NAMES]
    version = _version(fields)
    return IssuerResponse(
        keys=BoltcardKeys.of(keys, version=slot_version(version)),
        lnurlw_base=_lnurlw(fields),
        action=action,
        card_name=clean_reason(card_name) or None,
        uid=_uid(fields),
        issuer_version=version,
    )


def slot_version(derived_at: int) -> int:
    """The key version a card's slots carry for keys derived at `derived_at`: the same, but at
    least 1 (a slot at version 0 reads as factory keys)."""
    return max(1, derived_at)


def load_keys_file(path: str | Path) -> IssuerResponse:
    """A key file: one JSON object in any issuer format."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise KeyExchangeError(f"cannot read key file {path}: {error.strerror}") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise KeyExchangeError(f"key file {path} is not JSON") from None
    return parse_issuer_response(payload)


def parse_deeplink(url: str, default: Action = Action.PROGRAM) -> Deeplink:
    """`boltcard://program?url=…`, `boltcard://reset?url=…`, or the endpoint URL itself."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != DEEPLINK_SCHEME:
        return Deeplink(default, url.strip())
    kind = (parts.netloc or parts.path.strip("/")).lower()
    actions = {"program": Action.PROGRAM, "reset": Action.WIPE, "wipe": Action.WIPE}
    if kind not in actions:
        raise KeyExchangeError(f"unknown boltcard deeplink {kind!r} (expected program or reset)")
    targets = parse_qs(parts.query).get("url", [])
    if len(targets) != 1 or not targets[0]:
        raise KeyExchangeError("boltcard deeplink has no url= parameter")
    return Deeplink(actions[kind], targets[0])


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise KeyExchangeError(f"cannot resolve the issuer host {host}") from None
    return sorted({str(info[4][0]) for info in infos})


def fetch_keys(
    url: str,
    policy: UrlPolicy,
    *,
    uid: bytes | None = None,
    lnurlw: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> IssuerResponse:
    """POST `{"UID": …}` (program) or `{"LNURLW": …}` (reset) to the issuer; parse the answer.

    `url` may be a `boltcard://` deeplink. The terminal's URL policy applies (scheme, allowed
    hosts, public addresses); redirects are not followed. Synchronous (aiohttp on a loop of
    its own): call it where no event loop runs.
    """
    if (uid is None) == (lnurlw is None):
        raise ValueError("give the card's UID (program) or its tap URL (reset), not both")
    link = parse_deeplink(url)
    try:
        target = check_url(link.url, policy)
        if target.ip_literal is None and not target.is_onion:
            check_addresses(target, _resolve(target.host, target.port), policy)
    except UrlRefused as error:
        raise KeyExchangeError(f"key-exchange URL refused: {error}") from None
    body = {"UID": uid.hex().upper()} if uid is not None else {"LNURLW": str(lnurlw)}
    try:
        # A loop of its own: the card tools call this from a worker thread where none runs.
        response = asyncio.run(one_request("POST", link.url, service=f"issuer {target.host}",
                                           timeout_s=timeout, json_body=body,
                                           max_body_bytes=MAX_RESPONSE_BYTES))
    except BackendProtocolError:
        raise KeyExchangeError("issuer's answer is far too large") from None
    except BackendUnavailable as error:
        raise KeyExchangeError(error.message) from None
    if response.status_code in REDIRECTS:
        raise KeyExchangeError("issuer answered with a redirect (not followed)")
    raw = response.content
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyExchangeError(
            f"issuer answered HTTP {response.status_code} without JSON"
        ) from None
    if response.status_code >= 400:
        reason = issuer_reason(payload)
        if reason:
            raise KeyExchangeError(f"issuer refused: {reason} (HTTP {response.status_code})")
        raise KeyExchangeError(f"issuer answered HTTP {response.status_code}")
    return parse_issuer_response(payload)


# --- key sources for `terminal.protocols.boltcard.provisioning.program_card` / `wipe_card`
# ------------------------


@dataclass(frozen=True)
class FileKeySource:
    """Keys from a key file (or any parsed issuer response): the same keys for any card."""

    response: IssuerResponse

    def k1_hint(self) -> bytes | None:
        return self.response.keys.k1

    def keys_for(self, uid: bytes, facts: CardFacts) -> KeyOffer:
        r = self.response
        return KeyOffer(keys=r.keys, url=r.lnurlw_base, uid=r.uid)


@dataclass(frozen=True)
class IssuerKeySource:
    """Deterministic keys from an issuer key (boltcard DETERMINISTIC.md), or BTCPay Server's
    variant when `pull_payment_id` is given (the id appended to the CardKey input).

    `version` None: `first_version` for a blank card (boltcard 1, BTCPay 0; by default chosen by
    the variant), and the card's own key version when wiping.
    """

    issuer_key: bytes = field(repr=False)
    version: int | None = None
    url: str | None = None
    pull_payment_id: str | None = None
    first_version: int | None = None

    def k1_hint(self) -> bytes | None:
        return derive_k1(self.issuer_key)

    def keys_for(self, uid: bytes, facts: CardFacts) -> KeyOffer:
        version = self.version
        if version is None:
            version = self._first() if facts.blank else self._programmed(uid, facts)
        if not 0 <= version <= 0xFF:
            raise ProvisioningError("a card stores key versions 0..255")
        derived = self._derive(uid, version)
        keys = BoltcardKeys(derived.k0, derived.k1, derived.k2, derived.k3, derived.k4,
                            version=slot_version(version))
        url = card_url(self.url) if self.url else None
        return KeyOffer(keys=keys, url=url, card_id=derived.card_id)

    def _derive(self, uid: bytes, version: int) -> CardKeys:
        return derive_card_keys(self.issuer_key, uid, version,
                                pull_payment_id=self.pull_payment_id)

    def _first(self) -> int:
        if self.first_version is not None:
            return self.first_version
        return BTCPAY_FIRST_KEY_VERSION if self.pull_payment_id else DEFAULT_KEY_VERSION

    def _programmed(self, uid: bytes, facts: CardFacts) -> int:
        """The version a programmed card's keys were derived at. Boltcard's convention: the
        slots' version. BTCPay's programmer writes slot version 1 whatever the derivation
        version (0 for a new card): try the versions from the slots' down to the first and keep
        the one whose keys verify the card's tap, as BTCPay's own reset does."""
        versions = facts.key_versions
        slots = versions[0] or max(versions)
        if self.pull_payment_id is None or facts.tap_url is None:
            return slots
        for version in range(slots, min(self._first(), slots) - 1, -1):
            keys = self._derive(uid, version)
            if verify_tap_url(facts.tap_url, keys.k1, keys.k2).valid:
                return version
        return slots  # none verifies: the wipe refuses these keys before authenticating


@dataclass(frozen=True)
class UrlKeySource:
    """Keys from an issuer's key exchange: POST the UID (program) or the tap URL (wipe)."""

    url: str
    policy: UrlPolicy
    action: Action = Action.PROGRAM
    timeout: float = DEFAULT_TIMEOUT_S

    def k1_hint(self) -> bytes | None:
        return None

    def keys_for(self, uid: bytes, facts: CardFacts) -> KeyOffer:
        if self.action is Action.WIPE or parse_deeplink(self.url).action is Action.WIPE:
            if facts.tap_url is None:
                raise KeyExchangeError("the card shows no tap URL to send to the issuer")
            response = fetch_keys(self.url, self.policy, lnurlw=facts.tap_url,
                                  timeout=self.timeout)
        else:
            response = fetch_keys(self.url, self.policy, uid=uid, timeout=self.timeout)
        return KeyOffer(keys=response.keys, url=response.lnurlw_base, uid=response.uid)
