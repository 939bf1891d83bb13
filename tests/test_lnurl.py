"""terminal.protocols.lnurl: decoding, URL policy, withdrawRequest validation, callback URL (pure
core)."""

from __future__ import annotations

import ipaddress
import sys
import unicodedata
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.protocols.lnurl import (
    AmountOutOfRange,
    CallbackAccepted,
    CallbackHostRefused,
    InvalidPin,
    IssuerError,
    IssuerGarbage,
    LnurlDecodeError,
    LnurlError,
    PinRequired,
    RedirectRefused,
    UrlPolicy,
    UrlRefused,
    WithdrawRequest,
    _has_space_or_control,
    _query_value,
    build_callback_url,
    check_addresses,
    check_amount,
    check_redirect,
    check_url,
    decode_lnurl,
    encode_lnurl,
    error_for_reason,
    is_public_address,
    parse_callback_response,
    parse_withdraw_request,
    sentence,
    validate_pin,
)

# LUD-01's own example.
LUD01_URL = "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df"
LUD01_LNURL = (
    "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NY"
    "D3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS"
)
POLICY = UrlPolicy()

# Strategies built once, reused.
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=2, max_size=4).map(".".join)
url_chars = st.characters(
    codec="ascii", categories=("L", "N"), include_characters="-._~!$&'()*+,;=:@%/"
)
paths = st.text(url_chars, max_size=60).map(lambda s: "/" + s.replace("?", "").replace("#", ""))
queries = st.text(url_chars, max_size=120)
https_urls = st.builds(
    lambda h, p, q: f"https://{h}{p}" + (f"?{q}" if q else ""), hostnames, paths, queries
)


def wr(**over: object) -> WithdrawRequest:
    base: dict[str, object] = dict(
        card_url="https://card.example/scan?p=1&c=2",
        callback="https://card.example/cb?hit=1",
        k1="secret-k1",
        min_withdrawable_msat=1_000,
        max_withdrawable_msat=100_000,
    )
    base.update(over)
    return WithdrawRequest(**base)  # type: ignore[arg-type]


# --- decoding ----------------------------------------------------------------------------------


def test_lud01_example_decodes_and_exceeds_90_chars() -> None:
    assert len(LUD01_LNURL) > 90
    assert decode_lnurl(LUD01_LNURL) == LUD01_URL
    assert decode_lnurl(LUD01_LNURL.lower()) == LUD01_URL
    assert decode_lnurl("lightning:" + LUD01_LNURL) == LUD01_URL
    assert decode_lnurl("LIGHTNING:" + LUD01_LNURL.lower()) == LUD01_URL
    assert encode_lnurl(LUD01_URL) == LUD01_LNURL


@pytest.mark.parametrize(
    ("card", "url"),
    [
        ("lnurlw://card.example/ln?p=AA&c=BB", "https://card.example/ln?p=AA&c=BB"),
        ("LNURLW://card.example/ln?p=AA", "https://card.example/ln?p=AA"),
        ("LnUrlW://card.example:8443/x", "https://card.example:8443/x"),
        ("lnurlw://abcdef.onion/ln?p=1", "http://abcdef.onion/ln?p=1"),
        ("lightning:lnurlw://card.example/x", "https://card.example/x"),
        ("https://card.example/x", "https://card.example/x"),
    ],
)
def test_lnurlw_scheme_maps_to_https_or_onion_http(card: str, url: str) -> None:
    assert decode_lnurl(card) == url


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "lnurlp://card.example/pay",
        "ftp://card.example/",
        LUD01_LNURL[:-1] + ("Q" if LUD01_LNURL[-1] != "Q" else "P"),  # checksum
        LUD01_LNURL[:10] + LUD01_LNURL[10:].lower(),  # mixed case
        encode_lnurl("https://x.example").replace("LNURL1", "LNURL1", 1)[:-6] + "QQQQQQ",
        "lnurlw://",
        "lnurlw://card.example:99999/x",
        "lnurlw://card.example/a b",
        "lnurl1" + "q" * 5000,
    ],
)
def test_decode_refuses_with_its_own_error(bad: str) -> None:
    with pytest.raises(LnurlDecodeError) as info:
        decode_lnurl(bad)
    assert info.value.code == "invalid-lnurl"


