"""BOLT11 checks a terminal makes before it shows or submits an invoice (BOLT #11).

Pure core. Decoding and signature checks come from the `bolt11` package; this module adds what it
lets through or leaves to the caller:
- mixed case (BOLT #11 / BIP-173: "MUST NOT be mixed case"); the package lower-cases first;
- sub-millisatoshi amounts: a `p` multiplier whose last digit is not 0 (the package truncates);
- the network prefix (`bc`, `tb`, `tbs`, `bcrt`) matching the configured network;
- an amount present and equal to the expected msat, exactly;
- the payment hash equal to the one the backend reported;
- not expired at `now` (timestamp + expiry, default 3600 s). `now` must come from a synced clock
  (a Pi has no RTC: the service passes NTP-backed time).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import bolt11 as _bolt11

DEFAULT_EXPIRY_S = 3600  # BOLT #11: `x` absent -> 3600 seconds
_LIGHTNING_URI_PREFIX = "lightning:"
# hrp = "ln" + currency prefix + optional amount (digits + optional multiplier)
_HRP_RE = re.compile(r"ln(bcrt|bc|tbs|tb)(\d+)?([munp])?")
# msat per unit of each multiplier, as a fraction (numerator, denominator): 1 BTC = 10^11 msat.
_MULTIPLIER_MSAT = {
    None: (10**11, 1),
    "m": (10**8, 1),
    "u": (10**5, 1),
    "n": (10**2, 1),
    "p": (1, 10),
}


class Network(enum.Enum):
    """Bitcoin network, valued by its BOLT11 currency prefix."""

    MAINNET = "bc"
    TESTNET = "tb"
    SIGNET = "tbs"
    REGTEST = "bcrt"

    @classmethod
    def parse(cls, value: Network | str) -> Network:
        if isinstance(value, Network):
            return value
        aliases = {
            "bc": cls.MAINNET, "mainnet": cls.MAINNET, "bitcoin": cls.MAINNET, "main": cls.MAINNET,
            "tb": cls.TESTNET, "testnet": cls.TESTNET, "testnet3": cls.TESTNET,
            "tbs": cls.SIGNET, "signet": cls.SIGNET,
            "bcrt": cls.REGTEST, "regtest": cls.REGTEST,
        }  # fmt: skip
        try:
            return aliases[value.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown network {value!r}") from None


class InvoiceCheckReason(enum.StrEnum):
    MALFORMED = "malformed"
    MIXED_CASE = "mixed_case"
    SUB_MSAT_AMOUNT = "sub_msat_amount"
    WRONG_NETWORK = "wrong_network"
    NO_AMOUNT = "no_amount"
    AMOUNT_MISMATCH = "amount_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    EXPIRED = "expired"


class InvoiceCheckError(Exception):
    """The invoice must not be shown or paid. `message` is fit for the merchant's screen."""

    def __init__(self, reason_code: InvoiceCheckReason, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True, slots=True)
class DecodedInvoice:
    bolt11: str  # normalised: lower case, no "lightning:" prefix
    network: Network
    amount_msat: int | None
    payment_hash: str  # lower-case hex
    payment_secret: str | None
    description: str | None
    description_hash: str | None
    timestamp: int
    expiry: int
    payee: str  # compressed pubkey hex (from `n`, or recovered from the signature)
    min_final_cltv_expiry: int

    @property
    def currency(self) -> str:
        return self.network.value

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at


def _strip_uri(text: str) -> str:
    text = text.strip()
    if text[: len(_LIGHTNING_URI_PREFIX)].lower() == _LIGHTNING_URI_PREFIX:
        text = text[len(_LIGHTNING_URI_PREFIX) :]
    return text


