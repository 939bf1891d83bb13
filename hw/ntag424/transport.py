"""How APDUs reach the card: a one-method protocol, and an adapter for a real nfcpy Type 4A tag."""

from __future__ import annotations

from typing import Any, Protocol

from hw.ntag424.errors import CardRemovedError, TransportError


class Transport(Protocol):
    """Sends one command APDU and returns the response: data ‖ SW1 ‖ SW2.

    Raises `TransportError` (or `CardRemovedError`) when no response arrives.
    """

    def transceive(self, apdu: bytes) -> bytes: ...


class NfcpyTransport:
    """Adapter for `nfc.tag.tt4.Type4ATag`: raw ISO-DEP exchange through `tag.transceive`.

    nfcpy's `send_apdu` raises on the native `91xx` status words, so the raw path is used and
    status handling stays in this package.
    """

    def __init__(self, tag: Any, timeout: float | None = None) -> None:
        self._tag = tag
        self._timeout = timeout

    def transceive(self, apdu: bytes) -> bytes:
        # Imported here so that code which never touches a reader does not load nfcpy.
        import nfc.clf
        import nfc.tag

        try:
            response = self._tag.transceive(bytearray(apdu), timeout=self._timeout)
        except nfc.tag.TagCommandError as error:
            if error.errno == nfc.tag.TIMEOUT_ERROR:
                raise CardRemovedError() from error
            raise TransportError() from error
        except (nfc.clf.TimeoutError, nfc.clf.BrokenLinkError) as error:
            raise CardRemovedError() from error
        except nfc.clf.CommunicationError as error:
            raise TransportError() from error
        if response is None:
            raise CardRemovedError()
        return bytes(response)
