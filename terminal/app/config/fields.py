"""Value types of the configuration schema: each checks one kind of value strictly and says what
it expected (`expected …`) when the value is wrong.

A field is declared `Annotated[<the type consumers read>, <check>]`, where `<check>` is one of
the `BeforeValidator`s made here (`integer(1, 16)`, `url("https", "http")`, …): it sees the raw
TOML value, refuses anything but the one accepted shape (a string is never read as
a boolean, a number or a list) and returns the consumer's value (bytes for a key, a tuple for a
list). Pydantic then checks that result strictly, so a check cannot hand back a wrong type.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from terminal.core.money import (
    AmountError,
    AmountTooLarge,
    Money,
    currency,
    format_money,
    parse_amount,
    sale_ceiling_minor,
)

SECRET = "secret"  # noqa: S105 - a field marker: never shown in a message or repr, refused in a public file
PRIVATE = "private"  # a field marker: never shown in a message or repr (a card UID)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_HOST = re.compile(r"[a-z0-9_.:-]+")  # a DNS name, an IPv4 address or an unbracketed IPv6 one
_PARAM = re.compile(r"[A-Za-z0-9_.~-]{1,32}")
_TERMINAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def refuse(expected: str) -> NoReturn:
    """Fail validation of the current value; the message says what was `expected`."""
    raise PydanticCustomError("expected", "expected {expected}", {"expected": expected})


def secret(default: Any = None) -> Any:
    """A field whose value is a secret: hidden from reprs and messages; a terminal.toml readable
    by others must not hold it (see `files.secret_paths`)."""
    return Field(default, repr=False, json_schema_extra={SECRET: True})


def private(default: Any = None) -> Any:
    """A field hidden from reprs and messages, without the secrets-file rule (a card UID)."""
    return Field(default, repr=False, json_schema_extra={PRIVATE: True})


# ------------------------------------------------------------------------------ scalars


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    refuse("true or false (without quotes)")


Flag = Annotated[bool, BeforeValidator(_flag)]


def integer(low: int, high: int) -> BeforeValidator:
    """An integer from `low` to `high` (a float, even 5.0, or a boolean is refused)."""

    def check(value: Any) -> int:
        if type(value) is int and low <= value <= high:
            return value
        refuse(f"an integer from {low:,} to {high:,}")

    return BeforeValidator(check)


def seconds(above: float, high: float) -> BeforeValidator:
    """A finite number of seconds greater than `above`, at most `high` (int or float)."""

    def check(value: Any) -> float:
        if type(value) in (int, float) and math.isfinite(value) and above < value <= high:
            return float(value)
        refuse(f"a number of seconds greater than {above:g} and at most {high:g}")

    return BeforeValidator(check)


def text(max_length: int = 200) -> BeforeValidator:
    """A non-empty string without control characters."""

    def check(value: Any) -> str:
        if isinstance(value, str) and 0 < len(value) <= max_length and not _CONTROL.search(value):
            return value
        refuse(f"a string of 1 to {max_length} characters without control characters")

    return BeforeValidator(check)


def matching(pattern: re.Pattern[str], expected: str, *, lower: bool = False) -> BeforeValidator:
    """A string matching `pattern` whole (lower-cased first when `lower`)."""

    def check(value: Any) -> str:
        if isinstance(value, str):
            value = value.lower() if lower else value
            if pattern.fullmatch(value):
                return value
        refuse(expected)

    return BeforeValidator(check)


def _hex_text(value: Any, size: int) -> str | None:
    if isinstance(value, str) and len(value) == 2 * size and _HEX.fullmatch(value):
        return value
    return None


def hex_string(size: int, what: str, *, lower: bool = False) -> BeforeValidator:
    """`2 * size` hex characters, kept as text (card keys, as the key-table builder reads them)."""

    def check(value: Any) -> str:
        found = _hex_text(value, size)
        if found is None:
            refuse(f"{2 * size} hex characters ({what})")
        return found.lower() if lower else found

    return BeforeValidator(check)


def hex_bytes(size: int, what: str) -> BeforeValidator:
    """`2 * size` hex characters in the file, `size` bytes for consumers (an issuer key)."""

    def check(value: Any) -> bytes:
        if isinstance(value, bytes) and len(value) == size:
            return value
        found = _hex_text(value, size)
        if found is None:
            refuse(f"{2 * size} hex characters ({what})")
        return bytes.fromhex(found)

    return BeforeValidator(check)


def url(*schemes: str) -> BeforeValidator:
    """An absolute URL with one of `schemes` and a host, kept as written."""
    shown = " or ".join(f"{s}://" for s in schemes)

    def check(value: Any) -> str:
        if isinstance(value, str) and len(value) <= 2048 and not _CONTROL.search(value) \
                and " " not in value:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            except ValueError:
                refuse(f"a URL starting {shown} (its port is not a number from 0 to 65535)")
            if parts.scheme.lower() in schemes and parts.hostname:
                return value
        refuse(f"a URL starting {shown} with a host, like {schemes[0]}://example.com/…")

    return BeforeValidator(check)


def _host(value: Any) -> str:
    if isinstance(value, str) and 0 < len(value) <= 253:
        host = value.strip().lower().rstrip(".")
        if _HOST.fullmatch(host):
            return host
        if "/" in host:
            refuse("a host name, not a URL (e.g. \"127.0.0.1\" or \"cards.example.com\")")
    refuse("a host name or IP address (e.g. \"cards.example.com\")")


Host = Annotated[str, BeforeValidator(_host)]
TerminalId = Annotated[str, matching(_TERMINAL_ID, "1 to 64 letters, digits, '.', '_' or '-'")]
ParamName = Annotated[str, matching(_PARAM, "a URL parameter name (1 to 32 letters, digits, "
                                            "'_', '-', '.', '~')")]


# ------------------------------------------------------------------------------ collections


def array(expected: str, *, min_items: int = 0, max_items: int = 1000) -> BeforeValidator:
    """The check of a TOML array: a list becomes a tuple; anything else (a string in
    particular, which must never be split into characters) is refused."""

    def check(value: Any) -> Any:
        if isinstance(value, list | tuple) and min_items <= len(value) <= max_items:
            return tuple(value)
        if min_items and isinstance(value, list | tuple) and len(value) < min_items:
            refuse(f"an array of at least {min_items} {expected}")
        example = _EXAMPLES.get(expected)
        refuse(f"an array of {expected}" + (f" (e.g. [{example}])" if example else ""))

    return BeforeValidator(check)


_EXAMPLES = {"host names": '"127.0.0.1"', "currency codes": '"USD"', "percentages": "10, 15, 20"}


HostList = Annotated[tuple[Host, ...], array("host names")]


def choice(*allowed: str, why: str = "") -> BeforeValidator:
    """One of `allowed` (compared exactly: case matters); `why` explains a short list."""

    def check(value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        refuse("one of " + ", ".join(f'"{a}"' for a in allowed) + (f" ({why})" if why else ""))

    return BeforeValidator(check)


def choice_int(*allowed: int) -> BeforeValidator:
    """One of the integers `allowed`."""

    def check(value: Any) -> int:
        if type(value) is int and value in allowed:
            return value
        refuse("one of " + ", ".join(str(a) for a in allowed))

    return BeforeValidator(check)


def table(expected: str) -> BeforeValidator:
    """The check of an inline table whose keys are free-form (checked by the dict's key type)."""

    def check(value: Any) -> Any:
        if isinstance(value, dict):
            return value
        refuse(f"a table of {expected}")

    return BeforeValidator(check)


# ------------------------------------------------------------------------------ money


def sale_limit(code: str) -> BeforeValidator:
    """A per-sale limit in `code`: a string of digits ("10000.50"; an integer is fine too),
    returned in minor units; at most `money.sale_ceiling_minor` (21 million BTC for SAT)."""
    cur = currency(code)
    ceiling = format_money(Money(sale_ceiling_minor(cur), cur))

    def check(value: Any) -> int:
        if type(value) is int:
            value = str(value)
        elif not isinstance(value, str):
            refuse(f'an amount in {code} as a string of digits, like "10000"'
                   + ("" if cur.fraction_digits == 0 else ' or "10000.50"'))
        try:
            return parse_amount(value, cur, max_minor=sale_ceiling_minor(cur)).minor
        except AmountTooLarge:
            refuse(f"an amount in {code} of at most {ceiling}")
        except AmountError as exc:
            refuse(f'an amount in {code} written in digits, like "10000" ({exc.message})')

    return BeforeValidator(check)
