"""The simulated NTAG 424 DNA against NXP AN12196, from the card's side of the air gap.

Every authenticate case: with RndB (and TI) fixed, the card answers the listed APDUs with exactly
the listed cryptograms. Every command case: with the listed session installed, the card accepts the
listed APDU, answers with the listed response MAC and changes its state accordingly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hw.ntag424 import crypto
from hw.sim import SimulatedNtag424
from hw.sim.constants import CommMode
from hw.sim.file_settings import AccessRights, FileSettings

VECTORS = json.loads((Path(__file__).parent / "vectors" / "ntag424-an12196.json").read_text())
AUTH = {case["name"]: case for case in VECTORS["authenticate"]}
COMMANDS = {case["name"]: case for case in VECTORS["commands"]}
SELECT_APP = bytes.fromhex("00A4040007D276000085010100")
OK = bytes.fromhex("9100")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class ScriptedRng:
    """Hands out the listed random values in order, checking each requested size."""

    def __init__(self, *values: bytes):
        self.values = list(values)

    def __call__(self, n: int) -> bytes:
        value = self.values.pop(0)
        assert len(value) == n, f"card asked for {n} random bytes, script has {len(value)}"
        return value


def native(ins: str, data: bytes) -> bytes:
    return h("90" + ins + "0000") + bytes([len(data)]) + data + b"\x00"


def test_every_vector_case_is_covered():
    """Each vector in the file has a test below (a new case must not go unnoticed)."""
    assert set(AUTH) == {"ev2first-key0", "ev2first-key3", "ev2nonfirst-key0"}
    assert set(COMMANDS) == set(COMMAND_SETUP)


@pytest.mark.parametrize("name", ["ev2first-key0", "ev2first-key3"])
def test_authenticate_ev2_first(name):
    """The card's two answers are byte-exact and it ends with the AN12196 session keys."""
    case = AUTH[name]
    card = SimulatedNtag424.factory(rng=ScriptedRng(h(case["rnd_b"]), h(case["ti"])))
    assert card.transceive(SELECT_APP) == h("9000")
    # Part 1 is KeyNo ‖ LenCap 00; the key 3 case lists only the data of part 2.
    if "first_apdu" in case:
        first = h(case["first_apdu"])
    else:
        first = native("71", bytes([case["key_no"], 0]))
    assert card.transceive(first) == h(case["card_reply_1"]) + h("91AF")
    second = (
        h(case["second_apdu"])
        if "second_apdu" in case
        else native("AF", h(case["second_apdu_data"]))
    )
    assert card.transceive(second) == h(case["card_reply_2"]) + OK
    session = card.session
    assert session is not None
    assert (session.ti, session.cmd_ctr, session.key_no) == (h(case["ti"]), 0, case["key_no"])
    assert session.enc_key == h(case["ses_auth_enc_key"])
    assert session.mac_key == h(case["ses_auth_mac_key"])


def test_authenticate_ev2_non_first():
    """NonFirst answers E(K, RndA') and keeps TI and CmdCtr of the running transaction."""
    case = AUTH["ev2nonfirst-key0"]
    key3 = AUTH["ev2first-key3"]
    card = SimulatedNtag424.factory(rng=ScriptedRng(h(case["rnd_b"])))
    card.install_session(
        3, h(key3["ti"]), h(key3["ses_auth_enc_key"]), h(key3["ses_auth_mac_key"]), cmd_ctr=2
    )
    assert card.transceive(h(case["first_apdu"])) == h(case["card_reply_1"]) + h("91AF")
    assert (
        card.transceive(native("AF", h(case["second_apdu_data"]))) == h(case["card_reply_2"]) + OK
    )
    session = card.session
    assert session is not None
    assert (session.key_no, session.ti, session.cmd_ctr) == (0, h(key3["ti"]), 2)
    assert (session.enc_key, session.mac_key) == (
        h(case["ses_auth_enc_key"]),
        h(case["ses_auth_mac_key"]),
    )


# -- command vectors ---------------------------------------------------------------------------


def ndef_full_key0(card: SimulatedNtag424) -> None:
    # AN12196 writes the NDEF file in CommMode.Full with key 0: give the file that setting.
    access = AccessRights(read=0xE, write=0x0, read_write=0x0, change=0x0)
    card.state.files[2].settings = FileSettings(CommMode.FULL, access)


def sdm_settings_of_table_8(card: SimulatedNtag424) -> None:
    response = h(COMMANDS["getfilesettings-mac"]["response_data"])
    # GetFileSettings = FileType ‖ FileOption ‖ AccessRights ‖ FileSize ‖ SDM…; the settings
    # codec takes the ChangeFileSettings layout (no FileType, no FileSize).
    card.state.files[2].settings = FileSettings.decode(response[1:4] + response[7:])


def no_setup(card: SimulatedNtag424) -> None:
    pass


COMMAND_SETUP: dict[str, tuple[int, Callable[[SimulatedNtag424], None]]] = {
    # name: (key the session was opened with, file preparation)
    "writedata-ndef-full": (0, ndef_full_key0),
    "changefilesettings-sdm": (0, no_setup),
    "writedata-proprietary-full": (3, no_setup),
    "changekey-other-key": (0, no_setup),
    "changekey-auth-key": (0, no_setup),
    "getfilesettings-mac": (0, sdm_settings_of_table_8),
    "setconfiguration-random-uid": (0, no_setup),
    "getcarduid-full": (0, no_setup),
}


def command_apdu(case: dict) -> bytes:
    if "apdu" in case:
        return h(case["apdu"])
    return native(case["ins"], h(case["header"]) + h(case["encrypted"]) + h(case["mact"]))


