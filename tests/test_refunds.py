"""The refund service against the sandbox, where it can go wrong: Flash's PENDING (cached under
the key), a provider error after the debit (not cached: sending again would pay twice), a final
failure, an empty wallet, a receive-only terminal, a key without write_wallet, the wrong card, a
card without a payLink, receivers that send the wrong invoice, two refunds racing for one sale,
and an amount in the sale's own currency. Real HTTP on loopback, the books on disk."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.loopback import LoopbackServer
from helpers.refund_flow import charge, new_card, refund, run, sending_config
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from terminal.adapters.simcards import tap as tap_card
from terminal.app.config import load_config
from terminal.app.root import FLASH_BUDGET_FILE, build_refunds, build_terminal
from terminal.core.money import Money, currency
from terminal.sandbox.server import SandboxThread
from terminal.services.refunds import RefundRefused, RefundRequest


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[SandboxThread]:
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture(autouse=True)
def a_new_stretch_at_the_counter(sandbox, config_path) -> None:
    """Each test starts as if minutes had passed: the module's sandbox enforces Flash's budget of
    20 new invoices per 2 minutes per merchant (proven in test_sandbox_flash_fidelity), which a
    module of sales would otherwise spend; the terminal's own record of that budget goes too."""
    sandbox.reset_limits()
    (load_config(config_path).data_dir / FLASH_BUDGET_FILE).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def config_path(sandbox) -> Path:
    return sending_config(sandbox, sandbox.data_dir / "terminal.toml")


@pytest.fixture(autouse=True)
def clean_faults(sandbox):
    yield
    sandbox.call(sandbox.faults.reset)


@dataclass
class Sold:
    sale_id: str
    card: Path
    card_id: str


@pytest.fixture
def sold(tmp_path, config_path, capsys) -> Sold:
    """A sale of 10,000 sats paid by a card (which the merchant's wallet received)."""
    card = new_card(tmp_path, config_path, 50_000, capsys)
    out = charge(capsys, config_path, 10_000, card)
    with build_books(config_path) as ledger:
        card_id = ledger.get_sale(out["sale_id"]).card_id
    return Sold(out["sale_id"], card, card_id)


def build_books(config_path: Path):
    from terminal.adapters.books.ledger import Ledger
    from terminal.app.root import LEDGER_FILE

    return Ledger(load_config(config_path).data_dir / LEDGER_FILE, read_only=True)


def sats(n: int) -> Money:
    return Money(n, currency("SAT"))


async def refund_with(config_path: Path, request: RefundRequest, *, wait_s: float = 5.0,
                      resolve_first: bool = False):
    config = load_config(config_path)
    terminal = build_terminal(config)
    try:
        service = build_refunds(config, terminal)
        service.pending_wait_s, service.poll_s = wait_s, 0.05
        if resolve_first:
            await service.resolve_open()
        outcome = await service.refund(request)
        return outcome, terminal.ledger.get_refund(outcome.refund_id), terminal.ledger.get_sale(
            request.sale_id)
    finally:
        await terminal.aclose()


async def resolve(config_path: Path):
    config = load_config(config_path)
    terminal = build_terminal(config)
    try:
        await build_refunds(config, terminal).resolve_open()
        return terminal.ledger.refunds()
    finally:
        await terminal.aclose()


def sends_of(sandbox, refund_id: str) -> list:
    return sandbox.call(lambda: [s for s in sandbox.core.state.sends.values()
                                 if s.idempotency_key == refund_id])


# ---------------------------------------------------------------------------- unclear answers


