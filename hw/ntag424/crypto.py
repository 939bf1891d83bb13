"""NTAG 424 DNA cryptographic primitives (NT4H2421Gx §9, AN12196).

Raw arithmetic only ("hazmat"): AES in the modes the card uses, AES-CMAC and its MACt truncation,
ISO/IEC 9797-1 padding method 2, JAMCRC, and the session-vector derivations for EV2 secure
messaging and for Secure Unique NFC (SUN) messages. Everything here is pure and I/O free.
"""

from __future__ import annotations

import zlib

from Crypto.Cipher import AES
from Crypto.Hash import CMAC

BLOCK = 16
ZERO_IV = bytes(BLOCK)

# Session vector labels (NT4H2421Gx §9.1.7 and §9.3.9).
SV1_LABEL = bytes.fromhex("A55A00010080")  # SesAuthENCKey
SV2_LABEL = bytes.fromhex("5AA500010080")  # SesAuthMACKey
SDM_SV1_LABEL = bytes.fromhex("C33C00010080")  # SesSDMFileReadENCKey
SDM_SV2_LABEL = bytes.fromhex("3CC300010080")  # SesSDMFileReadMACKey
# IV derivation labels for CommMode.Full (§9.1.4).
IV_CMD_LABEL = bytes.fromhex("A55A")
IV_RESP_LABEL = bytes.fromhex("5AA5")


def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    return AES.new(key, AES.MODE_ECB).encrypt(data)


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    return AES.new(key, AES.MODE_ECB).decrypt(data)


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    return AES.new(key, AES.MODE_CBC, iv=iv).encrypt(data)


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    return AES.new(key, AES.MODE_CBC, iv=iv).decrypt(data)


def cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), the full 16 bytes."""
    return CMAC.new(key, message, ciphermod=AES).digest()


def truncate_mac(full_cmac: bytes) -> bytes:
    """MACt: the 8 bytes at odd indexes 1, 3, …, 15 of a CMAC (§9.1.3)."""
    return full_cmac[1::2]


def mact(key: bytes, message: bytes) -> bytes:
    """Truncated CMAC as sent on the wire."""
    return truncate_mac(cmac(key, message))


def pad_m2(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: always append 80 then zeros to a block boundary.

    An aligned input gains a full extra block, as CommMode.Full requires.
    """
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % BLOCK)


def unpad_m2(data: bytes) -> bytes:
    """Remove method-2 padding; raise ValueError when it is absent or malformed."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise ValueError("bad ISO 9797-1 method 2 padding")
    return stripped[:-1]


def jamcrc32(data: bytes) -> int:
    """JAMCRC: IEEE CRC32 without the final inversion."""
    return (~zlib.crc32(data)) & 0xFFFFFFFF


def jamcrc32_le(data: bytes) -> bytes:
    """JAMCRC as ChangeKey sends it: least significant byte first."""
    return jamcrc32(data).to_bytes(4, "little")


def rotl1(data: bytes) -> bytes:
    """Rotate left by one byte (RndA', RndB')."""
    return data[1:] + data[:1]


def rotr1(data: bytes) -> bytes:
    return data[-1:] + data[:-1]


def session_context(rnd_a: bytes, rnd_b: bytes) -> bytes:
    """The 26-byte context shared by SV1 and SV2 after AuthenticateEV2First (§9.1.7)."""
    xored = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    return rnd_a[0:2] + xored + rnd_b[6:16] + rnd_a[8:16]


def sv1(rnd_a: bytes, rnd_b: bytes) -> bytes:
    return SV1_LABEL + session_context(rnd_a, rnd_b)


def sv2(rnd_a: bytes, rnd_b: bytes) -> bytes:
    return SV2_LABEL + session_context(rnd_a, rnd_b)


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey) for an EV2 authentication with `key`."""
    return cmac(key, sv1(rnd_a, rnd_b)), cmac(key, sv2(rnd_a, rnd_b))


def command_iv(ses_enc_key: bytes, ti: bytes, cmd_ctr: int) -> bytes:
    """IV for a CommMode.Full command: E(SesAuthENCKey, A55A ‖ TI ‖ CmdCtr ‖ 8×00)."""
    block = IV_CMD_LABEL + ti + cmd_ctr.to_bytes(2, "little") + bytes(8)
    return aes_ecb_encrypt(ses_enc_key, block)


