"""Per-card limits and velocity (core, no I/O): how much one card may spend, and how often.

Three rules, checked online and offline right after the tap's SUN verified (before any network
call and before the offline policy), cheapest first; each refusal names its rule and its numbers:

- per tap: this sale's amount is at most `per_tap_msat`;
- per day: what the card already spent today (the terminal's local calendar day) plus this sale
  is at most `per_day_msat`;
- taps per hour: the card paid fewer than `taps_per_hour` times in the last 60 minutes.

What a card "spent" is counted from the books, never kept apart: its sales that moved money or
may still move it (paid, accepted offline and queued or being sent, a callback sent whose outcome
is not known yet, an issuer refusal not confirmed by the invoice). Failed, declined, expired and
cancelled sales spent nothing. A sale counts at its creation time, as every total does
(`terminal.core.totals`). `None` means "no limit" for that rule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from terminal.core.money import Msat, format_msat

HOUR_S = 3600.0
# Sale states whose money moved or may still move (`unconfirmed`: an issuer's refusal after the
# callback, the invoice still open).
SPENDING_STATES = frozenset({"paid", "queued", "submitted", "callback_sent", "unconfirmed"})


@dataclass(frozen=True)
class CardLimits:
    per_tap_msat: int | None = None
    per_day_msat: int | None = None
    taps_per_hour: int | None = None

    def __post_init__(self) -> None:
        for name in ("per_tap_msat", "per_day_msat", "taps_per_hour"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None")

    @property
    def unlimited(self) -> bool:
        return self.per_tap_msat is None and self.per_day_msat is None and \
            self.taps_per_hour is None

    def tighter(self, other: CardLimits) -> CardLimits:
        """The stricter of the two, rule by rule (an issuer's limits on top of the terminal's)."""
        return CardLimits(_least(self.per_tap_msat, other.per_tap_msat),
                          _least(self.per_day_msat, other.per_day_msat),
                          _least(self.taps_per_hour, other.taps_per_hour))

    def to_json(self) -> dict[str, int | None]:
        """Whole sats, as `flash-terminal card list` shows them (null: no limit)."""
        return {
            "per_tap_sats": None if self.per_tap_msat is None else self.per_tap_msat // 1000,
            "per_day_sats": None if self.per_day_msat is None else self.per_day_msat // 1000,
            "taps_per_hour": self.taps_per_hour,
        }


def _least(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class SpendFacts(Protocol):
    """What counting reads of a sale (a `SaleRecord` or the books' `SaleSummary`)."""

    @property
    def card_id(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def amount_msat(self) -> int | None: ...


@dataclass(frozen=True)
class CardSpend:
    today_msat: int = 0  # spent since the start of the local day
    taps_last_hour: int = 0  # paying taps in the last 60 minutes


def card_spend(records: Iterable[SpendFacts], card_id: str, *, now: float,
               day_start: float) -> CardSpend:
    """What `card_id` spent today and how many times it paid in the last hour."""
    today = taps = 0
    hour_start = now - HOUR_S
    for record in records:
        if record.card_id != card_id or record.state not in SPENDING_STATES:
            continue
        if record.created_at >= day_start:
            today += record.amount_msat or 0
        if record.created_at > hour_start:
            taps += 1
    return CardSpend(today, taps)


class LimitRule(enum.Enum):
    PER_TAP = "card-limit-per-tap"
    PER_DAY = "card-limit-per-day"
    TAPS_PER_HOUR = "card-limit-per-hour"


@dataclass(frozen=True)
class LimitDecision:
    accepted: bool
    rule: LimitRule | None = None

    @property
    def code(self) -> str | None:
        return self.rule.value if self.rule else None


def decide_limits(amount_msat: int | None, spend: CardSpend, limits: CardLimits
                  ) -> LimitDecision:
    """Apply the rules in order. `amount_msat` None (not priced yet) skips the amount rules."""
    if amount_msat is not None:
        if limits.per_tap_msat is not None and amount_msat > limits.per_tap_msat:
            return LimitDecision(False, LimitRule.PER_TAP)
        if limits.per_day_msat is not None and \
                spend.today_msat + amount_msat > limits.per_day_msat:
            return LimitDecision(False, LimitRule.PER_DAY)
    if limits.taps_per_hour is not None and spend.taps_last_hour + 1 > limits.taps_per_hour:
        return LimitDecision(False, LimitRule.TAPS_PER_HOUR)
    return LimitDecision(True)


def sats_text(msat: int) -> str:
    """ "20,000 sats"; a sub-sat remainder is shown, never rounded away."""
    return format_msat(Msat(msat))


def explain(rule: LimitRule, amount_msat: int | None, spend: CardSpend,
            limits: CardLimits) -> str:
    """The refusal in words, with the rule's numbers (screen, `charge --json`, the books)."""
    if rule is LimitRule.PER_TAP:
        return (f"This card may spend at most {sats_text(limits.per_tap_msat or 0)} a tap; this "
                f"sale is {sats_text(amount_msat or 0)}.")
    if rule is LimitRule.PER_DAY:
        return (f"This card may spend at most {sats_text(limits.per_day_msat or 0)} a day; "
                f"{sats_text(spend.today_msat).removesuffix(' sats')} already today.")
    times = limits.taps_per_hour or 0
    return (f"This card may pay at most {times} time{'s' if times != 1 else ''} an hour; "
            f"{spend.taps_last_hour} already in the last hour.")
