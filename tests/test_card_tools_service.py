"""The card tools service (terminal.services.card_tools) without a screen: Info, Program and Wipe
on a simulated NTAG 424 DNA, results as data, failures classified by what to do next."""

from __future__ import annotations

from pathlib import Path

from hw.ntag424 import Ntag424
from hw.sim.card import SimulatedNtag424
from terminal.adapters.keyexchange import IssuerKeySource
from terminal.adapters.provisioning_journal import ProvisioningJournal
from terminal.protocols.boltcard import DeterministicIssuer, Keyring
from terminal.services.card_tools import (
    CardInfo,
    CardJob,
    CardTool,
    CardToolFailure,
    CardWork,
    FailureKind,
)

UID = bytes.fromhex("04A1B2C3D4E5F6")
ISSUER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
OTHER_KEY = bytes.fromhex("ffeeddccbbaa99887766554433221100")
URL = "lnurlw://cards.example/ln"


def _job(tool: CardTool, journal: Path, issuer_key: bytes = ISSUER_KEY) -> CardJob:
    keyring = Keyring([DeterministicIssuer("acme", ISSUER_KEY)])
    return CardJob(tool, keys=lambda: (IssuerKeySource(issuer_key, url=URL), "p", "c"),
                   journal=lambda: ProvisioningJournal(journal), card_url=URL,
                   verify=keyring.verify_tap)


def _tag(card: SimulatedNtag424) -> Ntag424:
    card.deactivate()  # off the reader and back on: a new tap
    card.power_on()
    return Ntag424(card)


def test_info_program_info_wipe_as_data(tmp_path: Path) -> None:
    card = SimulatedNtag424.factory(UID)
    journal = tmp_path / "journal.jsonl"
    steps: list[str] = []
    blank = _job(CardTool.INFO, journal).run(_tag(card), steps.append)
    assert isinstance(blank, CardInfo) and blank.factory
    done = _job(CardTool.PROGRAM, journal).run(_tag(card), steps.append)
    assert isinstance(done, CardWork) and done.tool is CardTool.PROGRAM
    assert done.host == "cards.example" and done.card_id and not done.resumed
    info = _job(CardTool.INFO, journal).run(_tag(card), steps.append)
    assert isinstance(info, CardInfo) and not info.factory and not info.partial
    assert info.versions == (1,) * 5 and info.sun_on and info.verified_issuer == "acme"
    assert info.verified_card_id == done.card_id
    wiped = _job(CardTool.WIPE, journal).run(_tag(card), steps.append)
    assert isinstance(wiped, CardWork) and wiped.tool is CardTool.WIPE
    assert card.state.keys[0].version == 0 and steps  # every step was reported as it happened
    assert UID.hex() not in repr((blank, done, info, wiped)).lower()


def test_failures_say_what_to_do_and_never_touch_the_lock_out(tmp_path: Path) -> None:
    card = SimulatedNtag424.factory(UID)
    journal = tmp_path / "journal.jsonl"
    assert isinstance(_job(CardTool.PROGRAM, journal).run(_tag(card), lambda _s: None), CardWork)
    again = _job(CardTool.PROGRAM, journal).run(_tag(card), lambda _s: None)
    assert isinstance(again, CardToolFailure) and again.kind is FailureKind.NOT_BLANK
    wrong = _job(CardTool.WIPE, journal, OTHER_KEY).run(_tag(card), lambda _s: None)
    assert isinstance(wrong, CardToolFailure) and wrong.kind is FailureKind.WRONG_KEYS
    assert card.state.consecutive_auth_failures == 0
    no_journal = CardJob(CardTool.WIPE, keys=lambda: (IssuerKeySource(ISSUER_KEY), "p", "c"))
    missing = no_journal.run(_tag(card), lambda _s: None)
    assert isinstance(missing, CardToolFailure) and missing.kind is FailureKind.JOURNAL
