"""Admin > Cashiers: the roster (enrolled cashiers, read-only here; those added in Admin), adding
one, a new PIN, removing one. A manager's screen (it sits behind the Admin pad); the decisions
and the checks are the till's `Staff`. PINs typed here go straight to their hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.core.cashiers import Role
from terminal.services.till import StaffError, Till

T = TypeVar("T")


@dataclass(frozen=True)
class RosterRow:
    cashier_id: str
    text: str
    editable: bool  # added in Admin (an enrolled one changes by enrolling again)


class CashiersViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        self.selected: str | None = None
        self.message = ""
        self.ok = True

    def __repr__(self) -> str:
        return f"CashiersViewModel(selected={self.selected!r})"

    def rows(self) -> list[RosterRow]:
        out = []
        for c in self.till.staff.roster:
            role = t(f"signin.role.{c.role.value}")
            key = "cashiers.enrolled" if c.enrolled else "cashiers.added"
            out.append(RosterRow(c.id, t(key, name=f"{c.name} [{c.id}]", role=role),
                                 not c.enrolled))
        return out

    @property
    def empty_text(self) -> str:
        return "" if self.till.staff.enabled else t("cashiers.none")

    def select(self, cashier_id: str | None) -> None:
        self.selected, self.message, self.ok = cashier_id, "", True
        cashier = self.till.staff.roster.get(cashier_id)
        if cashier is not None and cashier.enrolled:
            self.message = t("cashiers.enrolled_note", name=cashier.name)
        self.changed()

    @property
    def selected_editable(self) -> bool:
        cashier = self.till.staff.roster.get(self.selected)
        return cashier is not None and not cashier.enrolled

    def add(self, cashier_id: str, name: str, pin: str, *, manager: bool = False) -> bool:
        role = Role.MANAGER if manager else Role.CASHIER
        return self._do(lambda: self.till.staff.add(cashier_id, name, role, pin),
                        lambda c: t("cashiers.added_ok", name=c.name))

    def set_pin(self, pin: str) -> bool:
        if self.selected is None:
            return self._say(t("cashiers.pick"), ok=False)
        name = self._name()
        return self._do(lambda: self.till.staff.set_pin(self.selected or "", pin),
                        lambda _r: t("cashiers.pin_ok", name=name))

    def remove(self) -> bool:
        if self.selected is None:
            return self._say(t("cashiers.pick"), ok=False)
        name = self._name()
        done = self._do(lambda: self.till.staff.remove(self.selected or ""),
                        lambda _r: t("cashiers.removed", name=name))
        if done:
            self.selected = None
        return done

    def _name(self) -> str:
        cashier = self.till.staff.roster.get(self.selected)
        return cashier.name if cashier is not None else str(self.selected)

    def _do(self, action: Callable[[], T], words: Callable[[T], str]) -> bool:
        try:
            result = action()
        except StaffError as exc:
            return self._say(str(exc), ok=False)
        return self._say(words(result), ok=True)

    def _say(self, message: str, *, ok: bool) -> bool:
        self.message, self.ok = message, ok
        self.changed()
        self.till.roster_changed()  # the sign-in screen's names follow the roster
        return ok
