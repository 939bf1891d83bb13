"""Which issuer's card tapped, and is the tap genuine? The keys of every configured issuer.

A tap carries no issuer name that can be trusted (`c` does not cover host or path), so the keyring
tries each issuer's K1 on `p`: only the right K1 yields PICCData starting with C7. A wrong K1 still
gives C7 about once in 256 tries, so a C7 whose `c` fails does not stop the search.

Card IDs (what the ledger and screens see instead of the UID):
- deterministic issuers: the boltcard card ID, CMAC(IssuerKey, 2D003F7B ‖ UID), lower-case hex;
- key tables: HMAC-SHA256(key=K2 of the card, message=UID), first 16 bytes, lower-case hex
  (`key_table_card_id`). Keyed by the card's K2 so that it cannot be computed from the UID alone
  and the same chip under two tables gets two unrelated IDs.

Counter freshness is not judged here: the ledger owns the last accepted counter of each card.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.protocols.boltcard.errors import TapError, TapReason
from terminal.protocols.boltcard.keys import (
    DEFAULT_VERSION,
    VERSION_MAX,
    IssuerKeys,
    check_uid,
    check_version,
)
from terminal.protocols.boltcard.sun import PiccData, PiccDecryptor, SunMacVerifier, check_key
from terminal.protocols.boltcard.tap_url import TapParams, check_param_name, parse_tap_url

CARD_ID_BYTES = 16
K2_CACHE_SIZE = 4096  # prepared K2 verifiers kept for deterministic cards (one per card+version)
DEFAULT_VERSION_WINDOW = 4  # versions tried for a card the configuration does not list
MAX_VERSION_WINDOW = 16


def key_table_card_id(k2: bytes, uid: bytes) -> str:
    """Card ID of a key-table card: HMAC-SHA256(K2, UID) truncated to 16 bytes, hex."""
    return hmac.digest(k2, uid, "sha256")[:CARD_ID_BYTES].hex()


def _hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    if isinstance(hosts, str):
        hosts = (hosts,)
    return tuple(host.lower() for host in hosts)


@dataclass(frozen=True)
class DeterministicIssuer:
    """An issuer whose cards' keys derive from one IssuerKey (boltcard DETERMINISTIC.md).

    `versions` maps card ID to the key version of that card's current programming. A card not in
    it is tried with `default_version` and the `version_window - 1` versions after it: issuers
    bump the version each time they re-program a card, and a terminal that has not been told yet
    must not refuse a genuine card (each extra try adds one 2^-64 chance to an 8-byte MAC).
    `hosts`, when given, limits the issuer to taps whose URL host is one of them (the host is not
    authenticated; this only narrows the search). `pull_payment_id` selects BTCPay Server's
    variant of the CardKey derivation.
    """

    name: str
    issuer_key: bytes = field(repr=False)
    versions: Mapping[str, int] = field(default_factory=dict)
    p_param: str = "p"
    c_param: str = "c"
    hosts: tuple[str, ...] = ()
    default_version: int = DEFAULT_VERSION
    pull_payment_id: str | None = None
    version_window: int = DEFAULT_VERSION_WINDOW

    def __post_init__(self) -> None:
        check_key(self.issuer_key, f"issuer key of {self.name!r}")
        if not 1 <= self.version_window <= MAX_VERSION_WINDOW:
            raise ValueError(f"version_window must be 1..{MAX_VERSION_WINDOW}")
        check_param_name(self.p_param)
        check_param_name(self.c_param)
        check_version(self.default_version)
        versions = {str(card_id).lower(): check_version(v) for card_id, v in self.versions.items()}
        object.__setattr__(self, "issuer_key", bytes(self.issuer_key))
        object.__setattr__(self, "versions", MappingProxyType(versions))
        object.__setattr__(self, "hosts", _hosts(self.hosts))


@dataclass(frozen=True)
class KeyTableCard:
    """Explicit keys of one card (random per-card keys, e.g. LNbits).

    Identify the card by `uid` or by `card_id` (its `key_table_card_id`); with neither, any card
    whose `p` decrypts under `k1` and whose `c` verifies under `k2` is this card.
    """

    k1: bytes = field(repr=False)
    k2: bytes = field(repr=False)
    k0: bytes | None = field(default=None, repr=False)
    k3: bytes | None = field(default=None, repr=False)
    k4: bytes | None = field(default=None, repr=False)
    uid: bytes | None = field(default=None, repr=False)
    card_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("k0", "k1", "k2", "k3", "k4"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_key(value, name.upper()))
        if self.uid is not None:
            object.__setattr__(self, "uid", check_uid(self.uid))
        if self.card_id is not None:
            object.__setattr__(self, "card_id", self.card_id.lower())


@dataclass(frozen=True)
class KeyTableIssuer:
    """An issuer whose cards each have their own keys; several cards may share a K1."""

    name: str
    cards: Sequence[KeyTableCard]
    p_param: str = "p"
    c_param: str = "c"
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_param_name(self.p_param)
        check_param_name(self.c_param)
        object.__setattr__(self, "cards", tuple(self.cards))
        object.__setattr__(self, "hosts", _hosts(self.hosts))


Issuer = DeterministicIssuer | KeyTableIssuer


@dataclass(frozen=True, slots=True)
class TapVerification:
    """Result of `Keyring.verify_tap`.

    On `cmac-mismatch`, `issuer`, `card_id` and `counter` name the first issuer whose K1 decrypted
    `p`: a hint for diagnostics, not authenticated. `internal_uid` is the raw UID, kept out of the
    repr; use it only where the protocol needs the UID itself (wipe/reset requests), never in logs,
    exports or screens.
    """

    valid: bool
    reason: TapReason | None
    issuer: str | None = None
    card_id: str | None = None
    counter: int | None = None
    detail: str = ""
    internal_uid: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def card(self) -> VerifiedCard | None:
        """Whose card and which counter, for a valid tap only (None otherwise)."""
        if not self.valid or self.issuer is None or self.card_id is None or self.counter is None:
            return None
        return VerifiedCard(self.issuer, self.card_id, self.counter)


@dataclass(frozen=True, slots=True)
class VerifiedCard:
    """A tap whose SUN verified: the issuer, the keyed card id and the card's read counter."""

    issuer: str
    card_id: str
    counter: int


