"""The sandbox answers as Flash's source (lnflash/flash at 892346e) does: limits, error shapes,
scopes, status of unknown and purged invoices, the WebSocket's rules, transactions and query
complexity. Real HTTP and WebSocket over loopback; Flash's real numbers, on a clock the test moves
(or, where the server itself must wait, on windows scaled down)."""

# ruff: noqa: F811 - the sandbox fixtures (tests/helpers/flash_sandbox.py) are parameters here

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import bolt11
import httpx
import pytest
from helpers.flash_sandbox import (  # noqa: F401 - the shared fixtures
    DETAILS,
    TRANSACTIONS,
    sandbox,
    sb,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from terminal.adapters.backends import flash_documents as docs
from terminal.sandbox import FlashLimits, Rates, SandboxThread

SUBPROTOCOL = "graphql-transport-ws"
CREATE = """
mutation create($input: LnUsdInvoiceCreateOnBehalfOfRecipientInput!) {
  lnUsdInvoiceCreateOnBehalfOfRecipient(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest satoshis }
  }
}"""
CREATE_KEY = """
mutation create($input: LnUsdInvoiceCreateInput!) {
  lnUsdInvoiceCreate(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest }
  }
}"""
STATUS = """
query status($input: LnInvoicePaymentStatusInput!) {
  lnInvoicePaymentStatus(input: $input) { status errors { message } }
}"""
SUBSCRIPTION = """
subscription status($input: LnInvoicePaymentStatusInput!) {
  lnInvoicePaymentStatus(input: $input) { status errors { message } }
}"""
ME = "{ me { id } }"
ME_WALLETS = "{ me { defaultAccount { wallets { id walletCurrency } } } }"
IBEX_TEXT = "An error occurred. Contact support if error persists."



@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def gql(client, sb, query, variables=None, key=None):
    headers = {"X-API-KEY": key} if key else {}
    return client.post(sb.http_url, json={"query": query, "variables": variables or {}},
                       headers=headers)


def create(client, sb, cents=100, memo=None):
    payload = gql(client, sb, CREATE, {"input": {"recipientWalletId": sb.wallet_id(),
                                                 "amount": cents, "memo": memo}}).json()
    return payload["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"]


def status(client, sb, pr):
    return gql(client, sb, STATUS, {"input": {"paymentRequest": pr}}).json()


# --- the invoice limit: 20 per 120 s per account, then 300 s blocked -------------------------


def test_invoice_limit_blocks_the_account_for_300_s_after_the_21st(sb, client):
    for _ in range(20):
        assert create(client, sb)["errors"] == []
    refused = create(client, sb)
    assert refused["invoice"] is None
    assert refused["errors"] == [{"message": "Too many invoices creation, please wait for a "
                                  "while and try again.", "code": "TOO_MANY_REQUEST",
                                  "path": None}]
    sb.clock.offset = 150  # the 120 s window is over, but the block (300 s) is not
    assert create(client, sb)["errors"][0]["code"] == "TOO_MANY_REQUEST"
    sb.clock.offset = 299  # refusals during the block do not extend it
    assert create(client, sb)["errors"][0]["code"] == "TOO_MANY_REQUEST"
    sb.clock.offset = 301
    assert create(client, sb)["errors"] == []
    assert sb.limit_state()["invoice_blocks"] == 1


def test_window_resets_after_120_s_without_a_block(sb, client):
    for _ in range(20):
        assert create(client, sb)["errors"] == []
    sb.clock.offset = 121
    for _ in range(20):
        assert create(client, sb)["errors"] == []
    assert sb.limit_state()["invoice_blocks"] == 0


def test_own_wallet_and_on_behalf_creations_are_counted_apart(sb, client):
    for _ in range(20):
        assert create(client, sb)["errors"] == []
    keyed = gql(client, sb, CREATE_KEY, {"input": {"walletId": sb.wallet_id(), "amount": 50}},
                key=sb.api_key).json()["data"]["lnUsdInvoiceCreate"]
    assert keyed["errors"] == []


def test_provider_failure_on_creation_is_ibex_error_and_still_counts(sb, client):
    sb.set_faults(ibex_error_next=1)
    failed = create(client, sb)
    assert failed["errors"] == [{"message": IBEX_TEXT, "code": "IBEX_ERROR", "path": None}]
    for _ in range(19):
        assert create(client, sb)["errors"] == []
    assert create(client, sb)["errors"][0]["code"] == "TOO_MANY_REQUEST"


# --- the API-key limit: 120 a minute per key, HTTP 200 + extensions -------------------------


def test_api_key_limit_answers_in_extensions_with_a_retry_time(sb, client):
    key = sb.create_api_key(["read:user"], rate_limit=5)
    for _ in range(5):
        assert gql(client, sb, ME, key=key).json()["data"]["me"]["id"]
    limited = gql(client, sb, ME, key=key)
    assert limited.status_code == 200
    body = limited.json()
    assert body["data"] is None
    error = body["errors"][0]
    assert error["message"] == "API key rate limit exceeded"
    assert error["extensions"]["code"] == "TOO_MANY_REQUESTS"
    assert 1 <= error["extensions"]["retryAfterSeconds"] <= 60
    assert error["extensions"]["rateLimit"] == {"limit": 5, "remaining": 0}
    # Anonymous requests and other keys are not counted against it.
    assert status(client, sb, create(client, sb)["invoice"]["paymentRequest"])["data"]
    assert gql(client, sb, ME, key=sb.api_key).json()["data"]["me"]
    sb.clock.offset = 61
    assert gql(client, sb, ME, key=key).json()["data"]["me"]


def test_default_key_limit_is_120_a_minute(sb, client):
    key = sb.create_api_key(["read:user"])
    with httpx.Client(timeout=10) as fast:
        answers = [gql(fast, sb, ME, key=key).json() for _ in range(121)]
    assert all(a["data"] for a in answers[:120])
    assert answers[120]["errors"][0]["extensions"]["code"] == "TOO_MANY_REQUESTS"


# --- scopes ------------------------------------------------------------------------------------


def test_me_needs_read_user_which_write_scopes_do_not_imply(sb, client):
    writer = sb.create_api_key(["write:wallet", "read:wallet"])
    answer = gql(client, sb, ME, key=writer).json()
    assert answer["data"] == {"me": None}
    assert answer["errors"][0]["message"] == "API key missing required scope: read:user"
    assert "code" not in answer["errors"][0]


def test_nested_wallets_need_read_wallet_and_write_implies_read(sb, client):
    reader = sb.create_api_key(["read:user"])
    answer = gql(client, sb, ME_WALLETS, key=reader).json()
    assert answer["errors"][0]["message"] == "API key missing required scope: read:wallet"
    writer = sb.create_api_key(["read:user", "write:wallet"])
    wallets = gql(client, sb, ME_WALLETS, key=writer).json()["data"]["me"]["defaultAccount"]
    assert wallets["wallets"][0]["walletCurrency"] == "USD"


def test_invoices_need_write_wallet_and_details_need_read_transactions(sb, client):
    reader = sb.create_api_key(["read:user", "read:wallet"])
    created = gql(client, sb, CREATE_KEY, {"input": {"walletId": sb.wallet_id(), "amount": 5}},
                  key=reader).json()
    assert created["errors"][0]["message"] == "API key missing required scope: write:wallet"
    details = gql(client, sb, DETAILS, {"id": "x"}, key=reader).json()
    assert details["errors"][0]["message"] == "API key missing required scope: " \
                                              "read:transactions"
    assert gql(client, sb, DETAILS, {"id": "x"}).json()["errors"][0]["code"] == "NOT_AUTHORIZED"


# --- invoice status: unknown, expired, purged ---------------------------------------------------


def test_unknown_invoice_throws_ibex_error_until_its_bolt11_expires(sb, client):
    invoice = create(client, sb)["invoice"]
    sb.core.state.invoices.pop(invoice["paymentHash"])  # the provider never heard of it
    answer = status(client, sb, invoice["paymentRequest"])
    assert answer["data"] is None
    assert answer["errors"][0]["code"] == "IBEX_ERROR"
    assert answer["errors"][0]["message"] == IBEX_TEXT
    assert answer["errors"][0]["path"] == ["lnInvoicePaymentStatus"]
    sb.clock.offset = 61
    assert status(client, sb, invoice["paymentRequest"])["data"]["lnInvoicePaymentStatus"] == {
        "status": "EXPIRED", "errors": []}


def test_purged_paid_invoice_reads_expired_but_its_transaction_stays(sb, client):
    invoice = create(client, sb, memo="purge me")["invoice"]
    sb.pay_invoice(invoice["paymentRequest"])
    assert status(client, sb, invoice["paymentRequest"])["data"]["lnInvoicePaymentStatus"][
        "status"] == "PAID"
    sb.clock.offset = 61
    sb.purge_invoice(invoice["paymentRequest"])
    assert status(client, sb, invoice["paymentRequest"])["data"]["lnInvoicePaymentStatus"][
        "status"] == "EXPIRED"
    rows = gql(client, sb, TRANSACTIONS, {"first": 5}, key=sb.api_key).json()
    node = rows["data"]["me"]["defaultAccount"]["transactions"]["edges"][0]["node"]
    details = gql(client, sb, DETAILS, {"id": node["id"]}, key=sb.api_key).json()
    assert details["data"]["transactionDetails"]["transactionDetails"]["paymentHash"] == \
        invoice["paymentHash"]


def test_provider_failure_on_status_is_a_top_level_ibex_error(sb, client):
    invoice = create(client, sb)["invoice"]
    sb.set_faults(ibex_error_next=1)
    assert status(client, sb, invoice["paymentRequest"])["errors"][0]["code"] == "IBEX_ERROR"
    assert status(client, sb, invoice["paymentRequest"])["data"]["lnInvoicePaymentStatus"][
        "status"] == "PENDING"


def test_a_batch_with_an_unknown_invoice_loses_its_data_and_names_the_alias(sb, client):
    known = create(client, sb)["invoice"]
    unknown = create(client, sb)["invoice"]
    sb.core.state.invoices.pop(unknown["paymentHash"])
    document = docs.ln_invoice_payment_status_batch(2)
    answer = gql(client, sb, document, {"i0": {"paymentRequest": known["paymentRequest"]},
                                        "i1": {"paymentRequest": unknown["paymentRequest"]}}
                 ).json()
    assert answer["data"] is None
    assert answer["errors"][0]["path"] == ["s1"]
    assert answer["errors"][0]["code"] == "IBEX_ERROR"


# --- complexity ---------------------------------------------------------------------------------


def test_two_transaction_details_in_one_document_exceed_the_complexity(sb, client):
    two = """{ a: transactionDetails(input: {transactionId: "1"}) { errors { message } }
               b: transactionDetails(input: {transactionId: "2"}) { errors { message } } }"""
    answer = gql(client, sb, two, key=sb.api_key)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["message"].startswith("Query complexity of 244 exceeds")
    batch = docs.ln_invoice_payment_status_batch(docs.STATUS_BATCH_MAX)
    variables = {f"i{n}": {"paymentRequest": "x"} for n in range(docs.STATUS_BATCH_MAX)}
    assert gql(client, sb, batch, variables).status_code == 200  # fits in 200


# --- transactions -------------------------------------------------------------------------------


def test_transactions_hide_memo_and_hash_and_ignore_cursors(sb, client):
    paid = [create(client, sb, 100 + n, memo=f"sale {n}")["invoice"] for n in range(3)]
    for n, invoice in enumerate(paid):
        sb.clock.offset = n  # distinct settlement times
        sb.pay_invoice(invoice["paymentRequest"])
    newest = gql(client, sb, TRANSACTIONS, {"first": 2}, key=sb.api_key).json()
    edges = newest["data"]["me"]["defaultAccount"]["transactions"]["edges"]
    assert len(edges) == 2
    assert all(e["node"]["memo"] is None for e in edges)
    assert all(e["node"]["initiationVia"] == {"__typename": "InitiationViaLn", "paymentHash": ""}
               for e in edges)
    assert edges[0]["node"]["createdAt"] >= edges[1]["node"]["createdAt"]
    assert all(e["node"]["direction"] == "RECEIVE" and e["node"]["status"] == "SUCCESS"
               for e in edges)
    # A cursor is an IBEX id (a UUID): Flash insists on a 24-hex Mongo id and refuses it.
    after = gql(client, sb, TRANSACTIONS, {"first": 2, "after": edges[0]["cursor"]},
                key=sb.api_key).json()
    assert after["errors"][0]["message"] == 'Argument "after" must be a valid cursor'
    too_many = gql(client, sb, TRANSACTIONS, {"first": 101}, key=sb.api_key).json()
    assert "exceeds the \"first\" limit of 100" in too_many["errors"][0]["message"]
    details = gql(client, sb, DETAILS, {"id": edges[0]["node"]["id"]}, key=sb.api_key).json()
    found = details["data"]["transactionDetails"]["transactionDetails"]
    assert found["memo"] == "sale 2" and found["paymentHash"] == paid[2]["paymentHash"]
    assert found["invoice"] == paid[2]["paymentRequest"]
    assert found["createdAt"].endswith("Z")
    missing = gql(client, sb, DETAILS, {"id": "no-such-id"}, key=sb.api_key).json()
    assert missing["data"]["transactionDetails"] == {
        "errors": [{"message": IBEX_TEXT}], "transactionDetails": None}


# --- the WebSocket ------------------------------------------------------------------------------


def test_socket_refuses_api_keys_and_accepts_anonymous(sb):
    for payload in ({"Authorization": f"Bearer {sb.api_key}"}, {"X-API-KEY": sb.api_key}):
        with connect(sb.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd.code == 4403
    with connect(sb.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "connection_ack"}


@pytest.fixture
def fast(tmp_path):
    """Flash's limits and timers twenty times faster: a 60 s invoice lives 3 s."""
    with SandboxThread(tmp_path, limits=FlashLimits().scaled(0.05)) as sb:
        yield sb


def _subscribe(ws, pr):
    ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": SUBSCRIPTION, "variables": {"input": {"paymentRequest": pr}}}}))


def _pushed(ws, timeout=5.0):
    message = json.loads(ws.recv(timeout=timeout))
    assert message["type"] == "next", message
    return message["payload"]["data"]["lnInvoicePaymentStatus"]["status"]


def test_expired_is_pushed_at_expiry_plus_a_second_even_after_paid(fast, client):
    invoice = create(client, fast)["invoice"]
    decoded = bolt11.decode(invoice["paymentRequest"])
    with connect(fast.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:
        _subscribe(ws, invoice["paymentRequest"])
        assert _pushed(ws) == "PENDING"
        fast.pay_invoice(invoice["paymentRequest"])
        assert _pushed(ws) == "PAID"
        assert _pushed(ws) == "EXPIRED"  # Flash's expiry timer is never cancelled
        with pytest.raises(TimeoutError):  # and the stream never completes
            ws.recv(timeout=0.2)
    assert decoded.amount_msat


def test_expired_can_be_pushed_before_a_late_paid(tmp_path, client):
    # The invoice lives 3 s; the provider's webhook for a payment comes 5 s after it.
    limits = dataclasses.replace(FlashLimits().scaled(0.05), paid_push_delay_s=5.0)
    with SandboxThread(tmp_path, limits=limits) as sb:
        invoice = create(client, sb)["invoice"]
        with connect(sb.ws_url, subprotocols=[SUBPROTOCOL], open_timeout=5) as ws:
            _subscribe(ws, invoice["paymentRequest"])
            assert _pushed(ws) == "PENDING"
            sb.pay_invoice(invoice["paymentRequest"])  # its webhook arrives after the timer
            assert _pushed(ws) == "EXPIRED"
            assert _pushed(ws) == "PAID"
        answer = status(client, sb, invoice["paymentRequest"])
        assert answer["data"]["lnInvoicePaymentStatus"]["status"] == "PAID"  # the query knows


def test_sandbox_amounts_follow_the_price():
    # 1 US cent at 0.095 cents/sat is 10.53 sats: the invoice carries whole sats, never short.
    assert Rates().msat_for_usd_cents(Decimal(1)) == 11_000
