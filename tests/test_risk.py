"""Offline acceptance policy: each rule refuses on its own, names itself, and accepting is
monotonic (more money or more exposure never turns a refusal into an acceptance)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.risk import (
    Exposure,
    OfflineDecision,
    OfflineLimits,
    OfflineRule,
    OfflineTap,
    decide_offline,
    explain,
)

LIMITS = OfflineLimits(floor_limit_msat=20_000_000, per_card_cap_msat=50_000_000,
                       total_cap_msat=200_000_000, max_queued=50, max_age_s=3600)
NOW = 10_000.0
GOOD = OfflineTap(verified=True, counter=5, last_counter=4, amount_msat=1_000_000,
                  card_queued_msat=0, card_blocked=False)


def decide(tap: OfflineTap = GOOD, exposure: Exposure = Exposure(), limits=LIMITS):
    return decide_offline(tap, exposure, limits, NOW)


def with_(**changes) -> OfflineTap:
    return OfflineTap(**{**GOOD.__dict__, **changes})


def test_a_verified_fresh_small_tap_is_accepted():
    assert decide() == OfflineDecision(True)


@pytest.mark.parametrize(
    ("tap", "exposure", "limits", "rule"),
    [
        (GOOD, Exposure(), OfflineLimits(enabled=False), OfflineRule.DISABLED),
        (with_(verified=False), Exposure(), LIMITS, OfflineRule.UNVERIFIED),
        (with_(counter=None), Exposure(), LIMITS, OfflineRule.UNVERIFIED),
        (with_(counter=4), Exposure(), LIMITS, OfflineRule.REPLAYED),
        (with_(card_blocked=True), Exposure(), LIMITS, OfflineRule.CARD_BLOCKED),
        (with_(amount_msat=20_000_001), Exposure(), LIMITS, OfflineRule.FLOOR_LIMIT),
        (with_(card_queued_msat=49_500_000), Exposure(), LIMITS, OfflineRule.CARD_CAP),
        (GOOD, Exposure(queued_msat=199_500_000, count=1, oldest_at=NOW), LIMITS,
         OfflineRule.TOTAL_CAP),
        (GOOD, Exposure(queued_msat=1, count=50, oldest_at=NOW), LIMITS, OfflineRule.QUEUE_FULL),
        (GOOD, Exposure(queued_msat=1, count=1, oldest_at=NOW - 3601), LIMITS,
         OfflineRule.QUEUE_TOO_OLD),
    ],
)
def test_each_rule_refuses_and_names_itself(tap, exposure, limits, rule):
    decision = decide(tap, exposure, limits)
    assert not decision.accepted and decision.rule is rule
    assert decision.code == rule.value and decision.message
    assert explain(rule, limits, tap, exposure).startswith(decision.message)


def test_the_explanation_carries_the_numbers_that_decided():
    tap = with_(amount_msat=25_000_000)
    text = explain(OfflineRule.FLOOR_LIMIT, LIMITS, tap, Exposure())
    assert "25,000 sats > 20,000 sats" in text


amounts = st.integers(1, 10**9)
exposures = st.builds(Exposure, queued_msat=st.integers(0, 10**9), count=st.integers(0, 100),
                      oldest_at=st.none() | st.floats(NOW - 10**5, NOW))


# Property: raising the amount, the card's queued total or the terminal's exposure never turns
# a refusal into an acceptance.
@given(amount=amounts, extra=amounts, queued=st.integers(0, 10**9), exposure=exposures)
def test_more_risk_never_turns_a_refusal_into_an_acceptance(amount, extra, queued, exposure):
    small = with_(amount_msat=amount, card_queued_msat=queued)
    large = with_(amount_msat=amount + extra, card_queued_msat=queued + extra)
    bigger_exposure = Exposure(exposure.queued_msat + extra, exposure.count + 1, exposure.oldest_at)
    if not decide(small, exposure).accepted:
        assert not decide(large, exposure).accepted
        assert not decide(small, bigger_exposure).accepted


# Property: an accepted tap keeps every limit.
@given(amount=amounts, queued=st.integers(0, 10**9), exposure=exposures)
def test_an_accepted_tap_keeps_every_limit(amount, queued, exposure):
    tap = with_(amount_msat=amount, card_queued_msat=queued)
    if decide(tap, exposure).accepted:
        assert amount <= LIMITS.floor_limit_msat
        assert queued + amount <= LIMITS.per_card_cap_msat
        assert exposure.queued_msat + amount <= LIMITS.total_cap_msat
        assert exposure.count + 1 <= LIMITS.max_queued
