"""Sale state machine: transitions, held taps, late taps, and stateful properties."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from terminal.core.sale import (
    REOPENABLE_BY_PAYMENT,
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    LateTap,
    Sale,
    SaleState,
)

S = SaleState


def test_card_sale_happy_path_records_every_step():
    sale = Sale("s1", created_at=0.0)
    assert sale.invoice_ready(1.0) is None
    assert sale.tap("tap-1", 2.0) is None
    sale.apply("withdraw_requested", 3.0)
    sale.apply("callback_sent", 4.0)
    sale.apply("paid", 5.0)
    assert sale.state is S.PAID
    assert [t.to_state for t in sale.history] == [
        S.CREATED, S.INVOICED, S.CARD_READ, S.WITHDRAW_REQUESTED, S.CALLBACK_SENT, S.PAID,
    ]


def test_tap_before_invoice_is_held_and_used_when_ready():
    sale = Sale("s2", created_at=0.0)
    assert sale.tap("early", 0.5) is None
    assert sale.state is S.CREATED
    assert sale.invoice_ready(1.0) == "early"
    assert sale.state is S.CARD_READ
    assert sale.pending_tap is None


def test_second_tap_before_invoice_is_answered_not_swallowed():
    sale = Sale("s3", created_at=0.0)
    sale.tap("first", 0.1)
    late = sale.tap("second", 0.2)
    assert isinstance(late, LateTap) and "already" in late.message


def test_tap_after_paid_gets_its_own_answer_and_changes_nothing():
    sale = Sale("s4", created_at=0.0)
    sale.invoice_ready(1.0)
    sale.apply("paid", 2.0)
    late = sale.tap("late", 3.0)
    assert isinstance(late, LateTap)
    assert "already paid" in late.message
    assert sale.state is S.PAID and len(sale.history) == 3


def test_refused_tap_reopens_the_invoice_for_another_card():
    sale = Sale("s5", created_at=0.0)
    sale.invoice_ready(1.0)
    sale.tap("t", 2.0)
    sale.apply("withdraw_requested", 3.0)
    sale.apply("tap_failed", 4.0, "insufficient-balance")
    assert sale.state is S.INVOICED
    assert sale.tap("t2", 5.0) is None and sale.state is S.CARD_READ


def test_payment_in_flight_cannot_be_cancelled():
    sale = Sale("s6", created_at=0.0)
    sale.invoice_ready(1.0)
    sale.tap("t", 2.0)
    sale.apply("withdraw_requested", 3.0)
    sale.apply("callback_sent", 4.0)
    with pytest.raises(IllegalTransition):
        sale.apply("cancel", 5.0)


def test_offline_path_queued_submitted_paid():
    sale = Sale("s7", created_at=0.0)
    sale.apply("queued", 1.0)
    sale.apply("submitted", 2.0)
    sale.apply("paid", 3.0)
    assert sale.state is S.PAID


def test_declined_keeps_the_rule_as_reason():
    sale = Sale("s8", created_at=0.0)
    sale.apply("declined", 1.0, "offline-floor-limit")
    assert sale.state is S.DECLINED and sale.reason == "offline-floor-limit"


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES, key=lambda s: s.value))
def test_only_a_late_payment_leaves_a_terminal_state(terminal):
    for event, table in TRANSITIONS.items():
        if event == "paid_late" and terminal in REOPENABLE_BY_PAYMENT:
            assert table[terminal] is S.PAID
            continue
        assert terminal not in table, f"{event} leaves {terminal}"


def test_a_wallet_paying_after_cancel_is_recorded_as_paid():
    sale = Sale("s9", created_at=0.0)
    sale.invoice_ready(1.0)
    sale.apply("cancel", 2.0, "cancelled-by-merchant")
    sale.apply("paid_late", 3.0)
    assert sale.state is S.PAID
    with pytest.raises(IllegalTransition):
        sale.apply("paid_late", 4.0)


EVENTS = sorted(TRANSITIONS)


class SaleMachine(RuleBasedStateMachine):
    """Random event sequences: a sale is paid at most once, nothing follows PAID (so it never
    ends failed after being paid), and a terminal state is left only by a late payment."""

    @initialize()
    def start(self):
        self.sale = Sale("prop", created_at=0.0)
        self.clock = 0.0
        self.terminal_seen: list[SaleState] = []

    @rule(event=st.sampled_from(EVENTS), detail=st.none() | st.text(max_size=5))
    def fire(self, event, detail):
        self.clock += 1
        before = self.sale.state
        try:
            after = self.sale.apply(event, self.clock, detail)
        except IllegalTransition:
            assert self.sale.state is before
            assert before not in TRANSITIONS[event]
            return
        assert TRANSITIONS[event][before] is after
        if after.is_terminal:
            self.terminal_seen.append(after)

    @rule(tap=st.integers())
    def tap(self, tap):
        self.clock += 1
        before = self.sale.state
        answer = self.sale.tap(tap, self.clock)
        if before.is_terminal:
            assert isinstance(answer, LateTap) and self.sale.state is before

    @rule()
    def invoice(self):
        self.clock += 1
        if self.sale.state is S.CREATED:
            self.sale.invoice_ready(self.clock)
            assert self.sale.state in (S.INVOICED, S.CARD_READ)

    @invariant()
    def paid_once_and_final(self):
        states = [t.to_state for t in self.sale.history]
        assert states.count(S.PAID) <= 1
        if S.PAID in states:
            assert states[-1] is S.PAID  # nothing after paid: never failed once paid
        # terminal states reached: at most one, or a reopenable one followed by PAID
        assert len(self.terminal_seen) <= 2
        if len(self.terminal_seen) == 2:
            first, second = self.terminal_seen
            assert first in REOPENABLE_BY_PAYMENT and second is S.PAID
        if self.terminal_seen:
            assert self.sale.state is self.terminal_seen[-1]


TestSaleMachine = SaleMachine.TestCase
