"""FlashBackend against a hostile Flash: every answer of the wrong type or shape ends in a clean
`BackendError` (never AttributeError/TypeError), and every server text reaching a message is
cleaned (no escape sequences, control characters or newlines, bounded length). A real HTTP
server on 127.0.0.1 answers whatever the test sets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import pytest
from helpers.loopback import LoopbackServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from terminal.adapters.backends.flash import FlashBackend
from terminal.adapters.backends.http import RetryPolicy
from terminal.core.ports.backend import BackendError, Invoice, InvoiceRequest

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e]")


class Hostile:
    """Answers each operation with the body the test put in `answers` (a JSON value, or raw
    bytes); unknown operations get a healthy minimal answer."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}

    async def http(self, request: Request) -> Response:
        body = json.loads(await request.body())
        op = body.get("operationName")
        answer = self.answers.get(op, DEFAULTS.get(op, {"data": None}))
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return Response(raw, media_type="application/json")


WALLET = {"data": {"accountDefaultWallet": {"id": "w1", "walletCurrency": "USD"}}}
PRICE = {"data": {"realtimePrice": {
    "timestamp": 1, "denominatorCurrency": "USD", "btcSatPrice": {"base": 10**11, "offset": 12},
    "usdCentPrice": {"base": 10**12, "offset": 12}}}}
DEFAULTS = {"AccountDefaultWallet": WALLET, "RealtimePrice": PRICE}


@pytest.fixture(scope="module")
def hostile():
    server = Hostile()
    app = Starlette(routes=[Route("/graphql", server.http, methods=["POST"])])
    with LoopbackServer(app, name="hostile-flash") as loopback:  # listening before it starts
        server.url = f"{loopback.url}/graphql"
        yield server


def backend(url: str) -> FlashBackend:
    return FlashBackend(url, None, username="m", network="regtest",
                        retry=RetryPolicy(attempts=1), amount_tolerance=None)


INVOICE = Invoice(bolt11="lnbcrt1x", payment_hash="00" * 32, amount_msat=1000,
                  expires_at=time.time() + 60, backend_ref="lnbcrt1x")
SALE = InvoiceRequest(100, "USD", "memo", "k")

# Anything JSON can carry, including deep nesting, huge strings and terminal escapes.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.just("\x1b[31mRED\x1b[0m\nsecond line\r\x07"),
    st.just("x" * 100_000),
    st.just("\u202eevil\u202c"),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), nasty_text),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)


def _error_entries(value: Any) -> Any:
    return {"errors": value, "data": None}


answers = st.one_of(
    json_values,
    json_values.map(lambda v: {"data": v}),
    json_values.map(_error_entries),
    st.builds(lambda m, c: {"errors": [{"message": m, "code": c}], "data": None},
              json_values, json_values),
    st.builds(lambda m, c: {"errors": [{"message": m, "extensions": {"code": c,
                                                                     "retryAfterSeconds": m}}]},
              json_values, json_values),
    st.builds(lambda pr, ph: {"data": {"lnUsdInvoiceCreateOnBehalfOfRecipient": {
        "errors": [], "invoice": {"paymentRequest": pr, "paymentHash": ph}}}},
        json_values, json_values),
    st.builds(lambda e: {"data": {"lnUsdInvoiceCreateOnBehalfOfRecipient": {"errors": e}}},
              json_values),
    st.builds(lambda s: {"data": {"lnInvoicePaymentStatus": {"status": s, "errors": []}}},
              json_values),
    st.just(b'{"data": {"lnInvoicePayment'),
    st.just(b"[" * 5000),
)


def _clean(message: str) -> bool:
    return not CONTROL.search(message) and len(message) <= 1000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(answer=answers, operation=st.sampled_from(
    ["LnUsdInvoiceCreateOnBehalfOfRecipient", "LnInvoicePaymentStatus", "AccountDefaultWallet",
     "RealtimePrice", "CurrencyList", "GlobalsNetwork"]))
def test_any_answer_ends_in_a_clean_backend_error_or_a_result(hostile, answer, operation):
    # Property: whatever Flash answers, the terminal gets a result or a BackendError whose
    # message is fit for a screen; never another exception type.
    hostile.answers = {operation: answer}

    async def scenario():
        b = backend(hostile.url)
        try:
            for call in (lambda: b.create_invoice(SALE), lambda: b.invoice_status(INVOICE),
                         lambda: b.display_rate("USD"), b.health):
                with contextlib.suppress(BackendError):
                    result = await call()
                    if hasattr(result, "detail"):
                        assert _clean(result.detail)
        except BackendError as exc:  # pragma: no cover - suppressed above
            raise AssertionError(exc) from exc
        finally:
            await b.aclose()

    async def capture():
        b = backend(hostile.url)
        messages = []
        for call in (lambda: b.create_invoice(SALE), lambda: b.invoice_status(INVOICE),
                     lambda: b.display_rate("USD")):
            try:
                await call()
            except BackendError as exc:
                messages.append(exc.message)
        await b.aclose()
        return messages

    asyncio.run(scenario())
    for message in asyncio.run(capture()):
        assert _clean(message), message


@pytest.mark.parametrize("answer", [
    {"data": {"lnUsdInvoiceCreateOnBehalfOfRecipient": {"errors": [], "invoice": {
        "paymentRequest": 12345, "paymentHash": "00" * 32}}}},
    {"errors": [{"message": "boom", "code": ["A", "B"]}], "data": None},
    {"errors": {"message": "not a list"}, "data": None},
    {"data": {"lnUsdInvoiceCreateOnBehalfOfRecipient": {"errors": "nope"}}},
    {"data": {"lnUsdInvoiceCreateOnBehalfOfRecipient": {"errors": [], "invoice": {
        "paymentRequest": "x" * 100_000, "paymentHash": "00" * 32}}}},
])
def test_wrong_types_in_a_creation_are_protocol_errors(hostile, answer):
    hostile.answers = {"LnUsdInvoiceCreateOnBehalfOfRecipient": answer}

    async def scenario():
        b = backend(hostile.url)
        try:
            with pytest.raises(BackendError) as err:
                await b.create_invoice(SALE)
        finally:
            await b.aclose()
        return err.value

    error = asyncio.run(scenario())
    assert type(error).__name__ == "BackendProtocolError", error.message


def test_status_as_an_object_and_escapes_in_messages(hostile):
    hostile.answers = {
        "LnInvoicePaymentStatus": {"data": {"lnInvoicePaymentStatus": {
            "status": {"PAID": True}, "errors": []}}},
        "LnUsdInvoiceCreateOnBehalfOfRecipient": {"errors": [{
            "message": "\x1b[2J\x1b[31mpwned\nrm -rf /\x00", "code": "INVALID_INPUT"}]},
    }

    async def scenario():
        b = backend(hostile.url)
        with pytest.raises(BackendError) as status:
            await b.invoice_status(INVOICE)
        with pytest.raises(BackendError) as created:
            await b.create_invoice(SALE)
        await b.aclose()
        return status.value, created.value

    status, created = asyncio.run(scenario())
    assert type(status).__name__ == "BackendProtocolError"
    assert "pwned rm -rf /" in created.message and _clean(created.message)
