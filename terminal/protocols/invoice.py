"""BOLT11 checks a terminal makes before it shows or submits an invoice (BOLT #11).

Pure core. Decoding, case, amount precision and the signature come from
`terminal.protocols.bolt11` (which
rejects mixed case and sub-millisatoshi `p` amounts, both of which the `bolt11` package lets
through); this module adds what is the caller's business:
- the network prefix (`bc`, `tb`, `tbs`, `bcrt`) matching the configured network;
- an amount present and equal to the expected msat, exactly;
- the payment hash equal to the one the backend reported;
- not expired at `now` (timestamp + expiry, default 3600 s). `now` must come from a synced clock
  (a Pi has no RTC: the service passes NTP-backed time).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from terminal.protocols import bolt11 as _bolt11
from terminal.protocols.bolt11 import Bolt11Error, Bolt11ErrorReason

DEFAULT_EXPIRY_S = _bolt11.DEFAULT_EXPIRY_S  # BOLT #11: `x` absent -> 3600 seconds
_LIGHTNING_URI_PREFIX = "lightning:"


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


def _check_error(exc: Bolt11Error) -> InvoiceCheckError:
    reason = {
        Bolt11ErrorReason.MIXED_CASE: InvoiceCheckReason.MIXED_CASE,
        Bolt11ErrorReason.SUB_MSAT_AMOUNT: InvoiceCheckReason.SUB_MSAT_AMOUNT,
    }.get(exc.reason, InvoiceCheckReason.MALFORMED)
    return InvoiceCheckError(reason, exc.message)


def _hrp_amount_msat(hrp: str) -> tuple[Network, int | None]:
    """Currency prefix and exact amount from the human-readable part, in integers only."""
    try:
        currency, amount_msat = _bolt11.parse_hrp(hrp)
    except Bolt11Error as exc:
        raise _check_error(exc) from None
    return Network(currency), amount_msat


def decode_invoice(text: str) -> DecodedInvoice:
    """Decode and structurally validate a BOLT11 string (signature, checksum, case, amount
    precision). Raises `InvoiceCheckError` and nothing else."""
    raw = _strip_uri(text)
    try:
        decoded = _bolt11.decode(raw)
    except Bolt11Error as exc:
        raise _check_error(exc) from None
    return DecodedInvoice(
        bolt11=raw.lower(),
        network=Network(decoded.currency),
        amount_msat=decoded.amount_msat,
        payment_hash=decoded.payment_hash,
        payment_secret=decoded.payment_secret,
        description=decoded.description,
        description_hash=decoded.description_hash,
        timestamp=decoded.timestamp,
        expiry=decoded.expiry,
        payee=decoded.payee,
        min_final_cltv_expiry=decoded.min_final_cltv,
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
    Network.parse(network)  # a bad setting is reported before the invoice is looked at
    if expected_msat <= 0:
        raise ValueError("expected_msat must be positive")
    return check_decoded(
        decode_invoice(bolt11),
        network=network,
        expected_msat=expected_msat,
        expected_payment_hash=expected_payment_hash,
        now=now,
        allow_expired=allow_expired,
    )


def check_decoded(
    inv: DecodedInvoice,
    *,
    network: Network | str,
    expected_msat: int,
    expected_payment_hash: str | None = None,
    now: float,
    allow_expired: bool = False,
) -> DecodedInvoice:
    """`check_invoice` for an invoice already decoded (decoding is the costly part: the
    signature check), so a caller that needs the amount first decodes only once."""
    want = Network.parse(network)
    if expected_msat <= 0:
        raise ValueError("expected_msat must be positive")
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