def card_for(case: dict) -> SimulatedNtag424:
    uid = h(case["uid"]) if "uid" in case else None
    card = SimulatedNtag424.factory(uid)
    key_no, setup = COMMAND_SETUP[case["name"]]
    setup(card)
    card.install_session(
        key_no,
        h(case["ti"]),
        h(case.get("ses_auth_enc_key", "00" * 16)),
        h(case["ses_auth_mac_key"]),
        cmd_ctr=case["cmd_ctr"],
    )
    return card


@pytest.mark.parametrize("name", sorted(set(COMMAND_SETUP) - {"changekey-auth-key"}))
def test_command_reply_mac(name):
    """The card accepts the AN12196 APDU and its response MAC is the listed MACt."""
    case = COMMANDS[name]
    card = card_for(case)
    reply = card.transceive(command_apdu(case))
    assert reply[-2:] == OK, reply.hex()
    assert reply[-10:-2] == h(case["response_mact"])
    assert card.session is not None and card.session.cmd_ctr == case["cmd_ctr"] + 1
    body = reply[:-10]
    if "response_data" in case:
        assert body == h(case["response_data"])
    elif "response_encrypted" in case:
        assert body == h(case["response_encrypted"])
    else:
        assert body == b""


def test_writedata_ndef_full_writes_the_file():
    case = COMMANDS["writedata-ndef-full"]
    card = card_for(case)
    card.transceive(command_apdu(case))
    assert bytes(card.state.files[2].content[:128]) == h(case["plain_data"])


def test_writedata_proprietary_writes_the_file():
    case = COMMANDS["writedata-proprietary-full"]
    card = card_for(case)
    card.transceive(command_apdu(case))
    assert bytes(card.state.files[3].content[:10]) == h(case["plain_data"])
    assert bytes(card.state.files[3].content[10:]) == bytes(118)


def test_changefilesettings_enables_sdm_as_listed():
    case = COMMANDS["changefilesettings-sdm"]
    card = card_for(case)
    card.state.files[2].sdm_read_ctr = 7
    card.transceive(command_apdu(case))
    file = card.state.files[2]
    assert file.settings.encode() == h(case["plain_data"])
    sdm = file.settings.sdm
    assert sdm is not None
    assert (sdm.meta_read, sdm.file_read, sdm.ctr_ret) == (2, 1, 1)
    assert (sdm.picc_data_offset, sdm.mac_input_offset, sdm.mac_offset) == (0x20, 0x43, 0x43)
    assert file.sdm_read_ctr == 0  # enabling SDM resets SDMReadCtr


def test_changekey_other_key_changes_key_and_version():
    case = COMMANDS["changekey-other-key"]
    card = card_for(case)
    card.transceive(command_apdu(case))
    assert card.state.keys[2].value == h(case["new_key"])
    assert card.state.keys[2].version == case["key_version"]
    assert card.state.keys[0].value == bytes(16)


def test_changekey_auth_key_answers_without_mac_and_ends_session():
    case = COMMANDS["changekey-auth-key"]
    card = card_for(case)
    assert card.transceive(command_apdu(case)) == OK
    assert card.session is None
    assert card.state.keys[0].value == h(case["new_key"])
    assert card.state.keys[0].version == case["key_version"]


def test_setconfiguration_turns_on_random_uid():
    case = COMMANDS["setconfiguration-random-uid"]
    card = card_for(case)
    real_uid = card.uid
    card.transceive(command_apdu(case))
    assert card.state.random_uid
    card.deactivate()
    assert len(card.uid) == 4 and card.uid[0] == 0x08
    assert card.real_uid == real_uid


def test_getcarduid_response_decrypts_to_the_uid():
    case = COMMANDS["getcarduid-full"]
    card = card_for(case)
    reply = card.transceive(command_apdu(case))
    iv = crypto.response_iv(h(case["ses_auth_enc_key"]), h(case["ti"]), case["cmd_ctr"] + 1)
    assert iv == h(case["response_iv"])
    plain = crypto.aes_cbc_decrypt(h(case["ses_auth_enc_key"]), iv, reply[:16])
    assert plain == h(case["response_plain_padded"])
    assert crypto.unpad_m2(plain) == h(case["uid"])


def test_an12196_personalisation_then_the_published_sun_message():
    """Tables 18 and 19 in one session, then a read: the card mirrors AN12196's own SUN URL.

    With all keys zero, UID 04DE5F1EACC040, SDMReadCtr reaching 61 and the random padding of the
    published PICCData, the unauthenticated read must give exactly e=EF963F…1E88, c=94EED9…7086.
    """
    write, change = COMMANDS["writedata-ndef-full"], COMMANDS["changefilesettings-sdm"]
    card = SimulatedNtag424.factory(h("04DE5F1EACC040"), rng=ScriptedRng(h("DA5CF60941")))
    ndef_full_key0(card)
    card.install_session(
        0, h(write["ti"]), h(write["ses_auth_enc_key"]), h(write["ses_auth_mac_key"]), cmd_ctr=0
    )
    assert card.transceive(command_apdu(write))[-10:] == h(write["response_mact"]) + OK
    assert card.transceive(command_apdu(change))[-10:] == h(change["response_mact"]) + OK
    card.state.files[2].sdm_read_ctr = 0x3C  # the example's 61st read comes next
    card.deactivate()
    assert card.transceive(SELECT_APP) == h("9000")
    assert card.transceive(h("00A4000C02E104")) == h("9000")
    reply = card.transceive(h("00B0000000"))
    assert reply[-2:] == h("9000")
    nlen = int.from_bytes(reply[:2], "big")
    url = "https://" + reply[7 : 2 + nlen].decode()
    assert url == (
        "https://choose.url.com/ntag424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
    )
    assert card.state.files[2].sdm_read_ctr == 61
