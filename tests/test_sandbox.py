"""The sandbox: a real Flash GraphQL + Boltcard issuer server on 127.0.0.1, exercised over real
HTTP and WebSocket connections (httpx, websockets), real files, and NTAG 424 crypto."""

# ruff: noqa: F811 - the sandbox fixtures (tests/helpers/flash_sandbox.py) are parameters here

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import tomllib
from decimal import Decimal
from pathlib import Path

import bolt11
import httpx
import pytest
from helpers.flash_sandbox import (  # noqa: F401 - fixtures
    CREATE_USD,
    DETAILS,
    SEND,
    TRANSACTIONS,
    create_usd_invoice,
    gql,
    sandbox,
    sb,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import connect

from hw.ntag424.crypto import aes_ecb_encrypt, sdm_mac
from terminal.sandbox import (
    Faults,
    Rates,
    SandboxCore,
    SandboxThread,
    TapRejected,
)
from terminal.sandbox.flash_schema import schema_sdl
from terminal.sandbox.issuer_keys import check_c, decrypt_p, derive_card_keys

VECTORS = Path(__file__).parent / "vectors"
SUBPROTOCOL = "graphql-transport-ws"

CREATE_USD_KEY = """
mutation create($input: LnUsdInvoiceCreateInput!) {
  lnUsdInvoiceCreate(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest satoshis }
  }
}"""
CREATE_SAT = """
mutation create($input: LnInvoiceCreateOnBehalfOfRecipientInput!) {
  lnInvoiceCreateOnBehalfOfRecipient(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest satoshis }
  }
}"""
CREATE_SAT_KEY = """
mutation create($input: LnInvoiceCreateInput!) {
  lnInvoiceCreate(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest satoshis }
  }
}"""
DEFAULT_WALLET = """
query wallet($username: Username!, $currency: WalletCurrency) {
  accountDefaultWallet(username: $username, walletCurrency: $currency) { id walletCurrency }
}"""
STATUS_QUERY = """
query status($input: LnInvoicePaymentStatusInput!) {
  lnInvoicePaymentStatus(input: $input) { status errors { message } }
}"""
STATUS_SUBSCRIPTION = """
subscription status($input: LnInvoicePaymentStatusInput!) {
  lnInvoicePaymentStatus(input: $input) { status errors { message } }
}"""
ME = "{ me { defaultAccount { id defaultWalletId wallets { id walletCurrency balance } } } }"
PRICE = """{ realtimePrice(currency: "JMD") { timestamp denominatorCurrency
  btcSatPrice { base offset } usdCentPrice { base offset } } }"""


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def create_sat_invoice(client, sb, sats):
    """A USD invoice for exactly `sats` (Flash has no sat invoices): the fractional cents those
    sats cost at the sandbox's price (0.095 US cents a sat)."""
    cents = Decimal(sats) * Rates().usd_cents_per_sat()
    invoice = create_usd_invoice(client, sb, float(cents))
    assert bolt11.decode(invoice["paymentRequest"]).amount_msat == sats * 1000
    return invoice


def status_of(client, sb, bolt11_str):
    response = gql(client, sb, STATUS_QUERY, {"input": {"paymentRequest": bolt11_str}})
    return response.json()["data"]["lnInvoicePaymentStatus"]["status"]


def tap(keys: dict, counter: int) -> dict[str, str]:
    """What the card writes into its URL: p = AES(K1, PICCData), c = SDMMAC under K2."""
    uid = bytes.fromhex(keys["uid"])
    ctr = counter.to_bytes(3, "little")
    picc = bytes([0xC7]) + uid + ctr + os.urandom(5)
    return {
        "p": aes_ecb_encrypt(bytes.fromhex(keys["k1"]), picc).hex().upper(),
        "c": sdm_mac(bytes.fromhex(keys["k2"]), uid, ctr).hex().upper(),
    }


def new_card(sb, balance_sats, **options):
    return sb.register_card(os.urandom(7), balance_sats, **options)


def lnurl_get(client, sb, params):
    return client.get(f"{sb.url}/ln", params=params).json()


def withdraw(client, sb, keys, counter, invoice, pin=None):
    request = lnurl_get(client, sb, tap(keys, counter))
    assert request.get("tag") == "withdrawRequest", request
    params = {"k1": request["k1"], "pr": invoice["paymentRequest"]}
    if pin is not None:
        params["pin"] = pin
    return client.get(request["callback"], params=params).json()


@contextlib.contextmanager
def ws_open(sb):
    """A graphql-transport-ws connection past connection_ack."""
    with connect(sb.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "connection_ack"}
        yield ws


def ws_subscribe(ws, sub_id, bolt11_str):
    ws.send(json.dumps({"id": sub_id, "type": "subscribe", "payload": {
        "query": STATUS_SUBSCRIPTION, "variables": {"input": {"paymentRequest": bolt11_str}}}}))


def next_status(ws):
    message = json.loads(ws.recv(timeout=5))
    assert message["type"] == "next", message
    return message["payload"]["data"]["lnInvoicePaymentStatus"]["status"]


# --- schema, keys and SUN ---------------------------------------------------------------------


# SHA-256 of Flash's published schema (lnflash/flash 892346e) with its header, as shipped in
# the shared vectors: the one copy in the project is the sandbox's packaged file.
FLASH_SCHEMA_SHA256 = "f81aaa2c28f6d7dc4a9eba23d1324567b956afd2dcbdef0bc047332a4370e712"


def test_packaged_schema_is_the_real_flash_schema_with_its_header():
    packaged = schema_sdl()
    assert hashlib.sha256(packaged.encode()).hexdigest() == FLASH_SCHEMA_SHA256
    assert packaged.startswith("# Flash public GraphQL schema")


@pytest.mark.parametrize("case", json.loads((VECTORS / "boltcard-keys.json").read_text())["cases"],
                         ids=lambda c: c["name"])
def test_deterministic_keys_match_boltcard_vectors(case):
    keys = derive_card_keys(bytes.fromhex(case["issuer_key"]), bytes.fromhex(case["uid"]),
                            case["version"])
    expect = case["expect"]
    assert keys.card_key.hex() == expect["card_key"]
    for name in ("k0", "k1", "k2", "k3", "k4"):
        assert getattr(keys, name).hex() == expect[name]
    assert keys.card_id.hex() == expect["id"]
    assert expect["k2"] not in repr(keys)


@pytest.mark.parametrize("case", json.loads((VECTORS / "boltcard-sun.json").read_text())["cases"],
                         ids=lambda c: c["name"])
def test_sun_check_matches_vectors(case):
    k1, k2 = bytes.fromhex(case["k1"]), bytes.fromhex(case["k2"])
    if case["expect"]["valid"]:
        picc = decrypt_p(k1, case["p"])
        assert picc.uid.hex().upper() == case["expect"]["uid"].upper()
        assert picc.counter == case["expect"]["counter"]
        check_c(k2, picc, case["c"])
    else:
        with pytest.raises(TapRejected):
            check_c(k2, decrypt_p(k1, case["p"]), case["c"])


# --- GraphQL over HTTP ------------------------------------------------------------------------


def test_unknown_field_is_a_graphql_validation_error(sb, client):
    response = gql(client, sb, "{ currencyList { id nope } }")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nope" in error["message"]


def test_syntax_error_and_bad_variable_are_rejected(sb, client):
    syntax = gql(client, sb, "{ currencyList { id ")
    assert syntax.status_code == 400
    assert syntax.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    missing = gql(client, sb, CREATE_USD, {"input": {"recipientWalletId": "x"}})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Flash's scalars do not throw on a bad value: the resolver answers it, without a code.
    bad = gql(client, sb, CREATE_USD, {"input": {"recipientWalletId": "x", "amount": "ten"}})
    assert bad.status_code == 200
    payload = bad.json()["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"]
    assert payload == {"errors": [{"message": "Invalid value for FractionalCentAmount",
                                   "code": None, "path": None}], "invoice": None}


def test_default_wallet_lookup_without_auth(sb, client):
    data = gql(client, sb, DEFAULT_WALLET,
               {"username": "sandbox-merchant", "currency": "USD"}).json()["data"]
    assert data["accountDefaultWallet"] == {"id": sb.wallet_id("USD"), "walletCurrency": "USD"}
    unknown = gql(client, sb, DEFAULT_WALLET, {"username": "nobody"}).json()
    assert unknown["data"] is None
    # Flash's formatError: the code at the top level of the error, not under `extensions`.
    assert unknown["errors"][0]["code"] == "NOT_FOUND"
    assert set(unknown["errors"][0]) == {"message", "locations", "path", "code"}


def test_anonymous_usd_invoice_is_a_signed_regtest_bolt11(sb, client):
    invoice = create_usd_invoice(client, sb, 250, memo="Coffee")
    decoded = bolt11.decode(invoice["paymentRequest"])
    assert invoice["paymentRequest"].startswith("lnbcrt")
    assert decoded.currency == "bcrt"
    # 250 US cents at 0.095 cents/sat = 2631.6 sats, rounded up to whole sats.
    assert decoded.amount_msat == 2632 * 1000
    assert decoded.payment_hash == invoice["paymentHash"]
    assert decoded.payment_secret == invoice["paymentSecret"]
    assert decoded.expiry == 60  # IBEX caps every USD invoice at 60 s
    assert decoded.description == "Coffee"
    assert invoice["satoshis"] is None  # Flash answers null for USD invoices
    info = client.get(f"{sb.url}/sandbox/info").json()
    assert decoded.payee == info["node_pubkey"]  # signature recovers the sandbox node key
    record = sb.core.state.invoices[invoice["paymentHash"]]
    assert hashlib.sha256(bytes.fromhex(record.preimage)).hexdigest() == invoice["paymentHash"]


def test_zero_amount_is_refused_by_the_provider(sb, client):
    response = gql(client, sb, CREATE_USD,
                   {"input": {"recipientWalletId": sb.wallet_id("USD"), "amount": 0}})
    payload = response.json()["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"]
    assert payload["invoice"] is None
    assert payload["errors"][0]["code"] == "IBEX_ERROR"


def test_fractional_cents_are_accepted_as_number_or_text(sb, client):
    # 15 sats at 0.095 US cents a sat: 1.425 cents, not rounded to 1 or 2.
    for amount in (1.425, "1.425"):
        invoice = create_usd_invoice(client, sb, amount)
        assert bolt11.decode(invoice["paymentRequest"]).amount_msat == 15_000


def test_usd_invoices_expire_after_60_s_whatever_expires_in_says(sb, client):
    for minutes in (1, 5, 1440):
        invoice = create_usd_invoice(client, sb, 100, expiresIn=minutes)
        assert bolt11.decode(invoice["paymentRequest"]).expiry == 60


def test_btc_invoices_are_not_supported(sb, client):
    usd = sb.wallet_id("USD")
    anonymous = gql(client, sb, CREATE_SAT,
                    {"input": {"recipientWalletId": usd, "amount": 10}}).json()
    assert anonymous["data"] is None  # the payload is non-null: the error nulls `data`
    assert anonymous["errors"][0]["message"] == "Flash does not support BTC wallets."
    assert "code" not in anonymous["errors"][0]
    keyed = gql(client, sb, CREATE_SAT_KEY, {"input": {"walletId": usd, "amount": 10}},
                headers={"X-API-KEY": sb.api_key}).json()
    assert keyed["errors"][0]["message"] == "Flash does not support BTC wallets."
    unauth = gql(client, sb, CREATE_SAT_KEY, {"input": {"walletId": usd, "amount": 10}}).json()
    assert unauth["errors"][0]["code"] == "NOT_AUTHORIZED"
    assert sb.core.state.account.wallet_in("BTC") is None  # accounts hold USD wallets


def test_memo_over_639_bytes_is_refused_without_a_code_or_a_limit_point(sb, client):
    usd = sb.wallet_id("USD")
    for _ in range(25):  # more than the invoice limit: a refused memo never counts
        payload = gql(client, sb, CREATE_USD, {"input": {
            "recipientWalletId": usd, "amount": 100, "memo": "é" * 320}}).json()
        assert payload["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"] == {
            "errors": [{"message": "Memo is too long", "code": None, "path": None}],
            "invoice": None}
    fits = create_usd_invoice(client, sb, 100, memo="é" * 319 + "x")  # exactly 639 bytes
    assert bolt11.decode(fits["paymentRequest"]).description == "é" * 319 + "x"


def test_api_key_gates_keyed_calls(sb, client):
    anonymous = gql(client, sb, CREATE_USD_KEY,
                    {"input": {"walletId": sb.wallet_id(), "amount": 100}}).json()
    assert anonymous["data"] is None
    assert anonymous["errors"][0]["code"] == "NOT_AUTHORIZED"
    bad = gql(client, sb, ME, headers={"X-API-KEY": "fk_bad_key"})
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_api_key"}
    keyed = gql(client, sb, CREATE_USD_KEY, {"input": {"walletId": sb.wallet_id(), "amount": 100}},
                headers={"X-API-KEY": sb.api_key}).json()
    assert keyed["data"]["lnUsdInvoiceCreate"]["invoice"]["paymentRequest"].startswith("lnbcrt")
    me = gql(client, sb, ME, headers={"X-API-KEY": sb.api_key}).json()["data"]["me"]
    wallets = {w["walletCurrency"]: w for w in me["defaultAccount"]["wallets"]}
    assert wallets["USD"]["id"] == me["defaultAccount"]["defaultWalletId"] == sb.wallet_id()


def test_prices_and_currencies(sb, client):
    data = gql(client, sb, PRICE + " ").json()["data"]["realtimePrice"]
    assert data["denominatorCurrency"] == "JMD"
    sat_price = Decimal(data["btcSatPrice"]["base"]) / 10 ** data["btcSatPrice"]["offset"]
    cent_price = Decimal(data["usdCentPrice"]["base"]) / 10 ** data["usdCentPrice"]["offset"]
    # JMD cents: 1 US cent = 1.57 JMD = 157 JMD cents; 1 sat = 0.095 US cents = 14.915.
    assert cent_price == Decimal("157")
    assert sat_price == Decimal("14.915")
    currencies = gql(client, sb, "{ currencyList { id symbol fractionDigits } }").json()
    ids = {c["id"]: c for c in currencies["data"]["currencyList"]}
    assert ids["JMD"]["fractionDigits"] == 2 and ids["JPY"]["fractionDigits"] == 0


def test_payment_send_pays_once_per_idempotency_key(sb, client):
    headers = {"X-API-KEY": sb.api_key}
    sale = create_usd_invoice(client, sb, 2000)
    sb.pay_invoice(sale["paymentRequest"])  # the merchant's USD wallet now holds $20
    refund = create_usd_invoice(client, sb, 700)
    variables = {"input": {"walletId": sb.wallet_id("USD"),
                           "paymentRequest": refund["paymentRequest"], "idempotencyKey": "r-1"}}
    first = gql(client, sb, SEND, variables, headers).json()["data"]["lnInvoicePaymentSend"]
    after_first = sb.core.state.account.wallet_in("USD").balance
    again = gql(client, sb, SEND, variables, headers).json()["data"]["lnInvoicePaymentSend"]
    assert first["status"] == "SUCCESS" and again["status"] == "SUCCESS"
    assert sb.core.state.account.wallet_in("USD").balance == after_first  # debited once
    assert status_of(client, sb, refund["paymentRequest"]) == "PAID"


# --- WebSocket subscriptions ------------------------------------------------------------------


def test_subscription_sees_pending_then_paid(sb, client):
    invoice = create_usd_invoice(client, sb, 120)
    with ws_open(sb) as ws:
        ws.send(json.dumps({"type": "ping", "payload": {"n": 1}}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong", "payload": {"n": 1}}
        ws_subscribe(ws, "s1", invoice["paymentRequest"])
        assert next_status(ws) == "PENDING"
        paid = client.post(f"{sb.url}/sandbox/pay",
                           json={"paymentRequest": invoice["paymentRequest"]})
        assert paid.json()["status"] == "PAID"
        assert next_status(ws) == "PAID"
        with pytest.raises(TimeoutError):  # Flash's stream never completes
            ws.recv(timeout=0.3)
    assert status_of(client, sb, invoice["paymentRequest"]) == "PAID"
    again = client.post(f"{sb.url}/sandbox/pay", json={"paymentRequest": invoice["paymentRequest"]})
    assert again.status_code == 409


def test_subscription_sees_expired(sb, client):
    invoice = create_usd_invoice(client, sb, 30)
    with ws_open(sb) as ws:
        ws_subscribe(ws, "e", invoice["paymentRequest"])
        assert next_status(ws) == "PENDING"
        client.post(f"{sb.url}/sandbox/expire", json={"paymentRequest": invoice["paymentRequest"]})
        assert next_status(ws) == "EXPIRED"
    assert status_of(client, sb, invoice["paymentRequest"]) == "EXPIRED"


def test_socket_serves_only_subscriptions_and_the_protocol(sb):
    with ws_open(sb) as ws:
        ws.send(json.dumps({"id": "q", "type": "subscribe",
                            "payload": {"query": "{ currencyList { id } }"}}))
        message = json.loads(ws.recv(timeout=5))
        assert message["type"] == "error" and message["id"] == "q"
        ws.send(json.dumps({"id": "bad", "type": "subscribe",
                            "payload": {"query": "subscription { nope }"}}))
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
    with connect(sb.ws_url, subprotocols=[SUBPROTOCOL]) as ws:
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "x"}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 4401  # subscribe before connection_ack


# --- Boltcard issuer (LNURL-withdraw) ---------------------------------------------------------


def test_tap_withdraw_flow_pays_the_invoice(sb, client):
    keys = new_card(sb, 10_000)
    assert keys["lnurlw_base"] == f"lnurlw://127.0.0.1:{sb.port}/ln"
    invoice = create_usd_invoice(client, sb, 100)  # 1053 sats
    amount = bolt11.decode(invoice["paymentRequest"]).amount_msat
    request = lnurl_get(client, sb, tap(keys, 1))
    assert request["tag"] == "withdrawRequest"
    assert request["callback"] == f"{sb.url}/ln/callback"
    assert request["minWithdrawable"] == 1000
    assert request["maxWithdrawable"] == request["currentBalance"] == 10_000_000
    assert "pinLimit" not in request
    usd_before = sb.core.state.account.wallet_in("USD").balance
    with ws_open(sb) as ws:
        ws_subscribe(ws, "t", invoice["paymentRequest"])
        assert next_status(ws) == "PENDING"
        answer = client.get(request["callback"],
                            params={"k1": request["k1"], "pr": invoice["paymentRequest"]}).json()
        assert answer == {"status": "OK"}
        assert next_status(ws) == "PAID"
    assert sb.card_state(keys["card_id"])["balance_msat"] == 10_000_000 - amount
    assert sb.core.state.account.wallet_in("USD").balance == usd_before + 100
    # The same k1 is single use.
    replay = client.get(request["callback"],
                        params={"k1": request["k1"], "pr": invoice["paymentRequest"]}).json()
    assert replay["status"] == "ERROR" and "already used" in replay["reason"]


def test_replayed_or_older_counter_is_refused(sb, client):
    keys = new_card(sb, 1000)
    first = tap(keys, 5)
    assert lnurl_get(client, sb, first)["tag"] == "withdrawRequest"
    for params in (first, tap(keys, 5), tap(keys, 4)):
        answer = lnurl_get(client, sb, params)
        assert answer["status"] == "ERROR" and "already used" in answer["reason"]
    assert lnurl_get(client, sb, tap(keys, 9))["tag"] == "withdrawRequest"  # gaps are fine


def test_forged_mac_and_foreign_card_are_refused(sb, client):
    keys = new_card(sb, 1000)
    forged = dict(tap(keys, 1), c="00" * 8)
    assert lnurl_get(client, sb, forged)["reason"] == "CMAC does not check"
    foreign = dict(keys, k1="11" * 16)
    assert lnurl_get(client, sb, tap(foreign, 2))["reason"] == "Card not issued by this service"


def test_insufficient_balance(sb, client):
    keys = new_card(sb, 50)
    invoice = create_sat_invoice(client, sb, 51)
    answer = withdraw(client, sb, keys, 1, invoice)
    assert answer == {"status": "ERROR", "reason": "Insufficient balance"}
    assert status_of(client, sb, invoice["paymentRequest"]) == "PENDING"
    assert sb.card_state(keys["card_id"])["balance_msat"] == 50_000


def test_pin_above_pin_limit(sb, client):
    keys = new_card(sb, 5000, pin="1234", pin_limit_sats=1000)
    assert lnurl_get(client, sb, tap(keys, 1))["pinLimit"] == 1_000_000
    invoice = create_sat_invoice(client, sb, 1500)
    assert withdraw(client, sb, keys, 2, invoice)["reason"] == "PIN required for this amount"
    assert withdraw(client, sb, keys, 3, invoice, pin="9999")["reason"] == "Wrong PIN"
    assert withdraw(client, sb, keys, 4, invoice, pin="1234") == {"status": "OK"}
    small = create_sat_invoice(client, sb, 10)
    assert withdraw(client, sb, keys, 5, small) == {"status": "OK"}  # below the limit: no PIN
    assert "pin" not in sb.card_state(keys["card_id"])


def test_disabled_card_and_per_tap_limit(sb, client):
    keys = new_card(sb, 5000, per_tap_limit_sats=100)
    assert lnurl_get(client, sb, tap(keys, 1))["maxWithdrawable"] == 100_000
    over = create_sat_invoice(client, sb, 101)
    assert "limit" in withdraw(client, sb, keys, 2, over)["reason"]
    sb.update_card(keys["card_id"], enabled=False)
    assert lnurl_get(client, sb, tap(keys, 3))["reason"] == "Card is disabled"


def test_reissued_card_gets_new_keys_and_counter(sb, client):
    uid = os.urandom(7)
    first = sb.register_card(uid, 100)
    assert lnurl_get(client, sb, tap(first, 7))["tag"] == "withdrawRequest"
    second = sb.register_card(uid, 100)
    assert second["version"] == first["version"] + 1 and second["k2"] != first["k2"]
    assert lnurl_get(client, sb, tap(second, 1))["tag"] == "withdrawRequest"
    assert lnurl_get(client, sb, tap(first, 8))["reason"] == "CMAC does not check"


def test_admin_card_endpoint(sb, client):
    uid = os.urandom(7).hex()
    registered = client.post(f"{sb.url}/sandbox/cards", json={"uid": uid, "balance_sats": 21})
    body = registered.json()
    assert body["uid"] == uid and body["balance_msat"] == 21_000 and len(body["k0"]) == 32
    state = client.get(f"{sb.url}/sandbox/cards/{body['card_id']}").json()
    assert state["counter"] == 0 and state["enabled"] is True
    bad = client.post(f"{sb.url}/sandbox/cards", json={"uid": "zz", "balance_sats": 1})
    assert bad.status_code == 400


# --- fault injection --------------------------------------------------------------------------


def test_gateway_5xx_then_recovery(sb, client):
    assert client.post(f"{sb.url}/sandbox/faults",
                       json={"server_error_next": {"graphql": 1}}).status_code == 200
    failed = gql(client, sb, "{ currencyList { id } }")
    assert failed.status_code == 502 and "text/html" in failed.headers["content-type"]
    assert gql(client, sb, "{ currencyList { id } }").status_code == 200


def test_rate_limit_and_malformed_json(sb, client):
    sb.set_faults(rate_limit_next=1, retry_after_s=7, malformed_json_next=1)
    malformed = gql(client, sb, "{ currencyList { id } }")
    with pytest.raises(ValueError):
        malformed.json()
    # The key limiter answers requests carrying a key only.
    assert gql(client, sb, "{ currencyList { id } }").json()["data"]["currencyList"]
    limited = gql(client, sb, "{ currencyList { id } }", headers={"X-API-KEY": sb.api_key})
    assert limited.status_code == 200
    error = limited.json()["errors"][0]
    assert error["extensions"]["code"] == "TOO_MANY_REQUESTS"
    assert error["extensions"]["retryAfterSeconds"] == 7
    assert limited.json()["data"] is None
    assert gql(client, sb, "{ currencyList { id } }",
               headers={"X-API-KEY": sb.api_key}).json()["data"]["currencyList"]


def test_latency_is_applied_per_route(sb, client):
    sb.set_faults(latency_s={"graphql": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        client.post(sb.http_url, json={"query": "{ currencyList { id } }"}, timeout=0.1)
    sb.set_faults(latency_s={})
    assert gql(client, sb, "{ currencyList { id } }").status_code == 200
    with pytest.raises(Exception, match="takes a number"):
        sb.set_faults(rate_limit_next="many")


def test_dropped_socket(sb, client):
    invoice = create_usd_invoice(client, sb, 10)
    sb.set_faults(ws_drop_next=1, ws_drop_after_messages=2)
    with ws_open(sb) as ws:
        ws_subscribe(ws, "d", invoice["paymentRequest"])
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=5)  # the PENDING message, then the gateway drops the line
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1011
    with ws_open(sb) as ws:  # the next connection is healthy
        ws_subscribe(ws, "d", invoice["paymentRequest"])
        assert next_status(ws) == "PENDING"


def test_declines_pending_payout_and_bad_fault_names(sb, client):
    keys = new_card(sb, 1000)
    sb.set_faults(decline_withdraw_next=1, decline_reason="Issuer offline",
                  lnurl_error_http_status=400)
    invoice = create_sat_invoice(client, sb, 10)
    request = lnurl_get(client, sb, tap(keys, 1))
    declined = client.get(request["callback"],
                          params={"k1": request["k1"], "pr": invoice["paymentRequest"]})
    assert declined.status_code == 400
    assert declined.json() == {"status": "ERROR", "reason": "Issuer offline"}
    sb.set_faults(withdraw_pay_delay_s=0.05)
    with ws_open(sb) as ws:
        ws_subscribe(ws, "p", invoice["paymentRequest"])
        assert next_status(ws) == "PENDING"
        answer = withdraw(client, sb, keys, 2, invoice)
        assert answer == {"status": "OK", "reason": "payment pending"}
        assert next_status(ws) == "PAID"
    assert client.post(f"{sb.url}/sandbox/faults", json={"nope": 1}).status_code == 400


# --- persistence and configuration ------------------------------------------------------------


def test_restart_on_the_same_dir_carries_on(tmp_path, client):
    with SandboxThread(tmp_path) as first:
        keys = first.register_card(os.urandom(7), 3000)
        invoice = create_sat_invoice(client, first, 1000)
        old_tap = tap(keys, 3)
        assert withdraw(client, first, keys, 2, invoice) == {"status": "OK"}
        issuer_key, api_key, wallet = first.issuer_key, first.api_key, first.wallet_id("USD")
    for name in ("keys.json", "state.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    with SandboxThread(tmp_path) as second:
        assert second.issuer_key == issuer_key and second.api_key == api_key
        assert second.wallet_id("USD") == wallet
        assert status_of(client, second, invoice["paymentRequest"]) == "PAID"
        card = second.card_state(keys["card_id"])
        assert card["balance_msat"] == 2_000_000 and card["counter"] == 2
        assert lnurl_get(client, second, tap(keys, 2))["status"] == "ERROR"  # counter kept
        assert lnurl_get(client, second, old_tap)["tag"] == "withdrawRequest"


def test_terminal_config_points_at_the_sandbox(sb):
    path = sb.write_terminal_config()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = tomllib.loads(path.read_text())
    assert config["terminal"]["network"] == "regtest"
    assert config["terminal"]["data_dir"] == str(sb.data_dir.resolve() / "terminal-data")
    assert config["backend"] == {"kind": "flash", "flash": {
        "http_url": sb.http_url, "ws_url": sb.ws_url, "username": "sandbox-merchant"}}
    assert config["lnurl"]["allow_insecure_hosts"] == ["127.0.0.1"]
    assert config["issuers"] == [{"name": "sandbox", "kind": "deterministic",
                                  "issuer_key": sb.issuer_key.hex(), "hosts": ["127.0.0.1"],
                                  "lnurlw_base": sb.lnurlw_base}]


# --- properties -------------------------------------------------------------------------------


@given(cents=st.integers(min_value=1, max_value=10_000_000))
def test_usd_amount_converts_to_the_fewest_whole_sats_covering_it(cents):
    # Property: the invoice is whole sats, worth at least the price, and one sat less is short.
    rates = Rates()
    msat = rates.msat_for_usd_cents(Decimal(cents))
    assert msat % 1000 == 0
    sats = msat // 1000
    assert sats * rates.usd_cents_per_sat() >= cents > (sats - 1) * rates.usd_cents_per_sat()


@settings(max_examples=25, deadline=None)
@given(uid=st.binary(min_size=7, max_size=7),
       counters=st.lists(st.integers(min_value=0, max_value=0xFFFFFF), min_size=1, max_size=6))
def test_a_tap_is_accepted_only_with_a_strictly_greater_counter(uid, counters):
    # Property: the issuer accepts exactly the taps whose counter beats every accepted one.
    with tempfile.TemporaryDirectory() as tmp:
        core = SandboxCore(Path(tmp), network="regtest", faults=Faults(), rates=Rates(),
                           username="m")
        core.public_base = "http://127.0.0.1:1"
        keys = core.register_card(uid, 10)
        highest = 0
        for counter in counters:
            params = tap(keys, counter)
            if counter > highest:
                assert core.withdraw_request(params["p"], params["c"])["tag"] == "withdrawRequest"
                highest = counter
            else:
                with pytest.raises(TapRejected):
                    core.withdraw_request(params["p"], params["c"])


def test_a_memo_too_long_for_bolt11_is_a_clear_flash_error(tmp_path):
    from terminal.sandbox.core import SandboxError
    from terminal.sandbox.server import Sandbox

    sb = Sandbox(tmp_path / "sb")
    with pytest.raises(SandboxError, match="too long"):  # 800 bytes > BOLT11's 639
        sb.core.create_invoice(sb.wallet_id("USD"), usd_cents=Decimal(100), memo="é" * 400)
