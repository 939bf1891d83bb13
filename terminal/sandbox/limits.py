"""Flash's limits as the sandbox enforces them: the same numbers, windows and blocks as the real
server, written again here on purpose (an independent oracle for the terminal's own budget in
`terminal.core.budget`; do not fold the two together).

Sources (lnflash/flash at 892346e):
- `config/schema.ts` rateLimits.invoiceCreateAttempt / invoiceCreateForRecipientAttempt:
  20 points per 120 s, blockDuration 300 s, keyed by the recipient's ACCOUNT id (all its
  terminals share it); the two mutations (own wallet, on behalf of) count separately.
- `services/rate-limit/api-keys.ts`: per API key, `rate_limit` claim or 120 per 60 s, no block;
  refused with HTTP 200, `extensions: {code: "TOO_MANY_REQUESTS", retryAfterSeconds}`.
- rate-limiter-flexible (RateLimiterRedis): a key's window opens at its first request and lasts
  `duration`; the request that goes over `points` blocks the key for `blockDuration` from then;
  requests refused during a block do not extend it.
- `domain/bitcoin/lightning/invoice-expiration.ts`: IBEX caps every USD receive invoice at 60 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class FlashLimits:
    invoice_points: int = 20
    invoice_window_s: float = 120.0
    invoice_block_s: float = 300.0
    key_points: int = 120
    key_window_s: float = 60.0
    enforce: bool = True  # False: no rate limits at all (the drain benchmark's terminal cost)
    usd_invoice_expiry_s: float = 60.0  # whatever expiresIn says
    expired_push_delay_s: float = 1.0  # the subscription pushes EXPIRED at expiry + this
    purge_after_s: float = 24 * 3600.0  # the provider forgets an invoice this long past expiry
    paid_push_delay_s: float = 0.0  # the webhook that pushes PAID arrives this late

    def scaled(self, factor: float) -> FlashLimits:
        """Every duration times `factor` (0.01: a 120 s window lasts 1.2 s), numbers unchanged."""
        return replace(
            self,
            invoice_window_s=self.invoice_window_s * factor,
            invoice_block_s=self.invoice_block_s * factor,
            key_window_s=self.key_window_s * factor,
            usd_invoice_expiry_s=self.usd_invoice_expiry_s * factor,
            expired_push_delay_s=self.expired_push_delay_s * factor,
            purge_after_s=self.purge_after_s * factor,
            paid_push_delay_s=self.paid_push_delay_s * factor,
        )


UNLIMITED = FlashLimits(enforce=False)


@dataclass
class _Key:
    opened_at: float
    expires_at: float
    consumed: int = 0
    blocked: bool = False


@dataclass
class FixedWindowLimiter:
    """rate-limiter-flexible's fixed window with an optional block, in memory."""

    points: int
    duration_s: float
    block_s: float = 0.0
    _keys: dict[str, _Key] = field(default_factory=dict)
    blocks: int = 0  # how many times a key was blocked (tests and benchmarks read it)

    def consume(self, key: str, now: float) -> float | None:
        """None when allowed; else seconds until the key accepts again (msBeforeNext)."""
        entry = self._keys.get(key)
        if entry is None or now >= entry.expires_at:
            entry = _Key(opened_at=now, expires_at=now + self.duration_s)
            self._keys[key] = entry
        entry.consumed += 1
        if entry.consumed <= self.points:
            return None
        if self.block_s > 0 and entry.consumed == self.points + 1:
            entry.expires_at, entry.blocked = now + self.block_s, True  # only the first blocks
            self.blocks += 1
        return max(0.0, entry.expires_at - now)

    def reset(self) -> None:
        self._keys.clear()
        self.blocks = 0

    def state(self, key: str, now: float) -> dict[str, float | int | bool]:
        entry = self._keys.get(key)
        if entry is None or now >= entry.expires_at:
            return {"used": 0, "left": self.points, "resets_in_s": 0.0, "blocked": False}
        return {
            "used": min(entry.consumed, self.points),
            "left": max(0, self.points - entry.consumed),
            "resets_in_s": round(entry.expires_at - now, 3),
            "blocked": entry.blocked,
        }


def retry_after_seconds(wait_s: float, *, whole: bool = True) -> float:
    """As the key limiter reports it: whole seconds, at least 1 (`whole=False` on a scaled clock,
    where a window lasts less than a second: milliseconds)."""
    if whole:
        return max(1, math.ceil(wait_s))
    return max(0.001, round(wait_s, 3))