def test_a_pending_send_is_resolved_from_the_wallets_transactions(sandbox, config_path, sold):
    sandbox.set_faults(send_pending_next=1, send_pending_settle_s=0.3)
    address = sandbox.address("pending-carol")
    outcome, record, sale = asyncio.run(refund_with(
        config_path, RefundRequest(sold.sale_id, sats(1000), to=address)))
    assert outcome.status == "sent", outcome
    assert [h.to_state for h in record.history] == ["prepared", "sending", "pending", "sent"]
    assert sandbox.customer_balance_msat("pending-carol") == 1_000_000
    # Flash kept PENDING under the key: asking again would never have told the outcome.
    assert [s.status for s in sends_of(sandbox, record.id)] == ["PENDING"]
    assert sale.refunded_msat == 1_000_000


def test_a_send_still_in_flight_is_pending_then_resolved_after_a_restart(sandbox, config_path,
                                                                         sold, capsys):
    sandbox.set_faults(send_pending_next=1, send_pending_settle_s=None)
    address = sandbox.address("slow-dave")
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "2000", "--currency",
                       "SAT", "--to", address)
    assert code == 4 and out["status"] == "pending" and out["reason"] == "pending", out
    # It holds its amount while unresolved: 10,000 - 2,000 left.
    code, out2 = refund(capsys, config_path, sold.sale_id, "--amount", "8001", "--currency",
                        "SAT", "--to", address)
    assert code == 2 and "still being resolved" in out2["stderr"]
    # The payment lands; the next resolution (any refund command, the kiosk) finds it.
    payment_hash = sandbox.call(lambda: next(iter(sandbox.core.in_flight)))
    assert sandbox.call(sandbox.core.finish_pending, payment_hash, True)
    [found] = [r for r in asyncio.run(resolve(config_path)) if r.id == out["refund_id"]]
    assert found.state == "sent"
    assert sandbox.customer_balance_msat("slow-dave") == 2_000_000


def test_a_send_still_in_flight_a_day_after_its_invoice_expired_is_never_failed(
        sandbox, config_path, sold):
    """Flash lists a send in flight as a PENDING transaction: it is neither sent nor failed, so
    the refund stays pending however late it is looked at (failing it would invite a second
    refund that pays the customer twice), and is sent once the payment settles."""
    sandbox.set_faults(send_pending_next=1, send_pending_settle_s=None)
    outcome, record, _ = asyncio.run(refund_with(
        config_path, RefundRequest(sold.sale_id, sats(1500), to=sandbox.address("stuck-htlc")),
        wait_s=0.2))
    assert outcome.status == "pending", outcome
    out = {"refund_id": record.id}

    async def look_a_day_later():
        config = load_config(config_path)
        terminal = build_terminal(config)
        try:
            service = build_refunds(config, terminal)
            service.clock = lambda: time.time() + 86_400  # long past the invoice's expiry
            service.pending_wait_s, service.poll_s = 0.2, 0.05
            await service.resolve_open()
            return terminal.ledger.get_refund(out["refund_id"])
        finally:
            await terminal.aclose()

    later = asyncio.run(look_a_day_later())
    assert later.refund_state.value == "pending", later
    assert "in flight" in later.message
    payment_hash = sandbox.call(lambda: next(iter(sandbox.core.in_flight)))
    assert sandbox.call(sandbox.core.finish_pending, payment_hash, True)
    [found] = [r for r in asyncio.run(resolve(config_path)) if r.id == out["refund_id"]]
    assert found.state == "sent"
    assert len(sends_of(sandbox, out["refund_id"])) == 1  # sent once, never again


