"""Boltcard issuer arithmetic for the sandbox: deterministic keys and SUN (p/c) checks.

Keys follow boltcard docs/DETERMINISTIC.md (PRF = AES-CMAC, 4-byte labels); the tap check follows
the NTAG 424 DNA SUN message: p = AES(K1, PICCData), c = MACt(CMAC(K2, SV2), empty).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from hw.ntag424.crypto import aes_ecb_decrypt, cmac, sdm_mac

LABEL_CARD_KEY = bytes.fromhex("2D003F75")
LABEL_K0 = bytes.fromhex("2D003F76")
LABEL_K1 = bytes.fromhex("2D003F77")
LABEL_K2 = bytes.fromhex("2D003F78")
LABEL_K3 = bytes.fromhex("2D003F79")
LABEL_K4 = bytes.fromhex("2D003F7A")
LABEL_CARD_ID = bytes.fromhex("2D003F7B")
PICC_DATA_TAG = 0xC7  # UID and SDMReadCtr mirrored, UID length 7
UID_LEN = 7


@dataclass(frozen=True)
class CardKeys:
    card_key: bytes = field(repr=False)
    k0: bytes = field(repr=False)
    k1: bytes = field(repr=False)
    k2: bytes = field(repr=False)
    k3: bytes = field(repr=False)
    k4: bytes = field(repr=False)
    card_id: bytes = b""


def k1_for(issuer_key: bytes) -> bytes:
    return cmac(issuer_key, LABEL_K1)


def card_id_for(issuer_key: bytes, uid: bytes) -> bytes:
    return cmac(issuer_key, LABEL_CARD_ID + uid)


def derive_card_keys(issuer_key: bytes, uid: bytes, version: int) -> CardKeys:
    card_key = cmac(issuer_key, LABEL_CARD_KEY + uid + version.to_bytes(4, "little"))
    return CardKeys(
        card_key=card_key,
        k0=cmac(card_key, LABEL_K0),
        k1=k1_for(issuer_key),
        k2=cmac(card_key, LABEL_K2),
        k3=cmac(card_key, LABEL_K3),
        k4=cmac(card_key, LABEL_K4),
        card_id=card_id_for(issuer_key, uid),
    )


class TapRejected(Exception):
    """A p/c pair this issuer does not accept; `reason` is what the LNURL error says."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PiccData:
    uid: bytes
    counter: int
    counter_le: bytes


def decrypt_p(k1: bytes, p_hex: str) -> PiccData:
    try:
        p = bytes.fromhex(p_hex)
    except ValueError:
        raise TapRejected("Bad p parameter: not hex") from None
    if len(p) != 16:
        raise TapRejected("Bad p parameter: expected 32 hex characters")
    picc = aes_ecb_decrypt(k1, p)
    if picc[0] != PICC_DATA_TAG:
        raise TapRejected("Card not issued by this service")
    counter_le = picc[1 + UID_LEN : 1 + UID_LEN + 3]
    return PiccData(picc[1 : 1 + UID_LEN], int.from_bytes(counter_le, "little"), counter_le)


def check_c(k2: bytes, picc: PiccData, c_hex: str) -> None:
    try:
        c = bytes.fromhex(c_hex)
    except ValueError:
        raise TapRejected("Bad c parameter: not hex") from None
    if len(c) != 8:
        raise TapRejected("Bad c parameter: expected 16 hex characters")
    if not hmac.compare_digest(sdm_mac(k2, picc.uid, picc.counter_le), c):
        raise TapRejected("CMAC does not check")
