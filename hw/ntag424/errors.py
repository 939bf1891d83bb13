"""Typed NTAG 424 DNA errors, one class per status word, with messages a technician understands.

Like nfcpy's `Type4TagCommandError.from_status`: the class knows its status word. Messages never
carry keys, MACs or the card's UID.
"""

from __future__ import annotations

from typing import ClassVar


class Ntag424Error(Exception):
    """Base class for everything that goes wrong talking to an NTAG 424 DNA."""

    sw: ClassVar[int | None] = None
    message: ClassVar[str] = "the card reported an error"
    _by_sw: ClassVar[dict[int, type[Ntag424Error]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.sw is not None:
            Ntag424Error._by_sw[cls.sw] = cls

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        self.status = status if status is not None else self.sw
        text = message or self.message
        if self.status is not None:
            text = f"{text} [status {self.status:04X}]"
        super().__init__(text)

    @staticmethod
    def from_status(sw: int, context: str | None = None) -> Ntag424Error:
        """The error for status word `sw` (SW1SW2 as one integer); `context` names the command."""
        cls = Ntag424Error._by_sw.get(sw, CardStatusError)
        text = cls.message if context is None else f"{context}: {cls.message}"
        return cls(text, status=sw)


class CardStatusError(Ntag424Error):
    """A status word with no dedicated class."""

    message = "the card rejected the command"


class AuthenticationError(Ntag424Error):
    sw = 0x91AE
    message = ("card refused the key (wrong key, or not this issuer's card), "
               "or this command needs another key")


class LengthError(Ntag424Error):
    sw = 0x917E
    message = "card rejected the command length (software or protocol bug)"


class IntegrityError(Ntag424Error):
    sw = 0x911E
    message = ("card found a bad MAC or padding in the command "
               "(session keys out of step: authenticate again)")


class AuthenticationDelay(Ntag424Error):
    sw = 0x91AD
    message = ("card is delaying authentication after repeated failures: "
               "stop, wait, and check the keys")


class PermissionDenied(Ntag424Error):
    sw = 0x919D
    message = "card does not allow this command now (not authenticated with the right key)"


class ParameterError(Ntag424Error):
    sw = 0x919E
    message = "card rejected a parameter (wrong file, offset or setting value)"


class NoSuchKey(Ntag424Error):
    sw = 0x9140
    message = "card has no such key number"


class CommandAborted(Ntag424Error):
    sw = 0x91CA
    message = "card aborted the command (an earlier command was left unfinished)"


class BoundaryError(Ntag424Error):
    sw = 0x91BE
    message = "read or write goes past the end of the file"


class NonVolatileMemoryError(Ntag424Error):
    sw = 0x91EE
    message = "card failed to write its memory (hold the card still and try again)"


class SecurityStatusNotSatisfied(Ntag424Error):
    sw = 0x6982
    message = "card requires authentication or a free access right for this file"


class FileNotFound(Ntag424Error):
    sw = 0x6A82
    message = "file or application not found (not an NTAG 424 DNA, or wrong file selected)"


class ResponseMacError(Ntag424Error):
    """The card's response MAC did not verify: the answer is not trusted, never ignored."""

    message = ("card's answer failed its integrity check "
               "(radio error, or a card or reader that is not genuine)")


class AuthenticationProofError(Ntag424Error):
    """The card answered AuthenticateEV2 without proving it holds the key (RndA' mismatch)."""

    message = "card did not prove it holds the key (not a genuine card, or a relayed answer)"


class ProtocolError(Ntag424Error):
    """A malformed answer: too short, bad padding, unexpected frame."""

    message = "card sent a malformed answer"


class NotAuthenticatedError(Ntag424Error):
    """The host tried a secured command without an authenticated session."""

    message = "no authenticated session with the card (authenticate first)"


class TransportError(Ntag424Error):
    """The reader could not exchange a frame with the card."""

    message = "lost contact with the card (hold it still on the reader and try again)"


class CardRemovedError(TransportError):
    message = "card left the reader's field (hold it still on the reader and try again)"
