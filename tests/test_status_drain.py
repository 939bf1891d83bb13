"""The status bar says how long the offline queue needs to be sent at the backend's invoice limit
(issue 10: the drain time shown with the exposure), through the demo's real till, kiosk wiring and
sync worker, and the status bar's words."""

from __future__ import annotations

import asyncio
import io
import json

from terminal.app.demo_script import parse_script, run_script
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.core.risk import Exposure


def test_the_queue_line_names_the_time_to_send_only_when_it_is_worth_saying() -> None:
    status = StatusViewModel()
    status.update(exposure=Exposure(count=3, queued_msat=3_000_000), drain_s=250.0)
    assert status.queue_text == "Queued 3,000 sats (3), ~5 min to send"
    status.update(exposure=Exposure(count=3, queued_msat=3_000_000), drain_s=30.0)
    assert status.queue_text == "Queued 3,000 sats (3)"  # within one window: no words
    status.update(exposure=Exposure(count=3, queued_msat=3_000_000))
    assert "min to send" not in status.queue_text  # unknown
    status.update(exposure=Exposure())
    assert status.queue_text == "Queue empty"


def test_a_queue_behind_a_spent_invoice_budget_shows_its_wait_on_the_status_bar(tmp_path) -> None:
    """The counter spent Flash's 20 invoices of this window; a tap accepted offline then waits
    for the window to reset, and the status bar says so."""
    seen: list = []

    def spend_the_window(env) -> None:
        budget = env.terminal.backend.budget
        for _ in range(20):
            ticket, wait = budget.take_invoice(background=False)
            assert wait == 0
            budget.invoice_answered(ticket)
        seen.append(env)

    out = io.StringIO()
    code = asyncio.run(run_script(parse_script("""
        network off
        currency SAT
        amount 500
        charge
        tip none
        tap B
    """), out, work_dir=tmp_path, on_env=spend_the_window))
    assert code == 0
    shots = [json.loads(line) for line in out.getvalue().splitlines()]
    assert shots[-1]["sale"]["state"] == "queued" and shots[-1]["queue"]["count"] == 1
    env = seen[0]
    controller = env.controller()
    # The environment is stopped; its status bar's last words are what the cashier saw.
    assert "min to send" in controller.status.queue_text, controller.status.queue_text
