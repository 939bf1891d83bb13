"""Offline acceptance policy (core, no I/O).

When the backend cannot be reached, a tap may still be accepted and queued, but only when every
rule below holds. Each refusal names its rule: it goes on screen and into the ledger.
The card's counter freshness is checked (and the new counter stored) by the ledger before this
policy runs; the policy re-checks it so it can never be called out of order by mistake.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OfflineRule(enum.Enum):
    DISABLED = "offline-disabled"
    UNVERIFIED = "offline-unverified-card"
    REPLAYED = "offline-replayed-counter"
    FLOOR_LIMIT = "offline-floor-limit"
    CARD_CAP = "offline-card-cap"
    TOTAL_CAP = "offline-total-cap"
    QUEUE_FULL = "offline-queue-full"
    QUEUE_TOO_OLD = "offline-queue-too-old"
    CARD_BLOCKED = "offline-card-blocked"


MESSAGES = {
    OfflineRule.DISABLED: "The terminal is offline and offline payments are turned off.",
    OfflineRule.UNVERIFIED: "Offline, only cards from a configured issuer can be accepted, "
    "and this card could not be verified here.",
    OfflineRule.REPLAYED: "This tap was already used. Ask the customer to tap again.",
    OfflineRule.FLOOR_LIMIT: "The amount is above the offline limit per tap.",
    OfflineRule.CARD_CAP: "This card has reached its offline limit until the terminal is online.",
    OfflineRule.TOTAL_CAP: "The terminal has reached its total offline limit.",
    OfflineRule.QUEUE_FULL: "Too many offline payments are waiting to be sent.",
    OfflineRule.QUEUE_TOO_OLD: "Offline payments have been waiting too long: reconnect the "
    "terminal before accepting more.",
    OfflineRule.CARD_BLOCKED: "This card is blocked on this terminal.",
}


def _sats(msat: int) -> str:
    return f"{msat // 1000:,} sats"


def explain(rule: OfflineRule, limits: OfflineLimits, tap: OfflineTap, exposure: Exposure) -> str:
    """The rule's message with the numbers that decided it (for the screen and the ledger)."""
    base = MESSAGES[rule]
    numbers = {
        OfflineRule.FLOOR_LIMIT: f"{_sats(tap.amount_msat)} > {_sats(limits.floor_limit_msat)}",
        OfflineRule.CARD_CAP: f"{_sats(tap.card_queued_msat)} waiting for this card, limit "
                              f"{_sats(limits.per_card_cap_msat)}",
        OfflineRule.TOTAL_CAP: f"{_sats(exposure.queued_msat)} waiting, limit "
                               f"{_sats(limits.total_cap_msat)}",
        OfflineRule.QUEUE_FULL: f"{exposure.count} waiting, limit {limits.max_queued}",
    }.get(rule)
    return f"{base} ({numbers})" if numbers else base


@dataclass(frozen=True)
class OfflineLimits:
    enabled: bool = True
    floor_limit_msat: int = 20_000_000
    per_card_cap_msat: int = 50_000_000
    total_cap_msat: int = 200_000_000
    max_queued: int = 50
    max_age_s: int = 24 * 3600


@dataclass(frozen=True)
class Exposure:
    """What the terminal is owed by queued offline taps."""

    queued_msat: int = 0
    count: int = 0
    oldest_at: float | None = None

    def oldest_age_s(self, now: float) -> float | None:
        return None if self.oldest_at is None else max(0.0, now - self.oldest_at)


@dataclass(frozen=True)
class OfflineTap:
    verified: bool  # SUN verified locally against a configured issuer
    counter: int | None
    last_counter: int  # as stored before this tap (-1 for a new card)
    amount_msat: int
    card_queued_msat: int
    card_blocked: bool


@dataclass(frozen=True)
class OfflineDecision:
    accepted: bool
    rule: OfflineRule | None = None

    @property
    def message(self) -> str:
        if self.accepted:
            return "Accepted offline: it will be paid when the terminal reconnects."
        return MESSAGES[self.rule] if self.rule is not None else "Not accepted offline."

    @property
    def code(self) -> str | None:
        return self.rule.value if self.rule else None


def decide_offline(
    tap: OfflineTap, exposure: Exposure, limits: OfflineLimits, now: float
) -> OfflineDecision:
    """Apply the rules in order, cheapest and most specific first."""

    def refuse(rule: OfflineRule) -> OfflineDecision:
        return OfflineDecision(False, rule)

    if not limits.enabled:
        return refuse(OfflineRule.DISABLED)
    if not tap.verified or tap.counter is None:
        return refuse(OfflineRule.UNVERIFIED)
    if tap.counter <= tap.last_counter:
        return refuse(OfflineRule.REPLAYED)
    if tap.card_blocked:
        return refuse(OfflineRule.CARD_BLOCKED)
    if tap.amount_msat > limits.floor_limit_msat:
        return refuse(OfflineRule.FLOOR_LIMIT)
    if tap.card_queued_msat + tap.amount_msat > limits.per_card_cap_msat:
        return refuse(OfflineRule.CARD_CAP)
    if exposure.queued_msat + tap.amount_msat > limits.total_cap_msat:
        return refuse(OfflineRule.TOTAL_CAP)
    if exposure.count + 1 > limits.max_queued:
        return refuse(OfflineRule.QUEUE_FULL)
    age = exposure.oldest_age_s(now)
    if age is not None and age > limits.max_age_s:
        return refuse(OfflineRule.QUEUE_TOO_OLD)
    return OfflineDecision(True)