def test_the_running_terminal_resolves_a_pending_refund_on_its_own(sandbox, config_path, sold,
                                                                    capsys):
    """A refund left pending (PENDING cached under its key) is found sent by the running
    terminal's own reconcile pass at start-up, without any refund command."""
    from terminal.app.root import build_kiosk, build_till

    sandbox.set_faults(send_pending_next=1, send_pending_settle_s=None)
    address = sandbox.address("kiosk-erin")
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "1500", "--currency",
                       "SAT", "--to", address)
    assert code == 4 and out["status"] == "pending", out
    payment_hash = sandbox.call(lambda: next(iter(sandbox.core.in_flight)))
    assert sandbox.call(sandbox.core.finish_pending, payment_hash, True)

    async def run_the_terminal():
        config = load_config(config_path)
        terminal = build_terminal(config)
        till = build_till(config, terminal)
        kiosk = build_kiosk(config, terminal, till)
        service, resolved = till.refunds, asyncio.Event()
        assert service is not None
        resolve_open = service.resolve_open

        async def resolve_and_say():
            try:
                return await resolve_open()
            finally:
                resolved.set()

        service.resolve_open = resolve_and_say  # type: ignore[method-assign]
        kiosk.start()
        try:
            async with asyncio.timeout(10):
                await resolved.wait()
            return terminal.ledger.get_refund(out["refund_id"])
        finally:
            await kiosk.stop()
            await terminal.aclose()

    record = asyncio.run(run_the_terminal())
    assert record.state == "sent"
    assert sandbox.customer_balance_msat("kiosk-erin") == 1_500_000
    assert len(sends_of(sandbox, record.id)) == 1  # read back, never sent again


def test_an_error_after_the_debit_is_read_back_not_sent_again(sandbox, config_path, sold):
    # IBEX paid, then answered an error: Flash does not keep errors under the key, so sending
    # again would pay a second time. The terminal reads the transactions instead.
    sandbox.set_faults(send_error_after_debit_next=1)
    address = sandbox.address("erin")
    outcome, record, _ = asyncio.run(refund_with(
        config_path, RefundRequest(sold.sale_id, sats(1500), to=address)))
    assert outcome.status == "sent"
    assert "unclear" in [h.detail for h in record.history]
    assert sandbox.customer_balance_msat("erin") == 1_500_000  # once
    assert sends_of(sandbox, record.id) == []  # nothing kept: a resend would have run again


def test_a_final_failure_sends_nothing_and_frees_the_amount(sandbox, config_path, sold):
    sandbox.set_faults(send_failure_next=1)
    address = sandbox.address("frank")
    outcome, record, sale = asyncio.run(refund_with(
        config_path, RefundRequest(sold.sale_id, sats(10_000), to=address)))
    assert (outcome.status, outcome.reason) == ("failed", "payment-failed")
    assert sandbox.customer_balance_msat("frank") == 0 and sale.refunded_msat == 0
    outcome, _, sale = asyncio.run(refund_with(
        config_path, RefundRequest(sold.sale_id, sats(10_000), to=address)))
    assert outcome.status == "sent" and sale.refunded_msat == 10_000_000


def test_an_empty_wallet_refuses_before_any_debit(sandbox, config_path, sold):
    usd = sandbox.wallet_id("USD")
    kept = sandbox.merchant_balance_cents()

    def set_balance(cents: int) -> None:
        sandbox.core.state.account.wallet(usd).balance = cents

    sandbox.call(set_balance, 0)
    try:
        outcome, _, sale = asyncio.run(refund_with(
            config_path, RefundRequest(sold.sale_id, sats(1000), to=sandbox.address("gina"))))
    finally:
        sandbox.call(set_balance, kept)
    assert (outcome.status, outcome.reason) == ("failed", "insufficient-balance")
    assert "does not hold enough" in outcome.message
    assert sale.refunded_msat == 0 and sandbox.customer_balance_msat("gina") == 0


# ---------------------------------------------------------------------------- cannot send


def test_a_receive_only_terminal_says_how_to_refund_instead(sandbox, sold, capsys, tmp_path):
    receive_only = sandbox.write_terminal_config(tmp_path / "receive-only.toml")
    text = receive_only.read_text()
    data_dir = load_config(sandbox.data_dir / "terminal.toml").data_dir
    receive_only.write_text(text.replace(
        text.split("data_dir = ")[1].split("\n")[0], json.dumps(str(data_dir))))
    os.chmod(receive_only, 0o600)
    code, out = refund(capsys, receive_only, sold.sale_id, "--to", sandbox.address("hal"))
    assert code == 4
    assert (out["status"], out["reason"], out["refund_id"]) == ("failed", "receive-only", None)
    assert "receive-only" in out.err and "Flash app" in out.err


