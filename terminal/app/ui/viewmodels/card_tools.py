"""The Admin screen's card tools: Info, Program, Wipe and Block on the next card tapped.

The merchant (or field technician) picks a tool; the next card on the reader goes to that tool
instead of the sale flow (`TerminalController.card_event` routes it). The work itself is
`terminal.protocols.boltcard.provisioning` (`inspect_card`, `program_card`, `wipe_card` with a
journal in the data
directory), never a re-implementation of the card sequence. It runs in a worker thread on the
card's live transport (`TapEvent.handle`, or a simulated card in demo mode); progress comes back
to the loop as plain step texts.

State machine (`ToolPhase`):
  IDLE --choose(INFO|PROGRAM)--> WAITING        --choose(WIPE)--> CONFIRM --confirm()--> WAITING
  WAITING --a card--> WORKING --> DONE | FAILED;   cancel() from CONFIRM/WAITING/DONE/FAILED -> IDLE
Keys never reach this module's texts: cards are named by issuer and card id, never by UID.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import Tone
from terminal.protocols.boltcard.keys import key_fingerprint
from terminal.protocols.boltcard.provisioning import JournalUnusable, KeySourceError
from terminal.services.card_tools import (
    CardJob,
    CardTool,
    CardToolFailure,
    CardWork,
    FailureKind,
    ToolResult,
    failure,
)

if TYPE_CHECKING:
    from terminal.app.config import Config
    from terminal.app.ui.viewmodels.card_blocks import CardBlocksViewModel
    from terminal.protocols.boltcard.provisioning import KeySource

CARD_ID_CHARS = 12  # enough to find the card in the issuer's list; the full id is in the journal
STEPS_SHOWN = 5  # while working: the last few steps fit the 480-px panel


class Tool(enum.Enum):
    INFO = "info"
    PROGRAM = "program"
    WIPE = "wipe"
    BLOCK = "block"  # the tap's URL only (card_blocks.py): no card session is opened


class ToolPhase(enum.Enum):
    IDLE = "idle"
    CONFIRM = "confirm"  # wipe: asked "are you sure" before arming
    WAITING = "waiting"  # armed: the next card goes to the tool
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"


fingerprint = key_fingerprint  # the name the admin screens use


@dataclass(frozen=True)
class ToolIssuer:
    """A configured deterministic issuer the tools can derive card keys from."""

    name: str
    issuer_key: bytes = field(repr=False)
    p_param: str = "p"
    c_param: str = "c"
    card_url: str = ""  # the issuer's lnurlw base, when configured
    pull_payment_id: str | None = None  # BTCPay Server's card-key variant
    first_version: int | None = None  # key version of a new card (None: by the variant)

    @property
    def label(self) -> str:
        return f"{self.name} (key {fingerprint(self.issuer_key)})"


@dataclass(frozen=True)
class CardToolsSettings:
    issuers: tuple[ToolIssuer, ...] = ()
    journal_path: Path | None = None  # None: programming and wiping are refused (no data dir)
    card_url: str = ""  # default URL programmed cards emit (lnurlw://host/path)

    @classmethod
    def from_config(cls, config: Config, card_url: str = "") -> CardToolsSettings:
        from terminal.adapters.provisioning_journal import JOURNAL_NAME

        issuers = tuple(
            ToolIssuer(i.name, i.issuer_key, i.p_param, i.c_param,
                       str(getattr(i, "lnurlw_base", "") or ""), i.pull_payment_id,
                       i.default_version)
            for i in config.issuers if i.kind == "deterministic" and i.issuer_key
        )
        default = card_url or next((i.card_url for i in issuers if i.card_url), "")
        return cls(issuers, config.data_dir / JOURNAL_NAME, default)


@dataclass(frozen=True)
class ToolReport:
    ok: bool
    title: str
    lines: tuple[str, ...] = ()
    next_step: str = ""


Verify = Callable[[str], Any]  # Keyring.verify_tap: url -> TapVerification

_NEXT = {
    FailureKind.NOT_BLANK: "tools.next.not_blank",
    FailureKind.WRONG_KEYS: "tools.next.wrong_keys",
    FailureKind.READ_BACK: "tools.next.read_back",
    FailureKind.REMOVED: "tools.next.removed",
    FailureKind.DELAY: "tools.next.delay",
    FailureKind.REFUSED_KEY: "tools.next.refused_key",
    FailureKind.KEY_SOURCE: "tools.next.key_file",
    FailureKind.JOURNAL: "tools.next.journal",
    FailureKind.MISSING: "tools.next.enroll",
    FailureKind.OTHER: "tools.next.again",
}


def report_for(result: ToolResult) -> ToolReport:
    """A card tool's result (`terminal.services.card_tools`) in the technician's words."""
    if isinstance(result, CardToolFailure):
        return ToolReport(False, t(f"tools.{result.tool.value}.failed"), (result.message,),
                          t(_NEXT[result.kind]))
    if isinstance(result, CardWork):
        done = "program" if result.tool is CardTool.PROGRAM else "wipe"
        lines = [t("tools.program.verified") if done == "program" else t("tools.wipe.detail")]
        if result.card_id:
            lines.append(t("tools.card_id", card_id=result.card_id[:CARD_ID_CHARS]))
        if result.host:
            lines.append(t("tools.info.host", host=result.host))
        if result.resumed:
            lines.append(t("tools.resumed"))
        return ToolReport(True, t(f"tools.{done}.done"), tuple(lines), t(f"tools.{done}.next"))
    info = result
    if info.factory:
        return ToolReport(True, t("tools.info.blank"), (t("tools.info.blank_detail"),),
                          t("tools.info.blank_next"))
    lines = []
    if info.partial:
        title = t("tools.info.partial")
        if len(set(info.versions)) > 1:
            lines.append(t("tools.info.versions", versions=" ".join(map(str, info.versions))))
        lines.append(t("tools.info.partial_detail"))
    else:
        title = t("tools.info.programmed", version=info.versions[0])
    lines.append(t("tools.info.sun_on") if info.sun_on else t("tools.info.sun_off"))
    if info.host:
        lines.append(t("tools.info.host", host=info.host))
    next_step = ""
    if info.verified_issuer:
        lines.append(t("tools.info.verified", issuer=info.verified_issuer,
                       card_id=(info.verified_card_id or "")[:CARD_ID_CHARS]))
    elif info.not_verified_reason:
        lines.append(t("tools.info.not_verified", reason=info.not_verified_reason))
        next_step = t("tools.info.not_verified_next")
    elif info.host:
        lines.append(t("tools.info.no_keys"))
    return ToolReport(True, title, tuple(lines), next_step)


def failure_report(tool: Tool, error: Exception) -> ToolReport:
    """An unexpected error while a tool ran, in words (the tool never spins forever)."""
    return report_for(failure(CardTool(tool.value), error))


class CardToolsViewModel(Observable):
    def __init__(self, settings: CardToolsSettings | None = None, *,
                 verify: Verify | None = None) -> None:
        super().__init__()
        self.settings = settings or CardToolsSettings()
        self.verify = verify
        self.tool: Tool | None = None
        self.phase = ToolPhase.IDLE
        self.issuer_index = 0
        self.card_url = self.settings.card_url
        self.key_file = ""
        self.steps: list[str] = []
        self.report: ToolReport | None = None
        self.notice = ""
        self.blocks: CardBlocksViewModel | None = None  # the Block tool (set by the controller)

    def __repr__(self) -> str:
        return f"CardToolsViewModel(tool={self.tool}, phase={self.phase.value})"

    def configure(self, settings: CardToolsSettings, verify: Verify | None = None) -> None:
        self.settings = settings
        self.verify = verify if verify is not None else self.verify
        self.card_url = self.card_url or settings.card_url
        self.issuer_index = 0
        self.changed()

    # -- choices --------------------------------------------------------------------------
    @property
    def issuer(self) -> ToolIssuer | None:
        issuers = self.settings.issuers
        return issuers[self.issuer_index % len(issuers)] if issuers else None

    @property
    def issuer_text(self) -> str:
        issuer = self.issuer
        return t("tools.issuer", name=issuer.label) if issuer else t("tools.issuer.none")

    def next_issuer(self) -> None:
        if self.settings.issuers and not self.busy:
            self.issuer_index = (self.issuer_index + 1) % len(self.settings.issuers)
            self.changed()

    def set_card_url(self, text: str) -> None:
        self.card_url = text.strip()

    def set_key_file(self, text: str) -> None:
        self.key_file = text.strip()

    def choose(self, tool: Tool) -> bool:
        """Pick a tool; False (and a message saying what is missing) when it cannot run."""
        if self.busy:
            return False
        self.tool, self.steps, self.report, self.notice = tool, [], None, ""
        problem = self._missing(tool)
        if problem:
            self.phase = ToolPhase.FAILED
            self.report = ToolReport(False, t(f"tools.{tool.value}.failed"), (problem,),
                                     t("tools.next.enroll"))
            self.changed()
            return False
        self.phase = ToolPhase.CONFIRM if tool is Tool.WIPE else ToolPhase.WAITING
        self.changed()
        return True

    def _missing(self, tool: Tool) -> str:
        if tool is Tool.INFO:
            return ""
        if tool is Tool.BLOCK:
            return "" if self.blocks is not None and self.blocks.available \
                else t("blocks.unavailable")
        if self.settings.journal_path is None:
            return t("tools.error.no_journal")
        if not self.key_file and self.issuer is None:
            return t("tools.error.no_keys")
        if tool is Tool.PROGRAM and not self.key_file and not (
                self.card_url or self.issuer and self.issuer.card_url):
            return t("tools.error.no_url")
        return ""

    def confirm(self) -> None:
        if self.phase is ToolPhase.CONFIRM:
            self.phase = ToolPhase.WAITING
            self.changed()

    def cancel(self) -> None:
        if self.busy:
            return  # a card mid-way is finished (or fails) on its own; never abandoned here
        self.tool, self.phase, self.steps, self.report, self.notice = (
            None, ToolPhase.IDLE, [], None, "")
        self.changed()

    @property
    def armed(self) -> bool:
        return self.phase is ToolPhase.WAITING

    @property
    def busy(self) -> bool:
        return self.phase is ToolPhase.WORKING

    # -- a card arrives (loop thread) -----------------------------------------------------
    def begin(self) -> CardJob:
        """The armed tool starts on the card that came (the Block tool needs no card session:
        its job only marks the tool busy)."""
        assert self.armed and self.tool is not None
        tool = CardTool.INFO if self.tool is Tool.BLOCK else CardTool(self.tool.value)
        changes = tool is not CardTool.INFO
        job = CardJob(tool, keys=self._key_source if changes else None,
                      journal=self._journal if changes else None,
                      card_url=self.card_url or (self.issuer.card_url if self.issuer else "")
                      or None, verify=self.verify)
        self.phase, self.steps, self.report, self.notice = ToolPhase.WORKING, [], None, ""
        self.changed()
        return job

    def step(self, text: str) -> None:
        self.steps.append(text)
        self.changed()

    def finish(self, report: ToolReport) -> None:
        self.report = report
        self.phase = ToolPhase.DONE if report.ok else ToolPhase.FAILED
        self.changed()

    def card_unusable(self, message: str) -> None:
        """A card came but cannot be talked to (moved away, not ISO-DEP): stay armed."""
        self.notice = message
        self.changed()

    # -- what the screen shows ------------------------------------------------------------
    @property
    def title(self) -> str:
        if self.phase is ToolPhase.IDLE or self.tool is None:
            return t("tools.pick")
        if self.phase is ToolPhase.CONFIRM:
            return t("tools.wipe.confirm")
        if self.phase is ToolPhase.WAITING:
            return t(f"tools.{self.tool.value}.waiting")
        if self.phase is ToolPhase.WORKING:
            return t("tools.working")
        return self.report.title if self.report else ""

    @property
    def tone(self) -> Tone:
        return {
            ToolPhase.IDLE: Tone.NEUTRAL, ToolPhase.CONFIRM: Tone.WARNING,
            ToolPhase.WAITING: Tone.BUSY, ToolPhase.WORKING: Tone.BUSY,
            ToolPhase.DONE: Tone.SUCCESS, ToolPhase.FAILED: Tone.ERROR,
        }[self.phase]

    @property
    def detail_lines(self) -> list[str]:
        if self.phase is ToolPhase.IDLE:
            return [t("tools.help")]
        if self.phase is ToolPhase.CONFIRM:
            return [t("tools.wipe.confirm_detail", issuer=self._keys_text())] + (
                [self.notice] if self.notice else [])
        if self.phase is ToolPhase.WAITING:
            lines = [t("tools.hold_still")]
            if self.tool is Tool.BLOCK and self.blocks is not None:
                lines.append(t("blocks.with_reason", reason=self.blocks.reason))
            elif self.tool is not Tool.INFO:
                lines.append(t("tools.using", keys=self._keys_text()))
            return lines + ([self.notice] if self.notice else [])
        done = [f"✓ {s}" for s in self.steps]
        if self.phase is ToolPhase.WORKING:  # the latest steps, under the reminder
            return [t("tools.hold_still"), *done[-STEPS_SHOWN:]]
        # the outcome first, then how it got there
        return [*(self.report.lines if self.report else ()), *done]

    @property
    def next_text(self) -> str:
        if self.report is not None and self.phase in (ToolPhase.DONE, ToolPhase.FAILED):
            return self.report.next_step
        return ""

    def _key_source(self) -> tuple[KeySource, str, str]:
        """The armed tool's keys: a key file, or the chosen issuer's key (worker thread)."""
        from terminal.adapters.keyexchange import FileKeySource, IssuerKeySource, load_keys_file

        if self.key_file:
            return FileKeySource(load_keys_file(Path(self.key_file).expanduser())), "p", "c"
        issuer = self.issuer
        if issuer is None:  # choose() refuses this; kept for a job begun by hand
            raise KeySourceError(t("tools.error.no_keys"))
        url = self.card_url or issuer.card_url or None
        source = IssuerKeySource(issuer.issuer_key, None, url, issuer.pull_payment_id,
                                 issuer.first_version)
        return source, issuer.p_param, issuer.c_param

    def _journal(self) -> Any:
        from terminal.adapters.provisioning_journal import ProvisioningJournal

        if self.settings.journal_path is None:
            raise JournalUnusable(t("tools.error.no_journal"))
        return ProvisioningJournal(self.settings.journal_path)

    def _keys_text(self) -> str:
        if self.key_file:
            return t("tools.keys.file", path=Path(self.key_file).name)
        issuer = self.issuer
        return issuer.label if issuer else t("tools.issuer.none")
