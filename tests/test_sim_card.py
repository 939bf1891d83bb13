"""The simulated NTAG 424 DNA as a card: files, access rights, secure messaging, SUN, persistence.

The host side here is a deliberately small one written from the data sheet with
`hw.ntag424.crypto`, so the card is checked against the arithmetic, not against itself.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass

import ndef
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.ntag424 import crypto
from hw.sim import CardStateError, SimulatedNtag424
from hw.sim.constants import FACTORY_CC, VERSION_HW, VERSION_SW

SELECT_APP = bytes.fromhex("00A4040C07D276000085010100")
OK, ISO_OK, MORE = bytes.fromhex("9100"), bytes.fromhex("9000"), bytes.fromhex("91AF")
ZERO_KEY = bytes(16)

keys16 = st.binary(min_size=16, max_size=16)
uids = st.binary(min_size=6, max_size=6).map(lambda tail: b"\x04" + tail)


def native(ins: int, data: bytes = b"") -> bytes:
    lc = bytes([len(data)]) + data if data else b""
    return bytes([0x90, ins, 0, 0]) + lc + b"\x00"


def select_file(fid: str) -> bytes:
    return bytes.fromhex("00A4000C02" + fid)


def read_binary(offset: int, le: int) -> bytes:
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le])


def update_binary(offset: int, data: bytes) -> bytes:
    return bytes([0x00, 0xD6, offset >> 8, offset & 0xFF, len(data)]) + data


@dataclass
class MiniHost:
    """PCD side of EV2 secure messaging, straight from NT4H2421Gx §9.1."""

    card: SimulatedNtag424
    ti: bytes = b""
    ctr: int = 0
    enc: bytes = b""
    mac: bytes = b""

    def send(self, apdu: bytes) -> tuple[bytes, bytes]:
        reply = self.card.transceive(apdu)
        return reply[:-2], reply[-2:]

    def authenticate(self, key_no: int, key: bytes, rnd_a: bytes = b"A" * 16) -> bytes:
        challenge, sw = self.send(native(0x71, bytes([key_no, 0])))
        if sw != MORE:
            return sw
        rnd_b = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, challenge)
        token = crypto.aes_cbc_encrypt(key, crypto.ZERO_IV, rnd_a + crypto.rotl1(rnd_b))
        answer, sw = self.send(native(0xAF, token))
        if sw != OK:
            return sw
        plain = crypto.aes_cbc_decrypt(key, crypto.ZERO_IV, answer)
        assert plain[4:20] == crypto.rotl1(rnd_a)
        self.ti, self.ctr = plain[:4], 0
        self.enc, self.mac = crypto.session_keys(key, rnd_a, rnd_b)
        return sw

    def command(
        self, ins: int, header: bytes = b"", data: bytes = b"", mode: str = "full"
    ) -> tuple[bytes, bytes]:
        if mode == "full" and data:
            iv = crypto.command_iv(self.enc, self.ti, self.ctr)
            data = crypto.aes_cbc_encrypt(self.enc, iv, crypto.pad_m2(data))
        payload = header + data
        if mode != "plain":
            ctr = self.ctr.to_bytes(2, "little")
            payload += crypto.mact(self.mac, bytes([ins]) + ctr + self.ti + payload)
        body, sw = self.send(native(ins, payload))
        if sw != OK:
            return body, sw
        self.ctr += 1
        if mode == "plain" or (ins == 0xC4 and not body):
            return body, sw
        body, mac = body[:-8], body[-8:]
        ctr = self.ctr.to_bytes(2, "little")
        assert mac == crypto.mact(self.mac, b"\x00" + ctr + self.ti + body), "response MAC"
        if mode == "full" and body:
            iv = crypto.response_iv(self.enc, self.ti, self.ctr)
            body = crypto.unpad_m2(crypto.aes_cbc_decrypt(self.enc, iv, body))
        return body, sw

    def change_key(self, key_no: int, new: bytes, old: bytes, version: int) -> bytes:
        if key_no == 0:
            data = new + bytes([version])
        else:
            xored = bytes(a ^ b for a, b in zip(new, old, strict=True))
            data = xored + bytes([version]) + crypto.jamcrc32_le(new)
        return self.command(0xC4, bytes([key_no]), data)[1]


# -- a Boltcard ---------------------------------------------------------------------------------

URL = "lnurlw://pos.example/ln?p=" + "0" * 32 + "&c=" + "0" * 16


def boltcard_ndef(url: str = URL) -> tuple[bytes, int, int]:
    """NLEN ‖ one short URI record (identifier 00); offsets of the p and c placeholders."""
    payload = b"\x00" + url.encode()
    record = bytes([0xD1, 0x01, len(payload), 0x55]) + payload
    text_at = 2 + 4 + 1
    return (
        len(record).to_bytes(2, "big") + record,
        text_at + url.index("p=") + 2,
        text_at + url.index("c=") + 2,
    )


def boltcard_file_settings(picc_at: int, mac_at: int) -> bytes:
    u24 = lambda v: v.to_bytes(3, "little")  # noqa: E731
    return bytes.fromhex("4000E0C1FF12") + u24(picc_at) + u24(mac_at) + u24(mac_at)


@dataclass
class Keys:
    k0: bytes
    k1: bytes
    k2: bytes
    k3: bytes
    k4: bytes

    def all(self) -> list[bytes]:
        return [self.k0, self.k1, self.k2, self.k3, self.k4]


def program_boltcard(card: SimulatedNtag424, keys: Keys) -> MiniHost:
    """Spec §4 steps 1-5 over APDUs: NDEF, SDM file settings, keys 1-4, key 0 last."""
    host = MiniHost(card)
    assert card.transceive(SELECT_APP) == ISO_OK
    assert host.send(native(0x64, b"\x01")) == (b"\x00", OK)  # key 1 version 00: blank
    message, picc_at, mac_at = boltcard_ndef()
    assert card.transceive(select_file("E104")) == ISO_OK
    assert card.transceive(update_binary(0, message)) == ISO_OK
    assert host.authenticate(0, ZERO_KEY) == OK
    settings = boltcard_file_settings(picc_at, mac_at)
    assert host.command(0x5F, b"\x02", settings)[1] == OK
    for key_no in (1, 2, 3, 4):
        assert host.change_key(key_no, keys.all()[key_no], ZERO_KEY, 1) == OK
    assert host.change_key(0, keys.k0, ZERO_KEY, 1) == OK
    assert card.session is None
    return host


def tap(card: SimulatedNtag424) -> str:
    """What a phone does: select, read NLEN, read the message; returns the URI."""
    card.deactivate()
    card.power_on()
    assert card.transceive(SELECT_APP) == ISO_OK
    assert card.transceive(select_file("E103")) == ISO_OK
    assert card.transceive(read_binary(0, 15))[-2:] == ISO_OK
    assert card.transceive(select_file("E104")) == ISO_OK
    nlen = card.transceive(read_binary(0, 2))
    assert nlen[-2:] == ISO_OK
    size = int.from_bytes(nlen[:2], "big")
    body = b""
    while len(body) < size:  # chunked like a reader with a small MLe
        chunk = card.transceive(read_binary(2 + len(body), min(40, size - len(body))))
        assert chunk[-2:] == ISO_OK
        body += chunk[:-2]
    (record,) = list(ndef.message_decoder(body))
    return record.iri


def sun_params(url: str) -> tuple[bytes, bytes]:
    query = url.split("?", 1)[1]
    params = dict(part.split("=", 1) for part in query.split("&"))
    return bytes.fromhex(params["p"]), bytes.fromhex(params["c"])


def verify_tap(url: str, keys: Keys) -> tuple[bytes, int]:
    """Decrypt p with K1, check c with K2; return (UID, counter)."""
    p, c = sun_params(url)
    picc = crypto.aes_ecb_decrypt(keys.k1, p)
    assert picc[0] == 0xC7
    uid, ctr_le = picc[1:8], picc[8:11]
    assert c == crypto.sdm_mac(keys.k2, uid, ctr_le)
    return uid, int.from_bytes(ctr_le, "little")


@pytest.fixture
def keys() -> Keys:
    return Keys(*(bytes([n]) * 16 for n in range(0x10, 0x60, 0x10)))


# -- factory card ---------------------------------------------------------------------------------


def test_factory_card_files_and_settings():
    """A blank card reads like the data sheet's: CC, empty NDEF, file settings, key versions."""
    card = SimulatedNtag424.factory(bytes.fromhex("04112233445566"))
    host = MiniHost(card)
    assert card.transceive(SELECT_APP) == ISO_OK
    assert card.transceive(select_file("E103")) == ISO_OK
    assert card.transceive(read_binary(0, 0)) == FACTORY_CC + ISO_OK
    assert card.transceive(select_file("E104")) == ISO_OK
    assert card.transceive(read_binary(0, 0)) == bytes(256) + ISO_OK
    expected = {1: "000000E0200000", 2: "0000E0EE000100", 3: "00033023800000"}
    for file_no, settings in expected.items():
        assert host.send(native(0xF5, bytes([file_no]))) == (bytes.fromhex(settings), OK)
    for key_no in range(5):
        assert host.send(native(0x64, bytes([key_no]))) == (b"\x00", OK)


