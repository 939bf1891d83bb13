"""Refunds on a BTCPay store, against the Greenfield fake (which answers as BTCPay does:
permissions, 400 non-refundable, the pull payment and its LNURL): BTCPay's own refund of the
sale's invoice, a pull payment the customer claims by scanning its LNURL-withdraw, or paid out
at once to a destination given; a lost answer found again by its name, never issued twice."""

# ruff: noqa: F811 - the BTCPay rig's fixtures (tests/helpers/btcpay_rig.py) are parameters here

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.btcpay_rig import (  # noqa: F401 - fixtures
    btcpay,
    card,
    config_path,
    issuer,
    issuer_paid,
    run_terminal,
)
from helpers.refund_flow import refund

from terminal.adapters.books.ledger import Ledger
from terminal.adapters.simcards import tap as tap_card
from terminal.app.config import load_config
from terminal.app.root import LEDGER_FILE, Terminal, build_refunds
from terminal.core.money import Money, currency
from terminal.core.ports.backend import BackendRejected
from terminal.services.refunds import RefundRequest
from tests.fakes.btcpay_server import (
    ALL_PERMISSIONS,
    DEFAULT_KEY,
    PERM_APPROVE,
    PERM_REFUND,
    FakeBTCPay,
)

REFUND_KEY = (*ALL_PERMISSIONS, PERM_REFUND)


def paid_sale(config_path: Path, btcpay: FakeBTCPay, minor: int = 150_00,
              code: str = "JMD") -> str:
    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(minor, code)
        btcpay.pay(session.invoice.bolt11)
        outcome = await session.wait_settled(10)
        assert outcome.status == "paid"
        return session.record.id

    return run_terminal(config_path, body)


def cli_refund(capsys, config_path: Path, *args: str) -> tuple[int, dict]:
    """`refund … --json` (the contract's keys checked); `out.err`: its words on stderr."""
    return refund(capsys, config_path, *args)


def claim_link(out) -> str:
    """The LNURL-withdraw the customer scans, as `refund --json` says it beside its answer."""
    [line] = [x for x in out.err.splitlines() if x.startswith("claim link")]
    return line.split(": ", 1)[1]


def test_a_key_without_the_refund_permission_says_how_to_refund_instead(config_path, btcpay,
                                                                         capsys):
    sale_id = paid_sale(config_path, btcpay)
    code, out = cli_refund(capsys, config_path, sale_id, "--to", "bob@wallet.example")
    assert code == 4 and (out["status"], out["reason"]) == ("failed", "missing-permission")
    assert PERM_REFUND in out.err and "invoice's page in BTCPay" in out.err
    assert btcpay.refunds == {}


def test_a_partial_refund_is_a_pull_payment_paid_out_to_the_address(config_path, btcpay,
                                                                    capsys):
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY
    sale_id = paid_sale(config_path, btcpay)  # J$150.00 = 961,539 msat at the store's rate
    code, out = cli_refund(capsys, config_path, sale_id, "--amount", "50.00",
                           "--to", "bob@wallet.example")
    assert code == 0 and out["status"] == "sent", out
    assert out["amount_msat"] == 320_000  # a third of the sats paid, whole sats, rounded down
    [pp] = btcpay.refunds.values()
    invoice = next(iter(btcpay.invoices.values()))
    assert (pp.invoice_id, pp.currency, str(pp.amount)) == (invoice.id, "BTC", "0.00000320")
    assert pp.name == f"Refund {out['refund_id']}"
    assert pp.auto_approve is False  # the key cannot approve pull payments
    [payout] = pp.payouts
    assert payout["destination"] == "bob@wallet.example"
    assert payout["state"] == "AwaitingApproval" and "approves" in out.err
    link = claim_link(out)
    assert link.startswith("lnurl1")
    with Ledger(load_config(config_path).data_dir / LEDGER_FILE, read_only=True) as ledger:
        assert ledger.refunds(sale_id)[0].claim_link == link  # the link on the books
    # The claim link is a real LNURL-withdraw: a wallet reading it is offered the refund (less
    # what the payout already claimed: nothing left).
    from terminal.adapters.withdraw import WithdrawClient
    from terminal.app.root import url_policy

    async def scan() -> int:
        async with WithdrawClient(url_policy(load_config(config_path))) as client:
            return (await client.fetch_request(link)).max_withdrawable_msat

    assert asyncio.run(scan()) == 0
    # Above what is left (961,539 - 320,000 msat: 641 sats): refused, nothing issued.
    code, out = cli_refund(capsys, config_path, sale_id, "--amount", "642", "--currency",
                           "SAT", "--to", "bob@wallet.example")
    assert code == 2 and "641 sats" in out["stderr"] and len(btcpay.refunds) == 1


def test_with_the_approval_permission_the_claim_link_is_paid_at_once(config_path, btcpay,
                                                                     capsys, card, issuer):
    btcpay.api_keys[DEFAULT_KEY] = (*REFUND_KEY, PERM_APPROVE)
    sale_id = paid_sale(config_path, btcpay, 5_00, "USD")
    # BTCPay's (and this issuer's) cards carry no payLink: the customer scans the claim QR.
    code, out = cli_refund(capsys, config_path, sale_id, "--card-file", str(card))
    assert code == 0 and out["status"] == "sent", out
    assert out["amount_msat"] == 5_000_000 and "no payLink" in out.err
    assert claim_link(out).startswith("lnurl1")
    [pp] = btcpay.refunds.values()
    assert pp.auto_approve and pp.payouts == []
    assert "/scan" in [s.path for s in issuer.seen]  # its withdrawRequest was read …
    assert "/cb" not in [s.path for s in issuer.seen]  # … and nothing was withdrawn


