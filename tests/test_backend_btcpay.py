"""BTCPay Greenfield backend against a real HTTP fake on 127.0.0.1 (tests/fakes/btcpay_server)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.adapters.backends import btcpay
from terminal.adapters.backends.btcpay import BTCPayBackend, GreenfieldInvoice, LightningMethod
from terminal.adapters.backends.http import RetryPolicy
from terminal.core.ports.backend import (
    Backend,
    BackendError,
    BackendProtocolError,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
    ReceivedPayment,
)
from terminal.protocols.invoice import decode_invoice
from tests.fakes.btcpay_server import DEFAULT_KEY, FakeBTCPay, FakeInvoice


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
    kwargs.setdefault("store_id", fake.store_id)
    kwargs.setdefault("terminal_id", "till-1")
    return BTCPayBackend(
        fake.base_url,
        network="regtest",
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


def test_request_names_lightning_as_both_versions_accept_it(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    invoice = run(lambda: backend.create_invoice(sale()), backend)
    assert fake.created_bodies[-1]["checkout"]["paymentMethods"] == ["BTC-LightningNetwork"]
    assert invoice.backend_ref in fake.invoices


def test_v1_shapes_are_read_without_a_crash(fake: FakeBTCPay, clock: Clock) -> None:
    """1.x names the field `paymentMethod` and the method `BTC-LightningNetwork`."""
    fake.version = "1.13.7"
    fake.lazy_payment_methods = True
    backend = backend_for(fake, clock)
    invoice = run(lambda: backend.create_invoice(sale()), backend)
    assert decode_invoice(invoice.bolt11).amount_msat == invoice.amount_msat == 80_129
    assert fake.count("POST", "/payment-methods/BTC-LightningNetwork/activate") == 1


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


@pytest.mark.parametrize("proxy", [False, True], ids=["btcpay-json", "proxy-html"])
def test_401_refused_key(fake: FakeBTCPay, clock: Clock, proxy: bool) -> None:
    fake.proxy_401_html = proxy
    secret = "wrong-key-SECRET-123"
    backend = backend_for(fake, clock, api_key=secret)
    with pytest.raises(BackendUnauthorized) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    message = err.value.message
    assert "btcpay.store.cancreateinvoice" in message and "btcpay.store.canviewinvoices" in message
    assert ("Unknown API Key" in message) is not proxy  # BTCPay's own reason, when it gave one
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


def test_refusal_shows_btcpay_message_cleaned(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    with pytest.raises(BackendRejected) as err:  # no EUR rate: BTCPay's multi-line 400
        run(lambda: backend.create_invoice(sale(500, "EUR")), backend)
    assert err.value.message == (
        "BTCPay refused the request: Error retrieving a matching payment method or rate. "
        "BTC-LN: The rate for BTC_EUR is not available"
    )


def test_server_text_is_cleaned_and_bounded(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)
    fake.fail_next("POST", "/invoices", status=422, body=json.dumps(
        [{"path": "\x1b[31mamount", "message": "bad\r\nvalue\u0007 " + "x" * 500}]))
    with pytest.raises(BackendRejected) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    message = err.value.message
    assert "\x1b" not in message and "\n" not in message and "\x07" not in message
    assert message.startswith("BTCPay refused the request: amount: bad value")
    assert len(message) < 260


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
        assert err.value.code == "rate_unavailable"
        assert err.value.message == "BTCPay could not get the BTC/EUR rate: RateUnavailable"
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


# ------------------------------------------------------------------ the fake answers as BTCPay


def _raw(fake: FakeBTCPay, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"token {DEFAULT_KEY}"} | kwargs.pop("headers", {})
    return httpx.request(method, fake.base_url + path, headers=headers, **kwargs)


@pytest.mark.parametrize(("version", "method_id", "status", "message"), [
    ("2.4.1", "BTC-LN", 200, None),
    ("2.4.1", "BTC-LightningNetwork", 200, None),
    ("2.0.0", "BTC_LightningLike", 200, None),
    ("2.4.1", "BTC-Nope", 422, "Invalid PaymentMethodId"),
    ("1.13.7", "BTC-LN", 422, "Invalid payment method"),
    ("1.13.7", "BTC-LightningNetwork", 200, None),
])
def test_fake_payment_method_ids_per_version(
    fake: FakeBTCPay, version: str, method_id: str, status: int, message: str | None
) -> None:
    fake.version = version
    response = _raw(fake, "POST", f"/api/v1/stores/{fake.store_id}/invoices", json={
        "amount": "1.00", "currency": "USD", "checkout": {"paymentMethods": [method_id]}})
    assert response.status_code == status
    if message:
        assert response.json() == [{"path": "Checkout.PaymentMethods[0]", "message": message}]
        return
    methods = _raw(fake, "GET", f"/api/v1/stores/{fake.store_id}/invoices/"
                   f"{response.json()['id']}/payment-methods").json()
    field_name = "paymentMethod" if version.startswith("1.") else "paymentMethodId"
    assert methods[0][field_name] == ("BTC-LightningNetwork" if version.startswith("1.")
                                      else "BTC-LN")
    assert "paymentMethodId" not in methods[0] or methods[0]["paymentMethodId"] == "BTC-LN"


def test_fake_unknown_store_is_403_missing_permission(fake: FakeBTCPay) -> None:
    response = _raw(fake, "GET", "/api/v1/stores/NoSuchStore/invoices/abc")
    assert response.status_code == 403
    assert response.json()["code"] == "missing-permission"
    assert response.json()["missingPermission"] == "btcpay.store.canviewinvoices"
    assert _raw(fake, "GET", "/api/v1/server/info", headers={"Authorization": ""}).json() == {
        "code": "unauthenticated",
        "message": "Authentication is required for accessing this endpoint"}


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize(("version", "ok"), [
    ("1.13.7", False), ("1.12.5", False), ("2.0.0", True), ("2.4.1", True),
    ("2.4.1+0a1b2c3d", True),
])
def test_health_refuses_btcpay_before_2(fake: FakeBTCPay, clock: Clock, version: str,
                                        ok: bool) -> None:
    fake.version = version
    backend = backend_for(fake, clock)
    found = run(backend.diagnose, backend)
    assert found.ok is ok
    if ok:
        assert found.detail.startswith(f"BTCPay {version.split('+')[0]} reachable; store "
                                       f"'Fake Store' ({fake.store_id})")
    else:
        assert found.detail == (f"BTCPay Server {version} is older than 2.0.0, the oldest "
                                "version this terminal supports (the Flash plugin needs it too)")
        assert found.fix == "upgrade BTCPay Server to 2.0.0 or later"


def test_v1_does_not_move_due_so_a_rounded_bolt11_is_refused(fake: FakeBTCPay,
                                                            clock: Clock) -> None:
    fake.version = "1.13.7"
    fake.flash_plugin_usd_price = Decimal("100000")
    backend = backend_for(fake, clock)
    with pytest.raises(BackendProtocolError) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    assert err.value.code == "invoice_amount_mismatch"


# ------------------------------------------------------------------ due, the provider's rounding


@pytest.mark.parametrize(("amount", "cur", "bolt11_msat"), [
    (1234, "SAT", 1_230_000),  # 123.4 cents -> 123 cents -> 1,230 sats
    (1, "SAT", 10_000),  # Flash's minimum: one cent = 10 sats
    (1250, "JMD", 80_000),  # 80,129 msat -> 80 sats -> 8 cents -> 80 sats
])
def test_flash_plugin_rounding_is_charged_as_btcpay_says(
    fake: FakeBTCPay, clock: Clock, amount: int, cur: str, bolt11_msat: int
) -> None:
    fake.flash_plugin_usd_price = Decimal("100000")
    sleeps = Sleeps()
    backend = backend_for(fake, clock, sleeps)

    async def flow() -> tuple[Invoice, list[InvoiceStatus]]:
        invoice = await backend.create_invoice(sale(amount, cur))
        sleeps.on_sleep = lambda: fake.pay(invoice.bolt11)
        return invoice, await collect(backend, invoice)

    invoice, statuses = run(flow, backend)
    assert invoice.amount_msat == decode_invoice(invoice.bolt11).amount_msat == bolt11_msat
    assert statuses == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
    stored = fake.invoices[invoice.backend_ref]
    assert stored.fee_msat == bolt11_msat - stored.msat  # BTCPay's "tweak fee"


def test_sats_sale_beyond_any_rounding_is_refused(fake: FakeBTCPay, clock: Clock) -> None:
    fake.flash_plugin_usd_price = Decimal("1000")  # one cent = 1,000 sats
    backend = backend_for(fake, clock)
    with pytest.raises(BackendProtocolError) as err:  # 100 sats asked, 1,000 sats due
        run(lambda: backend.create_invoice(sale(100, "SAT")), backend)
    assert err.value.code == "invoice_amount_mismatch"
    assert "1000 sats for a 100-sat sale" in err.value.message


# ------------------------------------------------------------------ additionalStatus


def _status_after(fake: FakeBTCPay, clock: Clock, act: Callable[[FakeInvoice], None]
                  ) -> InvoiceStatus:
    backend = backend_for(fake, clock)

    async def flow() -> InvoiceStatus:
        invoice = await backend.create_invoice(sale())
        act(fake.invoices[invoice.backend_ref])
        return await backend.invoice_status(invoice)

    return run(flow, backend)


def _expire(fake: FakeBTCPay, clock: Clock, inv: FakeInvoice) -> None:
    clock.now = inv.expiration + 1
    with fake._lock:
        fake._refresh_expiry()


@pytest.mark.parametrize(("story", "expected", "btcpay"), [
    ("paid", InvoiceStatus.PAID, ("Settled", "None")),
    ("overpaid", InvoiceStatus.PAID, ("Settled", "PaidOver")),
    ("late", InvoiceStatus.PAID, ("Expired", "PaidLate")),
    ("partial-open", InvoiceStatus.PENDING, ("New", "PaidPartial")),
    ("partial-expired", InvoiceStatus.UNDERPAID, ("Expired", "PaidPartial")),
    ("partial-then-late", InvoiceStatus.PAID, ("Expired", "PaidLate")),
    ("marked", InvoiceStatus.PAID, ("Settled", "Marked")),
    ("expired", InvoiceStatus.EXPIRED, ("Expired", "None")),
    ("invalid", InvoiceStatus.EXPIRED, ("Invalid", "None")),
])
def test_additional_status(fake: FakeBTCPay, clock: Clock, story: str,
                           expected: InvoiceStatus, btcpay: tuple[str, str]) -> None:
    def act(inv: FakeInvoice) -> None:
        if story in ("paid", "overpaid"):
            fake.receive(inv.id, inv.due_msat + (5000 if story == "overpaid" else 0))
        elif story == "late":
            _expire(fake, clock, inv)
            fake.receive(inv.id, inv.due_msat)
        elif story.startswith("partial"):
            fake.receive(inv.id, inv.due_msat // 2)
            if story != "partial-open":
                _expire(fake, clock, inv)
            if story == "partial-then-late":
                fake.receive(inv.id, inv.due_msat - inv.due_msat // 2)
        elif story == "marked":
            fake.mark_settled(inv.id)
        elif story == "expired":
            _expire(fake, clock, inv)
        else:
            fake.invalidate(inv.id)

    assert _status_after(fake, clock, act) is expected
    (inv,) = fake.invoices.values()
    assert (inv.status, inv.additional_status) == btcpay


def test_sale_paid_late_is_found_paid_again(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> tuple[Invoice, Invoice]:
        first = await backend.create_invoice(sale())
        _expire(fake, clock, fake.invoices[first.backend_ref])
        fake.receive(first.backend_ref, fake.invoices[first.backend_ref].due_msat)
        return first, await backend.create_invoice(sale())  # after a restart: the same one

    first, again = run(flow, backend)
    assert again == first and fake.count("POST", "/invoices") == 1


# ------------------------------------------------------------------ permissions, store id

NEEDED = ("btcpay.store.cancreateinvoice", "btcpay.store.canviewinvoices",
          "btcpay.store.canviewstoresettings")
POLICIES = (*NEEDED, "btcpay.store.canmodifyinvoices", "btcpay.store.canmodifystoresettings",
            "btcpay.store.canviewpullpayments", "unrestricted")


@pytest.mark.parametrize(("granted", "missing"), [
    (NEEDED, ()),
    (("btcpay.store.cancreateinvoice", "btcpay.store.canviewstoresettings"), ()),
    (("btcpay.store.canmodifystoresettings",), ()),
    (("unrestricted",), ()),
    (("btcpay.store.canmodifyinvoices",), ("btcpay.store.canviewstoresettings",)),
    (("btcpay.store.canviewinvoices", "btcpay.store.cancreateinvoice"),
     ("btcpay.store.canviewstoresettings",)),
    (("btcpay.store.canviewstoresettings",), ("btcpay.store.cancreateinvoice",)),
])
def test_health_names_the_missing_permission(fake: FakeBTCPay, clock: Clock,
                                             granted: tuple[str, ...],
                                             missing: tuple[str, ...]) -> None:
    fake.api_keys = {DEFAULT_KEY: granted}
    backend = backend_for(fake, clock)
    health = run(backend.health, backend)
    assert health.ok is (not missing)
    if missing:
        assert health.detail == (f"the API key lacks {', '.join(missing)} on store "
                                 f"{fake.store_id}")
    assert DEFAULT_KEY not in health.detail


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sets(st.sampled_from(POLICIES)))
def test_health_agrees_with_what_btcpay_allows(fake: FakeBTCPay, clock: Clock,
                                               granted: set[str]) -> None:
    """health() is OK exactly when creating, reading and pricing all succeed."""
    fake.api_keys = {DEFAULT_KEY: tuple(sorted(granted))}
    backend = backend_for(fake, clock)

    async def flow() -> tuple[bool, bool]:
        ok = (await backend.health()).ok
        try:
            invoice = await backend.create_invoice(sale(key=f"sale-{len(fake.invoices)}"))
            await backend.invoice_status(invoice)
            await backend.display_rate("JMD")
        except BackendUnauthorized:
            return ok, False
        return ok, True

    health_ok, works = run(flow, backend)
    assert health_ok is works


def test_wrong_store_id_is_named(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock, store_id="WrongStore")
    with pytest.raises(BackendUnauthorized) as err:
        run(lambda: backend.create_invoice(sale()), backend)
    assert "check backend.btcpay.store_id" in err.value.message
    assert err.value.code == "missing_permission"

    backend = backend_for(fake, clock, store_id="WrongStore")  # a key scoped to FakeStore1
    found = run(backend.diagnose, backend)
    assert not found.ok and found.detail.startswith(
        "the API key is for store FakeStore1, not WrongStore")
    assert "backend.btcpay.store_id" in found.fix

    fake.api_keys = {DEFAULT_KEY: ("unrestricted",)}  # a key for every store: probe the store
    backend = backend_for(fake, clock, store_id="WrongStore")
    found = run(backend.diagnose, backend)
    assert not found.ok and found.detail.startswith("BTCPay has no store WrongStore")
    assert "backend.btcpay.store_id" in found.fix


# ------------------------------------------------------------------ answers of the wrong type

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["New", "Settled", "Expired", "BTC-LN", "0.001", "lnbcrt1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "status", "additionalStatus", "amount", "currency", "metadata",
                         "paymentMethodId", "paymentMethod", "destination", "due", "payments",
                         "additionalData", "paymentHash", "value", "receivedDate", "activated"]),
        inner, max_size=8),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_parsers_raise_only_backend_errors(payload: object) -> None:
    for parse in (GreenfieldInvoice.parse, lambda p: LightningMethod.pick(p, "S"),
                  lambda p: LightningMethod.pick([p], "S")):
        try:
            parse(payload)
        except BackendError as exc:
            assert exc.message.isprintable()


@pytest.mark.parametrize(("path", "body"), [
    ("/invoices/", {"id": 5, "status": "New"}),
    ("/invoices/", {"id": "x", "status": ["Settled"]}),
    ("/payment-methods", {"paymentMethodId": "BTC-LN"}),
    ("/payment-methods", [{"paymentMethodId": "BTC-LN", "destination": 12}]),
    ("/payment-methods", [{"paymentMethodId": "BTC-LN", "destination": "x",
                           "additionalData": {"paymentHash": "zz"}}]),
    ("/payment-methods", [{"paymentMethodId": "BTC-LN", "destination": "lnbcrt1x",
                           "due": "lots"}]),
])
def test_wrong_types_are_clean_errors(fake: FakeBTCPay, clock: Clock, path: str,
                                      body: object) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> None:
        invoice = await backend.create_invoice(sale())
        fake.fail_next("GET", path, status=200, body=json.dumps(body), times=5)
        if path == "/payment-methods":
            await backend.create_invoice(sale())
        else:
            await backend.invoice_status(invoice)

    with pytest.raises(BackendError) as err:
        run(flow, backend)
    assert isinstance(err.value, BackendProtocolError | BackendRejected)


# ------------------------------------------------------------------ received payments


def _paid_sale(backend: BTCPayBackend, fake: FakeBTCPay, clock: Clock, key: str,
               terminal: str | None = None) -> Callable[[], Awaitable[Invoice]]:
    async def go() -> Invoice:
        if terminal is not None:
            other = backend_for(fake, clock, terminal_id=terminal)
            try:
                invoice = await other.create_invoice(sale(key=key))
            finally:
                await other.aclose()
        else:
            invoice = await backend.create_invoice(sale(key=key))
        return invoice
    return go


def test_received_payments_finds_this_terminals_money(fake: FakeBTCPay, clock: Clock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(btcpay, "SEARCH_PAGE", 2)  # several pages
    backend = backend_for(fake, clock)
    start = clock.now

    async def flow() -> tuple[list[ReceivedPayment], dict[str, Invoice]]:
        made = {}
        for key in ("old", "paid", "unpaid", "partial", "late", "mine-by-memo", "other"):
            clock.now += 10
            made[key] = await _paid_sale(backend, fake, clock, f"sale-{key}",
                                         "till-9" if key == "other" else None)()
        ref = {k: inv.backend_ref for k, inv in made.items()}
        clock.now += 10
        fake.settle(ref["old"])
        since = clock.now + 5
        clock.now += 10
        for key in ("paid", "other"):
            fake.settle(ref[key])
        fake.receive(ref["partial"], fake.invoices[ref["partial"]].due_msat - 1000)
        fake.invoices[ref["mine-by-memo"]].metadata["terminalId"] = "renamed"
        fake.invoices[ref["mine-by-memo"]].metadata["itemDesc"] = "x [ft till-1 " + "a" * 32 + "]"
        fake.settle(ref["mine-by-memo"])
        clock.now = start + 400  # everything open has expired
        clock.now += 10
        fake.receive(ref["late"], fake.invoices[ref["late"]].due_msat)
        return await backend.received_payments(since), made

    found, made = run(flow, backend)
    by_ref = {p.backend_ref: p for p in found}
    assert set(by_ref) == {made[k].backend_ref for k in ("paid", "partial", "late",
                                                         "mine-by-memo")}
    assert [p.settled_at for p in found] == sorted((p.settled_at for p in found), reverse=True)
    paid = by_ref[made["paid"].backend_ref]
    assert paid.payment_hash == made["paid"].payment_hash
    assert paid.amount_msat == made["paid"].amount_msat == 80_129
    assert paid.bolt11 == made["paid"].bolt11 and paid.memo == "2 patties"
    assert paid.metadata == {"btcpayStatus": "Settled", "btcpayAdditionalStatus": "None",
                             "orderId": "sale-paid", "terminalId": "till-1"}
    partial = by_ref[made["partial"].backend_ref]
    assert partial.amount_msat == 80_129 - 1000
    assert partial.metadata["btcpayAdditionalStatus"] == "PaidPartial"
    assert by_ref[made["late"].backend_ref].metadata["btcpayAdditionalStatus"] == "PaidLate"
    searches = [q for m, p, q in fake.requests if m == "GET" and p.endswith("/invoices")
                and "status" in q]
    assert {q["status"] for q in searches} == {"Settled", "Expired"}
    assert all(int(q["startDate"]) <= start for q in searches)


def test_find_payment(fake: FakeBTCPay, clock: Clock) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> None:
        invoice = await backend.create_invoice(sale())
        assert await backend.find_payment(invoice) is None  # nothing arrived yet
        fake.settle(invoice.backend_ref)
        found = await backend.find_payment(invoice)
        assert found is not None and found.payment_hash == invoice.payment_hash
        assert found.amount_msat == invoice.amount_msat and found.backend_ref == invoice.backend_ref
        # Without the BTCPay id (a ledger from before it was kept): found by the BOLT11.
        by_bolt11 = await backend.find_payment(Invoice(invoice.bolt11, invoice.payment_hash,
                                                       invoice.amount_msat, 0.0, "gone"))
        assert by_bolt11 == found
        with pytest.raises(BackendProtocolError):  # the id names another payment
            await backend.find_payment(Invoice(invoice.bolt11, "11" * 32, 1, 0.0,
                                               invoice.backend_ref))

    run(flow, backend)


@pytest.mark.parametrize("due", ["1e999999", "-1e999999", "NaN", "Infinity", "9" * 80, 10**40])
def test_absurd_numbers_are_refused_not_computed(fake: FakeBTCPay, clock: Clock,
                                                 due: object) -> None:
    backend = backend_for(fake, clock)

    async def flow() -> None:
        invoice = await backend.create_invoice(sale())
        methods = [fake._method_json(fake.invoices[invoice.backend_ref]) | {"due": due,
                                                                             "amount": due}]
        fake.fail_next("GET", "/payment-methods", status=200, body=json.dumps(methods), times=3)
        await backend.create_invoice(sale())

    with pytest.raises(BackendProtocolError) as err:
        run(flow, backend)
    assert err.value.code == "shape"
