"""Keypad entry: an amount with the rules of its currency, and a card PIN.

Amount rules: digits after the decimal point are limited to the currency's minor unit (none for
SAT or JPY); a leading zero is replaced by the next digit ("0" then "5" is "5"); a key that would
take the amount over the maximum is refused (False, so the screen can signal it) rather than
silently truncated. Switching currency keeps the digits typed (the cashier usually corrects which
currency the number was meant in), dropping decimals the new currency does not have.
"""

from __future__ import annotations

from decimal import Decimal

from terminal.core.money import Currency, Money, format_money
from terminal.core.pins import PIN_MAX, PIN_MIN

DIGITS = frozenset("0123456789")
POINT = "."
BACK = "back"
CLEAR = "clear"
DOUBLE_ZERO = "00"
KEYS = DIGITS | {POINT, BACK, CLEAR, DOUBLE_ZERO}


class AmountEntry:
    def __init__(self, cur: Currency, max_minor: int) -> None:
        if max_minor <= 0:
            raise ValueError("max_minor must be positive")
        self.currency = cur
        self.max_minor = max_minor
        self.text = ""  # what was typed, e.g. "12.5"

    def __repr__(self) -> str:
        return f"AmountEntry({self.display!r})"

    # -- keys -------------------------------------------------------------------------------
    def press(self, key: str) -> bool:
        """Apply one key; False when the key is refused (the text is unchanged)."""
        if key == CLEAR:
            accepted = bool(self.text)
            self.text = ""
        elif key == BACK:
            accepted = bool(self.text)
            self.text = self.text[:-1]
            if self.text == "0":
                self.text = ""
        elif key == POINT:
            accepted = self._point()
        elif key == DOUBLE_ZERO:
            before = self.text  # both zeros or neither
            accepted = self._digit("0") and self._digit("0")
            if not accepted:
                self.text = before
        elif key in DIGITS:
            accepted = self._digit(key)
        else:
            raise ValueError(f"unknown key {key!r}")
        return accepted

    def type(self, keys: str) -> bool:
        """Press each character of `keys` in turn; True when every key was accepted."""
        return all([self.press(k) for k in keys])

    def clear(self) -> None:
        self.text = ""

    def set_currency(self, cur: Currency, max_minor: int) -> None:
        """Another currency, keeping the digits typed where the new currency allows them."""
        kept = self.text
        self.currency, self.max_minor, self.text = cur, max_minor, ""
        whole, _point, frac = kept.partition(POINT)
        if not self.type(whole):
            self.text = ""
            return
        if frac and cur.fraction_digits:
            self.press(POINT)
            self.type(frac[: cur.fraction_digits])

    def _point(self) -> bool:
        if self.currency.fraction_digits == 0 or POINT in self.text:
            return False
        self.text = (self.text or "0") + POINT
        return True

    def _digit(self, d: str) -> bool:
        if POINT in self.text:
            decimals = len(self.text.split(POINT, 1)[1])
            if decimals >= self.currency.fraction_digits:
                return False
            candidate = self.text + d
        elif self.text in ("", "0"):
            if d == "0" and self.text == "0":
                return False  # no "00" integer part
            candidate = d
        else:
            candidate = self.text + d
        if _to_minor(candidate, self.currency) > self.max_minor:
            return False
        self.text = candidate
        return True

    # -- values -----------------------------------------------------------------------------
    @property
    def minor(self) -> int:
        return _to_minor(self.text, self.currency) if self.text else 0

    @property
    def money(self) -> Money:
        return Money(self.minor, self.currency)

    @property
    def display(self) -> str:
        """The amount as typed, with the currency's symbol and grouping ("$1,234.5")."""
        if not self.text:
            return format_money(Money(0, self.currency))
        whole, point, frac = self.text.partition(POINT)
        grouped = f"{int(whole or '0'):,}" + point + frac
        cur = self.currency
        if cur.is_sat:
            return f"{grouped} sats"
        return f"{cur.symbol}{grouped}" if cur.symbol else f"{grouped} {cur.code}"


def _to_minor(text: str, cur: Currency) -> int:
    value = Decimal(text.rstrip(POINT) or "0")
    return int(value.scaleb(cur.fraction_digits))


class PinEntry:
    """A card PIN: digits only, 4 to 8 of them, shown masked. The PIN itself leaves this object
    only through `take()`, which clears it; it is never stored, logged or shown."""

    def __init__(self) -> None:
        self._digits = ""

    def press(self, key: str) -> bool:
        if key == BACK:
            ok = bool(self._digits)
            self._digits = self._digits[:-1]
        elif key == CLEAR:
            ok, self._digits = bool(self._digits), ""
        elif key in DIGITS and len(key) == 1 and len(self._digits) < PIN_MAX:
            self._digits += key
            ok = True
        else:
            ok = False
        return ok

    @property
    def length(self) -> int:
        return len(self._digits)

    @property
    def masked(self) -> str:
        return "•" * len(self._digits)

    @property
    def complete(self) -> bool:
        return PIN_MIN <= len(self._digits) <= PIN_MAX

    def take(self) -> str:
        pin, self._digits = self._digits, ""
        return pin

    def __repr__(self) -> str:
        return f"PinEntry(len={len(self._digits)})"
