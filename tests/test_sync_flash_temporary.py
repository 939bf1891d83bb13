"""The offline queue's drain against the sandbox answering as Flash does when something is
temporarily wrong (issue 10): its Lightning provider failing (`IBEX_ERROR`), the gateway
answering 5xx, a request timing out, the API key's own limit (`TOO_MANY_REQUESTS` with
`retryAfterSeconds`). Each is a wait: the payout stays queued, nothing is counted as the
merchant's loss, and the next pass pays it. And Flash's 60 s invoices: a payout retried while its
invoice still has time left reuses it (a new one would spend the merchant's invoice limit)."""

from __future__ import annotations

import pytest
from helpers.sync_rig import FAST, Rig, SyncClock, run

from terminal.adapters.backends.http import RetryPolicy
from terminal.core.records import PayoutStatus
from terminal.services.sync import REASON_RATE_LIMITED


@pytest.fixture
def rig(tmp_path):
    clock = SyncClock()
    r = Rig(tmp_path, ledger_clock=clock)
    r.worker_clock = clock
    yield r
    r.close()

QUICK_RETRY = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=1)

TEMPORARY = {
    "provider failure (IBEX_ERROR)": {"ibex_error_next": 1000},
    "gateway 502": {"server_error_next": {"graphql": 1000}},
    "timeout": {"latency_s": {"graphql": 2.0}},
}


@pytest.mark.parametrize("faults", TEMPORARY.values(), ids=TEMPORARY.keys())
def test_temporary_backend_errors_during_a_drain_are_waits_never_losses(rig, faults):  # noqa: F811
    cards = [rig.new_card(10_000) for _ in range(3)]
    sale_ids = run(rig.queue([(c, 1, 100) for c in cards]))
    rig.sb.set_faults(**faults)
    options = {"timeout_s": 0.5, "retry": QUICK_RETRY}
    down = run(rig.sync_once(options, concurrency=1))
    assert down.backend_down and down.failed == 0 and down.paid == 0
    assert [p.status for p in rig.ledger.payouts()] == [PayoutStatus.QUEUED] * 3
    assert rig.ledger.exposure().count == 3  # still owed, still counted
    assert sum(rig.gets.values()) == 0  # no tap was spent on an invoice that may not exist
    assert all(rig.ledger.get_sale(s).state not in ("failed", "cancelled") for s in sale_ids)
    rig.sb.set_faults(ibex_error_next=0, server_error_next={}, latency_s={})
    rig.worker_clock.offset += FAST.max_delay_s
    back = run(rig.sync_once(options))
    assert back.paid == 3 and back.failed == 0
    assert [rig.balance_msat(c) for c in cards] == [10_000_000 - 100_000] * 3


def test_api_key_limit_during_a_drain_waits_the_time_flash_gives(rig):  # noqa: F811
    card = rig.new_card(10_000)
    run(rig.queue([(card, 1, 100)]))
    rig.sb.set_faults(rate_limit_next=1000, retry_after_s=40)
    # The terminal's budget (it remembers the key's limit) on the worker's clock.
    keyed = {"api_key": rig.sb.api_key, "retry": QUICK_RETRY, "clock": rig.worker_clock}
    report = run(rig.sync_once(keyed))
    item = report.items[0]
    assert item.outcome == "queued" and item.reason == REASON_RATE_LIMITED
    payout = rig.ledger.payouts()[0]
    assert payout.status == PayoutStatus.QUEUED and payout.attempts == 0  # a wait, not a try
    now = rig.worker_clock()
    assert now + 35 <= payout.next_attempt_at <= now + 42
    rig.sb.set_faults(rate_limit_next=0)
    rig.worker_clock.offset += 41
    assert run(rig.sync_once(keyed)).paid == 1


@pytest.mark.parametrize(("later_s", "reused"), [(20, True), (40, False)])
def test_a_retried_payout_reuses_its_60_s_invoice_while_time_is_left(rig, later_s, reused):  # noqa: F811
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 100)]))
    rig.sb.set_faults(server_error_next={"ln": 1})  # invoice made, then the issuer's GET 502
    run(rig.sync_once())
    first = rig.ledger.get_sale(sale_id)
    made = len(rig.sb.core.state.invoices)
    left = first.invoice_expires_at - rig.worker_clock()
    assert 55 <= left <= 60  # Flash's USD invoices live 60 s whatever was asked
    rig.worker_clock.offset += later_s  # 40 s left: reused; 20 s (under the margin): replaced
    assert run(rig.sync_once()).paid == 1
    paid = rig.ledger.get_sale(sale_id)
    assert (paid.payment_hash == first.payment_hash) is reused
    assert len(rig.sb.core.state.invoices) == made + (0 if reused else 1)
    assert rig.balance_msat(card) == 10_000_000 - paid.amount_msat
