"""Tip maths: percent presets or a custom amount, in minor units of the sale's currency.

A percentage tip is rounded half up to the nearest minor unit (the customer sees exactly the
amount charged; no fractions of a cent are carried).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class TipSettings:
    enabled: bool = False
    presets: tuple[int, ...] = (10, 15, 20)  # percent
    allow_custom: bool = True


def tip_minor(amount_minor: int, percent: int | Fraction) -> int:
    if amount_minor < 0 or percent < 0:
        raise ValueError("amount and percent must not be negative")
    exact = Fraction(amount_minor) * Fraction(percent) / 100
    return int(exact + Fraction(1, 2)) if exact else 0  # half up (non-negative)


@dataclass(frozen=True)
class TipChoice:
    percent: int | None = None  # a preset
    custom_minor: int | None = None  # a custom amount

    def tip(self, amount_minor: int) -> int:
        if self.custom_minor is not None:
            if self.custom_minor < 0:
                raise ValueError("a tip cannot be negative")
            return self.custom_minor
        if self.percent is not None:
            return tip_minor(amount_minor, self.percent)
        return 0


NO_TIP = TipChoice()
