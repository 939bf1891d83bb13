"""FlashBackend against the sandbox behaving as Flash's source does (lnflash/flash at 892346e):
received payments through `transactions` + `transactionDetails`, purged invoices, scopes, error
codes where Flash puts them, USD invoice expiry, exact fractional cents, batched status, EXPIRED
pushed before PAID, and the invoice budget. Real HTTP and WebSocket on 127.0.0.1."""

# ruff: noqa: F811 - the sandbox fixtures (tests/helpers/flash_sandbox.py) are parameters here

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import bolt11
import pytest
from helpers.flash_sandbox import sandbox, sb  # noqa: F401 - the shared fixtures

from terminal.adapters.backends.budget import BackendBudget
from terminal.adapters.backends.flash import FlashBackend, ReconnectPolicy
from terminal.adapters.backends.flash_history import LookupIncomplete
from terminal.adapters.backends.http import RetryPolicy
from terminal.core.budget import FLASH_INVOICE_LIMIT
from terminal.core.memo import sale_memo
from terminal.core.ports.backend import (
    BackendRateLimited,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    InvoiceRequest,
    InvoiceStatus,
)
from terminal.sandbox import FlashLimits, SandboxThread

TERMINAL = "ft-fidelity"



def run(scenario, timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(bounded())


def make(sb, **kwargs: Any) -> FlashBackend:
    defaults: dict[str, Any] = dict(
        network="regtest",
        terminal_id=TERMINAL,
        poll_interval_s=0.05,
        retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=2),
        reconnect=ReconnectPolicy(initial_s=0.01, max_s=0.05),
        clock=sb.core.clock,
    )
    if "api_key" not in kwargs and "session_token" not in kwargs:
        defaults["username"] = sb.username
    defaults.update(kwargs)
    return FlashBackend(sb.http_url, sb.ws_url, **defaults)


def request(amount: int = 100, currency: str = "SAT", sale: str = "a" * 32,
            key: str | None = None, **extra: Any) -> InvoiceRequest:
    memo = sale_memo("Coffee", terminal_id=TERMINAL, sale_id=sale)
    return InvoiceRequest(amount_minor=amount, currency=currency, memo=memo,
                          idempotency_key=key or sale, **extra)


def pay(sb, invoice) -> None:
    assert sb.pay_invoice(invoice.bolt11) == "PAID"


# --- received payments and purged invoices ---------------------------------------------------


def test_received_payments_carry_the_terminal_tag_memo_and_amount(sb):
    async def scenario():
        anon = make(sb)
        keyed = make(sb, api_key=sb.api_key)
        paid = await anon.create_invoice(request(210, sale="1" * 32))
        unpaid = await anon.create_invoice(request(220, sale="2" * 32))
        await asyncio.to_thread(pay, sb, paid)
        foreign = await make(sb, terminal_id="ft-other").create_invoice(
            request(230, sale="3" * 32))
        await asyncio.to_thread(pay, sb, foreign)
        found = await keyed.received_payments(time.time() - 60)
        await anon.aclose()
        await keyed.aclose()
        return paid, unpaid, found

    paid, unpaid, found = run(scenario)
    mine = [p for p in found if p.metadata.get("saleId") == "1" * 32]
    assert len(mine) == 1
    assert mine[0].payment_hash == paid.payment_hash
    assert mine[0].amount_msat == paid.amount_msat == 210_000
    assert mine[0].bolt11 == paid.bolt11
    assert mine[0].metadata == {"saleId": "1" * 32, "terminalId": TERMINAL}
    assert "[ft ft-fidelity " in mine[0].memo
    assert all(p.metadata["terminalId"] == TERMINAL for p in found)  # not the other terminal's
    assert unpaid.payment_hash not in {p.payment_hash for p in found}


