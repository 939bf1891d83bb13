"""The sync drain records the paid outcomes of one status answer in one ledger transaction.

Nothing is reported before it is durable: when that transaction cannot be written (a full disk),
nothing of it is recorded, every payout it held is reported still SUBMITTING (none left without
an outcome), and the next pass resolves them through their invoices, paying no one twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os

import pytest
from helpers.sync_rig import FAST, Rig, SyncClock

from terminal.adapters.books.ledger import Ledger
from terminal.core.ports.backend import InvoiceStatus
from terminal.core.records import PayoutStatus
from terminal.services.sync import _Followed, _Settlements


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, ledger_clock=SyncClock())
    yield r
    r.close()


def _full_disk_for_paid_records(rig: Rig) -> dict[str, bool]:
    """Reopen the rig's ledger with a write function that refuses (ENOSPC) every journal record
    that marks a payout paid, while `failing["on"]`."""
    failing = {"on": True}

    def write(fd: int, data: bytes | memoryview) -> int:
        if failing["on"] and b'"status":"paid"' in bytes(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    path = rig.ledger.path
    rig.ledger.close()
    rig.ledger = Ledger(path, clock=rig.clock, write_fn=write)
    return failing


def test_paid_outcomes_that_cannot_be_recorded_stay_submitting_then_resolve(rig):
    cards = [rig.new_card(10_000) for _ in range(4)]
    asyncio.run(rig.queue([(card, 1, 100) for card in cards]))
    failing = _full_disk_for_paid_records(rig)

    report = asyncio.run(rig.sync_once())

    # Every payout has an outcome, none of them paid: the paid records were not written.
    assert len(report.items) == 4
    assert {item.outcome for item in report.items} == {"submitting"}
    assert all(p.status == PayoutStatus.SUBMITTING for p in rig.ledger.payouts())
    assert rig.ledger.exposure().count == 4  # still counted as owed
    assert all(rig.ledger.card(c.card_id).queued_msat == 100_000 for c in cards)

    failing["on"] = False
    again = asyncio.run(rig.sync_once())

    assert (again.paid, again.failed, again.pending) == (4, 0, 0)
    assert all(p.status == PayoutStatus.PAID for p in rig.ledger.payouts())
    assert all(rig.ledger.card(c.card_id).queued_msat == 0 for c in cards)
    assert all(n == 1 for n in rig.gets.values()) and len(rig.gets) == 4  # no tap resent
    for card in cards:  # each card charged once
        assert 10_000_000 - rig.balance_msat(card) in range(90_000, 115_001)


def test_paid_outcomes_of_one_status_answer_share_one_journal_record(rig):
    cards = [rig.new_card(10_000) for _ in range(5)]
    asyncio.run(rig.queue([(card, 1, 100) for card in cards]))
    failing = _full_disk_for_paid_records(rig)
    asyncio.run(rig.sync_once())  # sent, outcomes not recorded: all SUBMITTING
    failing["on"] = False
    payouts = rig.ledger.payouts(PayoutStatus.SUBMITTING)
    assert len(payouts) == 5

    async def settle_all_paid() -> list:
        backend, withdraw = rig.parts()
        try:
            worker = rig.worker(backend, withdraw)
            settlements = _Settlements(worker)
            loop = asyncio.get_running_loop()
            due = []
            for payout in payouts:
                sale = rig.ledger.get_sale(payout.sale_id)
                due.append(_Followed(payout, sale, sale.invoice(), loop.create_future(),
                                     loop.time() + 5, loop.time()))
                settlements._followed.append(due[-1])
            rest = settlements._record_settled(
                due, [InvoiceStatus.PAID] * 4 + [InvoiceStatus.PENDING])
            assert [f for f, _ in rest] == due[4:]  # still open: followed further
            return [f.future.result() if f.future.done() else None for f in due]
        finally:
            await backend.aclose()
            await withdraw.aclose()

    before = rig.ledger.counts()["journal_records"]
    results = asyncio.run(settle_all_paid())

    assert rig.ledger.counts()["journal_records"] - before == 1  # four outcomes, one record
    assert [r.outcome for r in results[:4]] == ["paid"] * 4 and results[4] is None
    statuses = {p.id: p.status for p in rig.ledger.payouts()}
    assert [statuses[p.id] for p in payouts] == [PayoutStatus.PAID] * 4 + [PayoutStatus.SUBMITTING]
    paid_cards = {p.card_id for p in payouts[:4]}
    assert all(rig.ledger.card(c.card_id).queued_msat == (0 if c.card_id in paid_cards
                                                          else 100_000) for c in cards)



def test_payouts_followed_within_the_batch_time_are_checked_in_one_status_request(rig):
    cards = [rig.new_card(10_000) for _ in range(4)]
    asyncio.run(rig.queue([(card, 1, 100) for card in cards]))
    failing = _full_disk_for_paid_records(rig)
    asyncio.run(rig.sync_once())  # sent and paid, outcomes not recorded: all SUBMITTING
    failing["on"] = False
    payouts = rig.ledger.payouts(PayoutStatus.SUBMITTING)
    assert len(payouts) == 4

    async def follow_one_then_three() -> list[tuple[float, list[str]]]:
        backend, withdraw = rig.parts()
        policy = dataclasses.replace(FAST, settle_batch_s=0.3)
        worker = rig.worker(backend, withdraw, policy=policy)
        asked: list[tuple[float, list[str]]] = []
        first_asked, first_answered = asyncio.Event(), asyncio.Event()
        statuses = worker._statuses

        async def noting(invoices):
            asked.append((asyncio.get_running_loop().time(), [i.payment_hash for i in invoices]))
            first_asked.set()
            try:
                return await statuses(invoices)
            finally:
                first_answered.set()

        worker._statuses = noting
        try:
            settlements = _Settlements(worker)
            sales = [rig.ledger.get_sale(p.sale_id) for p in payouts]
            futures = [settlements.follow(payouts[0], sales[0], sales[0].invoice())]
            await first_asked.wait()  # the first is asked about at once, alone
            futures.append(settlements.follow(payouts[1], sales[1], sales[1].invoice()))
            await first_answered.wait()  # the second is due: without a batch time, asked now
            futures += [settlements.follow(payouts[n], sales[n], sales[n].invoice())
                        for n in range(2, 4)]
            await settlements.wait()
            assert [f.result().outcome for f in futures] == ["paid"] * 4
            return asked
        finally:
            await backend.aclose()
            await withdraw.aclose()

    before = rig.ledger.counts()["journal_records"]
    asked = asyncio.run(follow_one_then_three())

    hashes = [p.payment_hash for p in payouts]
    assert [batch for _, batch in asked] == [hashes[:1], hashes[1:]]
    assert asked[1][0] - asked[0][0] >= 0.3
    assert rig.ledger.counts()["journal_records"] - before == 2  # one per answer