def test_a_key_without_write_wallet_is_refused_by_flash_before_anything_is_paid(
        sandbox, config_path, sold, tmp_path, capsys):
    key = sandbox.create_api_key(["read:user", "read:wallet", "read:transactions"])
    limited = tmp_path / "limited.toml"
    limited.write_text(config_path.read_text().replace(sandbox.api_key, key))
    os.chmod(limited, 0o600)
    code, out = refund(capsys, limited, sold.sale_id, "--amount", "100", "--currency", "SAT",
                       "--to", sandbox.address("ivy"))
    assert code == 4 and (out["status"], out["reason"]) == ("failed", "cannot-send"), out
    assert "write_wallet" in out.err
    assert sandbox.customer_balance_msat("ivy") == 0


# ---------------------------------------------------------------------------- the card


def test_only_the_card_that_paid_takes_its_refund(sandbox, config_path, sold, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    other = new_card(tmp_path / "other", config_path, 1_000, capsys)
    with pytest.raises(RefundRefused) as info:
        asyncio.run(refund_with(config_path, RefundRequest(
            sold.sale_id, sats(100), tap_url=tap_card(other))))
    assert info.value.code == "not-the-paying-card" and not info.value.usage
    with build_books(config_path) as ledger:
        assert ledger.refunds(sold.sale_id) == []  # nothing recorded
    # The same tap twice: the second is a replay.
    url = tap_card(sold.card)
    outcome, _, _ = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(100), tap_url=url)))
    assert outcome.status == "sent"
    with pytest.raises(RefundRefused) as info:
        asyncio.run(refund_with(config_path, RefundRequest(
            sold.sale_id, sats(100), tap_url=url)))
    assert info.value.code == "replayed-tap"


def test_refund_tap_url_on_the_command_line(sandbox, config_path, sold, capsys):
    """`--tap URL`: the tap of the card that paid, as a reader gives it; the refund lands on
    that card; the same tap again is a replay: exit 4, nothing recorded or sent."""
    before = sandbox.card_state(sold.card_id)["balance_msat"]
    url = tap_card(sold.card)
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "250", "--currency",
                       "SAT", "--tap", url)
    assert code == 0 and out["amount_msat"] == 250_000, out
    assert sandbox.card_state(sold.card_id)["balance_msat"] == before + 250_000
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "250", "--currency",
                       "SAT", "--tap", url)
    assert code == 4 and (out["status"], out["reason"], out["refund_id"]) == (
        "failed", "replayed-tap", None), out
    assert sandbox.card_state(sold.card_id)["balance_msat"] == before + 250_000
    with build_books(config_path) as ledger:
        assert len(ledger.refunds(sold.sale_id)) == 1


def test_a_card_without_a_pay_link_says_where_else_to_refund(sandbox, config_path, sold):
    sandbox.set_faults(withdraw_omit_pay_link=True)
    before = sandbox.card_state(sold.card_id)["balance_msat"]
    outcome, record, _ = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(500), tap_url=tap_card(sold.card))))
    assert (outcome.status, outcome.reason) == ("failed", "no-pay-link")
    assert "Lightning Address" in outcome.message
    assert record.bolt11 is None  # never got as far as an invoice
    assert sandbox.card_state(sold.card_id)["balance_msat"] == before  # nothing withdrawn


# ---------------------------------------------------------------------------- receivers


@pytest.fixture
def hostile(sandbox):
    """An LNURL-pay service on loopback whose callback answers what the test sets."""
    answers: dict[str, object] = {}
    metadata = json.dumps([["text/plain", "Mallory's wallet"]])

    async def pay_request(request):
        return JSONResponse({"tag": "payRequest", "minSendable": 1000,
                             "maxSendable": 10**10, "metadata": metadata,
                             "callback": f"{request.base_url}cb"})

    async def callback(request):
        return JSONResponse(answers["callback"])

    app = Starlette(routes=[Route("/.well-known/lnurlp/mallory", pay_request),
                            Route("/cb", callback)])
    with LoopbackServer(app) as server:
        yield server, answers, metadata