def test_find_payment_settles_a_purged_paid_invoice_that_reads_expired(sb):
    async def scenario():
        anon = make(sb)
        keyed = make(sb, api_key=sb.api_key)
        invoice = await anon.create_invoice(request(300, sale="4" * 32))
        never = await anon.create_invoice(request(310, sale="5" * 32))
        await asyncio.to_thread(pay, sb, invoice)
        sb.clock.offset = 3600  # an hour later the provider has purged both
        await asyncio.to_thread(sb.purge_invoice, invoice.bolt11)
        await asyncio.to_thread(sb.purge_invoice, never.bolt11)
        status = await anon.invoice_status(invoice)
        found = await keyed.find_payment(invoice)
        missing = await keyed.find_payment(never)
        await anon.aclose()
        await keyed.aclose()
        return invoice, status, found, missing

    invoice, status, found, missing = run(scenario)
    assert status is InvoiceStatus.EXPIRED  # what Flash says of a purged invoice, paid or not
    assert found is not None and found.payment_hash == invoice.payment_hash
    assert found.amount_msat == invoice.amount_msat
    assert missing is None  # the history covers its whole life: no payment arrived


def test_receive_only_and_scopeless_keys_cannot_look_payments_up(sb):
    async def scenario():
        anon = make(sb)
        no_tx = make(sb, api_key=sb.create_api_key(["read:user", "write:wallet"]))
        invoice = await anon.create_invoice(request(100, sale="6" * 32))
        errors = []
        for backend in (anon, no_tx):
            with pytest.raises(BackendUnauthorized) as err:
                await backend.find_payment(invoice)
            errors.append(err.value)
            await backend.aclose()
        return errors

    receive_only, scopeless = run(scenario)
    assert receive_only.code == "needs_api_key" and "read_transactions" in receive_only.message
    assert scopeless.code == "missing_scope:read_transactions"
    assert "read_transactions" in scopeless.message


def test_history_beyond_flash_newest_100_rows_is_incomplete_not_unpaid(sb):
    async def scenario():
        anon = make(sb, amount_tolerance=None)
        keyed = make(sb, api_key=sb.api_key)
        old = await anon.create_invoice(request(100, sale="7" * 32))
        await asyncio.to_thread(pay, sb, old)
        for n in range(101):  # a busy day: the payment falls out of the newest 100 rows
            sb.clock.offset = 400 + n * 30
            await asyncio.to_thread(sb.reset_limits)
            other = await anon.create_invoice(request(100, sale=f"{n:032x}", key=f"k{n}"))
            await asyncio.to_thread(pay, sb, other)
        with pytest.raises(LookupIncomplete) as err:
            await keyed.find_payment(old)
        await anon.aclose()
        await keyed.aclose()
        return err.value

    error = run(scenario, timeout=60)
    assert error.code == "lookup_incomplete" and "100" in error.message


# --- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["read:user", "write:wallet", "read:transactions"])
def test_scope_check_names_the_missing_scope(sb, missing):
    scopes = [s for s in ("read:user", "write:wallet", "read:transactions") if s != missing]

    async def scenario():
        backend = make(sb, api_key=sb.create_api_key(scopes))
        checks = await backend.check_scopes()
        health = await backend.health()
        await backend.aclose()
        return {c.scope: c.state for c in checks}, health

    states, health = run(scenario)
    name = missing.replace(":", "_")
    assert states[name] == "missing"
    if missing == "read:user":
        # Without `me` the wallet is unknown: what needs it cannot be checked, only named.
        assert not health.ok and "read_user" in health.detail
        assert set(states.values()) <= {"missing", "unknown"}
    else:
        assert all(state == "ok" for scope, state in states.items()
                   if scope not in (name, "read_wallet"))


def test_scope_check_spends_no_invoice_slot(sb):
    async def scenario():
        backend = make(sb, api_key=sb.api_key)
        checks = await backend.check_scopes()
        await backend.aclose()
        return checks

    checks = run(scenario)
    assert [c.state for c in checks] == ["ok"] * 4
    assert sb.limit_state()["invoices"]["self"]["used"] == 0


