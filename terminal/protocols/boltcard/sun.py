"""Verify a Boltcard's Secure Unique NFC message: `p` (encrypted PICCData) and `c` (SDMMAC).

NT4H2421Gx §9.3 and AN12196 §3: p = AES-128 of PICCData under K1 (SDMMetaReadKey); PICCData is
`C7` ‖ UID (7) ‖ SDMReadCtr (3, least significant first) ‖ 5 random bytes. c = MACt of an empty
message under CMAC(K2, SV2), K2 being SDMFileReadKey. The verifier objects prepare the ciphers once
per key, so a tap costs four AES block operations and one key schedule.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from functools import lru_cache

from Crypto.Cipher import AES

from hw.ntag424.crypto import BLOCK, ShortCmac, sdm_mac_precomputed
from terminal.protocols.boltcard.errors import KeyFormatError, TapError, TapReason
from terminal.protocols.boltcard.tap_url import parse_tap_url

# PICCDataTag (NT4H2421Gx §9.3.4): UID mirrored (bit 7), counter mirrored (bit 6), UID length 7.
PICC_DATA_TAG = 0xC7
UID_LENGTH = 7
SDM_READ_CTR_LENGTH = 3
SDMMAC_LENGTH = 8
KEY_LENGTH = 16
_UID = slice(1, 1 + UID_LENGTH)
_CTR = slice(1 + UID_LENGTH, 1 + UID_LENGTH + SDM_READ_CTR_LENGTH)


def check_key(key: bytes, name: str = "key") -> bytes:
    """Return `key` as bytes if it is a 16-byte AES key; the message never shows the value."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LENGTH:
        raise KeyFormatError(f"{name} must be {KEY_LENGTH} bytes (32 hex characters)")
    return bytes(key)


@dataclass(frozen=True, slots=True)
class PiccData:
    """Decrypted PICCData of a tap. The UID stays out of the repr (spec §5: keep it out of logs)."""

    uid: bytes = field(repr=False)
    counter_le: bytes  # SDMReadCtr exactly as the card sent it (LSB first), for the MAC input

    @property
    def counter(self) -> int:
        return int.from_bytes(self.counter_le, "little")


@dataclass(frozen=True, slots=True)
class SunResult:
    """Outcome of checking one `p`/`c` pair against one K1/K2.

    `uid` and `counter` are set whenever `p` decrypted to PICCData, even if `c` does not match
    (then they are unauthenticated). `detail` says in words why a tap is not valid.
    """

    valid: bool
    reason: TapReason | None
    uid: bytes | None = field(default=None, repr=False)
    counter: int | None = None
    detail: str = ""


class PiccDecryptor:
    """Decrypts `p` under one K1 (SDMMetaReadKey). One block with a zero IV, so plain ECB."""

    __slots__ = ("_decrypt",)

    def __init__(self, k1: bytes) -> None:
        self._decrypt = AES.new(check_key(k1, "K1"), AES.MODE_ECB).decrypt

    def __repr__(self) -> str:
        return "PiccDecryptor(<K1 hidden>)"

    def decrypt(self, p: bytes) -> PiccData | None:
        """The PICCData in `p`, or None when its first byte is not C7 (not this K1)."""
        plain = self._decrypt(p)
        if plain[0] != PICC_DATA_TAG:
            return None
        return PiccData(uid=plain[_UID], counter_le=plain[_CTR])


class SunMacVerifier:
    """Checks `c` under one K2 (SDMFileReadKey), with K2's CMAC subkeys prepared once."""

    __slots__ = ("_k2_cmac",)

    def __init__(self, k2: bytes) -> None:
        self._k2_cmac = ShortCmac(check_key(k2, "K2"))

    def __repr__(self) -> str:
        return "SunMacVerifier(<K2 hidden>)"

    def expected_c(self, picc: PiccData) -> bytes:
        return sdm_mac_precomputed(self._k2_cmac, picc.uid, picc.counter_le)

    def matches(self, c: bytes, picc: PiccData) -> bool:
        # All 8 bytes, constant time: a byte-wise early exit would let an attacker time-probe c.
        return hmac.compare_digest(self.expected_c(picc), c)


class SunVerifier:
    """Verifies taps of cards sharing one K1/K2 pair (one card, or a test fixture)."""

    __slots__ = ("_decryptor", "_mac")

    def __init__(self, k1: bytes, k2: bytes) -> None:
        self._decryptor = PiccDecryptor(k1)
        self._mac = SunMacVerifier(k2)

    def __repr__(self) -> str:
        return "SunVerifier(<keys hidden>)"

    def verify(self, p: bytes, c: bytes) -> SunResult:
        check_sun_fields(p, c)
        picc = self._decryptor.decrypt(p)
        if picc is None:
            return SunResult(
                False, TapReason.NOT_PICC_DATA, detail="p does not decrypt to PICCData under K1"
            )
        if not self._mac.matches(c, picc):
            return SunResult(
                False,
                TapReason.CMAC_MISMATCH,
                uid=picc.uid,
                counter=picc.counter,
                detail="c is not the SDMMAC of this UID and counter under K2",
            )
        return SunResult(True, None, uid=picc.uid, counter=picc.counter)


def check_sun_fields(p: bytes, c: bytes) -> None:
    """Raise TapError(malformed) unless `p` is one AES block and `c` is 8 bytes."""
    if not isinstance(p, bytes | bytearray) or len(p) != BLOCK:
        raise TapError(f"p must be {BLOCK} bytes")
    if not isinstance(c, bytes | bytearray) or len(c) != SDMMAC_LENGTH:
        raise TapError(f"c must be {SDMMAC_LENGTH} bytes")


@lru_cache(maxsize=64)
def _verifier(k1: bytes, k2: bytes) -> SunVerifier:
    # Callers such as the CLI or a single-card test pass the same keys again and again; the key
    # schedule is the most expensive step, so keep a few prepared verifiers.
    return SunVerifier(k1, k2)


def verify_sun(p: bytes, c: bytes, k1: bytes, k2: bytes) -> SunResult:
    """Check one tap's `p`/`c` (raw bytes) against K1/K2. Raises TapError only for bad sizes."""
    return _verifier(check_key(k1, "K1"), check_key(k2, "K2")).verify(p, c)


def verify_tap_url(
    url: str, k1: bytes, k2: bytes, *, p_param: str = "p", c_param: str = "c"
) -> SunResult:
    """Parse a tap URL and check it against K1/K2; a malformed URL is a result, not an error."""
    k1, k2 = check_key(k1, "K1"), check_key(k2, "K2")
    try:
        params = parse_tap_url(url, p_param, c_param)
    except TapError as exc:
        return SunResult(False, TapReason.MALFORMED, detail=exc.detail)
    return _verifier(k1, k2).verify(params.p, params.c)
