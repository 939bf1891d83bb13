"""Programming and wiping a Boltcard: the one routine every front end (CLI, UI, tests) uses.

Order per the Boltcard spec §4: check the card is blank, write the SUN URL while writes are still
free, authenticate with the factory key 0, switch on SDM, change keys 1–4 and key 0 last (changing
the authenticated key ends the session), then read the URL once. Verifying that read's `p`/`c`
against the new K1/K2 is the caller's job (`terminal` boltcard module).
Crash safety (persisting progress between key changes) is not handled here yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hw.ntag424 import (
    EMPTY_NDEF_FILE,
    Ntag424,
    boltcard_file_settings,
    factory_ndef_file_settings,
    sun_ndef_file,
)
from hw.ntag424.constants import (
    APP_MASTER_KEY_NO,
    FACTORY_KEY,
    KEY_SIZE,
    NDEF_FILE_ID,
    NDEF_FILE_NO,
)

StepCallback = Callable[[str], None]

# Keys 1..4 change while authenticated with key 0; key 0 goes last because it ends the session.
OTHER_KEY_NOS = (1, 2, 3, 4)


class CardNotBlank(Exception):
    """The card already carries keys (key 1 has a non-zero version): wipe it first."""

    def __init__(self, key_version: int) -> None:
        self.key_version = key_version
        super().__init__(
            f"card is already programmed (key version {key_version}): wipe it with its "
            "issuer's keys before programming it again"
        )


@dataclass(frozen=True)
class BoltcardKeys:
    """K0..K4 of one card and the key version they carry. The repr never shows a key."""

    k0: bytes = field(repr=False)
    k1: bytes = field(repr=False)
    k2: bytes = field(repr=False)
    k3: bytes = field(repr=False)
    k4: bytes = field(repr=False)
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("k0", "k1", "k2", "k3", "k4"):
            if len(getattr(self, name)) != KEY_SIZE:
                raise ValueError(f"{name} must be 16 bytes")
        if not 0 <= self.version <= 0xFF:
            raise ValueError("key version must be 0..255")

    def key(self, key_no: int) -> bytes:
        return (self.k0, self.k1, self.k2, self.k3, self.k4)[key_no]

    @classmethod
    def factory(cls) -> BoltcardKeys:
        return cls(FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, version=0)


def _step(on_step: StepCallback | None, text: str) -> None:
    if on_step is not None:
        on_step(text)


def program_boltcard(
    tag: Ntag424,
    keys: BoltcardKeys,
    url: str,
    *,
    random_uid: bool = False,
    p_param: str = "p",
    c_param: str = "c",
    on_step: StepCallback | None = None,
) -> str:
    """Program a blank card with `keys` and the SUN URL `url?p=…&c=…`; return the URL read back.

    `url` is the issuer's lnurlw base (it may carry its own query). Raises `CardNotBlank` when the
    card already has keys, and the `hw.ntag424` errors for anything the card refuses.
    """
    layout = sun_ndef_file(url, p_param, c_param)  # validate the URL before touching the card

    _step(on_step, "select application")
    tag.select_ndef_application()
    _step(on_step, "check the card is blank")
    version = tag.get_key_version(1)
    if version != 0:
        raise CardNotBlank(version)

    _step(on_step, "write URL")
    tag.select_file(NDEF_FILE_ID)
    tag.iso_update_binary(0, layout.content)

    _step(on_step, "authenticate with factory key")
    tag.authenticate_ev2_first(APP_MASTER_KEY_NO, FACTORY_KEY)
    _step(on_step, "enable SUN")
    tag.change_file_settings(
        NDEF_FILE_NO, boltcard_file_settings(layout.picc_data_offset, layout.sdm_mac_offset)
    )
    if random_uid:
        _step(on_step, "enable random UID")
        tag.set_configuration_random_uid()

    for key_no in OTHER_KEY_NOS:
        _step(on_step, f"change key {key_no}")
        tag.change_key(key_no, keys.key(key_no), keys.version, old_key=FACTORY_KEY)
    _step(on_step, "change key 0")
    tag.change_key(APP_MASTER_KEY_NO, keys.k0, keys.version)

    _step(on_step, "read back")
    return tag.read_ndef_url()


def wipe_boltcard(
    tag: Ntag424, keys: BoltcardKeys, *, on_step: StepCallback | None = None
) -> None:
    """Return a card programmed with `keys` to factory state (keys zero, version 0, SDM off).

    Check a tap's `p`/`c` against `keys` BEFORE calling this: every failed authentication counts
    towards the card's lock-out.
    """
    _step(on_step, "select application")
    tag.select_ndef_application()
    _step(on_step, "authenticate with key 0")
    tag.authenticate_ev2_first(APP_MASTER_KEY_NO, keys.k0)
    _step(on_step, "disable SUN")
    tag.change_file_settings(NDEF_FILE_NO, factory_ndef_file_settings())
    for key_no in OTHER_KEY_NOS:
        _step(on_step, f"reset key {key_no}")
        tag.change_key(key_no, FACTORY_KEY, 0, old_key=keys.key(key_no))
    _step(on_step, "reset key 0")
    tag.change_key(APP_MASTER_KEY_NO, FACTORY_KEY, 0)

    _step(on_step, "clear URL")
    tag.select_ndef_application()
    tag.select_file(NDEF_FILE_ID)
    tag.iso_update_binary(0, EMPTY_NDEF_FILE)
