"""The Refund screen's presenter and the demo's `refund` verb, without a window: History > a paid
sale > Refund behind a manager's PIN, all or part, the card that paid tapped again or an address,
the outcome and the slip; against the in-process sandbox (real HTTP, simulated cards)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from terminal.app.demo import CARD_A_SATS, DEMO_ADMIN_PIN, DemoEnvironment
from terminal.app.demo_script import ScriptError, parse_script, run_script
from terminal.app.ui.viewmodels import Screen
from terminal.app.ui.viewmodels.refund import RefundPhase
from terminal.app.ui.viewmodels.tones import Tone
from terminal.services.till import Step


def run(coro):
    return asyncio.run(coro)


async def paid_sale(env: DemoEnvironment, digits: str = "1000", code: str = "SAT") -> str:
    till = env.till
    till.set_currency(code)
    for key in digits:
        till.key(key)
    await till.charge()
    if till.step is Step.TIP:
        from terminal.core.tips import NO_TIP

        await till.choose_tip(NO_TIP)
    await env.present("A")
    await till.wait_until(lambda: till.step is Step.RESULT, 15)
    assert till.result.kind.value == "paid", till.result
    sale_id = till.result.sale_id
    till.new_sale()
    return sale_id


def test_refund_by_the_screens_logic_pin_part_card_then_an_address(tmp_path: Path) -> None:
    slips: list[str] = []

    async def scenario():
        env = await DemoEnvironment.start(tmp_path, receipt_sink=slips.append, background=False)
        try:
            c = env.controller()
            sale_id = await paid_sale(env)
            a_after_sale = env.sandbox.core.card_state(env.cards["A"].card_id)["balance_msat"]
            c.go(Screen.HISTORY)
            c.history.select(sale_id)
            assert c.history.can_refund
            assert c.open_refund(sale_id) and c.screen is Screen.REFUND
            vm = c.refund
            assert vm.phase is RefundPhase.PIN  # a manager's, and nobody is signed in
            for key in "9999":
                vm.pin_key(key)
            vm.pin_submit()
            assert vm.phase is RefundPhase.PIN and "Wrong PIN" in vm.message
            for key in DEMO_ADMIN_PIN:
                vm.pin_key(key)
            vm.pin_submit()
            assert vm.phase is RefundPhase.CHOOSE
            assert any("Left to refund 1,000 sats" in line for line in vm.sale_lines())
            assert vm.amount_text.startswith("All that is left: 1,000 sats")
            for key in "1200":  # the keypad takes no more than the sale was
                vm.key(key)
            assert vm.entry.minor == 120
            vm.key("clear")
            for key in "400":
                vm.key(key)
            assert vm.problem is None and "400 sats" in vm.amount_text
            # A tap before "Tap card" is not a refund (and never a sale from this screen).
            await env.present("A")
            assert vm.phase is RefundPhase.CHOOSE and "Tap card" in vm.message
            assert env.till.step is Step.AMOUNT and c.screen is Screen.REFUND
            vm.choose_card()
            assert vm.waiting_for_card
            await env.present("A")  # the customer taps the card that paid
            assert vm.phase is RefundPhase.DONE
            assert vm.outcome.status == "sent" and vm.outcome_tone is Tone.SUCCESS
            assert vm.outcome_title == "Refunded 400 sats"
            card_now = env.sandbox.core.card_state(env.cards["A"].card_id)["balance_msat"]
            assert card_now == a_after_sale + 400_000
            assert await vm.print_slip() and "REFUND" in slips[-1] and "REFUNDED" in slips[-1]
            assert "400 sats" in slips[-1] and "card " in slips[-1]
            # The rest to a Lightning Address.
            vm.again()
            assert vm.phase is RefundPhase.CHOOSE  # the Admin pad stays open meanwhile
            assert "Left to refund 600 sats" in "\n".join(vm.sale_lines())
            for key in "700":
                vm.key(key)
            assert vm.problem and "more than is left" in vm.problem
            vm.choose_card()
            assert vm.phase is RefundPhase.CHOOSE  # not with an amount above what is left
            vm.set_full()
            vm.set_address(env.sandbox.address("ivo"))
            outcome = await vm.send_to_address()
            assert outcome.status == "sent" and outcome.amount_msat == 600_000
            assert env.sandbox.customer_balance_msat("ivo") == 600_000
            c.refund_done()
            assert c.screen is Screen.HISTORY
            c.history.select(sale_id)
            assert not c.history.can_refund  # all of it is back
            assert any("Refunded: 1,000 sats (2)" in line for line in c.history.detail())
            return True
        finally:
            await env.stop()

    assert run(scenario())


def test_a_signed_in_manager_needs_no_pin_and_a_failure_says_nothing_was_sent(tmp_path: Path):
    async def scenario():
        env = await DemoEnvironment.start(tmp_path, background=False)
        try:
            c = env.controller()
            sale_id = await paid_sale(env, "500")
            assert env.till.sign_in("max", "2222").value == "ok"
            assert c.open_refund(sale_id)
            vm = c.refund
            assert vm.phase is RefundPhase.CHOOSE
            assert await vm.send_to_address() is None  # nowhere given
            assert "where the refund goes" in vm.message
            vm.set_address("not an address")
            assert await vm.send_to_address() is None
            assert vm.phase is RefundPhase.CHOOSE and "not a Lightning Address" in vm.message
            env.sandbox.faults.update({"send_failure_next": 1})
            vm.set_address(env.sandbox.address("jo"))
            outcome = await vm.send_to_address()
            assert outcome.status == "failed" and vm.outcome_tone is Tone.ERROR
            assert vm.outcome_title == "Refund failed: nothing was sent"
            with env.terminal.ledger.transaction():
                pass
            [refund] = env.terminal.ledger.refunds(sale_id)
            assert refund.cashier == "max" and refund.state == "failed"
            return True
        finally:
            await env.stop()

    assert run(scenario())


def test_the_demo_script_refund_verb(tmp_path: Path) -> None:
    out = io.StringIO()
    seen: list[DemoEnvironment] = []

    def setup(env: DemoEnvironment) -> None:
        seen.append(env)

    script = """
        amount 3000
        currency SAT
        charge
        tip none
        tap A
        refund 1000 card A       # nobody is a manager yet: the PIN pad
        sign-in max 2222
        refund 1000 card A
        refund 500 to ana
        refund to ana            # all that is left
        refund to ana            # nothing left
        amount 500
        charge
    """
    code = run(run_script(parse_script(script), out, work_dir=tmp_path, on_env=setup))
    assert code == 0
    shots = [json.loads(line) for line in out.getvalue().splitlines()]
    assert shots[4]["sale"]["state"] == "paid"
    assert (shots[5]["screen"], shots[5]["message"]) == ("refund", "A manager's PIN")
    assert shots[7]["message"].startswith("Refunded 1,000 sats")
    assert shots[8]["message"].startswith("Refunded 500 sats")
    assert shots[9]["message"].startswith("Refunded 1,500 sats")
    assert "Everything paid for this sale has been refunded" in shots[10]["message"]
    assert shots[12]["screen"] == "tip"  # back at the counter for the next sale
    env = seen[0]  # stopped by now; the sandbox's files remain
    from terminal.sandbox.server import Sandbox

    core = Sandbox(tmp_path / "sandbox").core
    assert core.customer_wallet("ana").balance_msat == 2_000_000
    assert core.card_state(env.cards["A"].card_id)["balance_msat"] == \
        CARD_A_SATS * 1000 - 3_000_000 + 1_000_000


@pytest.mark.parametrize("line", ["refund", "refund card", "refund card C", "refund 5 to",
                                  "refund x card A", "refund to a b"])
def test_a_malformed_refund_step_names_its_line(line: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(f"amount 5\n{line}\n")
    assert "line 2" in str(info.value)
