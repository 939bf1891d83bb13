"""NTAG 424 DNA constants, named as in the data sheet NT4H2421Gx (rev 3.0) and AN12196."""

from __future__ import annotations

from enum import Enum, IntEnum

# --- Native command codes (INS), wrapped as `90 INS 00 00 Lc data 00` (§10) ---------------------
AUTHENTICATE_EV2_FIRST = 0x71
AUTHENTICATE_EV2_NON_FIRST = 0x77
ADDITIONAL_FRAME = 0xAF
GET_VERSION = 0x60
GET_KEY_VERSION = 0x64
GET_FILE_SETTINGS = 0xF5
CHANGE_FILE_SETTINGS = 0x5F
CHANGE_KEY = 0xC4
GET_CARD_UID = 0x51
SET_CONFIGURATION = 0x5C
READ_DATA = 0xAD
WRITE_DATA = 0x8D

# --- ISO/IEC 7816-4 commands --------------------------------------------------------------------
ISO_CLA = 0x00
ISO_SELECT_FILE = 0xA4
ISO_READ_BINARY = 0xB0
ISO_UPDATE_BINARY = 0xD6
NATIVE_CLA = 0x90

# ISOSelectFile P1: select by DF name (AID) / by file identifier under the current DF.
SELECT_BY_DF_NAME = 0x04
SELECT_BY_FILE_ID = 0x00
# ISOSelectFile P2 0C: "no response data" (no FCI returned).
SELECT_NO_RESPONSE_DATA = 0x0C

# --- Application and files (§8.2) ---------------------------------------------------------------
NDEF_APPLICATION_AID = bytes.fromhex("D2760000850101")
CC_FILE_ID = 0xE103
NDEF_FILE_ID = 0xE104
PROPRIETARY_FILE_ID = 0xE105
CC_FILE_NO = 0x01
NDEF_FILE_NO = 0x02
PROPRIETARY_FILE_NO = 0x03
NDEF_FILE_SIZE = 256  # factory size of file 02

# --- Keys -----------------------------------------------------------------------------------------
KEY_SIZE = 16
KEY_COUNT = 5  # AppMasterKey 0 and application keys 1..4
APP_MASTER_KEY_NO = 0
FACTORY_KEY = bytes(KEY_SIZE)

# AuthenticateEV2First: LenCap 00 = no PCDcap2 sent (AN12196 Table 14).
LEN_CAP_NONE = 0x00

# --- Access rights (§8.2.3.3): a key number 0..4, E = free access, F = no access -----------------
ACCESS_FREE = 0xE
ACCESS_NEVER = 0xF

# --- FileOption and SDMOptions bits (§10.7.1) ---------------------------------------------------
FILE_OPTION_SDM_ENABLED = 0x40
FILE_OPTION_COMM_MODE_MASK = 0x03
SDM_OPTION_UID_MIRROR = 0x80
SDM_OPTION_READ_CTR = 0x40
SDM_OPTION_READ_CTR_LIMIT = 0x20
SDM_OPTION_ENC_FILE_DATA = 0x10
SDM_OPTION_ASCII_ENCODING = 0x01

# SetConfiguration option 00 (PICC configuration), data bit 1: random ID (irreversible).
SET_CONFIG_OPTION_PICC = 0x00
PICC_CONFIG_RANDOM_UID = 0x02

# --- Response frames ----------------------------------------------------------------------------
MAC_LENGTH = 8  # MACt
# A short APDU carries at most 255 data bytes (Lc is one byte).
MAX_SHORT_LC = 255


class CommMode(Enum):
    """Communication mode of a command or file (§9.1.1)."""

    PLAIN = 0x00
    MAC = 0x01
    FULL = 0x03

    @classmethod
    def from_file_option(cls, file_option: int) -> CommMode:
        bits = file_option & FILE_OPTION_COMM_MODE_MASK
        # 10b is RFU and behaves as plain on the card.
        return cls.PLAIN if bits == 0x02 else cls(bits)


class FileType(IntEnum):
    STANDARD_DATA = 0x00


class StatusWord(IntEnum):
    """Status words SW1SW2 (§10.2, ISO/IEC 7816-4)."""

    OPERATION_OK = 0x9100
    ADDITIONAL_FRAME = 0x91AF
    ISO_OK = 0x9000
    COMMAND_ABORTED = 0x91CA
    LENGTH_ERROR = 0x917E
    INTEGRITY_ERROR = 0x911E
    NO_SUCH_KEY = 0x9140
    PERMISSION_DENIED = 0x919D
    PARAMETER_ERROR = 0x919E
    AUTHENTICATION_DELAY = 0x91AD
    AUTHENTICATION_ERROR = 0x91AE
    BOUNDARY_ERROR = 0x91BE
    MEMORY_ERROR = 0x91EE
    ILLEGAL_COMMAND = 0x911C
    APPLICATION_NOT_FOUND = 0x91A0
    FILE_NOT_FOUND_NATIVE = 0x91F0
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    CONDITIONS_NOT_SATISFIED = 0x6985
    WRONG_DATA = 0x6A80
    FILE_NOT_FOUND = 0x6A82
    WRONG_P1_P2 = 0x6A86
    WRONG_LE = 0x6C00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00


SUCCESS_STATUS = frozenset({StatusWord.OPERATION_OK, StatusWord.ISO_OK})
