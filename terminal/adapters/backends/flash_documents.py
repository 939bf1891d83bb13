"""Every GraphQL document the terminal sends to Flash, as constants.

Field and argument names follow Flash's public schema (`terminal/sandbox/flash-schema.graphql`);
`tests/test_flash_documents.py` validates each document in `ALL_DOCUMENTS` against it, so a
renamed field fails the test suite instead of a sale.

Calls marked (no auth) work anonymously: a receive-only terminal needs no secret, and an API-key
terminal sends them without its key. Flash does not support BTC wallets: the sat-denominated
invoice mutations answer "Flash does not support BTC wallets.", so the terminal never sends them.
"""

from __future__ import annotations

import functools

# Payload error selection shared by every mutation/status payload (`Error` interface).
_ERRORS = "errors { message code path }"

# (no auth) The recipient's default wallet of the given currency.
ACCOUNT_DEFAULT_WALLET = """
query AccountDefaultWallet($username: Username!, $walletCurrency: WalletCurrency) {
  accountDefaultWallet(username: $username, walletCurrency: $walletCurrency) {
    id
    walletCurrency
  }
}
"""

# (API key, scopes read_user for `me` and read_wallet for `wallets`; write_wallet implies
# read_wallet, nothing implies read_user) The key owner's wallets, picked by walletCurrency.
ME_WALLETS = """
query MeWallets {
  me {
    defaultAccount {
      id
      defaultWalletId
      displayCurrency
      wallets {
        id
        walletCurrency
        balance
      }
    }
  }
}
"""

# (API key, scope read_user) The cheapest call that needs read_user: checks the scope.
ME_ID = """
query MeId {
  me {
    id
  }
}
"""

_INVOICE_PAYLOAD = f"""{{
    {_ERRORS}
    invoice {{
      paymentHash
      paymentRequest
      paymentSecret
      satoshis
    }}
  }}"""

# (no auth) USD-denominated invoice paid into someone else's USD wallet. amount: USD cents.
LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT = f"""
mutation LnUsdInvoiceCreateOnBehalfOfRecipient(
  $input: LnUsdInvoiceCreateOnBehalfOfRecipientInput!
) {{
  lnUsdInvoiceCreateOnBehalfOfRecipient(input: $input) {_INVOICE_PAYLOAD}
}}
"""

# (API key, scope write_wallet) USD-denominated invoice into the key owner's USD wallet.
# amount: USD cents, fractions allowed (FractionalCentAmount). Flash makes every USD invoice
# expire after 60 s whatever expiresIn says; both limited to 20 per 120 s per account.
LN_USD_INVOICE_CREATE = f"""
mutation LnUsdInvoiceCreate($input: LnUsdInvoiceCreateInput!) {{
  lnUsdInvoiceCreate(input: $input) {_INVOICE_PAYLOAD}
}}
"""

# (no auth) Status of an invoice by its payment request: PENDING | PAID | EXPIRED. Sent without
# the API key (it would count against the key's limit). An invoice the provider does not know
# throws a top-level IBEX_ERROR; one it purged after expiry reads EXPIRED, even if it was paid.
LN_INVOICE_PAYMENT_STATUS = f"""
query LnInvoicePaymentStatus($input: LnInvoicePaymentStatusInput!) {{
  lnInvoicePaymentStatus(input: $input) {{
    status
    {_ERRORS}
  }}
}}
"""

# (no auth) The same, pushed over graphql-transport-ws (anonymous: the socket does not take API
# keys). EXPIRED is pushed at expiry + 1 s even when PAID is on its way; `complete` never comes.
LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION = f"""
subscription LnInvoicePaymentStatusSubscription($input: LnInvoicePaymentStatusInput!) {{
  lnInvoicePaymentStatus(input: $input) {{
    status
    {_ERRORS}
  }}
}}
"""

# (no auth) Price of one sat and of one US cent in minor units of `currency`: base / 10^offset.
REALTIME_PRICE = """
query RealtimePrice($currency: DisplayCurrency) {
  realtimePrice(currency: $currency) {
    timestamp
    denominatorCurrency
    btcSatPrice {
      base
      offset
    }
    usdCentPrice {
      base
      offset
    }
  }
}
"""

