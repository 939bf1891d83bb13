"""The terminal's view of a backend's rate limits (`terminal.core.budget`), checked against the
sandbox's independent re-implementation of Flash's limiter (rate-limiter-flexible's fixed window
and block, `terminal.sandbox.limits`): whatever the timing, a terminal alone on its account
never sends the request that trips the block."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.core.budget import (
    FLASH_INVOICE_LIMIT,
    BudgetState,
    WindowBudget,
    WindowState,
)
from terminal.sandbox.limits import FixedWindowLimiter

# One step of a terminal's life: wait, then ask for a slot (sale or background), the request
# reaching the server `latency` later and its answer coming back as much later again.
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=200), st.booleans(),
              st.floats(min_value=0, max_value=2)),
    min_size=1, max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_a_terminal_alone_never_trips_flash_invoice_block(steps):
    # Property: every request the budget lets go is accepted by Flash's own limiter.
    budget = WindowBudget(FLASH_INVOICE_LIMIT)
    server = FixedWindowLimiter(20, 120.0, 300.0)
    now = 1_000_000.0
    for wait, background, latency in steps:
        now += wait
        ticket = budget.take(now, background=background)
        if ticket is None:
            assert budget.wait_s(now, background=background) > 0
            continue
        assert server.consume("account", now + latency) is None, "the budget tripped the block"
        budget.answered(now + 2 * latency, ticket)
        now += 2 * latency
    assert server.blocks == 0


@settings(max_examples=200, deadline=None)
@given(steps=steps)
def test_background_work_always_leaves_the_counter_a_slot(steps):
    # Property: in any window, background requests alone never take the last slot(s).
    budget = WindowBudget(FLASH_INVOICE_LIMIT)
    now = 1_000_000.0
    for wait, _sale, latency in steps:
        now += wait
        ticket = budget.take(now, background=True)
        if ticket is not None:
            budget.answered(now + latency, ticket)
        assert budget.state.used <= FLASH_INVOICE_LIMIT.points - budget.reserve()
        assert budget.wait_s(now, background=False) == 0  # a sale could still go now


def test_a_block_tripped_elsewhere_is_probed_by_sales_and_waited_by_background():
    budget = WindowBudget(FLASH_INVOICE_LIMIT)
    budget.refused(1000.0)
    assert budget.wait_s(1000.0, background=False) == 0  # a sale may probe: refusals are free
    assert 29 <= budget.wait_s(1000.0, background=True) <= 30
    probe = budget.take(1031.0, background=True)
    assert probe is not None and probe.probe and budget.state.used == 0
    assert budget.wait_s(1031.0, background=True) > 0
    budget.roll(1301.0)
    assert budget.state.blocked_until is None
    assert budget.take(1301.0, background=True) is not None


def test_drain_time_counts_whole_windows_after_what_is_left():
    budget = WindowBudget(FLASH_INVOICE_LIMIT)
    window = FLASH_INVOICE_LIMIT.duration_s + FLASH_INVOICE_LIMIT.margin_s
    assert budget.time_for(0, 0.0) == 0.0
    assert budget.time_for(19, 0.0) == 0.0  # one fresh window holds 19 background invoices
    assert budget.time_for(20, 0.0) == window
    assert budget.time_for(200, 0.0) == 10 * window  # 11 windows: the last opens 10 on
    ticket = budget.take(0.0, background=True)
    assert ticket is not None
    budget.answered(0.0, ticket)
    assert budget.time_for(18, 10.0) == 0.0
    assert abs(budget.time_for(19, 10.0) - (window - 10.0)) < 1e-9


@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                              st.text(max_size=5)),
                    lambda c: st.one_of(st.lists(c, max_size=3),
                                        st.dictionaries(st.text(max_size=12), c, max_size=6)),
                    max_leaves=20))
def test_a_damaged_budget_file_reads_as_some_valid_state(raw):
    # Property: whatever the file holds, it loads as a state of the right types (never raises).
    state = BudgetState.from_json(raw)
    for window in (state.invoices, state.api_key):
        assert isinstance(window, WindowState)
        for name, value in window.to_json().items():
            assert value is None or isinstance(value, int | float | bool), (name, value)
    assert BudgetState.from_json(json.loads(json.dumps(state.to_json()))) == state
