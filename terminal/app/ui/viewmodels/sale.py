"""The Sale screen as the till has it: the amount keyed, its sats value and the rate's age, the
tip step, a memo, Charge, and the notice of the moment. Presents; decides nothing."""

from __future__ import annotations

from terminal.app.ui.strings import notice_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.core.money import Money, Msat, format_money, format_msat
from terminal.core.tips import NO_TIP, TipChoice
from terminal.services.till import Step, Till


class SaleViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        till.subscribe(lambda _t: self.changed())

    # -- inputs (forwarded) -----------------------------------------------------------------
    def press(self, key: str) -> bool:
        return self.till.key(key)

    def switch_currency(self) -> str:
        return self.till.switch_currency()

    def set_memo(self, memo: str) -> None:
        self.till.set_memo(memo)

    # -- what is shown ----------------------------------------------------------------------
    @property
    def step(self) -> Step:
        return self.till.step

    @property
    def tip_mode(self) -> bool:
        return self.till.step is Step.TIP

    @property
    def custom_tip_mode(self) -> bool:
        return self.tip_mode and self.till.tip_entry is not None

    @property
    def keypad_visible(self) -> bool:
        return not self.tip_mode or self.custom_tip_mode

    @property
    def memo(self) -> str:
        return self.till.memo

    @property
    def amount_text(self) -> str:
        till = self.till
        if self.custom_tip_mode and till.tip_entry is not None:
            return t("tip.custom.amount", tip=till.tip_entry.display)
        return till.entry.display

    @property
    def currency_code(self) -> str:
        return self.till.currency_code

    @property
    def can_switch(self) -> bool:
        return len(self.till.currencies) > 1 and self.till.step is Step.AMOUNT

    @property
    def rate_problem(self) -> str | None:
        return self.till.rate_problem()

    @property
    def sats_text(self) -> str:
        till = self.till
        if till.entry.currency.is_sat:
            return ""
        msat = till.amount_msat()
        if msat is None:
            return t("sale.no_rate")
        return t("sale.sats", sats=format_msat(Msat(msat)))

    @property
    def rate_age_text(self) -> str:
        till = self.till
        if till.entry.currency.is_sat:
            return ""
        try:
            quote = till.checkout.rates.quote(till.currency_code, now=till.clock())
        except Exception:
            return ""
        return t("sale.rate_age", age=quote.age_text)

    @property
    def notice(self) -> str:
        return notice_text(self.till.notice)

    @property
    def can_charge(self) -> bool:
        return self.till.can_charge

    @property
    def charge_label(self) -> str:
        if self.custom_tip_mode:
            return t("tip.custom.ok")
        return t("sale.next") if self.till.settings.tips.enabled else t("sale.charge")

    @property
    def tip_options(self) -> list[tuple[str, TipChoice]]:
        options = [(t("tip.none"), NO_TIP)]
        options += [(t("tip.percent", percent=p), TipChoice(percent=p))
                    for p in self.till.settings.tips.presets]
        return options

    @property
    def allow_custom_tip(self) -> bool:
        return self.till.settings.tips.allow_custom

    def tip_line(self, choice: TipChoice) -> str:
        entry = self.till.entry
        tip = choice.tip(entry.minor)
        return t("tip.line", tip=format_money(Money(tip, entry.currency)),
                 total=format_money(Money(entry.minor + tip, entry.currency)))

    @property
    def tip_title(self) -> str:
        return t("tip.title_for", amount=format_money(self.till.entry.money))