# --- invoices as Flash makes them ---------------------------------------------------------------


def test_usd_invoice_expires_after_60_s_whatever_the_sale_asked(sb):
    async def scenario():
        backend = make(sb)
        invoice = await backend.create_invoice(request(100, expires_in_s=900))
        await backend.aclose()
        return invoice

    invoice = run(scenario)
    decoded = bolt11.decode(invoice.bolt11)
    assert decoded.expiry == 60
    assert invoice.expires_at == decoded.date + 60


def test_sat_and_jmd_sales_are_priced_in_exact_fractional_cents(sb):
    async def scenario():
        backend = make(sb)
        sats = await backend.create_invoice(request(15, "SAT", sale="8" * 32))
        jmd = await backend.create_invoice(request(1000, "JMD", sale="9" * 32))  # J$10.00
        await backend.aclose()
        return sats, jmd

    sats, jmd = run(scenario)
    # 15 sat = 1.425 US cents: sent exactly, the invoice is exactly 15 sat (2 cents would be 22).
    assert sats.amount_msat == 15_000
    # J$10.00 = 6.3694 US cents = 67.05 sat: whole sats, never short.
    assert jmd.amount_msat == 68_000


def test_btc_wallet_answers_are_a_setup_error(sb):
    from terminal.adapters.backends import flash_documents as docs  # noqa: F401 - schema-valid

    with pytest.raises(ValueError, match="does not support BTC wallets"):
        make(sb, wallet_currency="BTC")


def test_memo_over_639_bytes_is_refused_before_sending(sb):
    async def scenario():
        backend = make(sb)
        long = InvoiceRequest(100, "SAT", "é" * 320, "long-memo")
        with pytest.raises(BackendRejected) as err:
            await backend.create_invoice(long)
        await backend.aclose()
        return err.value

    error = run(scenario)
    assert error.code == "memo_too_long"
    assert sb.limit_state()["invoices"]["recipient"]["used"] == 0


# --- errors as Flash sends them -----------------------------------------------------------------


def test_provider_failures_are_temporary_never_refusals(sb):
    async def scenario():
        backend = make(sb, amount_tolerance=None)
        invoice = await backend.create_invoice(request(100, sale="c" * 32))
        sb.set_faults(ibex_error_next=1)
        with pytest.raises(BackendUnavailable) as creation:
            await backend.create_invoice(request(100, sale="d" * 32))
        sb.set_faults(ibex_error_next=3)  # every retry of the status query fails too
        with pytest.raises(BackendUnavailable) as status:
            await backend.invoice_status(invoice)
        after = await backend.invoice_status(invoice)
        await backend.aclose()
        return creation.value, status.value, after

    creation, status, after = run(scenario)
    assert creation.code == status.code == "IBEX_ERROR" and creation.retryable
    assert after is InvoiceStatus.PENDING


def test_unknown_invoice_is_unknown_not_refused(sb):
    async def scenario():
        backend = make(sb)
        invoice = await backend.create_invoice(request(100, sale="e" * 32))
        sb.core.state.invoices.pop(invoice.payment_hash)
        with pytest.raises(BackendUnavailable) as err:
            await backend.invoice_status(invoice)
        await backend.aclose()
        return err.value

    assert run(scenario).code == "IBEX_ERROR"


def test_missing_read_user_is_a_setup_error_naming_the_scope(sb):
    async def scenario():
        backend = make(sb, api_key=sb.create_api_key(["write:wallet"]))
        with pytest.raises(BackendUnauthorized) as err:
            await backend.create_invoice(request(100))
        await backend.aclose()
        return err.value

    error = run(scenario)
    assert error.code == "missing_scope:read_user"
    assert "read_user" in error.message and "read_transactions" in error.message


