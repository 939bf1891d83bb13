"""Typed amounts (`parse_amount`): ASCII digits only, the currency's decimals at most, never zero,
never above the per-sale limit (and never above 21 million BTC in sats)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.money import (
    BTC_SUPPLY_SAT,
    JMD,
    MAX_INVOICE_MSAT,
    SAT,
    USD,
    AmountError,
    AmountTooLarge,
    Currency,
    Money,
    check_sale_amount,
    currency,
    format_money,
    format_plain,
    parse_amount,
    sale_ceiling_minor,
)

LIMIT = 1_000_000  # $10,000.00
KWD = currency("KWD")  # three decimals
JPY = currency("JPY")  # none
CURRENCIES = (USD, JMD, SAT, KWD, JPY)


def test_ceilings_are_21_million_btc():
    assert BTC_SUPPLY_SAT == 2_100_000_000_000_000
    assert MAX_INVOICE_MSAT == BTC_SUPPLY_SAT * 1000
    assert sale_ceiling_minor(SAT) == BTC_SUPPLY_SAT
    assert sale_ceiling_minor("USD") > 0


@pytest.mark.parametrize(("text", "cur", "minor"), [
    ("12.50", USD, 1250), ("12.5", JMD, 1250), ("5", USD, 500), ("0.01", USD, 1),
    ("007", SAT, 7), (" 12 ", SAT, 12), ("10000", USD, 1_000_000), ("1.234", KWD, 1234),
    ("10000.00", USD, 1_000_000),
])
def test_plain_amounts(text, cur, minor):
    assert parse_amount(text, cur, max_minor=LIMIT) == Money(minor, cur)


@pytest.mark.parametrize(("text", "cur", "message"), [
    ("١٢", USD, "use the digits 0-9 only"),  # Arabic-Indic digits
    ("１２", USD, "use the digits 0-9 only"),  # full-width digits
    ("1٢", USD, "use the digits 0-9 only"),
    ("12.٥", USD, "use the digits 0-9 only"),
    ("1e5000", SAT, "without an exponent"),
    ("1e400", USD, "without an exponent"),
    ("1E5", USD, "without an exponent"),
    ("inf", USD, "not an amount"),
    ("Infinity", SAT, "not an amount"),
    ("nan", USD, "not an amount"),
    ("-5", USD, "no sign"),
    ("+5", USD, "no sign"),
    ("5.", USD, "digits on both sides of the decimal point"),
    (".5", USD, "digits on both sides of the decimal point"),
    ("1,000", USD, "without separators"),
    ("1_000", USD, "without separators"),
    ("1 000", USD, "without separators"),
    ("12.505", USD, "USD amounts have at most 2 decimals"),
    ("1.5", SAT, "SAT amounts are whole numbers"),
    ("1.0", JPY, "JPY amounts are whole numbers"),
    ("0", USD, "more than zero"),
    ("0.00", USD, "more than zero"),
    ("", USD, "enter an amount"),
    ("   ", USD, "enter an amount"),
    ("$5", USD, "not an amount"),
    ("5 USD", USD, "without separators"),
    ("0x10", USD, "not an amount"),
    ("1.2.3", USD, "not an amount"),
    ("5\n", USD, "not an amount"),
    ("x" * 100, USD, "too long"),
])
def test_refusals_say_why(text, cur, message):
    with pytest.raises(AmountError) as info:
        parse_amount(text, cur, max_minor=LIMIT)
    assert message in info.value.message
    assert not isinstance(info.value, AmountTooLarge)


@pytest.mark.parametrize(("text", "cur", "limit"), [
    ("99999999999999999999", USD, "$10,000.00"),
    ("10000.01", USD, "$10,000.00"),
    ("9" * 5000, SAT, "1,000,000 sats"),
    ("1" + "0" * 39, JMD, "J$10,000.00"),
])
def test_above_the_limit_names_the_limit(text, cur, limit):
    with pytest.raises(AmountTooLarge) as info:
        parse_amount(text, cur, max_minor=LIMIT)
    assert info.value.message == f"more than the per-sale limit of {limit}"
    assert format_money(info.value.limit) == limit


def test_a_sat_limit_is_never_above_the_bitcoin_supply():
    assert parse_amount("2100000000000000", SAT, max_minor=10**30).minor == BTC_SUPPLY_SAT
    with pytest.raises(AmountTooLarge) as info:
        parse_amount("2100000000000001", SAT, max_minor=10**30)
    assert info.value.limit == Money(BTC_SUPPLY_SAT, SAT)


def test_keypad_amounts_are_checked_the_same_way():
    assert check_sale_amount(Money(500, USD), max_minor=LIMIT) == Money(500, USD)
    with pytest.raises(AmountTooLarge):
        check_sale_amount(Money(LIMIT + 1, USD), max_minor=LIMIT)
    with pytest.raises(AmountError, match="more than zero"):
        check_sale_amount(Money(0, USD), max_minor=LIMIT)
    with pytest.raises(TypeError):
        parse_amount(5, USD, max_minor=LIMIT)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ properties

currencies = st.sampled_from(CURRENCIES)


@given(cur=currencies, minor=st.integers(min_value=1, max_value=10**15))
def test_round_trip_with_formatting(cur: Currency, minor: int) -> None:
    amount = Money(minor, cur)
    assert parse_amount(format_plain(amount), cur, max_minor=10**15) == amount
    # What the screen shows, without its symbol and separators, reads back the same.
    shown = format_money(amount).replace(",", "").removeprefix(cur.symbol)
    shown = shown.removesuffix(f" {cur.code}").removesuffix(" sats").removesuffix(" sat")
    assert parse_amount(shown, cur, max_minor=10**15) == amount


non_ascii_digits = st.characters(categories=["Nd"]).filter(lambda c: not "0" <= c <= "9")


@given(cur=currencies, prefix=st.text("0123456789", max_size=6), digit=non_ascii_digits,
       suffix=st.text("0123456789.", max_size=6))
def test_never_accepts_digits_of_other_scripts(cur, prefix, digit, suffix):
    with pytest.raises(AmountError, match="digits 0-9 only"):
        parse_amount(prefix + digit + suffix, cur, max_minor=10**15)


@given(cur=currencies, text=st.text(max_size=30), limit=st.integers(min_value=0, max_value=10**18))
def test_anything_accepted_is_positive_ascii_and_within_the_limit(cur, text, limit):
    try:
        amount = parse_amount(text, cur, max_minor=limit)
    except AmountError as exc:
        assert exc.message and exc.message.isprintable()
        return
    assert 0 < amount.minor <= min(limit, sale_ceiling_minor(cur))
    stripped = text.strip(" \t")
    assert stripped.isascii() and all(c.isdigit() or c == "." for c in stripped)
    assert not any(unicodedata.category(c) == "Nd" and not c.isascii() for c in text)


@given(cur=currencies, digits=st.text("0123456789", min_size=1, max_size=60),
       limit=st.integers(min_value=1, max_value=10**18))
def test_digit_strings_are_accepted_or_refused_by_the_limit_alone(cur, digits, limit):
    value = int(digits)
    minor = value * 10**cur.fraction_digits
    try:
        amount = parse_amount(digits, cur, max_minor=limit)
    except AmountTooLarge as exc:
        assert minor > exc.limit.minor
        return
    except AmountError:
        assert value == 0
        return
    assert amount.minor == minor <= min(limit, sale_ceiling_minor(cur))
