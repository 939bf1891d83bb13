"""Programming and wiping a Boltcard so that no interruption can strand the card.

Order per the Boltcard spec §4. Program: check the card is blank, write the SUN URL while writes
are still free, authenticate with the factory key 0, switch on SDM (optionally random UID), change
keys 1–4 and key 0 last (changing the authenticated key ends the session), read one tap and verify
it with the new K1/K2. Wipe: verify a tap against the keys held BEFORE any authentication (every
failed authentication counts towards the card's lock-out), authenticate with the current K0,
restore file settings, keys 1–4 then 0 back to zero (version 00), empty NDEF.

Crash safety. The card is the record of where an operation stands: every step changes something
the card shows without authentication (a key's version via GetKeyVersion, the NDEF file settings,
the SUN tap). Each routine therefore starts by inspecting the card and does only what is left, so
an attempt cut off after any APDU (answer delivered or lost) is finished by the next one. The keys
themselves live in the provisioning journal (`terminal.adapters.provisioning_journal`), written
and fsynced
by `program_card` / `wipe_card` before the card changes; `progress` records each completed step.
Before authenticating with anything but a factory key, a tap is verified with the keys each slot
should hold (old or new, by its version): wrong keys are found without touching the failure counter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from hw.ntag424 import (
    EMPTY_NDEF_FILE,
    AuthenticationError,
    FileSettings,
    NdefFormatError,
    Ntag424,
    Ntag424Error,
    TransportError,
    boltcard_file_settings,
    factory_ndef_file_settings,
    parse_uri_message,
    sun_ndef_file,
)
from hw.ntag424.constants import (
    ACCESS_FREE,
    APP_MASTER_KEY_NO,
    FACTORY_KEY,
    KEY_SIZE,
    NDEF_FILE_ID,
    NDEF_FILE_NO,
)
from terminal.protocols.boltcard import PiccDecryptor, TapError, key_table_card_id, verify_tap_url
from terminal.protocols.boltcard.tap_url import parse_tap_url

if TYPE_CHECKING:
    from terminal.adapters.provisioning_journal import JournalEntry, ProvisioningJournal

StepCallback = Callable[[str], None]
Progress = Callable[[str], None]  # durably records a completed step (the journal)

KEY_NOS = (0, 1, 2, 3, 4)
# Keys 1..4 change while authenticated with key 0; key 0 goes last because it ends the session.
OTHER_KEY_NOS = (1, 2, 3, 4)
EMPTY_NDEF_MESSAGE = EMPTY_NDEF_FILE[2:]


# --- errors -------------------------------------------------------------------------------------


class ProvisioningError(Exception):
    """Programming or wiping cannot go on; the message tells the technician what to do."""


class KeySourceError(ProvisioningError):
    """The card's keys could not be obtained (an issuer's key exchange, a key file)."""


class JournalUnusable(ProvisioningError):
    """The provisioning journal cannot be read or written: nothing was sent to the card."""


class CardNotBlank(ProvisioningError):
    """The card already carries keys (a non-zero key version): wipe it first."""

    def __init__(self, key_version: int) -> None:
        self.key_version = key_version
        super().__init__(
            f"card is already programmed (key version {key_version}): wipe it with its "
            "issuer's keys before programming it again"
        )


class KeysDoNotMatch(AuthenticationError):
    """The card's tap does not verify with the keys held: no authentication was attempted.

    An `AuthenticationError` so that callers catching the card's own refusal catch this too.
    """

    sw: ClassVar[int] = 0  # not the card's answer: nothing was sent
    message: ClassVar[str] = (
        "the card's tap does not verify with these keys (another issuer's card, or the wrong "
        "keys); nothing was sent that counts towards the card's lock-out"
    )


class ReadBackFailed(ProvisioningError):
    """The card was programmed but its first tap does not verify with the new keys."""


# --- keys ---------------------------------------------------------------------------------------


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

    @classmethod
    def of(cls, keys: Sequence[bytes], version: int = 1) -> BoltcardKeys:
        """K0..K4 from a sequence of five keys."""
        if len(keys) != 5:
            raise ValueError("a Boltcard has five keys, K0..K4")
        return cls(keys[0], keys[1], keys[2], keys[3], keys[4], version=version)

    def key(self, key_no: int) -> bytes:
        return (self.k0, self.k1, self.k2, self.k3, self.k4)[key_no]

    @classmethod
    def factory(cls) -> BoltcardKeys:
        return cls(FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, FACTORY_KEY, version=0)


# --- what the card shows without authentication -------------------------------------------------


@dataclass(frozen=True)
class CardFacts:
    """The card as seen unauthenticated: key versions, NDEF file settings, UID, one tap."""

    key_versions: tuple[int, ...]
    ndef_settings: FileSettings
    uid: bytes | None = field(repr=False)  # None when the card sends a random UID
    ndef_message: bytes | None = field(repr=False)  # None when unreadable
    tap_url: str | None = field(repr=False)

    @property
    def blank(self) -> bool:
        return not any(self.key_versions)

    @property
    def factory_settings(self) -> bool:
        wanted = factory_ndef_file_settings()
        return (self.ndef_settings.sdm is None
                and self.ndef_settings.comm_mode is wanted.comm_mode
                and self.ndef_settings.access_rights == wanted.access_rights)

    @property
    def ndef_empty(self) -> bool:
        return self.ndef_message in (b"", EMPTY_NDEF_MESSAGE)

    @property
    def factory(self) -> bool:
        return self.blank and self.factory_settings and self.ndef_empty


def _read_ndef(tag: Ntag424) -> tuple[bytes | None, str | None]:
    try:
        message = tag.read_ndef_file()
    except TransportError:
        raise
    except Ntag424Error:
        return None, None
    try:
        return message, parse_uri_message(message) if message else None
    except NdefFormatError:
        return message, None


def inspect_card(tag: Ntag424, on_step: StepCallback | None = None) -> CardFacts:
    """Read everything the card shows unauthenticated. Reading the tap advances SDMReadCtr."""
    _step(on_step, "inspect card")
    tag.select_ndef_application()
    versions = tuple(tag.get_key_version(n) for n in KEY_NOS)
    settings = tag.get_file_settings(NDEF_FILE_NO)
    uid = tag.get_version().uid
    message, url = _read_ndef(tag)
    return CardFacts(versions, settings, None if not any(uid) else uid, message, url)


def uid_from_tap(
    url: str | None, k1: bytes, p_param: str = "p", c_param: str = "c"
) -> bytes | None:
    """The UID in a tap's PICCData under the one K1 the card holds in slot 1 (by its version).

    Unverified: any wrong K1 "decrypts" 1 tap in 256 to a block starting C7 (and the random
    padding makes that a new draw on every tap), giving a made-up UID. Use it only to ask a key
    source for a card's keys, which are then checked against the tap before anything is sent.
    """
    if url is None:
        return None
    try:
        p = parse_tap_url(url, p_param, c_param).p
    except TapError:
        return None
    picc = PiccDecryptor(k1).decrypt(p)
    return None if picc is None else picc.uid


def _tap_uid(facts: CardFacts, k1: bytes, k2: bytes, p_param: str, c_param: str
             ) -> bytes | None:
    """The UID of the card's tap when it verifies with K1 and K2 (PICCData and SDMMAC)."""
    if facts.tap_url is None or not facts.ndef_settings.sdm_enabled:
        return None
    result = verify_tap_url(facts.tap_url, k1, k2, p_param=p_param, c_param=c_param)
    return result.uid if result.valid else None


