"""The sync worker under Flash's real limits (the sandbox enforces them as Flash does; windows
scaled a hundredfold where the drain must actually wait: 20 invoices per 1.2 s, then 3 s
blocked): it drains at the allowed rate, never trips the block, leaves slots to the counter,
waits out a block another terminal tripped, and never records a loss on an EXPIRED that may come
from a purged invoice."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from helpers.sync_rig import FAST, Crash, CrashingWithdraw, Rig, SyncClock

from terminal.adapters.backends.budget import BackendBudget
from terminal.core.budget import WindowLimit
from terminal.core.ports.backend import InvoiceRequest
from terminal.core.records import PayoutStatus
from terminal.sandbox import UNLIMITED
from terminal.services.sync import (
    REASON_EXPIRED_UNVERIFIED,
    REASON_OUTCOME_UNKNOWN_EXPIRED,
    SyncPolicy,
)

SCALE = 0.01  # Flash's windows a hundred times shorter
PACED = SyncPolicy(base_delay_s=0.05, max_delay_s=1.0, settle_timeout_s=5.0,
                   callback_retry_s=0.01, budget_wait_s=0.0)


@pytest.fixture
def paced(tmp_path):
    rig = Rig(tmp_path, scale=SCALE)
    yield rig
    rig.close()


def _taps(rig, payouts: int, cards: int):
    made = [rig.new_card(10_000_000) for _ in range(cards)]
    return [(made[i % cards], 1 + i // cards, 100) for i in range(payouts)]


def _created_per_window(rig) -> list[int]:
    """Invoices the sandbox created, grouped by Flash's (scaled) 120 s windows from the first."""
    times = sorted(r.created_at for r in rig.sb.core.state.invoices.values())
    window = rig.sb.limits.invoice_window_s
    counts: list[int] = []
    start = None
    for t in times:
        if start is None or t >= start + window:
            start = t
            counts.append(0)
        counts[-1] += 1
    return counts


async def _drain(rig, **worker_options):
    backend, withdraw = rig.parts()
    try:
        worker = rig.worker(backend, withdraw, policy=PACED, clock=time.time, **worker_options)
        started = time.monotonic()
        report = await worker.drain(timeout_s=60)
        return report, time.monotonic() - started
    finally:
        await backend.aclose()
        await withdraw.aclose()


def test_drain_goes_at_flash_rate_and_never_trips_the_block(paced):
    asyncio.run(paced.queue(_taps(paced, 45, 9)))
    report, elapsed = asyncio.run(_drain(paced, concurrency=8))
    assert (report.paid, report.failed, report.pending) == (45, 0, 0)
    assert paced.sb.limit_state()["invoice_blocks"] == 0
    # 19 a window (one left to the counter): three windows, so at least two full waits.
    assert max(_created_per_window(paced)) <= 19
    assert elapsed >= 2 * paced.sb.limits.invoice_window_s
    assert all(n == 1 for n in paced.gets.values()) and len(paced.gets) == 45


def test_a_block_tripped_by_another_terminal_pauses_the_drain_which_resumes(paced):
    asyncio.run(paced.queue(_taps(paced, 30, 6)))
    core = paced.sb.core
    original = core.create_invoice
    calls: list[float] = []
    created: list[float] = []

    def other_terminal_trips_the_block_at_the_fifth(*args, **kwargs):
        calls.append(core.clock())
        if len(calls) == 5:
            # Another terminal of the merchant uses the rest of the window and one more: the
            # account is blocked (3 s here, 300 s at Flash) just before our fifth creation.
            with contextlib.suppress(Exception):
                for _ in range(21):
                    core.consume_invoice_limit(kwargs.get("limiter", "recipient"))
        record = original(*args, **kwargs)  # a refusal (the block) raises
        created.append(core.clock())
        return record

    core.create_invoice = other_terminal_trips_the_block_at_the_fifth
    report, _elapsed = asyncio.run(_drain(paced))
    assert (report.paid, report.failed, report.pending) == (30, 0, 0)
    assert paced.sb.limit_state()["invoice_blocks"] == 1  # the other terminal's, not ours
    payouts = paced.ledger.payouts()
    assert all(p.status == PayoutStatus.PAID and p.attempts == 1 for p in payouts)
    # The drain waited the block out (probing it meanwhile, which does not extend it): no
    # invoice was created until the block had ended.
    blocked_at = calls[4]
    after = [t for t in created if t >= blocked_at]
    assert after and min(after) - blocked_at >= paced.sb.limits.invoice_block_s
    assert len(calls) > len(created)  # the probes that found it still blocked


def test_the_counter_keeps_a_slot_while_the_queue_drains(paced):
    asyncio.run(paced.queue(_taps(paced, 25, 5)))

    async def scenario():
        backend, withdraw = paced.parts()
        worker = paced.worker(backend, withdraw, policy=PACED, clock=time.time)
        drained = await worker.run_once()
        by_the_drain = max(_created_per_window(paced))
        counter = paced.backend()  # the kiosk's checkout: same terminal, same budget file
        sale = await counter.create_invoice(InvoiceRequest(500, "SAT", "walk-in", "walk-in"))
        for b in (backend, counter):
            await b.aclose()
        await withdraw.aclose()
        return drained, sale, by_the_drain

    drained, sale, by_the_drain = asyncio.run(scenario())
    assert drained.paid >= 19 and drained.failed == 0
    assert by_the_drain <= 19  # the drain never took a window's last slot
    assert sale.amount_msat == 500_000  # so the counter's sale found one
    assert paced.sb.limit_state()["invoice_blocks"] == 0


