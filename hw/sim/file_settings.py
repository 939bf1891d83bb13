"""File settings of a StandardData file: the ChangeFileSettings codec and its validation.

Wire layout (NT4H2421Gx Table 69): FileOption ‖ AccessRights (2) ‖ [SDMOptions ‖ SDMAccessRights
(2) ‖ [UIDOffset] ‖ [SDMReadCtrOffset] ‖ [PICCDataOffset] ‖ [SDMMACInputOffset] ‖ [SDMENCOffset ‖
SDMENCLength] ‖ [SDMMACOffset] ‖ [SDMReadCtrLimit]], offsets 3 bytes least significant first.
Every rule of Table 71 that the card enforces is enforced here, with the same status words.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hw.sim.constants import ACCESS_FREE, ACCESS_NEVER, KEY_COUNT, MAX_OFFSET, CommMode, Sw
from hw.sim.errors import CardStatus

FILE_OPTION_SDM = 0x40
FILE_OPTION_RFU = 0b1011_1100

SDM_OPTION_UID = 0x80
SDM_OPTION_READ_CTR = 0x40
SDM_OPTION_READ_CTR_LIMIT = 0x20
SDM_OPTION_ENC_FILE_DATA = 0x10
SDM_OPTION_RFU = 0x0E  # bit 3 (TagTamper status on the TT variant) is RFU on NTAG 424 DNA
SDM_OPTION_ASCII = 0x01

# Mirror lengths with ASCII encoding and a 7-byte UID (§9.3.3, §9.3.4, §9.3.7).
UID_LENGTH = 14
READ_CTR_LENGTH = 6
PICC_DATA_LENGTH = 32
SDM_MAC_LENGTH = 16
NO_READ_CTR_MIRROR = MAX_OFFSET  # SDMReadCtrOffset FFFFFFh: counter kept but not mirrored


def _key_or(nibble: int, *allowed: int) -> bool:
    return nibble < KEY_COUNT or nibble in allowed


def _u24(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


def _overlap(a: int | None, a_len: int, b: int | None, b_len: int) -> bool:
    if a is None or b is None:
        return False
    return not (a >= b + b_len or b >= a + a_len)


@dataclass(frozen=True)
class AccessRights:
    """Four access conditions: key number 0-4, Eh free, Fh never (§8.2.3.3)."""

    read: int
    write: int
    read_write: int
    change: int

    @classmethod
    def decode(cls, wire: bytes) -> AccessRights:
        # Byte 0 = ReadWrite ‖ Change, byte 1 = Read ‖ Write: "00 E0" is free read, key 0 else.
        rights = cls(wire[1] >> 4, wire[1] & 0xF, wire[0] >> 4, wire[0] & 0xF)
        if not all(_key_or(n, ACCESS_FREE, ACCESS_NEVER) for n in rights.nibbles()):
            raise CardStatus(Sw.PARAMETER_ERROR, "access condition names a key that does not exist")
        return rights

    def encode(self) -> bytes:
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])

    def nibbles(self) -> tuple[int, int, int, int]:
        return (self.read, self.write, self.read_write, self.change)


@dataclass(frozen=True)
class SdmSettings:
    """Secure Dynamic Messaging configuration (SDMOptions, SDMAccessRights and the offsets)."""

    uid_mirror: bool
    read_ctr: bool
    enc_file_data: bool
    meta_read: int  # SDMMetaRead: key (encrypted PICCData), Eh plain mirror, Fh none
    file_read: int  # SDMFileRead: key for SDMMAC (and SDMENCFileData), Fh none
    ctr_ret: int  # SDMCtrRet: who may GetFileCounters
    uid_offset: int | None = None
    read_ctr_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    read_ctr_limit: int | None = None

    @property
    def encrypted_picc_data(self) -> bool:
        return self.meta_read < KEY_COUNT

    @property
    def plain_picc_data(self) -> bool:
        return self.meta_read == ACCESS_FREE

    @property
    def mac_enabled(self) -> bool:
        return self.file_read != ACCESS_NEVER

    @property
    def options(self) -> int:
        return (
            (SDM_OPTION_UID if self.uid_mirror else 0)
            | (SDM_OPTION_READ_CTR if self.read_ctr else 0)
            | (SDM_OPTION_READ_CTR_LIMIT if self.read_ctr_limit is not None else 0)
            | (SDM_OPTION_ENC_FILE_DATA if self.enc_file_data else 0)
            | SDM_OPTION_ASCII
        )

    def encode(self) -> bytes:
        out = bytearray([self.options, 0xF0 | self.ctr_ret, self.meta_read << 4 | self.file_read])
        for value in (
            self.uid_offset,
            self.read_ctr_offset,
            self.picc_data_offset,
            self.mac_input_offset,
            self.enc_offset,
            self.enc_length,
            self.mac_offset,
            self.read_ctr_limit,
        ):
            if value is not None:
                out += value.to_bytes(3, "little")
        return bytes(out)

    @classmethod
    def decode(cls, wire: bytes) -> SdmSettings:
        """Decode SDMOptions onwards; the whole of `wire` must be used (else LENGTH_ERROR)."""
        if len(wire) < 3:
            raise CardStatus(Sw.LENGTH_ERROR, "SDM settings truncated")
        options, ar0, ar1 = wire[0], wire[1], wire[2]
        if options & SDM_OPTION_RFU or not options & SDM_OPTION_ASCII:
            raise CardStatus(Sw.PARAMETER_ERROR, "SDMOptions: RFU bit set or encoding not ASCII")
        if ar0 >> 4 != 0xF:
            raise CardStatus(Sw.PARAMETER_ERROR, "SDMAccessRights: RFU nibble must be Fh")
        uid, ctr = bool(options & SDM_OPTION_UID), bool(options & SDM_OPTION_READ_CTR)
        meta_read, file_read, ctr_ret = ar1 >> 4, ar1 & 0xF, ar0 & 0xF
        if not (
            _key_or(meta_read, ACCESS_FREE, ACCESS_NEVER)
            and _key_or(file_read, ACCESS_NEVER)
            and _key_or(ctr_ret, ACCESS_FREE, ACCESS_NEVER)
        ):
            raise CardStatus(Sw.PARAMETER_ERROR, "SDM access condition names a missing key")
        fields: dict[str, int] = {}
        wanted = []
        if uid and meta_read == ACCESS_FREE:
            wanted.append("uid_offset")
        if ctr and meta_read == ACCESS_FREE:
            wanted.append("read_ctr_offset")
        if meta_read < KEY_COUNT:
            wanted.append("picc_data_offset")
        if file_read != ACCESS_NEVER:
            wanted.append("mac_input_offset")
            if options & SDM_OPTION_ENC_FILE_DATA:
                wanted += ["enc_offset", "enc_length"]
            wanted.append("mac_offset")
        if options & SDM_OPTION_READ_CTR_LIMIT:
            wanted.append("read_ctr_limit")
        if len(wire) != 3 + 3 * len(wanted):
            raise CardStatus(Sw.LENGTH_ERROR, "SDM settings length does not match SDMOptions")
        for index, name in enumerate(wanted):
            fields[name] = _u24(wire, 3 + 3 * index)
        return cls(
            uid_mirror=uid,
            read_ctr=ctr,
            enc_file_data=bool(options & SDM_OPTION_ENC_FILE_DATA),
            meta_read=meta_read,
            file_read=file_read,
            ctr_ret=ctr_ret,
            **fields,
        )

    def validate(self, file_size: int, current_read_ctr: int | None) -> None:
        """Table 71's PARAMETER_ERROR rules; `current_read_ctr` None skips the limit check."""
        bad = self._first_violation(file_size, current_read_ctr)
        if bad:
            raise CardStatus(Sw.PARAMETER_ERROR, bad)

    def _first_violation(self, size: int, current_read_ctr: int | None) -> str:
        if self.meta_read != ACCESS_NEVER and not (self.uid_mirror or self.read_ctr):
            return "SDMMetaRead set while neither UID nor SDMReadCtr is mirrored"
        if self.meta_read == ACCESS_NEVER and self.uid_mirror:
            return "UID mirroring needs SDMMetaRead"
        if self.ctr_ret != ACCESS_NEVER and not self.read_ctr:
            return "SDMCtrRet set while SDMReadCtr is disabled"
        if self.enc_file_data and (not self.mac_enabled or not (self.uid_mirror and self.read_ctr)):
            return "SDMENCFileData needs SDMFileRead and both UID and SDMReadCtr mirrored"
        if self.read_ctr_limit is not None and not self.read_ctr:
            return "SDMReadCtrLimit set while SDMReadCtr is disabled"
        limit, current = self.read_ctr_limit, current_read_ctr
        if limit is not None and current is not None and limit <= current:
            return "SDMReadCtrLimit not above the current SDMReadCtr"
        uid_at = self.uid_offset
        ctr_at = self.read_ctr_offset if self.read_ctr_offset != NO_READ_CTR_MIRROR else None
        picc_at, mac_at, enc_at = self.picc_data_offset, self.mac_offset, self.enc_offset
        enc_len = self.enc_length or 0
        if uid_at is not None and uid_at > size - UID_LENGTH:
            return "UIDOffset outside the file"
        if ctr_at is not None and ctr_at > size - READ_CTR_LENGTH:
            return "SDMReadCtrOffset outside the file"
        if picc_at is not None and picc_at > size - PICC_DATA_LENGTH:
            return "PICCDataOffset outside the file"
        if mac_at is not None:
            assert self.mac_input_offset is not None
            if self.mac_input_offset > mac_at:
                return "SDMMACInputOffset beyond SDMMACOffset"
            if mac_at > size - SDM_MAC_LENGTH:
                return "SDMMACOffset outside the file"
        if enc_at is not None:
            assert self.mac_input_offset is not None and mac_at is not None
            if enc_len < 32 or enc_len % 32:
                return "SDMENCLength must be a non-zero multiple of 32"
            if enc_at < self.mac_input_offset or enc_at + enc_len > mac_at:
                return "SDMENCFileData outside [SDMMACInputOffset, SDMMACOffset)"
        pairs = [
            (mac_at, SDM_MAC_LENGTH, uid_at, UID_LENGTH, "SDMMAC and UID overlap"),
            (mac_at, SDM_MAC_LENGTH, ctr_at, READ_CTR_LENGTH, "SDMMAC and SDMReadCtr overlap"),
            (mac_at, SDM_MAC_LENGTH, picc_at, PICC_DATA_LENGTH, "SDMMAC and PICCData overlap"),
            (enc_at, enc_len, uid_at, UID_LENGTH, "SDMENCFileData and UID overlap"),
            (enc_at, enc_len, ctr_at, READ_CTR_LENGTH, "SDMENCFileData and SDMReadCtr overlap"),
            (enc_at, enc_len, picc_at, PICC_DATA_LENGTH, "SDMENCFileData and PICCData overlap"),
            (uid_at, UID_LENGTH, ctr_at, READ_CTR_LENGTH, "UID and SDMReadCtr overlap"),
        ]
        for a, a_len, b, b_len, message in pairs:
            if _overlap(a, a_len, b, b_len):
                return message
        return ""


