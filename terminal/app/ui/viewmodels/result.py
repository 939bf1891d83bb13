"""The Result screen: paid (amount, method, time) or failed with the reason in plain words and
what to do next; print/reprint; back to Sale (or Pay, when the sale is still open) after a while."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from terminal.app.ui.strings import reason_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tones import ICONS, Tone

AUTO_RETURN_S = 6.0

# outcome kind -> (title key, tone, next-step key)
_KINDS = {
    "paid": ("result.paid", Tone.SUCCESS, "next.paid"),
    "queued": ("result.queued", Tone.WARNING, "next.queued"),
    "refused": ("result.refused", Tone.ERROR, "next.retry"),
    "declined": ("result.declined", Tone.ERROR, "next.retry"),
    "failed": ("result.failed", Tone.ERROR, "next.new_sale"),
    "expired": ("result.expired", Tone.ERROR, "next.new_sale"),
    "cancelled": ("result.cancelled", Tone.NEUTRAL, "next.new_sale"),
    "unconfirmed": ("result.unconfirmed", Tone.WARNING, "next.unconfirmed"),
}


@dataclass(frozen=True)
class ResultInfo:
    kind: str  # a key of _KINDS
    amount_text: str
    sats_text: str = ""
    method: str | None = None  # card | qr
    reason: str | None = None  # a code (see strings "reason.*")
    message: str = ""  # the service's own words, shown when no plain-words text is known
    at: float = 0.0
    sale_open: bool = False  # a refused card leaves the invoice open for another try


class ResultViewModel(Observable):
    def __init__(self, clock: Callable[[], float] = time.time,
                 auto_return_s: float = AUTO_RETURN_S) -> None:
        super().__init__()
        self.clock = clock
        self.auto_return_s = auto_return_s
        self.info = ResultInfo("cancelled", "")
        self.shown_at = 0.0
        self.printed = False

    def show(self, info: ResultInfo) -> None:
        if info.kind not in _KINDS:
            raise ValueError(f"unknown result kind {info.kind!r}")
        self.info, self.shown_at, self.printed = info, self.clock(), False
        self.changed()

    def mark_printed(self) -> None:
        self.printed = True
        self.changed()

    # -- what is shown ----------------------------------------------------------------------
    @property
    def tone(self) -> Tone:
        return _KINDS[self.info.kind][1]

    @property
    def icon(self) -> str:
        return ICONS[self.tone]

    @property
    def title(self) -> str:
        return t(_KINDS[self.info.kind][0])

    @property
    def paid(self) -> bool:
        return self.info.kind in ("paid", "queued")

    @property
    def detail_text(self) -> str:
        """Paid: method and time. Failed: the reason in plain words."""
        info = self.info
        if self.paid:
            method = t(f"result.method.{info.method}") if info.method else ""
            when = datetime.fromtimestamp(info.at or self.shown_at).strftime("%H:%M:%S")
            return " · ".join(p for p in (method, when) if p)
        if info.message and info.kind in ("refused", "declined"):
            return info.message  # the issuer's or the policy's specific words
        if info.reason and f"reason.{info.reason}" in _known_reasons():
            return reason_text(info.reason)
        return info.message or reason_text(info.reason)

    @property
    def next_text(self) -> str:
        key = _KINDS[self.info.kind][2]
        if self.info.kind in ("refused", "declined") and not self.info.sale_open:
            key = "next.new_sale"
        return t(key)

    @property
    def return_to(self) -> str:
        return "pay" if self.info.sale_open else "sale"

    @property
    def remaining_s(self) -> int:
        return max(0, math.ceil(self.shown_at + self.auto_return_s - self.clock()))

    @property
    def due(self) -> bool:
        return self.remaining_s == 0

    @property
    def back_text(self) -> str:
        return t("result.back_in", seconds=self.remaining_s)

    @property
    def print_label(self) -> str:
        return t("result.reprint") if self.printed else t("result.print")


def _known_reasons() -> set[str]:
    from terminal.app.ui.strings import EN

    return {k for k in EN if k.startswith("reason.")}
