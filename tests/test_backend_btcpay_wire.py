"""The BTCPay backend on the wire (aiohttp): what a failure is called, and what is never done.

A raw HTTP server on 127.0.0.1, run on the test's loop, plays the edge cases a real BTCPay or the
proxy in front of it can produce (an answer that never comes, a dropped connection, a redirect, a
huge body, a cookie); the Greenfield fake (tests/fakes/btcpay_server) cannot misbehave this way.
The codes are a contract with the callers: `not_sent` only when the request certainly never left,
so a refund (never retried) is not reported as "nothing was sent" when it may have been made."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from helpers.edge_http import edge, hang_up, never_answer, reply

from terminal.adapters.backends.btcpay import BTCPayBackend
from terminal.adapters.backends.http import RetryPolicy
from terminal.adapters.backends.json_endpoint import HttpClient
from terminal.core.ports.backend import (
    BackendProtocolError,
    BackendUnavailable,
    Invoice,
)

KEY = "SECRET-api-key-0123456789"
STORE = "Store1"
WAIT_S = 10.0


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def backend(url: str, timeout_s: float = 10.0) -> BTCPayBackend:
    return BTCPayBackend(url, STORE, KEY, network="regtest", terminal_id="till-1",
                         timeout_s=timeout_s, retry=RetryPolicy(attempts=3, sleep=no_sleep),
                         sleep=no_sleep)


def run(scenario: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 2))


def refund(b: BTCPayBackend) -> Awaitable[object]:
    return b.refund_invoice("inv1", 150_000, name="Refund r-1", description="Refund of sale s")


def assert_clean(error: BaseException) -> None:
    """No credential, URL, query or header in what a merchant or a log may see."""
    text = f"{error} {error!r}"
    for secret in (KEY, "127.0.0.1", "/api/v1", "orderId", "Authorization", "token"):
        assert secret not in text


# ------------------------------------------------------------------ the codes


def test_refund_whose_answer_never_comes_is_a_timeout_sent_once() -> None:
    async def scenario() -> None:
        async with edge(never_answer) as server:
            b = backend(server.url, timeout_s=0.3)
            try:
                with pytest.raises(BackendUnavailable) as err:
                    await refund(b)
            finally:
                await b.aclose()
        assert err.value.code == "timeout"  # it may have been made: never "nothing was sent"
        assert err.value.message == "BTCPay did not answer in time"
        assert_clean(err.value)
        assert [s.method for s in server.seen] == ["POST"]

    run(scenario)


def test_refund_whose_connection_drops_is_network_sent_once() -> None:
    async def scenario() -> None:
        async with edge(hang_up) as server:
            b = backend(server.url)
            try:
                with pytest.raises(BackendUnavailable) as err:
                    await refund(b)
            finally:
                await b.aclose()
        assert err.value.code == "network"
        assert err.value.message.startswith("BTCPay did not answer (")
        assert_clean(err.value)
        assert [s.method for s in server.seen] == ["POST"]

    run(scenario)


def test_nothing_listening_is_not_sent() -> None:
    async def scenario() -> None:
        async with edge(never_answer) as server:
            url = server.url
        b = backend(url)  # the port is closed now: the connection is refused
        try:
            with pytest.raises(BackendUnavailable) as err:
                await refund(b)
        finally:
            await b.aclose()
        assert err.value.code == "not_sent"
        assert err.value.message.startswith("cannot reach BTCPay (")
        assert_clean(err.value)

    run(scenario)


def test_reads_that_time_out_are_retried_then_unavailable_without_the_query() -> None:
    async def scenario() -> None:
        async with edge(never_answer) as server:
            b = backend(server.url, timeout_s=0.2)
            try:
                with pytest.raises(BackendUnavailable) as err:
                    await b.invoice_status(Invoice("x", "00" * 32, 1, 0.0, "inv1"))
            finally:
                await b.aclose()
        assert err.value.code == "timeout" and err.value.retryable
        assert_clean(err.value)
        assert len(server.seen) == 3  # the read's three attempts

    run(scenario)


# ------------------------------------------------------------------ what is never done


def test_a_redirect_is_not_followed() -> None:
    async def scenario() -> None:
        async with edge(reply(302, b"", f"Location: /elsewhere?token={KEY}")) as server:
            b = backend(server.url)
            try:
                with pytest.raises(BackendProtocolError) as err:
                    await b.invoice_status(Invoice("x", "00" * 32, 1, 0.0, "inv1"))
            finally:
                await b.aclose()
        assert err.value.code == "http_302"
        assert_clean(err.value)
        assert [s.target for s in server.seen] == [f"/api/v1/stores/{STORE}/invoices/inv1"]

    run(scenario)


def test_a_huge_answer_is_refused_and_a_refund_is_then_unclear() -> None:
    huge = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"  # over 4 MiB

    async def scenario() -> None:
        async with edge(reply(200, huge)) as server:
            b = backend(server.url)
            try:
                with pytest.raises(BackendProtocolError) as read:
                    await b.invoice_status(Invoice("x", "00" * 32, 1, 0.0, "inv1"))
                with pytest.raises(BackendUnavailable) as made:
                    await refund(b)
            finally:
                await b.aclose()
        assert read.value.code == "too_large"
        assert made.value.code == "answer_unreadable"  # not "refused, nothing was sent"

    run(scenario)


def test_requests_ask_identity_send_json_keep_no_cookie_and_ignore_env_proxies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing there: a proxy would fail
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def scenario() -> None:
        async with edge(reply(200, b'{"ok": true}', "Set-Cookie: session=abc; Path=/")) as server:
            client = HttpClient(service="BTCPay", timeout_s=5.0, https=False)
            try:
                first = await client.request("POST", f"{server.url}/api/v1/x",
                                             params={"orderId": "s 1&2"},
                                             json_body={"amount": Decimal("0.00012345")},
                                             headers={"Authorization": f"token {KEY}"})
                await client.request("GET", f"{server.url}/api/v1/y")
            finally:
                await client.aclose()
        assert first.status_code == 200 and json.loads(first.content) == {"ok": True}
        post, get = server.seen
        assert post.target == "/api/v1/x?orderId=s+1%262"
        assert json.loads(post.body) == {"amount": "0.00012345"}  # money never a float
        assert post.headers["content-type"] == "application/json"
        assert post.headers["authorization"] == f"token {KEY}"
        assert post.headers["accept-encoding"] == "identity"
        assert "cookie" not in get.headers and "authorization" not in get.headers

    run(scenario)
