"""The sale state machine (core, no I/O).

A sale moves through an explicit transition table. Online:

    CREATED ─invoice_ready→ INVOICED ─tap→ CARD_READ ─withdraw_requested→ WITHDRAW_REQUESTED
        ─callback_sent→ CALLBACK_SENT ─paid→ PAID
    INVOICED (QR shown) ─paid→ PAID;  any open state ─expired→ EXPIRED | ─fail→ FAILED
    CARD_READ / WITHDRAW_REQUESTED / CALLBACK_SENT ─tap_failed→ INVOICED (this card could not
        pay and NOTHING was sent: the invoice is still open for another card or the QR)
    CALLBACK_SENT ─issuer_refused→ UNCONFIRMED (the issuer answered the callback with a refusal
        and the invoice is still open: servers answer ERROR while an HTLC is in flight, so the
        money may still arrive)
    UNCONFIRMED ─paid→ PAID | ─expired→ EXPIRED | ─cancel→ CANCELLED (the merchant gives up;
        the invoice is still watched and a late payment still counts) | ─tap→ CARD_READ (the
        same card again, e.g. after a wrong PIN, or another card: it pays the SAME invoice, and
        an invoice is paid at most once, so nothing can be charged twice)

Guard, once a payment has left (a callback was sent and not rolled back as never sent): the
sale never returns to INVOICED and is never FAILED. `tap_failed` then leads to UNCONFIRMED, and
`fail` is refused: only the invoice ends the sale (paid, expired, or cancelled and watched).
    CREATED or any open online state ─invoice_replayed→ FAILED (the invoice's payment hash
        belongs to another sale: it can never pay this one)
    any open online state ─underpaid→ FAILED (part of the amount arrived, then the invoice
        expired: BTCPay; a payment of the rest still counts)

A sale with a callback out (CALLBACK_SENT, UNCONFIRMED, or any state after one left) is never
FAILED: only its invoice ends it (paid, or expired unpaid as the backend says).

Offline (the backend is unreachable, the tap was verified locally and approved by the policy):

    CREATED ─queued→ QUEUED ─submitted→ SUBMITTED ─paid→ PAID | ─fail→ FAILED
    CREATED ─declined→ DECLINED (the offline policy refused; the rule is the reason)

A tap that arrives before the invoice exists is held and handed back when the invoice is ready.
After a terminal state the sale accepts no taps: `tap()` answers with a `LateTap` instead of
changing anything. Any other event not in the table raises `IllegalTransition`.

One exception to "terminal is final": a CANCELLED, FAILED or EXPIRED sale whose invoice was paid
anyway (an invoice cannot be revoked; a provider that purged a paid invoice reports it EXPIRED)
becomes PAID by `paid_late`. PAID itself is final, so a sale is paid at most once and never ends
anything but paid after it was paid.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class SaleState(enum.Enum):
    CREATED = "created"
    INVOICED = "invoiced"
    CARD_READ = "card_read"
    WITHDRAW_REQUESTED = "withdraw_requested"
    CALLBACK_SENT = "callback_sent"
    UNCONFIRMED = "unconfirmed"
    QUEUED = "queued"
    SUBMITTED = "submitted"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DECLINED = "declined"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {SaleState.PAID, SaleState.FAILED, SaleState.EXPIRED, SaleState.CANCELLED, SaleState.DECLINED}
)

S = SaleState
_OPEN_ONLINE = (S.INVOICED, S.CARD_READ, S.WITHDRAW_REQUESTED, S.CALLBACK_SENT, S.UNCONFIRMED)
# A callback is out: the money may be moving, so nothing but the invoice may end the sale.
PAYMENT_IN_FLIGHT = frozenset({S.CALLBACK_SENT, S.UNCONFIRMED})

# event -> {from_state: to_state}
TRANSITIONS: dict[str, dict[SaleState, SaleState]] = {
    "invoice_ready": {S.CREATED: S.INVOICED},
    "tap": {S.INVOICED: S.CARD_READ, S.UNCONFIRMED: S.CARD_READ},
    "withdraw_requested": {S.CARD_READ: S.WITHDRAW_REQUESTED},
    "callback_sent": {S.WITHDRAW_REQUESTED: S.CALLBACK_SENT},
    # CALLBACK_SENT → INVOICED only when the callback provably never left (refused before
    # sending, or the issuer could not be connected to).
    "tap_failed": {S.CARD_READ: S.INVOICED, S.WITHDRAW_REQUESTED: S.INVOICED,
                   S.CALLBACK_SENT: S.INVOICED},
    "issuer_refused": {S.CALLBACK_SENT: S.UNCONFIRMED},
    # The invoice's payment hash belongs to another sale (a replayed invoice): this sale can
    # never be paid by it, whatever is in flight (one payment settles one sale).
    "invoice_replayed": {s: S.FAILED for s in (S.CREATED, *_OPEN_ONLINE)},
    # Only part of the amount arrived before the invoice expired (BTCPay): it can no longer be
    # paid as asked, whatever is in flight. A payment of the rest still counts (paid_late).
    "underpaid": {s: S.FAILED for s in _OPEN_ONLINE},
    "paid": {**{s: S.PAID for s in _OPEN_ONLINE}, S.SUBMITTED: S.PAID},
    "expired": {s: S.EXPIRED for s in _OPEN_ONLINE},
    "fail": {**{s: S.FAILED for s in (S.CREATED, *_OPEN_ONLINE) if s not in PAYMENT_IN_FLIGHT},
             S.QUEUED: S.FAILED, S.SUBMITTED: S.FAILED},
    # A callback whose outcome is unknown (CALLBACK_SENT, SUBMITTED) cannot be cancelled: only
    # its outcome ends it. An UNCONFIRMED one can (the issuer said no; the merchant gives up):
    # the invoice stays watched, so a payment that still arrives makes it PAID.
    "cancel": {S.CREATED: S.CANCELLED, S.INVOICED: S.CANCELLED, S.CARD_READ: S.CANCELLED,
               S.WITHDRAW_REQUESTED: S.CANCELLED, S.UNCONFIRMED: S.CANCELLED},
    "queued": {S.CREATED: S.QUEUED},
    "submitted": {S.QUEUED: S.SUBMITTED},
    "declined": {S.CREATED: S.DECLINED},
    # A Lightning invoice cannot be revoked: a wallet may still pay it after the merchant
    # cancelled or the card was refused, and a provider that purged a paid invoice reports it
    # EXPIRED. The backend's record of the payment wins: the money arrived.
    "paid_late": {S.CANCELLED: S.PAID, S.FAILED: S.PAID, S.EXPIRED: S.PAID},
}

# Terminal states a late payment can still move to PAID (until the invoice is known final).
REOPENABLE_BY_PAYMENT = frozenset({S.CANCELLED, S.FAILED, S.EXPIRED})


# Events the "a payment has left" guard changes (see the module docstring).
_GUARDED = frozenset({"fail", "tap_failed"})

# States whose event detail is the sale's reason (why it ended, or why it is unconfirmed).
_REASONED = frozenset({S.FAILED, S.DECLINED, S.EXPIRED, S.CANCELLED, S.UNCONFIRMED})


class IllegalTransition(Exception):
    def __init__(self, sale_id: str, state: SaleState, event: str) -> None:
        super().__init__(f"sale {sale_id}: '{event}' is not allowed in state {state.value}")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Transition:
    at: float
    event: str
    from_state: SaleState
    to_state: SaleState
    detail: str | None = None


@dataclass(frozen=True)
class LateTap:
    """Answer to a tap that the sale can no longer use (it has ended or already has a card)."""

    sale_id: str
    state: SaleState
    message: str


@dataclass
class Sale:
    id: str
    created_at: float
    state: SaleState = SaleState.CREATED
    reason: str | None = None
    pending_tap: Any = field(default=None, repr=False)
    history: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append(
                Transition(self.created_at, "created", SaleState.CREATED, SaleState.CREATED)
            )

    # -- events -------------------------------------------------------------------------------
    def apply(self, event: str, at: float, detail: str | None = None) -> SaleState:
        targets = TRANSITIONS.get(event)
        if targets is None or self.state not in targets:
            raise IllegalTransition(self.id, self.state, event)
        target = targets[self.state]
        if event in _GUARDED and self._payment_left(event):
            if event == "fail":  # the money may still arrive: only the invoice ends the sale
                raise IllegalTransition(self.id, self.state, event)
            target = S.UNCONFIRMED  # tap_failed: back to waiting for the invoice, not INVOICED
        previous, self.state = self.state, target
        if self.state in _REASONED and detail:
            self.reason = detail
        self.history.append(Transition(at, event, previous, self.state, detail))
        return self.state

    def tap(self, tap: Any, at: float) -> LateTap | None:
        """Offer a tap. Returns None when taken (now or held for the invoice), else a LateTap."""
        if self.state.is_terminal:
            return LateTap(self.id, self.state, _late_message(self.state))
        if self.state is SaleState.CREATED:
            if self.pending_tap is not None:
                return LateTap(self.id, self.state, "a card was already tapped for this sale")
            self.pending_tap = tap
            return None
        if self.state not in (SaleState.INVOICED, SaleState.UNCONFIRMED):
            return LateTap(self.id, self.state, "a card is already being charged for this sale")
        self.apply("tap", at)
        return None

    def _payment_left(self, event: str) -> bool:
        """Whether a callback left at some point: every `callback_sent` counts unless the very
        next event rolled it back as never sent (`tap_failed`). A trailing `callback_sent` is
        judged by the event now being applied."""
        for i, t in enumerate(self.history):
            if t.event != "callback_sent":
                continue
            following = self.history[i + 1].event if i + 1 < len(self.history) else event
            if following != "tap_failed":
                return True
        return False

    @property
    def payment_left(self) -> bool:
        """A payment of this sale's invoice may be on its way (see the guard above)."""
        return self._payment_left("")

    def invoice_ready(self, at: float) -> Any:
        """Mark the invoice ready; returns a tap held while it was being created (or None)."""
        self.apply("invoice_ready", at)
        held, self.pending_tap = self.pending_tap, None
        if held is not None:
            self.apply("tap", at)
        return held

    @property
    def is_final(self) -> bool:
        return self.state.is_terminal


def _late_message(state: SaleState) -> str:
    if state is SaleState.PAID:
        return "this sale is already paid: the card was not charged again"
    return f"this sale has ended ({state.value}): start a new sale to charge the card"
