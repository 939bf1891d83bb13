"""Money with its unit attached: millisatoshis, sats and minor units of a display currency.

Pure core: no I/O, no floats. Every amount is an `int` in the unit its type names (`Msat`,
`Money(minor, currency)`), and conversions go through `fractions.Fraction`, so no step rounds
except the ones documented here.

Rounding rules (the only places a value is rounded):
- fiat -> msat (`fiat_to_msat`, used to price an invoice): round UP to the next whole sat. The
  merchant is never short by a fraction of a sat, and the invoice carries a whole-sat amount, which
  every wallet and LNURL server accepts (some refuse msat precision).
- msat -> fiat (`msat_to_fiat`, display only, "≈ J$12.34"): round half up to the nearest minor unit.
- msat -> sat for display (`Msat.sat_floor`): the integer part; `format_msat` shows any remainder.

Amounts typed by a person (`parse_amount`): ASCII digits with at most the currency's decimals,
nothing else (no sign, exponent, separators, other scripts' digits), never zero and never above a
per-sale limit (`AmountTooLarge` names it); SAT limits never exceed the 21 million BTC supply.

Rates (`RatePolicy`): a price is only ever computed from a rate that a backend fetch actually
returned, no older than a configured maximum age. Past it, pricing in fiat is refused with
`StaleRate` (a rate outage once turned a 30.50 EUR sale into a 1-sat invoice elsewhere).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Protocol

MSAT_PER_SAT = 1000
SALE_CURRENCIES = ("USD", "JMD", "SAT")  # what a sale may be keyed in
SAT_PER_BTC = 100_000_000
BTC_SUPPLY_SAT = 21_000_000 * SAT_PER_BTC
# No invoice may ask for more than every bitcoin there will ever be: the checkout refuses an
# invoice above this after pricing a fiat sale (a rate gone wrong, a huge configured limit).
MAX_INVOICE_MSAT = BTC_SUPPLY_SAT * MSAT_PER_SAT


# --------------------------------------------------------------------------- currencies


@dataclass(frozen=True, slots=True)
class Currency:
    """A unit of account. `fraction_digits` is the ISO 4217 minor-unit exponent (USD 2, SAT 0)."""

    code: str
    fraction_digits: int
    symbol: str = ""  # written before the amount; empty means "write the code after it"

    @property
    def is_sat(self) -> bool:
        return self.code == SAT.code


SAT = Currency("SAT", 0)
USD = Currency("USD", 2, "$")
JMD = Currency("JMD", 2, "J$")
EUR = Currency("EUR", 2, "€")
GBP = Currency("GBP", 2, "£")

_KNOWN = {c.code: c for c in (SAT, USD, JMD, EUR, GBP)}
# ISO 4217 currencies whose minor unit is not 2 digits (the default for everything else).
_ISO_FRACTION_DIGITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


class UnknownCurrency(ValueError):
    pass


def currency(code: str, fraction_digits: int | None = None) -> Currency:
    """The currency for an ISO code (or "SAT"/"SATS"). `fraction_digits` from a backend's
    currency list (Flash `currencyList.fractionDigits`) overrides the built-in table."""
    norm = code.strip().upper()
    if norm == "SATS":
        norm = "SAT"
    if len(norm) != 3 or not norm.isalpha():
        raise UnknownCurrency(f"not a currency code: {code!r}")
    known = _KNOWN.get(norm)
    if known is not None and (fraction_digits is None or fraction_digits == known.fraction_digits):
        return known
    digits = fraction_digits if fraction_digits is not None else _ISO_FRACTION_DIGITS.get(norm, 2)
    if not 0 <= digits <= 8:
        raise UnknownCurrency(f"{norm}: fraction digits {digits} out of range")
    symbol = known.symbol if known is not None else ""
    return Currency(norm, digits, symbol)


# --------------------------------------------------------------------------- amounts


def _require_int(value: object, what: str) -> int:
    # bool is an int subclass; a True amount is always a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


@dataclass(frozen=True, order=True, slots=True)
class Msat:
    """An amount in millisatoshis (LNURL and BOLT11 unit)."""

    value: int

    def __post_init__(self) -> None:
        _require_int(self.value, "msat")

    @classmethod
    def from_sat(cls, sat: int) -> Msat:
        return cls(_require_int(sat, "sat") * MSAT_PER_SAT)

    @property
    def is_whole_sat(self) -> bool:
        return self.value % MSAT_PER_SAT == 0

    def sat_floor(self) -> int:
        return self.value // MSAT_PER_SAT

    def sat_ceil(self) -> int:
        return -(-self.value // MSAT_PER_SAT)

    def __add__(self, other: Msat) -> Msat:
        if not isinstance(other, Msat):
            return NotImplemented
        return Msat(self.value + other.value)

    def __sub__(self, other: Msat) -> Msat:
        if not isinstance(other, Msat):
            return NotImplemented
        return Msat(self.value - other.value)

    def __str__(self) -> str:
        return format_msat(self)


class CurrencyMismatch(TypeError):
    pass


@dataclass(frozen=True, slots=True)
class Money:
    """`minor` units of `currency`: JMD cents, USD cents, or whole sats when currency is SAT."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        _require_int(self.minor, "minor units")

    @classmethod
    def from_major(cls, value: str | Decimal | int, cur: Currency | str) -> Money:
        """ "12.50" JMD -> Money(1250, JMD). Refuses more decimals than the currency has (a keypad
        bug must not be silently rounded into a different price)."""
        cur = cur if isinstance(cur, Currency) else currency(cur)
        if isinstance(value, float):
            raise TypeError("amounts are never floats; pass a str or Decimal")
        try:
            dec = Decimal(value) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
        if not dec.is_finite():
            raise ValueError(f"not an amount: {value!r}")
        scaled = dec.scaleb(cur.fraction_digits)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {cur.fraction_digits} decimals for {cur.code}")
        return cls(int(scaled), cur)

    @classmethod
    def sats(cls, n: int) -> Money:
        return cls(n, SAT)

    @property
    def major(self) -> Decimal:
        return Decimal(self.minor).scaleb(-self.currency.fraction_digits)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency.code != self.currency.code:
            raise CurrencyMismatch(f"{self.currency.code} vs {other.currency.code}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.minor < self._same(other).minor

    def __le__(self, other: Money) -> bool:
        return self.minor <= self._same(other).minor

    def __gt__(self, other: Money) -> bool:
        return self.minor > self._same(other).minor

    def __ge__(self, other: Money) -> bool:
        return self.minor >= self._same(other).minor

    def __str__(self) -> str:
        return format_money(self)


# --------------------------------------------------------------------------- typed amounts

# Fiat has no natural ceiling; no sale of a point-of-sale terminal comes near this one, and it
# keeps every configured limit (and so every parsed amount) a modest integer.
FIAT_SALE_CEILING_MINOR = 10**15
MAX_AMOUNT_CHARS = 40  # longer input is refused before any arithmetic
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")  # [0-9], not \d: ASCII digits only


class AmountError(ValueError):
    """Typed input that is not an amount this terminal may charge. `message` is for the screen."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AmountTooLarge(AmountError):
    """Above the per-sale limit; `limit` is that limit."""

    def __init__(self, limit: Money) -> None:
        super().__init__(f"more than the per-sale limit of {format_money(limit)}")
        self.limit = limit


def sale_ceiling_minor(cur: Currency | str) -> int:
    """The highest per-sale limit allowed at all: 21 million BTC in sats; a fixed bound in fiat
    (a fiat sale is also held to 21 million BTC once priced, by `MAX_INVOICE_MSAT`)."""
    cur = cur if isinstance(cur, Currency) else currency(cur)
    return BTC_SUPPLY_SAT if cur.is_sat else FIAT_SALE_CEILING_MINOR


def _decimals_text(cur: Currency) -> str:
    if cur.fraction_digits == 0:
        return f"{cur.code} amounts are whole numbers (no decimals)"
    return f"{cur.code} amounts have at most {cur.fraction_digits} decimals"


def _explain(text: str) -> str:
    """Why `text` (already known not to match `_AMOUNT`) is not an amount."""
    if not text:
        return "enter an amount"
    if any(unicodedata.category(ch) == "Nd" and not ("0" <= ch <= "9") for ch in text):
        return "use the digits 0-9 only"
    if text[0] in "+-":
        return "an amount has no sign: enter it without + or -"
    if "," in text or "_" in text or " " in text:
        return "write the amount without separators, like 1234.50"
    if re.fullmatch(r"[0-9.]+[eE][+-]?[0-9]+", text):
        return "write the amount in plain digits, without an exponent"
    if text.endswith(".") or text.startswith("."):
        return "put digits on both sides of the decimal point, like 0.50"
    return "not an amount: write it with the digits 0-9 and at most one decimal point, like 12.50"


def parse_amount(text: str, cur: Currency | str, *, max_minor: int) -> Money:
    """ "12.50" JMD -> Money(1250, JMD), for an amount a person typed (command line, keypad).

    Accepts ASCII digits with an optional decimal point followed by at most the currency's
    decimals; surrounding spaces are ignored. Refuses (with `AmountError`) zero, signs,
    exponents, `inf`/`nan`, separators, other scripts' digits and extra decimals, and (with
    `AmountTooLarge`) anything above `max_minor`, itself capped by `sale_ceiling_minor`.
    """
    if not isinstance(text, str):
        raise TypeError(f"amount text must be a str, not {type(text).__name__}")
    cur = cur if isinstance(cur, Currency) else currency(cur)
    limit = Money(min(_require_int(max_minor, "max_minor"), sale_ceiling_minor(cur)), cur)
    stripped = text.strip(" \t")
    if len(stripped) > MAX_AMOUNT_CHARS:
        if stripped.isascii() and stripped.replace(".", "", 1).isdigit():
            raise AmountTooLarge(limit)
        raise AmountError("not an amount: too long")
    match = _AMOUNT.fullmatch(stripped)
    if match is None:
        raise AmountError(_explain(stripped))
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > cur.fraction_digits:
        raise AmountError(_decimals_text(cur))
    minor = int(whole) * 10**cur.fraction_digits + int(fraction.ljust(cur.fraction_digits, "0")
                                                        or "0")
    return check_sale_amount(Money(minor, cur), max_minor=limit.minor)


def check_sale_amount(amount: Money, *, max_minor: int) -> Money:
    """`amount` if one sale may be for it: more than zero and at most the per-sale limit (the
    keypad builds minor units itself and checks them here)."""
    limit = Money(min(_require_int(max_minor, "max_minor"), sale_ceiling_minor(amount.currency)),
                  amount.currency)
    if amount.minor <= 0:
        raise AmountError("the amount must be more than zero")
    if amount.minor > limit.minor:
        raise AmountTooLarge(limit)
    return amount


def format_plain(amount: Money) -> str:
    """ "1234.50", "12345": what `parse_amount` reads back (no symbol, no separators)."""
    digits = amount.currency.fraction_digits
    whole, frac = divmod(abs(amount.minor), 10**digits)
    sign = "-" if amount.minor < 0 else ""
    return f"{sign}{whole}.{frac:0{digits}d}" if digits else f"{sign}{whole}"


# --------------------------------------------------------------------------- conversions


class RateLike(Protocol):
    """Structural view of `terminal.core.ports.backend.DisplayRate` (the core does not import the
    backend layer): price of one sat in minor units of `currency`."""

    @property
    def currency(self) -> str: ...
    @property
    def minor_per_sat(self) -> Decimal: ...
    @property
    def fraction_digits(self) -> int: ...
    @property
    def timestamp(self) -> float: ...


def _rate_fraction(rate: RateLike) -> Fraction:
    per_sat = rate.minor_per_sat
    if isinstance(per_sat, float) or not isinstance(per_sat, (Decimal, int)):
        raise TypeError("minor_per_sat must be a Decimal")
    if not Decimal(per_sat).is_finite() or per_sat <= 0:
        raise InvalidRate(f"exchange rate for {rate.currency} is not a positive number")
    return Fraction(per_sat)


def _check_rate_currency(amount: Money, rate: RateLike) -> None:
    if rate.currency.upper() != amount.currency.code:
        raise CurrencyMismatch(f"rate is for {rate.currency}, amount is {amount.currency.code}")


def fiat_to_msat(amount: Money, rate: RateLike) -> Msat:
    """Invoice amount for a fiat price: rounded UP to the next whole sat (merchant never short).
    A SAT amount needs no rate and converts exactly."""
    if amount.currency.is_sat:
        return Msat.from_sat(amount.minor)
    _check_rate_currency(amount, rate)
    if amount.minor < 0:
        raise ValueError("cannot price a negative amount")
    sats = math.ceil(Fraction(amount.minor) / _rate_fraction(rate))
    return Msat.from_sat(sats)


def _round_half_up(value: Fraction) -> int:
    if value < 0:
        return -_round_half_up(-value)
    return math.floor(value + Fraction(1, 2))


def msat_to_fiat(msat: Msat, rate: RateLike) -> Money:
    """Display value of an msat amount in the rate's currency, half up to the nearest minor unit."""
    cur = currency(rate.currency, rate.fraction_digits)
    minor = _round_half_up(Fraction(msat.value, MSAT_PER_SAT) * _rate_fraction(rate))
    return Money(minor, cur)


