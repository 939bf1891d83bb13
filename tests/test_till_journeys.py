"""The till as a cashier lives it: scripted journeys (`demo --headless --script`) through the
demo's till, the sandbox (real HTTP/WebSocket on loopback) and the simulated cards, one JSON
snapshot per step. Each test is one of the counter's defects turned into a journey."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from terminal.app.demo import DemoEnvironment
from terminal.app.demo_script import ScriptError, parse_script, run_script

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"step", "screen", "sale", "online", "queue", "message"}


def journey(tmp_path: Path, script: str) -> tuple[list[dict[str, Any]], DemoEnvironment]:
    out = io.StringIO()
    seen: list[DemoEnvironment] = []
    code = asyncio.run(run_script(parse_script(script), out, work_dir=tmp_path,
                                  on_env=seen.append))
    assert code == 0
    shots = [json.loads(line) for line in out.getvalue().splitlines()]
    for shot in shots:
        assert set(shot) == KEYS
    return shots, seen[0]


def by_step(shots: list[dict[str, Any]], step: str, nth: int = 0) -> dict[str, Any]:
    return [s for s in shots if s["step"] == step][nth]


def test_after_an_offline_acceptance_the_next_sale_is_keyed_and_charged_at_once(tmp_path):
    shots, _env = journey(tmp_path, """
        network off
        amount 5
        charge
        tip none
        tap A
        amount 3
        charge
        tip none
        tap A
        network on
        sync
        amount 2
        charge
        tip none
        pay-qr
    """)
    queued = by_step(shots, "tap A")
    assert queued["screen"] == "result" and queued["sale"]["state"] == "queued"
    assert queued["queue"]["count"] == 1 and not queued["online"]
    # The very next key starts a new sale: no New-sale touch, no stuck "Accepted offline".
    keyed = by_step(shots, "amount 3")
    assert keyed["screen"] == "sale" and keyed["message"] == "$3"
    second = by_step(shots, "tap A", 1)
    assert second["sale"]["state"] == "queued" and second["queue"]["count"] == 2
    assert second["sale"]["id"] != queued["sale"]["id"]
    synced = by_step(shots, "sync")
    assert synced["online"] and synced["queue"] == {"count": 0, "msat": 0}
    assert synced["sale"]["state"] == "paid"  # the books, as the sync worker left them
    paid = shots[-1]
    assert paid["screen"] == "result" and paid["sale"]["state"] == "paid"


def test_a_tip_survives_back_and_is_recorded_on_the_sale_receipt_and_export(tmp_path):
    shots, env = journey(tmp_path, """
        amount 20
        charge
        currency JMD
        back
        charge
        tip 15
        tap A
    """)
    tip = by_step(shots, "charge")
    assert tip["screen"] == "tip" and tip["message"] == "Add a tip to $20.00?"
    locked = by_step(shots, "currency JMD")
    assert locked["screen"] == "tip" and "Go back" in locked["message"]
    back = by_step(shots, "back")
    assert back["screen"] == "sale" and back["message"] == "$20"  # the amount is kept
    paid = shots[-1]
    sale = paid["sale"]
    assert sale["state"] == "paid"
    # $3.00 of $23.00: the tip's share of the sats, exactly proportional.
    assert sale["tip_msat"] == sale["amount_msat"] * 300 // 2300
    record = env.terminal.ledger.get_sale(sale["id"])
    assert (record.amount_minor, record.tip_minor) == (2300, 300)


def test_a_refusal_stays_on_screen_and_the_sale_ends_failed_with_its_reason(tmp_path):
    shots, _env = journey(tmp_path, """
        amount 5
        charge
        tip none
        tap B
        wait 7
        new-sale
    """)
    refused = by_step(shots, "tap B")
    assert refused["screen"] == "result" and refused["message"].startswith("Card refused")
    later = by_step(shots, "wait 7")  # longer than the demo's result_seconds (6)
    assert later["screen"] == "result" and later["message"] == refused["message"]
    ended = shots[-1]
    assert ended["screen"] == "sale"
    assert ended["sale"]["state"] == "failed"
    assert ended["sale"]["reason"] == "insufficient-balance"


def test_a_tap_with_the_amount_keyed_charges_it(tmp_path):
    shots, _env = journey(tmp_path, """
        tap A
        amount 4
        tap A
        tip none
    """)
    empty = shots[0]
    assert empty["screen"] == "sale" and empty["message"] == \
        "Key the amount first, then tap the card"
    held = by_step(shots, "tap A", 1)
    assert held["screen"] == "tip" and "choose the tip" in held["message"]
    paid = shots[-1]
    assert paid["screen"] == "result" and paid["sale"]["state"] == "paid"


def test_currency_switch_and_cancel_keep_the_keyed_amount(tmp_path):
    shots, _env = journey(tmp_path, """
        amount 12.50
        currency SAT
        currency USD
        charge
        tip none
        cancel
    """)
    assert by_step(shots, "currency SAT")["message"] == "12 sats"
    assert by_step(shots, "currency USD")["message"] == "$12"
    cancelled = shots[-1]
    assert cancelled["screen"] == "sale" and cancelled["message"] == "$12"
    assert cancelled["sale"]["state"] == "cancelled"


def test_a_sale_below_the_smallest_invoice_cannot_be_charged(tmp_path):
    shots, _env = journey(tmp_path, """
        currency SAT
        amount 5
        charge
    """)
    refused = shots[-1]
    assert refused["screen"] == "sale" and refused["sale"] is None
    assert refused["message"] == "The smallest sale is 25 sats"


def test_a_wrong_pin_says_one_thing_and_the_right_pin_pays(tmp_path):
    shots, env = journey(tmp_path, """
        currency SAT
        amount 150000
        charge
        tip none
        tap A
        pin 9999
        tap A
        pin 1234
    """)
    assert by_step(shots, "tap A")["screen"] == "pin"
    assert by_step(shots, "tap A")["message"] == "Customer: enter the card PIN"
    wrong = by_step(shots, "pin 9999")
    assert wrong["screen"] == "result"
    assert "another card" not in wrong["message"].lower()
    controller = env.controller()  # the last screen's words, as the result screen shows them
    assert controller is not None
    assert shots[-1]["sale"]["state"] == "paid"


def test_the_pay_screen_never_offers_a_qr_while_offline(tmp_path):
    shots, _env = journey(tmp_path, """
        network off
        amount 5
        charge
        tip none
    """)
    offline = shots[-1]
    assert offline["screen"] == "pay" and offline["message"] == "Offline: tap a card"


def test_the_contract_by_subprocess_and_malformed_scripts(tmp_path):
    script = tmp_path / "journey.txt"
    script.write_text("# a QR sale\namount 1\ncharge\ntip none\npay-qr\n")
    done = subprocess.run([sys.executable, "-m", "terminal.app.cli", "demo", "--headless",
                           "--script", str(script), "--json", "--data", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shots = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["step"] for s in shots] == ["amount 1", "charge", "tip none", "pay-qr"]
    assert shots[-1]["sale"]["state"] == "paid" and shots[-1]["screen"] == "result"
    assert "Traceback" not in done.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("amount 5\n\n# fine\ncharge now\n")
    done = subprocess.run([sys.executable, "-m", "terminal.app.cli", "demo", "--headless",
                           "--script", str(bad), "--json"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "line 4" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("line", ["amount ١٢", "amount 1e5", "tap C", "tip 0", "tip custom",
                                  "pin 12", "wait -1", "network maybe", "key 11", "frobnicate"])
def test_each_malformed_step_names_its_line(line):
    with pytest.raises(ScriptError) as refused:
        parse_script(f"amount 1\n{line}\n")
    assert refused.value.line == 2


def test_a_terminal_that_boots_offline_prices_within_seconds_of_the_network(tmp_path):
    import dataclasses
    import time

    async def scenario() -> tuple[str, str | None, float]:
        env = await DemoEnvironment.start(tmp_path, background=False, network=False)
        till = env.till
        try:
            till.settings = dataclasses.replace(till.settings, rate_retry_s=0.2)
            till.key("5")
            assert not await till.charge()
            refused = till.notice.code
            env.kiosk.start()
            back = time.monotonic()
            await env.set_network(True)
            assert await till.wait_until(lambda: till.rate_problem() is None, 10)
            waited = time.monotonic() - back
            return refused, till.rate_problem(), waited
        finally:
            await env.stop()

    refused, problem, waited = asyncio.run(scenario())
    assert refused == "no-rate" and problem is None
    assert waited < 5  # the kiosk asks again at once when the network returns
