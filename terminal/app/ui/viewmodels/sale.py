"""The Sale screen: keypad amount in the display currency, sat equivalent and the rate's age,
an optional tip step, a memo and Charge."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.keypad import AmountEntry
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.tip import NO_TIP, TipChoice, TipSettings
from terminal.core.money import (
    Money,
    RateError,
    RatePolicy,
    currency,
    fiat_to_msat,
    format_money,
    format_msat,
)

# Largest single sale per currency, in minor units (a keypad slip must not bill a fortune).
DEFAULT_MAX_MINOR = {"SAT": 10_000_000, "USD": 1_000_000, "JMD": 100_000_000}
FALLBACK_MAX_MINOR = 10_000_000


class SaleStep(enum.Enum):
    AMOUNT = "amount"
    TIP = "tip"


@dataclass(frozen=True)
class ChargeRequest:
    amount_minor: int  # total, tip included
    currency: str
    memo: str
    tip_minor: int = 0


class SaleViewModel(Observable):
    def __init__(
        self,
        rates: RatePolicy,
        currencies: Sequence[str] = ("USD",),
        *,
        tips: TipSettings | None = None,
        max_minor: dict[str, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if not currencies:
            raise ValueError("at least one currency")
        self.rates = rates
        self.currencies = [currency(c).code for c in currencies]
        self.tips = tips or TipSettings()
        self.max_minor = {**DEFAULT_MAX_MINOR, **(max_minor or {})}
        self.clock = clock
        self.memo = ""
        self.step = SaleStep.AMOUNT
        self.tip = NO_TIP
        code = self.currencies[0]
        self.entry = AmountEntry(currency(code), self._max(code))
        self.entry.subscribe(lambda _e: self.changed())

    def _max(self, code: str) -> int:
        return self.max_minor.get(code, FALLBACK_MAX_MINOR)

    # -- inputs -----------------------------------------------------------------------------
    def press(self, key: str) -> bool:
        return self.entry.press(key)

    def switch_currency(self) -> str:
        """Cycle to the next configured currency (the amount is cleared: prices differ)."""
        i = self.currencies.index(self.entry.currency.code)
        code = self.currencies[(i + 1) % len(self.currencies)]
        self.entry.set_currency(currency(code), self._max(code))
        return code

    def set_memo(self, memo: str) -> None:
        self.memo = memo[:120]
        self.changed()

    def next(self) -> ChargeRequest | None:
        """Charge (or go to the tip step first when tips are on). None while nothing to charge."""
        if not self.can_charge:
            return None
        if self.tips.enabled and self.step is SaleStep.AMOUNT:
            self.step = SaleStep.TIP
            self.changed()
            return None
        return self.request()

    def choose_tip(self, choice: TipChoice) -> ChargeRequest | None:
        self.tip = choice
        return self.request() if self.can_charge else None

    def back_to_amount(self) -> None:
        self.step, self.tip = SaleStep.AMOUNT, NO_TIP
        self.changed()

    def reset(self) -> None:
        self.entry.press("clear")
        self.memo, self.step, self.tip = "", SaleStep.AMOUNT, NO_TIP
        self.changed()

    def request(self) -> ChargeRequest:
        tip = self.tip.tip(self.entry.minor)
        return ChargeRequest(self.entry.minor + tip, self.entry.currency.code, self.memo, tip)

    # -- what is shown ----------------------------------------------------------------------
    @property
    def amount_text(self) -> str:
        return self.entry.display

    @property
    def currency_code(self) -> str:
        return self.entry.currency.code

    @property
    def can_switch(self) -> bool:
        return len(self.currencies) > 1

    @property
    def rate_problem(self) -> str | None:
        """Why fiat cannot be priced right now (no rate yet, or too old); None when fine."""
        if self.entry.currency.is_sat:
            return None
        try:
            self.rates.quote(self.currency_code, now=self.clock())
        except RateError as exc:
            return exc.message
        return None

    @property
    def sats_text(self) -> str:
        cur = self.entry.currency
        if cur.is_sat:
            return ""
        try:
            quote = self.rates.quote(cur.code, now=self.clock())
        except RateError:
            return t("sale.no_rate")
        msat = fiat_to_msat(Money(self.entry.minor, cur), quote.rate)
        return t("sale.sats", sats=format_msat(msat))

    @property
    def rate_age_text(self) -> str:
        if self.entry.currency.is_sat:
            return ""
        try:
            quote = self.rates.quote(self.currency_code, now=self.clock())
        except RateError:
            return ""
        return t("sale.rate_age", age=quote.age_text)

    @property
    def can_charge(self) -> bool:
        return self.entry.minor > 0 and self.rate_problem is None

    @property
    def tip_options(self) -> list[tuple[str, TipChoice]]:
        options = [(t("tip.none"), NO_TIP)]
        options += [(t("tip.percent", percent=p), TipChoice(percent=p)) for p in self.tips.presets]
        return options

    def tip_line(self, choice: TipChoice) -> str:
        cur = self.entry.currency
        tip = choice.tip(self.entry.minor)
        return t("tip.line", tip=format_money(Money(tip, cur)),
                 total=format_money(Money(self.entry.minor + tip, cur)))