def test_get_version_three_frames():
    card = SimulatedNtag424.factory(bytes.fromhex("04112233445566"))
    assert card.transceive(native(0x60)) == VERSION_HW + MORE
    assert card.transceive(native(0xAF)) == VERSION_SW + MORE
    last = card.transceive(native(0xAF))
    assert last[-2:] == OK and last[:7] == bytes.fromhex("04112233445566") and len(last) == 16


def test_get_version_authenticated_carries_a_mac_over_all_frames():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    ctr = host.ctr.to_bytes(2, "little")
    frame1, sw = host.send(native(0x60, crypto.mact(host.mac, b"\x60" + ctr + host.ti)))
    assert sw == MORE
    frame2, _ = host.send(native(0xAF))
    frame3, sw = host.send(native(0xAF))
    assert sw == OK
    mac_input = b"\x00" + (host.ctr + 1).to_bytes(2, "little") + host.ti
    assert frame3[-8:] == crypto.mact(host.mac, mac_input + frame1 + frame2 + frame3[:-8])


def test_factory_cards_differ_and_keys_stay_out_of_repr():
    one, two = SimulatedNtag424.factory(), SimulatedNtag424.factory()
    assert one.uid != two.uid and len(one.uid) == 7 and one.uid[0] == 0x04
    one.state.keys[1].value = b"\xab" * 16
    assert "ab" * 16 not in repr(one.state).lower()
    assert one.uid.hex() not in repr(one.state).lower()


