"""The NTAG 424 DNA as seen from the terminal: its commands, named as in the data sheet.

`Ntag424` owns the transport and the current `SecureSession` (None when unauthenticated). Native
commands go through `_command`, which applies the communication mode, follows multi-frame answers
(91AF) and turns status words into typed errors. Any error or bad response MAC drops the session:
the card forgets its authentication on errors, and a session that answered falsely is not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.ntag424 import apdu, auth
from hw.ntag424.constants import (
    ADDITIONAL_FRAME,
    AUTHENTICATE_EV2_FIRST,
    AUTHENTICATE_EV2_NON_FIRST,
    CHANGE_FILE_SETTINGS,
    CHANGE_KEY,
    GET_CARD_UID,
    GET_FILE_SETTINGS,
    GET_KEY_VERSION,
    GET_VERSION,
    KEY_SIZE,
    NDEF_APPLICATION_AID,
    NDEF_FILE_ID,
    PICC_CONFIG_RANDOM_UID,
    READ_DATA,
    SET_CONFIG_OPTION_PICC,
    SET_CONFIGURATION,
    WRITE_DATA,
    CommMode,
    StatusWord,
)
from hw.ntag424.crypto import jamcrc32_le
from hw.ntag424.errors import (
    NotAuthenticatedError,
    Ntag424Error,
    ProtocolError,
)
from hw.ntag424.filesettings import FileSettings, FileSettingsUpdate
from hw.ntag424.ndef import NLEN_SIZE, parse_uri_message
from hw.ntag424.session import SecureSession
from hw.ntag424.transport import Transport

# Data bytes per ISOUpdateBinary / WriteData / ISOReadBinary frame. 128 keeps every APDU inside
# a short APDU and inside small reader buffers (PN532); AN12196 writes 128 bytes in one frame.
MAX_DATA_CHUNK = 128
MAX_READ_CHUNK = 256


@dataclass(frozen=True)
class CardVersion:
    """GetVersion: hardware, software and production information (§10.5.2)."""

    hardware: bytes
    software: bytes
    production: bytes = field(repr=False)  # starts with the UID: keep it out of logs

    @property
    def vendor_id(self) -> int:
        return self.hardware[0]

    @property
    def uid(self) -> bytes:
        return self.production[:7]


def _u24(value: int) -> bytes:
    if not 0 <= value < 1 << 24:
        raise ValueError("offsets and lengths are 3 bytes")
    return value.to_bytes(3, "little")


def _chunks(offset: int, data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(offset + i, data[i : i + size]) for i in range(0, len(data), size)]


class Ntag424:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.session: SecureSession | None = None
        self.authenticated_key_no: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.session is not None

    def forget_session(self) -> None:
        self.session = None
        self.authenticated_key_no = None

    # --- exchanges ------------------------------------------------------------------------------

    def _exchange(self, command: bytes) -> apdu.Response:
        return apdu.split_response(self.transport.transceive(command))

    def _iso(self, command: bytes, context: str) -> bytes:
        response = self._exchange(command)
        if response.sw != StatusWord.ISO_OK:
            raise Ntag424Error.from_status(response.sw, context)
        return response.data

    def _native_frames(self, ins: int, data: bytes) -> apdu.Response:
        """Send a native command and collect every frame of its answer (91AF → 90AF000000)."""
        response = self._exchange(apdu.native(ins, data))
        collected = response.data
        while response.sw == StatusWord.ADDITIONAL_FRAME:
            response = self._exchange(apdu.additional_frame())
            collected += response.data
        return apdu.Response(collected, response.sw)

    def _fail(self, sw: int, context: str) -> Ntag424Error:
        self.forget_session()
        return Ntag424Error.from_status(sw, context)

    def _command(
        self, ins: int, context: str, header: bytes = b"", data: bytes = b"",
        mode: CommMode = CommMode.PLAIN, *, downgrade: bool = False,
    ) -> bytes:
        """One native command in `mode` (plain when unauthenticated and `downgrade`)."""
        session = self.session
        if session is None:
            if mode is not CommMode.PLAIN and not downgrade:
                raise NotAuthenticatedError(f"{context}: {NotAuthenticatedError.message}")
            mode = CommMode.PLAIN
        body = session.wrap_command(ins, header, data, mode) if session else header + data
        response = self._native_frames(ins, body)
        if response.sw != StatusWord.OPERATION_OK:
            raise self._fail(response.sw, context)
        if session is None:
            return response.data
        try:
            return session.unwrap_response(response.sw2, response.data, mode)
        except Ntag424Error:
            self.forget_session()
            raise

    # --- ISO/IEC 7816-4 commands ----------------------------------------------------------------

    def select_ndef_application(self) -> None:
        """ISOSelectFile of the NDEF application; selecting an application ends authentication."""
        self.forget_session()
        self._iso(apdu.iso_select_application(NDEF_APPLICATION_AID), "select NDEF application")

    def select_file(self, file_id: int) -> None:
        self._iso(apdu.iso_select_file(file_id), f"select file {file_id:04X}")

    def iso_read_binary(self, offset: int, length: int) -> bytes:
        """One ISOReadBinary of the selected file (length 1..256)."""
        data = self._iso(apdu.iso_read_binary(offset, length), "read")
        if len(data) != length:
            raise ProtocolError(f"read: card returned {len(data)} of {length} bytes")
        return data

    def iso_update_binary(self, offset: int, data: bytes) -> None:
        """ISOUpdateBinary of the selected file, in frames of MAX_DATA_CHUNK bytes."""
        for chunk_offset, chunk in _chunks(offset, data, MAX_DATA_CHUNK):
            self._iso(apdu.iso_update_binary(chunk_offset, chunk), "write")

    # --- authentication -------------------------------------------------------------------------

    def authenticate_ev2_first(
        self, key_no: int, key: bytes, rnd_a: bytes | None = None, pcd_cap2: bytes = b""
    ) -> SecureSession:
        """AuthenticateEV2First: a new session (new TI, CmdCtr 0)."""
        auth.check_key(key_no, key)
        self.forget_session()
        data = auth.first_command_data(key_no, pcd_cap2)
        challenge = self._auth_challenge(AUTHENTICATE_EV2_FIRST, data, key, rnd_a)
        reply = self._auth_answer(challenge)
        result = auth.finish_first(key, challenge, reply)
        self.session, self.authenticated_key_no = result.session, key_no
        return result.session

    def authenticate_ev2_non_first(
        self, key_no: int, key: bytes, rnd_a: bytes | None = None
    ) -> SecureSession:
        """AuthenticateEV2NonFirst: new session keys within the session (TI, CmdCtr kept)."""
        auth.check_key(key_no, key)
        previous = self.session
        if previous is None:
            raise NotAuthenticatedError("AuthenticateEV2NonFirst needs an authenticated session")
        data = auth.non_first_command_data(key_no)
        challenge = self._auth_challenge(AUTHENTICATE_EV2_NON_FIRST, data, key, rnd_a)
        reply = self._auth_answer(challenge)
        self.session = auth.finish_non_first(key, challenge, reply, previous)
        self.authenticated_key_no = key_no
        return self.session

    def _auth_challenge(
        self, ins: int, data: bytes, key: bytes, rnd_a: bytes | None
    ) -> auth.Challenge:
        response = self._exchange(apdu.native(ins, data))
        if response.sw != StatusWord.ADDITIONAL_FRAME:
            raise self._fail(response.sw, "authenticate")
        return auth.answer_challenge(key, response.data, rnd_a)

    def _auth_answer(self, challenge: auth.Challenge) -> bytes:
        response = self._exchange(apdu.native(ADDITIONAL_FRAME, challenge.answer))
        if response.sw != StatusWord.OPERATION_OK:
            raise self._fail(response.sw, "authenticate")
        return response.data

    # --- information ----------------------------------------------------------------------------

    def get_version(self) -> CardVersion:
        data = self._command(GET_VERSION, "GetVersion", mode=CommMode.MAC, downgrade=True)
        if len(data) < 28:
            raise ProtocolError("GetVersion: answer too short")
        return CardVersion(hardware=data[0:7], software=data[7:14], production=data[14:])

    def get_key_version(self, key_no: int) -> int:
        data = self._command(GET_KEY_VERSION, "GetKeyVersion", bytes([key_no]), mode=CommMode.MAC,
                             downgrade=True)
        if len(data) != 1:
            raise ProtocolError("GetKeyVersion: answer is not one byte")
        return data[0]

    def get_file_settings(self, file_no: int) -> FileSettings:
        data = self._command(GET_FILE_SETTINGS, "GetFileSettings", bytes([file_no]),
                             mode=CommMode.MAC, downgrade=True)
        return FileSettings.from_bytes(data)

    def get_card_uid(self) -> bytes:
        """GetCardUID (CommMode.Full): the real UID, also when random UID is on."""
        data = self._command(GET_CARD_UID, "GetCardUID", mode=CommMode.FULL)
        if len(data) != 7:
            raise ProtocolError("GetCardUID: answer is not a 7-byte UID")
        return data

    # --- configuration --------------------------------------------------------------------------

    def change_file_settings(self, file_no: int, settings: FileSettingsUpdate) -> None:
        self._command(CHANGE_FILE_SETTINGS, "ChangeFileSettings", bytes([file_no]),
                      settings.to_bytes(), mode=CommMode.FULL)

    def set_configuration_random_uid(self) -> None:
        """SetConfiguration option 00, data 02: random UID on. Irreversible."""
        self._command(SET_CONFIGURATION, "SetConfiguration", bytes([SET_CONFIG_OPTION_PICC]),
                      bytes([PICC_CONFIG_RANDOM_UID]), mode=CommMode.FULL)

    def change_key(
        self, key_no: int, new_key: bytes, version: int, old_key: bytes | None = None
    ) -> None:
        """ChangeKey (CommMode.Full).

        Another key: (new XOR old) ‖ version ‖ JAMCRC32(new), and `old_key` is required.
        The authenticated key: new ‖ version; the card answers without a MAC and the session ends.
        """
        auth.check_key(key_no, new_key)
        if not 0 <= version <= 0xFF:
            raise ValueError("key version is one byte")
        session = self.session
        if session is None:
            raise NotAuthenticatedError(f"ChangeKey: {NotAuthenticatedError.message}")
        header = bytes([key_no])
        if key_no != self.authenticated_key_no:
            if old_key is None or len(old_key) != KEY_SIZE:
                raise ValueError("changing another key needs its current value (old_key)")
            xored = bytes(a ^ b for a, b in zip(new_key, old_key, strict=True))
            data = xored + bytes([version]) + jamcrc32_le(new_key)
            self._command(CHANGE_KEY, f"ChangeKey {key_no}", header, data, mode=CommMode.FULL)
            return
        data = new_key + bytes([version])
        body = session.wrap_command(CHANGE_KEY, header, data, CommMode.FULL)
        response = self._native_frames(CHANGE_KEY, body)
        # Success or not, the authentication with the old key is over.
        self.forget_session()
        if response.sw != StatusWord.OPERATION_OK:
            raise Ntag424Error.from_status(response.sw, f"ChangeKey {key_no}")

    # --- data -----------------------------------------------------------------------------------

    def read_data(
        self, file_no: int, offset: int, length: int, comm_mode: CommMode = CommMode.PLAIN
    ) -> bytes:
        """ReadData (length 0 reads to the end of the file) in the file's communication mode."""
        header = bytes([file_no]) + _u24(offset) + _u24(length)
        data = self._command(READ_DATA, "ReadData", header, mode=comm_mode)
        if length and len(data) != length:
            raise ProtocolError(f"ReadData: card returned {len(data)} of {length} bytes")
        return data

    def write_data(
        self, file_no: int, offset: int, data: bytes, comm_mode: CommMode = CommMode.PLAIN
    ) -> None:
        """WriteData in the file's communication mode, in frames of MAX_DATA_CHUNK bytes."""
        for chunk_offset, chunk in _chunks(offset, data, MAX_DATA_CHUNK):
            header = bytes([file_no]) + _u24(chunk_offset) + _u24(len(chunk))
            self._command(WRITE_DATA, "WriteData", header, chunk, mode=comm_mode)

    # --- NDEF -----------------------------------------------------------------------------------

    def read_ndef_file(self) -> bytes:
        """Select the application and NDEF file; read NLEN, then the message in one read.

        One read for the whole message keeps `p` and `c` from the same SUN generation.
        """
        self.select_ndef_application()
        self.select_file(NDEF_FILE_ID)
        nlen = int.from_bytes(self.iso_read_binary(0, NLEN_SIZE), "big")
        if nlen == 0:
            return b""
        if nlen > MAX_READ_CHUNK:
            raise ProtocolError("NDEF message is longer than the card's NDEF file")
        return self.iso_read_binary(NLEN_SIZE, nlen)

    def read_ndef_url(self) -> str:
        """The URI in the card's NDEF file, read plain and unauthenticated (advances SDMReadCtr)."""
        return parse_uri_message(self.read_ndef_file())

