"""Short command APDUs (ISO/IEC 7816-3 cases 1-4) as the card receives them."""

from __future__ import annotations

from dataclasses import dataclass


class MalformedApdu(ValueError):
    """The bytes are not a short APDU (too short, Lc inconsistent, extended length)."""


@dataclass(frozen=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no Le field; 0 means 256

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        if len(raw) < 4:
            raise MalformedApdu("APDU shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0])
        lc = body[0]
        if lc == 0:
            raise MalformedApdu("extended-length APDUs are not supported")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1:-1]), body[-1])
        raise MalformedApdu("Lc does not match the data field")
