"""Per-card limits and velocity (terminal.core.card_limits) and the card decision
(terminal.core.card_policy): properties over generated amounts, spends, limits and books."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.card_limits import (
    SPENDING_STATES,
    CardLimits,
    CardSpend,
    LimitRule,
    card_spend,
    decide_limits,
    explain,
)
from terminal.core.card_policy import (
    CARD_BLOCKED,
    UNKNOWN_CARD_OFFLINE,
    UNKNOWN_CARD_REFUSED,
    UnknownCardPolicy,
    decide_card,
)
from terminal.core.hotlist import TERMINAL_SOURCE, Block, Hotlist, HotlistSnapshot

msat = st.integers(min_value=0, max_value=10**12)
limit = st.none() | st.integers(min_value=0, max_value=10**12)
taps = st.none() | st.integers(min_value=0, max_value=50)
limits_st = st.builds(CardLimits, limit, limit, taps)
spend_st = st.builds(CardSpend, msat, st.integers(min_value=0, max_value=60))


@given(st.none() | msat, spend_st, limits_st)
def test_a_decision_names_the_first_rule_broken_and_accepts_only_within_every_rule(
        amount, spend, limits):
    decision = decide_limits(amount, spend, limits)
    tap_ok = amount is None or limits.per_tap_msat is None or amount <= limits.per_tap_msat
    day_ok = amount is None or limits.per_day_msat is None or \
        spend.today_msat + amount <= limits.per_day_msat
    hour_ok = limits.taps_per_hour is None or spend.taps_last_hour < limits.taps_per_hour
    if decision.accepted:
        assert tap_ok and day_ok and hour_ok and decision.rule is None
    else:
        expected = (LimitRule.PER_TAP if not tap_ok else
                    LimitRule.PER_DAY if not day_ok else LimitRule.TAPS_PER_HOUR)
        assert decision.rule is expected and decision.code == expected.value
        assert not (tap_ok and day_ok and hour_ok)


@given(msat, msat, spend_st, limits_st)
def test_a_smaller_amount_is_accepted_whenever_a_larger_one_is(a, b, spend, limits):
    small, large = sorted((a, b))
    if decide_limits(large, spend, limits).accepted:
        assert decide_limits(small, spend, limits).accepted


@given(st.none() | msat, spend_st)
def test_no_limits_accept_everything(amount, spend):
    assert decide_limits(amount, spend, CardLimits()).accepted


@given(limits_st, limits_st)
def test_tighter_is_never_looser_than_either(a, b):
    both = a.tighter(b)
    for name in ("per_tap_msat", "per_day_msat", "taps_per_hour"):
        x, y, z = getattr(a, name), getattr(b, name), getattr(both, name)
        assert z == (x if y is None else y if x is None else min(x, y))


def test_refusals_name_the_rule_and_the_numbers():
    limits = CardLimits(per_tap_msat=5_000_000, per_day_msat=20_000_000, taps_per_hour=3)
    assert explain(LimitRule.PER_DAY, 2_000_000, CardSpend(18_500_000, 1), limits) == (
        "This card may spend at most 20,000 sats a day; 18,500 already today.")
    assert explain(LimitRule.PER_TAP, 6_000_000, CardSpend(), limits) == (
        "This card may spend at most 5,000 sats a tap; this sale is 6,000 sats.")
    assert explain(LimitRule.TAPS_PER_HOUR, 1000, CardSpend(0, 3), limits) == (
        "This card may pay at most 3 times an hour; 3 already in the last hour.")
    assert "1,000.5 sats" in explain(LimitRule.PER_TAP, 1_000_500,
                                     CardSpend(), CardLimits(per_tap_msat=1_000_000))


def test_limits_refuse_negative_or_boolean_values():
    with pytest.raises(ValueError):
        CardLimits(per_tap_msat=-1)
    with pytest.raises(ValueError):
        CardLimits(taps_per_hour=True)


@dataclass(frozen=True)
class Row:
    card_id: str | None
    state: str
    created_at: float
    amount_msat: int | None


STATES = sorted(SPENDING_STATES | {"failed", "declined", "expired", "cancelled", "invoiced",
                                   "created", "card_read"})
NOW = 1_750_000_000.0
rows_st = st.lists(st.builds(
    Row, st.sampled_from(["a" * 32, "b" * 32, None]), st.sampled_from(STATES),
    st.floats(min_value=NOW - 3 * 86400, max_value=NOW), st.none() | msat), max_size=40)


@given(rows_st, st.floats(min_value=NOW - 86400, max_value=NOW))
def test_spend_counts_only_this_cards_money_moving_sales(rows, day_start):
    spend = card_spend(rows, "a" * 32, now=NOW, day_start=day_start)
    mine = [r for r in rows if r.card_id == "a" * 32 and r.state in SPENDING_STATES]
    assert spend.today_msat == sum(r.amount_msat or 0 for r in mine if r.created_at >= day_start)
    assert spend.taps_last_hour == sum(1 for r in mine if r.created_at > NOW - 3600)
    # Order does not matter; another card's sales and failed sales change nothing.
    assert card_spend(list(reversed(rows)), "a" * 32, now=NOW, day_start=day_start) == spend
    extra = rows + [Row("b" * 32, "paid", NOW, 10**9), Row("a" * 32, "failed", NOW, 10**9),
                    Row("a" * 32, "declined", NOW, 10**9)]
    assert card_spend(extra, "a" * 32, now=NOW, day_start=day_start) == spend


# -- the whole decision ------------------------------------------------------------------------

CARD = "c" * 32
BLOCK = Block(CARD, "reported lost", TERMINAL_SOURCE, NOW)


def _decide(**kw):
    args = dict(verified_card_id=CARD, host="cards.example", online=True,
                unknown_policy=UnknownCardPolicy.ONLINE_ONLY, block=None, limits=CardLimits(),
                spend=CardSpend(), amount_msat=1000)
    args.update(kw)
    return decide_card(**args)


@given(st.booleans(), limits_st, spend_st, st.none() | msat)
def test_a_blocked_card_is_refused_online_and_offline_whatever_its_limits(
        online, limits, spend, amount):
    refusal = _decide(online=online, block=BLOCK, limits=limits, spend=spend, amount_msat=amount)
    assert refusal is not None and refusal.code == CARD_BLOCKED
    assert "reported lost" in refusal.message and "this terminal" in refusal.message


def test_a_block_from_a_list_names_the_list():
    refusal = _decide(block=Block(CARD, "stolen", "issuer-list"))
    assert refusal.code == CARD_BLOCKED and "issuer-list" in refusal.message


@given(st.booleans(), st.sampled_from(list(UnknownCardPolicy)))
def test_unknown_cards_are_never_let_through_offline(online, policy):
    refusal = _decide(verified_card_id=None, online=online, unknown_policy=policy)
    if policy is UnknownCardPolicy.REQUIRE_VERIFICATION:
        assert refusal.code == UNKNOWN_CARD_REFUSED and "cards.example" in refusal.message
    elif online:
        assert refusal is None
    else:
        assert refusal.code == UNKNOWN_CARD_OFFLINE and "offline" in refusal.message


def test_limits_refuse_with_their_rule():
    refusal = _decide(limits=CardLimits(per_day_msat=20_000_000),
                      spend=CardSpend(18_500_000, 0), amount_msat=2_000_000)
    assert refusal.code == "card-limit-per-day"
    assert refusal.message == "This card may spend at most 20,000 sats a day; 18,500 already today."


def test_the_hotlist_merges_sources_and_keeps_the_terminals_block_first():
    snap = HotlistSnapshot("issuer", NOW, {CARD: "stolen", "d" * 32: "lost"},
                           {CARD: CardLimits(per_tap_msat=5)})
    other = HotlistSnapshot("lnbits", NOW, {}, {CARD: CardLimits(per_tap_msat=3,
                                                                 per_day_msat=9)})
    hotlist = Hotlist({CARD: BLOCK}, [snap, other])
    assert [b.source for b in hotlist.blocks_of(CARD)] == [TERMINAL_SOURCE, "issuer"]
    assert hotlist.block_of("d" * 32).reason == "lost"
    assert hotlist.block_of("e" * 32) is None
    assert hotlist.blocked_ids() == {CARD, "d" * 32}
    assert hotlist.issuer_limits(CARD) == CardLimits(per_tap_msat=3, per_day_msat=9)