def test_bech32_with_other_hrp_is_refused() -> None:
    from bech32 import bech32_encode, convertbits

    other = bech32_encode("lnurp", convertbits(b"https://x.example", 8, 5))
    with pytest.raises(LnurlDecodeError):
        decode_lnurl(other)


# Property: any https URL survives bech32 encode → decode unchanged, in either case.
@given(https_urls)
def test_bech32_round_trip(url: str) -> None:
    encoded = encode_lnurl(url)
    assert decode_lnurl(encoded) == url
    assert decode_lnurl("lightning:" + encoded.lower()) == url


# Property: decoding arbitrary text raises nothing but LnurlDecodeError.
@given(st.text(max_size=300) | st.builds(lambda s: "lnurlw://" + s, st.text(max_size=80)))
def test_decode_raises_only_its_error_type(text: str) -> None:
    try:
        url = decode_lnurl(text)
    except LnurlDecodeError:
        return
    assert urlsplit(url).scheme in ("http", "https")


# --- URL policy --------------------------------------------------------------------------------


def test_space_or_control_check_is_the_unicode_category_rule_for_every_character() -> None:
    # The URL check asks `str.isprintable` (in C) instead of looking up each character's
    # category: the same answer for every code point, the ASCII space included.
    differ = [cp for cp in range(sys.maxunicode + 1)
              if _has_space_or_control(chr(cp)) != (unicodedata.category(chr(cp))[0] in "CZ")]
    assert differ == []
    assert _has_space_or_control("https://a.example/x y") and not _has_space_or_control("ok")


def test_https_public_host_passes() -> None:
    t = check_url("https://Card.Example./ln?p=1", POLICY)
    assert (t.scheme, t.host, t.port) == ("https", "card.example", 443)


@pytest.mark.parametrize(
    "url",
    [
        "http://card.example/x",  # plain http
        "ftp://card.example/x",
        "https://good.example@evil.example/x",  # credentials in URL
        "https://exämple.com/x",  # IDN: refused rather than parsed two ways
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/x",
        "https://224.0.0.1/x",
        "https://100.64.0.1/x",  # shared address space (CGNAT)
    ],
)
def test_policy_refusals(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, POLICY)


def test_insecure_and_private_need_explicit_configuration() -> None:
    dev = UrlPolicy.from_config(
        {"allow_insecure_hosts": ["127.0.0.1"], "allow_private_hosts": ["127.0.0.1"]}
    )
    assert check_url("http://127.0.0.1:8080/x", dev).port == 8080
    insecure_only = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1"}))
    with pytest.raises(UrlRefused, match="non-public"):
        check_url("http://127.0.0.1:8080/x", insecure_only)
    assert UrlPolicy().allow_insecure_hosts == frozenset()


def test_onion_http_is_allowed_by_policy() -> None:
    t = check_url("http://abcdefghij234567.onion/ln?p=1", POLICY)
    assert t.is_onion and t.scheme == "http" and t.port == 80


def test_issuer_allowlist() -> None:
    policy = UrlPolicy(issuer_hosts=frozenset({"Pay.Example"}))
    assert check_url("https://pay.example/x", policy).host == "pay.example"
    with pytest.raises(UrlRefused, match="not an allowed card issuer"):
        check_url("https://other.example/x", policy)


