"""A backend's request budget (core, no I/O): what its rate limiter will accept, so the terminal
paces itself instead of being refused.

Flash (lnflash/flash, `config/schema.ts`, `services/rate-limit`) counts with rate-limiter-flexible
fixed windows kept in Redis: a window opens at the first request after the last one closed and
holds `points` requests for `duration_s`; the request beyond them is refused and, when the limit
has a block, the key is blocked for `block_s` from that moment. Requests refused during a block do
not extend it (only the first excess request blocks), so probing a block is free.

- invoice creation, per merchant account (all its terminals): 20 per 120 s, then 300 s blocked;
- requests carrying an API key, per key: 120 per 60 s, no block (`retryAfterSeconds` given).

The terminal sees only its own requests. Its view is conservative: a window counts as open until
`duration_s` after the *answer* to the request that opened it (the server opened it on arrival,
which is earlier), plus `margin_s`; a refusal from the server (another terminal of the same
merchant used the slots) is believed at once. Background work (the offline queue's drain) leaves
`reserve` slots of every window to sales at the counter, more while the counter is busy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

# A probe of a block whose start the terminal does not know (another terminal tripped it) is
# free: refused requests never extend a block. At most one background probe this often.
BLOCK_PROBE_S = 30.0


@dataclass(frozen=True)
class WindowLimit:
    """One fixed-window limit as the server enforces it."""

    name: str
    points: int
    duration_s: float
    block_s: float = 0.0  # 0: the excess request is refused until the window ends
    margin_s: float = 0.5  # added to every window end the terminal computes (timer rounding)
    reserve: int = 1  # slots of each window background work leaves to sales
    max_reserve: int = 10  # however busy the counter, background work keeps this many at most

    def scaled(self, factor: float) -> WindowLimit:
        """The same limit on a faster clock (tests, benchmarks): windows `factor` times longer."""
        return WindowLimit(self.name, self.points, self.duration_s * factor,
                           self.block_s * factor, self.margin_s * factor, self.reserve,
                           self.max_reserve)


FLASH_INVOICE_LIMIT = WindowLimit("invoices", 20, 120.0, 300.0)
FLASH_API_KEY_LIMIT = WindowLimit("API-key requests", 120, 60.0, 0.0, reserve=10, max_reserve=60)


@dataclass
class WindowState:
    """The terminal's view of one limiter key (serialisable: processes of one terminal share it)."""

    window_end: float | None = None  # None: no window open as far as we know
    opening: bool = False  # no request of the open window has been answered yet
    window_seq: int = 0  # counts windows, so a late answer is not taken for the new window's
    used: int = 0  # our requests in the open window
    blocked_until: float | None = None  # an upper bound of the block's end
    blocked_known: bool = False  # we know when the block started (we saw it start)
    last_probe: float | None = None
    sales_last_window: int = 0  # requests for sales in the previous window (counter demand)
    sales_this_window: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> WindowState:
        state = cls()
        if not isinstance(data, dict):
            return state
        for name, default in asdict(state).items():
            value = data.get(name, default)
            if isinstance(default, bool) or name in ("opening", "blocked_known"):
                setattr(state, name, value if isinstance(value, bool) else default)
            elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                                   and math.isfinite(value)):
                setattr(state, name, value)
            else:
                setattr(state, name, default)
        return state


@dataclass(frozen=True)
class Ticket:
    """A claimed slot: the window it counts in, or a probe of a block (counts in none)."""

    window_seq: int
    probe: bool


@dataclass(frozen=True)
class Snapshot:
    """What `doctor` and the status bar show."""

    name: str
    points: int
    used: int
    left: int  # for a sale now
    left_background: int  # for background work now
    resets_in_s: float | None  # when the open window (or the block) ends
    blocked: bool

    def describe(self) -> str:
        if self.blocked:
            return (f"{self.name}: blocked by the server for up to {self.resets_in_s:.0f} s "
                    "(another terminal of this merchant may have used the limit)")
        text = f"{self.name}: {self.left} of {self.points} left"
        if self.resets_in_s is not None:
            text += f", window resets in {self.resets_in_s:.0f} s"
        return text


