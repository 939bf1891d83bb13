"""SIGKILL at each step of the payment flow, then restart: every sale reaches the right final state,
no card is charged twice, no queued payout is lost.

The child process (this file run as a script) drives the real terminal against the sandbox running
in the test process, and kills itself with SIGKILL at the named step (hooks wrap the backend, the
LNURL client and the ledger). The parent then restarts the way the terminal does —
`Checkout.recover()` for online sales, a `SyncWorker` pass for queued payouts — and checks the
sandbox's own books.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the child


def _install_kill_hooks(step: str, backend, withdraw, ledger) -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    create, fetch, submit = backend.create_invoice, withdraw.fetch_request, withdraw.submit
    save_sale, save_payout = ledger.save_sale, ledger.save_payout

    async def create_invoice(request):
        invoice = await create(request)
        if step == "invoice-created":
            die()
        return invoice

    async def fetch_request(url):
        if step == "before-get":
            die()
        answer = await fetch(url)
        if step == "withdraw-get":
            die()
        return answer

    async def submit_(*args, **kwargs):
        answer = await submit(*args, **kwargs)
        if step == "callback":
            die()
        return answer

    def save_sale_(record):
        save_sale(record)
        if step == f"sale:{record.state}":
            die()

    def save_payout_(payout):
        save_payout(payout)
        if step == f"payout:{payout.status}":
            die()

    backend.create_invoice, withdraw.fetch_request, withdraw.submit = (
        create_invoice, fetch_request, submit_)
    ledger.save_sale, ledger.save_payout = save_sale_, save_payout_


async def _child_online(config_path: str, step: str, url: str) -> None:
    from terminal.app.config import load_config
    from terminal.app.root import build_terminal

    terminal = build_terminal(load_config(config_path))
    _install_kill_hooks(step, terminal.backend, terminal.withdraw, terminal.ledger)
    session = await terminal.checkout.open_sale(500, "SAT")
    await session.tap(url)
    await session.wait_settled(15)
    await terminal.aclose()


async def _child_sync(config_path: str, step: str, ledger_path: str) -> None:
    from terminal.adapters.books.ledger import Ledger
    from terminal.app.config import load_config
    from terminal.app.root import build_backend, build_withdraw_client
    from terminal.core.connectivity import Connectivity
    from terminal.services.sync import SyncWorker

    config = load_config(config_path)
    backend, withdraw = build_backend(config), build_withdraw_client(config)
    ledger = Ledger(ledger_path)
    _install_kill_hooks(step, backend, withdraw, ledger)
    await SyncWorker(ledger, backend, withdraw, Connectivity()).run_once()


def _child(argv: list[str]) -> None:
    mode, config_path, step, arg = argv
    runner = _child_online if mode == "online" else _child_sync
    asyncio.run(runner(config_path, step, arg))


# ----------------------------------------------------------------------------- the parent


def _run_child(*args: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, *args], env=env, cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-2000:]
    return done.returncode


@pytest.fixture
def rig(tmp_path):
    from helpers.sync_rig import Rig, SyncClock

    clock = SyncClock()
    r = Rig(tmp_path, ledger_clock=clock)
    yield r
    r.close()


def _recover(rig):
    from terminal.app.root import build_terminal

    async def go():
        terminal = build_terminal(rig.config)
        try:
            await terminal.checkout.recover()
            return terminal.ledger.sales()
        finally:
            await terminal.aclose()

    return asyncio.run(go())


# step -> (final state after restart, charged?, GETs the issuer saw)
ONLINE_STEPS = {
    "invoice-created": ("failed", False, 0),  # invoice made, never recorded: nothing to follow
    "sale:invoiced": ("expired", False, 0),
    "sale:card_read": ("expired", False, 0),  # tap captured and counter stored, no GET yet
    "withdraw-get": ("expired", False, 1),
    "sale:callback_sent": ("expired", False, 1),  # write-ahead done, callback never sent
    "callback": ("paid", True, 1),
    "sale:paid": ("paid", True, 1),
}


@pytest.mark.parametrize("step", list(ONLINE_STEPS))
def test_kill_during_online_sale_then_recover(rig, step):
    expected_state, charged, gets = ONLINE_STEPS[step]
    card = rig.new_card(10_000)
    url = rig.tap_url(card, 1)
    assert _run_child("online", str(rig.config_path), step, url) == -signal.SIGKILL

    sales = _recover(rig)
    assert len(sales) == 1
    if expected_state == "expired":
        assert sales[0].state not in ("paid", "failed", "expired")  # still open: pending
        rig.sandbox_clock.offset += 3600  # time passes: the invoice expires unpaid
        sales = _recover(rig)
    assert sales[0].state == expected_state, sales[0].history
    assert rig.gets_for(url) == gets
    debited = 10_000_000 - rig.balance_msat(card)
    assert debited == (sales[0].amount_msat if charged else 0)
    # A second restart changes nothing.
    assert _recover(rig)[0].state == expected_state


SYNC_STEPS = {
    "invoice-created": ("paid", True, 1),  # nothing recorded: submitted afresh
    "before-get": ("failed", False, 0),  # SUBMITTING, never sent; resolved by invoice status
    "withdraw-get": ("failed", False, 1),  # counter consumed: never resent
    "callback": ("paid", True, 1),
    "payout:paid": ("paid", True, 1),
}


@pytest.mark.parametrize("step", list(SYNC_STEPS))
def test_kill_during_sync_then_restart(rig, step):
    from terminal.adapters.books.ledger import Ledger
    from terminal.core.records import PayoutStatus
    from terminal.services.sync import REASON_OUTCOME_UNKNOWN_EXPIRED

    expected_state, charged, gets = SYNC_STEPS[step]
    card = rig.new_card(10_000)
    [sale_id] = asyncio.run(rig.queue([(card, 1, 500)]))
    url = rig.ledger.payouts()[0].tap_url
    ledger_path = rig.ledger.path
    rig.ledger.close()
    assert _run_child("sync", str(rig.config_path), step, str(ledger_path)) == -signal.SIGKILL
    rig.ledger = Ledger(ledger_path, clock=rig.clock)

    run = asyncio.run(rig.sync_once())
    if expected_state == "failed":
        assert [i.outcome for i in run.items] == ["submitting"]  # outcome unknown: wait
        rig.sandbox_clock.offset += 3600
        run = asyncio.run(rig.sync_once())
    payouts = rig.ledger.payouts()
    assert len(payouts) == 1  # never lost, never duplicated
    sale = rig.ledger.get_sale(sale_id)
    assert sale.state == expected_state
    assert payouts[0].status == (PayoutStatus.PAID if expected_state == "paid"
                                 else PayoutStatus.FAILED)
    if expected_state == "failed":
        assert sale.reason == REASON_OUTCOME_UNKNOWN_EXPIRED
    assert rig.gets_for(url) == gets
    debited = 10_000_000 - rig.balance_msat(card)
    assert debited == (sale.amount_msat if charged else 0)
    assert rig.ledger.exposure().count == 0 and rig.ledger.card(card.card_id).queued_msat == 0


if __name__ == "__main__":
    _child(sys.argv[1:])
