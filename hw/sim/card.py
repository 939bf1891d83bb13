"""A software NTAG 424 DNA: the card side of ISO-DEP, one command APDU in, one response out.

Written from NT4H2421Gx rev 3.0 §8-§10 with the primitives of `hw.ntag424.crypto`. Behaviour that
the data sheet leaves open is chosen conservatively and named in the method that implements it.

Volatile state (lost on `deactivate`): selected DF/EF, EV2 session, an authentication or a
multi-frame answer in progress, the current SDM read sequence. Everything else is `CardState`
(non-volatile), saved after every command that changes it when `autosave_path` is set.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from hw.ntag424 import crypto
from hw.sim import sdm
from hw.sim.apdu import CommandApdu, MalformedApdu
from hw.sim.constants import (
    ACCESS_FREE,
    ACCESS_NEVER,
    APP_DF_NAME,
    APP_FID,
    ATS,
    CLA_ISO,
    CLA_NATIVE,
    KEY_COUNT,
    KEY_SIZE,
    MAX_OFFSET,
    MAX_RESPONSE,
    MF_FID,
    PICC_DF_NAME,
    RANDOM_ID_PREFIX,
    SEL_RES,
    SENS_RES_DOUBLE_UID,
    SENS_RES_SINGLE_UID,
    VERSION_HW,
    VERSION_SW,
    CommMode,
    Ins,
    Sw,
)
from hw.sim.errors import CardStatus
from hw.sim.file_settings import FileSettings
from hw.sim.secure_messaging import Session
from hw.sim.state import CardState, StandardDataFile, factory_state, load_state, save_state

Rng = Callable[[int], bytes]

RND_SIZE = 16
TI_SIZE = 4
PCD_CAP2_SIZE = 6
RW_HEADER_SIZE = 7  # FileNo ‖ Offset (3) ‖ Length (3)
PICC_CONFIG_RANDOM_ID = 0x02
PD_CAP2_LRP = 0x02
READ_COMMANDS = ((CLA_NATIVE, Ins.READ_DATA), (CLA_ISO, Ins.ISO_READ_BINARY))


class Level(Enum):
    """What ISOSelectFile has selected: the PICC level (MF) or the NDEF application."""

    PICC = "picc"
    APPLICATION = "application"


@dataclass
class _Challenge:
    """AuthenticateEV2First/NonFirst between part 1 and part 2."""

    key_no: int
    rnd_b: bytes = field(repr=False)
    first: bool
    ti: bytes = b""
    pcd_cap2: bytes = bytes(PCD_CAP2_SIZE)
    previous: Session | None = None  # NonFirst keeps TI and CmdCtr of this session


@dataclass
class _ReadSequence:
    """Consecutive reads of one file with one command type share SDMReadCtr and padding."""

    ins: int
    file_no: int
    image: bytes = field(repr=False)


@dataclass
class _Frames:
    """An answer longer than one frame, handed out on ADDITIONAL_FRAME requests."""

    chunks: list[bytes]
    final_sw: Sw


class SimulatedNtag424:
    """An NTAG 424 DNA (AES mode) at the APDU level, for tests and the tap simulator.

    `rng(n)` supplies every random byte the card draws, in this order: RndB (16) then TI (4) in
    AuthenticateEV2First part 1, RndB (16) in AuthenticateEV2NonFirst part 1, the PICCData
    random padding on the first read of an SDM read sequence, 3 bytes of a random ID per
    activation.
    """

    _ef: int | None
    _session: Session | None
    _challenge: _Challenge | None
    _frames: _Frames | None

    # Consecutive failed authentications after which the card answers AUTHENTICATION_DELAY,
    # and the cap of that delay counted in answers. The data sheet gives no numbers; these are
    # the simulator's, chosen so a test sees the throttling within a few attempts.
    AUTH_DELAY_THRESHOLD = 3
    AUTH_DELAY_MAX_FRAMES = 32

    sel_res = SEL_RES
    ats = ATS

    def __init__(
        self,
        state: CardState,
        *,
        rng: Rng | None = None,
        autosave_path: str | os.PathLike[str] | None = None,
    ):
        self.state = state
        self.rng: Rng = rng or secrets.token_bytes
        self.autosave_path = Path(autosave_path) if autosave_path is not None else None
        self._activation_uid: bytes | None = None
        self._dirty = False
        self._reset_volatile()

    # -- construction and persistence ------------------------------------------------------

    @classmethod
    def factory(
        cls,
        uid: bytes | None = None,
        *,
        rng: Rng | None = None,
        autosave_path: str | os.PathLike[str] | None = None,
    ) -> SimulatedNtag424:
        """A factory-fresh card (all-zero keys, version 00); `uid` None draws 04‖6 random."""
        return cls(factory_state(uid), rng=rng, autosave_path=autosave_path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, rng: Rng | None = None, autosave: bool = True
    ) -> SimulatedNtag424:
        """The card saved at `path`; with `autosave` every change is written back there."""
        return cls(load_state(path), rng=rng, autosave_path=path if autosave else None)

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write the card's non-volatile state (atomic, 0600) to `path` or `autosave_path`."""
        target = path if path is not None else self.autosave_path
        if target is None:
            raise ValueError("no path given and the card has no autosave_path")
        save_state(self.state, target)
        self._dirty = False

    # -- RF activation ------------------------------------------------------------------------

    @property
    def uid(self) -> bytes:
        """UID for anticollision: the real 7 bytes, or a 4-byte random ID (08h…) per tap."""
        if not self.state.random_uid:
            return self.state.uid
        if self._activation_uid is None:
            self._activation_uid = bytes([RANDOM_ID_PREFIX]) + self.rng(3)
        return self._activation_uid

    @property
    def real_uid(self) -> bytes:
        """The 7-byte UID used in PICCData and returned by GetCardUID."""
        return self.state.uid

    @property
    def sens_res(self) -> bytes:
        return SENS_RES_SINGLE_UID if self.state.random_uid else SENS_RES_DOUBLE_UID

    @property
    def session(self) -> Session | None:
        return self._session

    def power_on(self) -> None:
        """Field on: PICC level selected, not authenticated."""
        self._reset_volatile()

    def deactivate(self) -> None:
        """Field off or card removed: all volatile state is lost; a random ID is redrawn."""
        self._reset_volatile()
        self._activation_uid = None

    def install_session(
        self, key_no: int, ti: bytes, enc_key: bytes, mac_key: bytes, cmd_ctr: int = 0
    ) -> None:
        """Test hook: the application selected and an EV2 session as if just authenticated."""
        self._level = Level.APPLICATION
        self._session = Session(key_no, bytes(ti), bytes(enc_key), bytes(mac_key), cmd_ctr)

    def _reset_volatile(self) -> None:
        self._level = Level.PICC
        self._ef = None
        self._session = None
        self._challenge = None
        self._frames = None
        self._read_seq: _ReadSequence | None = None

    # -- APDU processing ----------------------------------------------------------------------

    def transceive(self, apdu: bytes) -> bytes:
        """Process one command APDU; return response data ‖ SW1 SW2."""
        try:
            try:
                cmd = CommandApdu.parse(bytes(apdu))
            except MalformedApdu as exc:
                native = bool(apdu) and apdu[0] == CLA_NATIVE
                raise CardStatus(Sw.LENGTH_ERROR if native else Sw.ISO_WRONG_LENGTH) from exc
            response = self._dispatch(cmd)
        except CardStatus as status:
            # Any error ends the authenticated state; the answer carries no MAC (§9.1.9).
            self._session = None
            self._challenge = None
            self._frames = None
            self._read_seq = None
            response = status.sw.encode()
        if self._dirty and self.autosave_path is not None:
            self.save()
        return response

    def _dispatch(self, cmd: CommandApdu) -> bytes:
        continuation = cmd.cla == CLA_NATIVE and cmd.ins == Ins.ADDITIONAL_FRAME
        is_read = (cmd.cla, cmd.ins) in READ_COMMANDS
        if not (is_read or continuation):
            self._read_seq = None  # "as soon as a different command has been received" (§9.3.1)
        if (self._challenge or self._frames) and not continuation:
            # A multi-pass command is interrupted: it is aborted, and so is this command.
            self._challenge = None
            self._frames = None
            native = cmd.cla == CLA_NATIVE
            raise CardStatus(Sw.COMMAND_ABORTED if native else Sw.ISO_CONDITIONS_OF_USE)
        if cmd.cla == CLA_ISO:
            return self._dispatch_iso(cmd)
        if cmd.cla == CLA_NATIVE:
            return self._dispatch_native(cmd)
        raise CardStatus(Sw.ISO_CLA_NOT_SUPPORTED)

    def _dispatch_native(self, cmd: CommandApdu) -> bytes:
        if cmd.le is None:
            raise CardStatus(Sw.LENGTH_ERROR, "wrapped native command without Le")
        if cmd.p1 or cmd.p2:
            raise CardStatus(Sw.PARAMETER_ERROR, "P1/P2 of a wrapped native command must be 00")
        handlers: dict[int, Callable[[bytes], bytes]] = {
            Ins.ADDITIONAL_FRAME: self._additional_frame,
            Ins.AUTHENTICATE_EV2_FIRST: self._authenticate_first,
            Ins.AUTHENTICATE_EV2_NON_FIRST: self._authenticate_non_first,
            Ins.GET_VERSION: self._get_version,
            Ins.GET_KEY_VERSION: self._get_key_version,
            Ins.GET_FILE_SETTINGS: self._get_file_settings,
            Ins.GET_CARD_UID: self._get_card_uid,
            Ins.GET_FILE_COUNTERS: self._get_file_counters,
            Ins.CHANGE_KEY: self._change_key,
            Ins.CHANGE_FILE_SETTINGS: self._change_file_settings,
            Ins.SET_CONFIGURATION: self._set_configuration,
            Ins.READ_DATA: self._read_data,
            Ins.WRITE_DATA: self._write_data,
            Ins.READ_SIG: self._read_sig,
        }
        handler = handlers.get(cmd.ins)
        if handler is None:
            raise CardStatus(Sw.ILLEGAL_COMMAND_CODE)
        return handler(cmd.data)

    def _dispatch_iso(self, cmd: CommandApdu) -> bytes:
        if cmd.ins == Ins.ISO_SELECT_FILE:
            return self._iso_select_file(cmd)
        if cmd.ins == Ins.ISO_READ_BINARY:
            return self._iso_read_binary(cmd)
        if cmd.ins == Ins.ISO_UPDATE_BINARY:
            return self._iso_update_binary(cmd)
        raise CardStatus(Sw.ISO_INS_NOT_SUPPORTED)

    # -- framing helpers ------------------------------------------------------------------------

    def _answer(self, payload: bytes, sw: Sw = Sw.OPERATION_OK) -> bytes:
        """Send `payload`, split into ADDITIONAL_FRAME chunks when longer than one frame."""
        if len(payload) <= MAX_RESPONSE:
            return payload + sw.encode()
        chunks = [payload[i : i + MAX_RESPONSE] for i in range(0, len(payload), MAX_RESPONSE)]
        self._frames = _Frames(chunks[1:], sw)
        return chunks[0] + Sw.ADDITIONAL_FRAME.encode()

    def _additional_frame(self, data: bytes) -> bytes:
        if self._challenge is not None:
            return self._authenticate_part2(data)
        if self._frames is None:
            raise CardStatus(Sw.ILLEGAL_COMMAND_CODE, "no command waiting for an additional frame")
        if data:
            raise CardStatus(Sw.LENGTH_ERROR)
        frames = self._frames
        chunk = frames.chunks.pop(0)
        if frames.chunks:
            return chunk + Sw.ADDITIONAL_FRAME.encode()
        self._frames = None
        return chunk + frames.final_sw.encode()

    def _accept(self, ins: Ins, header: bytes, rest: bytes, mode: CommMode) -> bytes:
        """Plain CmdData of a native command; counts it when authenticated."""
        if self._session is None:
            return rest
        return self._session.accept_command(ins, header, rest, mode)

    def _reply(self, data: bytes, mode: CommMode) -> bytes:
        if self._session is not None:
            data = self._session.protect_response(data, mode)
        return self._answer(data)

    def _split_header(self, data: bytes, size: int) -> tuple[bytes, bytes]:
        if len(data) < size:
            raise CardStatus(Sw.LENGTH_ERROR, "command header truncated")
        return data[:size], data[size:]

    def _require_application(self, sw: Sw = Sw.PERMISSION_DENIED) -> None:
        if self._level is not Level.APPLICATION:
            raise CardStatus(sw, "PICC level (MF) is selected")

    def _file(self, file_no: int) -> StandardDataFile:
        self._require_application()
        file = self.state.files.get(file_no & 0x1F)
        if file is None or file_no & 0xE0:
            raise CardStatus(Sw.FILE_NOT_FOUND)
        return file

    def _key_number(self, key_no: int, rfu_mask: int) -> int:
        if key_no & rfu_mask:
            raise CardStatus(Sw.PARAMETER_ERROR, "RFU bits set in KeyNo")
        if key_no >= KEY_COUNT:
            raise CardStatus(Sw.NO_SUCH_KEY)
        return key_no

    def _require_key(self, key_no: int) -> Session:
        """The active session, which must have been opened with `key_no`."""
        session = self._session
        if session is None or session.key_no != key_no:
            raise CardStatus(Sw.AUTHENTICATION_ERROR, f"needs authentication with key {key_no}")
        return session

    def _grant(self, rights: list[int], file_mode: CommMode, sdm_free: bool = False) -> CommMode:
        """The CommMode of an access: the file's, plain, or an error status.

        A right naming the session's key wins, so that the file's CommMode applies; otherwise
        a free (Eh) right gives plain access (also in the authenticated state).
        """
        if self._session is not None and self._session.key_no in rights:
            return file_mode
        if ACCESS_FREE in rights or (sdm_free and self._session is None):
            return CommMode.PLAIN
        if all(r == ACCESS_NEVER for r in rights) and not sdm_free:
            raise CardStatus(Sw.PERMISSION_DENIED, "access right set to never")
        raise CardStatus(Sw.AUTHENTICATION_ERROR, "access right not granted")

    def _mark_dirty(self) -> None:
        self._dirty = True

    # -- authentication (§9.1.5, §9.1.6, §10.4) ----------------------------------------------

    def _authenticate_first(self, data: bytes) -> bytes:
        if len(data) < 2 or len(data) != 2 + data[1]:
            raise CardStatus(Sw.LENGTH_ERROR, "KeyNo ‖ LenCap ‖ PCDcap2 expected")
        if data[1] > PCD_CAP2_SIZE:
            raise CardStatus(Sw.PARAMETER_ERROR, "LenCap above 6")
        key_no = self._start_authentication(data[0])
        # An LRP request (PCDcap2.1 bit 1) is answered the AES way: the PCD may fall back.
        pcd_cap2 = (data[2:] + bytes(PCD_CAP2_SIZE))[:PCD_CAP2_SIZE]
        rnd_b = self.rng(RND_SIZE)
        ti = self.rng(TI_SIZE)
        self._challenge = _Challenge(key_no, rnd_b, first=True, ti=ti, pcd_cap2=pcd_cap2)
        return self._encrypt_challenge(key_no, rnd_b)

    def _authenticate_non_first(self, data: bytes) -> bytes:
        if len(data) != 1:
            raise CardStatus(Sw.LENGTH_ERROR, "KeyNo expected")
        previous = self._session
        if previous is None:
            raise CardStatus(Sw.PERMISSION_DENIED, "AuthenticateEV2NonFirst needs a session")
        key_no = self._start_authentication(data[0])
        rnd_b = self.rng(RND_SIZE)
        self._challenge = _Challenge(key_no, rnd_b, first=False, previous=previous)
        return self._encrypt_challenge(key_no, rnd_b)

    def _start_authentication(self, key_no: int) -> int:
        key_no = self._key_number(key_no, 0xC0)
        # Only originality keys exist at PICC level, and this simulator has none.
        self._require_application(Sw.NO_SUCH_KEY)
        self._session = None  # a new authentication always ends the current one
        state = self.state
        if state.auth_delay_frames > 0:
            state.auth_delay_frames -= 1
            self._mark_dirty()
            raise CardStatus(Sw.AUTHENTICATION_DELAY)
        key = state.keys[key_no]
        if state.failed_ctr_enabled and key.tot_fail_ctr >= state.tot_fail_ctr_limit:
            raise CardStatus(Sw.PERMISSION_DENIED, f"key {key_no} is locked (TotFailCtr)")
        return key_no

    def _encrypt_challenge(self, key_no: int, rnd_b: bytes) -> bytes:
        key = self.state.keys[key_no].value
        return crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_b) + Sw.ADDITIONAL_FRAME.encode()

    def _authenticate_part2(self, data: bytes) -> bytes:
        challenge = self._challenge
        assert challenge is not None
        self._challenge = None
        if len(data) != 2 * RND_SIZE:
            raise CardStatus(Sw.LENGTH_ERROR, "E(K, RndA ‖ RndB') is 32 bytes")
        key = self.state.keys[challenge.key_no].value
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, data)
        rnd_a, rnd_b_rotated = plain[:RND_SIZE], plain[RND_SIZE:]
        if not hmac.compare_digest(rnd_b_rotated, crypto.rotl1(challenge.rnd_b)):
            self._count_failed_authentication(challenge.key_no)
            raise CardStatus(Sw.AUTHENTICATION_ERROR, "wrong RndB'")
        self._count_successful_authentication(challenge.key_no)
        enc_key, mac_key = crypto.session_keys(key, rnd_a, challenge.rnd_b)
        if challenge.first:
            self._session = Session(challenge.key_no, challenge.ti, enc_key, mac_key, 0)
            answer = challenge.ti + crypto.rotl1(rnd_a) + self.state.pdcap2 + challenge.pcd_cap2
        else:
            assert challenge.previous is not None
            previous = challenge.previous
            self._session = Session(
                challenge.key_no, previous.ti, enc_key, mac_key, previous.cmd_ctr
            )
            answer = crypto.rotl1(rnd_a)
        return crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, answer) + Sw.OPERATION_OK.encode()

    def _count_failed_authentication(self, key_no: int) -> None:
        state = self.state
        state.consecutive_auth_failures += 1
        if state.failed_ctr_enabled:
            state.keys[key_no].tot_fail_ctr += 1
        excess = state.consecutive_auth_failures - self.AUTH_DELAY_THRESHOLD
        if excess >= 0:
            state.auth_delay_frames = min(2**excess, self.AUTH_DELAY_MAX_FRAMES)
        self._mark_dirty()

    def _count_successful_authentication(self, key_no: int) -> None:
        state = self.state
        key = state.keys[key_no]
        decremented = max(0, key.tot_fail_ctr - state.tot_fail_ctr_decr)
        if (state.consecutive_auth_failures, state.auth_delay_frames, key.tot_fail_ctr) != (
            0,
            0,
            decremented,
        ):
            state.consecutive_auth_failures = 0
            state.auth_delay_frames = 0
            key.tot_fail_ctr = decremented
            self._mark_dirty()

    # -- memory and configuration commands (§10.5) -------------------------------------------

    def _get_version(self, data: bytes) -> bytes:
        """Three frames; when authenticated the MAC covers all three and ends the last (§10.2)."""
        body = self._accept(Ins.GET_VERSION, b"", data, CommMode.MAC)
        if body:
            raise CardStatus(Sw.LENGTH_ERROR)
        uid = bytes(len(self.state.uid)) if self.state.random_uid else self.state.uid
        production = uid + self.state.production
        if self._session is not None:
            mac_input = VERSION_HW + VERSION_SW + production
            production += self._session.protect_response(mac_input, CommMode.MAC)[len(mac_input) :]
        self._frames = _Frames([VERSION_SW, production], Sw.OPERATION_OK)
        return VERSION_HW + Sw.ADDITIONAL_FRAME.encode()

    def _get_card_uid(self, data: bytes) -> bytes:
        if self._session is None:
            raise CardStatus(Sw.AUTHENTICATION_ERROR, "GetCardUID needs an authentication")
        if self._accept(Ins.GET_CARD_UID, b"", data, CommMode.FULL):
            raise CardStatus(Sw.LENGTH_ERROR)
        return self._reply(self.state.uid, CommMode.FULL)

    def _set_configuration(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        self._require_application()
        self._require_key(0)
        body = self._accept(Ins.SET_CONFIGURATION, header, rest, CommMode.FULL)
        option = header[0]
        expected = {0x00: 1, 0x04: 2, 0x05: 10, 0x0A: 5, 0x0B: 1}.get(option)
        if expected is None:
            raise CardStatus(Sw.PARAMETER_ERROR, f"unsupported option {option:02X}")
        if len(body) != expected:
            raise CardStatus(Sw.LENGTH_ERROR, f"option {option:02X} takes {expected} bytes")
        self._apply_configuration(option, body)
        self._mark_dirty()
        return self._reply(b"", CommMode.FULL)

    def _apply_configuration(self, option: int, body: bytes) -> None:
        state = self.state
        if option == 0x00:  # PICCConfig: only "enable random ID" (bit 1); irreversible
            if body[0] & ~PICC_CONFIG_RANDOM_ID & 0xFF:
                raise CardStatus(Sw.PARAMETER_ERROR, "PICCConfig RFU bits set")
            state.random_uid = state.random_uid or bool(body[0] & PICC_CONFIG_RANDOM_ID)
        elif option == 0x04:  # SMConfig bit 2: disable chained WriteData in MAC/Full
            state.sm_config = bytes(a | b for a, b in zip(state.sm_config, body, strict=True))
        elif option == 0x05:
            if body[4] & PD_CAP2_LRP:
                raise CardStatus(Sw.PARAMETER_ERROR, "LRP mode is not simulated")
            state.pdcap2 = state.pdcap2[:4] + body[8:10]
        elif option == 0x0A:
            enabled = bool(body[0] & 0x01)
            limit = int.from_bytes(body[1:3], "little")
            if enabled and limit == 0:
                raise CardStatus(Sw.PARAMETER_ERROR, "TotFailCtrLimit must be above 0")
            state.failed_ctr_enabled = enabled
            if enabled:
                state.tot_fail_ctr_limit = limit
                state.tot_fail_ctr_decr = int.from_bytes(body[3:5], "little")
        else:  # 0x0B: back modulation
            state.hw_option = body[0] & 0x01

    def _read_sig(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        if self._session is None and self.state.random_uid:
            raise CardStatus(Sw.AUTHENTICATION_ERROR, "Read_Sig with random ID needs a session")
        mode = CommMode.FULL if self._session is not None else CommMode.PLAIN
        if self._accept(Ins.READ_SIG, header, rest, mode):
            raise CardStatus(Sw.LENGTH_ERROR)
        if header[0] != 0x00:
            raise CardStatus(Sw.PARAMETER_ERROR, "Read_Sig address must be 00")
        return self._reply(self.state.signature, mode)

    # -- key management (§10.6) -------------------------------------------------------------

    def _change_key(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        self._require_application()
        session = self._require_key(0)  # AppMasterKey
        body = self._accept(Ins.CHANGE_KEY, header, rest, CommMode.FULL)
        key_no = self._key_number(header[0], 0xC0)
        slot = self.state.keys[key_no]
        if key_no == session.key_no:
            if len(body) != KEY_SIZE + 1:
                raise CardStatus(Sw.LENGTH_ERROR, "NewKey ‖ KeyVer expected")
            new_key = body[:KEY_SIZE]
        else:
            if len(body) != KEY_SIZE + 1 + 4:
                raise CardStatus(Sw.LENGTH_ERROR, "(NewKey ⊕ OldKey) ‖ KeyVer ‖ CRC32 expected")
            new_key = bytes(a ^ b for a, b in zip(body[:KEY_SIZE], slot.value, strict=True))
            if not hmac.compare_digest(body[KEY_SIZE + 1 :], crypto.jamcrc32_le(new_key)):
                raise CardStatus(Sw.INTEGRITY_ERROR, "CRC32 of the new key does not match")
        slot.value, slot.version, slot.tot_fail_ctr = new_key, body[KEY_SIZE], 0
        self._mark_dirty()
        if key_no == session.key_no:
            self._session = None  # the session key is gone: answer unprotected, session over
            return Sw.OPERATION_OK.encode()
        return self._reply(b"", CommMode.FULL)

    def _get_key_version(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        if self._accept(Ins.GET_KEY_VERSION, header, rest, CommMode.MAC):
            raise CardStatus(Sw.LENGTH_ERROR)
        key_no = self._key_number(header[0], 0xF0)
        self._require_application(Sw.NO_SUCH_KEY)
        return self._reply(bytes([self.state.keys[key_no].version]), CommMode.MAC)

    # -- file management (§10.7) -------------------------------------------------------------

    def _change_file_settings(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        file = self._file(header[0])
        change = file.settings.access.change
        if change == ACCESS_NEVER:
            raise CardStatus(Sw.PERMISSION_DENIED, "Change access right is never")
        mode = CommMode.PLAIN if change == ACCESS_FREE else CommMode.FULL
        if mode is CommMode.FULL:
            self._require_key(change)
        settings = FileSettings.decode(self._accept(Ins.CHANGE_FILE_SETTINGS, header, rest, mode))
        if settings.sdm is not None and file.file_no != 2:
            raise CardStatus(Sw.PERMISSION_DENIED, "SDM can only be enabled on file 02")
        settings.validate(file.size, file.sdm_read_ctr)
        file.settings = settings
        if settings.sdm is not None:
            file.sdm_read_ctr = 0  # "reset to 000000h when enabling SDM" (§9.3.1)
        self._mark_dirty()
        return self._reply(b"", mode)

    def _get_file_settings(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        if self._accept(Ins.GET_FILE_SETTINGS, header, rest, CommMode.MAC):
            raise CardStatus(Sw.LENGTH_ERROR)
        file = self._file(header[0])
        return self._reply(file.settings.get_file_settings_response(file.size), CommMode.MAC)

    def _get_file_counters(self, data: bytes) -> bytes:
        header, rest = self._split_header(data, 1)
        file = self._file(header[0])
        settings = file.settings.sdm
        if settings is None or settings.ctr_ret == ACCESS_NEVER:
            raise CardStatus(Sw.PERMISSION_DENIED, "no SDM, or SDMCtrRet is never")
        mode = CommMode.PLAIN
        if settings.ctr_ret != ACCESS_FREE:
            self._require_key(settings.ctr_ret)
            mode = CommMode.FULL
        if self._accept(Ins.GET_FILE_COUNTERS, header, rest, mode):
            raise CardStatus(Sw.LENGTH_ERROR)
        return self._reply(file.sdm_read_ctr.to_bytes(3, "little") + bytes(2), mode)

    # -- data management (§10.8) ---------------------------------------------------------------

    def _rw_header(self, data: bytes) -> tuple[bytes, bytes, StandardDataFile, int, int]:
        header, rest = self._split_header(data, RW_HEADER_SIZE)
        file = self._file(header[0])
        offset = int.from_bytes(header[1:4], "little")
        length = int.from_bytes(header[4:7], "little")
        return header, rest, file, offset, length

    def _read_data(self, data: bytes) -> bytes:
        header, rest, file, offset, length = self._rw_header(data)
        access = file.settings.access
        sdm_free = file.settings.sdm is not None and file.settings.sdm.mac_enabled
        mode = self._grant([access.read, access.read_write], file.settings.mode, sdm_free)
        if self._accept(Ins.READ_DATA, header, rest, mode):
            raise CardStatus(Sw.LENGTH_ERROR)
        if offset >= file.size or offset + length > file.size:
            raise CardStatus(Sw.PARAMETER_ERROR, "read outside the file")
        length = length or file.size - offset
        content = self._readable_content(file, Ins.READ_DATA)
        return self._reply(content[offset : offset + length], mode)

    def _write_data(self, data: bytes) -> bytes:
        header, rest, file, offset, length = self._rw_header(data)
        access = file.settings.access
        mode = self._grant([access.write, access.read_write], file.settings.mode)
        body = self._accept(Ins.WRITE_DATA, header, rest, mode)
        if length == 0 or offset >= file.size:
            raise CardStatus(Sw.PARAMETER_ERROR, "empty write or offset outside the file")
        if len(body) != length:
            raise CardStatus(Sw.LENGTH_ERROR, "Length does not match the data sent")
        if offset + length > file.size:
            raise CardStatus(Sw.BOUNDARY_ERROR, "write beyond the end of the file")
        file.content[offset : offset + length] = body
        self._mark_dirty()
        return self._reply(b"", mode)

    def _readable_content(self, file: StandardDataFile, ins: Ins) -> bytes:
        """Static data when authenticated; the SDM-mirrored image of this read sequence else."""
        settings = file.settings.sdm
        if self._session is not None or settings is None:
            return bytes(file.content)
        sequence = self._read_seq
        if sequence is not None and sequence.ins == ins and sequence.file_no == file.file_no:
            return sequence.image
        if file.sdm_read_ctr >= MAX_OFFSET:
            raise CardStatus(
                Sw.ISO_SECURITY_STATUS if ins == Ins.ISO_READ_BINARY else Sw.INTEGRITY_ERROR,
                "SDMReadCtr overflow",
            )
        limit = settings.read_ctr_limit
        if limit is not None and file.sdm_read_ctr >= limit:
            raise CardStatus(
                Sw.ISO_SECURITY_STATUS if ins == Ins.ISO_READ_BINARY else Sw.PERMISSION_DENIED,
                "SDMReadCtrLimit reached",
            )
        file.sdm_read_ctr += 1
        self._mark_dirty()
        image = sdm.render(
            bytes(file.content),
            settings,
            uid=self.state.uid,
            read_ctr=file.sdm_read_ctr,
            keys=[k.value for k in self.state.keys],
            rng=self.rng,
        )
        self._read_seq = _ReadSequence(ins, file.file_no, image)
        return image

    # -- ISO/IEC 7816-4 commands (§10.9) ---------------------------------------------------

    def _iso_select_file(self, cmd: CommandApdu) -> bytes:
        if cmd.p2 not in (0x00, 0x0C):
            raise CardStatus(Sw.ISO_WRONG_P1P2)
        name = cmd.data
        if cmd.p1 == 0x04:
            if not 1 <= len(name) <= 16:
                raise CardStatus(Sw.ISO_WRONG_LENGTH)
            if name == APP_DF_NAME:
                return self._select_level(Level.APPLICATION)
            if name == PICC_DF_NAME:
                return self._select_level(Level.PICC)
            raise CardStatus(Sw.ISO_FILE_NOT_FOUND)
        if cmd.p1 == 0x03 and not name:
            return self._select_level(Level.PICC)
        if cmd.p1 not in (0x00, 0x01, 0x02):
            raise CardStatus(Sw.ISO_WRONG_P1P2)
        if cmd.p1 == 0x00 and name in (b"", MF_FID):
            return self._select_level(Level.PICC)
        if len(name) != 2:
            raise CardStatus(Sw.ISO_LC_INCONSISTENT)
        if name == APP_FID and cmd.p1 in (0x00, 0x01):
            return self._select_level(Level.APPLICATION)
        file = self.state.file_by_fid(name)
        if cmd.p1 == 0x01 or self._level is not Level.APPLICATION or file is None:
            raise CardStatus(Sw.ISO_FILE_NOT_FOUND)
        self._ef = file.file_no  # selecting an EF keeps the authentication
        return Sw.ISO_OK.encode()  # no FCI is ever returned

    def _select_level(self, level: Level) -> bytes:
        self._level = level
        self._ef = None
        self._session = None  # selecting a DF ends the authentication
        return Sw.ISO_OK.encode()

    def _iso_target(self, cmd: CommandApdu) -> tuple[StandardDataFile, int]:
        """File and offset from P1-P2: a short file id with an 8-bit offset, or a 15-bit one."""
        if cmd.p1 & 0x80:
            if cmd.p1 & 0x60:
                raise CardStatus(Sw.ISO_WRONG_P1P2)
            sfi, offset = cmd.p1 & 0x1F, cmd.p2
            if sfi:
                if self._level is not Level.APPLICATION or sfi not in self.state.files:
                    raise CardStatus(Sw.ISO_FILE_NOT_FOUND)
                self._ef = sfi
        else:
            offset = (cmd.p1 << 8) | cmd.p2
        if self._ef is None or self._level is not Level.APPLICATION:
            raise CardStatus(Sw.ISO_CONDITIONS_OF_USE, "no file selected")
        if self._session is not None:
            raise CardStatus(Sw.ISO_SECURITY_STATUS, "ISO file access in EV2 authenticated state")
        return self.state.files[self._ef], offset

    def _iso_read_binary(self, cmd: CommandApdu) -> bytes:
        if cmd.data or cmd.le is None:
            raise CardStatus(Sw.ISO_WRONG_LENGTH)
        file, offset = self._iso_target(cmd)
        access = file.settings.access
        sdm_free = file.settings.sdm is not None and file.settings.sdm.mac_enabled
        if ACCESS_FREE not in (access.read, access.read_write) and not sdm_free:
            raise CardStatus(Sw.ISO_SECURITY_STATUS, "read access is not free")
        if offset >= file.size:
            raise CardStatus(Sw.ISO_WRONG_P1P2, "offset beyond the file")
        wanted = cmd.le or MAX_RESPONSE
        content = self._readable_content(file, Ins.ISO_READ_BINARY)
        return content[offset : offset + wanted] + Sw.ISO_OK.encode()

    def _iso_update_binary(self, cmd: CommandApdu) -> bytes:
        if not cmd.data or cmd.le is not None:
            raise CardStatus(Sw.ISO_WRONG_LENGTH)
        file, offset = self._iso_target(cmd)
        access = file.settings.access
        if ACCESS_FREE not in (access.write, access.read_write):
            raise CardStatus(Sw.ISO_SECURITY_STATUS, "write access is not free")
        if offset + len(cmd.data) > file.size:
            raise CardStatus(Sw.ISO_LC_INCONSISTENT, "write beyond the end of the file")
        file.content[offset : offset + len(cmd.data)] = cmd.data
        self._mark_dirty()
        return Sw.ISO_OK.encode()
