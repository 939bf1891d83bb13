"""Races at the counter: a tap or a Cancel that arrives while the invoice is being created must
never pay or hide a sale the merchant did not ring up."""

from __future__ import annotations

import asyncio

from terminal.app.demo import DemoEnvironment
from terminal.app.ui.viewmodels import Screen
from terminal.app.ui.viewmodels.sale import ChargeRequest

SLOW_GRAPHQL = {"latency_s": {"graphql": 0.4}}


async def _until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_a_tap_held_for_a_refused_invoice_never_pays_the_next_sale(tmp_path):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path)
        c = env.controller()
        try:
            await c.refresh_rates()
            balance = env.sandbox.core.card_state(env.cards["A"].card_id)["balance_msat"]
            env.sandbox.faults.update({**SLOW_GRAPHQL, "invoice_create_error_next": 1})
            first = asyncio.create_task(c.charge(ChargeRequest(500, "SAT", "first")))
            await _until(lambda: c._opening)
            assert await c.handle_tap(env.tap("A")) is None  # held for the coming invoice
            assert await first is False  # the backend refused the invoice
            env.sandbox.faults.update({"latency_s": {}})
            c.result_done()
            assert await c.charge(ChargeRequest(200, "SAT", "second"))
            second = c.session
            return second.sale.state.value, balance, env.sandbox.core.card_state(
                env.cards["A"].card_id)["balance_msat"]
        finally:
            await c.aclose()
            await env.stop()

    state, before, after = asyncio.run(scenario())
    assert state == "invoiced"  # nobody tapped for the second sale
    assert after == before


def test_cancel_while_the_invoice_is_created_cancels_that_sale(tmp_path):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path)
        c = env.controller()
        try:
            await c.refresh_rates()
            env.sandbox.faults.update(SLOW_GRAPHQL)
            opening = asyncio.create_task(c.charge(ChargeRequest(500, "SAT", "oops")))
            await _until(lambda: c._opening)
            await c.cancel()
            assert await opening is False
            env.sandbox.faults.update({"latency_s": {}})
            late = await c.handle_tap(env.tap("A"))  # no sale open: nothing is charged
            sales = env.terminal.ledger.sales()
            return c.screen, c.session, late, [s.state for s in sales]
        finally:
            await c.aclose()
            await env.stop()

    screen, session, late, states = asyncio.run(scenario())
    assert screen is Screen.SALE and session is None and late is None
    assert states == ["cancelled"]