def test_key_limit_is_rate_limited_with_flash_retry_time(sb):
    async def scenario():
        key = sb.create_api_key(["read:user", "read:wallet"], rate_limit=3)
        first = make(sb, api_key=key)
        assert (await first.health()).ok
        # Another process with the same key used the rest of the minute.
        other = make(sb, api_key=key)
        for _ in range(2):
            await other._gql.call("query MeId { me { id } }", {}, "MeId", keyed=True)
        late = make(sb, api_key=key, retry=RetryPolicy(attempts=1))
        with pytest.raises(BackendRateLimited) as err:
            await late._gql.call("query MeId { me { id } }", {}, "MeId", keyed=True)
        for backend in (first, other, late):
            await backend.aclose()
        return err.value, late.budget.describe()

    error, described = run(scenario)
    assert error.code == "TOO_MANY_REQUESTS" and 1 <= error.retry_after_s <= 60
    assert any("API-key requests: 0 of 120 left" in line for line in described)


# --- status: batched, anonymous, EXPIRED confirmed ----------------------------------------------


def test_statuses_of_many_invoices_go_in_one_request_and_a_bad_one_is_isolated(sb):
    async def scenario():
        backend = make(sb, amount_tolerance=None)
        invoices = [await backend.create_invoice(request(100 + n, sale=f"{n:032x}"))
                    for n in range(6)]
        await asyncio.to_thread(pay, sb, invoices[1])
        sb.core.state.invoices.pop(invoices[4].payment_hash)  # unknown to the provider
        before = backend.status_requests
        results = await backend.invoice_statuses(invoices)
        used = backend.status_requests - before
        await backend.aclose()
        return results, used

    results, used = run(scenario)
    assert results[1] is InvoiceStatus.PAID
    assert [results[n] for n in (0, 2, 3, 5)] == [InvoiceStatus.PENDING] * 4
    assert isinstance(results[4], BackendUnavailable) and results[4].code == "IBEX_ERROR"
    assert used == 2  # the batch lost its data to the unknown one; the rest asked once more


def test_status_checks_never_carry_the_api_key(sb):
    async def scenario():
        key = sb.create_api_key(["read:user", "write:wallet"], rate_limit=4)
        backend = make(sb, api_key=key)
        invoice = await backend.create_invoice(request(100))  # me + creation: 2 of 4
        statuses = [await backend.invoice_status(invoice) for _ in range(10)]
        seen = []
        async for status in backend.watch(invoice):
            seen.append(status)
            if status is InvoiceStatus.PENDING:
                await asyncio.to_thread(pay, sb, invoice)
        left = backend.budget.describe()
        await backend.aclose()
        return statuses, seen, left

    statuses, seen, left = run(scenario)
    assert statuses == [InvoiceStatus.PENDING] * 10
    assert seen == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
    assert "API-key requests: 118 of 120 left" in left[1]


def test_pushed_expired_is_confirmed_and_a_late_paid_wins(tmp_path):
    # The invoice lives 3 s; the provider's webhook announcing its payment comes 5 s late, so
    # the socket pushes EXPIRED first. The query knows better: the watch ends PAID.
    limits = dataclasses.replace(FlashLimits().scaled(0.05), paid_push_delay_s=5.0)
    with SandboxThread(tmp_path, limits=limits) as sandbox:
        async def scenario():
            backend = FlashBackend(sandbox.http_url, sandbox.ws_url, username=sandbox.username,
                                   network="regtest", poll_interval_s=30, safety_poll_s=30)
            invoice = await backend.create_invoice(request(100))
            seen = []
            async for status in backend.watch(invoice):
                seen.append(status)
                if status is InvoiceStatus.PENDING:
                    await asyncio.to_thread(sandbox.pay_invoice, invoice.bolt11)
            await backend.aclose()
            return seen

        seen = run(scenario)
    assert seen == [InvoiceStatus.PENDING, InvoiceStatus.PAID]


# --- the invoice budget ---------------------------------------------------------------------------