# -- the Boltcard life cycle ------------------------------------------------------------------


def test_programmed_boltcard_tap_verifies_and_counter_advances(keys):
    card = SimulatedNtag424.factory()
    program_boltcard(card, keys)
    first = tap(card)
    assert first.startswith("lnurlw://pos.example/ln?p=")
    uid, ctr = verify_tap(first, keys)
    assert (uid, ctr) == (card.real_uid, 1)
    second = tap(card)
    assert verify_tap(second, keys) == (card.real_uid, 2)
    assert sun_params(first)[0] != sun_params(second)[0]
    assert card.transceive(native(0x64, b"\x01")) == b"\x01" + OK  # "already programmed"


def test_reads_in_one_sequence_reuse_mirror_and_counter(keys):
    """Chunked reads see one consistent image; any other command starts a new sequence."""
    card = SimulatedNtag424.factory()
    program_boltcard(card, keys)
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    whole = card.transceive(read_binary(0, 0))[:-2]
    pieces = b"".join(card.transceive(read_binary(o, 50))[:-2] for o in range(0, 256, 50))
    assert pieces == whole
    assert card.state.files[2].sdm_read_ctr == 1
    card.transceive(select_file("E104"))
    again = card.transceive(read_binary(0, 0))[:-2]
    assert again != whole and card.state.files[2].sdm_read_ctr == 2
    # ReadData after ISOReadBinary is a new read type: a new counter value.
    host = MiniHost(card)
    data, sw = host.send(native(0xAD, bytes.fromhex("02000000000000")))
    assert sw == OK and card.state.files[2].sdm_read_ctr == 3
    assert data != again


