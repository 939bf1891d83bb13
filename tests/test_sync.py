"""The sync worker against the real sandbox (Flash GraphQL + Boltcard issuer over loopback HTTP),
with a real ledger file. Offline taps are queued through the real `Checkout` while the sandbox
answers invoice creation with a gateway 502 (the backend is down), then drained.

`Rig` and `SyncClock` are also used by the other offline tests and the benchmarks.
"""

from __future__ import annotations

import httpx
import pytest
from helpers.sync_rig import FAST, Crash, CrashingWithdraw, Rig, SyncClock, run

from terminal.app.root import build_keyring
from terminal.core.records import PayoutStatus
from terminal.services.checkout import Checkout
from terminal.services.sync import REASON_OUTCOME_UNKNOWN_EXPIRED


@pytest.fixture
def rig(tmp_path):
    clock = SyncClock()
    r = Rig(tmp_path, ledger_clock=clock)
    r.worker_clock = clock
    yield r
    r.close()



# ------------------------------------------------------------------------------ drain


def test_queued_taps_drain_to_paid_and_debit_each_card_once(rig):
    a, b = rig.new_card(10_000), rig.new_card(10_000)
    taps = [(a, 1, 100), (b, 1, 250), (a, 2, 300)]
    sale_ids = run(rig.queue(taps))
    assert rig.ledger.exposure().count == 3
    assert rig.ledger.card(a.card_id).queued_msat == 400_000
    assert sum(rig.gets.values()) == 0  # nothing reached the issuer while offline

    report = run(rig.sync_once())

    assert (report.paid, report.failed, report.pending) == (3, 0, 0)
    # Charged what each invoice asked (a USD wallet prices sats in whole cents), exactly once.
    charged = [rig.ledger.get_sale(s).amount_msat for s in sale_ids]
    asked = [sats for _, _, sats in taps]
    assert all(s * 900 <= m <= s * 1150 for m, s in zip(charged, asked, strict=True))
    assert rig.balance_msat(a) == 10_000_000 - charged[0] - charged[2]
    assert rig.balance_msat(b) == 10_000_000 - charged[1]
    assert all(n == 1 for n in rig.gets.values()) and len(rig.gets) == 3
    assert rig.ledger.exposure().count == 0
    assert rig.ledger.card(a.card_id).queued_msat == 0
    for sale_id in sale_ids:
        sale = rig.ledger.get_sale(sale_id)
        assert sale.state == "paid" and sale.synced and sale.payment_hash
        assert [h.to_state for h in sale.history][-3:] == ["queued", "submitted", "paid"]
    assert all(p.status == PayoutStatus.PAID for p in rig.ledger.payouts())
    # A second pass has nothing to do and sends nothing.
    again = run(rig.sync_once())
    assert again.items == [] and sum(rig.gets.values()) == 3


def test_counters_reach_the_issuer_in_order_per_card_with_cards_in_parallel(rig):
    cards = [rig.new_card(50_000) for _ in range(3)]
    # Captured interleaved; per card the counters rise.
    taps = [(card, counter, 10 + counter) for counter in (3, 5, 6, 9) for card in cards]
    run(rig.queue(taps))
    report = run(rig.sync_once(concurrency=3))
    assert report.paid == 12
    for card in cards:
        seen = [ctr for uid, ctr in rig.get_order if uid == card.uid.hex()]
        assert seen == [3, 5, 6, 9]


