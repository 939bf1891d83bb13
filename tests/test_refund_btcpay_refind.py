"""A BTCPay refund whose pull-payment answer was lost, found again by its name (at once, or after
a restart): it is still paid out to the destination the manager gave, which the refund's
write-ahead record holds; BTCPay's payouts of the pull payment are read first, so a payout is
never made twice; an invoice that expired meanwhile is not claimed. Against the Greenfield fake
(payouts as BTCPay makes, lists and refuses them) on loopback, the books in files."""

# ruff: noqa: F811 - the BTCPay rig's fixtures (tests/helpers/btcpay_rig.py) are parameters here

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

import httpx
import pytest
from helpers.btcpay_rig import (  # noqa: F401 - fixtures
    btcpay,
    config_path,
    issuer,
    issuer_paid,
    run_terminal,
)

from terminal.app.root import Terminal, build_refunds
from terminal.core.money import Money, currency
from terminal.core.refunds import RefundRecord
from terminal.services.refunds import RefundOutcome, RefundRequest
from tests.fakes.btcpay_server import (
    ALL_PERMISSIONS,
    DEFAULT_KEY,
    PERM_REFUND,
    FakeBTCPay,
    mint_bolt11,
)

REFUND_KEY = (*ALL_PERMISSIONS, PERM_REFUND)
ADDRESS = "ann@wallet.example"
DAY_S = 86_400


def paid_sale(config_path: Path, btcpay: FakeBTCPay) -> str:
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY

    async def body(terminal: Terminal) -> str:
        session = await terminal.checkout.open_sale(150_00, "JMD")
        btcpay.pay(session.invoice.bolt11)
        assert (await session.wait_settled(10)).status == "paid"
        return session.record.id

    return run_terminal(config_path, body)


def refund_answer_lost(config_path: Path, btcpay: FakeBTCPay, sale_id: str,
                       to: str | None, sats: int = 100) -> tuple[RefundOutcome, RefundRecord]:
    """The refund is asked; BTCPay makes its pull payment, but the answer is lost (502)."""
    btcpay.fail_after_refund = 1

    async def body(terminal: Terminal) -> tuple[RefundOutcome, RefundRecord]:
        service = build_refunds(terminal.config, terminal)
        outcome = await service.refund(RefundRequest(sale_id, Money(sats, currency("SAT")),
                                                     to=to))
        [record] = terminal.ledger.refunds(sale_id)
        return outcome, record

    outcome, record = run_terminal(config_path, body)
    assert (outcome.status, outcome.reason) == ("pending", "answer-lost")
    assert len(btcpay.refunds) == 1  # BTCPay made it
    return outcome, record


def resolve(config_path: Path, *, clock_shift_s: float = 0.0,
            together: int = 1) -> tuple[list[RefundOutcome], list[RefundRecord]]:
    """A (re)started terminal resolves its open refunds (`together` look-ups at once)."""

    async def body(terminal: Terminal) -> tuple[list[RefundOutcome], list[RefundRecord]]:
        service = build_refunds(terminal.config, terminal)
        if clock_shift_s:
            service.clock = lambda: time.time() + clock_shift_s
        runs = await asyncio.gather(*(service.resolve_open() for _ in range(together)))
        return [o for run in runs for o in run], terminal.ledger.refunds()

    return run_terminal(config_path, body)


def payout_posts(btcpay: FakeBTCPay) -> int:
    return sum(1 for method, path, _ in btcpay.requests
               if method == "POST" and path.endswith("/payouts"))


def test_a_lost_answer_found_after_a_restart_is_paid_out_to_the_address_once(
        config_path, btcpay, caplog):
    caplog.set_level(logging.DEBUG)
    sale_id = paid_sale(config_path, btcpay)
    outcome, record = refund_answer_lost(config_path, btcpay, sale_id, ADDRESS)
    assert record.claim_destination == ADDRESS  # on the books before the pull payment existed
    assert not next(iter(btcpay.refunds.values())).payouts

    outcomes, [found] = resolve(config_path)  # a restart: a new terminal on the same books
    assert [o.status for o in outcomes] == ["sent"]
    [pp] = btcpay.refunds.values()
    [payout] = pp.payouts
    assert (payout["destination"], payout["originalAmount"]) == (ADDRESS, "0.00000100")
    assert found.backend_ref == pp.id and found.claim_link
    assert found.message == (f"Refund issued and claimed for {ADDRESS}: BTCPay pays it once the "
                             "merchant approves the payout.")

    # Looked up again (another restart, two look-ups at once): final, nothing more is claimed.
    again, _ = resolve(config_path, together=2)
    assert again == [] and len(pp.payouts) == 1 and payout_posts(btcpay) == 1
    # The destination is on the books and BTCPay's, never in the logs (only its kind).
    assert ADDRESS not in caplog.text and "paid out to the address given" in caplog.text