def test_authenticated_read_returns_static_placeholders(keys):
    card = SimulatedNtag424.factory()
    program_boltcard(card, keys)
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    assert host.authenticate(0, keys.k0) == OK
    data, sw = host.command(0xAD, bytes.fromhex("02000000000000"), mode="plain")
    assert sw == OK
    assert data == bytes(card.state.files[2].content)
    assert b"p=" + b"0" * 32 in data
    assert card.state.files[2].sdm_read_ctr == 0  # not incremented when authenticated


def test_wipe_restores_a_blank_card(keys):
    """Spec §4 wiping: settings back to 00 E0EE, keys 1-4 then 0 back to zero."""
    card = SimulatedNtag424.factory()
    program_boltcard(card, keys)
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    assert host.authenticate(0, keys.k0) == OK
    assert host.command(0x5F, b"\x02", bytes.fromhex("00E0EE"))[1] == OK
    for key_no in (1, 2, 3, 4):
        assert host.change_key(key_no, ZERO_KEY, keys.all()[key_no], 0) == OK
    assert host.change_key(0, ZERO_KEY, keys.k0, 0) == OK
    assert all(k.value == ZERO_KEY and k.version == 0 for k in card.state.keys)
    assert card.state.files[2].settings.sdm is None


def test_sdm_read_counter_limit_refuses_unauthenticated_reads():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    message, picc_at, mac_at = boltcard_ndef()
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    card.transceive(update_binary(0, message))
    host.authenticate(0, ZERO_KEY)
    settings = bytearray(boltcard_file_settings(picc_at, mac_at))
    settings[3] |= 0x20  # SDMReadCtrLimit enabled
    settings += (2).to_bytes(3, "little")
    assert host.command(0x5F, b"\x02", bytes(settings))[1] == OK
    assert tap(card) and tap(card)
    card.deactivate()
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    assert card.transceive(read_binary(0, 2)) == bytes.fromhex("6982")


@pytest.mark.parametrize(
    ("picc_at", "mac_at", "why"),
    [
        (240, 100, "PICCData beyond the file"),
        (30, 250, "SDMMAC beyond the file"),
        (60, 70, "SDMMAC overlaps PICCData"),
    ],
)
def test_change_file_settings_rejects_bad_offsets(picc_at, mac_at, why):
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    _, sw = host.command(0x5F, b"\x02", boltcard_file_settings(picc_at, mac_at))
    assert sw == bytes.fromhex("919E"), why
    assert card.session is None


def test_change_file_settings_checks_length_and_file():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    assert host.command(0x5F, b"\x02", bytes.fromhex("4000E0C1FF12200000"))[1] == bytes.fromhex(
        "917E"
    )
    host.authenticate(0, ZERO_KEY)
    assert host.command(0x5F, b"\x03", boltcard_file_settings(32, 80))[1] == bytes.fromhex("919D")
    host.authenticate(0, ZERO_KEY)
    assert host.command(0x5F, b"\x09", bytes.fromhex("00E0EE"))[1] == bytes.fromhex("91F0")


# -- authentication and secure messaging errors -------------------------------------------------


def test_wrong_key_then_authentication_delay_then_recovery():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    wrong = b"\x01" * 16
    for _ in range(SimulatedNtag424.AUTH_DELAY_THRESHOLD):
        assert host.authenticate(0, wrong) == bytes.fromhex("91AE")
    assert card.state.keys[0].tot_fail_ctr == SimulatedNtag424.AUTH_DELAY_THRESHOLD
    assert host.authenticate(0, ZERO_KEY) == bytes.fromhex("91AD")
    assert host.authenticate(0, ZERO_KEY) == OK  # the delay is spent; the right key works
    assert card.state.consecutive_auth_failures == 0
    assert card.state.keys[0].tot_fail_ctr == 0


def test_delay_grows_with_each_further_failure():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    wrong = b"\x01" * 16
    for _ in range(SimulatedNtag424.AUTH_DELAY_THRESHOLD):
        host.authenticate(1, wrong)
    assert card.state.auth_delay_frames == 1
    assert host.authenticate(1, wrong) == bytes.fromhex("91AD")
    assert host.authenticate(1, wrong) == bytes.fromhex("91AE")
    assert card.state.auth_delay_frames == 2


