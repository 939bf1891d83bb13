"""A backend's request budget, kept where every process of one terminal sees it.

The decisions are `terminal.core.budget`'s; this module holds the state: in memory, or in a small
JSON file in the data directory (`path`) so the kiosk, a `sync` run by hand and `doctor` share
one view of the merchant's limits. Each change is a read-modify-write under an exclusive `flock`;
the file is advisory (losing it only forgets what this terminal spent in the current window).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from terminal.core.budget import (
    FLASH_API_KEY_LIMIT,
    FLASH_INVOICE_LIMIT,
    BudgetState,
    Ticket,
    WindowBudget,
    WindowLimit,
)

log = logging.getLogger(__name__)
MAX_FILE_BYTES = 64 * 1024


class BackendBudget:
    """Invoice and API-key budgets of one merchant backend (`terminal.core.budget.InvoicePacer`)."""

    def __init__(
        self,
        *,
        invoices: WindowLimit = FLASH_INVOICE_LIMIT,
        api_key: WindowLimit = FLASH_API_KEY_LIMIT,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.invoice_limit = invoices
        self.key_limit = api_key
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self._state = BudgetState()

    # ------------------------------------------------------------------------- state access
    @contextlib.contextmanager
    def _budgets(self, write: bool = True) -> Iterator[tuple[WindowBudget, WindowBudget]]:
        if self.path is None:
            yield (WindowBudget(self.invoice_limit, self._state.invoices),
                   WindowBudget(self.key_limit, self._state.api_key))
            return
        if not write and not self.path.exists():  # a reader (doctor) creates nothing
            yield (WindowBudget(self.invoice_limit, BudgetState().invoices),
                   WindowBudget(self.key_limit, BudgetState().api_key))
            return
        with self._locked() as fh:
            state = self._read(fh)
            yield (WindowBudget(self.invoice_limit, state.invoices),
                   WindowBudget(self.key_limit, state.api_key))
            if write:
                self._write(fh, state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _read(self, fd: int) -> BudgetState:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, MAX_FILE_BYTES)
        if not raw:
            return BudgetState()
        try:
            return BudgetState.from_json(json.loads(raw))
        except (ValueError, UnicodeDecodeError, RecursionError):
            log.warning("backend budget file %s is unreadable; starting afresh", self.path)
            return BudgetState()

    def _write(self, fd: int, state: BudgetState) -> None:
        data = json.dumps(state.to_json(), separators=(",", ":")).encode()
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, data)

    # ------------------------------------------------------------------------- invoices
    def invoice_wait_s(self, now: float | None = None, *, background: bool = True) -> float:
        with self._budgets(write=False) as (invoices, _):
            return invoices.wait_s(self._now(now), background=background)

    def take_invoice(self, *, background: bool) -> tuple[Ticket | None, float]:
        """A slot for one invoice creation, or (None, seconds to wait)."""
        now = self.clock()
        with self._budgets() as (invoices, _):
            ticket = invoices.take(now, background=background)
            return ticket, (0.0 if ticket else invoices.wait_s(now, background=background))

    def invoice_answered(self, ticket: Ticket) -> None:
        with self._budgets() as (invoices, _):
            invoices.answered(self.clock(), ticket)

    def invoice_not_sent(self, ticket: Ticket) -> None:
        with self._budgets() as (invoices, _):
            invoices.release(self.clock(), ticket)

    def invoice_refused(self) -> None:
        """Flash answered TOO_MANY_REQUEST: the account is blocked (for up to 300 s)."""
        with self._budgets() as (invoices, _):
            invoices.refused(self.clock())

    # ------------------------------------------------------------------------- API key
    def take_key(self, *, background: bool = False) -> tuple[Ticket | None, float]:
        now = self.clock()
        with self._budgets() as (_, key):
            ticket = key.take(now, background=background)
            return ticket, (0.0 if ticket else key.wait_s(now, background=background))

    def key_answered(self, ticket: Ticket) -> None:
        with self._budgets() as (_, key):
            key.answered(self.clock(), ticket)

    def key_not_sent(self, ticket: Ticket) -> None:
        with self._budgets() as (_, key):
            key.release(self.clock(), ticket)

    def key_refused(self, retry_after_s: float | None) -> None:
        with self._budgets() as (_, key):
            key.refused(self.clock(), retry_after_s)

    # ------------------------------------------------------------------------- reporting
    def drain_time_s(self, count: int, now: float | None = None) -> float:
        with self._budgets(write=False) as (invoices, _):
            return invoices.time_for(count, self._now(now))

    def describe(self, now: float | None = None, *, api_key: bool = True) -> list[str]:
        at = self._now(now)
        with self._budgets(write=False) as (invoices, key):
            lines = [invoices.snapshot(at).describe()]
            if api_key:
                lines.append(key.snapshot(at).describe())
        return lines

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now
