"""How APDUs reach the card: a one-method protocol (nfcpy's adapter lives in `hw.nfc`, so this
package never loads nfcpy)."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """Sends one command APDU and returns the response: data ‖ SW1 ‖ SW2.

    Raises `TransportError` (or `CardRemovedError`) when no response arrives.
    """

    def transceive(self, apdu: bytes) -> bytes: ...
