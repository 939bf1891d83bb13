"""The card tools as a service: Info, Program and Wipe on the card that was tapped.

The work itself is the programming procedure (`terminal.protocols.boltcard.provisioning`:
`inspect_card`, `program_card`, `wipe_card` with a journal), never a re-implementation of the
card sequence. A `CardJob` is frozen when the card arrives, so the worker thread that talks to the
card (APDUs over USB block) reads only it. Results are data — what the card holds, what was done,
or why it failed and of which kind — and the screens put them in words. Keys never appear in a
result: cards are named by issuer and keyed card id, never by UID.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hw.ntag424 import (
    AuthenticationDelay,
    AuthenticationError,
    Ntag424,
    Ntag424Error,
    TransportError,
)
from terminal.core.ports.provisioning import Journal
from terminal.protocols.boltcard.provisioning import (
    CardNotBlank,
    JournalUnusable,
    KeysDoNotMatch,
    KeySource,
    KeySourceError,
    ProvisioningError,
    ReadBackFailed,
    inspect_card,
    program_card,
    wipe_card,
)

StepSink = Callable[[str], None]


class CardTool(enum.Enum):
    INFO = "info"
    PROGRAM = "program"
    WIPE = "wipe"


class FailureKind(enum.Enum):
    """Why a tool stopped, by what the technician should do next."""

    NOT_BLANK = "not-blank"  # programmed already: wipe it first
    WRONG_KEYS = "wrong-keys"  # the tap does not verify with these keys (nothing was sent)
    READ_BACK = "read-back"  # programmed, but its first tap does not verify
    REMOVED = "removed"  # the card left the field: tap again, it resumes
    DELAY = "delay"  # the card delays authentication after failures
    REFUSED_KEY = "refused-key"  # the card refused the key
    KEY_SOURCE = "key-source"  # the keys could not be obtained
    JOURNAL = "journal"  # the journal cannot be written: the card was not changed
    MISSING = "missing"  # something the tool needs is not configured
    OTHER = "other"


@dataclass(frozen=True)
class CardInfo:
    """What a card shows without authentication, and whether its tap verifies here."""

    factory: bool  # every key at factory value, version 0, no URL
    partial: bool  # part-way programmed or wiped
    versions: tuple[int, ...]
    sun_on: bool
    host: str | None
    verified_issuer: str | None = None
    verified_card_id: str | None = None
    not_verified_reason: str | None = None  # a reason code when the tap does not verify
    verifiable: bool = False  # keys were at hand to check the tap


@dataclass(frozen=True)
class CardWork:
    """A card programmed or wiped."""

    tool: CardTool
    card_id: str | None
    host: str | None
    resumed: bool  # it finished an attempt that had been interrupted


@dataclass(frozen=True)
class CardToolFailure:
    tool: CardTool
    kind: FailureKind
    message: str


ToolResult = CardInfo | CardWork | CardToolFailure


Verify = Callable[[str], Any]  # Keyring.verify_tap: url -> TapVerification


@dataclass(frozen=True)
class CardJob:
    """One armed tool with everything it needs. `keys` builds the key source when the job runs
    (a key file is read, an issuer's key exchange called, in the worker thread)."""

    tool: CardTool
    keys: Callable[[], tuple[KeySource, str, str]] | None = None  # source, p_param, c_param
    journal: Callable[[], Journal] | None = None
    card_url: str | None = None
    verify: Verify | None = None

    def run(self, tag: Ntag424, on_step: StepSink) -> ToolResult:
        """Blocking: talk to the card. Never raises for a card, key or journal problem."""
        try:
            if self.tool is CardTool.INFO:
                return self._info(tag, on_step)
            return self._change(tag, on_step)
        except (Ntag424Error, ProvisioningError, ValueError) as error:
            return failure(self.tool, error)

    def _info(self, tag: Ntag424, on_step: StepSink) -> CardInfo:
        facts = inspect_card(tag, on_step)
        versions = tuple(facts.key_versions)
        host = (urlsplit(facts.tap_url).netloc or "?") if facts.tap_url else None
        if facts.factory:
            return CardInfo(True, False, versions, False, None)
        partial = facts.blank or len(set(versions)) > 1
        info = CardInfo(False, partial, versions, facts.ndef_settings.sdm_enabled, host)
        if not facts.tap_url or self.verify is None:
            return info
        verdict = self.verify(facts.tap_url)
        if verdict.valid:
            return CardInfo(False, partial, versions, info.sun_on, host, verdict.issuer,
                            verdict.card_id, None, True)
        reason = verdict.reason.value if verdict.reason else "unknown"
        return CardInfo(False, partial, versions, info.sun_on, host, None, None, reason, True)

    def _change(self, tag: Ntag424, on_step: StepSink) -> CardWork:
        if self.keys is None:
            raise KeySourceError("no keys: configure a deterministic issuer, or give a key file")
        if self.journal is None:
            raise JournalUnusable("no data directory to keep the card keys journal in")
        source, p_param, c_param = self.keys()
        journal: Any = self.journal()
        if self.tool is CardTool.PROGRAM:
            outcome = program_card(tag, source, journal, url=self.card_url, p_param=p_param,
                                   c_param=c_param, on_step=on_step)
        else:
            outcome = wipe_card(tag, source, journal, p_param=p_param, c_param=c_param,
                                on_step=on_step)
        host = (urlsplit(outcome.url).netloc or "?") if outcome.url else None
        return CardWork(self.tool, outcome.card_id, host, outcome.resumed)


def failure(tool: CardTool, error: Exception) -> CardToolFailure:
    """The error, classified by what to do next."""
    if isinstance(error, CardNotBlank):
        kind = FailureKind.NOT_BLANK
    elif isinstance(error, KeysDoNotMatch):
        kind = FailureKind.WRONG_KEYS
    elif isinstance(error, ReadBackFailed):
        kind = FailureKind.READ_BACK
    elif isinstance(error, TransportError):
        kind = FailureKind.REMOVED
    elif isinstance(error, AuthenticationDelay):
        kind = FailureKind.DELAY
    elif isinstance(error, AuthenticationError):
        kind = FailureKind.REFUSED_KEY
    elif isinstance(error, KeySourceError):
        kind = FailureKind.KEY_SOURCE
    elif isinstance(error, JournalUnusable):
        kind = FailureKind.JOURNAL
    else:
        kind = FailureKind.OTHER
    return CardToolFailure(tool, kind, str(error))
