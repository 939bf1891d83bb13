"""Host (hw.ntag424) against the simulated card (hw.sim): every command, program and wipe.

The host and the simulated card were written separately from the data sheet; these tests are where
they must agree. One test runs the whole programming routine beneath real nfcpy code.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import nfc
import nfc.clf
import nfc.tag
import pytest

from hw.nfc import NfcpyTransport
from hw.ntag424 import (
    AuthenticationError,
    CommMode,
    IntegrityError,
    Ntag424,
    SecureSession,
    boltcard_file_settings,
)
from hw.ntag424.constants import NDEF_FILE_ID
from hw.ntag424.crypto import aes_ecb_decrypt, sdm_mac
from hw.ntag424.ndef import EMPTY_NDEF_FILE, sun_ndef_file
from hw.sim import SimulatedNtag424
from hw.sim.nfcpy_device import SimReader, installed
from terminal.protocols.boltcard.provisioning import (
    BoltcardKeys,
    CardNotBlank,
    program_boltcard,
    wipe_boltcard,
)

UID = bytes.fromhex("04A1B2C3D4E5F6")
ZERO = bytes(16)
BASE_URL = "lnurlw://pos.example/ln"
KEYS = BoltcardKeys(*(bytes([0x10 + n]) * 16 for n in range(5)), version=1)


def verify_sun(url: str, keys: BoltcardKeys, p: str = "p", c: str = "c") -> tuple[bytes, int]:
    """Check p/c of a SUN URL with K1/K2 (independently of the terminal's boltcard module)."""
    query = parse_qs(urlsplit(url).query)
    picc = aes_ecb_decrypt(keys.k1, bytes.fromhex(query[p][0]))
    assert picc[0] == 0xC7, "p does not decrypt under K1"
    uid, ctr_le = picc[1:8], picc[8:11]
    assert sdm_mac(keys.k2, uid, ctr_le) == bytes.fromhex(query[c][0])
    return uid, int.from_bytes(ctr_le, "little")


@pytest.fixture
def card() -> SimulatedNtag424:
    return SimulatedNtag424.factory(UID)


@pytest.fixture
def tag(card: SimulatedNtag424) -> Ntag424:
    return Ntag424(card)


def key_versions(tag: Ntag424) -> list[int]:
    tag.select_ndef_application()
    return [tag.get_key_version(n) for n in range(5)]


# --- every command --------------------------------------------------------------------------------


def test_every_command_against_the_card(tag: Ntag424) -> None:
    tag.select_ndef_application()
    version = tag.get_version()
    assert version.vendor_id == 0x04 and version.uid == UID
    assert [tag.get_key_version(n) for n in range(5)] == [0] * 5
    factory = tag.get_file_settings(2)
    assert factory.access_rights.to_bytes() == bytes.fromhex("E0EE")
    assert factory.file_size == 256 and factory.sdm is None

    session = tag.authenticate_ev2_first(0, ZERO)
    assert session.cmd_ctr == 0
    assert tag.get_card_uid() == UID
    assert tag.get_key_version(1) == 0  # CommMode.MAC now
    assert tag.get_file_settings(2) == factory
    assert tag.get_version().uid == UID
    assert session.cmd_ctr == 4

    # File 03 is CommMode.Full, read with key 2 or 3, written with key 3.
    tag.authenticate_ev2_non_first(3, ZERO)
    assert tag.session is not None and tag.session.ti == session.ti
    assert tag.session.cmd_ctr == 4
    tag.write_data(3, 5, b"proprietary data", CommMode.FULL)
    assert tag.read_data(3, 5, 16, CommMode.FULL) == b"proprietary data"

    tag.authenticate_ev2_first(0, ZERO)
    layout = sun_ndef_file(BASE_URL)
    tag.write_data(2, 0, layout.content, CommMode.PLAIN)
    assert tag.read_data(2, 0, len(layout.content)) == layout.content
    settings = boltcard_file_settings(layout.picc_data_offset, layout.sdm_mac_offset)
    tag.change_file_settings(2, settings)
    readback = tag.get_file_settings(2)
    assert readback.sdm == settings.sdm and readback.access_rights == settings.access_rights

    new_key = bytes(range(16))
    tag.change_key(4, new_key, 7, old_key=ZERO)
    assert tag.get_key_version(4) == 7
    tag.change_key(0, new_key, 2)  # the authenticated key: the session ends
    assert tag.session is None
    tag.authenticate_ev2_first(0, new_key)
    assert tag.get_card_uid() == UID


def test_wrong_key_is_refused(tag: Ntag424) -> None:
    tag.select_ndef_application()
    with pytest.raises(AuthenticationError, match="refused the key"):
        tag.authenticate_ev2_first(0, bytes([1]) * 16)
    assert tag.session is None
    tag.authenticate_ev2_first(0, ZERO)  # the right key still works afterwards
    assert tag.get_card_uid() == UID


def test_card_rejects_forged_session(tag: Ntag424, card: SimulatedNtag424) -> None:
    tag.select_ndef_application()
    real = tag.authenticate_ev2_first(0, ZERO)
    tag.session = SecureSession(ZERO, ZERO, real.ti, real.cmd_ctr)  # wrong session keys
    with pytest.raises(IntegrityError):
        tag.get_card_uid()
    assert tag.session is None and card.session is None


def test_read_without_authentication_is_plain(tag: Ntag424) -> None:
    tag.select_ndef_application()
    tag.select_file(NDEF_FILE_ID)
    tag.iso_update_binary(0, sun_ndef_file(BASE_URL).content)
    assert tag.read_ndef_url() == sun_ndef_file(BASE_URL).url
    with pytest.raises(AuthenticationError):
        tag.read_data(3, 0, 4)  # file 03 needs key 2 or 3


# --- programming and wiping -----------------------------------------------------------------------


def test_program_blank_card_then_read(tag: Ntag424, card: SimulatedNtag424) -> None:
    steps: list[str] = []
    url = program_boltcard(tag, KEYS, BASE_URL, on_step=steps.append)
    assert url.startswith(BASE_URL + "?p=") and "&c=" in url
    assert verify_sun(url, KEYS) == (UID, 1)
    assert steps[-2:] == ["change key 0", "read back"]
    assert steps.index("change key 4") < steps.index("change key 0")
    # Every later read is a fresh SUN message with a higher counter.
    again = tag.read_ndef_url()
    assert again != url and verify_sun(again, KEYS) == (UID, 2)
    assert key_versions(tag) == [1] * 5
    with pytest.raises(AuthenticationError):
        tag.authenticate_ev2_first(0, ZERO)  # the factory key is gone
    assert [k.value for k in card.state.keys] == [KEYS.key(n) for n in range(5)]


def test_programmed_card_is_not_programmed_again(tag: Ntag424) -> None:
    program_boltcard(tag, KEYS, BASE_URL)
    other = BoltcardKeys(*(bytes([0x20 + n]) * 16 for n in range(5)), version=2)
    with pytest.raises(CardNotBlank):
        program_boltcard(tag, other, BASE_URL)
    verify_sun(tag.read_ndef_url(), KEYS)  # untouched


def test_program_with_issuer_names_and_random_uid(tag: Ntag424, card: SimulatedNtag424) -> None:
    base = "lnurlw://h.example/boltcards/api/v1/scan/abc?x=1"
    url = program_boltcard(tag, KEYS, base, random_uid=True, p_param="picc_data",
                           c_param="cmac")
    assert url.startswith(base + "&picc_data=")
    assert verify_sun(url, KEYS, "picc_data", "cmac") == (UID, 1)
    card.deactivate()
    assert card.uid != UID and len(card.uid) == 4  # the field now sees a random ID


def test_wipe_returns_card_to_factory(tag: Ntag424, card: SimulatedNtag424) -> None:
    program_boltcard(tag, KEYS, BASE_URL)
    steps: list[str] = []
    wipe_boltcard(tag, KEYS, on_step=steps.append)
    assert steps[-2:] == ["reset key 0", "clear URL"]
    assert key_versions(tag) == [0] * 5
    settings = tag.get_file_settings(2)
    assert settings.sdm is None and settings.access_rights.to_bytes() == bytes.fromhex("E0EE")
    tag.select_file(NDEF_FILE_ID)
    assert tag.iso_read_binary(0, len(EMPTY_NDEF_FILE)) == EMPTY_NDEF_FILE
    assert [k.value for k in card.state.keys] == [ZERO] * 5
    # A wiped card is blank again and can take new keys.
    fresh = BoltcardKeys(*(bytes([0x30 + n]) * 16 for n in range(5)), version=2)
    assert verify_sun(program_boltcard(tag, fresh, BASE_URL), fresh)[0] == UID


def test_wipe_with_wrong_keys_changes_nothing(tag: Ntag424, card: SimulatedNtag424) -> None:
    program_boltcard(tag, KEYS, BASE_URL)
    wrong = BoltcardKeys(*(bytes([0x40 + n]) * 16 for n in range(5)))
    with pytest.raises(AuthenticationError):
        wipe_boltcard(tag, wrong)
    assert key_versions(tag) == [1] * 5
    verify_sun(tag.read_ndef_url(), KEYS)


# --- beneath real nfcpy ---------------------------------------------------------------------------


def test_program_and_wipe_through_nfcpy(card: SimulatedNtag424) -> None:
    """Real ContactlessFrontend, activation, ISO-DEP chaining and Type4ATag.transceive."""
    reader = SimReader()
    with installed(reader, "sim:ntag424-roundtrip"):
        clf = nfc.ContactlessFrontend("sim:ntag424-roundtrip")
        try:
            reader.place(card)
            target = clf.sense(nfc.clf.RemoteTarget("106A"))
            nfc_tag = nfc.tag.activate(clf, target)
            assert isinstance(nfc_tag, nfc.tag.tt4.Type4ATag)
            tag = Ntag424(NfcpyTransport(nfc_tag))
            url = program_boltcard(tag, KEYS, BASE_URL)
            assert verify_sun(url, KEYS) == (UID, 1)
            wipe_boltcard(tag, KEYS)
            assert key_versions(tag) == [0] * 5
        finally:
            clf.close()