@dataclass(frozen=True, slots=True)
class _Match:
    issuer: str
    card_id: str
    picc: PiccData
    valid: bool


class _DeterministicSlot:
    def __init__(self, issuer: DeterministicIssuer) -> None:
        self.issuer = issuer
        self.keys = IssuerKeys(issuer.issuer_key, pull_payment_id=issuer.pull_payment_id)
        self.decryptor = PiccDecryptor(self.keys.k1)
        self._k2_cache: OrderedDict[tuple[bytes, int], SunMacVerifier] = OrderedDict()

    def check(self, p: bytes, c: bytes) -> _Match | None:
        picc = self.decryptor.decrypt(p)
        if picc is None:
            return None
        card_id = self.keys.card_id(picc.uid)
        known = self.issuer.versions.get(card_id)
        if known is not None:
            candidates: Iterable[int] = (known,)
        else:
            first = self.issuer.default_version
            candidates = range(first, min(first + self.issuer.version_window, VERSION_MAX + 1))
        valid = any(self._k2_verifier(picc.uid, v).matches(c, picc) for v in candidates)
        return _Match(self.issuer.name, card_id, picc, valid)

    def card_ids(self, uid: bytes) -> list[str]:
        return [self.keys.card_id(uid)]

    def _k2_verifier(self, uid: bytes, version: int) -> SunMacVerifier:
        key = (uid, version)
        verifier = self._k2_cache.get(key)
        if verifier is None:
            verifier = SunMacVerifier(self.keys.k2(uid, version))
            self._k2_cache[key] = verifier
            if len(self._k2_cache) > K2_CACHE_SIZE:
                self._k2_cache.popitem(last=False)
        return verifier


class _KeyTableSlot:
    def __init__(self, issuer: KeyTableIssuer) -> None:
        self.issuer = issuer
        groups: dict[bytes, list[tuple[KeyTableCard, SunMacVerifier, str | None]]] = {}
        for card in issuer.cards:
            # A card listed by UID has a fixed card ID: compute it once, not on every tap.
            known_id = None if card.uid is None else key_table_card_id(card.k2, card.uid)
            groups.setdefault(card.k1, []).append((card, SunMacVerifier(card.k2), known_id))
        self.groups = [(PiccDecryptor(k1), entries) for k1, entries in groups.items()]

    def check(self, p: bytes, c: bytes) -> _Match | None:
        first: _Match | None = None
        for decryptor, entries in self.groups:
            picc = decryptor.decrypt(p)
            if picc is None:
                continue
            for card, verifier, known_id in entries:
                if card.uid is not None and not hmac.compare_digest(card.uid, picc.uid):
                    continue
                card_id = known_id or key_table_card_id(card.k2, picc.uid)
                if card.card_id is not None and card.card_id != card_id:
                    continue
                match = _Match(self.issuer.name, card_id, picc, verifier.matches(c, picc))
                if match.valid:
                    return match
                first = first or match
        return first

    def card_ids(self, uid: bytes) -> list[str]:
        """The ids a card with this UID has in the table: an entry listed by UID must match it;
        an entry listed by card id must compute to that id; an entry with neither could be any
        card, so its id for this UID is included too (it names no other card)."""
        found: list[str] = []
        for _decryptor, entries in self.groups:
            for card, _verifier, known_id in entries:
                if card.uid is not None:
                    if hmac.compare_digest(card.uid, uid) and known_id is not None:
                        found.append(known_id)
                    continue
                card_id = key_table_card_id(card.k2, uid)
                if card.card_id is None or card.card_id == card_id:
                    found.append(card_id)
        return list(dict.fromkeys(found))


