"""File settings (NT4H2421Gx §10.7): parse GetFileSettings, build ChangeFileSettings.

Both directions share one table of which SDM fields are present, so what the builder writes the
parser reads back. Sizes and offsets are 3 bytes, least significant first; access rights are two
bytes as on the wire: `RW‖Change`, `Read‖Write` (nibbles: key 0..4, E free, F never).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hw.ntag424.constants import (
    ACCESS_FREE,
    ACCESS_NEVER,
    FILE_OPTION_SDM_ENABLED,
    SDM_OPTION_ASCII_ENCODING,
    SDM_OPTION_ENC_FILE_DATA,
    SDM_OPTION_READ_CTR,
    SDM_OPTION_READ_CTR_LIMIT,
    SDM_OPTION_UID_MIRROR,
    CommMode,
)
from hw.ntag424.errors import ProtocolError

OFFSET_SIZE = 3


def _nibble(value: int) -> int:
    if not 0 <= value <= 0xF:
        raise ValueError("access condition must be a nibble (key 0..4, E free, F never)")
    return value


@dataclass(frozen=True)
class AccessRights:
    """Who may read, write, read-and-write and change the settings of a file."""

    read: int
    write: int
    read_write: int
    change: int

    def __post_init__(self) -> None:
        for name in ("read", "write", "read_write", "change"):
            _nibble(getattr(self, name))

    @classmethod
    def from_bytes(cls, raw: bytes) -> AccessRights:
        return cls(
            read=raw[1] >> 4, write=raw[1] & 0xF, read_write=raw[0] >> 4, change=raw[0] & 0xF
        )

    def to_bytes(self) -> bytes:
        return bytes([self.read_write << 4 | self.change, self.read << 4 | self.write])


@dataclass(frozen=True)
class SdmAccessRights:
    """SDMCtrRet, SDMMetaRead (key that encrypts PICCData) and SDMFileRead (key for the MAC)."""

    meta_read: int
    file_read: int
    ctr_ret: int = ACCESS_NEVER
    rfu: int = 0xF

    def __post_init__(self) -> None:
        for name in ("meta_read", "file_read", "ctr_ret", "rfu"):
            _nibble(getattr(self, name))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SdmAccessRights:
        return cls(meta_read=raw[1] >> 4, file_read=raw[1] & 0xF, ctr_ret=raw[0] & 0xF,
                   rfu=raw[0] >> 4)

    def to_bytes(self) -> bytes:
        return bytes([self.rfu << 4 | self.ctr_ret, self.meta_read << 4 | self.file_read])


@dataclass(frozen=True)
class SdmConfig:
    """The Secure Dynamic Messaging part of a file's settings, in wire order.

    An offset field is set exactly when the options and access rights call for it (§10.7.1);
    the constructor refuses anything else, so a config always encodes unambiguously.
    """

    options: int
    access_rights: SdmAccessRights
    uid_offset: int | None = None
    read_ctr_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    read_ctr_limit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.options <= 0xFF:
            raise ValueError("SDMOptions is one byte")
        wanted = self.required_fields(self.options, self.access_rights)
        for name in _OFFSET_FIELDS:
            value = getattr(self, name)
            if (value is not None) != (name in wanted):
                need = "needs" if name in wanted else "must not have"
                raise ValueError(f"this SDM configuration {need} {name}")
            if value is not None and not 0 <= value < 1 << 24:
                raise ValueError(f"{name} must fit in 3 bytes")

    @staticmethod
    def required_fields(options: int, rights: SdmAccessRights) -> tuple[str, ...]:
        """Which offset fields follow SDMAccessRights, in wire order (§10.7.1 Table 73)."""
        plain_meta = rights.meta_read == ACCESS_FREE
        encrypted_meta = rights.meta_read <= 4
        mac = rights.file_read != ACCESS_NEVER
        present = {
            "uid_offset": bool(options & SDM_OPTION_UID_MIRROR) and plain_meta,
            "read_ctr_offset": bool(options & SDM_OPTION_READ_CTR) and plain_meta,
            "picc_data_offset": encrypted_meta,
            "mac_input_offset": mac,
            "enc_offset": mac and bool(options & SDM_OPTION_ENC_FILE_DATA),
            "enc_length": mac and bool(options & SDM_OPTION_ENC_FILE_DATA),
            "mac_offset": mac,
            "read_ctr_limit": bool(options & SDM_OPTION_READ_CTR_LIMIT),
        }
        return tuple(name for name in _OFFSET_FIELDS if present[name])

    def to_bytes(self) -> bytes:
        out = bytes([self.options]) + self.access_rights.to_bytes()
        for name in self.required_fields(self.options, self.access_rights):
            out += int(getattr(self, name)).to_bytes(OFFSET_SIZE, "little")
        return out

    @classmethod
    def parse(cls, raw: bytes) -> tuple[SdmConfig, bytes]:
        """Parse from the start of `raw`; returns the config and the bytes after it."""
        if len(raw) < 3:
            raise ProtocolError("file settings end inside the SDM options")
        options, rights = raw[0], SdmAccessRights.from_bytes(raw[1:3])
        pos, values = 3, {}
        for name in cls.required_fields(options, rights):
            if len(raw) < pos + OFFSET_SIZE:
                raise ProtocolError("file settings end inside the SDM offsets")
            values[name] = int.from_bytes(raw[pos : pos + OFFSET_SIZE], "little")
            pos += OFFSET_SIZE
        return cls(options=options, access_rights=rights, **values), raw[pos:]


_OFFSET_FIELDS = tuple(f.name for f in fields(SdmConfig) if f.name.endswith(("_offset", "_length",
                                                                              "_limit")))


@dataclass(frozen=True)
class FileSettings:
    """What GetFileSettings returns for a standard data file."""

    file_type: int
    file_option: int
    access_rights: AccessRights
    file_size: int
    sdm: SdmConfig | None = None

    @property
    def comm_mode(self) -> CommMode:
        return CommMode.from_file_option(self.file_option)

    @property
    def sdm_enabled(self) -> bool:
        return bool(self.file_option & FILE_OPTION_SDM_ENABLED)

    @classmethod
    def from_bytes(cls, raw: bytes) -> FileSettings:
        if len(raw) < 7:
            raise ProtocolError("file settings are too short")
        file_option = raw[1]
        sdm = None
        rest = raw[7:]
        if file_option & FILE_OPTION_SDM_ENABLED:
            sdm, rest = SdmConfig.parse(rest)
        if rest:
            raise ProtocolError("file settings have unexpected trailing bytes")
        return cls(
            file_type=raw[0],
            file_option=file_option,
            access_rights=AccessRights.from_bytes(raw[2:4]),
            file_size=int.from_bytes(raw[4:7], "little"),
            sdm=sdm,
        )


@dataclass(frozen=True)
class FileSettingsUpdate:
    """The data of ChangeFileSettings: FileOption ‖ AccessRights ‖ [SDM settings]."""

    comm_mode: CommMode
    access_rights: AccessRights
    sdm: SdmConfig | None = None

    @property
    def file_option(self) -> int:
        return self.comm_mode.value | (FILE_OPTION_SDM_ENABLED if self.sdm else 0)

    def to_bytes(self) -> bytes:
        out = bytes([self.file_option]) + self.access_rights.to_bytes()
        return out + (self.sdm.to_bytes() if self.sdm else b"")


# --- Profiles -----------------------------------------------------------------------------------

# Boltcard NDEF file: free read; write, read-write and change need key 0 (`00 E0`).
BOLTCARD_ACCESS_RIGHTS = AccessRights(read=ACCESS_FREE, write=0, read_write=0, change=0)
# Factory NDEF file: read, write, read-write free; change needs key 0 (`E0 EE`).
FACTORY_NDEF_ACCESS_RIGHTS = AccessRights(
    read=ACCESS_FREE, write=ACCESS_FREE, read_write=ACCESS_FREE, change=0
)
# UID + SDMReadCtr mirrored (encrypted as PICCData), ASCII: `C1`.
BOLTCARD_SDM_OPTIONS = SDM_OPTION_UID_MIRROR | SDM_OPTION_READ_CTR | SDM_OPTION_ASCII_ENCODING
# No counter retrieval, K1 encrypts PICCData, K2 keys the MAC: `FF 12`.
BOLTCARD_SDM_ACCESS_RIGHTS = SdmAccessRights(meta_read=1, file_read=2, ctr_ret=ACCESS_NEVER)


def boltcard_file_settings(picc_data_offset: int, sdm_mac_offset: int) -> FileSettingsUpdate:
    """`40 00E0 C1 FF12 PICCDataOffset SDMMACInputOffset SDMMACOffset`; the MAC input is empty."""
    sdm = SdmConfig(
        options=BOLTCARD_SDM_OPTIONS,
        access_rights=BOLTCARD_SDM_ACCESS_RIGHTS,
        picc_data_offset=picc_data_offset,
        mac_input_offset=sdm_mac_offset,
        mac_offset=sdm_mac_offset,
    )
    return FileSettingsUpdate(CommMode.PLAIN, BOLTCARD_ACCESS_RIGHTS, sdm)


def factory_ndef_file_settings() -> FileSettingsUpdate:
    """`00 E0EE`: SDM off, plain, free read and write, change with key 0."""
    return FileSettingsUpdate(CommMode.PLAIN, FACTORY_NDEF_ACCESS_RIGHTS)
