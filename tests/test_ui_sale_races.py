"""Races at the counter: a tap or a Cancel that arrives while the invoice is being created must
never pay or hide a sale the merchant did not ring up."""

from __future__ import annotations

import asyncio

from terminal.app.demo import DemoEnvironment
from terminal.app.ui.viewmodels import Screen
from terminal.core.tips import NO_TIP
from terminal.services.till import PayPhase, Step

SLOW_GRAPHQL = {"latency_s": {"graphql": 0.4}}


async def _key_sats(till, amount: str) -> None:
    till.set_currency("SAT")
    till.entry.clear()
    for key in amount:
        till.key(key)
    assert await till.charge() and till.step is Step.TIP


def test_a_tap_held_for_a_refused_invoice_never_pays_the_next_sale(tmp_path):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path, background=False)
        c = env.controller()
        till = c.till
        try:
            balance = env.sandbox.core.card_state(env.cards["A"].card_id)["balance_msat"]
            env.sandbox.faults.update({**SLOW_GRAPHQL, "invoice_create_error_next": 1})
            await _key_sats(till, "500")
            first = asyncio.create_task(till.choose_tip(NO_TIP))
            await till.wait_until(lambda: till.phase is PayPhase.CREATING
                                  and till.step is Step.PAY, 5)
            assert await till.tap(env.tap("A")) is None  # held for the coming invoice
            assert await first is False  # the backend refused the invoice
            assert till.step is Step.RESULT
            env.sandbox.faults.update({"latency_s": {}})
            till.new_sale()
            await _key_sats(till, "200")
            assert await till.choose_tip(NO_TIP)
            second = till.session
            return second.sale.state.value, balance, env.sandbox.core.card_state(
                env.cards["A"].card_id)["balance_msat"]
        finally:
            await env.stop()

    state, before, after = asyncio.run(scenario())
    assert state == "invoiced"  # nobody tapped for the second sale
    assert after == before


def test_cancel_while_the_invoice_is_created_cancels_that_sale(tmp_path):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path, background=False)
        c = env.controller()
        till = c.till
        try:
            env.sandbox.faults.update(SLOW_GRAPHQL)
            await _key_sats(till, "500")
            opening = asyncio.create_task(till.choose_tip(NO_TIP))
            await till.wait_until(lambda: till.step is Step.PAY, 5)
            assert await till.cancel()
            assert await opening is False
            env.sandbox.faults.update({"latency_s": {}})
            keyed = till.entry.display  # the amount is kept for the next try
            await env.present("A")  # charges the kept amount: a tap after Cancel is a new sale
            sales = env.terminal.ledger.sales()
            return c.screen, keyed, sorted(s.state for s in sales), till.step
        finally:
            await env.stop()

    screen, keyed, states, step = asyncio.run(scenario())
    assert keyed == "500 sats"
    assert "cancelled" in states and len(states) == 1  # the tip step holds the second tap
    assert step is Step.TIP and screen is Screen.SALE