class Keyring:
    """All configured issuers; answers "is this tap genuine, and whose card is it?"."""

    def __init__(self, issuers: Iterable[Issuer]) -> None:
        self._slots: list[_DeterministicSlot | _KeyTableSlot] = []
        names: set[str] = set()
        for issuer in issuers:
            if isinstance(issuer, DeterministicIssuer):
                slot: _DeterministicSlot | _KeyTableSlot = _DeterministicSlot(issuer)
            elif isinstance(issuer, KeyTableIssuer):
                slot = _KeyTableSlot(issuer)
            else:
                raise TypeError("an issuer must be a DeterministicIssuer or a KeyTableIssuer")
            if issuer.name in names:
                raise ValueError(f"two issuers are named {issuer.name!r}")
            names.add(issuer.name)
            self._slots.append(slot)

    def __repr__(self) -> str:
        return f"Keyring(issuers={[slot.issuer.name for slot in self._slots]!r})"

    @property
    def issuer_names(self) -> list[str]:
        return [slot.issuer.name for slot in self._slots]

    def card_ids(self, uid: bytes) -> list[tuple[str, str]]:
        """(issuer name, card id) of the card with this UID under every configured issuer that
        could have issued it: how a UID (a hotlist entry, `card block --uid`) becomes the keyed
        card ids the ledger knows. Raises KeyFormatError for a UID that is not 7 bytes."""
        uid = check_uid(uid)
        return [(slot.issuer.name, card_id)
                for slot in self._slots for card_id in slot.card_ids(uid)]

    def verify_tap(self, url: str) -> TapVerification:
        """Check a tap URL against every issuer; never raises for any input text."""
        parsed: dict[tuple[str, str], TapParams | TapError] = {}
        param_names = [(slot.issuer.p_param, slot.issuer.c_param) for slot in self._slots]
        for p_param, c_param in param_names or [("p", "c")]:
            self._parse(url, p_param, c_param, parsed)
        errors = [outcome for outcome in parsed.values() if isinstance(outcome, TapError)]
        if len(errors) == len(parsed):  # malformed under every issuer's parameter names
            return TapVerification(False, TapReason.MALFORMED, detail=errors[0].detail)
        mismatch: _Match | None = None
        for slot in self._slots:
            params = parsed[(slot.issuer.p_param, slot.issuer.c_param)]
            if isinstance(params, TapError):
                continue
            if slot.issuer.hosts and params.host not in slot.issuer.hosts:
                continue
            match = slot.check(params.p, params.c)
            if match is None:
                continue
            if match.valid:
                return _verification(match, None, "")
            mismatch = mismatch or match
        if mismatch is not None:
            return _verification(
                mismatch, TapReason.CMAC_MISMATCH, "c does not authenticate this card's tap"
            )
        return TapVerification(
            False, TapReason.UNKNOWN_ISSUER, detail="no configured issuer's keys fit this card"
        )

    @staticmethod
    def _parse(
        url: str, p_param: str, c_param: str, cache: dict[tuple[str, str], TapParams | TapError]
    ) -> TapParams | TapError:
        key = (p_param, c_param)
        if key not in cache:
            try:
                cache[key] = parse_tap_url(url, p_param, c_param)
            except TapError as exc:
                cache[key] = exc
        return cache[key]


def _verification(match: _Match, reason: TapReason | None, detail: str) -> TapVerification:
    return TapVerification(
        valid=match.valid,
        reason=reason,
        issuer=match.issuer,
        card_id=match.card_id,
        counter=match.picc.counter,
        detail=detail,
        internal_uid=match.picc.uid,
    )