def test_a_card_with_a_pay_link_gets_the_payout(config_path, btcpay, capsys, card, issuer):
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY
    sale_id = paid_sale(config_path, btcpay, 5_00, "USD")
    issuer.scan_answer = (200, issuer.withdraw_request(
        payLink=f"lnurlp://{issuer.origin.removeprefix('http://')}/pay/card-1"))
    code, out = cli_refund(capsys, config_path, sale_id, "--amount", "1000", "--currency",
                           "SAT", "--card-file", str(card))
    assert code == 0, out
    [pp] = btcpay.refunds.values()
    from terminal.protocols.lnurl import decode_lnurl

    destination = pp.payouts[0]["destination"]
    assert decode_lnurl(destination, insecure_hosts={"127.0.0.1"}) == \
        f"{issuer.origin}/pay/card-1"


def test_a_lost_answer_is_found_again_never_issued_twice(config_path, btcpay):
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY
    sale_id = paid_sale(config_path, btcpay)
    btcpay.fail_after_refund = 1

    async def refund_then_resolve(terminal: Terminal):
        service = build_refunds(terminal.config, terminal)
        first = await service.refund(RefundRequest(sale_id, Money(100, currency("SAT")),
                                                   to="ann@wallet.example"))
        resolved = await service.resolve_open()
        return first, resolved, terminal.ledger.refunds(sale_id)

    first, resolved, refunds = run_terminal(config_path, refund_then_resolve)
    assert (first.status, first.reason) == ("pending", "answer-lost")
    assert [r.status for r in resolved] == ["sent"]
    assert len(btcpay.refunds) == 1  # created once, found by its name
    assert refunds[0].backend_ref == next(iter(btcpay.refunds))
    assert refunds[0].claim_link


def test_btcpay_answers_non_refundable_for_an_invoice_not_paid(config_path, btcpay):
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY

    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(10_00, "USD")  # never paid
        with pytest.raises(BackendRejected) as info:
            await terminal.backend.refund_invoice(session.invoice.backend_ref, 10_000,
                                                  name="Refund x", description="")
        return info.value

    error = run_terminal(config_path, body)
    assert error.code == "non-refundable" and "not settled" in error.message
    assert btcpay.refunds == {}


def test_a_sale_tapped_with_another_card_is_refused(config_path, btcpay, capsys, tmp_path,
                                                    issuer):
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY
    from helpers.btcpay_rig import CARD_UID, ISSUER_KEY, KEY_VERSION

    from terminal.adapters.simcards import create_programmed, deterministic_keys

    paying = tmp_path / "paying.json"
    create_programmed(paying, f"lnurlw://{issuer.origin.removeprefix('http://')}/scan",
                      deterministic_keys(ISSUER_KEY, CARD_UID, KEY_VERSION), uid=CARD_UID)
    other = tmp_path / "other.json"
    other_uid = bytes.fromhex("04010203040506")
    create_programmed(other, f"lnurlw://{issuer.origin.removeprefix('http://')}/scan",
                      deterministic_keys(ISSUER_KEY, other_uid, KEY_VERSION), uid=other_uid)
    issuer.on_callback = lambda query: btcpay.pay(query["pr"])

    async def body(terminal: Terminal):
        session = await terminal.checkout.open_sale(40, "USD")  # the issuer's max: 500 sats
        await session.tap(tap_card(paying))
        assert (await session.wait_settled(10)).status == "paid"
        return session.record.id

    sale_id = run_terminal(config_path, body)
    code, out = cli_refund(capsys, config_path, sale_id, "--card-file", str(other))
    assert code == 4 and out["reason"] == "not-the-paying-card" and out["refund_id"] is None
    assert btcpay.refunds == {}


@pytest.mark.parametrize("garbled", ["/refund", "/lnurl"])
def test_a_refund_made_whose_answer_is_unreadable_stays_pending_never_failed(
        config_path, btcpay, garbled):
    """BTCPay made the pull payment (2xx) but its answer, or its LNURL read after it, is not
    what BTCPay sends: the refund exists, so it is not "failed, nothing was sent" (a second
    refund would be issued); it is found again by its name."""
    btcpay.api_keys[DEFAULT_KEY] = REFUND_KEY
    sale_id = paid_sale(config_path, btcpay)
    if garbled == "/refund":
        btcpay.garble_after_refund = 1
    else:
        btcpay.fail_next("GET", garbled, status=200, body="[]")

    async def refund_then_resolve(terminal: Terminal):
        service = build_refunds(terminal.config, terminal)
        first = await service.refund(RefundRequest(sale_id, Money(100, currency("SAT")),
                                                   to="ann@wallet.example"))
        resolved = await service.resolve_open()
        return first, resolved, terminal.ledger.refunds(sale_id)

    first, resolved, refunds = run_terminal(config_path, refund_then_resolve)
    assert first.status == "pending"
    assert [r.status for r in resolved] == ["sent"]
    assert len(btcpay.refunds) == 1
    assert refunds[0].backend_ref == next(iter(btcpay.refunds))
    assert refunds[0].claim_link
