"""Cashiers, their roles, and the guard on PIN guesses (core: no I/O).

A cashier is named by a short id (`ana`, `till-2`), signs in with a 4–8 digit PIN kept only as
its PBKDF2 hash (`terminal.core.pins`), and is either a *cashier* (rings up sales) or a
*manager* (also settings, card tools, closing a shift). Sales record the id of who rang them up.

`PinGuard` counts wrong PINs at this terminal (sign-in and the Admin pad alike: they are guesses
at the same counter) and locks the pad after `max_attempts`, doubling the lock-out at each further
lock-out (capped). Its state is a small document the caller persists, so a restart does not hand
out fresh guesses: an attempt is counted *before* the PIN is checked (`begin`), so pulling the
plug while a guess is checked still counts it.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

CASHIER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
NO_CASHIER = "none"  # reports' key for sales rung up without anyone signed in (a reserved id)
NAME_MAX = 40
MAX_ATTEMPTS = 5
LOCKOUT_S = 60.0
MAX_LOCKOUT_S = 3600.0


class Role(enum.Enum):
    CASHIER = "cashier"
    MANAGER = "manager"


def check_cashier_id(text: str) -> str:
    """The id as stored (lower case); ValueError saying what an id looks like."""
    value = text.strip().lower()
    if not CASHIER_ID.fullmatch(value) or value == NO_CASHIER:
        raise ValueError("a cashier id is 1 to 32 lower-case letters, digits, '-' or '_', "
                         f"starting with a letter or digit (not {NO_CASHIER!r})")
    return value


def clean_name(text: str) -> str:
    """A display name without control characters, at most NAME_MAX characters."""
    name = "".join(ch for ch in text if ch.isprintable()).strip()[:NAME_MAX]
    if not name:
        raise ValueError("a cashier needs a name")
    return name


@dataclass(frozen=True)
class Cashier:
    id: str
    name: str
    role: Role = Role.CASHIER
    pin_hash: str = field(default="", repr=False)
    enrolled: bool = True  # from the configuration (enrollment); False: added in Admin

    @property
    def is_manager(self) -> bool:
        return self.role is Role.MANAGER

    def to_doc(self) -> dict[str, str]:
        """As the books keep a cashier added in Admin (the hash only, never the PIN)."""
        return {"id": self.id, "name": self.name, "role": self.role.value,
                "pin_hash": self.pin_hash}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Cashier:
        return cls(check_cashier_id(str(doc["id"])), clean_name(str(doc["name"])),
                   Role(doc["role"]), str(doc["pin_hash"]), enrolled=False)


class Roster:
    """The cashiers of this terminal: those enrolled (configuration) and those added in Admin.
    An enrolled id wins over an Admin one of the same id (a re-enrollment is the authority)."""

    def __init__(self, enrolled: Iterable[Cashier] = (), added: Iterable[Cashier] = ()) -> None:
        self._by_id: dict[str, Cashier] = {}
        for cashier in added:
            self._by_id[cashier.id] = cashier
        for cashier in enrolled:
            self._by_id[cashier.id] = cashier

    def __iter__(self) -> Iterator[Cashier]:
        return iter(sorted(self._by_id.values(), key=lambda c: (c.name.lower(), c.id)))

    def __len__(self) -> int:
        return len(self._by_id)

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __contains__(self, cashier_id: object) -> bool:
        return cashier_id in self._by_id

    def get(self, cashier_id: str | None) -> Cashier | None:
        return self._by_id.get((cashier_id or "").lower())

    @property
    def managers(self) -> list[Cashier]:
        return [c for c in self if c.is_manager]

    @property
    def added(self) -> list[Cashier]:
        return [c for c in self if not c.enrolled]


# ---------------------------------------------------------------------------- the PIN guard


class Attempt(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    UNKNOWN = "unknown"  # no such cashier (counted as a wrong guess)
    NOT_CONFIGURED = "not-configured"  # no PIN to check against


@dataclass
class GuardState:
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0  # wall clock (unix seconds): it must mean the same after a reboot

    def to_doc(self) -> dict[str, Any]:
        return {"failures": self.failures, "lockouts": self.lockouts,
                "locked_until": self.locked_until}

    @classmethod
    def from_doc(cls, doc: object) -> GuardState:
        """A kept state; anything unreadable counts as a fresh lock-out rather than none (a
        damaged record must not hand out fresh guesses)."""
        if doc is None:
            return cls()
        try:
            assert isinstance(doc, Mapping)
            failures, lockouts = int(doc["failures"]), int(doc["lockouts"])
            until = float(doc["locked_until"])
            if failures < 0 or lockouts < 0 or not math.isfinite(until):
                raise ValueError
        except (AssertionError, KeyError, TypeError, ValueError):
            return cls(failures=0, lockouts=1, locked_until=math.inf)
        return cls(failures, lockouts, until)


class PinGuard:
    def __init__(
        self,
        state: GuardState | None = None,
        *,
        save: Callable[[GuardState], None] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        lockout_s: float = LOCKOUT_S,
        max_lockout_s: float = MAX_LOCKOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_attempts < 1 or lockout_s <= 0:
            raise ValueError("a guard needs at least one attempt and a positive lock-out")
        self.state = state or GuardState()
        self._save = save
        self.max_attempts = max_attempts
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.clock = clock
        # A clock set back (a Pi without its network time yet) must not stretch a lock-out
        # beyond its longest; an unreadable record (infinite) becomes the longest one from now.
        self.state.locked_until = min(self.state.locked_until, self.clock() + max_lockout_s)

    @property
    def locked(self) -> bool:
        return self.clock() < self.state.locked_until

    @property
    def locked_for_s(self) -> int:
        return max(0, math.ceil(self.state.locked_until - self.clock()))

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.state.failures)

    def check(self, verify: Callable[[], bool]) -> Attempt:
        """One guess: LOCKED without looking while locked; else counted (and kept) first, then
        `verify()` decides. A wrong guess that uses up the attempts locks the pad."""
        if self.locked:
            return Attempt.LOCKED
        self.state.failures += 1
        self._persist()
        if verify():
            self.state.failures = 0
            self._persist()
            return Attempt.OK
        if self.state.failures >= self.max_attempts:
            self.state.lockouts += 1
            delay = min(self.max_lockout_s, self.lockout_s * 2 ** (self.state.lockouts - 1))
            self.state.locked_until = self.clock() + delay
            self.state.failures = 0
            self._persist()
            return Attempt.LOCKED
        return Attempt.WRONG

    def _persist(self) -> None:
        if self._save is not None:
            self._save(self.state)
