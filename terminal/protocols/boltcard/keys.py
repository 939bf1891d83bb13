"""Deterministic Boltcard keys (boltcard/boltcard docs/DETERMINISTIC.md), PRF = AES-CMAC.

    CardKey = CMAC(IssuerKey, 2D003F75 ‖ UID ‖ version (4 bytes LE) [‖ BTCPay pull-payment id])
    K0 = CMAC(CardKey, 2D003F76)      K1 = CMAC(IssuerKey, 2D003F77)  (shared by all cards)
    K2 = CMAC(CardKey, 2D003F78)      K3 = CMAC(CardKey, 2D003F79)    K4 = CMAC(CardKey, 2D003F7A)
    card ID = CMAC(IssuerKey, 2D003F7B ‖ UID)

The card ID is a keyed hash of the UID: the terminal stores and shows it instead of the UID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hw.ntag424.crypto import BLOCK, ShortCmac, cmac
from terminal.protocols.boltcard.errors import KeyFormatError
from terminal.protocols.boltcard.sun import UID_LENGTH, check_key

CARD_KEY_LABEL = bytes.fromhex("2D003F75")
K0_LABEL = bytes.fromhex("2D003F76")
K1_LABEL = bytes.fromhex("2D003F77")
K2_LABEL = bytes.fromhex("2D003F78")
K3_LABEL = bytes.fromhex("2D003F79")
K4_LABEL = bytes.fromhex("2D003F7A")
CARD_ID_LABEL = bytes.fromhex("2D003F7B")
VERSION_MAX = 0xFFFF_FFFF  # the version is 4 bytes in the CardKey input
DEFAULT_VERSION = 1  # boltcard's first programming of a card


@dataclass(frozen=True, slots=True)
class CardKeys:
    """The five application keys of one card and its card ID (lower-case hex, not secret)."""

    k0: bytes = field(repr=False)  # AppMasterKey: authenticates key and settings changes
    k1: bytes = field(repr=False)  # SDMMetaReadKey: decrypts p
    k2: bytes = field(repr=False)  # SDMFileReadKey: keys the c MAC
    k3: bytes = field(repr=False)
    k4: bytes = field(repr=False)
    card_id: str

    def hex_dict(self) -> dict[str, str]:
        """k0..k4 and card_id as lower-case hex (the `card keys --json` shape)."""
        return {
            "k0": self.k0.hex(),
            "k1": self.k1.hex(),
            "k2": self.k2.hex(),
            "k3": self.k3.hex(),
            "k4": self.k4.hex(),
            "card_id": self.card_id,
        }


def check_uid(uid: bytes) -> bytes:
    if not isinstance(uid, bytes | bytearray) or len(uid) != UID_LENGTH:
        raise KeyFormatError(f"a card UID must be {UID_LENGTH} bytes (14 hex characters)")
    return bytes(uid)


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= VERSION_MAX:
        raise KeyFormatError(f"a key version must be an integer from 0 to {VERSION_MAX}")
    return version


class IssuerKeys:
    """Derivations from one IssuerKey, its CMAC prepared once (the Keyring's per-tap path)."""

    __slots__ = ("_cmac", "_issuer_key", "_pull_payment_id", "k1")

    def __init__(self, issuer_key: bytes, *, pull_payment_id: str | None = None) -> None:
        self._issuer_key = check_key(issuer_key, "issuer key")
        self._cmac = ShortCmac(self._issuer_key)
        # BTCPay Server's variant binds the keys to a pull payment (UTF-8 id after the version).
        self._pull_payment_id = None if pull_payment_id is None else pull_payment_id.encode()
        self.k1 = self._cmac.digest(K1_LABEL)

    def __repr__(self) -> str:
        return "IssuerKeys(<issuer key hidden>)"

    def card_id(self, uid: bytes) -> str:
        return self._cmac.digest(CARD_ID_LABEL + check_uid(uid)).hex()

    def card_key(self, uid: bytes, version: int) -> bytes:
        message = CARD_KEY_LABEL + check_uid(uid) + check_version(version).to_bytes(4, "little")
        if self._pull_payment_id is not None:
            message += self._pull_payment_id
        if len(message) <= BLOCK:
            return self._cmac.digest(message)
        return cmac(self._issuer_key, message)

    def k2(self, uid: bytes, version: int) -> bytes:
        return ShortCmac(self.card_key(uid, version)).digest(K2_LABEL)

    def card_keys(self, uid: bytes, version: int) -> CardKeys:
        card_cmac = ShortCmac(self.card_key(uid, version))
        return CardKeys(
            k0=card_cmac.digest(K0_LABEL),
            k1=self.k1,
            k2=card_cmac.digest(K2_LABEL),
            k3=card_cmac.digest(K3_LABEL),
            k4=card_cmac.digest(K4_LABEL),
            card_id=self.card_id(uid),
        )


def derive_card_keys(
    issuer_key: bytes,
    uid: bytes,
    version: int = DEFAULT_VERSION,
    *,
    pull_payment_id: str | None = None,
) -> CardKeys:
    """K0..K4 and the card ID of card `uid` at key `version` under `issuer_key`."""
    return IssuerKeys(issuer_key, pull_payment_id=pull_payment_id).card_keys(uid, version)


def derive_card_key(
    issuer_key: bytes, uid: bytes, version: int, *, pull_payment_id: str | None = None
) -> bytes:
    """The intermediate CardKey (secret; exposed for test vectors and key exchange)."""
    return IssuerKeys(issuer_key, pull_payment_id=pull_payment_id).card_key(uid, version)


def derive_k1(issuer_key: bytes) -> bytes:
    """K1, shared by every card of the issuer."""
    return IssuerKeys(issuer_key).k1


def derive_card_id(issuer_key: bytes, uid: bytes) -> str:
    """The deterministic card ID (lower-case hex of CMAC(IssuerKey, 2D003F7B ‖ UID))."""
    return IssuerKeys(issuer_key).card_id(uid)


def key_fingerprint(key: bytes) -> str:
    """A short public name for a key: the first 4 hex of its SHA-256 (never the key itself),
    so a technician can tell two configured keys apart on a screen or in a report."""
    return hashlib.sha256(key).hexdigest()[:4]