@pytest.mark.parametrize(
    "addr",
    ["10.0.0.5", "192.168.1.10", "172.16.0.1", "169.254.169.254", "127.0.0.2", "::1", "fe80::1",
     "fc00::1", "::ffff:192.168.1.1", "64:ff9b::a00:5", "2002:c0a8:0101::1", "ff02::1", "::",
     "240.0.0.1", "100.64.1.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))
    target = check_url("https://issuer.example/x", POLICY)
    with pytest.raises(UrlRefused):
        check_addresses(target, ["93.184.215.14", addr], POLICY)


@pytest.mark.parametrize("addr", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass_unless_mixed(addr: str) -> None:
    target = check_url("https://issuer.example/x", POLICY)
    assert check_addresses(target, [addr], POLICY) == [addr]
    with pytest.raises(UrlRefused):
        check_addresses(target, [], POLICY)


def test_private_allowed_only_for_named_host() -> None:
    policy = UrlPolicy(allow_private_hosts=frozenset({"issuer.lan"}))
    assert check_addresses(check_url("https://issuer.lan/x", policy), ["10.0.0.5"], policy)
    with pytest.raises(UrlRefused):
        check_addresses(check_url("https://other.lan/x", policy), ["10.0.0.5"], policy)


def test_redirects_only_to_the_same_origin() -> None:
    cur = check_url("https://card.example/a", POLICY)
    assert check_redirect(cur, "https://card.example/b", POLICY).url.endswith("/b")
    for where in ["https://evil.example/b", "https://card.example:444/b", "http://card.example/b"]:
        with pytest.raises(UrlRefused):
            check_redirect(cur, where, POLICY)
    with pytest.raises(RedirectRefused):
        check_redirect(cur, "https://evil.example/b", POLICY)


# Property: check_url on arbitrary text raises nothing but UrlRefused.
@given(st.text(max_size=200) | st.builds(lambda s: "https://" + s, st.text(max_size=80)))
def test_check_url_raises_only_its_error_type(text: str) -> None:
    try:
        check_url(text, POLICY)
    except UrlRefused:
        pass


# --- withdrawRequest ---------------------------------------------------------------------------


def payload(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "tag": "withdrawRequest",
        "callback": "https://card.example/cb?hit=1",
        "k1": "k1-token",
        "minWithdrawable": 1000,
        "maxWithdrawable": 2_000_000,
        "defaultDescription": "Boltcard",
    }
    body.update(over)
    return body


CARD = "https://card.example/scan?p=1&c=2"


def test_valid_withdraw_request() -> None:
    r = parse_withdraw_request(payload(pinLimit=50_000, currentBalance=10_000.0), CARD, POLICY)
    assert r.pin_limit_msat == 50_000 and r.current_balance_msat == 10_000
    assert r.spendable_msat == 10_000
    assert "k1-token" not in repr(r)


def test_callback_on_another_host_is_refused_unless_allowlisted() -> None:
    other = payload(callback="https://elsewhere.example/cb")
    with pytest.raises(CallbackHostRefused):
        parse_withdraw_request(other, CARD, POLICY)
    both = UrlPolicy(issuer_hosts=frozenset({"card.example", "elsewhere.example"}))
    assert parse_withdraw_request(other, CARD, both).callback == "https://elsewhere.example/cb"
    with pytest.raises(UrlRefused):
        parse_withdraw_request(payload(callback="http://card.example/cb"), CARD, POLICY)


@pytest.mark.parametrize(
    "bad",
    [[], "x", payload(tag=None), payload(k1=""), payload(minWithdrawable=-1),
     payload(maxWithdrawable=float("inf")), payload(pinLimit="1000"), payload(payLink=5),
     payload(minWithdrawable=3_000_000), payload(maxWithdrawable=10**30)],
)  # fmt: skip
def test_invalid_withdraw_requests(bad: object) -> None:
    with pytest.raises(IssuerGarbage):
        parse_withdraw_request(bad, CARD, POLICY)


def test_error_status_in_withdraw_request_is_issuer_error() -> None:
    with pytest.raises(IssuerError, match="Card is disabled"):
        parse_withdraw_request({"status": "ERROR", "reason": "Card is disabled."}, CARD, POLICY)


# --- amount, PIN -------------------------------------------------------------------------------


def test_amount_bounds_inclusive() -> None:
    r = wr()
    check_amount(r, 1_000)
    check_amount(r, 100_000)
    for amount in (999, 100_001, 0, -5):
        with pytest.raises(AmountOutOfRange):
            check_amount(r, amount)


def test_pin_limit_boundary() -> None:
    r = wr(pin_limit_msat=50_000)
    check_amount(r, 49_999)
    with pytest.raises(PinRequired) as info:
        check_amount(r, 50_000)
    assert "50" in info.value.user_message
    check_amount(r, 50_000, pin="0000")


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "١٢٣٤", " 1234", ""])
def test_invalid_pins_never_echo_the_pin(pin: str) -> None:
    with pytest.raises(InvalidPin) as info:
        validate_pin(pin)
    text = str(info.value) + info.value.user_message + repr(info.value)
    assert not pin or pin.strip() not in text


# --- callback URL ------------------------------------------------------------------------------


def test_callback_merges_existing_query_and_replaces_our_keys() -> None:
    r = wr(callback="https://card.example/cb?hit=1&k1=old&sig=a%2Bb#frag")
    url = build_callback_url(r, "lnbc1xyz", pin="1234")
    assert url == "https://card.example/cb?hit=1&sig=a%2Bb&k1=secret-k1&pr=lnbc1xyz&pin=1234"


# Property: our merge gives the same parameters as httpx's copy_merge_params (the spec's recipe).
@given(
    st.dictionaries(st.sampled_from(["a", "hit", "k1", "x y", "pr"]), st.text(max_size=8)),
    st.text(min_size=1, max_size=20),
    st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=30),
)
def test_callback_merge_matches_httpx(existing: dict[str, str], k1: str, pr: str) -> None:
    cb = str(httpx.URL("https://card.example/cb", params=existing))
    ours = build_callback_url(wr(callback=cb, k1=k1), pr)
    expected = httpx.URL(cb).copy_merge_params({"k1": k1, "pr": pr})
    assert sorted(parse_qsl(urlsplit(ours).query, keep_blank_values=True)) == sorted(
        expected.params.multi_items()
    )


