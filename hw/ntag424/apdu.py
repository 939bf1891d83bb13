"""APDU framing: native commands wrapped in ISO/IEC 7816-4 (§10.1) and the plain ISO commands."""

from __future__ import annotations

from dataclasses import dataclass

from hw.ntag424.constants import (
    ADDITIONAL_FRAME,
    ISO_CLA,
    ISO_READ_BINARY,
    ISO_SELECT_FILE,
    ISO_UPDATE_BINARY,
    MAX_SHORT_LC,
    NATIVE_CLA,
    SELECT_BY_DF_NAME,
    SELECT_BY_FILE_ID,
    SELECT_NO_RESPONSE_DATA,
)
from hw.ntag424.errors import ProtocolError


@dataclass(frozen=True)
class Response:
    """A response APDU split into its data field and status word SW1SW2."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF


def split_response(raw: bytes) -> Response:
    if len(raw) < 2:
        raise ProtocolError("card sent a response shorter than a status word")
    return Response(data=bytes(raw[:-2]), sw=int.from_bytes(raw[-2:], "big"))


def _lc(data: bytes) -> bytes:
    if len(data) > MAX_SHORT_LC:
        raise ValueError(f"command data of {len(data)} bytes does not fit a short APDU")
    return bytes([len(data)]) + data if data else b""


def native(ins: int, data: bytes = b"") -> bytes:
    """`90 INS 00 00 [Lc data] 00`: a native command in ISO/IEC 7816-4 wrapping."""
    return bytes([NATIVE_CLA, ins, 0x00, 0x00]) + _lc(data) + b"\x00"


def additional_frame() -> bytes:
    """`90 AF 00 00 00`: ask for the next frame of a multi-frame response."""
    return native(ADDITIONAL_FRAME)


def iso_select_application(aid: bytes) -> bytes:
    """ISOSelectFile by DF name, no FCI: `00 A4 04 0C Lc AID 00`."""
    return bytes([ISO_CLA, ISO_SELECT_FILE, SELECT_BY_DF_NAME, SELECT_NO_RESPONSE_DATA]) + _lc(
        aid
    ) + b"\x00"


def iso_select_file(file_id: int) -> bytes:
    """ISOSelectFile by file identifier, no FCI: `00 A4 00 0C 02 FID`."""
    return bytes([ISO_CLA, ISO_SELECT_FILE, SELECT_BY_FILE_ID, SELECT_NO_RESPONSE_DATA]) + _lc(
        file_id.to_bytes(2, "big")
    )


def iso_read_binary(offset: int, length: int) -> bytes:
    """ISOReadBinary of the selected file: `00 B0 offset(15 bits) Le` (Le 00 = up to 256)."""
    _check_offset(offset)
    if not 0 <= length <= 256:
        raise ValueError("ISOReadBinary reads at most 256 bytes at a time")
    return bytes([ISO_CLA, ISO_READ_BINARY]) + offset.to_bytes(2, "big") + bytes([length & 0xFF])


def iso_update_binary(offset: int, data: bytes) -> bytes:
    """ISOUpdateBinary of the selected file: `00 D6 offset(15 bits) Lc data`."""
    _check_offset(offset)
    if not data:
        raise ValueError("ISOUpdateBinary needs at least one byte")
    return bytes([ISO_CLA, ISO_UPDATE_BINARY]) + offset.to_bytes(2, "big") + _lc(data)


def _check_offset(offset: int) -> None:
    # P1 bit 8 set would mean "short file identifier"; offsets are 15 bits.
    if not 0 <= offset <= 0x7FFF:
        raise ValueError("ISO offset must be 0..32767")
