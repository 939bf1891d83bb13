"""Simulated cards as files: create, program, tap and inspect (demo, training and tests).

A programmed simulated card goes through the same `program_boltcard` routine, over the same
`hw.ntag424.Ntag424` command code, as a real card on a reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hw.ntag424.tag import Ntag424
from hw.sim.card import SimulatedNtag424
from terminal.protocols.boltcard import derive_card_keys
from terminal.protocols.boltcard.provisioning import BoltcardKeys, program_boltcard

NDEF_FILE_NO = 2


@dataclass(frozen=True)
class SimCardInfo:
    uid: str
    counter: int
    key_versions: list[int]

    def to_json(self) -> dict[str, object]:
        return {"uid": self.uid, "counter": self.counter, "key_versions": self.key_versions}


def new_uid() -> bytes:
    """A random 7-byte NXP-style UID (manufacturer byte 04)."""
    return b"\x04" + os.urandom(6)


def deterministic_keys(issuer_key: bytes, uid: bytes, version: int) -> BoltcardKeys:
    keys = derive_card_keys(issuer_key, uid, version)
    return BoltcardKeys(keys.k0, keys.k1, keys.k2, keys.k3, keys.k4, version=version)


def create_blank(path: Path, uid: bytes | None = None) -> SimulatedNtag424:
    card = SimulatedNtag424.factory(uid if uid is not None else new_uid())
    card.save(path)
    return card


def create_programmed(
    path: Path, url: str, keys: BoltcardKeys, uid: bytes | None = None
) -> tuple[SimulatedNtag424, str]:
    """A factory card programmed as a Boltcard through the real command sequence; saved at path.

    Returns the card and the URL read back once after programming (counter 1).
    """
    card = SimulatedNtag424.factory(uid if uid is not None else new_uid())
    card.power_on()
    url_read = program_boltcard(Ntag424(card), keys, url)
    card.deactivate()
    card.save(path)
    return card, url_read


def tap(path: Path) -> str:
    """One unauthenticated read, as a phone or reader would do; the counter advance is saved."""
    card = SimulatedNtag424.load(path)
    card.power_on()
    try:
        return Ntag424(card).read_ndef_url()
    finally:
        card.deactivate()
        card.save(path)


def info(path: Path) -> SimCardInfo:
    card = SimulatedNtag424.load(path, autosave=False)
    state = card.state
    return SimCardInfo(
        uid=card.real_uid.hex(),
        counter=state.files[NDEF_FILE_NO].sdm_read_ctr,
        key_versions=[k.version for k in state.keys],
    )