def test_a_payout_whose_answer_was_lost_is_read_back_not_made_again(config_path, btcpay):
    """The claim's own answer is lost too (BTCPay made the payout): the refund stays pending
    (it cannot tell), and the next look-up finds the payout in BTCPay's list."""
    sale_id = paid_sale(config_path, btcpay)
    refund_answer_lost(config_path, btcpay, sale_id, ADDRESS)
    btcpay.fail_after_payout = 1
    first, [pending] = resolve(config_path)
    assert [(o.status, o.reason) for o in first] == [("pending", "payout-unknown")]
    assert "do not refund again" in pending.message
    [pp] = btcpay.refunds.values()
    assert len(pp.payouts) == 1  # made, answer lost

    # Two look-ups at once (a screen's timer and a refund of the same sale): one reads it back.
    second, [sent] = resolve(config_path, together=2)
    assert [o.status for o in second] == ["sent"]
    assert len(pp.payouts) == 1 and payout_posts(btcpay) == 1
    assert sent.message.startswith(f"Refund issued and claimed for {ADDRESS}")


def test_a_pull_payment_the_customer_already_claimed_gets_no_second_payout(config_path, btcpay):
    """Meanwhile the customer scanned the claim QR (their wallet claimed it all): the payout to
    the manager's address would be an overdraft; it is not even asked for."""
    sale_id = paid_sale(config_path, btcpay)
    refund_answer_lost(config_path, btcpay, sale_id, ADDRESS)
    [pp] = btcpay.refunds.values()
    answer = httpx.post(f"{btcpay.base_url}/api/v1/pull-payments/{pp.id}/payouts",
                        json={"destination": "carol@wallet.example", "amount": "0.00000100",
                              "payoutMethodId": "BTC-LN"})
    assert answer.status_code == 200, answer.text

    outcomes, [found] = resolve(config_path)
    assert [o.status for o in outcomes] == ["sent"]
    assert [p["destination"] for p in pp.payouts] == ["carol@wallet.example"]
    assert payout_posts(btcpay) == 1  # the customer's own, none from the terminal
    assert found.message == ("Refund issued by BTCPay and already claimed by a Lightning wallet "
                             f"(the claim QR) (AwaitingApproval): nothing more is paid out to "
                             f"{ADDRESS}.")


def bolt11_for(btcpay: FakeBTCPay, sats: int, expiry_s: int) -> str:
    return mint_bolt11(network="regtest", amount_msat=sats * 1000,
                       payment_hash=secrets.token_hex(32), description="refund",
                       expiry_s=expiry_s, timestamp=int(time.time()))


def test_an_invoice_that_expired_before_the_refund_was_found_is_not_claimed(
        config_path, btcpay, caplog):
    caplog.set_level(logging.DEBUG)
    sale_id = paid_sale(config_path, btcpay)
    # BTCPay takes a refund's BOLT11 only if it lives the store's RefundBOLT11Expiration (30 d).
    invoice = bolt11_for(btcpay, 100, expiry_s=31 * DAY_S)
    _, record = refund_answer_lost(config_path, btcpay, sale_id, invoice)
    assert record.claim_destination == invoice
    assert record.invoice_expires_at == pytest.approx(time.time() + 31 * DAY_S, abs=60)

    outcomes, [found] = resolve(config_path, clock_shift_s=32 * DAY_S)
    assert [o.status for o in outcomes] == ["sent"]  # the pull payment is issued …
    [pp] = btcpay.refunds.values()
    assert pp.payouts == [] and payout_posts(btcpay) == 0  # … and nothing claimed for it
    assert found.claim_link
    assert "expired before it could be paid out" in found.message
    assert "scans the claim QR" in found.message and "new invoice" in found.message
    assert invoice not in caplog.text


def test_an_invoice_found_again_in_time_is_paid_out_for_its_own_amount(config_path, btcpay):
    sale_id = paid_sale(config_path, btcpay)
    invoice = bolt11_for(btcpay, 100, expiry_s=31 * DAY_S)
    refund_answer_lost(config_path, btcpay, sale_id, invoice)
    outcomes, _ = resolve(config_path)
    assert [o.status for o in outcomes] == ["sent"]
    [pp] = btcpay.refunds.values()
    [payout] = pp.payouts
    assert (payout["destination"], payout["originalAmount"]) == (invoice, "0.00000100")