def response_iv(ses_enc_key: bytes, ti: bytes, cmd_ctr: int) -> bytes:
    """IV for a CommMode.Full response; `cmd_ctr` is the already incremented counter."""
    block = IV_RESP_LABEL + ti + cmd_ctr.to_bytes(2, "little") + bytes(8)
    return aes_ecb_encrypt(ses_enc_key, block)


def sdm_sv2(uid: bytes, counter_le: bytes) -> bytes:
    """SV2 for the SDM session MAC key: 3CC3 0001 0080 ‖ UID ‖ SDMReadCtr (LE); one block."""
    return SDM_SV2_LABEL + uid + counter_le


def sdm_sv1(uid: bytes, counter_le: bytes) -> bytes:
    return SDM_SV1_LABEL + uid + counter_le


def sdm_session_mac_key(file_read_key: bytes, uid: bytes, counter_le: bytes) -> bytes:
    """SesSDMFileReadMACKey = CMAC(SDMFileReadKey, SV2)."""
    return cmac(file_read_key, sdm_sv2(uid, counter_le))


def sdm_session_enc_key(file_read_key: bytes, uid: bytes, counter_le: bytes) -> bytes:
    return cmac(file_read_key, sdm_sv1(uid, counter_le))


def sdm_mac(file_read_key: bytes, uid: bytes, counter_le: bytes, mac_input: bytes = b"") -> bytes:
    """SDMMAC (8 bytes): MACt(SesSDMFileReadMACKey, SDMMACInput); Boltcards use an empty input."""
    return mact(sdm_session_mac_key(file_read_key, uid, counter_le), mac_input)


# --- Precomputed AES-CMAC for short messages (SUN verification hot path) ---------------------
# SUN needs CMAC only over messages of at most one block (SV2 is exactly 16 bytes, the SDMMAC
# input is empty), so the general CMAC object is overkill: with the cipher and the two subkeys
# prepared once per key, CMAC of a short message is a single AES block encryption (SP 800-38B
# §6.2 with n = 1).

CMAC_RB = 0x87  # SP 800-38B §5.3, R_128
_MASK_128 = (1 << 128) - 1


def _cmac_dbl(value: int) -> int:
    """Doubling in GF(2^128) as SP 800-38B derives K1 from L and K2 from K1."""
    shifted = (value << 1) & _MASK_128
    return shifted ^ CMAC_RB if value >> 127 else shifted


class ShortCmac:
    """AES-CMAC under one fixed key for messages of 0 to 16 bytes, the subkeys precomputed.

    Equal to `cmac(key, message)` for every such message (property-tested); holds the key's
    cipher, so treat instances as secret material (no repr of the key).
    """

    __slots__ = ("_encrypt", "_k1", "_k2")

    def __init__(self, key: bytes) -> None:
        self._encrypt = AES.new(key, AES.MODE_ECB).encrypt
        l_value = int.from_bytes(self._encrypt(ZERO_IV), "big")
        self._k1 = _cmac_dbl(l_value)
        self._k2 = _cmac_dbl(self._k1)

    def __repr__(self) -> str:
        return "ShortCmac(<key hidden>)"

    def digest(self, message: bytes) -> bytes:
        """The full 16-byte CMAC of `message` (at most one block)."""
        if len(message) == BLOCK:
            last = int.from_bytes(message, "big") ^ self._k1
        elif len(message) < BLOCK:
            padded = message + b"\x80" + bytes(BLOCK - 1 - len(message))
            last = int.from_bytes(padded, "big") ^ self._k2
        else:
            raise ValueError("ShortCmac handles messages of at most one block")
        return self._encrypt(last.to_bytes(BLOCK, "big"))


def cmac_empty(key: bytes) -> bytes:
    """CMAC(key, empty message): one cipher object, two block encryptions."""
    encrypt = AES.new(key, AES.MODE_ECB).encrypt
    k2 = _cmac_dbl(_cmac_dbl(int.from_bytes(encrypt(ZERO_IV), "big")))
    return encrypt(((0x80 << 120) ^ k2).to_bytes(BLOCK, "big"))


def sdm_mac_precomputed(file_read_cmac: ShortCmac, uid: bytes, counter_le: bytes) -> bytes:
    """`sdm_mac` with an empty MAC input, given a ShortCmac prepared for SDMFileReadKey (K2)."""
    session_mac_key = file_read_cmac.digest(sdm_sv2(uid, counter_le))
    return truncate_mac(cmac_empty(session_mac_key))