def _step(on_step: StepCallback | None, text: str) -> None:
    if on_step is not None:
        on_step(text)


def _done(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _slot_keys(keys: BoltcardKeys, versions: tuple[int, ...], held_when: Callable[[int], bool]
               ) -> list[bytes]:
    """The key each slot holds now: `keys`' value where `held_when(version)`, factory otherwise."""
    return [keys.key(n) if held_when(versions[n]) else FACTORY_KEY for n in KEY_NOS]


def _verify_tap(facts: CardFacts, current: list[bytes], p_param: str, c_param: str) -> bytes:
    """The UID of a tap that verifies with the slots' current K1/K2; else KeysDoNotMatch."""
    if facts.tap_url is None:
        raise KeysDoNotMatch()
    result = verify_tap_url(facts.tap_url, current[1], current[2], p_param=p_param,
                            c_param=c_param)
    if not result.valid or result.uid is None:
        raise KeysDoNotMatch()
    return result.uid


# --- programming --------------------------------------------------------------------------------


def program_boltcard(
    tag: Ntag424,
    keys: BoltcardKeys,
    url: str,
    *,
    random_uid: bool = False,
    p_param: str = "p",
    c_param: str = "c",
    on_step: StepCallback | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    facts: CardFacts | None = None,
) -> str:
    """Program `keys` and the SUN URL `url?p=…&c=…`; return the first tap, verified.

    With `resume`, a card part-way through programming with these keys (its key versions are 0
    or `keys.version`, and a tap verifies with the keys each slot then holds) is finished.
    Record `keys` durably before calling: `program_card` does. `facts` skips the inspection.
    Raises `CardNotBlank`, `KeysDoNotMatch`, `ReadBackFailed` and the `hw.ntag424` errors.
    """
    layout = sun_ndef_file(url, p_param, c_param)  # validate the URL before touching the card
    if keys.version == 0:
        raise ValueError("programming needs key version 1..255 (version 0 means factory keys)")

    if facts is None:
        _step(on_step, "select application")
        tag.select_ndef_application()
        _step(on_step, "check the card is blank")
        version = tag.get_key_version(1)
        if version != 0 and not (resume and version == keys.version):
            raise CardNotBlank(version)
        facts = inspect_card(tag)
    versions = facts.key_versions
    foreign = [v for v in versions if v not in (0, keys.version)]
    changed = [v == keys.version for v in versions]
    if foreign or (any(changed) and not resume):
        raise CardNotBlank(max(foreign or versions))

    if any(changed):
        # Part-way: prove the card holds what the versions say before any authentication.
        _step(on_step, "verify tap with the recorded keys")
        _verify_tap(facts, _slot_keys(keys, versions, lambda v: v == keys.version),
                    p_param, c_param)
    else:
        _write_url_and_settings(tag, facts, layout, on_step, progress)
        if random_uid:
            _step(on_step, "enable random UID")
            tag.set_configuration_random_uid()
            _done(progress, "random UID enabled")

    pending = [n for n in (*OTHER_KEY_NOS, APP_MASTER_KEY_NO) if not changed[n]]
    if pending and not tag.authenticated:
        k0 = keys.k0 if changed[APP_MASTER_KEY_NO] else FACTORY_KEY
        _step(on_step, "authenticate with key 0")
        tag.authenticate_ev2_first(APP_MASTER_KEY_NO, k0)
    for key_no in pending:
        _step(on_step, f"change key {key_no}")
        if key_no == APP_MASTER_KEY_NO:
            tag.change_key(APP_MASTER_KEY_NO, keys.k0, keys.version)
        else:
            tag.change_key(key_no, keys.key(key_no), keys.version, old_key=FACTORY_KEY)
        _done(progress, f"key {key_no} changed")

    _step(on_step, "read back")
    read = tag.read_ndef_url()
    result = verify_tap_url(read, keys.k1, keys.k2, p_param=p_param, c_param=c_param)
    if not result.valid:
        raise ReadBackFailed(
            "the card is programmed but its tap does not verify with the new keys "
            f"({result.reason.value if result.reason else 'unknown'}); keep the journal and "
            "wipe it with these keys"
        )
    _done(progress, "verified")
    return read


def _write_url_and_settings(tag: Ntag424, facts: CardFacts, layout, on_step, progress) -> None:
    """Keys still factory: (re)write the URL and switch on SUN. Idempotent, so a retry after
    an interruption anywhere in here simply does it again."""
    rights = facts.ndef_settings.access_rights
    if ACCESS_FREE in (rights.write, rights.read_write):
        _step(on_step, "write URL")
        tag.select_file(NDEF_FILE_ID)
        tag.iso_update_binary(0, layout.content)
        _done(progress, "URL written")
        _step(on_step, "authenticate with factory key")
        tag.authenticate_ev2_first(APP_MASTER_KEY_NO, FACTORY_KEY)
    else:
        # SUN already on from an interrupted attempt: writes now need key 0 (still factory).
        _step(on_step, "authenticate with factory key")
        tag.authenticate_ev2_first(APP_MASTER_KEY_NO, FACTORY_KEY)
        _step(on_step, "write URL")
        tag.write_data(NDEF_FILE_NO, 0, layout.content)
        _done(progress, "URL written")
    _step(on_step, "enable SUN")
    tag.change_file_settings(
        NDEF_FILE_NO, boltcard_file_settings(layout.picc_data_offset, layout.sdm_mac_offset)
    )
    _done(progress, "SUN enabled")


# --- wiping -------------------------------------------------------------------------------------


def _reset_step(key_no: int) -> str:
    """The journal step recorded once the card confirmed key `key_no` is back to factory."""
    return f"key {key_no} reset"


def wipe_boltcard(
    tag: Ntag424,
    keys: BoltcardKeys,
    *,
    on_step: StepCallback | None = None,
    progress: Progress | None = None,
    facts: CardFacts | None = None,
    p_param: str = "p",
    c_param: str = "c",
    verified: bool = False,
) -> None:
    """Return a card programmed with `keys` to factory state (keys zero, version 0, SDM off).

    A slot whose key version is non-zero holds its key from `keys`; zero means already reset.
    Before authenticating with the held K0 a tap must verify with the slots' current K1/K2
    (`verified` says the caller's journal shows this card's tap verified in an earlier attempt,
    for a card whose SUN is already off). Raises `KeysDoNotMatch` without authenticating.
    """
    if facts is None:
        facts = inspect_card(tag, on_step)
    if facts.factory:
        _step(on_step, "card is already blank")
        return
    versions = facts.key_versions
    current = _slot_keys(keys, versions, lambda v: v != 0)
    if versions[APP_MASTER_KEY_NO] != 0 and not verified:
        _step(on_step, "verify tap with the keys held")
        _verify_tap(facts, current, p_param, c_param)

    pending = [n for n in (*OTHER_KEY_NOS, APP_MASTER_KEY_NO) if versions[n] != 0]
    if pending or not facts.factory_settings:
        _step(on_step, "authenticate with key 0")
        tag.select_ndef_application()
        tag.authenticate_ev2_first(APP_MASTER_KEY_NO, current[APP_MASTER_KEY_NO])
    if not facts.factory_settings:
        _step(on_step, "disable SUN")
        tag.change_file_settings(NDEF_FILE_NO, factory_ndef_file_settings())
        _done(progress, "SUN disabled")
    for key_no in pending:
        _step(on_step, f"reset key {key_no}")
        if key_no == APP_MASTER_KEY_NO:
            tag.change_key(APP_MASTER_KEY_NO, FACTORY_KEY, 0)
        else:
            tag.change_key(key_no, FACTORY_KEY, 0, old_key=current[key_no])
        _done(progress, _reset_step(key_no))

    _step(on_step, "clear URL")
    tag.select_ndef_application()
    tag.select_file(NDEF_FILE_ID)
    tag.iso_update_binary(0, EMPTY_NDEF_FILE)
    _done(progress, "URL cleared")


# --- journaled operations: what the CLI and the admin screen call -------------------------------


@dataclass(frozen=True)
class KeyOffer:
    """Keys a source gives for one card; `uid` when the issuer says which card they are for."""

    keys: BoltcardKeys
    url: str | None = None
    card_id: str | None = None
    uid: bytes | None = field(default=None, repr=False)


class KeySource(Protocol):
    """Where keys come from: an issuer key, a key file, an issuer's key exchange."""

    def k1_hint(self) -> bytes | None:
        """A K1 known without the UID (to read the UID of a random-UID card), if any."""
        ...

    def keys_for(self, uid: bytes, facts: CardFacts) -> KeyOffer: ...


@dataclass(frozen=True)
class Outcome:
    card_id: str | None
    url: str | None
    resumed: bool = False


def _card_id(offer_id: str | None, keys: BoltcardKeys, uid: bytes) -> str:
    return offer_id or key_table_card_id(keys.k2, uid)


def _find_entry(
    journal: ProvisioningJournal, op: str, facts: CardFacts,
    holds: Callable[[BoltcardKeys, int], bool], p_param: str, c_param: str,
) -> tuple[JournalEntry, bytes] | None:
    """The pending `op` entry of this card, and its UID.

    By the UID the card shows; a random-UID card shows none, so by its tap, which must verify
    (SDMMAC included) with the K1/K2 its slots hold under that entry's keys
    (`holds(keys, version)`: the slot has the entry's key, else the factory key). Decrypting
    PICCData alone is no proof: a wrong K1 yields a C7 block for 1 tap in 256, a made-up UID.
    """
    if facts.uid is not None:
        entry = journal.find(facts.uid, op)
        return None if entry is None else (entry, facts.uid)
    versions = facts.key_versions
    for entry in journal.pending(op):
        k1, k2 = (entry.keys.key(n) if holds(entry.keys, versions[n]) else FACTORY_KEY
                  for n in (1, 2))
        uid = _tap_uid(facts, k1, k2, p_param, c_param)
        if uid is not None and entry.matches(uid):
            return entry, uid
    return None


def _programmed_with(keys: BoltcardKeys, version: int) -> bool:
    """While programming, a slot holds its new key once it carries the new version."""
    return version == keys.version


def _not_yet_reset(keys: BoltcardKeys, version: int) -> bool:
    """While wiping, a slot holds its old key until its version is back to 0."""
    return version != 0


def program_card(
    tag: Ntag424,
    source: KeySource,
    journal: ProvisioningJournal,
    *,
    url: str | None = None,
    random_uid: bool = False,
    p_param: str = "p",
    c_param: str = "c",
    on_step: StepCallback | None = None,
) -> Outcome:
    """Program the card, or finish an interrupted programming recorded in `journal`.

    Keys of a resumed card come from the journal, never from the source again (an issuer may
    hand out new keys on every request).
    """
    facts = inspect_card(tag, on_step)
    found = _find_entry(journal, "program", facts, _programmed_with, p_param, c_param)
    resumed = found is not None
    uid: bytes | None
    if found is not None:
        entry, uid = found
        _step(on_step, "resume programming recorded in the journal")
        keys, base_url, random_uid = entry.keys, entry.url, entry.random_uid
    else:
        if not facts.blank:
            raise CardNotBlank(max(facts.key_versions))
        uid = facts.uid
        if facts.ndef_settings.sdm is not None:
            tap_uid = _tap_uid(facts, FACTORY_KEY, FACTORY_KEY, p_param, c_param)
            if tap_uid is None:
                # Version 0 everywhere, yet SUN answers with other keys: someone changed keys
                # without bumping versions. Authenticating with the factory key would only burn
                # the card's failure counter; refuse before touching it.
                raise CardNotBlank(0)
            uid = uid or tap_uid
        if uid is None:
            raise ProvisioningError("cannot read the card's UID (hold it still and try again)")
        _step(on_step, "get keys")
        offer = source.keys_for(uid, facts)
        if offer.uid is not None and offer.uid != uid:
            raise ProvisioningError("these keys are for another card (the UID does not match)")
        keys, base_url = offer.keys, url or offer.url
        if not base_url:
            raise ProvisioningError("no card URL: the keys carry none, give it with --url")
        sun_ndef_file(base_url, p_param, c_param)  # refuse a bad URL before recording anything
        _step(on_step, "record keys in the journal")
        entry = journal.begin("program", uid, keys, url=base_url, random_uid=random_uid,
                              card_id=_card_id(offer.card_id, keys, uid))
    assert base_url is not None and uid is not None
    read = program_boltcard(
        tag, keys, base_url, random_uid=random_uid, p_param=p_param, c_param=c_param,
        on_step=on_step, progress=lambda step: journal.step(entry, step), resume=True,
        facts=facts,
    )
    journal.end(entry)
    return Outcome(card_id=_card_id(entry.card_id, keys, uid), url=read, resumed=resumed)


def wipe_card(
    tag: Ntag424,
    source: KeySource,
    journal: ProvisioningJournal,
    *,
    p_param: str = "p",
    c_param: str = "c",
    on_step: StepCallback | None = None,
) -> Outcome:
    """Wipe the card with the source's keys, or finish an interrupted wipe from `journal`."""
    facts = inspect_card(tag, on_step)
    found = _find_entry(journal, "wipe", facts, _not_yet_reset, p_param, c_param)
    entry: JournalEntry | None = None
    uid = facts.uid
    if found is not None:
        entry, uid = found
    elif uid is None and facts.ndef_settings.sdm_enabled:
        # A random-UID card of no pending wipe: its UID from the tap under the K1 slot 1 holds
        # (the source's while the version is non-zero), for the source to find its keys.
        hint = source.k1_hint() if facts.key_versions[1] else FACTORY_KEY
        uid = uid_from_tap(facts.tap_url, hint, p_param, c_param) if hint else None
    guessed = False
    if entry is None and uid is None and not facts.ndef_settings.sdm_enabled:
        # A random-UID card whose SUN is already off: the journal entry whose keys the card
        # still accepts by version. One candidate only, never a guess between several.
        candidates = [e for e in journal.pending("wipe")
                      if all(v in (0, e.keys.version) for v in facts.key_versions)]
        entry = candidates[0] if len(candidates) == 1 else None
        guessed = True
    if facts.factory:
        # Any card fits a guess by versions once it is blank: close a guessed entry only when
        # it says its keys are all reset, or the card it stands for could never be resumed.
        if entry is not None and (not guessed or _reset_step(APP_MASTER_KEY_NO) in entry.steps):
            journal.end(entry)
        else:
            entry = None
        _step(on_step, "card is already blank")
        return Outcome(card_id=entry.card_id if entry else None, url=None,
                       resumed=entry is not None)
    resumed = entry is not None
    # A resumed wipe whose SUN is already off cannot show a tap: the journal entry says one
    # verified when the wipe began (an entry is only written after that).
    verified = resumed and not facts.ndef_settings.sdm_enabled
    if entry is not None:
        _step(on_step, "resume wipe recorded in the journal")
        keys = entry.keys
        card_id = entry.card_id
    else:
        if uid is None:
            raise ProvisioningError("cannot read the card's UID: its tap does not decrypt with "
                                    "these keys (another issuer's card?)")
        _step(on_step, "get keys")
        offer = source.keys_for(uid, facts)
        if offer.uid is not None and offer.uid != uid:
            raise KeysDoNotMatch("these keys are for another card (the UID does not match); "
                                 "nothing was sent that counts towards the card's lock-out")
        keys = offer.keys
        # Verify before anything is recorded or sent: the journal only holds keys that fit.
        current = _slot_keys(keys, facts.key_versions, lambda v: v != 0)
        if facts.key_versions[APP_MASTER_KEY_NO] != 0:
            _step(on_step, "verify tap with the keys held")
            uid = _verify_tap(facts, current, p_param, c_param)
            verified = True
        card_id = _card_id(offer.card_id, keys, uid)
        _step(on_step, "record wipe in the journal")
        entry = journal.begin("wipe", uid, keys, card_id=card_id)
    wipe_boltcard(tag, keys, on_step=on_step, progress=lambda step: journal.step(entry, step),
                  facts=facts, p_param=p_param, c_param=c_param,
                  verified=verified)
    journal.end(entry)
    return Outcome(card_id=card_id, url=None, resumed=resumed)
