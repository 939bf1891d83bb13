"""The sign-in screen as the till has it: the cashiers by name, then a PIN pad for the one
tapped; the lock-out after too many wrong PINs (shared with the Admin pad, kept across restarts);
who is signed in, and signing out. Every decision is the till's (`Till.sign_in`, `Staff`)."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.app.ui.strings import notice_text, t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.core.cashiers import Attempt
from terminal.core.pins import PIN_MAX, PIN_MIN
from terminal.services.till import Staff, Till


@dataclass(frozen=True)
class CashierButton:
    cashier_id: str
    text: str  # "Ana", "Max (manager)"


class SignInViewModel(Observable):
    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        self.selected: str | None = None
        self.digits = ""
        self.last: Attempt | None = None
        till.subscribe(lambda _t: self.changed())

    def __repr__(self) -> str:  # never the digits
        return f"SignInViewModel(selected={self.selected!r}, digits={len(self.digits)})"

    @property
    def staff(self) -> Staff:
        return self.till.staff

    # -- what is shown ----------------------------------------------------------------------
    def cashiers(self) -> list[CashierButton]:
        return [CashierButton(c.id, f"{c.name} ({t('signin.role.manager')})" if c.is_manager
                              else c.name) for c in self.staff.roster]

    @property
    def locked(self) -> bool:
        return self.staff.guard.locked

    @property
    def masked(self) -> str:
        return "•" * len(self.digits)

    @property
    def message(self) -> str:
        guard = self.staff.guard
        if guard.locked:
            return t("signin.locked", seconds=guard.locked_for_s)
        if self.last is Attempt.WRONG or self.last is Attempt.UNKNOWN:
            return t("signin.wrong_pin", left=guard.attempts_left)
        cashier = self.staff.roster.get(self.selected)
        if cashier is None:
            # A tap or Charge before anyone signed in says why nothing happened.
            notice = self.till.notice
            if notice is not None and notice.code == "sign-in-first":
                return notice_text(notice)
            return t("signin.pick")
        return t("signin.pin_for", name=cashier.name)

    @property
    def signed_in_text(self) -> str:
        """The cashier's name for the Sale screen's sign-out button ("" when nobody)."""
        current = self.staff.current
        return current.name if current is not None else ""

    @property
    def can_skip(self) -> bool:
        """Sign-in is optional on this terminal (`[ui] require_sign_in = false`)."""
        return not self.staff.require_sign_in

    # -- presses ----------------------------------------------------------------------------
    def choose(self, cashier_id: str) -> None:
        self.selected, self.digits, self.last = cashier_id, "", None
        self.changed()

    def press(self, key: str) -> bool:
        if self.locked or self.selected is None:
            return False
        if key == "back":
            self.digits = self.digits[:-1]
        elif key == "clear":
            self.digits = ""
        elif key.isdigit() and len(key) == 1 and len(self.digits) < PIN_MAX:
            self.digits += key
        else:
            return False
        self.changed()
        return True

    def submit(self) -> Attempt | None:
        if self.selected is None or len(self.digits) < PIN_MIN:
            return None
        pin, self.digits = self.digits, ""
        attempt = self.till.sign_in(self.selected, pin)
        self.last = None if attempt is Attempt.OK else attempt
        if attempt is Attempt.OK:
            self.selected = None
        self.changed()
        return attempt

    def reset(self) -> None:
        self.selected, self.digits, self.last = None, "", None
        self.changed()
