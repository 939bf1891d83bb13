"""Hostile cards and issuers: the terminal must not become a probe of the shop's LAN, must not
be held by a slow server, must not swallow an unbounded body, and must not leak the PIN."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.adapters.withdraw import Timeouts, WithdrawClient
from terminal.protocols.lnurl import (
    CallbackHostRefused,
    IssuerUnreachable,
    LnurlError,
    RedirectRefused,
    ResponseTooLarge,
    UrlPolicy,
    UrlRefused,
    WrongPin,
    check_url,
    parse_callback_response,
    parse_withdraw_request,
)
from tests.fakes.lnurl_issuer import BOLT11, Issuer, SilentListener

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})
LOOPBACK = UrlPolicy(allow_insecure_hosts=LOOPBACK_NAMES, allow_private_hosts=LOOPBACK_NAMES)


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


@pytest.fixture
def silent_127_0_0_2() -> Iterator[SilentListener]:
    listener = SilentListener("127.0.0.2")
    yield listener
    listener.close()


class StubResolver:
    """Maps names to addresses without any DNS; records every call."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.table[host]


# --- private addresses -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_private_address_literal_gets_no_connection(
    silent_127_0_0_2: SilentListener,
) -> None:
    # http allowed for 127.0.0.2 (so only the address rule can refuse), private not allowed.
    policy = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.2"}))
    url = f"http://127.0.0.2:{silent_127_0_0_2.port}/scan?p=1&c=2"
    async with WithdrawClient(policy) as client:
        with pytest.raises(UrlRefused, match="non-public"):
            await client.fetch_request(url)
        assert client.stats.connections_opened == 0
    assert silent_127_0_0_2.connections() == 0


@pytest.mark.anyio
async def test_control_the_silent_listener_does_count_connections(
    silent_127_0_0_2: SilentListener,
) -> None:
    # Same URL with 127.0.0.2 allowed: a connection is made, so the zero above means something.
    policy = UrlPolicy(
        allow_insecure_hosts=frozenset({"127.0.0.2"}), allow_private_hosts=frozenset({"127.0.0.2"})
    )
    url = f"http://127.0.0.2:{silent_127_0_0_2.port}/scan?p=1&c=2"
    async with WithdrawClient(policy, timeouts=Timeouts(fetch_deadline=0.3)) as client:
        with pytest.raises(IssuerUnreachable):
            await client.fetch_request(url)
    assert silent_127_0_0_2.connections() == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "address", ["10.0.0.5", "192.168.1.10", "169.254.169.254", "::1", "::ffff:127.0.0.1"]
)
async def test_name_resolving_to_private_address_is_refused_without_connecting(
    address: str,
) -> None:
    resolver = StubResolver({"issuer.example": [address]})
    async with WithdrawClient(UrlPolicy(), resolver=resolver) as client:
        with pytest.raises(UrlRefused, match="non-public"):
            await client.fetch_request("lnurlw://issuer.example/scan?p=1&c=2")
        assert resolver.calls == [("issuer.example", 443)]
        assert client.stats.connections_opened == 0
        assert client.stats.requests_sent == 0


@pytest.mark.anyio
async def test_connects_to_the_checked_address_resolving_once(issuer: Issuer) -> None:
    # `issuer.example` exists in no DNS: success proves the connection went to the address the
    # resolver gave and the policy checked, and that nothing resolved the name a second time.
    resolver = StubResolver({"issuer.example": ["127.0.0.1"]})
    policy = UrlPolicy(
        allow_insecure_hosts=frozenset({"issuer.example"}),
        allow_private_hosts=frozenset({"issuer.example"}),
    )
    issuer.scan_answer = (
        200,
        issuer.withdraw_request(callback=f"http://issuer.example:{issuer.port}/cb"),
    )
    async with WithdrawClient(policy, resolver=resolver) as client:
        await client.fetch_request(f"http://issuer.example:{issuer.port}/scan?p=1&c=2")
        assert resolver.calls == [("issuer.example", issuer.port)]
        assert client.stats.connections_opened == 1
    assert issuer.seen[0].host_header == f"issuer.example:{issuer.port}"


@pytest.mark.anyio
async def test_the_pools_resolver_checks_every_address_it_hands_out() -> None:
    # The connection pool connects only to what its resolver returns: that resolver is the
    # policy check, so a name that also answers a private address yields nothing to connect to.
    from terminal.adapters.withdraw import ClientStats, _PolicyResolver

    stats = ClientStats()
    resolver = _PolicyResolver(StubResolver({"mixed.example": ["93.184.215.14", "10.0.0.5"],
                                             "public.example": ["93.184.215.14"]}),
                               UrlPolicy(), stats)
    with pytest.raises(UrlRefused, match="non-public"):
        await resolver.resolve("mixed.example", 443)
    [only] = await resolver.resolve("public.example.", 443)
    assert (only["host"], only["port"], only["hostname"]) == ("93.184.215.14", 443,
                                                              "public.example.")
    assert stats.resolutions == 2


# --- redirects, callbacks, schemes -------------------------------------------------------------


@pytest.mark.anyio
async def test_redirect_to_another_host_is_refused(issuer: Issuer) -> None:
    other = SilentListener("127.0.0.1")
    try:
        issuer.redirect_to = f"http://localhost:{other.port}/scan?p=1&c=2"
        resolver = StubResolver({"localhost": ["127.0.0.1"]})
        async with WithdrawClient(LOOPBACK, resolver=resolver) as client:
            with pytest.raises(RedirectRefused):
                await client.fetch_request(issuer.card_url("/redirect"))
        assert other.connections() == 0
        assert resolver.calls == []
    finally:
        other.close()