# --- callback answers --------------------------------------------------------------------------


def test_callback_answers() -> None:
    assert parse_callback_response({"status": "OK"}) == CallbackAccepted(None)
    assert parse_callback_response({"status": "ok", "reason": " pending "}).reason == "pending"
    with pytest.raises(IssuerGarbage):
        parse_callback_response({"pr": "x"})
    with pytest.raises(IssuerError) as info:
        parse_callback_response({"status": "ERROR", "reason": "x" * 500}, http_status=400)
    assert len(info.value.reason) == 160 and info.value.http_status == 400


def test_every_error_has_code_and_user_message() -> None:
    import terminal.protocols.lnurl as mod

    classes = [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, LnurlError)]
    codes = {c.code for c in classes}
    assert len(codes) == len(classes)  # stable, distinct codes
    for c in classes:
        assert c.default_message


# Reasons exactly as the LNbits boltcards extension sends them (views_lnurl.py): they end in a
# full stop, and the terminal's sentence must not add a second one.
LNBITS_REASONS = [
    "Card not found.", "Card is disabled.", "Card UID mis-match.", "CMAC does not check.",
    "Error decrypting card.", "This link is already used.", "Cannot get client info.",
    "Max daily limit spent.", "Missing K1 token", "K1 token does not match.",
    "LNURL-withdraw record not found.", "Payment already claimed.", "Missing payment request.",
    "Failed to decode payment request.", "Invoice has no amount.",
    "Payment failed - Insufficient balance.", "Are you sure?",
]


@pytest.mark.parametrize("reason", LNBITS_REASONS)
def test_issuer_reasons_never_come_out_with_a_doubled_full_stop(reason: str) -> None:
    with pytest.raises(IssuerError) as info:
        parse_withdraw_request({"status": "ERROR", "reason": reason}, CARD, POLICY)
    message = info.value.user_message
    assert ".." not in message and "?." not in message
    assert message.endswith(".")
    if type(info.value) is IssuerError:  # the generic refusal shows the issuer's own words
        assert f": {reason.rstrip('.')}" in message
    assert sentence(reason) == (reason if reason.endswith((".", "?")) else reason + ".")


def test_card_uid_mismatch_reads_as_one_sentence() -> None:
    error = error_for_reason("Card UID mis-match.")
    assert error.user_message == ("The card's issuer declined the payment: Card UID mis-match. "
                                  "Ask for another payment method.")


# Property: a callback query value is written exactly as `quote(value, safe="")` would write it
# (letters and digits skip the call).
@given(st.one_of(st.text(max_size=60), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789",
                                               max_size=500)))
def test_query_values_are_percent_encoded_as_quote_does(value: str) -> None:
    assert _query_value(value) == quote(value, safe="")
