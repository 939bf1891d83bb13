"""The NDEF file of a Boltcard: one URI record holding a SUN URL with `p`/`c` placeholders.

File layout (NFC Forum Type 4 Tag): NLEN (2 bytes, big-endian) ‖ NDEF message. The message is one
URI record with identifier code 0x00 (the URI text in full, since `lnurlw://` has no code). The
card overwrites the placeholder characters on every read; their positions, counted from the start
of the file, are the PICCDataOffset and SDMMACOffset of the file settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from hw.ntag424.constants import NDEF_FILE_SIZE

NLEN_SIZE = 2
PICC_DATA_PLACEHOLDER_LENGTH = 32  # 16 bytes of encrypted PICCData in hex
SDM_MAC_PLACEHOLDER_LENGTH = 16  # 8 bytes of MACt in hex

# NDEF record header bits (NFC Forum NDEF 1.0 §3.2).
MB, ME, SR = 0x80, 0x40, 0x10
TNF_EMPTY, TNF_WELL_KNOWN = 0x00, 0x01
URI_RECORD_TYPE = b"U"
URI_IDENTIFIER_NONE = 0x00

# NFC Forum URI RTD identifier codes, for reading URLs other issuers wrote.
URI_PREFIXES = (
    "", "http://www.", "https://www.", "http://", "https://", "tel:", "mailto:",
    "ftp://anonymous:anonymous@", "ftp://ftp.", "ftps://", "sftp://", "smb://", "nfs://",
    "ftp://", "dav://", "news:", "telnet://", "imap:", "rtsp://", "urn:", "pop:", "sip:",
    "sips:", "tftp:", "btspp://", "btl2cap://", "btgoep://", "tcpobex://", "irdaobex://",
    "file://", "urn:epc:id:", "urn:epc:tag:", "urn:epc:pat:", "urn:epc:raw:", "urn:epc:",
    "urn:nfc:",
)

# An NDEF message with one empty record (TNF 0): what a wiped card holds.
EMPTY_NDEF_MESSAGE = bytes([MB | ME | SR | TNF_EMPTY, 0x00, 0x00])
EMPTY_NDEF_FILE = len(EMPTY_NDEF_MESSAGE).to_bytes(NLEN_SIZE, "big") + EMPTY_NDEF_MESSAGE


class NdefFormatError(ValueError):
    """The NDEF file does not hold a readable URI record."""


@dataclass(frozen=True)
class SunNdefLayout:
    """A SUN URL template, the NDEF file that carries it and the placeholder offsets."""

    url: str
    content: bytes
    picc_data_offset: int
    sdm_mac_offset: int


def uri_record(uri: str) -> bytes:
    """One URI record (MB, ME set) with identifier code 0x00."""
    payload = bytes([URI_IDENTIFIER_NONE]) + uri.encode()
    if len(payload) <= 0xFF:
        length = bytes([len(payload)])
        header = MB | ME | SR | TNF_WELL_KNOWN
    else:
        length = len(payload).to_bytes(4, "big")
        header = MB | ME | TNF_WELL_KNOWN
    return bytes([header, len(URI_RECORD_TYPE)]) + length + URI_RECORD_TYPE + payload


def ndef_file(message: bytes) -> bytes:
    return len(message).to_bytes(NLEN_SIZE, "big") + message


def _uri_text_offset(uri: str) -> int:
    """Where the URI text starts in the file: NLEN, record header, identifier byte."""
    return len(ndef_file(uri_record(uri))) - len(uri.encode())


def sun_url_template(base_url: str, p_param: str = "p", c_param: str = "c") -> str:
    """`base?p=000…(32)&c=000…(16)` (or `&p=…` when the base already has a query)."""
    if not p_param or not c_param or p_param == c_param:
        raise ValueError("the p and c parameter names must be distinct and non-empty")
    parts = urlsplit(base_url)
    if not parts.scheme or not parts.netloc:
        raise ValueError("the card URL needs a scheme and a host, e.g. lnurlw://host/path")
    if parts.fragment or base_url.endswith("#"):
        raise ValueError("the card URL must not have a #fragment")
    existing = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if {p_param, c_param} & existing:
        raise ValueError("the card URL already has the p or c parameter")
    separator = "&" if "?" in base_url else "?"
    if base_url.endswith(("?", "&")):
        separator = ""
    return (f"{base_url}{separator}{p_param}={'0' * PICC_DATA_PLACEHOLDER_LENGTH}"
            f"&{c_param}={'0' * SDM_MAC_PLACEHOLDER_LENGTH}")


def sun_ndef_file(
    base_url: str, p_param: str = "p", c_param: str = "c", file_size: int = NDEF_FILE_SIZE
) -> SunNdefLayout:
    """The NDEF file content and SDM offsets for a Boltcard SUN URL."""
    url = sun_url_template(base_url, p_param, c_param)
    content = ndef_file(uri_record(url))
    if len(content) > file_size:
        raise ValueError(f"the card URL is too long: the NDEF file holds {file_size} bytes")
    text_offset = _uri_text_offset(url)
    encoded = url.encode()
    picc_marker = f"{p_param}=".encode()
    mac_marker = f"{c_param}=".encode()
    # The placeholders are the last two parameters, so search from the end.
    mac_at = encoded.rindex(mac_marker) + len(mac_marker)
    picc_at = encoded.rindex(picc_marker, 0, mac_at - len(mac_marker)) + len(picc_marker)
    return SunNdefLayout(
        url=url,
        content=content,
        picc_data_offset=text_offset + picc_at,
        sdm_mac_offset=text_offset + mac_at,
    )


def parse_uri_message(message: bytes) -> str:
    """The URI of the first record of an NDEF message (which must be a URI record)."""
    try:
        header, type_length = message[0], message[1]
        pos = 2
        if header & SR:
            payload_length = message[pos]
            pos += 1
        else:
            payload_length = int.from_bytes(message[pos : pos + 4], "big")
            pos += 4
        id_length = 0
        if header & 0x08:  # IL: an ID length byte follows
            id_length = message[pos]
            pos += 1
        record_type = message[pos : pos + type_length]
        pos += type_length + id_length
        payload = message[pos : pos + payload_length]
    except IndexError as error:
        raise NdefFormatError("NDEF message is truncated") from error
    if header & 0x07 != TNF_WELL_KNOWN or record_type != URI_RECORD_TYPE:
        raise NdefFormatError("card's NDEF record is not a URI")
    if len(payload) != payload_length or not payload:
        raise NdefFormatError("NDEF message is truncated")
    code = payload[0]
    if code >= len(URI_PREFIXES):
        raise NdefFormatError("card's URI record has an unknown identifier code")
    try:
        return URI_PREFIXES[code] + payload[1:].decode()
    except UnicodeDecodeError as error:
        raise NdefFormatError("card's URI is not valid UTF-8") from error
