"""The till's states and what it reports: steps, payment phases, results and notices.

Everything here is data: the `Till` changes it, screens and scripts read it. Texts are not
decided here (the app's strings are): a result or notice carries a code, its numbers, and the
specific words a server or policy gave, already cleaned.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from terminal.core.tips import TipSettings


class Step(enum.Enum):
    """Where the cashier is in a sale."""

    AMOUNT = "sale"  # keying the amount (and memo)
    TIP = "tip"  # choosing a tip (when tips are on)
    PAY = "pay"  # the invoice is shown / a card is being charged
    RESULT = "result"  # the outcome, until the next action (or the auto-return after success)


class PayPhase(enum.Enum):
    CREATING = "creating"  # the invoice is being created
    WAITING = "waiting"  # QR shown, reader armed
    OFFLINE = "offline"  # no invoice (backend unreachable): a verified card can be queued
    CARD_READ = "card-read"  # a tap is being checked with the issuer
    PIN = "pin"  # the issuer wants the card's PIN
    CONFIRMING = "confirming"  # the issuer took the invoice: waiting for settlement
    EXPIRED = "expired"  # the invoice's time is up (the backend confirms it)


BUSY_PHASES = frozenset({PayPhase.CREATING, PayPhase.CARD_READ, PayPhase.CONFIRMING})


class ResultKind(enum.Enum):
    PAID = "paid"
    QUEUED = "queued"  # accepted offline: paid when the terminal is back online
    REFUSED = "refused"  # this card could not pay; the sale may still be open
    DECLINED = "declined"  # the offline policy refused the card
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNCONFIRMED = "unconfirmed"  # the outcome is not known yet: do not charge again

    @property
    def success(self) -> bool:
        return self in (ResultKind.PAID, ResultKind.QUEUED)

    @property
    def returns_by_itself(self) -> bool:
        """Successes go back to a new sale after `result_seconds`; every other result stays
        on screen until the cashier acts, so its reason is never missed."""
        return self in (ResultKind.PAID, ResultKind.QUEUED, ResultKind.CANCELLED)


@dataclass(frozen=True)
class Result:
    kind: ResultKind
    sale_id: str | None
    amount_minor: int  # tip included
    currency: str
    tip_minor: int = 0
    amount_msat: int | None = None
    method: str | None = None  # card | qr
    code: str | None = None  # reason code (strings "reason.<code>")
    message: str = ""  # the service's specific words (issuer, policy), cleaned
    at: float = 0.0
    sale_open: bool = False  # a refused card leaves the invoice open for another card or QR
    # The card's balance after this result, from the issuer's LUD-14 currentBalance (sent with
    # the tap): less the amount when paid; None when the issuer did not send it.
    card_balance_msat: int | None = None
    cashier: str | None = None  # who rang the sale up


@dataclass(frozen=True)
class Notice:
    """A one-line message over the current screen (a late tap, a tap with no amount, …)."""

    code: str
    text: str = ""  # a server's or policy's own words, when there are any
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TillSettings:
    currencies: tuple[str, ...] = ("USD",)
    tips: TipSettings = TipSettings()
    result_seconds: float = 8.0  # a success goes back to a new sale after this long
    max_sale_minor: dict[str, int] = field(default_factory=dict)  # currency -> largest sale
    min_sale_msat: int = 25_000  # below this no backend takes an invoice (1 US cent ≈ 10–25 sat)
    settle_grace_s: float = 5.0  # how long past the invoice's expiry the screen still waits
    rate_retry_s: float = 5.0  # while a currency has no usable rate, ask again this often
    rate_refresh_s: float = 60.0
    show_card_balance: bool = False  # the card's balance on the result and receipt (privacy)


DEFAULT_MAX_MINOR = {"SAT": 10_000_000, "USD": 1_000_000, "JMD": 150_000_000}
FALLBACK_MAX_MINOR = 10_000_000
