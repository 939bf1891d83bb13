"""Secure-messaging arithmetic against AN12196 and as properties.

Vectors come from tests/vectors/ntag424-an12196.json; every case is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.ntag424 import CommMode, ResponseMacError, SecureSession
from hw.ntag424.crypto import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    cmac,
    command_iv,
    jamcrc32,
    jamcrc32_le,
    mact,
    pad_m2,
    response_iv,
    session_keys,
    sv1,
    sv2,
    unpad_m2,
)

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "ntag424-an12196.json").read_text()
)
AUTH = VECTORS["authenticate"]
COMMANDS = VECTORS["commands"]
CRC_AND_PADDING = {case["name"]: case for case in VECTORS["crc_and_padding"]}

h = bytes.fromhex

keys = st.binary(min_size=16, max_size=16)
tis = st.binary(min_size=4, max_size=4)
counters = st.integers(min_value=0, max_value=0xFFFE)
payloads = st.binary(max_size=300)


def ids(cases: list[dict]) -> list[str]:
    return [case["name"] for case in cases]


# --- padding and CRC ------------------------------------------------------------------------------


def test_jamcrc_vector() -> None:
    case = CRC_AND_PADDING["jamcrc"]
    assert jamcrc32(case["input_ascii"].encode()) == int(case["jamcrc"], 16)
    assert jamcrc32_le(case["input_ascii"].encode()) == h(case["jamcrc"])[::-1]


@pytest.mark.parametrize("name", ["pad-aligned", "pad-15"])
def test_padding_vectors(name: str) -> None:
    case = CRC_AND_PADDING[name]
    assert pad_m2(h(case["input"])) == h(case["padded"])
    assert unpad_m2(h(case["padded"])) == h(case["input"])


def test_changekey_crc_vector() -> None:
    case = next(c for c in COMMANDS if c["name"] == "changekey-other-key")
    assert jamcrc32_le(h(case["new_key"])) == h(case["crc32_le"])


# Property: method-2 padding always adds 1..16 bytes to a block boundary and unpads back.
@given(payloads)
def test_pad_unpad_round_trip(data: bytes) -> None:
    padded = pad_m2(data)
    assert len(padded) % 16 == 0 and 1 <= len(padded) - len(data) <= 16
    assert unpad_m2(padded) == data


# Property: a block without a 80 marker is never accepted as padded.
@given(st.binary(min_size=16, max_size=16).filter(lambda b: 0x80 not in b))
def test_unpad_rejects_missing_marker(block: bytes) -> None:
    with pytest.raises(ValueError):
        unpad_m2(block)


# --- session keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", AUTH, ids=ids(AUTH))
def test_session_keys(case: dict) -> None:
    key, rnd_a, rnd_b = h(case["key"]), h(case["rnd_a"]), h(case["rnd_b"])
    if "sv1" in case:
        assert sv1(rnd_a, rnd_b) == h(case["sv1"])
        assert sv2(rnd_a, rnd_b) == h(case["sv2"])
    assert session_keys(key, rnd_a, rnd_b) == (
        h(case["ses_auth_enc_key"]),
        h(case["ses_auth_mac_key"]),
    )
    assert aes_cbc_decrypt(key, bytes(16), h(case["card_reply_1"])) == rnd_b
    assert aes_cbc_decrypt(key, bytes(16), h(case["card_reply_2"])) == h(
        case["card_reply_2_plain"]
    )


# --- per-command IV, ciphertext and MACs ----------------------------------------------------------


def session_for(case: dict) -> SecureSession:
    return SecureSession(
        ses_enc_key=h(case.get("ses_auth_enc_key", "00" * 16)),
        ses_mac_key=h(case["ses_auth_mac_key"]),
        ti=h(case["ti"]),
        cmd_ctr=case["cmd_ctr"],
    )


def command_plain_data(case: dict) -> bytes:
    if case["name"] == "changekey-other-key":
        xored = bytes(a ^ b for a, b in zip(h(case["new_key"]), h(case["old_key"]), strict=True))
        return xored + bytes([case["key_version"]]) + h(case["crc32_le"])
    return h(case.get("plain_data", ""))


@pytest.mark.parametrize("case", COMMANDS, ids=ids(COMMANDS))
def test_command_protection(case: dict) -> None:
    session = session_for(case)
    ins, header = int(case["ins"], 16), h(case["header"])
    plain = command_plain_data(case)
    if "plain_data" in case:
        assert plain == h(case["plain_data"])
    data = plain
    if case["comm_mode"] == "full" and plain:
        iv = command_iv(session.ses_enc_key, session.ti, session.cmd_ctr)
        assert iv == h(case["iv"])
        data = session.encrypt_command_data(plain)
        if "encrypted" in case:
            assert data == h(case["encrypted"])
    mac_input = bytes([ins]) + session.cmd_ctr.to_bytes(2, "little") + session.ti + header + data
    assert cmac(session.ses_mac_key, mac_input) == h(case["cmac"])
    assert session.command_mac(ins, header, data) == h(case["mact"])
    mode = CommMode.FULL if case["comm_mode"] == "full" else CommMode.MAC
    wrapped = session.wrap_command(ins, header, plain, mode)
    assert wrapped == header + data + h(case["mact"])


RESPONSE_CASES = [c for c in COMMANDS if "response_mact" in c]


@pytest.mark.parametrize("case", RESPONSE_CASES, ids=ids(RESPONSE_CASES))
def test_response_mac_verifies(case: dict) -> None:
    session = session_for(case)
    body = h(case.get("response_data", "") or case.get("response_encrypted", ""))
    assert session.response_mac(0x00, body) == h(case["response_mact"])


def test_getcarduid_response_decrypts() -> None:
    case = next(c for c in COMMANDS if c["name"] == "getcarduid-full")
    session = session_for(case)
    iv = response_iv(session.ses_enc_key, session.ti, session.cmd_ctr + 1)
    assert iv == h(case["response_iv"])
    raw = aes_cbc_decrypt(session.ses_enc_key, iv, h(case["response_encrypted"]))
    assert raw == h(case["response_plain_padded"])
    reply = h(case["response_encrypted"]) + h(case["response_mact"])
    assert session.unwrap_response(0x00, reply, CommMode.FULL) == h(case["uid"])
    assert session.cmd_ctr == case["cmd_ctr"] + 1


# --- properties of secure messaging ---------------------------------------------------------------


def card_response(session: SecureSession, data: bytes, mode: CommMode) -> bytes:
    """What a card sends back: written here from the data sheet, independently of session.py."""
    ctr = (session.cmd_ctr + 1).to_bytes(2, "little")
    if mode is CommMode.FULL and data:
        iv = response_iv(session.ses_enc_key, session.ti, session.cmd_ctr + 1)
        data = aes_cbc_encrypt(session.ses_enc_key, iv, pad_m2(data))
    return data + mact(session.ses_mac_key, b"\x00" + ctr + session.ti + data)


# Property: what the host encrypts, a card holding the session keys decrypts, and vice versa.
@given(keys, keys, tis, counters, payloads)
def test_full_mode_round_trip(enc: bytes, mac: bytes, ti: bytes, ctr: int, data: bytes) -> None:
    session = SecureSession(enc, mac, ti, ctr)
    ciphertext = session.wrap_command(0x8D, b"\x02", data, CommMode.FULL)[1:-8]
    iv = command_iv(enc, ti, ctr)
    assert unpad_m2(aes_cbc_decrypt(enc, iv, ciphertext) if data else pad_m2(b"")) == data
    reply = card_response(session, data, CommMode.FULL)
    assert session.unwrap_response(0x00, reply, CommMode.FULL) == data
    assert session.cmd_ctr == ctr + 1


# Property: flipping any single bit of a response MAC (or its data) is detected.
@given(keys, keys, tis, counters, st.binary(max_size=40), st.data())
def test_any_bit_flip_raises(
    enc: bytes, mac: bytes, ti: bytes, ctr: int, data: bytes, draw: st.DataObject
) -> None:
    mode = draw.draw(st.sampled_from([CommMode.MAC, CommMode.FULL]))
    session = SecureSession(enc, mac, ti, ctr)
    reply = bytearray(card_response(session, data, mode))
    bit = draw.draw(st.integers(min_value=0, max_value=len(reply) * 8 - 1))
    reply[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ResponseMacError):
        session.unwrap_response(0x00, bytes(reply), mode)
    assert session.cmd_ctr == ctr + 1


# Property: the session's repr never shows its keys.
@given(keys, keys)
def test_session_repr_hides_keys(enc: bytes, mac: bytes) -> None:
    text = repr(SecureSession(enc, mac, b"\x01\x02\x03\x04", 0))
    assert enc.hex() not in text.lower() and repr(enc) not in text and repr(mac) not in text