def _hrp_amount_msat(hrp: str) -> tuple[Network, int | None]:
    """Currency prefix and exact amount from the human-readable part, in integers only."""
    match = _HRP_RE.fullmatch(hrp)
    if match is None:
        raise InvoiceCheckError(InvoiceCheckReason.MALFORMED, "not a Lightning invoice prefix")
    prefix, digits, multiplier = match.groups()
    if digits is None:
        if multiplier is not None:
            raise InvoiceCheckError(InvoiceCheckReason.MALFORMED, "invoice amount has no digits")
        return Network(prefix), None
    num, den = _MULTIPLIER_MSAT[multiplier]
    scaled = int(digits) * num
    if scaled % den:
        # BOLT #11: "if the last decimal of amount is not 0" with `p` -> MUST fail.
        raise InvoiceCheckError(
            InvoiceCheckReason.SUB_MSAT_AMOUNT,
            "invoice amount is a fraction of a millisatoshi",
        )
    return Network(prefix), scaled // den


def decode_invoice(text: str) -> DecodedInvoice:
    """Decode and structurally validate a BOLT11 string (signature, checksum, case, amount
    precision). Raises `InvoiceCheckError`; it never lets a `bolt11` exception escape."""
    raw = _strip_uri(text)
    if raw != raw.lower() and raw != raw.upper():
        raise InvoiceCheckError(InvoiceCheckReason.MIXED_CASE, "invoice mixes upper and lower case")
    normalised = raw.lower()
    sep = normalised.rfind("1")
    if not normalised.startswith("ln") or sep < 0:
        raise InvoiceCheckError(InvoiceCheckReason.MALFORMED, "not a Lightning invoice")
    network, amount_msat = _hrp_amount_msat(normalised[:sep])
    try:
        decoded = _bolt11.decode(normalised)
    except Exception as exc:  # the package raises assorted types (bech32, bitstring, ValueError)
        raise InvoiceCheckError(
            InvoiceCheckReason.MALFORMED, f"invalid Lightning invoice ({type(exc).__name__})"
        ) from exc
    if decoded.currency != network.value or (decoded.amount_msat or None) != amount_msat:
        # Our integer parse and the package's must agree; a disagreement is a parsing bug.
        raise InvoiceCheckError(InvoiceCheckReason.MALFORMED, "invoice amount could not be read")
    return DecodedInvoice(
        bolt11=normalised,
        network=network,
        amount_msat=amount_msat,
        payment_hash=decoded.payment_hash.lower(),
        payment_secret=decoded.payment_secret,
        description=decoded.description,
        description_hash=decoded.description_hash,
        timestamp=decoded.date,
        expiry=decoded.expiry,
        payee=decoded.payee or "",
        min_final_cltv_expiry=decoded.min_final_cltv_expiry,
    )


def _format_sats(msat: int) -> str:
    whole, frac = divmod(msat, 1000)
    return f"{whole:,} sats" if frac == 0 else f"{whole:,}.{frac:03d} sats"


def check_invoice(
    bolt11: str,
    *,
    network: Network | str,
    expected_msat: int,
    expected_payment_hash: str | None = None,
    now: float,
    allow_expired: bool = False,
) -> DecodedInvoice:
    """Decode `bolt11` and check it against what the terminal asked for.

    `allow_expired` is for re-reading an invoice the backend already reports settled (its expiry
    no longer matters); everything else is always checked.
    """
    want = Network.parse(network)
    if expected_msat <= 0:
        raise ValueError("expected_msat must be positive")
    inv = decode_invoice(bolt11)
    if inv.network is not want:
        raise InvoiceCheckError(
            InvoiceCheckReason.WRONG_NETWORK,
            f"invoice is for {inv.network.name.lower()}, terminal is set to {want.name.lower()}",
        )
    if inv.amount_msat is None:
        raise InvoiceCheckError(InvoiceCheckReason.NO_AMOUNT, "invoice has no amount")
    if inv.amount_msat != expected_msat:
        raise InvoiceCheckError(
            InvoiceCheckReason.AMOUNT_MISMATCH,
            f"invoice is for {_format_sats(inv.amount_msat)}, "
            f"sale is for {_format_sats(expected_msat)}",
        )
    if expected_payment_hash is not None and inv.payment_hash != expected_payment_hash.lower():
        raise InvoiceCheckError(
            InvoiceCheckReason.HASH_MISMATCH,
            "invoice payment hash differs from the one the backend reported",
        )
    if not allow_expired and inv.is_expired(now):
        raise InvoiceCheckError(InvoiceCheckReason.EXPIRED, "invoice has expired")
    return inv