def test_an_invoice_for_another_amount_or_metadata_is_never_paid(sandbox, config_path, sold,
                                                                  hostile):
    server, answers, _metadata = hostile
    address = f"mallory@127.0.0.1:{server.port}"
    # A real invoice, but for more than asked (a sandbox address invoice for 2,000 sats).
    wrong_amount = sandbox.call(sandbox.core.address_invoice, "mallory-sink", 2_000_000)["pr"]
    answers["callback"] = {"pr": wrong_amount, "routes": []}
    outcome, record, _ = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(1000), to=address)))
    assert (outcome.status, outcome.reason) == ("failed", "invoice-mismatch")
    assert "asks 2,000 sats" in outcome.message
    # The right amount, but committing to other metadata than the service announced.
    other = sandbox.call(sandbox.core.address_invoice, "mallory-sink", 1_000_000)["pr"]
    answers["callback"] = {"pr": other, "routes": []}
    outcome, _, sale = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(1000), to=address)))
    assert (outcome.status, outcome.reason) == ("failed", "invoice-mismatch")
    assert "description hash" in outcome.message
    answers["callback"] = {"status": "ERROR", "reason": "Wallet\x1b[31m closed."}
    outcome, _, sale = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(1000), to=address)))
    assert (outcome.status, outcome.reason) == ("failed", "destination-refused")
    assert "Wallet closed." in outcome.message and "\x1b" not in outcome.message
    assert sandbox.customer_balance_msat("mallory-sink") == 0 and sale.refunded_msat == 0


def test_a_bolt11_the_customer_shows_is_paid_for_its_own_amount(sandbox, config_path, sold,
                                                                capsys):
    pr = sandbox.call(sandbox.core.address_invoice, "judy", 1_234_000)["pr"]
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "999", "--currency",
                       "SAT", "--to", pr)
    assert code == 2 and "asks 1,234.000 sats" in out["stderr"]
    code, out = refund(capsys, config_path, sold.sale_id, "--to", f"lightning:{pr.upper()}")
    assert code == 0 and out["amount_msat"] == 1_234_000
    assert sandbox.customer_balance_msat("judy") == 1_234_000


def test_an_lnurl_pay_keyed_or_scanned_lands_in_its_wallet(sandbox, config_path, sold, capsys):
    """LUD-06 (bech32, as a QR carries it, with its `lightning:` scheme) and LUD-17
    (`lnurlp://`): resolved to an invoice here, checked, paid into the wallet behind it."""
    from terminal.protocols.lnurl import encode_lnurl

    authority = sandbox.address("x").split("@", 1)[1]
    bech32 = encode_lnurl(f"http://{authority}/.well-known/lnurlp/scan-kim").upper()
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "700", "--currency",
                       "SAT", "--to", f"lightning:{bech32}")
    assert code == 0 and out["amount_msat"] == 700_000, out
    assert sandbox.customer_balance_msat("scan-kim") == 700_000
    code, out = refund(capsys, config_path, sold.sale_id, "--amount", "300", "--currency",
                       "SAT", "--to", f"lnurlp://{authority}/.well-known/lnurlp/keyed-lee")
    assert code == 0 and out["amount_msat"] == 300_000, out
    assert sandbox.customer_balance_msat("keyed-lee") == 300_000
    assert sandbox.customer_balance_msat("scan-kim") == 700_000
    with build_books(config_path) as ledger:
        assert ledger.get_sale(sold.sale_id).refunded_msat == 1_000_000


@pytest.mark.parametrize("text", ["not-an-address", "a@", "@b", "lnurlw://x.example/ln",
                                  "lnbc1qqqq", "bob@exa mple.com"])
