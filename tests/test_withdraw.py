"""WithdrawClient against a real LNURL issuer (uvicorn + starlette) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from terminal.adapters.withdraw import Timeouts, WithdrawClient
from terminal.protocols.lnurl import (
    AmountOutOfRange,
    CallbackAccepted,
    CallbackOutcomeUnknown,
    CardDisabled,
    InsufficientBalance,
    InvalidPin,
    IssuerError,
    IssuerGarbage,
    IssuerUnreachable,
    LimitExceeded,
    PinRequired,
    ReplayedTap,
    UrlPolicy,
    WithdrawRequest,
    WrongPin,
    encode_lnurl,
)
from tests.fakes.lnurl_issuer import BOLT11, Issuer, make_self_signed_cert

LOOPBACK = UrlPolicy(
    allow_insecure_hosts=frozenset({"127.0.0.1"}), allow_private_hosts=frozenset({"127.0.0.1"})
)
FAST = Timeouts(connect=1, read=1, write=1, fetch_deadline=2, callback_read=1, callback_deadline=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture
def issuer(running_issuer: Issuer) -> Iterator[Issuer]:
    running_issuer.reset()
    yield running_issuer
    running_issuer.reset()


async def fetch(issuer: Issuer, **client_kw: object) -> tuple[WithdrawClient, WithdrawRequest]:
    client = WithdrawClient(LOOPBACK, **client_kw)  # type: ignore[arg-type]
    return client, await client.fetch_request(issuer.card_url())


def callback_params(issuer: Issuer) -> list[tuple[str, str]]:
    (cb,) = [s for s in issuer.seen if s.path == "/cb"]
    return parse_qsl(cb.raw_query, keep_blank_values=True)


# --- happy path ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_happy_path_fetch_then_submit_merges_query_and_reuses_connection(
    issuer: Issuer,
) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        assert (req.min_withdrawable_msat, req.max_withdrawable_msat) == (1_000, 500_000)
        assert req.k1 == "p-value-c-value"
        result = await client.submit(req, BOLT11, 100_000)
        assert result == CallbackAccepted(reason=None)
        # One TCP connection for the whole tap: fetch and callback share it.
        assert client.stats.connections_opened == 1
        assert client.stats.requests_sent == 2
    assert issuer.paths() == ["/scan", "/cb"]
    assert issuer.seen[0].raw_query == "p=A1B2&c=C3D4"
    # The callback's own query survives byte for byte; k1 and pr are appended.
    assert issuer.seen[1].raw_query.startswith("hit=42&sig=a%2Bb&")
    assert callback_params(issuer) == [
        ("hit", "42"),
        ("sig", "a+b"),
        ("k1", "p-value-c-value"),
        ("pr", BOLT11),
    ]


@pytest.mark.anyio
async def test_bech32_lnurl_and_lnurlw_scheme_reach_the_same_issuer(issuer: Issuer) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        r1 = await client.fetch_request("lightning:" + encode_lnurl(issuer.card_url()))
        r2 = await client.fetch_request(issuer.card_url())
    assert r1.callback == r2.callback
    assert issuer.paths() == ["/scan", "/scan"]


@pytest.mark.anyio
async def test_optional_fields_lud14_lud19_pinlimit_are_kept(issuer: Issuer) -> None:
    issuer.scan_answer = (
        200,
        issuer.withdraw_request(
            currentBalance=42_000,
            balanceCheck=issuer.card_url(),
            payLink="lnurlp://127.0.0.1/topup",
            pinLimit=20_000,
        ),
    )
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
    assert req.current_balance_msat == 42_000
    assert req.spendable_msat == 42_000
    assert req.pay_link == "lnurlp://127.0.0.1/topup"
    assert req.pin_limit_msat == 20_000


@pytest.mark.anyio
async def test_callback_without_query_gets_one(issuer: Issuer) -> None:
    # BTCPay's /boltcard answers a callback without a query and k1 "<p>-<c>".
    issuer.scan_answer = (200, issuer.withdraw_request(callback=f"{issuer.origin}/cb", k1="AA-BB"))
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        await client.submit(req, BOLT11, 5_000)
    assert callback_params(issuer) == [("k1", "AA-BB"), ("pr", BOLT11)]


@pytest.mark.anyio
async def test_ok_with_reason_is_accepted_not_paid(issuer: Issuer) -> None:
    issuer.callback_answer = (200, {"status": "OK", "reason": "Payment pending"})
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        result = await client.submit(req, BOLT11, 5_000)
    assert result == CallbackAccepted(reason="Payment pending")


# --- PIN and amounts ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pin_required_at_pin_limit_then_sent_when_given(issuer: Issuer) -> None:
    issuer.scan_answer = (200, issuer.withdraw_request(pinLimit=20_000))
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(PinRequired) as info:
            await client.submit(req, BOLT11, 20_000)
        assert info.value.pin_limit_msat == 20_000
        assert info.value.code == "pin-required"
        assert issuer.paths() == ["/scan"]  # nothing sent
        await client.submit(req, BOLT11, 20_000, pin="4321")
    assert ("pin", "4321") in callback_params(issuer)


@pytest.mark.anyio
async def test_below_pin_limit_needs_no_pin(issuer: Issuer) -> None:
    issuer.scan_answer = (200, issuer.withdraw_request(pinLimit=20_000))
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        await client.submit(req, BOLT11, 19_999)
    assert "pin" not in dict(callback_params(issuer))


@pytest.mark.anyio
async def test_bad_pin_format_is_refused_before_sending_and_not_echoed(issuer: Issuer) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(InvalidPin) as info:
            await client.submit(req, BOLT11, 5_000, pin="98765x")
    assert "98765" not in str(info.value) and "98765" not in info.value.user_message
    assert issuer.paths() == ["/scan"]


@pytest.mark.anyio
@pytest.mark.parametrize("amount", [999, 500_001, 0])
async def test_amount_out_of_bounds_is_refused_before_sending(issuer: Issuer, amount: int) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(AmountOutOfRange) as info:
            await client.submit(req, BOLT11, amount)
    assert "500" in info.value.user_message  # the max, in sats
    assert issuer.paths() == ["/scan"]


# --- issuer errors -----------------------------------------------------------------------------

REASONS = [
    ("Payment failed - Insufficient balance.", InsufficientBalance, "insufficient-balance"),
    ("not enough funds", InsufficientBalance, "insufficient-balance"),
    ("Max daily limit spent.", LimitExceeded, "limit-exceeded"),
    ("Amount too high", LimitExceeded, "limit-exceeded"),
    ("Pr was not within bounds", LimitExceeded, "limit-exceeded"),
    ("Card is disabled.", CardDisabled, "card-disabled"),
    ("This link is already used.", ReplayedTap, "replayed-tap"),
    ("Replayed or expired query", ReplayedTap, "replayed-tap"),
    ("Payment already claimed", ReplayedTap, "replayed-tap"),
    ("counter not increasing", ReplayedTap, "replayed-tap"),
    ("k1 already used", ReplayedTap, "replayed-tap"),
    ("incorrect pin provided", WrongPin, "wrong-pin"),
    ("Wrong PIN", WrongPin, "wrong-pin"),
    ("Pr could not be paid", IssuerError, "issuer-error"),
    ("bad request", IssuerError, "issuer-error"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("reason", "cls", "code"), REASONS)
async def test_callback_error_reasons_map_to_typed_errors(
    issuer: Issuer, reason: str, cls: type[IssuerError], code: str
) -> None:
    issuer.callback_answer = (200, {"status": "ERROR", "reason": reason})
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(IssuerError) as info:
            await client.submit(req, BOLT11, 5_000)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.reason == reason
    assert info.value.user_message.endswith(".")


@pytest.mark.anyio
async def test_http_400_with_json_reason_is_parsed_btcpay_style(issuer: Issuer) -> None:
    issuer.callback_answer = (400, {"status": "ERROR", "reason": "Replayed or expired query"})
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(ReplayedTap) as info:
            await client.submit(req, BOLT11, 5_000)
    assert info.value.http_status == 400
    assert "tap the card again" in info.value.user_message


@pytest.mark.anyio
async def test_error_at_the_first_get_is_typed_too(issuer: Issuer) -> None:
    issuer.scan_answer = (200, {"status": "ERROR", "reason": "This link is already used."})
    async with WithdrawClient(LOOPBACK) as client:
        with pytest.raises(ReplayedTap):
            await client.fetch_request(issuer.card_url())


@pytest.mark.anyio
async def test_generic_issuer_error_shows_the_cleaned_reason(issuer: Issuer) -> None:
    issuer.callback_answer = (200, {"status": "ERROR", "reason": "Route\nnot\tfound\x00"})
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(IssuerError) as info:
            await client.submit(req, BOLT11, 5_000)
    assert info.value.reason == "Route not found"
    assert "Route not found" in info.value.user_message


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [(200, b"<html>ok</html>"), (404, b"<html>Not Found</html>"), (200, {"status": "MAYBE"})],
)
async def test_non_lnurl_callback_answer_is_outcome_unknown(issuer: Issuer, answer: tuple) -> None:
    # The callback was answered, so it reached something; only an LNURL answer is definite. A
    # proxy page in front of an issuer that is paying must never read as "refused".
    issuer.callback_answer = answer
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(CallbackOutcomeUnknown) as info:
            await client.submit(req, BOLT11, 5_000)
    assert info.value.code == "outcome-unknown"


@pytest.mark.anyio
async def test_callback_502_without_json_is_outcome_unknown(issuer: Issuer) -> None:
    # A proxy timing out while the issuer keeps paying: the tap may be spent.
    issuer.callback_answer = (502, b"<html>Bad Gateway</html>")
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(CallbackOutcomeUnknown):
            await client.submit(req, BOLT11, 5_000)


@pytest.mark.anyio
async def test_card_url_5xx_without_json_is_unreachable(issuer: Issuer) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        with pytest.raises(IssuerUnreachable):
            await client.fetch_request(issuer.card_url("/text", "status=503"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "overrides",
    [
        {"tag": "payRequest"},
        {"k1": None},
        {"minWithdrawable": 600_000},
        {"maxWithdrawable": "500000"},
        {"minWithdrawable": 1.5},
        {"maxWithdrawable": True},
        {"callback": None},
    ],
)
async def test_invalid_withdraw_request_shapes_are_garbage(issuer: Issuer, overrides: dict) -> None:
    issuer.scan_answer = (200, issuer.withdraw_request(**overrides))
    async with WithdrawClient(LOOPBACK) as client:
        with pytest.raises(IssuerGarbage):
            await client.fetch_request(issuer.card_url())


@pytest.mark.anyio
async def test_callback_timeout_is_outcome_unknown_and_was_received(issuer: Issuer) -> None:
    issuer.callback_hangs = True
    async with WithdrawClient(LOOPBACK, timeouts=FAST) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(CallbackOutcomeUnknown) as info:
            await client.submit(req, BOLT11, 5_000)
    assert info.value.code == "outcome-unknown"
    assert "do not charge again" in info.value.user_message
    assert issuer.callback_seen.wait(5)  # the issuer did get it: re-sending would be a replay


@pytest.mark.anyio
async def test_unreachable_issuer_is_typed() -> None:
    # A port nobody listens on: connection refused, nothing was sent.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    async with WithdrawClient(LOOPBACK, timeouts=FAST) as client:
        with pytest.raises(IssuerUnreachable):
            await client.fetch_request(f"http://127.0.0.1:{port}/scan?p=1&c=2")


@pytest.mark.anyio
async def test_callback_that_cannot_connect_is_unreachable_not_unknown() -> None:
    # Connection refused: the request never left, so the outcome is known (nothing happened).
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    req = WithdrawRequest(
        card_url=f"http://127.0.0.1:{port}/scan",
        callback=f"http://127.0.0.1:{port}/cb",
        k1="k",
        min_withdrawable_msat=1,
        max_withdrawable_msat=10_000,
    )
    async with WithdrawClient(LOOPBACK, timeouts=FAST) as client:
        with pytest.raises(IssuerUnreachable):
            await client.submit(req, BOLT11, 5_000)


# --- TLS: connect to the checked address, keep the name for SNI and the certificate ----------


@pytest.mark.anyio
async def test_https_pins_resolved_address_and_keeps_sni(tmp_path: Path) -> None:
    cert, key = make_self_signed_cert(tmp_path, "issuer.example")
    issuer = Issuer(certfile=str(cert), keyfile=str(key)).start()
    try:
        calls: list[tuple[str, int]] = []

        def resolver(host: str, port: int) -> list[str]:
            calls.append((host, port))
            return ["127.0.0.1"]

        ctx = ssl.create_default_context(cafile=str(cert))
        policy = UrlPolicy(allow_private_hosts=frozenset({"issuer.example"}))
        card = f"lnurlw://issuer.example:{issuer.port}/scan?p=1&c=2"
        issuer.scan_answer = (
            200,
            issuer.withdraw_request(callback=f"https://issuer.example:{issuer.port}/cb?x=1"),
        )
        async with WithdrawClient(policy, resolver=resolver, ssl_context=ctx) as client:
            req = await client.fetch_request(card)
            await client.submit(req, BOLT11, 5_000)
            # Resolved (and checked) once per connection; the callback reused the TLS one.
            assert client.stats.connections_opened == 1
            assert client.stats.requests_sent == 2
        assert calls == [("issuer.example", issuer.port)]
        assert [s.host_header for s in issuer.seen] == [f"issuer.example:{issuer.port}"] * 2
    finally:
        issuer.stop()
