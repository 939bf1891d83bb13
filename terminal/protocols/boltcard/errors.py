"""Why a tap was refused: one reason code for screens and logs, one exception type for parsing."""

from __future__ import annotations

from enum import StrEnum


class TapReason(StrEnum):
    """Machine-readable reasons a tap is not valid (stable strings: the CLI prints them)."""

    MALFORMED = "malformed"  # the URL is not a SUN tap URL (missing/duplicate/bad p or c, junk)
    NOT_PICC_DATA = "not-picc-data"  # p did not decrypt to PICCData under the given K1
    UNKNOWN_ISSUER = "unknown-issuer"  # no configured issuer's K1 (or card entry) fits the tap
    CMAC_MISMATCH = "cmac-mismatch"  # p decrypted, but c is not the card's SDMMAC


class TapError(ValueError):
    """A tap URL or SUN field that cannot be used. Never carries keys, UIDs or the URL itself."""

    def __init__(self, detail: str, reason: TapReason = TapReason.MALFORMED) -> None:
        super().__init__(f"{reason.value} tap: {detail}")
        self.reason = reason
        self.detail = detail


class KeyFormatError(ValueError):
    """A key, UID or version of the wrong size or range (the value itself is never echoed)."""
