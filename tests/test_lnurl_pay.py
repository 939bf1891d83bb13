"""terminal.protocols.lnurl_pay (pure core): where a refund may go (LUD-16 addresses, LUD-06/17
LNURL-pay, BOLT11), payRequests as servers send them (and as hostile ones do), the callback URL,
and the checks an invoice passes before it is paid."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.protocols.lnurl import UrlPolicy, UrlRefused, encode_lnurl
from terminal.protocols.lnurl_pay import (
    AmountOutsideRange,
    DestinationGarbage,
    DestinationInvalid,
    DestinationKind,
    DestinationRefused,
    InvoiceMismatch,
    PayRequest,
    build_pay_callback,
    check_bolt11,
    check_pay_invoice,
    parse_destination,
    parse_pay_callback,
    parse_pay_request,
    pay_url,
)
from terminal.sandbox.lightning import mint_invoice

NODE_KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")
METADATA = json.dumps([["text/plain", "Pay to ana"], ["text/identifier", "ana@shop.example"]])
POLICY = UrlPolicy()
DEV = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1"}),
                allow_private_hosts=frozenset({"127.0.0.1"}))


def pay_request(**overrides) -> dict:
    body = {"tag": "payRequest", "callback": "https://shop.example/lnurlp/ana/cb?x=1",
            "minSendable": 1000, "maxSendable": 10**9, "metadata": METADATA}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def invoice(amount_msat: int, *, metadata: str | None = METADATA, network: str = "regtest",
            expiry_s: int = 600, now: int | None = None) -> str:
    digest = hashlib.sha256(metadata.encode()).digest() if metadata is not None else None
    return mint_invoice(NODE_KEY, network, amount_msat, "memo", expiry_s,
                        now if now is not None else int(time.time()),
                        description_hash=digest).payment_request


# ------------------------------------------------------------------------------ destinations


@pytest.mark.parametrize("text, url, shown", [
    ("ana@shop.example", "https://shop.example/.well-known/lnurlp/ana", "ana@shop.example"),
    ("  Ana@Shop.Example ", "https://shop.example/.well-known/lnurlp/ana", "ana@shop.example"),
    ("lightning:ana@shop.example", "https://shop.example/.well-known/lnurlp/ana",
     "ana@shop.example"),
    ("ana.b-c_d@shop.example:8443", "https://shop.example:8443/.well-known/lnurlp/ana.b-c_d",
     "ana.b-c_d@shop.example:8443"),
    ("ana@abcdefghijklmnop.onion", "http://abcdefghijklmnop.onion/.well-known/lnurlp/ana",
     "ana@abcdefghijklmnop.onion"),
    ("ana@127.0.0.1:8080", "http://127.0.0.1:8080/.well-known/lnurlp/ana",
     "ana@127.0.0.1:8080"),  # a development host the configuration allows: plain http
    ("ana@[::1]:9", "https://[::1]:9/.well-known/lnurlp/ana", "ana@[::1]:9"),
])
def test_lightning_addresses_become_their_well_known_url(text, url, shown):
    parsed = parse_destination(text, insecure_hosts={"127.0.0.1"})
    assert (parsed.kind, parsed.url, parsed.shown) == (DestinationKind.ADDRESS, url, shown)


def test_lnurl_pay_links_in_every_spelling():
    url = "https://shop.example/lnurlp/abc?tag=1"
    for text in (encode_lnurl(url), encode_lnurl(url).lower(), f"lightning:{encode_lnurl(url)}",
                 "lnurlp://shop.example/lnurlp/abc?tag=1", "LNURLP://shop.example/lnurlp/abc?tag=1",
                 url):
        parsed = parse_destination(text)
        assert (parsed.kind, parsed.url) == (DestinationKind.LNURL, url), text
    # A card's LUD-19 payLink at a development host (the sandbox): plain http.
    assert pay_url("lnurlp://127.0.0.1:5000/lnurlp/card/1", insecure_hosts={"127.0.0.1"}) == \
        "http://127.0.0.1:5000/lnurlp/card/1"
    assert pay_url("lnurlp://x.onion/p") == "http://x.onion/p"


def test_a_bolt11_is_recognised_and_kept_in_lower_case():
    pr = invoice(1_000_000)
    for text in (pr, pr.upper(), f"lightning:{pr}"):
        parsed = parse_destination(text)
        assert (parsed.kind, parsed.bolt11) == (DestinationKind.BOLT11, pr.lower())
        assert parsed.shown.startswith(pr[:24]) and len(parsed.shown) < 30


@pytest.mark.parametrize("text", [
    "", "   ", "ana@", "@shop.example", "a na@shop.example", "ana@shop example",
    "ana@shop.example/x",
    "ana@host:99999", "lnurlw://shop.example/ln", "keyauth://shop.example/x", "lnbc1invalid",
    "lnbcrt10u1qqqq", "ftp://shop.example/x", "LNURL1INVALIDCHECKSUM", "x" * 5000,
    "ana\x00@shop.example", "ana@shop.exa\nmple",
])
def test_what_is_not_a_destination_says_so(text):
    with pytest.raises(DestinationInvalid):
        parse_destination(text)


@given(st.text(max_size=300))
def test_any_text_is_a_destination_or_a_destination_invalid(text):
    try:
        parsed = parse_destination(text)
    except DestinationInvalid:
        return
    assert parsed.kind in DestinationKind
    assert (parsed.url is not None) != (parsed.bolt11 is not None)


users = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.lists(labels, min_size=2, max_size=4).map(".".join)


@given(users, domains, st.one_of(st.none(), st.integers(1, 65535)))
def test_every_address_resolves_to_https_well_known(user, domain, port):
    authority = domain + (f":{port}" if port else "")
    parsed = parse_destination(f"{user}@{authority}")
    assert parsed.url == f"https://{authority}/.well-known/lnurlp/{user}"
    assert parsed.shown == f"{user}@{authority}"


# ------------------------------------------------------------------------------ payRequest


def test_a_pay_request_is_validated_and_its_metadata_read():
    request = parse_pay_request(pay_request(), "https://shop.example/.well-known/lnurlp/ana",
                                POLICY)
    assert (request.min_sendable_msat, request.max_sendable_msat) == (1000, 10**9)
    assert request.description == "Pay to ana" and request.identifier == "ana@shop.example"
    assert request.metadata_hash == hashlib.sha256(METADATA.encode()).hexdigest()
    # The callback may live on another host (Lightning Address services do that).
    other = parse_pay_request(pay_request(callback="https://pay.other.example/cb"), "https://"
                              "shop.example/.well-known/lnurlp/ana", POLICY)
    assert other.callback == "https://pay.other.example/cb"


@pytest.mark.parametrize("body, error", [
    ([], DestinationGarbage),
    (pay_request(tag="withdrawRequest"), DestinationGarbage),
    (pay_request(callback=None), DestinationGarbage),
    (pay_request(minSendable=0), DestinationGarbage),
    (pay_request(minSendable=5000, maxSendable=4000), DestinationGarbage),
    (pay_request(maxSendable=1.5), DestinationGarbage),
    (pay_request(maxSendable="1000"), DestinationGarbage),
    (pay_request(maxSendable=True), DestinationGarbage),
    (pay_request(metadata=None), DestinationGarbage),
    (pay_request(metadata="not json"), DestinationGarbage),
    (pay_request(metadata='{"text/plain": "x"}'), DestinationGarbage),
    (pay_request(metadata='[["text/plain", "x"], "y"]'), DestinationGarbage),
    (pay_request(metadata="[" * 10_000), DestinationGarbage),
    (pay_request(callback="http://evil.example/cb"), UrlRefused),  # https only
    (pay_request(callback="https://user:pw@shop.example/cb"), UrlRefused),
    ({"status": "ERROR", "reason": "No such user."}, DestinationRefused),
])
def test_hostile_pay_requests_are_refused(body, error):
    with pytest.raises(error):
        parse_pay_request(body, "https://shop.example/.well-known/lnurlp/ana", POLICY)


def test_a_refusal_keeps_only_printable_words():
    with pytest.raises(DestinationRefused) as info:
        parse_pay_request({"status": "error", "reason": "No\x1b[2J such\nuser." + "x" * 500},
                          "https://shop.example/p", POLICY)
    assert "\x1b" not in info.value.user_message and "\n" not in info.value.user_message
    assert len(info.value.reason) <= 160


def test_the_amount_must_lie_in_the_range():
    request = parse_pay_request(pay_request(minSendable=2000, maxSendable=5000),
                                "https://shop.example/p", POLICY)
    request.check_amount(2000)
    request.check_amount(5000)
    for amount in (1999, 5001):
        with pytest.raises(AmountOutsideRange):
            request.check_amount(amount)


# ------------------------------------------------------------------------------ callback


@given(st.lists(st.tuples(st.sampled_from(["k", "amount", "sig", "a+b"]),
                          st.text("abc123%+=", max_size=8)), max_size=5),
       st.integers(1, 10**12))
def test_the_callback_keeps_the_services_query_and_sets_one_amount(pairs, amount):
    query = "&".join(f"{k}={v}" for k, v in pairs)
    request = PayRequest("https://s.example/p", "https://s.example/cb" + (f"?{query}" if query
                                                                          else ""),
                         1, 10**12, "[]")
    url = build_pay_callback(request, amount)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "s.example", "/cb")
    kept = [p for p in query.split("&") if p and p.split("=", 1)[0] != "amount"]
    assert parts.query.split("&")[:-1] == kept
    assert [v for k, v in parse_qsl(parts.query) if k == "amount"] == [str(amount)]


def test_the_callback_answer():
    assert parse_pay_callback({"pr": "lnbc1x", "routes": []}) == "lnbc1x"
    for body in ({}, {"pr": 5}, {"pr": ""}, [], {"pr": "x" * 5000}):
        with pytest.raises(DestinationGarbage):
            parse_pay_callback(body)
    with pytest.raises(DestinationRefused):
        parse_pay_callback({"status": "ERROR", "reason": "Amount too small"})


# ------------------------------------------------------------------------------ the invoice


def test_an_invoice_is_paid_only_if_it_commits_to_the_metadata_and_the_amount():
    request = parse_pay_request(pay_request(), "https://shop.example/p", POLICY)
    now = time.time()
    good = invoice(1_234_000)
    assert check_pay_invoice(good, request, 1_234_000, network="regtest",
                             now=now).amount_msat == 1_234_000
    cases = [
        (invoice(1_234_001), "asks 1,234.001 sats"),
        (invoice(1_234_000, metadata=METADATA + " "), "description hash"),
        (invoice(1_234_000, metadata=None), "no description hash"),
        (invoice(1_234_000, network="bitcoin"), "for mainnet"),
        (invoice(1_234_000, expiry_s=10, now=int(now) - 60), "expired"),
        ("lnbcrt1garbage", "does not decode"),
    ]
    for pr, phrase in cases:
        with pytest.raises(InvoiceMismatch) as info:
            check_pay_invoice(pr, request, 1_234_000, network="regtest", now=now)
        assert phrase in info.value.user_message, phrase


def test_a_bolt11_shown_by_the_customer_is_checked_for_its_own_amount():
    pr = invoice(50_000, metadata=None)
    assert check_bolt11(pr, None, network="regtest", now=time.time()).amount_msat == 50_000
    with pytest.raises(InvoiceMismatch):
        check_bolt11(pr, 40_000, network="regtest", now=time.time())
    from terminal.protocols import bolt11

    no_amount = bolt11.encode(private_key=NODE_KEY, currency="bcrt", amount_msat=None,
                              timestamp=int(time.time()), payment_hash=b"\x01" * 32,
                              payment_secret=b"\x02" * 32, description="x", expiry=600)
    with pytest.raises(InvoiceMismatch):
        check_bolt11(no_amount, None, network="regtest", now=time.time())


def test_the_development_policy_lets_the_sandbox_callback_through():
    request = parse_pay_request(pay_request(callback="http://127.0.0.1:5000/cb"),
                                "http://127.0.0.1:5000/.well-known/lnurlp/ana", DEV)
    assert request.callback.startswith("http://127.0.0.1")
