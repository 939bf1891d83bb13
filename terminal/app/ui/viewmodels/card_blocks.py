"""Admin > Cards > Block: tap a card to block it (with a reason), and the list to unblock from.

The decision and the books are `terminal.services.card_policy.CardPolicy`; this only presents it.
A tapped card is named by its verified card id: a card whose keys the terminal lacks cannot be
named, so it cannot be blocked here (its host's unknown-card policy already decides for it).
The raw UID is never shown or kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable

if TYPE_CHECKING:
    from terminal.services.card_policy import CardPolicy

CARD_ID_CHARS = 12
REASON_KEYS = ("lost", "stolen", "customer", "fraud")
Verify = Callable[[str], Any]  # Keyring.verify_tap


@dataclass(frozen=True)
class BlockedRow:
    card_id: str
    text: str  # "7d3c4a9be210  lost (this terminal)"
    can_unblock: bool  # only the terminal's own blocks


@dataclass(frozen=True)
class BlockReport:
    ok: bool
    title: str
    lines: tuple[str, ...] = ()
    next_step: str = ""


class CardBlocksViewModel(Observable):
    def __init__(self, policy: CardPolicy | None = None, verify: Verify | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.verify = verify
        self.reason_index = 0
        self.custom_reason = ""
        self.notice = ""
        if policy is not None:
            policy.subscribe(self.changed)

    @property
    def available(self) -> bool:
        return self.policy is not None and self.verify is not None

    # -- the reason ---------------------------------------------------------------------------
    @property
    def reason(self) -> str:
        return self.custom_reason.strip() or t(f"blocks.reason.{REASON_KEYS[self.reason_index]}")

    @property
    def reason_button_text(self) -> str:
        return t("blocks.reason", reason=t(f"blocks.reason.{REASON_KEYS[self.reason_index]}"))

    def next_reason(self) -> None:
        self.reason_index = (self.reason_index + 1) % len(REASON_KEYS)
        self.changed()

    def set_custom_reason(self, text: str) -> None:
        self.custom_reason = text

    # -- a card is tapped ---------------------------------------------------------------------
    def block_tap(self, url: str) -> BlockReport:
        """Verify the tap and block its card with the chosen reason."""
        if self.policy is None or self.verify is None:
            return BlockReport(False, t("blocks.failed"), (t("blocks.unavailable"),))
        verdict = self.verify(url)
        if not verdict.valid or not verdict.card_id:
            reason = verdict.reason.value if verdict.reason else "unknown"
            return BlockReport(False, t("blocks.failed"), (t("blocks.not_verified",
                                                             reason=reason),),
                               t("blocks.not_verified_next"))
        reason = self.reason
        block = self.policy.block(verdict.card_id, reason)
        lines = [t("blocks.card", card_id=block.card_id[:CARD_ID_CHARS], issuer=verdict.issuer),
                 t("blocks.because", reason=block.reason)]
        flagged = [p for p in self.policy.flagged_payouts() if p.card_id == block.card_id]
        if flagged:
            lines.append(t("blocks.flagged", count=len(flagged),
                           sats=f"{sum(p.amount_sats for p in flagged):,}"))
        self.changed()
        return BlockReport(True, t("blocks.done"), tuple(lines), t("blocks.done_next"))

    # -- the list -----------------------------------------------------------------------------
    @property
    def rows(self) -> list[BlockedRow]:
        if self.policy is None:
            return []
        out = []
        for block in self.policy.blocked():
            source = t("blocks.source.terminal") if block.by_terminal else block.source
            out.append(BlockedRow(block.card_id, f"{block.card_id[:CARD_ID_CHARS]}  "
                                  f"{block.reason} ({source})", block.by_terminal))
        return out

    def unblock(self, card_id: str) -> None:
        if self.policy is None:
            return
        self.policy.unblock(card_id)
        remaining = self.policy.blocks_of(card_id)
        self.notice = t("blocks.still", source=remaining[0].source) if remaining else \
            t("blocks.unblocked", card_id=card_id[:CARD_ID_CHARS])
        self.changed()
