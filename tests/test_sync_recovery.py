"""Sync decisions that protect the merchant: a card the issuer refuses is no longer accepted
offline, a callback that never left is retried on a later pass (not written off), and an issuer
that keeps answering garbage ends the payout visibly instead of blocking the queue forever."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.sync_rig import FAST, Rig, SyncClock, run

from terminal.adapters.backends.flash import FlashBackend, RetryPolicy
from terminal.adapters.withdraw import WithdrawClient
from terminal.app.root import build_keyring, url_policy
from terminal.core.records import PayoutStatus
from terminal.core.risk import OfflineLimits
from terminal.protocols import lnurl
from terminal.services.checkout import Checkout


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, ledger_clock=SyncClock())
    r.worker_clock = r.clock
    yield r
    r.close()


async def offline_tap(rig: Rig, url: str, sats: int):
    flash = rig.config.backend.flash
    backend = FlashBackend(flash.http_url, None, username=flash.username,
                           network=rig.config.network, retry=RetryPolicy(attempts=1))
    withdraw = WithdrawClient(url_policy(rig.config))
    checkout = Checkout(backend=backend, withdraw=withdraw, keyring=build_keyring(rig.config),
                        ledger=rig.ledger, terminal_id="ft-test", network=rig.config.network,
                        offline_limits=OfflineLimits(floor_limit_msat=10**9,
                                                     per_card_cap_msat=10**10),
                        clock=rig.clock)
    rig.sb.set_faults(server_error_next={"graphql": 10**9})
    try:
        session = await checkout.open_sale(sats, "SAT")
        return await session.tap(url)
    finally:
        rig.sb.set_faults(server_error_next={})
        await backend.aclose()
        await withdraw.aclose()


def test_a_card_the_issuer_refuses_is_blocked_for_offline_until_it_pays(rig):
    poor = rig.new_card(50)  # 50 sats
    run(rig.queue([(poor, 1, 400)]))
    report = run(rig.sync_once())
    assert report.failed == 1 and report.items[0].reason == "insufficient-balance"
    card = rig.ledger.card(poor.card_id)
    assert card.blocked and card.blocked_reason == "insufficient-balance"
    assert card.queued_msat == 0

    result = run(offline_tap(rig, rig.tap_url(poor, 2), 10))
    assert result.kind == "declined" and result.code == "offline-card-blocked"


class CallbackDownOnce(WithdrawClient):
    """The issuer's callback endpoint refuses connections for the first `failures` sends."""

    def __init__(self, *args, failures: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures
        self.sent = 0

    async def submit(self, request, bolt11, amount_msat, pin=None):
        if self.failures:
            self.failures -= 1
            raise lnurl.IssuerUnreachable("127.0.0.1: ConnectError before the callback was sent")
        self.sent += 1
        return await super().submit(request, bolt11, amount_msat, pin)


class PaysButSaysError(WithdrawClient):
    """The issuer pays the invoice it was sent, then answers the callback with ERROR (servers
    answer ERROR while an HTLC is in flight)."""

    async def submit(self, request, bolt11, amount_msat, pin=None):
        await super().submit(request, bolt11, amount_msat, pin)  # the sandbox issuer pays
        raise lnurl.IssuerError("Payment failed")


def test_an_issuer_that_says_error_but_pays_settles_the_payout_paid(rig):
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 300)]))

    async def one_pass():
        backend, _ = rig.parts()
        withdraw = PaysButSaysError(url_policy(rig.config))
        try:
            return await rig.worker(backend, withdraw).run_once()
        finally:
            await backend.aclose()
            await withdraw.aclose()

    report = run(one_pass())
    assert [i.outcome for i in report.items] == ["paid"]  # never "failed": the money came
    [payout] = rig.ledger.payouts()
    assert payout.status == PayoutStatus.PAID
    assert rig.ledger.get_sale(sale_id).state == "paid"
    assert not rig.ledger.card(card.card_id).blocked
    assert 10_000_000 - rig.balance_msat(card) == rig.ledger.get_sale(sale_id).amount_msat


