"""PN532 host link frames (PN532 User Manual UM0701-02, §6.2.1), both directions.

    normal information frame    00 | 00 FF | LEN | LCS | TFI PD0 … PDn | DCS | 00
    extended information frame  00 | 00 FF | FF FF | LENM LENL | LCS | TFI PD0 … PDn | DCS | 00
    ACK frame                   00 00 FF 00 FF 00
    NACK frame                  00 00 FF FF 00 00     (host to PN532 only: "send it again")
    syntax error frame          00 00 FF 01 FF 7F 81 00   (PN532 to host)

LEN counts TFI and the packet data; LEN + LCS = 00h and TFI + PD0 + … + PDn + DCS = 00h (lower
byte). The PN532 answers with a normal frame up to 255 bytes and an extended frame beyond; the
host may use either. Preamble and postamble "can be composed with an undetermined number of
bytes" (§6.2.1.6), so the decoder skips any bytes before a start code.
"""

from __future__ import annotations

from dataclasses import dataclass

PREAMBLE = b"\x00"
START_CODE = b"\x00\xff"
POSTAMBLE = b"\x00"
ACK = bytes.fromhex("0000ff00ff00")
NACK = bytes.fromhex("0000ffff0000")
TFI_HOST = 0xD4  # host controller to PN532
TFI_PN532 = 0xD5  # PN532 to host controller
ERROR_TFI = 0x7F  # the one byte of the syntax error frame's data field
ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")

NORMAL_MAX_LEN = 255  # LEN is one byte
EXTENDED_MARK = b"\xff\xff"  # LEN and LCS of an extended frame
FIRMWARE_MAX_LEN = 265  # the PN532 firmware takes at most 264 data bytes + TFI (§6.2.1.2)
_ACK_BODY = b"\x00\xff"  # what follows the start code in an ACK
_NACK_BODY = b"\xff\x00"


def checksum(data: bytes) -> int:
    """The byte that makes the lower byte of the sum of `data` and itself 00h (LCS, DCS)."""
    return -sum(data) & 0xFF


def encode(payload: bytes, *, extended: bool | None = None, preamble: bool = True) -> bytes:
    """An information frame carrying `payload` (TFI + packet data).

    `extended` None chooses as the PN532 does: extended only when LEN exceeds 255. `preamble`
    False leaves out preamble and postamble (the PN532's fRemovePrePostAmble parameter).
    """
    length = len(payload)
    if length == 0:
        raise ValueError("an information frame carries at least the TFI")
    if extended is None:
        extended = length > NORMAL_MAX_LEN
    if extended:
        if length > 0xFFFF:
            raise ValueError(f"{length} bytes do not fit an extended frame")
        size = length.to_bytes(2, "big")
        head = START_CODE + EXTENDED_MARK + size + bytes([checksum(size)])
    else:
        if length > NORMAL_MAX_LEN:
            raise ValueError(f"{length} bytes need an extended frame")
        head = START_CODE + bytes([length, checksum(bytes([length]))])
    frame = head + payload + bytes([checksum(payload)])
    return PREAMBLE + frame + POSTAMBLE if preamble else frame


# -- decoding -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nack:
    pass


@dataclass(frozen=True)
class Information:
    payload: bytes  # TFI + PD0 … PDn
    extended: bool = False

    @property
    def tfi(self) -> int:
        return self.payload[0]

    @property
    def data(self) -> bytes:
        return self.payload[1:]


@dataclass(frozen=True)
class FrameError:
    """A frame that failed a check; the receiver drops it (the PN532 sends no ACK)."""

    reason: str  # "length checksum", "data checksum", "too long", "empty"


Frame = Ack | Nack | Information | FrameError


class FrameDecoder:
    """Splits a byte stream into frames; feed it whatever the line delivers, in any pieces."""

    def __init__(self, max_length: int = 0xFFFF):
        self.max_length = max_length
        self._buffer = bytearray()

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet part of a complete frame."""
        return bytes(self._buffer)

    def clear(self) -> None:
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        buf = self._buffer
        start = buf.find(START_CODE)
        if start < 0:
            # Keep a trailing 00: it may be the first half of the next start code.
            del buf[:max(0, len(buf) - 1)]
            return None
        del buf[:start]
        if len(buf) < 4:
            return None
        body = bytes(buf[2:4])
        if body == _ACK_BODY:
            del buf[:4]
            return Ack()
        if body == _NACK_BODY:
            del buf[:4]
            return Nack()
        if body == EXTENDED_MARK:
            if len(buf) < 7:
                return None
            length, lcs, head = int.from_bytes(buf[4:6], "big"), buf[6], 7
            length_ok = (buf[4] + buf[5] + lcs) & 0xFF == 0
        else:
            length, lcs, head = buf[2], buf[3], 4
            length_ok = (length + lcs) & 0xFF == 0
        if not length_ok:
            del buf[:2]  # resynchronise after this start code
            return FrameError("length checksum")
        if length == 0:
            del buf[:head]
            return FrameError("empty")
        if length > self.max_length:
            del buf[:head]
            return FrameError("too long")
        if len(buf) < head + length + 1:
            return None
        payload = bytes(buf[head:head + length])
        dcs = buf[head + length]
        del buf[:head + length + 1]
        if (sum(payload) + dcs) & 0xFF:
            return FrameError("data checksum")
        return Information(payload, extended=head == 7)
