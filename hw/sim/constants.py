"""Card-side constants of the simulated NTAG 424 DNA, named as in NT4H2421Gx rev 3.0.

Kept apart from `hw.ntag424` (the host side) on purpose: the simulator is written from the data
sheet, not from the host code it is meant to test.
"""

from __future__ import annotations

from enum import IntEnum

# ISO/IEC 14443-3/-4 activation (what a reader sees before any APDU).
SENS_RES_DOUBLE_UID = bytes.fromhex("4403")  # ATQA for the 7-byte UID
SENS_RES_SINGLE_UID = bytes.fromhex("0403")  # ATQA for a 4-byte random ID
SEL_RES = bytes.fromhex("20")  # SAK: ISO/IEC 14443-4 compliant
ATS = bytes.fromhex("067777710280")  # FSCI 7 (128 bytes), FWI 7, SFGI 1, historical byte 80
RANDOM_ID_PREFIX = 0x08  # ISO/IEC 14443-3: a 4-byte UID starting 08h is a random ID

# ISO/IEC 7816-4 names (§10.9.1).
PICC_DF_NAME = bytes.fromhex("D2760000850100")  # selects the PICC level (MF)
APP_DF_NAME = bytes.fromhex("D2760000850101")  # selects the NDEF application
MF_FID = bytes.fromhex("3F00")
APP_FID = bytes.fromhex("E110")

CLA_ISO = 0x00
CLA_NATIVE = 0x90

KEY_COUNT = 5
KEY_SIZE = 16
ACCESS_FREE = 0xE
ACCESS_NEVER = 0xF
MAX_OFFSET = 0xFFFFFF
MAX_RESPONSE = 256  # short Le: at most 256 response bytes per frame
MAC_LEN = 8


class Ins(IntEnum):
    """Command codes (Table 22)."""

    AUTHENTICATE_EV2_FIRST = 0x71
    AUTHENTICATE_EV2_NON_FIRST = 0x77
    ADDITIONAL_FRAME = 0xAF
    CHANGE_FILE_SETTINGS = 0x5F
    CHANGE_KEY = 0xC4
    GET_CARD_UID = 0x51
    GET_FILE_COUNTERS = 0xF6
    GET_FILE_SETTINGS = 0xF5
    GET_KEY_VERSION = 0x64
    GET_VERSION = 0x60
    READ_DATA = 0xAD
    READ_SIG = 0x3C
    SET_CONFIGURATION = 0x5C
    WRITE_DATA = 0x8D
    ISO_SELECT_FILE = 0xA4
    ISO_READ_BINARY = 0xB0
    ISO_UPDATE_BINARY = 0xD6


class CommMode(IntEnum):
    """FileOption bits 1-0 (Table "CommunicationModes"); 10b is plain as well."""

    PLAIN = 0b00
    MAC = 0b01
    PLAIN_ALT = 0b10
    FULL = 0b11

    @classmethod
    def of(cls, file_option: int) -> CommMode:
        mode = cls(file_option & 0b11)
        return cls.PLAIN if mode is cls.PLAIN_ALT else mode


class Sw(IntEnum):
    """Status words: Table 23 (CLA 90h) and Table 24 (CLA 00h)."""

    OPERATION_OK = 0x9100
    ILLEGAL_COMMAND_CODE = 0x911C
    INTEGRITY_ERROR = 0x911E
    NO_SUCH_KEY = 0x9140
    LENGTH_ERROR = 0x917E
    PERMISSION_DENIED = 0x919D
    PARAMETER_ERROR = 0x919E
    AUTHENTICATION_DELAY = 0x91AD
    AUTHENTICATION_ERROR = 0x91AE
    ADDITIONAL_FRAME = 0x91AF
    BOUNDARY_ERROR = 0x91BE
    COMMAND_ABORTED = 0x91CA
    FILE_NOT_FOUND = 0x91F0
    ISO_OK = 0x9000
    ISO_WRONG_LENGTH = 0x6700
    ISO_SECURITY_STATUS = 0x6982
    ISO_CONDITIONS_OF_USE = 0x6985
    ISO_WRONG_DATA = 0x6A80
    ISO_FILE_NOT_FOUND = 0x6A82
    ISO_WRONG_P1P2 = 0x6A86
    ISO_LC_INCONSISTENT = 0x6A87
    ISO_INS_NOT_SUPPORTED = 0x6D00
    ISO_CLA_NOT_SUPPORTED = 0x6E00

    def encode(self) -> bytes:
        return int(self).to_bytes(2, "big")


# GetVersion (Tables 54, 56, 58): VendorID NXP, type NTAG, subtype 50 pF + strong back modulation,
# HW 30.00, SW 01.02, storage 256 B < size < 512 B, protocol ISO/IEC 14443-4.
VERSION_HW = bytes.fromhex("04040230001105")
VERSION_SW = bytes.fromhex("04040201021105")

# Factory contents (NT4H2421Gx §8.2.3, as read from a blank card).
FACTORY_CC = bytes.fromhex("001720010000FF0406E104010000000506E10500808283") + bytes(9)
