"""BTCPay Greenfield backend against a real HTTP fake on 127.0.0.1 (tests/fakes/btcpay_server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from terminal.adapters.backends.btcpay import BTCPayBackend
from terminal.adapters.backends.http import RetryPolicy
from terminal.core.ports.backend import (
    Backend,
    BackendProtocolError,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
)
from terminal.protocols.invoice import decode_invoice
from tests.fakes.btcpay_server import DEFAULT_KEY, FakeBTCPay


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeBTCPay]:
    with FakeBTCPay(clock=clock) as server:
        yield server


class Sleeps:
    """Records requested delays instead of sleeping; `on_sleep` lets a test act between polls."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        await asyncio.sleep(0)


def backend_for(
    fake: FakeBTCPay, clock: Clock, sleeps: Sleeps | None = None, **kwargs: Any
) -> BTCPayBackend:
    sleeps = sleeps or Sleeps()
    kwargs.setdefault("api_key", DEFAULT_KEY)
    return BTCPayBackend(
        fake.base_url,
        fake.store_id,
        network="regtest",
        terminal_id="till-1",
        retry=RetryPolicy(attempts=3, sleep=sleeps),
        clock=clock,
        sleep=sleeps,
        **kwargs,
    )


def run(factory: Callable[[], Awaitable[Any]], backend: BTCPayBackend) -> Any:
    async def go() -> Any:
        try:
            return await factory()
        finally:
            await backend.aclose()

    return asyncio.run(go())


def sale(amount_minor: int = 1250, currency: str = "JMD", key: str = "sale-0001") -> InvoiceRequest:
    return InvoiceRequest(
        amount_minor=amount_minor,
        currency=currency,
        memo="2 patties",
        idempotency_key=key,
        expires_in_s=300,
        metadata={"cashier": "ann"},
    )


async def collect(backend: BTCPayBackend, invoice: Invoice) -> list[InvoiceStatus]:
    return [status async for status in backend.watch(invoice)]


# ------------------------------------------------------------------ happy path