def test_budget_never_sends_the_request_that_would_trip_the_block(sb):
    async def scenario():
        backend = make(sb, amount_tolerance=None)
        made = [await backend.create_invoice(request(100, sale=f"{n:032x}")) for n in range(20)]
        with pytest.raises(BackendRateLimited) as err:
            await backend.create_invoice(request(100, sale="f" * 32))
        await backend.aclose()
        return made, err.value

    made, error = run(scenario)
    assert len(made) == 20
    assert error.code == "budget" and 100 < error.retry_after_s <= 121
    state = sb.limit_state()
    assert state["invoices"]["recipient"]["used"] == 20 and state["invoice_blocks"] == 0


def test_background_work_leaves_a_slot_for_the_counter(sb):
    async def scenario():
        backend = make(sb, amount_tolerance=None)
        background = 0
        while True:
            try:
                await backend.create_invoice(request(100, sale=f"{background:032x}",
                                                     background=True))
            except BackendRateLimited:
                break
            background += 1
        sale = await backend.create_invoice(request(100, sale="b" * 32))
        await backend.aclose()
        return background, sale

    background, sale = run(scenario)
    assert background == 19 and sale.amount_msat == 100_000


def test_block_tripped_elsewhere_pauses_background_and_lets_sales_probe(sb):
    async def scenario():
        other = make(sb, amount_tolerance=None)
        for n in range(20):
            await other.create_invoice(request(100, sale=f"{n:032x}"))
        mine = make(sb, amount_tolerance=None)
        with pytest.raises(BackendRateLimited) as first:  # the sandbox trips the block here
            await mine.create_invoice(request(100, sale="a" * 32, background=True))
        with pytest.raises(BackendRateLimited) as paused:  # not even sent: nothing to learn
            await mine.create_invoice(request(100, sale="b" * 32, background=True))
        with pytest.raises(BackendRateLimited) as probe:  # a sale asks: the block still holds
            await mine.create_invoice(request(100, sale="c" * 32))
        sb.clock.offset = 301
        mine.budget = BackendBudget(clock=sb.core.clock)  # (its own view would still wait)
        mine._gql.budget = mine.budget
        after = await mine.create_invoice(request(100, sale="d" * 32, background=True))
        await other.aclose()
        await mine.aclose()
        return first.value, paused.value, probe.value, after

    first, paused, probe, after = run(scenario)
    # Flash gives no retry time; the block ends within 300 s and may be probed: every 30 s.
    assert first.code == "TOO_MANY_REQUEST" and 29 <= first.retry_after_s <= 30
    assert paused.code == "budget"
    assert probe.code == "TOO_MANY_REQUEST"
    assert after.amount_msat == 100_000
    assert sb.limit_state()["invoice_blocks"] == 1


def test_budget_is_shared_through_its_file(tmp_path, sb):
    path = tmp_path / "flash-budget.json"

    async def scenario():
        one = make(sb, amount_tolerance=None, budget=BackendBudget(path=path,
                                                                   clock=sb.core.clock))
        for n in range(12):
            await one.create_invoice(request(100, sale=f"{n:032x}"))
        two = make(sb, amount_tolerance=None, budget=BackendBudget(path=path,
                                                                   clock=sb.core.clock))
        for n in range(8):
            await two.create_invoice(request(100, sale=f"{n + 100:032x}"))
        with pytest.raises(BackendRateLimited):
            await two.create_invoice(request(100, sale="f" * 32))
        await one.aclose()
        await two.aclose()
        return json.loads(path.read_text())

    state = run(scenario)
    assert state["invoices"]["used"] == 20
    assert sb.limit_state()["invoice_blocks"] == 0
    assert FLASH_INVOICE_LIMIT.points == 20


def test_btc_wallet_mode_is_refused_by_the_configuration():
    from terminal.app.config import ConfigError, parse_config

    raw = {"backend": {"kind": "flash", "flash": {
        "http_url": "https://api.flashapp.me/graphql", "username": "shop",
        "wallet_currency": "BTC"}}}
    with pytest.raises(ConfigError, match="Flash does not support BTC wallets"):
        parse_config(raw)
