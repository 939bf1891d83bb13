"""Boltcard taps: parse the SUN URL, verify `p`/`c`, derive keys, find the issuer (no I/O).

The friendly surface re-exported here is what the rest of the terminal uses; the AES/CMAC
arithmetic beneath it lives in `hw.ntag424.crypto`.
"""

from terminal.protocols.boltcard.errors import KeyFormatError, TapError, TapReason
from terminal.protocols.boltcard.keyring import (
    DeterministicIssuer,
    Issuer,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
    TapVerification,
    key_table_card_id,
)
from terminal.protocols.boltcard.keys import (
    CardKeys,
    IssuerKeys,
    derive_card_id,
    derive_card_key,
    derive_card_keys,
    derive_k1,
)
from terminal.protocols.boltcard.sun import (
    PiccData,
    PiccDecryptor,
    SunMacVerifier,
    SunResult,
    SunVerifier,
    verify_sun,
    verify_tap_url,
)
from terminal.protocols.boltcard.tap_url import TapParams, parse_tap_url

__all__ = [
    "CardKeys",
    "DeterministicIssuer",
    "Issuer",
    "IssuerKeys",
    "KeyFormatError",
    "KeyTableCard",
    "KeyTableIssuer",
    "Keyring",
    "PiccData",
    "PiccDecryptor",
    "SunMacVerifier",
    "SunResult",
    "SunVerifier",
    "TapError",
    "TapParams",
    "TapReason",
    "TapVerification",
    "derive_card_id",
    "derive_card_key",
    "derive_card_keys",
    "derive_k1",
    "key_table_card_id",
    "parse_tap_url",
    "verify_sun",
    "verify_tap_url",
]
