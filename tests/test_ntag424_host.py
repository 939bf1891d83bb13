"""The host side of every AN12196 exchange, byte for byte, over a scripted transport.

The scripted transport checks each APDU the host sends against the vector and answers the card's
listed reply, so these tests pin the exact wire format, the counter handling and MAC checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.nfc import NfcpyTransport
from hw.ntag424 import (
    AccessRights,
    AuthenticationDelay,
    AuthenticationError,
    AuthenticationProofError,
    CardRemovedError,
    CardStatusError,
    CommMode,
    FileNotFound,
    FileSettings,
    FileSettingsUpdate,
    NotAuthenticatedError,
    Ntag424,
    Ntag424Error,
    PermissionDenied,
    ResponseMacError,
    SdmAccessRights,
    SdmConfig,
    SecureSession,
    TransportError,
    boltcard_file_settings,
    factory_ndef_file_settings,
    parse_uri_message,
    sun_ndef_file,
    sun_url_template,
)
from hw.ntag424 import apdu as apdus
from hw.ntag424.auth import answer_challenge

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "ntag424-an12196.json").read_text()
)
AUTH = {case["name"]: case for case in VECTORS["authenticate"]}
COMMANDS = {case["name"]: case for case in VECTORS["commands"]}
h = bytes.fromhex
OK = h("9100")


class ScriptedTransport:
    """Plays the card from a script of (expected command APDU, reply) pairs."""

    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = list(script)

    def transceive(self, apdu: bytes) -> bytes:
        assert self.script, f"unexpected extra APDU {apdu.hex().upper()}"
        expected, reply = self.script.pop(0)
        assert apdu.hex().upper() == expected.hex().upper()
        return reply

    def done(self) -> bool:
        return not self.script


def tag_with_session(case: dict, script: list[tuple[bytes, bytes]], key_no: int = 0) -> Ntag424:
    tag = Ntag424(ScriptedTransport(script))
    tag.session = SecureSession(
        ses_enc_key=h(case.get("ses_auth_enc_key", "00" * 16)),
        ses_mac_key=h(case["ses_auth_mac_key"]),
        ti=h(case["ti"]),
        cmd_ctr=case["cmd_ctr"],
    )
    tag.authenticated_key_no = key_no
    return tag


def finished(tag: Ntag424) -> bool:
    assert isinstance(tag.transport, ScriptedTransport)
    return tag.transport.done()


# --- authentication -------------------------------------------------------------------------------


def test_ev2_first_key0() -> None:
    case = AUTH["ev2first-key0"]
    tag = Ntag424(ScriptedTransport([
        (h(case["first_apdu"]), h(case["card_reply_1"] + case["card_sw_1"])),
        (h(case["second_apdu"]), h(case["card_reply_2"] + case["card_sw_2"])),
    ]))
    session = tag.authenticate_ev2_first(0, h(case["key"]), rnd_a=h(case["rnd_a"]))
    assert finished(tag)
    assert session.ti == h(case["ti"]) and session.cmd_ctr == 0
    assert session.ses_enc_key == h(case["ses_auth_enc_key"])
    assert session.ses_mac_key == h(case["ses_auth_mac_key"])
    assert tag.session is session and tag.authenticated_key_no == 0


def test_ev2_first_key3() -> None:
    case = AUTH["ev2first-key3"]
    tag = Ntag424(ScriptedTransport([
        (h("9071000002030000"), h(case["card_reply_1"]) + h("91AF")),
        (h("90AF000020" + case["second_apdu_data"] + "00"), h(case["card_reply_2"]) + OK),
    ]))
    session = tag.authenticate_ev2_first(3, h(case["key"]), rnd_a=h(case["rnd_a"]))
    assert session.ti == h(case["ti"])
    assert (session.ses_enc_key, session.ses_mac_key) == (
        h(case["ses_auth_enc_key"]), h(case["ses_auth_mac_key"]))
    assert tag.authenticated_key_no == 3


def test_ev2_non_first_keeps_ti_and_counter() -> None:
    case = AUTH["ev2nonfirst-key0"]
    script = [
        (h(case["first_apdu"]), h(case["card_reply_1"]) + h("91AF")),
        (h("90AF000020" + case["second_apdu_data"] + "00"), h(case["card_reply_2"]) + OK),
    ]
    tag = Ntag424(ScriptedTransport(script))
    tag.session = SecureSession(bytes(16), bytes(16), h("7614281A"), cmd_ctr=1)
    tag.authenticated_key_no = 3
    session = tag.authenticate_ev2_non_first(0, h(case["key"]), rnd_a=h(case["rnd_a"]))
    assert finished(tag)
    assert session.ti == h("7614281A") and session.cmd_ctr == 1
    assert session.ses_enc_key == h(case["ses_auth_enc_key"])
    assert session.ses_mac_key == h(case["ses_auth_mac_key"])
    assert tag.authenticated_key_no == 0


def test_ev2_first_rejects_wrong_rnd_a_prime() -> None:
    case = AUTH["ev2first-key0"]
    other_rnd_a = bytes(16)  # the card's answer proves the listed RndA, not this one
    tag = Ntag424(ScriptedTransport([
        (h(case["first_apdu"]), h(case["card_reply_1"] + case["card_sw_1"])),
        (_second_apdu(case, other_rnd_a), h(case["card_reply_2"] + case["card_sw_2"])),
    ]))
    with pytest.raises(AuthenticationProofError):
        tag.authenticate_ev2_first(0, h(case["key"]), rnd_a=other_rnd_a)
    assert tag.session is None


def _second_apdu(case: dict, rnd_a: bytes) -> bytes:
    challenge = answer_challenge(h(case["key"]), h(case["card_reply_1"]), rnd_a)
    return apdus.native(0xAF, challenge.answer)


@pytest.mark.parametrize(
    ("sw", "error", "words"),
    [
        ("91AE", AuthenticationError, "refused the key"),
        ("91AD", AuthenticationDelay, "stop, wait"),
        ("919D", PermissionDenied, "not authenticated"),
    ],
)
def test_authentication_refusals_are_typed(sw: str, error: type, words: str) -> None:
    tag = Ntag424(ScriptedTransport([(h("9071000002000000"), h(sw))]))
    with pytest.raises(error, match=words) as info:
        tag.authenticate_ev2_first(0, bytes(16), rnd_a=bytes(16))
    assert info.value.status == int(sw, 16)
    assert tag.session is None


def test_wrong_key_second_step_is_authentication_error() -> None:
    case = AUTH["ev2first-key0"]
    tag = Ntag424(ScriptedTransport([
        (h(case["first_apdu"]), h(case["card_reply_1"] + case["card_sw_1"])),
        (h(case["second_apdu"]), h("91AE")),
    ]))
    with pytest.raises(AuthenticationError):
        tag.authenticate_ev2_first(0, h(case["key"]), rnd_a=h(case["rnd_a"]))


# --- secured commands -----------------------------------------------------------------------------


def reply_for(case: dict, data: str = "") -> bytes:
    return h(data + case.get("response_mact", "")) + OK


def test_write_data_ndef_full() -> None:
    case = COMMANDS["writedata-ndef-full"]
    tag = tag_with_session(case, [(h(case["apdu"]), reply_for(case))])
    tag.write_data(2, 0, h(case["plain_data"]), CommMode.FULL)
    assert finished(tag) and tag.session is not None and tag.session.cmd_ctr == 1


def test_change_file_settings_sdm() -> None:
    case = COMMANDS["changefilesettings-sdm"]
    settings = FileSettingsUpdate(
        CommMode.PLAIN,
        AccessRights(read=0xE, write=0, read_write=0, change=0),
        SdmConfig(
            options=0xC1,
            access_rights=SdmAccessRights(meta_read=2, file_read=1, ctr_ret=1),
            picc_data_offset=0x20,
            mac_input_offset=0x43,
            mac_offset=0x43,
        ),
    )
    assert settings.to_bytes() == h(case["plain_data"])
    tag = tag_with_session(case, [(h(case["apdu"]), reply_for(case))])
    tag.change_file_settings(2, settings)
    assert finished(tag) and tag.session.cmd_ctr == 2


def test_write_data_proprietary_full() -> None:
    case = COMMANDS["writedata-proprietary-full"]
    apdu = h("908D00001F" + case["header"] + case["encrypted"] + case["mact"] + "00")
    tag = tag_with_session(case, [(apdu, reply_for(case))], key_no=3)
    tag.write_data(3, 0, h(case["plain_data"]), CommMode.FULL)
    assert finished(tag)


def test_change_other_key() -> None:
    case = COMMANDS["changekey-other-key"]
    tag = tag_with_session(case, [(h(case["apdu"]), reply_for(case))], key_no=0)
    tag.change_key(2, h(case["new_key"]), case["key_version"], old_key=h(case["old_key"]))
    assert finished(tag) and tag.session.cmd_ctr == 3


def test_change_authenticated_key_ends_session() -> None:
    case = COMMANDS["changekey-auth-key"]
    tag = tag_with_session(case, [(h(case["apdu"]), OK)], key_no=0)
    tag.change_key(0, h(case["new_key"]), case["key_version"])
    assert finished(tag)
    assert tag.session is None and tag.authenticated_key_no is None


def test_change_other_key_needs_old_key() -> None:
    case = COMMANDS["changekey-other-key"]
    tag = tag_with_session(case, [], key_no=0)
    with pytest.raises(ValueError, match="old_key"):
        tag.change_key(2, h(case["new_key"]), 1)


def test_get_file_settings_mac() -> None:
    case = COMMANDS["getfilesettings-mac"]
    tag = tag_with_session(case, [(h(case["apdu"]), reply_for(case, case["response_data"]))])
    settings = tag.get_file_settings(2)
    parsed = case["parsed"]
    assert settings.file_type == parsed["file_type"]
    assert settings.file_option == int(parsed["file_option"], 16)
    assert settings.access_rights.to_bytes() == h(parsed["access_rights"])
    assert settings.file_size == parsed["file_size"]
    assert settings.sdm is not None and settings.sdm_enabled
    assert settings.sdm.options == int(parsed["sdm_options"], 16)
    assert settings.sdm.access_rights.to_bytes() == h(parsed["sdm_access_rights"])
    assert settings.sdm.picc_data_offset == parsed["picc_data_offset"]
    assert settings.sdm.mac_input_offset == parsed["sdm_mac_input_offset"]
    assert settings.sdm.enc_offset == parsed["sdm_enc_offset"]
    assert settings.sdm.enc_length == parsed["sdm_enc_length"]
    assert settings.sdm.mac_offset == parsed["sdm_mac_offset"]
    assert settings.comm_mode is CommMode.PLAIN


def test_set_configuration_random_uid() -> None:
    case = COMMANDS["setconfiguration-random-uid"]
    tag = tag_with_session(case, [(h(case["apdu"]), reply_for(case))])
    tag.set_configuration_random_uid()
    assert finished(tag)


def test_get_card_uid_full() -> None:
    case = COMMANDS["getcarduid-full"]
    tag = tag_with_session(
        case, [(h(case["apdu"]), reply_for(case, case["response_encrypted"]))]
    )
    assert tag.get_card_uid() == h(case["uid"])
    assert tag.session.cmd_ctr == 1


@pytest.mark.parametrize("name", ["getcarduid-full", "getfilesettings-mac",
                                  "setconfiguration-random-uid"])
def test_tampered_response_mac_raises_and_drops_session(name: str) -> None:
    case = COMMANDS[name]
    data = case.get("response_encrypted", case.get("response_data", ""))
    reply = bytearray(reply_for(case, data))
    reply[-3] ^= 0x01  # last byte of the MAC
    tag = tag_with_session(case, [(h(case["apdu"]), bytes(reply))])
    call = {
        "getcarduid-full": tag.get_card_uid,
        "getfilesettings-mac": lambda: tag.get_file_settings(2),
        "setconfiguration-random-uid": tag.set_configuration_random_uid,
    }[name]
    with pytest.raises(ResponseMacError):
        call()
    assert tag.session is None


def test_error_status_drops_session() -> None:
    case = COMMANDS["getcarduid-full"]
    tag = tag_with_session(case, [(h(case["apdu"]), h("911E"))])
    with pytest.raises(Ntag424Error, match="integrity|MAC"):
        tag.get_card_uid()
    assert tag.session is None


def test_secured_command_without_session_is_refused() -> None:
    tag = Ntag424(ScriptedTransport([]))
    with pytest.raises(NotAuthenticatedError):
        tag.get_card_uid()
    with pytest.raises(NotAuthenticatedError):
        tag.change_file_settings(2, factory_ndef_file_settings())


# --- plain commands, multi-frame, ISO ------------------------------------------------------------


def test_get_version_follows_additional_frames() -> None:
    hw_info, sw_info = h("04040230001105"), h("04040230001105")
    production = h("04958CAA5C5E80CF39B6B1E00A21")
    tag = Ntag424(ScriptedTransport([
        (h("9060000000"), hw_info + h("91AF")),
        (h("90AF000000"), sw_info + h("91AF")),
        (h("90AF000000"), production + OK),
    ]))
    version = tag.get_version()
    assert version.hardware == hw_info and version.software == sw_info
    assert version.uid == h("04958CAA5C5E80") and version.vendor_id == 0x04
    assert "04958CAA5C5E80".lower() not in repr(version).lower()


def test_get_key_version_plain() -> None:
    tag = Ntag424(ScriptedTransport([(h("906400000101" + "00"), h("00") + OK)]))
    assert tag.get_key_version(1) == 0


def test_get_key_version_mac_when_authenticated() -> None:
    session = SecureSession(bytes(16), bytes(range(16)), h("01020304"), 5)
    mac = session.command_mac(0x64, b"\x01", b"")
    answer = b"\x01" + session.response_mac(0x00, b"\x01")
    tag = Ntag424(ScriptedTransport([(apdus.native(0x64, b"\x01" + mac), answer + OK)]))
    tag.session, tag.authenticated_key_no = session, 0
    assert tag.get_key_version(1) == 1
    assert session.cmd_ctr == 6


def test_read_data_plain_counts_in_session() -> None:
    session = SecureSession(bytes(16), bytes(16), h("01020304"), 0)
    tag = Ntag424(ScriptedTransport([(h("90AD0000070200000004000000"), h("CAFEBABE") + OK)]))
    tag.session = session
    assert tag.read_data(2, 0, 4) == h("CAFEBABE")
    assert session.cmd_ctr == 1


def test_select_and_read_ndef_url() -> None:
    layout = sun_ndef_file("lnurlw://pos.example/ln")
    message = layout.content[2:]
    tag = Ntag424(ScriptedTransport([
        (h("00A4040C07D276000085010100"), h("9000")),
        (h("00A4000C02E104"), h("9000")),
        (h("00B0000002"), layout.content[:2] + h("9000")),
        (h("00B00002") + bytes([len(message)]), message + h("9000")),
    ]))
    assert tag.read_ndef_url() == layout.url
    assert finished(tag)


def test_iso_update_binary_chunks() -> None:
    data = bytes(range(200))
    tag = Ntag424(ScriptedTransport([
        (h("00D6000080") + data[:128], h("9000")),
        (h("00D6008048") + data[128:], h("9000")),
    ]))
    tag.iso_update_binary(0, data)
    assert finished(tag)


def test_iso_errors_are_typed() -> None:
    tag = Ntag424(ScriptedTransport([(h("00A4000C02E105"), h("6A82"))]))
    with pytest.raises(FileNotFound, match="not found"):
        tag.select_file(0xE105)


def test_unknown_status_is_generic() -> None:
    error = Ntag424Error.from_status(0x6F00)
    assert isinstance(error, CardStatusError) and "6F00" in str(error)


def test_every_named_status_has_its_class() -> None:
    expected = {0x91AE: "AuthenticationError", 0x917E: "LengthError", 0x911E: "IntegrityError",
                0x91AD: "AuthenticationDelay", 0x919D: "PermissionDenied",
                0x919E: "ParameterError", 0x9140: "NoSuchKey", 0x91CA: "CommandAborted",
                0x91BE: "BoundaryError", 0x6982: "SecurityStatusNotSatisfied",
                0x6A82: "FileNotFound"}
    for sw, name in expected.items():
        error = Ntag424Error.from_status(sw, "ChangeKey 1")
        assert type(error).__name__ == name
        assert str(error).startswith("ChangeKey 1: ") and f"{sw:04X}" in str(error)


# --- apdu framing ---------------------------------------------------------------------------------


def test_apdu_framing() -> None:
    assert apdus.native(0x60) == h("9060000000")
    assert apdus.native(0x64, b"\x01") == h("906400000101" "00")
    assert apdus.iso_select_application(h("D2760000850101")) == h("00A4040C07D276000085010100")
    assert apdus.iso_read_binary(0, 256) == h("00B0000000")
    with pytest.raises(ValueError):
        apdus.native(0x8D, bytes(256))
    with pytest.raises(Ntag424Error):
        apdus.split_response(b"\x90")


# --- file settings --------------------------------------------------------------------------------


def test_boltcard_profile_bytes() -> None:
    settings = boltcard_file_settings(picc_data_offset=0x20, sdm_mac_offset=0x49)
    assert settings.to_bytes() == h("4000E0C1FF12" "200000" "490000" "490000")
    assert factory_ndef_file_settings().to_bytes() == h("00E0EE")


nibbles = st.integers(min_value=0, max_value=15)
offsets = st.integers(min_value=0, max_value=(1 << 24) - 1)


@st.composite
def sdm_configs(draw: st.DrawFn) -> SdmConfig:
    options = draw(st.integers(min_value=0, max_value=255))
    rights = SdmAccessRights(draw(nibbles), draw(nibbles), draw(nibbles), draw(nibbles))
    names = SdmConfig.required_fields(options, rights)
    return SdmConfig(options, rights, **{name: draw(offsets) for name in names})


# Property: GetFileSettings parses back exactly what ChangeFileSettings would write.
@given(sdm_configs(), st.sampled_from(list(CommMode)), nibbles, nibbles, nibbles, nibbles,
       offsets)
def test_file_settings_round_trip(sdm: SdmConfig, mode: CommMode, r: int, w: int, rw: int,
                                  c: int, size: int) -> None:
    update = FileSettingsUpdate(mode, AccessRights(r, w, rw, c), sdm)
    data = update.to_bytes()
    raw = b"\x00" + data[:3] + size.to_bytes(3, "little") + data[3:]
    parsed = FileSettings.from_bytes(raw)
    assert parsed.sdm == sdm and parsed.comm_mode is mode and parsed.file_size == size
    assert parsed.access_rights == update.access_rights


def test_sdm_config_refuses_inconsistent_offsets() -> None:
    with pytest.raises(ValueError, match="needs"):
        SdmConfig(0xC1, SdmAccessRights(meta_read=1, file_read=2), picc_data_offset=1)
    with pytest.raises(ValueError, match="must not have"):
        SdmConfig(0xC1, SdmAccessRights(meta_read=1, file_read=0xF), picc_data_offset=1,
                  mac_offset=3)


# --- NDEF layout ----------------------------------------------------------------------------------


def test_sun_ndef_layout_offsets() -> None:
    layout = sun_ndef_file("lnurlw://card.example.com/ln")
    content = layout.content
    assert content[2:7] == bytes([0xD1, 0x01, len(layout.url) + 1, 0x55, 0x00])
    assert int.from_bytes(content[:2], "big") == len(content) - 2
    assert content[layout.picc_data_offset - 2 : layout.picc_data_offset] == b"p="
    assert content[layout.picc_data_offset : layout.picc_data_offset + 32] == b"0" * 32
    assert content[layout.sdm_mac_offset - 2 : layout.sdm_mac_offset] == b"c="
    assert content[layout.sdm_mac_offset : layout.sdm_mac_offset + 16] == b"0" * 16
    assert layout.sdm_mac_offset + 16 == len(content)
    assert parse_uri_message(content[2:]) == layout.url


def test_sun_url_keeps_issuer_query_and_names() -> None:
    url = sun_url_template("LNURLW://h.example/boltcards/api/v1/scan/x?a=1", "picc_data", "cmac")
    assert url == "LNURLW://h.example/boltcards/api/v1/scan/x?a=1&picc_data=" + "0" * 32 + (
        "&cmac=" + "0" * 16)
    layout = sun_ndef_file("lnurlw://h.example/x?p=1&q=2", "e", "c")
    assert layout.content[layout.picc_data_offset - 2 : layout.picc_data_offset] == b"e="
    with pytest.raises(ValueError):
        sun_url_template("lnurlw://h.example/ln?p=abc")
    with pytest.raises(ValueError, match="too long"):
        sun_ndef_file("lnurlw://h.example/" + "x" * 300)


# Property: for any path, the offsets point at the placeholders in the file.
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-_", max_size=150))
def test_sun_offsets_point_at_placeholders(path: str) -> None:
    layout = sun_ndef_file(f"lnurlw://h.example/{path}")
    c = layout.content
    assert c[layout.picc_data_offset - 2 : layout.picc_data_offset + 32] == b"p=" + b"0" * 32
    assert c[layout.sdm_mac_offset - 2 : layout.sdm_mac_offset + 16] == b"c=" + b"0" * 16


# --- nfcpy adapter --------------------------------------------------------------------------------


class NfcpyTagStandIn:
    """Has nfcpy's Type4ATag.transceive signature and raises nfcpy's own exceptions."""

    def __init__(self, outcome: object) -> None:
        self.outcome = outcome
        self.sent: list[bytes] = []

    def transceive(self, data: bytearray, timeout: float | None = None) -> bytearray | None:
        self.sent.append(bytes(data))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome  # type: ignore[return-value]


def test_nfcpy_transport_passes_bytes_and_maps_errors() -> None:
    import nfc.clf
    import nfc.tag
    from nfc.tag.tt4 import Type4TagCommandError

    ok = NfcpyTagStandIn(bytearray(h("9000")))
    assert NfcpyTransport(ok).transceive(h("00A4040C07D276000085010100")) == h("9000")
    assert ok.sent == [h("00A4040C07D276000085010100")]
    for outcome, error in [
        (Type4TagCommandError(nfc.tag.TIMEOUT_ERROR), CardRemovedError),
        (Type4TagCommandError(nfc.tag.PROTOCOL_ERROR), TransportError),
        (nfc.clf.BrokenLinkError("gone"), CardRemovedError),
        (nfc.clf.TransmissionError("crc"), TransportError),
        (None, CardRemovedError),
    ]:
        with pytest.raises(error):
            NfcpyTransport(NfcpyTagStandIn(outcome)).transceive(h("9060000000"))