def test_an_earlier_tap_still_queued_holds_back_the_later_ones_of_that_card(rig):
    a, b = rig.new_card(10_000), rig.new_card(10_000)
    run(rig.queue([(a, 1, 100), (a, 2, 100), (b, 1, 100)]))
    # The issuer's gateway answers 502 to the first GET (card a, counter 1): not reached.
    rig.sb.set_faults(server_error_next={"ln": 1})
    first = run(rig.sync_once(concurrency=1))
    outcomes = {(i.card_id, i.outcome, i.reason) for i in first.items}
    assert (a.card_id, "queued", "issuer-unreachable") in outcomes
    assert (a.card_id, "queued", "waiting-for-earlier-tap") in outcomes
    assert (b.card_id, "paid", None) in outcomes
    assert [ctr for uid, ctr in rig.get_order if uid == a.uid.hex()] == []  # 502 at gateway
    queued = rig.ledger.payouts(PayoutStatus.QUEUED)
    assert [p.counter for p in queued] == [1, 2] and queued[0].attempts == 1
    assert queued[0].next_attempt_at > rig.worker_clock()
    rig.worker_clock.offset += FAST.max_delay_s  # time passes
    second = run(rig.sync_once())
    assert second.paid == 2
    assert [ctr for uid, ctr in rig.get_order if uid == a.uid.hex()] == [1, 2]


# ------------------------------------------------------------------------------ declines


def test_issuer_declines_some_items_they_fail_with_its_reason_others_are_paid(rig):
    rich, poor, off = rig.new_card(10_000), rig.new_card(50), rig.new_card(10_000)
    sale_ids = run(rig.queue([(rich, 1, 500), (poor, 1, 500), (off, 1, 500)]))
    rig.sb.update_card(off.card_id, enabled=False)
    # Like many issuers, advertise more than the card holds: the callback is what refuses.
    rig.sb.set_faults(advertise_max_withdrawable_msat=10**12)
    report = run(rig.sync_once())
    by_card = {i.card_id: i for i in report.items}
    assert by_card[rich.card_id].outcome == "paid"
    assert by_card[poor.card_id].outcome == "failed"
    assert by_card[poor.card_id].reason == "insufficient-balance"
    assert by_card[off.card_id].outcome == "failed"
    assert by_card[off.card_id].reason == "card-disabled"
    assert not report.ok
    # Visible as the merchant's loss: payouts FAILED with the issuer's words, sales failed.
    failed = {p.card_id: p for p in rig.ledger.payouts(PayoutStatus.FAILED)}
    assert set(failed) == {poor.card_id, off.card_id}
    # Its withdrawRequest showed the balance (LUD-14): the terminal did not even send the callback.
    assert failed[poor.card_id].error_message.startswith("insufficient-balance")
    poor_sale = rig.ledger.get_sale(sale_ids[1])
    assert poor_sale.state == "failed" and poor_sale.reason == "insufficient-balance"
    assert rig.ledger.exposure().count == 0 and rig.ledger.card(poor.card_id).queued_msat == 0
    paid = rig.ledger.get_sale(sale_ids[0]).amount_msat
    assert rig.balance_msat(poor) == 50_000 and rig.balance_msat(rich) == 10_000_000 - paid


def test_callback_decline_fault_is_a_failed_item_with_the_issuer_reason(rig):
    """An issuer refusing the callback it received may pay anyway: the payout waits for the
    invoice (exposure kept), and fails with the issuer's words once it expired unpaid."""
    card = rig.new_card(10_000)
    run(rig.queue([(card, 1, 100)]))
    rig.sb.set_faults(decline_withdraw_next=1, decline_reason="Card frozen by issuer")
    report = run(rig.sync_once())
    assert report.items[0].outcome == "submitting"
    assert "Card frozen by issuer" in rig.ledger.payouts()[0].error_message
    assert rig.ledger.exposure().count == 1  # still owed until the invoice says otherwise
    rig.sandbox_clock.offset += 3600  # the invoice expires unpaid
    report = run(rig.sync_once())
    assert report.items[0].outcome == "failed"
    assert "Card frozen by issuer" in rig.ledger.payouts()[0].error_message
    assert rig.ledger.exposure().count == 0
    assert rig.balance_msat(card) == 10_000_000


# ------------------------------------------------------------------------------ backend down