def test_bad_command_mac_is_integrity_error_and_ends_session():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    assert card.transceive(native(0x51, b"\x00" * 8)) == bytes.fromhex("911E")
    assert card.session is None
    assert card.transceive(native(0x51)) == bytes.fromhex("91AE")


def test_bad_padding_and_bad_crc_are_integrity_errors():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    bad_crc = b"\x11" * 16 + b"\x01" + b"\x00" * 4
    assert host.command(0xC4, b"\x01", bad_crc)[1] == bytes.fromhex("911E")
    assert card.state.keys[1].value == ZERO_KEY
    host.authenticate(0, ZERO_KEY)
    # A cryptogram without 80 00… padding.
    iv = crypto.command_iv(host.enc, host.ti, host.ctr)
    unpadded = crypto.aes_cbc_encrypt(host.enc, iv, b"\x00" * 32)
    assert host.command(0xC4, b"\x01", unpadded, mode="mac")[1] == bytes.fromhex("911E")


def test_command_counter_counts_plain_commands_too():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    assert host.command(0xAD, bytes.fromhex("02000000100000"), mode="plain")[1] == OK
    assert card.session is not None and card.session.cmd_ctr == 1
    uid, sw = host.command(0x51)
    assert sw == OK and uid == card.real_uid and card.session.cmd_ctr == 2


def test_permissions_and_missing_things():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    assert host.send(native(0xAD, bytes.fromhex("02000000000000")))[1] == bytes.fromhex("919D")
    card.transceive(SELECT_APP)
    assert host.send(native(0xAD, bytes.fromhex("03000000000000")))[1] == bytes.fromhex("91AE")
    assert host.send(native(0x8D, bytes.fromhex("01000000010000") + b"x"))[1] == bytes.fromhex(
        "91AE"
    )
    assert host.send(native(0xF5, b"\x07"))[1] == bytes.fromhex("91F0")
    assert host.send(native(0x64, b"\x05"))[1] == bytes.fromhex("9140")
    assert host.send(native(0x71, b"\x07\x00"))[1] == bytes.fromhex("9140")
    assert host.send(native(0xC4, b"\x01" + bytes(29)))[1] == bytes.fromhex("91AE")
    assert host.send(native(0x51))[1] == bytes.fromhex("91AE")
    assert host.send(native(0x77, b"\x00"))[1] == bytes.fromhex("919D")
    assert host.send(native(0x12))[1] == bytes.fromhex("911C")
    assert card.transceive(select_file("E105")) == ISO_OK
    assert card.transceive(read_binary(0, 0)) == bytes.fromhex("6982")
    assert card.transceive(update_binary(0, b"x")) == bytes.fromhex("6982")
    assert card.transceive(select_file("E106")) == bytes.fromhex("6A82")
    assert card.transceive(bytes.fromhex("00A4040007D2760000850102")) == bytes.fromhex("6A82")
    assert card.transceive(select_file("E103")) == ISO_OK
    assert card.transceive(update_binary(0, b"x")) == bytes.fromhex("6982")  # CC write key 0
    assert card.transceive(bytes.fromhex("80CA000000")) == bytes.fromhex("6E00")


def test_iso_file_access_is_refused_while_authenticated():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    host.authenticate(0, ZERO_KEY)
    assert card.transceive(read_binary(0, 2)) == bytes.fromhex("6982")


def test_interrupted_authentication_is_aborted():
    card = SimulatedNtag424.factory()
    card.transceive(SELECT_APP)
    assert card.transceive(native(0x71, b"\x00\x00"))[-2:] == MORE
    assert card.transceive(native(0x64, b"\x00")) == bytes.fromhex("91CA")
    assert card.transceive(native(0xAF, bytes(32))) == bytes.fromhex("911C")


def test_long_read_in_mac_mode_comes_in_two_frames():
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    assert host.command(0x5F, b"\x02", bytes.fromhex("0100E0"))[1] == OK  # MAC mode, RW key 0
    ctr = host.ctr.to_bytes(2, "little")
    header = bytes.fromhex("02000000000000")
    mac = crypto.mact(host.mac, b"\xad" + ctr + host.ti + header)
    first, sw = host.send(native(0xAD, header + mac))
    assert (len(first), sw) == (256, MORE)
    rest, sw = host.send(native(0xAF))
    assert (len(rest), sw) == (8, OK)
    resp_ctr = (host.ctr + 1).to_bytes(2, "little")
    assert rest == crypto.mact(host.mac, b"\x00" + resp_ctr + host.ti + first)


