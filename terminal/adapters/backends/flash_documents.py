"""Every GraphQL document the terminal sends to Flash, as constants.

Field and argument names follow Flash's public schema (`terminal/sandbox/flash-schema.graphql`);
`tests/test_flash_documents.py` validates each document in `ALL_DOCUMENTS` against it, so a
renamed field fails the test suite instead of a sale.

Calls marked (no auth) work anonymously: a receive-only terminal needs no secret.
"""

from __future__ import annotations

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

# (API key, scope read_wallet) The key owner's wallets; the terminal picks by walletCurrency.
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
LN_USD_INVOICE_CREATE = f"""
mutation LnUsdInvoiceCreate($input: LnUsdInvoiceCreateInput!) {{
  lnUsdInvoiceCreate(input: $input) {_INVOICE_PAYLOAD}
}}
"""

# (no auth) Sat-denominated invoice into someone else's BTC wallet. amount: sats.
LN_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT = f"""
mutation LnInvoiceCreateOnBehalfOfRecipient($input: LnInvoiceCreateOnBehalfOfRecipientInput!) {{
  lnInvoiceCreateOnBehalfOfRecipient(input: $input) {_INVOICE_PAYLOAD}
}}
"""

# (API key, scope write_wallet) Sat-denominated invoice into the key owner's BTC wallet.
LN_INVOICE_CREATE = f"""
mutation LnInvoiceCreate($input: LnInvoiceCreateInput!) {{
  lnInvoiceCreate(input: $input) {_INVOICE_PAYLOAD}
}}
"""

# (no auth) Status of an invoice by its payment request: PENDING | PAID | EXPIRED.
LN_INVOICE_PAYMENT_STATUS = f"""
query LnInvoicePaymentStatus($input: LnInvoicePaymentStatusInput!) {{
  lnInvoicePaymentStatus(input: $input) {{
    status
    {_ERRORS}
  }}
}}
"""

# (no auth) The same, pushed over graphql-transport-ws.
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

ALL_DOCUMENTS: dict[str, str] = {
    "ACCOUNT_DEFAULT_WALLET": ACCOUNT_DEFAULT_WALLET,
    "ME_WALLETS": ME_WALLETS,
    "LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT": LN_USD_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
    "LN_USD_INVOICE_CREATE": LN_USD_INVOICE_CREATE,
    "LN_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT": LN_INVOICE_CREATE_ON_BEHALF_OF_RECIPIENT,
    "LN_INVOICE_CREATE": LN_INVOICE_CREATE,
    "LN_INVOICE_PAYMENT_STATUS": LN_INVOICE_PAYMENT_STATUS,
    "LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION": LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION,
    "REALTIME_PRICE": REALTIME_PRICE,
    "CURRENCY_LIST": CURRENCY_LIST,
    "GLOBALS_NETWORK": GLOBALS_NETWORK,
}