def test_backend_down_for_a_while_backs_off_then_succeeds(rig):
    cards = [rig.new_card(10_000) for _ in range(3)]
    run(rig.queue([(c, 1, 100) for c in cards]))
    rig.sb.set_faults(server_error_next={"graphql": 1000})
    first = run(rig.sync_once(concurrency=1))
    assert first.backend_down and first.paid == 0 and first.pending == 3
    payouts = rig.ledger.payouts(PayoutStatus.QUEUED)
    # One failed creation stops the pass: the others were not attempted at all.
    assert sorted(p.attempts for p in payouts) == [0, 0, 1]
    tried = next(p for p in payouts if p.attempts == 1)
    now = rig.worker_clock()
    assert now + 0.5 * FAST.base_delay_s - 1 <= tried.next_attempt_at <= now + FAST.base_delay_s
    # Still down, later: the delay grows (exponential).
    rig.worker_clock.offset += 2 * FAST.base_delay_s
    second = run(rig.sync_once())
    tried2 = rig.ledger.get_payout(tried.id)
    assert tried2.attempts == 2
    assert tried2.next_attempt_at - second.started_at >= 0.5 * 2 * FAST.base_delay_s
    # Back up: everything is paid.
    rig.sb.set_faults(server_error_next={})
    rig.worker_clock.offset += FAST.max_delay_s
    final = run(rig.sync_once())
    assert final.paid == 3 and final.backend_down is None
    assert sum(rig.gets.values()) == 3


def _exhaust_invoice_limit(rig) -> None:
    """Another terminal of the same merchant creates 21 invoices: Flash blocks the account's
    invoice creation for 300 s (the 21st request trips it)."""
    wallet = rig.sb.wallet_id("USD")
    document = ("mutation m($input: LnUsdInvoiceCreateOnBehalfOfRecipientInput!) { "
                "lnUsdInvoiceCreateOnBehalfOfRecipient(input: $input) { errors { code } } }")
    codes = []
    with httpx.Client(timeout=10) as client:
        for _ in range(21):
            answer = client.post(rig.sb.http_url, json={"query": document, "variables": {
                "input": {"recipientWalletId": wallet, "amount": 10}}}).json()
            errors = answer["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"]["errors"]
            codes.append(errors[0]["code"] if errors else None)
    assert codes[-1] == "TOO_MANY_REQUEST" and codes[:20] == [None] * 20


def test_invoice_limit_tripped_by_another_terminal_is_a_wait_not_a_loss(rig):
    card = rig.new_card(10_000)
    run(rig.queue([(card, 1, 100)]))
    _exhaust_invoice_limit(rig)
    same_clock = {"clock": rig.worker_clock}  # the terminal's budget on the worker's clock
    report = run(rig.sync_once(same_clock))
    item = report.items[0]
    assert item.outcome == "queued" and item.reason == "backend-rate-limited"
    payout = rig.ledger.payouts()[0]
    assert payout.status == PayoutStatus.QUEUED and payout.attempts == 0  # a wait, not a try
    # When the other terminal tripped it is unknown: the block ends within 300 s; a refused
    # request does not extend it, so it is probed every 30 s meanwhile.
    assert rig.worker_clock() + 29 <= payout.next_attempt_at <= rig.worker_clock() + 31
    assert sum(rig.gets.values()) == 0  # nothing reached the issuer
    rig.worker_clock.offset += 31
    probed = run(rig.sync_once(same_clock))
    assert probed.paid == 0 and probed.items[0].reason == "backend-rate-limited"
    assert rig.ledger.payouts()[0].attempts == 0
    rig.worker_clock.offset += 300
    rig.sandbox_clock.offset += 331
    assert run(rig.sync_once(same_clock)).paid == 1
    assert rig.sb.limit_state()["invoice_blocks"] == 1  # the other terminal's only


# ------------------------------------------------------------------------------ unknown outcome


def _crash_during_sync(rig, after: str) -> None:
    async def go():
        backend, withdraw = rig.parts()
        try:
            await rig.worker(backend, CrashingWithdraw(withdraw, after)).run_once()
        finally:
            await backend.aclose()
            await withdraw.aclose()

    with pytest.raises(Crash):
        run(go())