def test_a_callback_that_never_left_is_retried_on_the_next_pass(rig):
    card = rig.new_card(10_000)
    [sale_id] = run(rig.queue([(card, 1, 200)]))

    async def one_pass(failures: int):
        backend, _ = rig.parts()
        withdraw = CallbackDownOnce(url_policy(rig.config), failures=failures)
        policy = dataclasses.replace(FAST, callback_retries=1)
        try:
            worker = rig.worker(backend, withdraw, policy=policy)
            return await worker.run_once(), withdraw.sent
        finally:
            await backend.aclose()
            await withdraw.aclose()

    first, sent = run(one_pass(failures=2))
    assert sent == 0
    assert first.items[0].outcome == "submitting"
    assert first.items[0].reason == "issuer-unreachable"
    [payout] = rig.ledger.payouts()
    assert payout.status == PayoutStatus.SUBMITTING and "unsent_callback" in payout.metadata

    second, sent = run(one_pass(failures=0))
    assert sent == 1
    assert second.paid == 1
    assert rig.ledger.get_sale(sale_id).state == "paid"
    assert rig.gets_for(rig.tap_url(card, 1)) <= 1  # the p/c was never sent again
    assert sum(rig.gets.values()) == 1


def test_garbage_from_the_issuer_ends_the_payout_after_a_few_attempts(rig):
    card = rig.new_card(10_000)
    run(rig.queue([(card, 1, 100)]))
    rig.sb.set_faults(server_error_next={"ln": 10**6}, server_error_status=200)
    outcomes = []
    while not outcomes or outcomes[-1] == "queued":
        assert len(outcomes) <= FAST.max_garbage_attempts, outcomes  # bounded, never forever
        report = run(rig.sync_once())
        outcomes.append(report.items[0].outcome)
        rig.worker_clock.offset += FAST.max_delay_s
    rig.sb.set_faults(server_error_next={}, server_error_status=502)
    assert outcomes[0] == "queued" and outcomes[-1] == "failed"
    [payout] = rig.ledger.payouts()
    assert payout.status == PayoutStatus.FAILED and payout.error_message
    assert rig.ledger.exposure().count == 0


def test_a_replayed_invoice_is_never_sent_for_an_offline_payout(rig):
    """One payment, one sale in the sync path too: a caching proxy answers the second payout's
    invoice creation with the first payout's invoice; that payout is held back (queued, its
    card never asked), and the next pass, with a fresh invoice, pays it."""
    from tests.fakes.hostile_backend import HostileBackend

    first_card, second_card = rig.new_card(10_000), rig.new_card(10_000)
    sale_ids = run(rig.queue([(first_card, 1, 200), (second_card, 1, 200)]))
    proxy = HostileBackend(rig.config.backend.flash.http_url).start()
    proxy.replay_creations = True
    flash = rig.config.backend.flash

    async def one_pass():
        backend = FlashBackend(proxy.url, None, username=flash.username,
                               network=rig.config.network)
        _, withdraw = rig.parts()
        try:
            return await rig.worker(backend, withdraw, concurrency=1).run_once()
        finally:
            await backend.aclose()
            await withdraw.aclose()

    try:
        first = run(one_pass())
        assert sorted(i.outcome for i in first.items) == ["paid", "queued"]
        [held] = [i for i in first.items if i.outcome == "queued"]
        assert held.reason == "backend-replayed-invoice"
        held_url = rig.ledger.get_payout(held.payout_id).tap_url
        assert rig.gets_for(held_url) == 0  # its tap was never spent
        paid_url = next(p.tap_url for p in rig.ledger.payouts() if p.id != held.payout_id)
        assert rig.gets_for(paid_url) == 1
        proxy.replay_creations = False
        rig.worker_clock.offset += FAST.max_delay_s
        second = run(one_pass())
    finally:
        proxy.stop()
    assert [i.outcome for i in second.items] == ["paid"]
    sales = [rig.ledger.get_sale(sale_id) for sale_id in sale_ids]
    assert [s.state for s in sales] == ["paid", "paid"]
    assert sales[0].payment_hash != sales[1].payment_hash