# (no auth) Display currencies Flash supports, with their number of minor-unit digits.
CURRENCY_LIST = """
query CurrencyList {
  currencyList {
    id
    symbol
    fractionDigits
  }
}
"""

# (no auth) Cheap probe for health(): also tells which Bitcoin network the instance runs on.
GLOBALS_NETWORK = """
query GlobalsNetwork {
  globals {
    network
  }
}
"""

# (API key, scopes read_user + read_transactions) The newest transactions of one wallet. Flash
# serves at most 100 (`first`), newest first, and ignores cursors; Lightning rows carry no memo
# and an empty payment hash: `transactionDetails` has them.
RECENT_TRANSACTIONS = """
query RecentTransactions($first: Int, $walletIds: [WalletId]) {
  me {
    defaultAccount {
      transactions(first: $first, walletIds: $walletIds) {
        edges {
          node {
            id
            createdAt
            direction
            status
            settlementCurrency
            initiationVia {
              __typename
            }
          }
        }
      }
    }
  }
}
"""

# (API key, scope read_transactions) One transaction as the provider holds it: memo, payment hash,
# invoice, time. Its complexity (120 of the 200 a document may spend) allows one per request.
TRANSACTION_DETAILS = """
query TransactionDetails($input: TransactionDetailsInput!) {
  transactionDetails(input: $input) {
    errors {
      message
    }
    transactionDetails {
      id
      accountId
      amount
      currency
      status
      type
      createdAt
      invoice
      paymentHash
      memo
    }
  }
}
"""

# (API key or session, scope write_wallet) Pay a BOLT11 from the merchant's wallet: refunds.
# `idempotencyKey` (at most 256 characters, kept per wallet for 24 h) makes a repeat answer the
# first definitive status (SUCCESS, FAILURE, PENDING) instead of paying again; an error is not
# kept (one after the debit included), so an unclear answer is read from the transactions, never
# sent again. `status` is null when the input was refused before any payment.
LN_INVOICE_PAYMENT_SEND = f"""
mutation LnInvoicePaymentSend($input: LnInvoicePaymentInput!) {{
  lnInvoicePaymentSend(input: $input) {{
    status
    {_ERRORS}
  }}
}}
"""

STATUS_BATCH_OPERATION = "LnInvoicePaymentStatusBatch"
STATUS_BATCH_MAX = 40  # 4 complexity points each (field, status, errors, message) of Flash's 200


@functools.lru_cache(maxsize=STATUS_BATCH_MAX)
def ln_invoice_payment_status_batch(count: int) -> str:
    """(no auth) `count` status queries in one request, aliased s0…s{count-1} with inputs
    $i0…: Flash runs every field of a document, so one round trip checks many invoices. A field
    that throws (IBEX_ERROR: unknown invoice) nulls the whole `data` (the field is non-null):
    its error's `path` names the alias, and the rest must be asked again."""
    if not 1 <= count <= STATUS_BATCH_MAX:
        raise ValueError(f"a status batch holds 1 to {STATUS_BATCH_MAX} invoices")
    params = ", ".join(f"$i{n}: LnInvoicePaymentStatusInput!" for n in range(count))
    fields = "\n".join(
        f"  s{n}: lnInvoicePaymentStatus(input: $i{n}) {{ status errors {{ message }} }}"
        for n in range(count))
    return f"query {STATUS_BATCH_OPERATION}({params}) {{\n{fields}\n}}\n"


ALL_DOCUMENTS: dict[str, str] = {
    "ACCOUNT_DEFAULT_WALLET": ACCOUNT_DEFAULT_WALLET,
    "ME_WALLETS": ME_WALLETS,
    "ME_ID": ME_ID,
    "LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT": LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
    "LN_USD_INVOICE_CREATE": LN_USD_INVOICE_CREATE,
    "LN_INVOICE_PAYMENT_STATUS": LN_INVOICE_PAYMENT_STATUS,
    "LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION": LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION,
    "REALTIME_PRICE": REALTIME_PRICE,
    "CURRENCY_LIST": CURRENCY_LIST,
    "GLOBALS_NETWORK": GLOBALS_NETWORK,
    "RECENT_TRANSACTIONS": RECENT_TRANSACTIONS,
    "TRANSACTION_DETAILS": TRANSACTION_DETAILS,
    "LN_INVOICE_PAYMENT_SEND": LN_INVOICE_PAYMENT_SEND,
}