def test_is_a_backend(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    assert isinstance(backend, Backend)
    run(lambda: asyncio.sleep(0), backend)


def test_create_lazy_activation_settle_watch_paid(fake: FakeBTCPay, clock: Clock) -> None:
    fake.lazy_payment_methods = True
    sleeps = Sleeps()
    backend = backend_for(fake, clock, sleeps)

    async def flow() -> tuple[Invoice, list[InvoiceStatus]]:
        invoice = await backend.create_invoice(sale())
        sleeps.on_sleep = lambda: fake.settle(invoice.backend_ref)  # paid between two polls
        return invoice, await collect(backend, invoice)

    invoice, statuses = run(flow, backend)
    stored = fake.invoices[invoice.backend_ref]
    assert statuses == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
    assert invoice.bolt11 == stored.bolt11
    assert invoice.amount_msat == stored.msat == 80_129  # J$12.50 at J$15.6M/BTC, to the msat
    assert invoice.payment_hash == stored.payment_hash
    assert invoice.expires_at == stored.expiration
    assert fake.count("POST", "/payment-methods/BTC-LN/activate") == 1
    # What BTCPay was asked for.
    assert stored.amount == Decimal("12.50") and stored.currency == "JMD"
    assert stored.metadata["orderId"] == "sale-0001"
    assert stored.metadata["terminalId"] == "till-1"
    assert stored.metadata["posData"] == {"cashier": "ann"}
    assert stored.expiration - stored.created == 300
    assert sleeps.delays == [backend.poll_interval_s]


def test_sat_invoice_amount_is_exact(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    invoice = run(lambda: backend.create_invoice(sale(21_000, "SAT")), backend)
    assert invoice.amount_msat == 21_000_000
    assert fake.invoices[invoice.backend_ref].currency == "SATS"


def test_legacy_payment_method_id(fake: FakeBTCPay, clock: Clock) -> None:
    fake.legacy_payment_method_id = True
    backend = backend_for(fake, clock)
    invoice = run(lambda: backend.create_invoice(sale()), backend)
    assert decode_invoice(invoice.bolt11).amount_msat == invoice.amount_msat


# ------------------------------------------------------------------ expiry


def test_watch_yields_expired(fake: FakeBTCPay, clock: Clock) -> None:
    sleeps = Sleeps()
    backend = backend_for(fake, clock, sleeps)

    async def flow() -> list[InvoiceStatus]:
        invoice = await backend.create_invoice(sale())
        sleeps.on_sleep = lambda: fake.expire(invoice.backend_ref)
        return await collect(backend, invoice)

    assert run(flow, backend) == [InvoiceStatus.PENDING, InvoiceStatus.EXPIRED]


def test_expiry_by_time_and_recreate_refused(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> InvoiceStatus:
        invoice = await backend.create_invoice(sale())
        clock.now += 301  # the fake's and the terminal's clock pass expirationTime
        status = await backend.invoice_status(invoice)
        with pytest.raises(BackendRejected) as err:
            await backend.create_invoice(sale())  # same sale id: must not mint a second invoice
        assert err.value.code == "invoice_expired"
        return status

    assert run(flow, backend) is InvoiceStatus.EXPIRED
    assert fake.count("POST", "/invoices") == 1


def test_settled_invoice_is_returned_even_after_its_expiry(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> tuple[Invoice, Invoice, InvoiceStatus]:
        first = await backend.create_invoice(sale())
        fake.settle(first.backend_ref)
        clock.now += 3600
        again = await backend.create_invoice(sale())  # e.g. after a power cut
        return first, again, await backend.invoice_status(again)

    first, again, status = run(flow, backend)
    assert again == first and status is InvoiceStatus.PAID


# ------------------------------------------------------------------ idempotent creation


def test_retried_creation_returns_the_same_invoice(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> tuple[Invoice, Invoice]:
        return await backend.create_invoice(sale()), await backend.create_invoice(sale())

    first, second = run(flow, backend)
    assert first == second
    assert fake.count("POST", "/invoices") == 1 and len(fake.invoices) == 1
    assert all(q == {"orderId": "sale-0001"} for m, p, q in fake.requests
               if m == "GET" and p.endswith("/invoices"))  # fmt: skip


def test_lost_creation_answer_is_recovered_by_order_id(fake: FakeBTCPay, clock: Clock) -> None:
    fake.fail_after_create = 1  # invoice created, answer lost as a 502
    backend = backend_for(fake, clock)
    invoice = run(lambda: backend.create_invoice(sale()), backend)
    assert fake.count("POST", "/invoices") == 1 and len(fake.invoices) == 1
    assert invoice.backend_ref in fake.invoices


def test_same_sale_id_with_another_amount_is_refused(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> None:
        await backend.create_invoice(sale(1250))
        with pytest.raises(BackendRejected) as err:
            await backend.create_invoice(sale(9999))
        assert err.value.code == "idempotency_conflict"

    run(flow, backend)
    assert len(fake.invoices) == 1


# ------------------------------------------------------------------ errors


def test_401_with_html_body(fake: FakeBTCPay, clock: Clock) -> None:
    secret = "wrong-key-SECRET-123"
    backend = backend_for(fake, clock, api_key=secret)
    with pytest.raises(BackendUnauthorized) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    message = err.value.message
    assert "btcpay.store.cancreateinvoice" in message and "btcpay.store.canviewinvoices" in message
    assert "<" not in message and secret not in message and secret not in repr(err.value)
    assert secret not in repr(backend)
    assert fake.count("GET", "/invoices") == 1  # auth failures are not retried


def test_403_names_the_missing_permission(fake: FakeBTCPay, clock: Clock) -> None:
    fake.api_keys = {DEFAULT_KEY: ("btcpay.store.cancreateinvoice",)}
    backend = backend_for(fake, clock)
    with pytest.raises(BackendUnauthorized) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    assert "btcpay.store.canviewinvoices" in err.value.message


def test_5xx_then_success_on_read_retry(fake: FakeBTCPay, clock: Clock) -> None:
    sleeps = Sleeps()
    backend = backend_for(fake, clock, sleeps)

    async def flow() -> tuple[Invoice, InvoiceStatus]:
        invoice = await backend.create_invoice(sale())
        fake.fail_next("GET", f"/invoices/{invoice.backend_ref}", status=503, times=2)
        return invoice, await backend.invoice_status(invoice)

    invoice, status = run(flow, backend)
    assert status is InvoiceStatus.PENDING
    assert fake.count("GET", f"/invoices/{invoice.backend_ref}") == 3
    assert len(sleeps.delays) == 2 and all(0 <= d <= 0.5 for d in sleeps.delays)


def test_5xx_beyond_retries_is_unavailable(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    fake.fail_next("GET", "/invoices", status=500, times=10, body="<h1>oops</h1>",
                   content_type="text/html")  # fmt: skip
    with pytest.raises(BackendUnavailable) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    assert "HTTP 500" in err.value.message and err.value.retryable
    assert fake.count("POST", "/invoices") == 0  # never create blind when the lookup fails


def test_validation_error_is_rejected_with_btcpay_message(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    with pytest.raises(BackendRejected) as err:
        run(lambda: backend.create_invoice(sale(500, "EUR")), backend)
    assert err.value.message == (
        "BTCPay refused the request: currency: Currency EUR is not supported"
    )


def test_unreachable_server_is_unavailable(clock: Clock) -> None:
    with FakeBTCPay(clock=clock) as gone:
        pass  # started and stopped: nothing listens on its port any more
    backend = backend_for(gone, clock)
    with pytest.raises(BackendUnavailable):
        run(lambda: backend.invoice_status(Invoice("x", "00" * 32, 1, 0.0, "abc")), backend)


# ------------------------------------------------------------------ refused invoices


@pytest.mark.parametrize(
    ("knob", "value", "code"),
    [
        ("bolt11_msat_offset", 1000, "invoice_amount_mismatch"),
        ("report_wrong_payment_hash", True, "invoice_hash_mismatch"),
        ("bolt11_network", "mainnet", "invoice_wrong_network"),
    ],
)
def test_mismatching_invoice_is_refused(
    fake: FakeBTCPay, clock: Clock, knob: str, value: object, code: str
) -> None:
    setattr(fake, knob, value)
    backend = backend_for(fake, clock)
    with pytest.raises(BackendProtocolError) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    assert err.value.code == code
    assert err.value.message.startswith("BTCPay returned an invoice the terminal refuses")


# ------------------------------------------------------------------ rates and health


def test_display_rate_from_store_rates(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    rate = run(lambda: backend.display_rate("JMD"), backend)
    assert rate.currency == "JMD" and rate.fraction_digits == 2
    assert rate.minor_per_sat == Decimal("15.6")  # 15,600,000.00 JMD per BTC
    assert rate.timestamp == clock.now
    assert ("GET", f"/api/v1/stores/{fake.store_id}/rates", {"currencyPair": "BTC_JMD"}) in (
        fake.requests
    )


def test_display_rate_unavailable_pair_and_sat(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> None:
        with pytest.raises(BackendUnavailable) as err:
            await backend.display_rate("EUR")
        assert err.value.code == "rate_unavailable" and "No rate for BTC_EUR" in err.value.message
        sat = await backend.display_rate("SAT")
        assert sat.minor_per_sat == 1 and sat.fraction_digits == 0

    run(flow, backend)


def test_health_ok_and_missing_permission(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    health = run(backend.health, backend)
    assert health.ok and health.latency_ms is not None and health.latency_ms >= 0

    fake.api_keys = {DEFAULT_KEY: ("btcpay.store.canviewinvoices",)}
    backend = backend_for(fake, clock)
    health = run(backend.health, backend)
    assert not health.ok and "btcpay.store.cancreateinvoice" in health.detail
    assert DEFAULT_KEY not in health.detail


def test_health_reports_refused_key(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock, api_key="nope")
    health = run(backend.health, backend)
    assert not health.ok and "401" in health.detail
