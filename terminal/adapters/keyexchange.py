"""Card keys from an issuer: key-exchange responses, key files and the `boltcard://` deeplinks.

Issuers answer in different shapes (spec §4); they are told apart by the fields present, never by
`protocol_name`, and field names are matched without regard to case:
- boltcard service: `protocol_name, protocol_version, card_name, lnurlw_base, k0..k4, uid_privacy`
- LNbits: `LNURLW_BASE, K0..K4, CARD_NAME` (and `"action": "wipe"` when wiping)
- BTCPay Server: `LNURLW, version, K0..K4`
- wipe JSON: `action: "wipe", k0..k4, uid, version`
A key file holds any of these. Programming POSTs `{"UID": "<14 hex>"}` to the issuer; resetting
POSTs `{"LNURLW": "<the card's tap URL>"}`. Nothing here ever puts a key into a message.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from terminal.protocols.boltcard import derive_card_keys, derive_k1
from terminal.protocols.boltcard.provisioning import (
    BoltcardKeys,
    CardFacts,
    KeyOffer,
    ProvisioningError,
)
from terminal.protocols.lnurl import UrlPolicy, UrlRefused, check_addresses, check_url

KEY_NAMES = ("k0", "k1", "k2", "k3", "k4")
URL_FIELDS = ("lnurlw_base", "lnurlw")
DEEPLINK_SCHEME = "boltcard"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024  # a key-exchange answer is a few hundred bytes
DEFAULT_KEY_VERSION = 1


class KeyExchangeError(Exception):
    """The issuer's keys could not be obtained or understood (message safe to show and log)."""


class Action(Enum):
    PROGRAM = "program"
    WIPE = "wipe"


@dataclass(frozen=True)
class IssuerResponse:
    """Keys for one card, as an issuer (or a key file) gave them."""

    keys: BoltcardKeys
    lnurlw_base: str | None = None
    action: Action = Action.PROGRAM
    card_name: str | None = None
    uid: bytes | None = field(default=None, repr=False)  # keep the UID out of logs


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
        return url
    return None


def parse_issuer_response(payload: object) -> IssuerResponse:
    """Keys (and card URL) from any supported issuer response; raises `KeyExchangeError`."""
    if not isinstance(payload, Mapping):
        raise KeyExchangeError("issuer response is not a JSON object")
    fields = _folded(payload)
    status = fields.get("status")
    if isinstance(status, str) and status.upper() == "ERROR":
        reason = fields.get("reason")
        text = reason[:200] if isinstance(reason, str) else "no reason given"
        raise KeyExchangeError(f"issuer refused: {text}")
    missing = [n.upper() for n in KEY_NAMES if n not in fields]
    if missing:
        raise KeyExchangeError(f"issuer response lacks {', '.join(missing)}: not a key response")
    action_text = fields.get("action")
    action = Action.PROGRAM
    if isinstance(action_text, str) and action_text.strip().lower() == "wipe":
        action = Action.WIPE
    card_name = fields.get("card_name")
    keys = [_key(fields, name) for name in KEY_NAMES]
    return IssuerResponse(
        keys=BoltcardKeys.of(keys, version=_version(fields)),
        lnurlw_base=_lnurlw(fields),
        action=action,
        card_name=card_name if isinstance(card_name, str) else None,
        uid=_uid(fields),
    )


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
    hosts, public addresses); redirects are not followed.
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
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("POST", link.url, json=body) as response,
        ):
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise KeyExchangeError("issuer's answer is far too large")
    except httpx.HTTPError as error:
        raise KeyExchangeError(
            f"issuer {target.host} unreachable ({type(error).__name__})"
        ) from None
    if response.is_redirect:
        raise KeyExchangeError("issuer answered with a redirect (not followed)")
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyExchangeError(
            f"issuer answered HTTP {response.status_code} without JSON"
        ) from None
    if response.status_code >= 400:
        # An issuer's {"status": "ERROR", "reason": …} says why; anything else is just the code.
        if isinstance(payload, Mapping) and str(_folded(payload).get("status", "")).upper() == (
            "ERROR"
        ):
            parse_issuer_response(payload)
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
    """Deterministic keys from an issuer key (boltcard DETERMINISTIC.md).

    `version` None: 1 for a blank card, and the card's own key version when wiping.
    """

    issuer_key: bytes = field(repr=False)
    version: int | None = None
    url: str | None = None

    def k1_hint(self) -> bytes | None:
        return derive_k1(self.issuer_key)

    def keys_for(self, uid: bytes, facts: CardFacts) -> KeyOffer:
        versions = facts.key_versions
        version = self.version
        if version is None:
            version = versions[0] or max(versions) or DEFAULT_KEY_VERSION
        if not 0 <= version <= 0xFF:
            raise ProvisioningError("a card stores key versions 0..255")
        derived = derive_card_keys(self.issuer_key, uid, version)
        keys = BoltcardKeys(derived.k0, derived.k1, derived.k2, derived.k3, derived.k4,
                            version=version)
        return KeyOffer(keys=keys, url=self.url, card_id=derived.card_id)


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
