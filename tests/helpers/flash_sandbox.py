"""The local Flash sandbox for the tests that talk GraphQL to it: one per module (`sandbox`), its
limits, faults and clock reset for each test (`sb`), and a USD invoice made as a customer's app
would."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from terminal.sandbox import (
    SandboxThread,
)

CREATE_USD = """
mutation create($input: LnUsdInvoiceCreateOnBehalfOfRecipientInput!) {
  lnUsdInvoiceCreateOnBehalfOfRecipient(input: $input) {
    errors { message code path }
    invoice { paymentHash paymentRequest paymentSecret satoshis }
  }
}"""


# A wallet's transactions and one row's details, as a merchant's API key reads them.
TRANSACTIONS = """
query txs($first: Int, $last: Int, $after: String) {
  me { defaultAccount { transactions(first: $first, last: $last, after: $after) {
    edges { cursor node { id createdAt direction status memo settlementCurrency
      initiationVia { __typename ... on InitiationViaLn { paymentHash } } } } } } }
}"""
DETAILS = """
query details($id: String!) {
  transactionDetails(input: {transactionId: $id}) {
    errors { message }
    transactionDetails { id accountId amount currency createdAt invoice paymentHash memo }
  }
}"""


SEND = """
mutation send($input: LnInvoicePaymentInput!) {
  lnInvoicePaymentSend(input: $input) { status errors { message code } }
}"""


class MovableClock:
    """Wall time plus an offset a test moves forward (the sandbox's limits and expiry use it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def sandbox():
    clock = MovableClock()
    with tempfile.TemporaryDirectory() as tmp, SandboxThread(Path(tmp), clock=clock) as sb:
        sb.clock = clock
        yield sb


@pytest.fixture
def sb(sandbox):
    # Flash's real limits, counted afresh for each test (as if it had waited them out).
    sandbox.faults.reset()
    sandbox.reset_limits()
    sandbox.clock.offset = 0.0
    yield sandbox
    sandbox.faults.reset()
    sandbox.clock.offset = 0.0


def gql(client, sb, query, variables=None, headers=None):
    return client.post(sb.http_url, json={"query": query, "variables": variables or {}},
                       headers=headers or {})


def create_usd_invoice(client, sb, cents, **extra):
    response = gql(client, sb, CREATE_USD,
                   {"input": {"recipientWalletId": sb.wallet_id("USD"), "amount": cents, **extra}})
    assert response.status_code == 200, response.text
    payload = response.json()["data"]["lnUsdInvoiceCreateOnBehalfOfRecipient"]
    assert payload["errors"] == []
    return payload["invoice"]
