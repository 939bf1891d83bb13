"""Who is at the till: cashier sign-in and sign-out, the manager's rights, and the roster kept
in Admin (service layer; no Kivy, no storage of its own).

- The roster is the enrolled cashiers (configuration, hashes in secrets.toml) plus those a
  manager added in Admin, which the books keep (`META_CASHIERS`: hashes only).
- Sign-in takes a cashier id and a PIN; every PIN guess at this terminal (sign-in, the Admin pad)
  goes through one `PinGuard`, whose state the books keep (`META_GUARD`), so a lock-out survives
  a restart.
- A manager's rights (settings, card tools, closing a shift): a signed-in manager has them; so
  does anyone who gives the admin PIN or a manager's PIN at the Admin pad.
- With no cashiers at all the till works as before: nobody signs in, sales name no cashier.
  `require_sign_in` (on by default) keeps the keypad closed until someone signs in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from terminal.core.cashiers import (
    Attempt,
    Cashier,
    GuardState,
    PinGuard,
    Role,
    Roster,
    check_cashier_id,
    clean_name,
)
from terminal.core.pins import hash_pin, verify_pin
from terminal.core.ports.books import MetaStore

log = logging.getLogger(__name__)

META_GUARD = "pins.guard"
META_CASHIERS = "cashiers"


class StaffError(ValueError):
    """A roster change that cannot be made; the message says why, in plain words."""


class Staff:
    def __init__(
        self,
        enrolled: Iterable[Cashier] = (),
        *,
        store: MetaStore | None = None,
        admin_pin_hash: str | None = None,
        require_sign_in: bool = True,
        clock: Callable[[], float] = time.time,
        pin_iterations: int | None = None,
    ) -> None:
        self._enrolled = tuple(enrolled)
        self.store = store
        self.admin_pin_hash = admin_pin_hash
        self.require_sign_in = require_sign_in
        self.clock = clock
        self._pin_iterations = pin_iterations
        self.roster = Roster(self._enrolled, self._load_added())
        self.guard = PinGuard(self._load_guard(), save=self._save_guard, clock=clock)
        self.current: Cashier | None = None
        # The manager whose own PIN last opened the Admin pad (None: the admin PIN, or nobody):
        # what a manager's act at the pad (a refund) is recorded under.
        self.vouching: Cashier | None = None
        self.last_attempt = Attempt.OK

    # -- kept state -------------------------------------------------------------------------
    def _load_guard(self) -> GuardState:
        if self.store is None:
            return GuardState()
        return GuardState.from_doc(self.store.get_meta(META_GUARD))

    def _save_guard(self, state: GuardState) -> None:
        if self.store is not None:
            self.store.set_meta(META_GUARD, state.to_doc())

    def _load_added(self) -> list[Cashier]:
        if self.store is None:
            return []
        docs = self.store.get_meta(META_CASHIERS, [])
        added = []
        for doc in docs if isinstance(docs, list) else []:
            try:
                added.append(Cashier.from_doc(doc))
            except (KeyError, TypeError, ValueError):
                log.warning("a kept cashier record is unreadable and was skipped")
        return added

    def _save_added(self, added: list[Cashier]) -> None:
        if self.store is None:
            raise StaffError("this terminal keeps no books here: cashiers cannot be added")
        self.store.set_meta(META_CASHIERS, [c.to_doc() for c in added])
        self.roster = Roster(self._enrolled, added)

    # -- who is at the till -----------------------------------------------------------------
    @property
    def required(self) -> bool:
        """No sale without a signed-in cashier."""
        return bool(self.roster) and self.require_sign_in and self.current is None

    @property
    def enabled(self) -> bool:
        """The terminal has cashiers (sign-in is offered)."""
        return bool(self.roster)

    @property
    def cashier_id(self) -> str | None:
        return self.current.id if self.current is not None else None

    @property
    def is_manager(self) -> bool:
        return self.current is not None and self.current.is_manager

    def sign_in(self, cashier_id: str, pin: str) -> Attempt:
        """Sign `cashier_id` in with `pin`. An unknown id is a wrong guess too (the pad must
        not tell which ids exist)."""
        cashier = self.roster.get(cashier_id)

        def verify() -> bool:
            return cashier is not None and bool(cashier.pin_hash) and \
                verify_pin(pin, cashier.pin_hash)

        attempt = self.guard.check(verify)
        if attempt is Attempt.OK and cashier is not None:
            self.current = cashier
        self.last_attempt = attempt
        return attempt

    def act_as(self, cashier_id: str) -> Cashier:
        """Name the cashier without a PIN (the command line: its operator has the machine)."""
        cashier = self.roster.get(cashier_id)
        if cashier is None:
            known = ", ".join(c.id for c in self.roster) or "none are enrolled"
            raise StaffError(f"no cashier {cashier_id!r} on this terminal (cashiers: {known})")
        self.current = cashier
        return cashier

    def sign_out(self) -> None:
        self.current = None

    def manager_pin(self, pin: str) -> Attempt:
        """A manager's rights for the Admin pad: the admin PIN, or any manager's PIN."""
        managers = [c for c in self.roster.managers if c.pin_hash]
        hashes = [c.pin_hash for c in managers]
        if self.admin_pin_hash:
            hashes.insert(0, self.admin_pin_hash)
        if not hashes:
            return Attempt.NOT_CONFIGURED
        matched: list[bool] = []

        def verify() -> bool:
            # Every hash is checked (no early exit): the time taken says nothing about which.
            matched.extend(verify_pin(pin, h) for h in hashes)
            return any(matched)

        attempt = self.guard.check(verify)
        self.last_attempt = attempt
        if attempt is Attempt.OK:
            mine = matched[-len(managers):] if managers else []
            self.vouching = next((c for c, ok in zip(managers, mine, strict=True) if ok), None)
        return attempt

    @property
    def manager_id(self) -> str | None:
        """Who a manager's act is recorded under: the signed-in manager, else the manager whose
        PIN opened the pad, else whoever is signed in (the admin PIN names nobody)."""
        if self.is_manager:
            return self.cashier_id
        if self.vouching is not None:
            return self.vouching.id
        return self.cashier_id

    # -- the roster, from Admin -------------------------------------------------------------
    def add(self, cashier_id: str, name: str, role: Role | str, pin: str) -> Cashier:
        try:
            cid = check_cashier_id(cashier_id)
            cashier = Cashier(cid, clean_name(name), Role(role), self._hash(pin), enrolled=False)
        except ValueError as exc:
            raise StaffError(str(exc)) from None
        if cid in self.roster:
            raise StaffError(f"there is already a cashier {cid!r}")
        self._save_added([*self.roster.added, cashier])
        return cashier

    def set_pin(self, cashier_id: str, pin: str) -> None:
        cashier = self._added(cashier_id)
        changed = Cashier(cashier.id, cashier.name, cashier.role, self._hash(pin),
                          enrolled=False)
        self._save_added([changed if c.id == cashier.id else c for c in self.roster.added])

    def remove(self, cashier_id: str) -> None:
        cashier = self._added(cashier_id)
        self._save_added([c for c in self.roster.added if c.id != cashier.id])
        if self.current is not None and self.current.id == cashier.id:
            self.current = None

    def _added(self, cashier_id: str) -> Cashier:
        cashier = self.roster.get(cashier_id)
        if cashier is None:
            raise StaffError(f"no cashier {cashier_id!r}")
        if cashier.enrolled:
            raise StaffError(f"{cashier.name} was enrolled with this terminal: change them by "
                             "enrolling again (flash-terminal enroll)")
        return cashier

    def _hash(self, pin: str) -> str:
        try:
            if self._pin_iterations is not None:
                return hash_pin(pin, iterations=self._pin_iterations)
            return hash_pin(pin)
        except ValueError as exc:
            raise StaffError(str(exc)) from None