def test_random_uid_per_activation_and_real_uid_in_sun(keys):
    card = SimulatedNtag424.factory()
    host = program_boltcard(card, keys)
    card.transceive(SELECT_APP)
    host.authenticate(0, keys.k0)
    assert host.command(0x5C, b"\x00", b"\x02")[1] == OK
    card.deactivate()
    seen = set()
    for _ in range(3):
        assert len(card.uid) == 4 and card.uid[0] == 0x08 and card.sens_res == b"\x04\x03"
        seen.add(card.uid)
        assert verify_tap(tap(card), keys)[0] == card.real_uid
    assert len(seen) == 3
    card.transceive(native(0x60))
    card.transceive(native(0xAF))
    assert card.transceive(native(0xAF))[:7] == bytes(7)  # GetVersion hides the UID


# -- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("90", "917E"),
        ("906400", "917E"),
        ("9064000001", "917E"),  # Lc 1 but no data: read as Le... then no KeyNo
        ("90640000020100", "917E"),  # Lc 2, one data byte + Le
        ("9064000001", "917E"),
        ("00B0", "6700"),
        ("00A4040007D2760000", "6700"),
    ],
)
def test_short_apdus(apdu, sw):
    card = SimulatedNtag424.factory()
    card.transceive(SELECT_APP)
    assert card.transceive(bytes.fromhex(apdu)) == bytes.fromhex(sw)


@given(st.binary(max_size=300))
def test_any_bytes_get_a_status_word(apdu):
    """Whatever arrives, the card answers with a status word and never raises."""
    card = SimulatedNtag424.factory(bytes.fromhex("04010203040506"))
    card.transceive(SELECT_APP)
    reply = card.transceive(apdu)
    assert len(reply) >= 2 and reply[-2] in (0x90, 0x91, 0x67, 0x69, 0x6A, 0x6D, 0x6E)


# -- property tests with random keys and UIDs ----------------------------------------------------


@given(uid=uids, k=st.tuples(keys16, keys16, keys16, keys16, keys16))
def test_any_keys_and_uid_program_and_verify(uid, k):
    card = SimulatedNtag424.factory(uid)
    chosen = Keys(*k)
    program_boltcard(card, chosen)
    assert verify_tap(tap(card), chosen) == (uid, 1)
    assert [key.value for key in card.state.keys] == chosen.all()


@given(key=keys16, wrong=keys16, key_no=st.integers(0, 4))
def test_wrong_key_is_authentication_error(key, wrong, key_no):
    if key == wrong:
        return
    card = SimulatedNtag424.factory()
    card.state.keys[key_no].value = key
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    assert host.authenticate(key_no, wrong) == bytes.fromhex("91AE")
    assert card.session is None
    assert host.authenticate(key_no, key) == OK


@given(flip=st.integers(0, 7), bit=st.integers(0, 7))
def test_any_corrupted_mac_is_rejected(flip, bit):
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    ctr = host.ctr.to_bytes(2, "little")
    mac = bytearray(crypto.mact(host.mac, b"\x64" + ctr + host.ti + b"\x01"))
    mac[flip] ^= 1 << bit
    assert card.transceive(native(0x64, b"\x01" + bytes(mac))) == bytes.fromhex("911E")


# -- persistence -------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, keys):
    card = SimulatedNtag424.factory()
    program_boltcard(card, keys)
    tap(card)
    path = tmp_path / "card.json"
    card.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["keys"][1]["key"] == keys.k1.hex().upper() and doc["keys"][1]["version"] == 1
    again = SimulatedNtag424.load(path)
    assert again.real_uid == card.real_uid
    assert verify_tap(tap(again), keys) == (card.real_uid, 2)  # the counter survived
    assert again.state.files[2].settings == card.state.files[2].settings