def test_drain_time_is_estimated_from_the_limit(paced):
    asyncio.run(paced.queue(_taps(paced, 45, 9)))

    async def scenario():
        backend, withdraw = paced.parts()
        worker = paced.worker(backend, withdraw, policy=PACED, clock=time.time)
        before = worker.drain_time_s()
        await backend.aclose()
        await withdraw.aclose()
        return before

    window = paced.sb.limits.invoice_window_s
    estimate = asyncio.run(scenario())
    # 45 at 19 a window: 3 windows, the last opening two windows (plus margins) from now.
    assert 2 * window <= estimate <= 2.1 * window


# --- EXPIRED long after expiry: purged, maybe paid -------------------------------------------


@pytest.fixture
def rig(tmp_path):
    clock = SyncClock()
    r = Rig(tmp_path, ledger_clock=clock)
    r.worker_clock = clock
    yield r
    r.close()


def _submitting(rig, after: str) -> str:
    """One payout left SUBMITTING by a crash (`after` the GET or the callback)."""
    card = rig.new_card(10_000)
    [sale_id] = asyncio.run(rig.queue([(card, 1, 700)]))

    async def go():
        backend, withdraw = rig.parts()
        try:
            await rig.worker(backend, CrashingWithdraw(withdraw, after)).run_once()
        finally:
            await backend.aclose()
            await withdraw.aclose()

    with pytest.raises(Crash):
        asyncio.run(go())
    assert rig.ledger.payouts()[0].status == PayoutStatus.SUBMITTING
    return sale_id


def _long_outage_then_purge(rig, sale_id: str) -> None:
    rig.worker_clock.offset += 6 * 3600
    rig.sandbox_clock.offset += 6 * 3600
    rig.sb.purge_invoice(rig.ledger.get_sale(sale_id).bolt11)


def _sync(rig, **backend_options):
    return asyncio.run(rig.sync_once({"clock": rig.worker_clock, **backend_options},
                                     policy=FAST))


def test_purged_paid_invoice_is_found_paid_not_lost(rig):
    sale_id = _submitting(rig, after="callback")  # the issuer paid; the answer was lost
    _long_outage_then_purge(rig, sale_id)
    report = _sync(rig, api_key=rig.sb.api_key)  # can read the wallet's transactions
    assert report.items[0].outcome == "paid"
    assert rig.ledger.get_sale(sale_id).state == "paid"


def test_purged_invoice_that_cannot_be_checked_stays_unresolved(rig):
    sale_id = _submitting(rig, after="callback")
    _long_outage_then_purge(rig, sale_id)
    for options in ({}, {"api_key": rig.sb.create_api_key(["read:user", "write:wallet"])}):
        report = _sync(rig, **options)  # receive-only, then a key without read_transactions
        item = report.items[0]
        assert item.outcome == "submitting" and item.reason == REASON_EXPIRED_UNVERIFIED
        assert "read_transactions" in item.message
    payout = rig.ledger.payouts()[0]
    assert payout.status == PayoutStatus.SUBMITTING  # not counted as the merchant's loss
    assert rig.ledger.get_sale(sale_id).state in ("queued", "submitted")  # waiting, not failed


def test_purged_unpaid_invoice_checked_in_the_history_is_failed(rig):
    sale_id = _submitting(rig, after="get")  # the counter was spent; no callback went out
    _long_outage_then_purge(rig, sale_id)
    report = _sync(rig, api_key=rig.sb.api_key)
    item = report.items[0]
    assert item.outcome == "failed" and item.reason == REASON_OUTCOME_UNKNOWN_EXPIRED
    assert "checked in the backend's received payments" in item.message
    assert rig.ledger.get_sale(sale_id).state == "failed"


def test_a_drain_checks_its_invoices_in_batches_over_kept_connections(tmp_path):
    rig = Rig(tmp_path, limits=UNLIMITED)
    try:
        asyncio.run(rig.queue(_taps(rig, 40, 20)))
        connections = []

        async def scenario():
            backend, withdraw = rig.parts(budget=BackendBudget(
                invoices=WindowLimit("none", 10**9, 60.0), api_key=WindowLimit("none", 10**9,
                                                                               60.0)))
            loop = asyncio.get_running_loop()
            original = loop.create_connection

            async def counting(*args, **kwargs):
                connections.append(1)
                return await original(*args, **kwargs)

            loop.create_connection = counting
            worker = rig.worker(backend, withdraw, policy=PACED, clock=time.time, concurrency=8)
            report = await worker.run_once()
            requests = backend.status_requests
            await backend.aclose()
            await withdraw.aclose()
            return report, requests

        report, requests = asyncio.run(scenario())
    finally:
        rig.close()
    assert report.paid == 40
    assert requests < 40  # several sent payouts' invoices per status request
    assert len(connections) <= 16 + 8  # kept alive: not one per request (120 requests here)