@pytest.mark.anyio
async def test_same_host_redirect_is_followed_and_loops_are_cut(issuer: Issuer) -> None:
    issuer.redirect_to = "/scan?p=1&c=2"
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url("/redirect"))
        assert req.k1
        issuer.redirect_to = "/redirect"
        with pytest.raises(UrlRefused, match="redirects"):
            await client.fetch_request(issuer.card_url("/redirect"))
    assert issuer.paths().count("/redirect") == 1 + LOOPBACK.max_redirects + 1


@pytest.mark.anyio
async def test_callback_pointing_at_another_host_is_refused(issuer: Issuer) -> None:
    other = SilentListener("127.0.0.1")
    try:
        issuer.scan_answer = (
            200,
            issuer.withdraw_request(callback=f"http://localhost:{other.port}/cb"),
        )
        async with WithdrawClient(LOOPBACK) as client:
            with pytest.raises(CallbackHostRefused) as info:
                await client.fetch_request(issuer.card_url())
        assert info.value.code == "callback-host-refused"
        assert other.connections() == 0
    finally:
        other.close()


@pytest.mark.anyio
async def test_non_https_is_refused_before_any_lookup() -> None:
    resolver = StubResolver({"card.example": ["93.184.215.14"]})
    async with WithdrawClient(UrlPolicy(), resolver=resolver) as client:
        with pytest.raises(UrlRefused, match="https only"):
            await client.fetch_request("http://card.example/scan?p=1&c=2")
    assert resolver.calls == []


@pytest.mark.anyio
async def test_onion_http_is_allowed_by_policy_but_never_resolved() -> None:
    url = "lnurlw://abcdefghijklmnop.onion/scan?p=1&c=2"
    assert check_url("http://abcdefghijklmnop.onion/scan", UrlPolicy()).scheme == "http"
    resolver = StubResolver({})
    async with WithdrawClient(UrlPolicy(), resolver=resolver) as client:
        with pytest.raises(IssuerUnreachable, match="Tor"):
            await client.fetch_request(url)
        assert client.stats.connections_opened == 0
    assert resolver.calls == []  # a DNS query for a .onion name would leak it


# --- size and time caps ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("declare", ["0", "1"])
async def test_50mb_body_is_cut_at_the_cap(issuer: Issuer, declare: str) -> None:
    async with WithdrawClient(LOOPBACK) as client:
        with pytest.raises(ResponseTooLarge):
            await client.fetch_request(issuer.card_url("/huge", f"declare={declare}"))
        # The connection was dropped, not drained: the next tap opens a fresh one and works.
        assert (await client.fetch_request(issuer.card_url())).k1


@pytest.mark.anyio
async def test_slow_loris_is_aborted_at_the_deadline(issuer: Issuer) -> None:
    # A byte every 100 ms satisfies the 1 s read timeout forever; only the deadline ends it.
    timeouts = Timeouts(read=1.0, fetch_deadline=1.0)
    async with WithdrawClient(LOOPBACK, timeouts=timeouts) as client:
        with pytest.raises(IssuerUnreachable, match="deadline"):
            await client.fetch_request(issuer.card_url("/trickle"))


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pin_never_reaches_logs_reprs_or_errors(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    pin = "8642097"
    assert pin not in BOLT11
    issuer.scan_answer = (200, issuer.withdraw_request(pinLimit=1_000))
    issuer.callback_answer = (200, {"status": "ERROR", "reason": "Wrong PIN"})
    caplog.set_level(logging.DEBUG)  # httpx logs request URLs at INFO, httpcore traces at DEBUG
    async with WithdrawClient(LOOPBACK) as client:
        req = await client.fetch_request(issuer.card_url())
        with pytest.raises(WrongPin) as info:
            await client.submit(req, BOLT11, 5_000, pin=pin)
    assert ("pin", pin) in [tuple(p.split("=", 1)) for p in issuer.seen[-1].raw_query.split("&")]
    assert caplog.records  # logging really was captured
    assert pin not in caplog.text
    assert req.k1 not in caplog.text and req.k1 not in repr(req)
    err = info.value
    assert pin not in f"{err} {err!r} {err.user_message} {err.__cause__} {err.__context__}"


# --- parsers on arbitrary JSON -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
withdrawish = st.fixed_dictionaries(
    {},
    optional={
        "tag": st.sampled_from(["withdrawRequest", "payRequest"]) | json_values,
        "callback": st.sampled_from(["https://card.example/cb", "http://10.0.0.1/"]) | json_values,
        "k1": json_values,
        "minWithdrawable": st.integers(-5, 10**20) | json_values,
        "maxWithdrawable": st.integers(-5, 10**20) | json_values,
        "pinLimit": json_values,
        "currentBalance": json_values,
        "status": st.sampled_from(["OK", "ERROR"]) | json_values,
        "reason": json_values,
    },
)


# Property: whatever JSON an issuer sends, the parsers raise only LnurlError subclasses.
@given(json_values | withdrawish)
def test_parsers_raise_only_their_errors(payload: object) -> None:
    for parse in (
        lambda: parse_withdraw_request(payload, "https://card.example/s", UrlPolicy()),
        lambda: parse_callback_response(payload, http_status=200),
    ):
        try:
            parse()
        except LnurlError as exc:
            assert exc.code and exc.user_message