def test_autosave_survives_a_restart(tmp_path):
    path = tmp_path / "demo.json"
    SimulatedNtag424.factory().save(path)
    card = SimulatedNtag424.load(path)
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    card.transceive(update_binary(0, b"\x00\x03\xd0\x00\x00"))
    restarted = SimulatedNtag424.load(path)
    assert bytes(restarted.state.files[2].content[:5]) == b"\x00\x03\xd0\x00\x00"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_authentications_persist(tmp_path):
    path = tmp_path / "card.json"
    SimulatedNtag424.factory().save(path)
    card = SimulatedNtag424.load(path)
    card.transceive(SELECT_APP)
    MiniHost(card).authenticate(0, b"\x01" * 16)
    assert SimulatedNtag424.load(path).state.consecutive_auth_failures == 1


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": "something else"}', None],
)
def test_damaged_state_files_are_named(tmp_path, content):
    path = tmp_path / "card.json"
    if content is None:
        SimulatedNtag424.factory().save(path)
        doc = json.loads(path.read_text())
        doc["keys"][0]["key"] = "zz"
        content = json.dumps(doc)
    path.write_text(content)
    with pytest.raises(CardStateError) as info:
        SimulatedNtag424.load(path)
    assert "zz" not in str(info.value)


def test_missing_state_file(tmp_path):
    with pytest.raises(CardStateError, match="cannot read"):
        SimulatedNtag424.load(tmp_path / "absent.json")


def test_plain_mirror_encrypted_file_data_and_mac_over_input():
    """SDMMetaRead Eh (plain UID and counter), SDMENCFileData and a MAC over a real input range."""
    card = SimulatedNtag424.factory(bytes.fromhex("04A1B2C3D4E5F6"))
    host = MiniHost(card)
    text = b"uid=" + b"U" * 14 + b"&ctr=" + b"C" * 6 + b"&enc=" + b"secret-16-bytes!" + b"E" * 48
    text += b"&c=" + b"M" * 16
    uid_at, ctr_at, enc_at = 4, 4 + 14 + 5, 4 + 14 + 5 + 6 + 5
    mac_at = len(text) - 16
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    card.transceive(update_binary(0, text))
    host.authenticate(0, ZERO_KEY)
    u24 = lambda v: v.to_bytes(3, "little")  # noqa: E731
    settings = bytes.fromhex("4000E0D1FFE2") + u24(uid_at) + u24(ctr_at) + u24(0)
    settings += u24(enc_at) + u24(64) + u24(mac_at)
    assert host.command(0x5F, b"\x02", settings)[1] == OK
    card.state.keys[2].value = key2 = b"\x22" * 16
    card.deactivate()
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    image = card.transceive(read_binary(0, len(text)))[:-2]
    uid, ctr_le = card.real_uid, (1).to_bytes(3, "little")
    assert image[uid_at : uid_at + 14] == uid.hex().upper().encode()
    assert image[ctr_at : ctr_at + 6] == b"000001"
    enc_key = crypto.sdm_session_enc_key(key2, uid, ctr_le)
    iv = crypto.aes_ecb_encrypt(enc_key, ctr_le + bytes(13))
    encrypted = bytes.fromhex(image[enc_at : enc_at + 64].decode())
    assert crypto.aes_cbc_decrypt(enc_key, iv, encrypted) == b"secret-16-bytes!" + b"E" * 16
    mac = crypto.mact(crypto.sdm_session_mac_key(key2, uid, ctr_le), image[:mac_at])
    assert image[mac_at:] == mac.hex().upper().encode()


def test_wipe_with_sdm_kept_but_nothing_mirrored():
    """The spec's alternative wipe settings 40 E0EE 01 FFFF are accepted and mirror nothing."""
    card = SimulatedNtag424.factory()
    host = MiniHost(card)
    card.transceive(SELECT_APP)
    host.authenticate(0, ZERO_KEY)
    assert host.command(0x5F, b"\x02", bytes.fromhex("40E0EE01FFFF"))[1] == OK
    assert tap_raw(card) == bytes(card.state.files[2].content)


def tap_raw(card: SimulatedNtag424) -> bytes:
    card.deactivate()
    card.transceive(SELECT_APP)
    card.transceive(select_file("E104"))
    return card.transceive(read_binary(0, 0))[:-2]