def test_a_destination_that_does_not_parse_is_a_usage_error(config_path, sold, capsys, text):
    code, out = refund(capsys, config_path, sold.sale_id, "--to", text)
    assert code == 2 and "Traceback" not in out["stderr"]


def test_an_address_the_policy_refuses_sends_nothing(config_path, sold):
    outcome, _, _ = asyncio.run(refund_with(config_path, RefundRequest(
        sold.sale_id, sats(100), to="bob@10.0.0.8")))  # plain http to a private address
    assert (outcome.status, outcome.reason) == ("failed", "destination-not-allowed")


# ---------------------------------------------------------------------------- the money rule


def test_two_refunds_racing_for_one_sale_never_exceed_it(sandbox, config_path, sold):
    async def both():
        config = load_config(config_path)
        terminal = build_terminal(config)
        try:
            service = build_refunds(config, terminal)
            requests = [RefundRequest(sold.sale_id, sats(6000), to=sandbox.address(name))
                        for name in ("kim", "lee")]
            return await asyncio.gather(*(service.refund(r) for r in requests),
                                        return_exceptions=True)
        finally:
            await terminal.aclose()

    results = asyncio.run(both())
    sent = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, RefundRefused)]
    assert len(sent) == 1 and sent[0].status == "sent"
    assert len(refused) == 1 and refused[0].code == "above-remainder" and refused[0].usage
    total = sandbox.customer_balance_msat("kim") + sandbox.customer_balance_msat("lee")
    assert total == 6_000_000


def test_an_amount_in_the_sales_currency_refunds_at_the_sales_rate(tmp_path, sandbox,
                                                                   config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    code, sale = run(capsys, "charge", "10.00", "--currency", "USD", "--card-file", str(card),
                     "--config", str(config_path), "--json")
    assert code == 0
    code, out = refund(capsys, config_path, sale["sale_id"], "--amount", "2.50",
                       "--to", sandbox.address("mo"))
    assert code == 0
    assert out["amount_msat"] == sale["amount_msat"] // 4 // 1000 * 1000  # whole sats, down
    with build_books(config_path) as ledger:
        [record] = ledger.refunds(sale["sale_id"])
    assert (record.currency, record.amount_minor) == ("USD", 250)


def test_a_sale_that_was_not_paid_has_nothing_to_refund(config_path, capsys, sandbox):
    code, out = run(capsys, "charge", "100", "--currency", "SAT", "--qr", "--timeout", "1",
                    "--config", str(config_path), "--json")
    code, out = refund(capsys, config_path, out["sale_id"], "--to", sandbox.address("nan"))
    assert code == 2 and "nothing to refund" in out["stderr"]
    code, out = refund(capsys, config_path, "f" * 32, "--to", sandbox.address("nan"))
    assert code == 2 and "no sale" in out["stderr"]


def test_a_pending_refund_a_key_cannot_look_up_says_why(sandbox, config_path, sold, tmp_path):
    key = sandbox.create_api_key(["read:user", "write:wallet"])  # no read_transactions
    limited = tmp_path / "no-read.toml"
    limited.write_text(config_path.read_text().replace(sandbox.api_key, key))
    os.chmod(limited, 0o600)
    sandbox.set_faults(send_pending_next=1)  # stays in flight
    outcome, record, sale = asyncio.run(refund_with(
        limited, RefundRequest(sold.sale_id, sats(700), to=sandbox.address("olga")),
        wait_s=0.2))
    assert (outcome.status, outcome.reason) == ("pending", "pending")
    assert "read_transactions" in record.message and "Do not refund again" in record.message
    assert sale.refunded_msat == 0  # not counted as refunded, but held:
    with pytest.raises(RefundRefused) as info:
        asyncio.run(refund_with(limited, RefundRequest(sold.sale_id, sats(9_301),
                                                       to=sandbox.address("olga"))))
    assert info.value.code == "above-remainder"