def test_an_invoice_already_expired_is_refused_before_anything_is_issued(config_path, btcpay):
    sale_id = paid_sale(config_path, btcpay)
    invoice = mint_bolt11(network="regtest", amount_msat=100_000,
                          payment_hash=secrets.token_hex(32), description="refund",
                          expiry_s=60, timestamp=int(time.time()) - 3600)

    async def body(terminal: Terminal) -> RefundOutcome:
        service = build_refunds(terminal.config, terminal)
        return await service.refund(RefundRequest(sale_id, to=invoice))

    outcome = run_terminal(config_path, body)
    assert (outcome.status, outcome.reason) == ("failed", "invoice-expired")
    assert "ask for a new one" in outcome.message and "Nothing was sent" in outcome.message
    assert btcpay.refunds == {}


def test_with_no_destination_the_refund_found_again_is_the_claim_qr(config_path, btcpay):
    sale_id = paid_sale(config_path, btcpay)
    _, record = refund_answer_lost(config_path, btcpay, sale_id, None)
    assert record.claim_destination is None
    outcomes, [found] = resolve(config_path)
    assert [o.status for o in outcomes] == ["sent"]
    [pp] = btcpay.refunds.values()
    assert pp.payouts == [] and payout_posts(btcpay) == 0
    assert found.claim_link and found.claim_link.startswith("lnurl1")
    assert found.message == ("Refund issued by BTCPay: the customer scans the claim QR with a "
                             "Lightning wallet. BTCPay will wait for the merchant to approve the "
                             "claim (the API key cannot approve pull payments).")


# ------------------------------------------------------------- the fake answers as BTCPay


def test_the_fake_lists_refuses_and_moves_payouts_as_btcpay_does(config_path, btcpay):
    sale_id = paid_sale(config_path, btcpay)
    refund_answer_lost(config_path, btcpay, sale_id, None, sats=300)
    [pp] = btcpay.refunds.values()
    url = f"{btcpay.base_url}/api/v1/pull-payments/{pp.id}/payouts"

    def claim(destination: str, amount: str) -> httpx.Response:
        return httpx.post(url, json={"destination": destination, "amount": amount,
                                     "payoutMethodId": "BTC-LN"})

    first = claim(ADDRESS, "0.00000200")
    assert first.status_code == 200 and first.json()["state"] == "AwaitingApproval"
    assert first.json()["payoutAmount"] is None  # set when approved
    # An address is reusable (no dedup id): a second payout to it is made while room is left …
    assert claim(ADDRESS, "0.00000100").status_code == 200
    # … and over the pull payment's amount it is BTCPay's overdraft, with its shape.
    over = claim("dan@wallet.example", "0.00000001")
    assert (over.status_code, over.json()) == (400, {
        "code": "overdraft", "message": "The payout amount overdraft the pull payment's limit"})
    # A BOLT11 expiring sooner than the pull payment's BOLT11Expiration (30 days): 422.
    short = claim(bolt11_for(btcpay, 1, expiry_s=3600), "0.00000001")
    assert short.status_code == 422 and short.json()[0]["path"] == "Destination"

    listed = httpx.get(url).json()
    assert [p["state"] for p in listed] == ["AwaitingApproval", "AwaitingApproval"]
    one, two = (p["id"] for p in listed)
    btcpay.cancel_payout(two)  # a cancelled payout gives its amount back …
    assert [p["id"] for p in httpx.get(url).json()] == [one]  # … and is listed only if asked
    assert len(httpx.get(url, params={"includeCancelled": "true"}).json()) == 2
    assert claim("dan@wallet.example", "0.00000100").status_code == 200

    with pytest.raises(ValueError, match="InvalidState"):
        btcpay.mark_payout(one, "Completed")  # not approved yet
    btcpay.approve_payout(one)
    btcpay.mark_payout(one, "InProgress")
    btcpay.mark_payout(one, "Completed")
    [done] = [p for p in httpx.get(url).json() if p["id"] == one]
    assert (done["state"], done["payoutAmount"]) == ("Completed", "0.00000200")
    assert httpx.get(f"{btcpay.base_url}/api/v1/pull-payments/nope/payouts").json()["code"] \
        == "pullpayment-not-found"