@dataclass(frozen=True)
class FileSettings:
    """FileOption, AccessRights and optional SDM settings of one StandardData file."""

    comm_mode: CommMode
    access: AccessRights
    sdm: SdmSettings | None = None

    @property
    def mode(self) -> CommMode:
        """The secure messaging applied when a key grants access (10b counts as plain)."""
        return CommMode.of(self.comm_mode)

    @property
    def file_option(self) -> int:
        return int(self.comm_mode) | (FILE_OPTION_SDM if self.sdm else 0)

    def encode(self) -> bytes:
        """The ChangeFileSettings data field (also the persisted form)."""
        sdm = self.sdm.encode() if self.sdm else b""
        return bytes([self.file_option]) + self.access.encode() + sdm

    def get_file_settings_response(self, file_size: int) -> bytes:
        """GetFileSettings response (Table 73): FileType 00h (StandardData) first."""
        sdm = self.sdm.encode() if self.sdm else b""
        head = bytes([0x00, self.file_option]) + self.access.encode()
        return head + file_size.to_bytes(3, "little") + sdm

    @classmethod
    def decode(cls, wire: bytes) -> FileSettings:
        """Parse a ChangeFileSettings data field (structure only; see `validate`)."""
        if len(wire) < 3:
            raise CardStatus(Sw.LENGTH_ERROR, "file settings shorter than FileOption+AccessRights")
        option = wire[0]
        if option & FILE_OPTION_RFU:
            raise CardStatus(Sw.PARAMETER_ERROR, "FileOption RFU bits set")
        access = AccessRights.decode(wire[1:3])
        if option & FILE_OPTION_SDM:
            return cls(CommMode(option & 0b11), access, SdmSettings.decode(wire[3:]))
        if len(wire) != 3:
            raise CardStatus(Sw.LENGTH_ERROR, "SDM data given while SDM is disabled")
        return cls(CommMode(option & 0b11), access)

    def validate(self, file_size: int, current_read_ctr: int | None) -> None:
        if self.sdm is not None:
            self.sdm.validate(file_size, current_read_ctr)

    def with_access(self, access: AccessRights) -> FileSettings:
        return replace(self, access=access)