class WindowBudget:
    """Pure decisions over a `WindowState`; the caller supplies the time and keeps the state."""

    def __init__(self, limit: WindowLimit, state: WindowState | None = None) -> None:
        self.limit = limit
        self.state = state if state is not None else WindowState()

    # --------------------------------------------------------------------------- decisions
    def roll(self, now: float) -> None:
        """Forget a window or block that has certainly ended."""
        s = self.state
        if s.blocked_until is not None and now >= s.blocked_until:
            s.blocked_until, s.blocked_known, s.last_probe = None, False, None
            self._close_window()
        if s.window_end is not None and not s.opening and now >= s.window_end:
            self._close_window()
        if s.window_end is not None and now < s.window_end - self._horizon():
            self._close_window()  # the clock went back further than any window: start afresh

    def reserve(self) -> int:
        """Slots background work leaves free: the base, plus what sales used last window."""
        demand = max(self.state.sales_last_window, self.state.sales_this_window)
        return min(self.limit.points - 1, self.limit.max_reserve,
                   self.limit.reserve + demand)

    def wait_s(self, now: float, *, background: bool = False) -> float:
        """0 when a request may go now; else how long until one may."""
        self.roll(now)
        s = self.state
        if s.blocked_until is not None:
            if s.blocked_known or not background:
                # A sale may probe an unknown block at once (free); a known one is waited out.
                return max(0.0, s.blocked_until - now) if s.blocked_known else 0.0
            if s.last_probe is None:
                return 0.0
            return max(0.0, min(s.blocked_until, s.last_probe + self._probe_s()) - now)
        allowed = self.limit.points - (self.reserve() if background else 0)
        if s.used < allowed:
            return 0.0
        if s.window_end is None or s.opening:
            return self.limit.duration_s + self.limit.margin_s  # unknown yet: a window at most
        return max(0.0, s.window_end - now)

    def take(self, now: float, *, background: bool = False) -> Ticket | None:
        """Claim a slot for a request about to be sent, or None when none is free now
        (`wait_s` says for how long)."""
        if self.wait_s(now, background=background) > 0:
            return None
        s = self.state
        if s.blocked_until is not None:
            s.last_probe = now  # a probe of a block: it does not count in any window
            return Ticket(s.window_seq, probe=True)
        if s.window_end is None:
            s.window_seq += 1
            s.window_end, s.opening, s.used = now + self._horizon(), True, 0
        s.used += 1
        if not background:
            s.sales_this_window += 1
        return Ticket(s.window_seq, probe=False)

    def answered(self, now: float, ticket: Ticket) -> None:
        """The request has been answered, or failed in a way that may have reached the server.
        The server opened the window when the first of its requests arrived, before now: the
        window ends `duration_s` (+ margin) from now at the latest."""
        s = self.state
        if s.opening and not ticket.probe and ticket.window_seq == s.window_seq:
            s.window_end, s.opening = now + self.limit.duration_s + self.limit.margin_s, False

    def release(self, now: float, ticket: Ticket) -> None:
        """The request certainly never reached the server: give its slot back."""
        s = self.state
        if ticket.probe or ticket.window_seq != s.window_seq or s.used == 0:
            return
        s.used -= 1
        if s.used == 0 and s.opening:
            s.window_end, s.opening = None, False

    def refused(self, now: float, retry_after_s: float | None = None) -> None:
        """The server refused a request as over its limit (`retry_after_s` when it said when)."""
        s = self.state
        if self.limit.block_s > 0:
            # The block started on or before the refused request's arrival: it ends by now+block.
            s.blocked_until = now + self.limit.block_s + self.limit.margin_s
            s.blocked_known = False
            s.last_probe = now
        else:
            wait = retry_after_s if retry_after_s is not None else self.limit.duration_s
            s.window_end = now + max(wait, 0.0) + self.limit.margin_s
            s.opening = False
            s.used = self.limit.points

    # --------------------------------------------------------------------------- reporting
    def snapshot(self, now: float) -> Snapshot:
        self.roll(now)
        s = self.state
        blocked = s.blocked_until is not None
        resets = None
        if blocked:
            resets = max(0.0, (s.blocked_until or now) - now)
        elif s.window_end is not None:
            resets = max(0.0, s.window_end - now)
        used = 0 if blocked else s.used
        left = 0 if blocked else max(0, self.limit.points - used)
        left_bg = 0 if blocked else max(0, self.limit.points - self.reserve() - used)
        return Snapshot(self.limit.name, self.limit.points, used, left, left_bg, resets, blocked)

    def time_for(self, count: int, now: float) -> float:
        """Seconds until `count` more background requests can have gone out, pacing at the
        limit from now on (0 when they fit in what is left now). The drain-time estimate."""
        if count <= 0:
            return 0.0
        self.roll(now)
        s = self.state
        per_window = max(1, self.limit.points - self.reserve())
        window = self.limit.duration_s + self.limit.margin_s
        if s.blocked_until is not None:
            start, left_now = max(0.0, s.blocked_until - now), 0
        elif s.window_end is None:
            start, left_now = 0.0, 0
        else:
            left_now = max(0, per_window - s.used)
            start = max(0.0, s.window_end - now)
        remaining = count - left_now
        if remaining <= 0:
            return 0.0
        windows = math.ceil(remaining / per_window)
        # The first new window opens at `start`; its slots go at once, each later one a window on.
        return start + (windows - 1) * window

    # --------------------------------------------------------------------------- helpers
    def _close_window(self) -> None:
        s = self.state
        if s.window_end is not None:
            s.sales_last_window, s.sales_this_window = s.sales_this_window, 0
        s.window_end, s.opening, s.used = None, False, 0

    def _horizon(self) -> float:
        return self.limit.duration_s + self.limit.block_s + 2 * self.limit.margin_s + 1.0

    def _probe_s(self) -> float:
        return min(BLOCK_PROBE_S, self.limit.block_s / 4) if self.limit.block_s else BLOCK_PROBE_S


@dataclass
class BudgetState:
    """Everything one backend's budget remembers (one JSON object on disk)."""

    invoices: WindowState = field(default_factory=WindowState)
    api_key: WindowState = field(default_factory=WindowState)

    def to_json(self) -> dict[str, Any]:
        return {"invoices": self.invoices.to_json(), "api_key": self.api_key.to_json()}

    @classmethod
    def from_json(cls, data: object) -> BudgetState:
        if not isinstance(data, dict):
            return cls()
        return cls(WindowState.from_json(data.get("invoices")),
                   WindowState.from_json(data.get("api_key")))


@runtime_checkable
class InvoicePacer(Protocol):
    """What the sync worker and the status bar ask a backend's budget (optional on a backend)."""

    def invoice_wait_s(self, now: float, *, background: bool = True) -> float:
        """0 when an invoice may be created now; else how long until one may."""
        ...

    def drain_time_s(self, count: int, now: float) -> float:
        """How long `count` background invoices take to create at the backend's limit."""
        ...

    def describe(self, now: float) -> list[str]:
        """One line per limit: what is left, when it resets, whether blocked."""
        ...


__all__ = [
    "BLOCK_PROBE_S",
    "FLASH_API_KEY_LIMIT",
    "FLASH_INVOICE_LIMIT",
    "BudgetState",
    "InvoicePacer",
    "Snapshot",
    "Ticket",
    "WindowBudget",
    "WindowLimit",
    "WindowState",
]