def fractional_minor(value: Fraction, places: int) -> Decimal:
    """An exact amount of minor units (e.g. US cents from a SAT or JMD price) as a Decimal with
    `places` decimals, for a backend that takes fractions of a minor unit (Flash's
    FractionalCentAmount). Rounded half-even at 10^-places of a minor unit: the only rounding."""
    if places < 0:
        raise ValueError("places must not be negative")
    # In integers (numerator and denominator): Fraction arithmetic costs ~5x more.
    whole, rest = divmod(value.numerator * 10**places, value.denominator)
    twice, denominator = 2 * rest, value.denominator  # rest / denominator against 1/2
    if twice > denominator or (twice == denominator and whole % 2 == 1):
        whole += 1
    return Decimal(whole).scaleb(-places)


def minor_per_sat_from_btc_price(btc_price: Decimal, fraction_digits: int) -> Decimal:
    """A BTC price in major units ("15000000.12" JMD per BTC) -> minor units per sat."""
    if isinstance(btc_price, float):
        raise TypeError("prices are never floats")
    return Decimal(btc_price).scaleb(fraction_digits) / SAT_PER_BTC


# --------------------------------------------------------------------------- rate policy


class RateError(Exception):
    """Fiat pricing is not possible right now. `message` is safe to show the merchant."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRate(RateError):
    pass


class NoRate(RateError):
    def __init__(self, currency_code: str) -> None:
        super().__init__(f"no exchange rate for {currency_code} yet; check the connection")
        self.currency = currency_code


class StaleRate(RateError):
    def __init__(self, currency_code: str, age_s: float, max_age_s: float) -> None:
        minutes = int(age_s // 60)
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"exchange rate is {minutes} {unit} old; check the connection")
        self.currency = currency_code
        self.age_s = age_s
        self.max_age_s = max_age_s


@dataclass(frozen=True, slots=True)
class RateQuote:
    """A rate the policy allows pricing from, and how old it is (show the age on screen)."""

    rate: RateLike
    age_s: float

    @property
    def age_text(self) -> str:
        if self.age_s < 60:
            return "just now"
        minutes = int(self.age_s // 60)
        return f"{minutes} min old"


@dataclass(slots=True)
class _Held:
    rate: RateLike
    received_at: float


class RatePolicy:
    """Keeps the last good rate per currency and decides whether it may still be used.

    Only `accept()` stores a rate, and it is called only with the result of a successful fetch:
    a failed fetch leaves the previous rate in place (and ageing) instead of pricing from it.

    Age runs from the earlier of the backend's own timestamp and the moment this terminal received
    the rate, so a backend clock ahead of ours (or a Pi whose clock has not synced) cannot make a
    rate look fresh forever.
    """

    def __init__(self, max_age_s: float = 600.0) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_age_s = max_age_s
        self._held: dict[str, _Held] = {}

    def accept(self, rate: RateLike, *, now: float) -> RateQuote:
        code = currency(rate.currency).code
        _rate_fraction(rate)  # raises InvalidRate for zero/negative/NaN
        held = self._held.get(code)
        if held is None or rate.timestamp >= held.rate.timestamp:
            self._held[code] = _Held(rate, now)
        return self.quote(code, now=now)

    def quote(self, currency_code: str, *, now: float) -> RateQuote:
        code = currency(currency_code).code
        held = self._held.get(code)
        if held is None:
            raise NoRate(code)
        since = min(held.rate.timestamp, held.received_at)
        age = max(0.0, now - since)
        if age > self.max_age_s:
            raise StaleRate(code, age, self.max_age_s)
        return RateQuote(held.rate, age)

    def price(self, amount: Money, *, now: float) -> tuple[Msat, RateQuote | None]:
        """msat to invoice for `amount`. SAT amounts need no rate (quote is None)."""
        if amount.currency.is_sat:
            return Msat.from_sat(amount.minor), None
        quote = self.quote(amount.currency.code, now=now)
        return fiat_to_msat(amount, quote.rate), quote


# --------------------------------------------------------------------------- formatting


def format_money(amount: Money) -> str:
    """ "J$1,234.50", "$5.00", "-$0.25", "12,345 sats", "1 sat", "1,000 XAF"."""
    cur = amount.currency
    if cur.is_sat:
        return f"{amount.minor:,} {'sat' if abs(amount.minor) == 1 else 'sats'}"
    sign = "-" if amount.minor < 0 else ""
    digits = f"{abs(amount.major):,.{cur.fraction_digits}f}"
    if cur.symbol:
        return f"{sign}{cur.symbol}{digits}"
    return f"{sign}{digits} {cur.code}"


def format_msat(msat: Msat) -> str:
    """ "12,345 sats"; a sub-sat remainder is shown rather than hidden: "12,345.678 sats"."""
    if msat.is_whole_sat:
        return format_money(Money.sats(msat.value // MSAT_PER_SAT))
    sign = "-" if msat.value < 0 else ""
    whole, frac = divmod(abs(msat.value), MSAT_PER_SAT)
    return f"{sign}{whole:,}.{frac:03d}".rstrip("0") + " sats"


def sats_figure(msat: int) -> str:
    """The sats of `msat` as a figure for a sentence, no unit: "1,234", or "1,234.567" with a
    sub-sat remainder (never rounded away)."""
    whole, rest = divmod(msat, MSAT_PER_SAT)
    return f"{whole:,}" if rest == 0 else f"{msat / MSAT_PER_SAT:,.3f}"
