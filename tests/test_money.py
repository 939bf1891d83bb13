"""Money units, conversions, rate policy and formatting (terminal/money.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.money import (
    JMD,
    SAT,
    USD,
    CurrencyMismatch,
    InvalidRate,
    Money,
    Msat,
    NoRate,
    RatePolicy,
    StaleRate,
    currency,
    fiat_to_msat,
    format_money,
    format_msat,
    fractional_minor,
    minor_per_sat_from_btc_price,
    msat_to_fiat,
)


@dataclass(frozen=True)
class Rate:  # same shape as terminal.core.ports.backend.DisplayRate
    currency: str
    minor_per_sat: Decimal
    fraction_digits: int
    timestamp: float


# Strategies built once: realistic rates from 0.0001 to 10,000 minor units per sat, as Decimals.
rates = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("10000"), places=6, allow_nan=False
).map(lambda d: Rate("JMD", d, 2, 0.0))
minor_amounts = st.integers(min_value=0, max_value=10**12)
msats = st.integers(min_value=0, max_value=21 * 10**17)


# ------------------------------------------------------------------ currencies and amounts


def test_currency_lookup_knows_fraction_digits() -> None:
    assert currency("jmd") is JMD
    assert currency("SATS") is SAT
    assert currency("JPY").fraction_digits == 0
    assert currency("KWD").fraction_digits == 3
    assert currency("TTD").fraction_digits == 2
    assert currency("JMD", 2) is JMD
    assert currency("XYZ", 0).fraction_digits == 0
    with pytest.raises(ValueError):
        currency("dollars")


def test_from_major_is_exact_and_refuses_extra_decimals() -> None:
    assert Money.from_major("12.50", "JMD") == Money(1250, JMD)
    assert Money.from_major(Decimal("5"), USD) == Money(500, USD)
    assert Money.from_major("12345", SAT) == Money(12345, SAT)
    with pytest.raises(ValueError, match="more than 2 decimals"):
        Money.from_major("12.505", JMD)
    with pytest.raises(ValueError, match="more than 0 decimals"):
        Money.from_major("1.5", SAT)
    with pytest.raises(TypeError):
        Money.from_major(12.5, JMD)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Money.from_major("NaN", JMD)


def test_amount_types_refuse_floats_and_bools() -> None:
    with pytest.raises(TypeError):
        Msat(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, USD)  # type: ignore[arg-type]


def test_money_arithmetic_keeps_currencies_apart() -> None:
    assert Money(150, USD) + Money(50, USD) == Money(200, USD)
    assert Money(150, USD) > Money(50, USD)
    with pytest.raises(CurrencyMismatch):
        Money(1, USD) + Money(1, JMD)
    with pytest.raises(CurrencyMismatch):
        _ = Money(1, USD) < Money(1, JMD)


def test_msat_sat_conversions() -> None:
    assert Msat.from_sat(21) == Msat(21_000)
    assert Msat(21_999).sat_floor() == 21
    assert Msat(21_001).sat_ceil() == 22
    assert Msat(21_000).sat_ceil() == 21
    assert Msat(1) + Msat(2) == Msat(3)


@given(st.integers(min_value=0, max_value=21 * 10**14))
def test_sat_msat_round_trip(sat: int) -> None:
    # Property: sat -> msat -> sat is the identity, and the msat amount is a whole sat.
    m = Msat.from_sat(sat)
    assert m.is_whole_sat and m.sat_floor() == sat == m.sat_ceil()


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Money(123450, JMD), "J$1,234.50"),
        (Money(500, USD), "$5.00"),
        (Money(-25, USD), "-$0.25"),
        (Money(12345, SAT), "12,345 sats"),
        (Money(1, SAT), "1 sat"),
        (Money(0, SAT), "0 sats"),
        (Money(1000, currency("XAF")), "1,000 XAF"),
        (Money(123456, currency("KWD")), "123.456 KWD"),
    ],
)
def test_format_money(amount: Money, text: str) -> None:
    assert format_money(amount) == text == str(amount)


def test_format_msat_shows_sub_sat_remainder() -> None:
    assert format_msat(Msat(12_345_000)) == "12,345 sats"
    assert format_msat(Msat(12_345_678)) == "12,345.678 sats"
    assert format_msat(Msat(12_345_600)) == "12,345.6 sats"


# ------------------------------------------------------------------ conversions


def test_btc_price_to_minor_per_sat() -> None:
    # 15,600,000 JMD per BTC = 1,560,000,000 JMD cents per 10^8 sat = 15.6 cents per sat.
    assert minor_per_sat_from_btc_price(Decimal("15600000.00"), 2) == Decimal("15.6")
    assert minor_per_sat_from_btc_price(Decimal("100000"), 2) == Decimal("0.1")


def test_fiat_to_msat_rounds_up_to_whole_sat() -> None:
    rate = Rate("JMD", Decimal("15.6"), 2, 0.0)
    # J$12.50 = 1250 cents / 15.6 = 80.128… sats -> 81 sats.
    assert fiat_to_msat(Money(1250, JMD), rate) == Msat(81_000)
    # Exact multiple: no rounding.
    assert fiat_to_msat(Money(156, JMD), rate) == Msat(10_000)
    assert fiat_to_msat(Money(0, JMD), rate) == Msat(0)
    # A sat amount converts exactly without a rate.
    assert fiat_to_msat(Money(21, SAT), rate) == Msat(21_000)


def test_fiat_to_msat_refuses_wrong_currency_and_bad_rates() -> None:
    with pytest.raises(CurrencyMismatch):
        fiat_to_msat(Money(100, USD), Rate("JMD", Decimal("15.6"), 2, 0.0))
    with pytest.raises(InvalidRate):
        fiat_to_msat(Money(100, JMD), Rate("JMD", Decimal(0), 2, 0.0))
    with pytest.raises(TypeError):
        fiat_to_msat(Money(100, JMD), Rate("JMD", 15.6, 2, 0.0))  # type: ignore[arg-type]


def test_msat_to_fiat_rounds_half_up() -> None:
    rate = Rate("USD", Decimal("0.1"), 2, 0.0)  # 1 sat = 0.1 US cent
    assert msat_to_fiat(Msat(5_000), rate) == Money(1, USD)  # 0.5 cent -> 1 cent
    assert msat_to_fiat(Msat(4_999), rate) == Money(0, USD)
    assert msat_to_fiat(Msat(1_000_000), rate) == Money(100, USD)


@given(minor_amounts, rates)
def test_invoice_never_short_and_at_most_one_sat_over(minor: int, rate: Rate) -> None:
    # Property: pricing rounds up to a whole sat: the merchant is never short, and over by less
    # than one sat's worth; the round trip back to fiat is never below the price.
    msat = fiat_to_msat(Money(minor, JMD), rate)
    assert msat.is_whole_sat
    sats = msat.sat_floor()
    assert sats * rate.minor_per_sat >= minor
    assert (sats - 1) * rate.minor_per_sat < minor or sats == 0
    back = msat_to_fiat(msat, rate)
    assert back.minor >= minor
    assert back.minor - minor <= rate.minor_per_sat + 1


@given(minor_amounts, minor_amounts, rates)
def test_fiat_to_msat_is_monotonic(a: int, b: int, rate: Rate) -> None:
    # Property: a larger price never gives a smaller invoice.
    lo, hi = sorted((a, b))
    assert fiat_to_msat(Money(lo, JMD), rate) <= fiat_to_msat(Money(hi, JMD), rate)


@given(msats, msats, rates)
def test_msat_to_fiat_is_monotonic(a: int, b: int, rate: Rate) -> None:
    # Property: more msat never displays as less money.
    lo, hi = sorted((a, b))
    assert msat_to_fiat(Msat(lo), rate).minor <= msat_to_fiat(Msat(hi), rate).minor


@given(st.integers(min_value=1, max_value=10**12), rates)
def test_positive_price_gives_at_least_one_sat(minor: int, rate: Rate) -> None:
    # Property: no positive price ever becomes a zero (or 1-msat) invoice.
    assert fiat_to_msat(Money(minor, JMD), rate).value >= 1000


# ------------------------------------------------------------------ rate policy


def _rate(ts: float, per_sat: str = "15.6") -> Rate:
    return Rate("JMD", Decimal(per_sat), 2, ts)


def test_no_rate_yet_is_refused() -> None:
    with pytest.raises(NoRate, match="no exchange rate for JMD"):
        RatePolicy().quote("JMD", now=1000.0)


def test_fresh_rate_prices_and_reports_its_age() -> None:
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(1000.0), now=1000.0)
    msat, quote = policy.price(Money(1250, JMD), now=1130.0)
    assert msat == Msat(81_000)
    assert quote is not None and quote.age_s == 130.0 and quote.age_text == "2 min old"


def test_stale_rate_is_refused_with_its_age() -> None:
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(1000.0), now=1000.0)
    with pytest.raises(StaleRate) as err:
        policy.price(Money(1250, JMD), now=1000.0 + 12 * 60 + 5)
    assert str(err.value) == "exchange rate is 12 minutes old; check the connection"
    assert err.value.age_s == 725.0


def test_sat_prices_need_no_rate() -> None:
    msat, quote = RatePolicy().price(Money(21, SAT), now=0.0)
    assert msat == Msat(21_000) and quote is None


def test_invalid_rate_does_not_replace_the_last_good_one() -> None:
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(1000.0, "15.6"), now=1000.0)
    with pytest.raises(InvalidRate):
        policy.accept(_rate(1100.0, "0"), now=1100.0)
    assert policy.quote("JMD", now=1100.0).rate.minor_per_sat == Decimal("15.6")


def test_older_rate_does_not_replace_newer() -> None:
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(1000.0, "15.6"), now=1000.0)
    policy.accept(_rate(900.0, "99"), now=1010.0)  # a late answer to an earlier request
    assert policy.quote("JMD", now=1010.0).rate.minor_per_sat == Decimal("15.6")


def test_backend_clock_ahead_cannot_keep_a_rate_fresh() -> None:
    # The backend stamps its rate an hour in our future; the age still runs from receipt.
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(5000.0), now=1400.0)
    assert policy.quote("JMD", now=1400.0).age_s == 0.0
    with pytest.raises(StaleRate):
        policy.quote("JMD", now=2001.0)


@given(st.floats(min_value=0, max_value=10_000, allow_nan=False))
def test_policy_boundary(age: float) -> None:
    # Property: a rate is usable exactly while its age is within max_age_s.
    policy = RatePolicy(max_age_s=600)
    policy.accept(_rate(0.0), now=0.0)
    if age <= 600:
        assert policy.quote("JMD", now=age).age_s == age
    else:
        with pytest.raises(StaleRate):
            policy.quote("JMD", now=age)


def _fractional_minor_reference(value: Fraction, places: int) -> Decimal:
    """Half-even rounding at 10^-places, in Fraction arithmetic (the definition)."""
    scaled = value * 10**places
    whole = math.floor(scaled)
    rest = scaled - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    return Decimal(whole).scaleb(-places)


# Property: the integer arithmetic of fractional_minor rounds exactly as the Fraction definition,
# halves and negative amounts included.
@given(st.fractions(max_denominator=10**9), st.integers(0, 8))
def test_fractional_minor_rounds_half_even_like_the_definition(value: Fraction,
                                                               places: int) -> None:
    got = fractional_minor(value, places)
    assert got == _fractional_minor_reference(value, places)
    assert str(got) == str(_fractional_minor_reference(value, places))


def test_fractional_minor_halves_go_to_even() -> None:
    assert fractional_minor(Fraction(5, 2), 0) == Decimal(2)
    assert fractional_minor(Fraction(7, 2), 0) == Decimal(4)
    assert fractional_minor(Fraction(-5, 2), 0) == Decimal(-2)
    assert str(fractional_minor(Fraction(1, 8), 2)) == "0.12"
