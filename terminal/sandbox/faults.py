"""Fault injection and latency for the sandbox: what a flaky gateway, phone network or issuer does.

One `Faults` record is shared by every route. Durable settings (latency, a WebSocket that never
pushes) stay until changed; one-shot faults are counters ("the next 2 GraphQL requests answer 502")
that each affected request consumes, so tests can say exactly which request fails.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any

# Route names used as keys of `latency_s` and `server_error_next`.
ROUTES = ("graphql", "ws", "ln", "ln_callback", "sandbox_pay")
ALL_ROUTES = "*"


class FaultsError(ValueError):
    """An admin request asked for a fault setting that does not exist or has the wrong type."""


@dataclass
class Faults:
    # Seconds added before answering, per route name (or "*" for every route).
    latency_s: dict[str, float] = field(default_factory=dict)
    # Next N HTTP requests on a route answer `server_error_status` with an HTML gateway page.
    server_error_next: dict[str, int] = field(default_factory=dict)
    server_error_status: int = 502
    # Next N GraphQL HTTP requests answer 200 with a truncated JSON body.
    malformed_json_next: int = 0
    # Next N requests made WITH AN API KEY answer as if the key's limit were used up (HTTP 200,
    # TOO_MANY_REQUESTS, retryAfterSeconds = retry_after_s). Anonymous requests are not limited.
    rate_limit_next: int = 0
    retry_after_s: float = 30
    # Next N invoice creations are refused for good: "Account is inactive." (INVALID_INPUT), what
    # Flash answers for a suspended merchant account, before the invoice limit counts.
    invoice_create_error_next: int = 0
    # Next N calls to the Lightning provider (creation, status query, transaction details)
    # fail: IBEX_ERROR, Flash's answer for any provider failure.
    ibex_error_next: int = 0
    # Next N WebSocket connections are dropped (close 1011) after `ws_drop_after_messages`
    # server messages (1 = right after connection_ack).
    ws_drop_next: int = 0
    ws_drop_after_messages: int = 1
    # Subscriptions never push updates (the client must fall back to polling).
    ws_silent: bool = False
    # Next N LNURL-withdraw callbacks are declined with `decline_reason`.
    decline_withdraw_next: int = 0
    decline_reason: str = "Payment declined by issuer"
    # Callback answers OK "payment pending" at once and pays after this many seconds (BTCPay-like);
    # None pays before answering.
    withdraw_pay_delay_s: float | None = None
    # HTTP status of LNURL error bodies: 200 like the boltcard service / LNbits, 400 like BTCPay.
    lnurl_error_http_status: int = 200
    # Advertise this maxWithdrawable (msat) instead of the real balance-capped one.
    advertise_max_withdrawable_msat: int | None = None
    # Payments the merchant's wallet sends (lnInvoicePaymentSend), as IBEX behaves:
    # next N sends answer PENDING (cached under the key, as Flash caches it): the wallet is
    # debited now and the payment settles `send_pending_settle_s` later (None: it stays in
    # flight until `SandboxCore.finish_pending`), or fails then if `send_pending_fails`.
    send_pending_next: int = 0
    send_pending_settle_s: float | None = None
    send_pending_fails: bool = False
    # Next N sends debit the wallet and pay, then answer IBEX's generic error ("An unexpected
    # error occurred. Please try again later.", status FAILURE, no code) — not cached: the same
    # key sent again pays again. The hole a client must not fall into.
    send_error_after_debit_next: int = 0
    # Next N sends fail for good at the provider (no route): FAILURE, cached, nothing debited.
    send_failure_next: int = 0
    # Taps answer without a LUD-19 payLink (as BTCPay's own cards do).
    withdraw_omit_pay_link: bool = False

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def latency_for(self, route: str) -> float:
        return float(self.latency_s.get(route, self.latency_s.get(ALL_ROUTES, 0.0)))

    def take(self, counter: str, route: str | None = None) -> bool:
        """Consume one shot of a counter fault; True when this request must fail."""
        with self._lock:
            if route is None:
                remaining = getattr(self, counter)
                if remaining > 0:
                    setattr(self, counter, remaining - 1)
                    return True
                return False
            table: dict[str, int] = getattr(self, counter)
            for key in (route, ALL_ROUTES):
                if table.get(key, 0) > 0:
                    table[key] -= 1
                    return True
            return False

    def update(self, changes: dict[str, Any]) -> None:
        """Apply settings by name (the admin endpoint's JSON), checking names and types."""
        names = {f.name: f for f in dataclasses.fields(self) if not f.name.startswith("_")}
        with self._lock:
            for key, value in changes.items():
                if key not in names:
                    raise FaultsError(f"unknown fault setting {key!r}")
                current = getattr(self, key)
                if value is None and names[key].default is None:
                    setattr(self, key, None)  # optional settings switch off with null
                    continue
                if isinstance(current, dict) and not isinstance(value, dict):
                    raise FaultsError(f"fault setting {key!r} takes an object")
                if isinstance(current, bool) and not isinstance(value, bool):
                    raise FaultsError(f"fault setting {key!r} takes true or false")
                numeric = isinstance(current, int | float) and not isinstance(current, bool)
                if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise FaultsError(f"fault setting {key!r} takes a number")
                if isinstance(current, str) and not isinstance(value, str):
                    raise FaultsError(f"fault setting {key!r} takes text")
                setattr(self, key, dict(value) if isinstance(value, dict) else value)

    def reset(self) -> None:
        self.update({k: v for k, v in Faults().as_dict().items()})

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if not f.name.startswith("_")
        }
