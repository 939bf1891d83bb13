"""Secure Dynamic Messaging: the file as the card puts it on the air when read unauthenticated.

NT4H2421Gx §9.3: PICCData (plain UID / SDMReadCtr, or encrypted under SDMMetaReadKey with random
padding), SDMENCFileData and the SDMMAC are written over their placeholders as upper-case ASCII
hex. The MAC covers the dynamic data from SDMMACInputOffset up to SDMMACOffset.
"""

from __future__ import annotations

from collections.abc import Callable

from hw.ntag424 import crypto
from hw.sim.file_settings import NO_READ_CTR_MIRROR, SdmSettings

PICC_DATA_TAG_UID = 0x80
PICC_DATA_TAG_READ_CTR = 0x40
PICC_DATA_UID_LENGTH_7 = 0x07


def ascii_hex(data: bytes) -> bytes:
    """EncodeASCII(): upper-case hex characters, one byte each."""
    return data.hex().upper().encode("ascii")


def picc_data_plaintext(
    sdm: SdmSettings, uid: bytes, ctr_le: bytes, rng: Callable[[int], bytes]
) -> bytes:
    """PICCDataTag ‖ [UID] ‖ [SDMReadCtr] ‖ RandomPadding, one AES block (§9.3.4)."""
    tag = 0
    body = b""
    if sdm.uid_mirror:
        tag |= PICC_DATA_TAG_UID | PICC_DATA_UID_LENGTH_7
        body += uid
    if sdm.read_ctr:
        tag |= PICC_DATA_TAG_READ_CTR
        body += ctr_le
    head = bytes([tag]) + body
    return head + rng(crypto.BLOCK - len(head))


def session_mac_key(sdm: SdmSettings, key: bytes, uid: bytes, ctr_le: bytes) -> bytes:
    """SesSDMFileReadMACKey: SV2 holds only what is mirrored, zero padded to a block (§9.3.9)."""
    sv2 = crypto.SDM_SV2_LABEL
    sv2 += uid if sdm.uid_mirror else b""
    sv2 += ctr_le if sdm.read_ctr else b""
    sv2 += bytes(-len(sv2) % crypto.BLOCK)
    return crypto.cmac(key, sv2)


def render(
    static: bytes,
    sdm: SdmSettings,
    *,
    uid: bytes,
    read_ctr: int,
    keys: list[bytes],
    rng: Callable[[int], bytes],
) -> bytes:
    """The dynamic file data for one read sequence with SDMReadCtr already incremented."""
    image = bytearray(static)
    ctr_le = read_ctr.to_bytes(3, "little")

    def put(offset: int, text: bytes) -> None:
        image[offset : offset + len(text)] = text

    if sdm.plain_picc_data:
        if sdm.uid_mirror and sdm.uid_offset is not None:
            put(sdm.uid_offset, ascii_hex(uid))
        if sdm.read_ctr and sdm.read_ctr_offset not in (None, NO_READ_CTR_MIRROR):
            assert sdm.read_ctr_offset is not None
            put(sdm.read_ctr_offset, ascii_hex(ctr_le[::-1]))  # ASCII: MSB first (§9.3.1)
    elif sdm.encrypted_picc_data and sdm.picc_data_offset is not None:
        plain = picc_data_plaintext(sdm, uid, ctr_le, rng)
        encrypted = crypto.aes_cbc_encrypt(keys[sdm.meta_read], crypto.ZERO_IV, plain)
        put(sdm.picc_data_offset, ascii_hex(encrypted))

    if sdm.mac_enabled:
        assert sdm.mac_offset is not None and sdm.mac_input_offset is not None
        file_read_key = keys[sdm.file_read]
        if sdm.enc_file_data:
            assert sdm.enc_offset is not None and sdm.enc_length is not None
            enc_key = crypto.sdm_session_enc_key(file_read_key, uid, ctr_le)
            iv = crypto.aes_ecb_encrypt(enc_key, ctr_le + bytes(crypto.BLOCK - 3))
            # Only the first half of the placeholder holds plain data (§9.3.6).
            plain = static[sdm.enc_offset : sdm.enc_offset + sdm.enc_length // 2]
            put(sdm.enc_offset, ascii_hex(crypto.aes_cbc_encrypt(enc_key, iv, plain)))
        mac_key = session_mac_key(sdm, file_read_key, uid, ctr_le)
        mac = crypto.mact(mac_key, bytes(image[sdm.mac_input_offset : sdm.mac_offset]))
        put(sdm.mac_offset, ascii_hex(mac))
    return bytes(image)
