"""The sandbox's Lightning node: prices, and real signed BOLT11 invoices.

Invoices are written and signed by `terminal.protocols.bolt11.encode` (secp256k1 through
coincurve), so a
terminal decodes and verifies them exactly like a real node's. The `bolt11` package's writer did
the same in ~11 ms an invoice through `bitstring`; this one takes ~0.15 ms, nearly all signing.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from terminal.protocols import bolt11

# BOLT #11 human-readable prefixes ("ln" + this).
NETWORK_CURRENCY = {
    "mainnet": "bc",
    "bitcoin": "bc",
    "testnet": "tb",
    "signet": "tbs",
    "regtest": "bcrt",
}
MIN_FINAL_CLTV_EXPIRY = 80
# BOLT #9 bits the node requires (even = required): var_onion_optin 8, payment_secret 14.
FEATURE_VAR_ONION_OPTIN_REQUIRED = 8
FEATURE_PAYMENT_SECRET_REQUIRED = 14
INVOICE_FEATURES = 1 << FEATURE_VAR_ONION_OPTIN_REQUIRED | 1 << FEATURE_PAYMENT_SECRET_REQUIRED
SATS_PER_BTC = 100_000_000
PRICE_OFFSET = 12  # Galoy publishes base / 10^12


@dataclass(frozen=True)
class CurrencyInfo:
    id: str
    symbol: str
    name: str
    flag: str
    fraction_digits: int


CURRENCIES: dict[str, CurrencyInfo] = {
    c.id: c
    for c in (
        CurrencyInfo("USD", "$", "US Dollar", "🇺🇸", 2),
        CurrencyInfo("JMD", "J$", "Jamaican Dollar", "🇯🇲", 2),
        CurrencyInfo("EUR", "€", "Euro", "🇪🇺", 2),
        CurrencyInfo("GBP", "£", "Pound Sterling", "🇬🇧", 2),
        CurrencyInfo("CAD", "$", "Canadian Dollar", "🇨🇦", 2),
        CurrencyInfo("TTD", "TT$", "Trinidad and Tobago Dollar", "🇹🇹", 2),
        CurrencyInfo("XCD", "EC$", "East Caribbean Dollar", "🇦🇬", 2),
        CurrencyInfo("JPY", "¥", "Japanese Yen", "🇯🇵", 0),
    )
}


def _default_fx() -> dict[str, Decimal]:
    return {
        "USD": Decimal(1),
        "JMD": Decimal("157"),
        "EUR": Decimal("0.92"),
        "GBP": Decimal("0.79"),
        "CAD": Decimal("1.37"),
        "TTD": Decimal("6.78"),
        "XCD": Decimal("2.70"),
        "JPY": Decimal("150"),
    }


@dataclass
class Rates:
    """Fixed, configurable prices: BTC in USD and display-currency units per USD."""

    btc_usd: Decimal = Decimal("95000")
    per_usd: dict[str, Decimal] = field(default_factory=_default_fx)

    def usd_cents_per_sat(self) -> Decimal:
        return self.btc_usd * 100 / SATS_PER_BTC  # 95,000 USD/BTC → 0.095 cents per sat

    def minor_per_usd_cent(self, currency: str) -> Decimal:
        info = CURRENCIES[currency]
        return self.per_usd[currency] * Decimal(10) ** info.fraction_digits / 100

    def minor_per_sat(self, currency: str) -> Decimal:
        return self.usd_cents_per_sat() * self.minor_per_usd_cent(currency)

    def supports(self, currency: str) -> bool:
        return currency in CURRENCIES and currency in self.per_usd

    def msat_for_usd_cents(self, cents: Decimal) -> int:
        """Whole sats (rounded up so the merchant is never short), as msat."""
        return math.ceil(cents / self.usd_cents_per_sat()) * 1000


def price_base(value: Decimal) -> int:
    return int((value * Decimal(10) ** PRICE_OFFSET).to_integral_value())


@dataclass(frozen=True)
class MintedInvoice:
    payment_request: str
    payment_hash: str
    preimage: str = field(repr=False)
    payment_secret: str = field(repr=False)


class UnsupportedNetwork(ValueError):
    pass


def currency_for(network: str) -> str:
    try:
        return NETWORK_CURRENCY[network]
    except KeyError:
        raise UnsupportedNetwork(
            f"unknown network {network!r}; expected one of {sorted(NETWORK_CURRENCY)}"
        ) from None


def mint_invoice(
    node_key: bytes,
    network: str,
    amount_msat: int,
    memo: str,
    expiry_s: int,
    now: int,
    description_hash: bytes | None = None,
) -> MintedInvoice:
    """Raises `bolt11.Bolt11EncodeError` (a ValueError) for a memo over 639 UTF-8 bytes.
    With `description_hash` (LNURL-pay: sha256 of the metadata) the memo is not written."""
    preimage = secrets.token_bytes(32)
    payment_hash = hashlib.sha256(preimage).digest()
    payment_secret = secrets.token_bytes(32)
    encoded = bolt11.encode(
        private_key=node_key,
        currency=currency_for(network),
        amount_msat=amount_msat,
        timestamp=now,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        description=None if description_hash is not None else memo,
        description_hash=description_hash,
        expiry=expiry_s,
        min_final_cltv=MIN_FINAL_CLTV_EXPIRY,
        features=INVOICE_FEATURES,
    )
    return MintedInvoice(encoded, payment_hash.hex(), preimage.hex(), payment_secret.hex())


def node_pubkey(node_key: bytes) -> str:
    from coincurve import PrivateKey

    return PrivateKey(node_key).public_key.format(compressed=True).hex()