def test_submitting_payout_after_restart_is_resolved_by_invoice_status_not_resent(rig):
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 700)]))
    url = rig.ledger.payouts()[0].tap_url
    _crash_during_sync(rig, after="callback")
    payout = rig.ledger.payouts()[0]
    assert payout.status == PayoutStatus.SUBMITTING  # the write-ahead, from before the GET
    sale = rig.ledger.get_sale(sale_id)
    # The sale's own SUBMITTED step is saved with the outcome: on disk it is still waiting for
    # the sync, with the invoice that went out.
    assert sale.state == "queued" and sale.payment_hash == payout.payment_hash
    report = run(rig.sync_once())
    assert report.paid == 1
    assert rig.gets_for(url) == 1  # exactly one GET for that p/c, ever
    assert rig.balance_msat(card) == 10_000_000 - rig.ledger.get_sale(sale_id).amount_msat


def test_submitting_payout_whose_invoice_expires_unpaid_fails_visibly(rig):
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 700)]))
    url = rig.ledger.payouts()[0].tap_url
    _crash_during_sync(rig, after="get")  # the counter is consumed, no callback was sent
    pending = run(rig.sync_once())
    assert pending.items[0].outcome == "submitting"  # invoice still open: wait
    rig.sandbox_clock.offset += 3600  # the invoice expires at the backend
    report = run(rig.sync_once())
    assert report.items[0].outcome == "failed"
    assert report.items[0].reason == REASON_OUTCOME_UNKNOWN_EXPIRED
    assert rig.gets_for(url) == 1
    assert rig.balance_msat(card) == 10_000_000
    sale = rig.ledger.get_sale(sale_id)
    assert sale.state == "failed" and sale.reason == REASON_OUTCOME_UNKNOWN_EXPIRED
    assert rig.ledger.payouts(PayoutStatus.FAILED)[0].id == rig.ledger.payouts()[0].id


# ------------------------------------------------------------------------------ clock jumps


def test_clock_jump_backwards_does_not_park_an_item(rig):
    card = rig.new_card(10_000)
    run(rig.queue([(card, 1, 100)]))
    rig.sb.set_faults(server_error_next={"graphql": 10**9})
    run(rig.sync_once())
    rig.sb.set_faults(server_error_next={})
    assert rig.ledger.payouts()[0].attempts == 1
    rig.worker_clock.offset -= 7 * 24 * 3600  # NTP fixes a clock that was a week ahead
    report = run(rig.sync_once())
    assert report.paid == 1


def test_clock_jump_forwards_replaces_a_stale_unsent_invoice_and_pays(rig):
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 100)]))
    # The first invoice is created, then the issuer is unreachable (GET 502): back to QUEUED.
    rig.sb.set_faults(server_error_next={"ln": 1})
    run(rig.sync_once())
    first_hash = rig.ledger.get_sale(sale_id).payment_hash
    rig.worker_clock.offset += 2 * 3600  # our clock: the stored invoice looks expired
    report = run(rig.sync_once())
    assert report.paid == 1
    sale = rig.ledger.get_sale(sale_id)
    assert sale.payment_hash != first_hash and sale.state == "paid"
    assert rig.balance_msat(card) == 10_000_000 - sale.amount_msat


# ------------------------------------------------------------------------------ reporting


def test_finished_sales_are_marked_synced(rig):
    card = rig.new_card(10_000)

    async def online_paid_sale():
        backend, withdraw = rig.parts()
        checkout = Checkout(backend=backend, withdraw=withdraw,
                            keyring=build_keyring(rig.config), ledger=rig.ledger,
                            terminal_id="ft-test", network=rig.config.network)
        try:
            session = await checkout.open_sale(120, "SAT")
            assert (await session.tap(rig.tap_url(card, 1))).kind == "accepted"
            outcome = await session.wait_settled(10)
            assert outcome.status == "paid"
            return session.record.id
        finally:
            await backend.aclose()
            await withdraw.aclose()

    sale_id = run(online_paid_sale())
    assert not rig.ledger.get_sale(sale_id).synced
    report = run(rig.sync_once())
    assert report.reported_sales == 1 and rig.ledger.get_sale(sale_id).synced
    assert run(rig.sync_once()).reported_sales == 0
