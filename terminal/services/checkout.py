"""One sale end to end: invoice → tap or QR → LNURL-withdraw → settlement (service layer).

`Checkout` is shared by the command line and the touchscreen app; it owns no transport of its
own. Each state change is written to the ledger *before* the side effect it announces
(write-ahead), so a restart at any point can resume from the ledger:
- the invoice is the idempotency key and the backend's invoice status is the truth;
- a tap's counter is stored before any network call, so the same `p`/`c` is never used twice;
- a callback whose outcome is unknown is resolved through the invoice status, never resent;
- once a callback was sent, nothing but the invoice ends the sale: an issuer's refusal is checked
  against the invoice (a bounded wait) and, while the invoice is open, the sale is UNCONFIRMED
  ("not confirmed — do not charge again"), never failed. Servers answer ERROR while an HTLC is
  still in flight;
- one payment, one sale: an invoice whose payment hash another sale holds is refused before it is
  shown or used (`backend-replayed-invoice`), and a payment settles only the sale holding its hash;
- reconcile asks about every invoice the backend has not declared final (`invoice_final`), with
  no time window, so a payment found a day later still counts.

When the backend cannot be used for a while (invoice creation failed with `BackendUnavailable`,
`BackendRateLimited`, a nonsense answer or an unexpected error), a tap verified locally may be
accepted under the offline policy and queued for the sync worker. Only a definite refusal
(`BackendRejected`, `BackendUnauthorized`) fails the sale. No exception from a backend or issuer
call escapes a session: an unexpected one counts as "outcome unknown".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from terminal.core.connectivity import Connectivity
from terminal.core.memo import sale_memo
from terminal.core.money import Money, NoRate, RateError, RatePolicy, currency
from terminal.core.ports.backend import (
    Backend,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    DisplayRate,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
)
from terminal.core.ports.books import CheckoutBooks as Ledger
from terminal.core.ports.withdraw import Withdraw
from terminal.core.records import CardState, PayoutStatus, QueuedPayout, SaleRecord
from terminal.core.risk import OfflineLimits, OfflineTap, decide_offline, explain
from terminal.core.sale import (
    PAYMENT_IN_FLIGHT,
    REOPENABLE_BY_PAYMENT,
    IllegalTransition,
    LateTap,
    Sale,
    SaleState,
)
from terminal.protocols import lnurl
from terminal.protocols.boltcard import Keyring, TapReason, TapVerification

if TYPE_CHECKING:
    from terminal.services.card_policy import CardPolicy

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class TapResult:
    """What the screen shows right after a tap.

    kind: "accepted" (the issuer took the invoice, or it is already paid; wait for
    settlement), "pin-required", "refused" (this card cannot pay and nothing was sent; the sale
    stays open), "queued", "declined" (offline policy), "late" (the sale has ended or already has
    a card), "unknown" (the callback's outcome is unknown: it is being resolved through the
    invoice status), "unconfirmed" (the issuer refused after the callback was sent and the invoice
    is still open: NOT a failure, the money may still arrive; do not charge again).
    """

    kind: str
    code: str | None = None
    message: str = ""
    pin_limit_msat: int | None = None


@dataclass(frozen=True)
class SaleOutcome:
    # paid | queued (final or as good as paid) | failed | expired | cancelled | declined (ended,
    # unpaid) | unconfirmed | pending (NOT final: the money may still arrive; never charge again)
    status: str
    sale_id: str
    reason: str | None
    message: str
    payment_hash: str | None
    amount_msat: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "sale_id": self.sale_id,
            "payment_hash": self.payment_hash,
            "amount_msat": self.amount_msat,
        }


RATE_META_PREFIX = "rate:"
WATCH_RETRY_BASE_S = 0.5
# After an issuer's refusal of a sent callback: how long to follow the invoice before answering
# "unconfirmed" (configurable: [lnurl] confirm_timeout_s).
CONFIRM_TIMEOUT_S = 5.0
# An EXPIRED status seen further than this from the invoice's expiry may come from a provider
# that purged the invoice, paid or not (Flash): it is checked against the wallet's payments.
EXPIRED_TRUST_S = 600.0  # as the sync worker's SyncPolicy.expired_trust_s
REASON_REPLAYED_INVOICE = "backend-replayed-invoice"
# EXPIRED read long after expiry by a backend or key that cannot search the wallet's payments
# (Flash receive-only, a key without read_transactions): recorded, but named as unverified.
REASON_EXPIRED_UNVERIFIED = "expired-unverified"
EXPIRED_UNVERIFIED_TEXT = (
    "The backend reports the invoice expired, but it was checked long after expiry, when a paid "
    "invoice can read the same, and this terminal cannot search the wallet's payments (an API "
    "key with read_transactions can). Check the wallet before charging again."
)


class _Unverifiable:
    """The answer of a payment lookup this backend or key cannot make."""


UNVERIFIABLE = _Unverifiable()
REASON_NOT_SUPPORTED = "not-supported"  # BackendError.reason() of code "not_supported"
UNCONFIRMED_TEXT = (
    "Not confirmed — do not charge again. The card's issuer answered \u201c{reason}\u201d after "
    "the payment was sent, so the money may still arrive. This sale stays open: the card can be "
    "tapped again or the QR paid (the same invoice, paid at most once); never start a new sale "
    "for it."
)
WATCH_RETRY_MAX_S = 8.0

TAP_MESSAGES = {
    TapReason.MALFORMED: "This card's data could not be read. Ask the customer to tap again.",
    TapReason.CMAC_MISMATCH: "This card failed its security check (forged or altered data).",
    TapReason.UNKNOWN_ISSUER: "This card is not from an issuer configured on this terminal.",
}


# --------------------------------------------------------------------------- checkout


class Checkout:
    def __init__(
        self,
        *,
        backend: Backend,
        withdraw: Withdraw,
        keyring: Keyring,
        ledger: Ledger,
        terminal_id: str,
        network: str,
        offline_limits: OfflineLimits | None = None,
        rates: RatePolicy | None = None,
        connectivity: Connectivity | None = None,
        invoice_expiry_s: int = 300,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        card_policy: CardPolicy | None = None,
    ) -> None:
        self.backend = backend
        self.withdraw = withdraw
        self.keyring = keyring
        self.ledger = ledger
        self.terminal_id = terminal_id
        self.network = network
        self.offline_limits = offline_limits or OfflineLimits()
        self.rates = rates or RatePolicy()
        self.connectivity = connectivity or Connectivity()
        self.invoice_expiry_s = invoice_expiry_s
        self.confirm_timeout_s = confirm_timeout_s
        self.clock = clock
        self.card_policy = card_policy  # hotlist, per-card limits, unknown cards (None: none)

    async def open_sale(self, amount_minor: int, currency_code: str, memo: str = "", *,
                        tip_minor: int = 0, cashier: str | None = None) -> SaleSession:
        """Record the sale, then create its invoice. Offline, the session can still queue a tap.
        `amount_minor` includes the tip; `tip_minor` is its share; `cashier` who rang it up."""
        session = self.start_sale(amount_minor, currency_code, memo, tip_minor=tip_minor,
                                  cashier=cashier)
        await session.create_invoice()
        return session

    def start_sale(self, amount_minor: int, currency_code: str, memo: str = "", *,
                   tip_minor: int = 0, cashier: str | None = None) -> SaleSession:
        """Record the sale without asking for its invoice yet (`SaleSession.create_invoice`): a
        caller with a deadline holds the session even when the invoice never comes."""
        if not 0 <= tip_minor <= amount_minor:
            raise ValueError("the tip must lie between 0 and the amount")
        code = currency(currency_code).code
        now = self.clock()
        record = SaleRecord(
            id=uuid.uuid4().hex,
            created_at=now,
            amount_minor=amount_minor,
            currency=code,
            memo=memo,
            tip_minor=tip_minor,
            terminal_id=self.terminal_id,
            updated_at=now,
            cashier=cashier,
        )
        session = SaleSession(self, record, record.to_sale())
        session.persist()
        return session

    async def refresh_rate(self, currency_code: str) -> None:
        """Fetch the display rate; a failure leaves the last good rate (and its age) in place."""
        if currency(currency_code).is_sat:
            return
        try:
            rate = await self.backend.display_rate(currency_code)
        except Exception as exc:  # noqa: BLE001 - any backend fault: keep the last good rate
            self._backend_fault(exc, f"rate for {currency_code}")
            return
        now = self.clock()
        self.connectivity.success(now)
        try:
            self.rates.accept(rate, now=now)
        except RateError as exc:  # a zero or negative rate is refused, the last good one kept
            log.warning("rate for %s refused: %s", currency_code, exc.message)
            return
        # Kept in the ledger so a restart while offline can still price (its age keeps running).
        self.ledger.set_meta(f"{RATE_META_PREFIX}{rate.currency}", {
            "minor_per_sat": str(rate.minor_per_sat),
            "fraction_digits": rate.fraction_digits,
            "timestamp": rate.timestamp,
            "received_at": now,
        })

    def restore_rates(self, currencies: Iterable[str]) -> None:
        """Load the last good rates kept in the ledger (call once at start)."""
        for code in currencies:
            kept = self.ledger.get_meta(f"{RATE_META_PREFIX}{code}")
            if not isinstance(kept, dict):
                continue
            try:
                rate = DisplayRate(code, Decimal(kept["minor_per_sat"]),
                                   int(kept["fraction_digits"]), float(kept["timestamp"]))
                self.rates.accept(rate, now=float(kept["received_at"]))
            except (KeyError, ValueError, ArithmeticError, RateError) as exc:
                log.warning("kept rate for %s ignored: %s", code, exc)

    def resume(self, sale_id: str) -> SaleSession:
        record = self.ledger.get_sale(sale_id)
        if record is None:
            raise KeyError(sale_id)
        return SaleSession(self, record, record.to_sale())

    async def recover(self, skip: Collection[str] = ()) -> list[SaleOutcome]:
        """After a restart (and now and then while running): settle every open sale through
        its invoice status, and catch payments of cancelled, failed or unconfirmed sales. Every
        sale whose invoice the backend has not declared final is asked about, however old (no
        time window); each is asked until its invoice is final, then never again. `skip` names
        sales another session is driving right now (the one on screen): two sessions writing
        one record would undo each other's state."""
        outcomes = []
        seen = set(skip)
        for record in self.ledger.open_sales() + self.ledger.sales_awaiting_invoice():
            if record.id in seen:
                continue
            seen.add(record.id)
            session = SaleSession(self, record, record.to_sale())
            outcomes.append(await session.reconcile())
        return outcomes

    def _observe_failure(self, exc: BackendError) -> None:
        if isinstance(exc, BackendUnavailable):
            self.connectivity.failure(self.clock(), exc.message)

    def _backend_fault(self, exc: Exception, what: str) -> None:
        """A backend call failed: note it, never raise. An exception that is not a
        BackendError is a bug below us: its traceback goes to the debug log only."""
        if isinstance(exc, BackendError):  # expected now and then: the outcome says it
            self._observe_failure(exc)
            log.info("%s failed: %s", what, lnurl.clean_reason(exc.message))
        else:
            log.warning("%s failed: unexpected %s from the backend", what, type(exc).__name__)
            log.debug("%s: backend traceback", what, exc_info=exc)


class SaleSession:
    """One sale in progress. Methods are called from the event loop, one at a time."""

    def __init__(self, checkout: Checkout, record: SaleRecord, sale: Sale) -> None:
        self.checkout = checkout
        self.record = record
        self.sale = sale
        self.invoice: Invoice | None = record.invoice()
        self.offline = False
        self._pending_request: lnurl.WithdrawRequest | None = None
        self._message = ""
        # LUD-14 `currentBalance` of the card that tapped (before this payment), when sent.
        self.card_balance_msat: int | None = None

    # -- persistence ----------------------------------------------------------------------------
    def persist(self) -> None:
        self.record.follow(self.sale)
        self.record.updated_at = self.checkout.clock()
        self.checkout.ledger.save_sale(self.record)

    def _apply(self, event: str, detail: str | None = None) -> None:
        self.sale.apply(event, self.checkout.clock(), detail)
        self.persist()

    @property
    def state(self) -> SaleState:
        return self.sale.state

    # -- invoice --------------------------------------------------------------------------------
    async def create_invoice(self) -> None:
        co = self.checkout
        request = InvoiceRequest(
            amount_minor=self.record.amount_minor,
            currency=self.record.currency,
            memo=sale_memo(self.record.memo or f"Sale {self.record.id[:8]}",
                          terminal_id=co.terminal_id, sale_id=self.record.id),
            idempotency_key=self.record.id,
            expires_in_s=co.invoice_expiry_s,
            metadata={"saleId": self.record.id, "terminalId": co.terminal_id},
        )
        try:
            invoice = await co.backend.create_invoice(request)
        except (BackendRejected, BackendUnauthorized) as exc:  # a definite refusal
            self._message = lnurl.clean_reason(exc.message) or "The backend refused the invoice."
            default = ("backend-unauthorized" if isinstance(exc, BackendUnauthorized)
                       else "backend-refused")
            self._apply("fail", backend_reason(exc, default))
            return
        except Exception as exc:  # noqa: BLE001 - unreachable, rate-limited, nonsense, a bug
            # Not a refusal: no invoice reached anyone, so nothing can be paid. The sale stays
            # open: a verified card may still be accepted offline (the offline policy decides).
            co._backend_fault(exc, f"sale {self.record.id[:8]}: invoice creation")
            self.offline = True
            self._message = _offline_text(exc)
            return
        holder = co.ledger.find_sale_by_payment_hash(invoice.payment_hash.lower())
        if holder is not None and holder.id != self.record.id:
            # A replay, a caching proxy or a backend bug: paying it would pay the other sale's
            # invoice (or nothing at all) while this sale counted it again. Never shown or used.
            log.error("sale %s: the backend returned the invoice of sale %s; refused",
                      self.record.id[:8], holder.id[:8])
            self._message = (
                "The backend answered with an invoice that belongs to another sale "
                f"({holder.id[:8]}): it was not shown and nothing was charged. Try again; if it "
                "happens again, check the backend.")
            self._apply("invoice_replayed", REASON_REPLAYED_INVOICE)
            return
        co.connectivity.success(co.clock())
        self.invoice = invoice
        self.record.bolt11 = invoice.bolt11
        self.record.payment_hash = invoice.payment_hash
        self.record.priced(invoice.amount_msat)
        self.record.invoice_ref = invoice.backend_ref
        self.record.invoice_expires_at = invoice.expires_at
        if self.record.amount_msat and self.record.currency != "SAT":
            sats = Decimal(invoice.amount_msat) / 1000
            self.record.rate_minor_per_sat = str(Decimal(self.record.amount_minor) / sats)
        # Taps reach a session only after open_sale returns, so nothing is held here; the UI
        # keeps a tap that arrives while the invoice is being created and passes it on.
        self.sale.invoice_ready(co.clock())
        self.persist()

    # -- taps -----------------------------------------------------------------------------------
    async def tap(self, url: str, pin: str | None = None) -> TapResult:
        """Handle one card tap (the URL read once from the card)."""
        co = self.checkout
        if self.sale.is_final:
            late = LateTap(self.record.id, self.sale.state, "")
            return TapResult("late", "sale-ended", _late_text(late.state))
        verification = co.keyring.verify_tap(url)
        if (verification.reason is TapReason.CMAC_MISMATCH and co.card_policy is not None
                and co.card_policy.issuer_decides(url)):
            # Unverifiable here, not proven forged: an unknown card for the host's policy.
            verification = TapVerification(False, TapReason.UNKNOWN_ISSUER,
                                           detail=verification.detail)
        if verification.reason is not None and verification.reason is not TapReason.UNKNOWN_ISSUER:
            return TapResult("refused", verification.reason.value,
                             TAP_MESSAGES.get(verification.reason, verification.detail))
        refusal = self._card_policy_refusal(url, verification)
        if refusal is not None:
            return refusal
        online = not (self.offline or self.invoice is None)
        verified = verification.card
        if verified is not None and online and co.ledger.card(verified.card_id).queued_msat:
            # Paying online now would send the issuer a higher counter than the queued
            # offline taps, and it would then refuse those as replays: sync them first.
            return TapResult(
                "refused", "queued-payments-pending",
                "This card has offline payments still waiting to be sent. They are being "
                "sent now: ask the customer to tap again in a moment, or pay by QR.",
            )
        if verified is not None:
            previous = co.ledger.advance_counter(
                verified.card_id, verified.issuer, verified.counter
            )
            if previous >= verified.counter:
                return TapResult(
                    "refused", "replayed-tap",
                    "This tap was already used (replayed card data). Ask the customer to tap "
                    "again.",
                )
        else:
            previous = -1
        if self.offline or self.invoice is None:
            return self._tap_offline(url, verification, previous)
        return await self._tap_online(url, verification, pin)

    def _card_policy_refusal(self, url: str, v: TapVerification) -> TapResult | None:
        """The card policy hook (terminal.services.card_policy), right after the SUN check and
        before any network call or the offline decision: a blocked card, a card over its limits
        or an unknown card its host's policy refuses. Nothing is recorded on the sale: it stays
        open for another card (or the QR)."""
        policy = self.checkout.card_policy
        if policy is None:
            return None
        online = not (self.offline or self.invoice is None)
        if online and self.invoice is not None:
            amount: int | None = self.invoice.amount_msat
        else:
            try:
                money = Money(self.record.amount_minor, currency(self.record.currency))
                amount = int(self.checkout.rates.price(money, now=self.checkout.clock())[0].value)
            except RateError:
                amount = None  # the offline path declines it for want of a rate anyway
        refusal = policy.check(v, url, amount_msat=amount, online=online)
        return None if refusal is None else TapResult("refused", refusal.code, refusal.message)

    async def _tap_online(self, url: str, v: TapVerification, pin: str | None) -> TapResult:
        co = self.checkout
        # UNCONFIRMED takes a card too: it pays the same invoice, which is paid at most once.
        if self.sale.state not in (SaleState.INVOICED, SaleState.UNCONFIRMED):
            return TapResult("late", "card-in-progress",
                             "A card is already being charged for this sale.")
        self.sale.apply("tap", co.clock())
        self.record.method = "card"
        self.record.card_id = v.card_id
        self.record.issuer = v.issuer
        self.record.counter = v.counter
        self.persist()
        try:
            request = await co.withdraw.fetch_request(url)
        except lnurl.LnurlError as exc:
            return self._tap_refused(exc)
        except Exception as exc:  # noqa: BLE001 - a bug below us; no money moves at the GET
            log.warning("sale %s: unexpected %s fetching the withdraw request",
                        self.record.id[:8], type(exc).__name__)
            log.debug("withdraw request traceback", exc_info=exc)
            return self._tap_refused(lnurl.IssuerGarbage("unexpected error"))
        if self.state is not SaleState.CARD_READ:  # paid by QR or cancelled meanwhile
            return TapResult("late", "sale-ended", _late_text(self.sale.state))
        self.card_balance_msat = request.current_balance_msat
        self._apply("withdraw_requested")
        self._pending_request = request
        return await self.submit(pin)

    async def submit(self, pin: str | None = None) -> TapResult:
        """Send the invoice to the issuer (again only after a PIN was asked for; never twice)."""
        co = self.checkout
        request = self._pending_request
        if request is None or self.invoice is None:
            return TapResult("late", "no-pending-tap", "There is no card waiting for a PIN.")
        if self.sale.state is not SaleState.WITHDRAW_REQUESTED:  # ended while the PIN was typed
            self._pending_request = None
            return TapResult("late", "sale-ended", _late_text(self.sale.state))
        amount = self.invoice.amount_msat
        try:
            lnurl.check_amount(request, amount, pin)
        except lnurl.PinRequired:
            return TapResult("pin-required", "pin-required", "Enter the card's PIN.",
                             pin_limit_msat=request.pin_limit_msat)
        except lnurl.LnurlError as exc:
            return self._tap_refused(exc)
        self._pending_request = None
        self._apply("callback_sent")  # write-ahead: from here the outcome may be "sent"
        try:
            accepted = await co.withdraw.submit(request, self.invoice.bolt11, amount, pin)
        except lnurl.CallbackOutcomeUnknown:
            return _outcome_unknown()
        except lnurl.IssuerError as exc:
            # The issuer answered, and said no. It may be paying anyway (an HTLC in flight):
            # only the invoice can tell.
            return await self._confirm_after_refusal(exc)
        except lnurl.LnurlError as exc:  # refused before sending, or never connected: not sent
            return self._tap_refused(exc)
        except Exception as exc:  # noqa: BLE001 - a bug below us: the callback may have left
            log.warning("sale %s: unexpected %s sending the callback; outcome unknown",
                        self.record.id[:8], type(exc).__name__)
            log.debug("callback traceback", exc_info=exc)
            return _outcome_unknown()
        return TapResult("accepted", None, accepted.reason or "Payment sent, confirming…")

    async def _confirm_after_refusal(self, exc: lnurl.IssuerError) -> TapResult:
        """Follow the invoice a few seconds before answering; never `failed` while it is open."""
        co = self.checkout
        log.info("sale %s: the issuer refused the sent callback (%s); checking the invoice",
                    self.record.id[:8], exc.code)
        if co.confirm_timeout_s > 0:
            await self.wait_settled(co.confirm_timeout_s)
        else:
            await self.reconcile()
        if self.sale.state is SaleState.PAID:
            return TapResult("accepted", None, "Paid.")
        if self.sale.is_final:  # the invoice expired unpaid meanwhile: the refusal stands
            return TapResult("refused", exc.code, exc.user_message)
        self._apply("issuer_refused", exc.code)
        self._message = UNCONFIRMED_TEXT.format(reason=exc.reason or exc.code)
        return TapResult("unconfirmed", exc.code, self._message)

    def _tap_refused(self, exc: lnurl.LnurlError) -> TapResult:
        code = getattr(exc, "code", None) or "issuer-error"
        message = getattr(exc, "user_message", None) or str(exc)
        self._pending_request = None
        if not self.sale.is_final and self.sale.state in (
            SaleState.CARD_READ, SaleState.WITHDRAW_REQUESTED, SaleState.CALLBACK_SENT
        ):
            # Keep which card was refused in the history (its keyed id, never the UID).
            why_unconfirmed = self.sale.reason if self.sale.payment_left else None
            self._apply("tap_failed", f"{code} card {self.record.card_id or '?'}")
            if self.state is SaleState.UNCONFIRMED:  # (re-read: apply moved it)
                # An earlier payment may still arrive (the guard kept the sale UNCONFIRMED):
                # its reason stays the one that made it unconfirmed.
                self.sale.reason = why_unconfirmed or code
                self.persist()
        return TapResult("refused", code, message)

    def _tap_offline(self, url: str, v: TapVerification, previous: int) -> TapResult:
        co = self.checkout
        if self.sale.state is not SaleState.CREATED:
            return TapResult("late", "sale-ended", _late_text(self.sale.state))
        try:
            amount_msat = self._offline_amount_msat()
        except RateError as exc:
            self._decline("offline-no-rate", str(exc))
            return TapResult("declined", "offline-no-rate", str(exc))
        self.record.priced(amount_msat)  # shown on a decline too
        verified = v.card
        card = co.ledger.card(verified.card_id) if verified else CardState(card_id="?")
        tap = OfflineTap(
            verified=v.valid,
            counter=v.counter,
            last_counter=previous,
            amount_msat=amount_msat,
            card_queued_msat=card.queued_msat,
            card_blocked=card.blocked,
        )
        exposure = co.ledger.exposure()
        decision = decide_offline(tap, exposure, co.offline_limits, co.clock())
        if not decision.accepted or verified is None:
            message = (explain(decision.rule, co.offline_limits, tap, exposure)
                       if decision.rule is not None else decision.message)
            self._decline(decision.code, message)
            return TapResult("declined", decision.code, message)
        now = co.clock()
        payout = QueuedPayout(
            id=uuid.uuid4().hex,
            sale_id=self.record.id,
            store_id=None,
            amount_sats=amount_msat // 1000,
            card_id=verified.card_id,
            issuer=verified.issuer,
            counter=verified.counter,
            tap_url=url,
            status=PayoutStatus.QUEUED,
            created_at=now,
            metadata={"terminal_id": co.terminal_id},
        )
        card.queued_msat += amount_msat
        card.issuer = v.issuer
        self.record.method = "card"
        self.record.card_id = v.card_id
        self.record.issuer = v.issuer
        self.record.counter = v.counter
        self.record.amount_msat = amount_msat
        with co.ledger.transaction():  # payout, card total and sale state: all or nothing
            co.ledger.add_payout(payout)
            co.ledger.save_card(card)
            self._apply("queued")
        return TapResult("queued", None, decision.message)

    def _offline_amount_msat(self) -> int:
        co = self.checkout
        amount = Money(self.record.amount_minor, currency(self.record.currency))
        msat, quote = co.rates.price(amount, now=co.clock())
        if quote is not None:
            self.record.rate_minor_per_sat = str(quote.rate.minor_per_sat)
            self.record.rate_age_s = quote.age_s
        return int(msat.value)

    def _decline(self, code: str | None, message: str) -> None:
        self._apply("declined", code)
        self._message = message

    # -- QR and settlement ----------------------------------------------------------------------
    async def wait_settled(self, timeout_s: float | None = None) -> SaleOutcome:
        """Follow the invoice until it is paid or expires (or the timeout passes)."""
        co = self.checkout
        if self.sale.is_final or self.invoice is None:
            return self.outcome()
        delay = WATCH_RETRY_BASE_S
        try:
            async with asyncio.timeout(timeout_s):
                while not self.sale.is_final:
                    try:
                        await self._watch_once()
                    except Exception as exc:  # noqa: BLE001 - any backend fault
                        # One bad answer or a short outage must not end the wait: a payment
                        # that lands a moment later still has to be seen.
                        co._backend_fault(exc, f"sale {self.record.id[:8]}: status watch")
                    if self.sale.is_final:
                        break
                    # The watch ended without settling the sale (an error, or a final status
                    # that could not be confirmed yet): back off before watching again.
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, WATCH_RETRY_MAX_S)
        except TimeoutError:
            await self.reconcile()  # one last look before answering "not settled"
        return self.outcome()

    async def _watch_once(self) -> None:
        if self.invoice is None:
            return
        statuses = self.checkout.backend.watch(self.invoice)
        # aclosing: leaving early must stop the backend's socket and poll tasks now.
        async with aclosing(statuses) as watch:
            async for status in watch:
                if await self._decide(status):
                    return

    async def reconcile(self) -> SaleOutcome:
        """Ask the backend once for the invoice status and settle the sale by it: open sales,
        and ended ones (cancelled, failed, expired) whose invoice is not known final yet."""
        co = self.checkout
        if self.invoice is None:
            if self.sale.state is SaleState.CREATED and not self.offline:
                self._apply("fail", "interrupted-before-invoice")
            return self.outcome()
        if not self._invoice_may_change():
            return self.outcome()
        try:
            status = await co.backend.invoice_status(self.invoice)
        except Exception as exc:  # noqa: BLE001 - any backend fault: ask again next time
            co._backend_fault(exc, f"sale {self.record.id[:8]}: status check")
            return self.outcome()
        co.connectivity.success(co.clock())
        await self._decide(status)
        return self.outcome()

    def _invoice_may_change(self) -> bool:
        if self.record.invoice_final:
            return False
        if self.sale.state in (SaleState.QUEUED, SaleState.SUBMITTED):
            return False  # the sync worker's
        return not self.sale.is_final or self.sale.state in REOPENABLE_BY_PAYMENT

    async def _decide(self, status: InvoiceStatus) -> bool:
        """Settle by a status from the backend; True once the sale is final."""
        if not isinstance(status, InvoiceStatus):
            log.warning("sale %s: the backend answered a status of type %s; ignored",
                        self.record.id[:8], type(status).__name__)
            return self.sale.is_final
        if status is InvoiceStatus.EXPIRED and not self._expiry_is_plausible():
            found = await self._find_payment()
            if found is None:  # could not tell now: ask again on the next pass
                return self.sale.is_final
            if found is UNVERIFIABLE:
                return self._settle(status, why=REASON_EXPIRED_UNVERIFIED)
            if found:
                status = InvoiceStatus.PAID
        return self._settle(status)

    def _expiry_is_plausible(self) -> bool:
        """EXPIRED seen around the invoice's own expiry is believed. Seen long after, it may
        come from a provider that purged the invoice, paid or not; seen long before, it is odd
        (a skewed clock, a confused backend): both are checked against the wallet's payments."""
        assert self.invoice is not None
        return abs(self.checkout.clock() - self.invoice.expires_at) <= EXPIRED_TRUST_S

    async def _find_payment(self) -> bool | _Unverifiable | None:
        """Whether the wallet holds a payment of this invoice (a provider may report a purged,
        paid invoice as EXPIRED): True, False (none), UNVERIFIABLE (this backend or key cannot
        look payments up), or None (it could not answer now)."""
        co = self.checkout
        assert self.invoice is not None
        try:
            payment = await co.backend.find_payment(self.invoice)
        except (BackendRejected, BackendUnauthorized) as exc:
            # Not supported by this backend, or no scope to read transactions: the EXPIRED
            # status is all there is.
            log.warning("sale %s: the invoice reads EXPIRED long after its expiry and payments "
                        "cannot be looked up (%s): recorded as %s", self.record.id[:8],
                        backend_reason(exc, REASON_NOT_SUPPORTED), REASON_EXPIRED_UNVERIFIED)
            return UNVERIFIABLE
        except Exception as exc:  # noqa: BLE001 - unreachable, rate-limited, nonsense, a bug
            co._backend_fault(exc, f"sale {self.record.id[:8]}: payment lookup")
            return None
        if payment is None:
            return False
        if str(getattr(payment, "payment_hash", "")).lower() != self.invoice.payment_hash.lower():
            log.warning("sale %s: the payment lookup answered another invoice; asking again later",
                        self.record.id[:8])
            return None
        return True

    def _owns_payment(self) -> bool:
        """One payment, one sale: only the sale holding the invoice's hash is settled by it."""
        if not self.record.payment_hash:
            return True
        holder = self.checkout.ledger.find_sale_by_payment_hash(self.record.payment_hash.lower())
        if holder is None or holder.id == self.record.id:
            return True
        log.error("sale %s: its invoice was paid for sale %s; not counted twice",
                  self.record.id[:8], holder.id[:8])
        return False

    def _settle(self, status: InvoiceStatus, why: str | None = None) -> bool:
        if status is InvoiceStatus.PAID and not self._owns_payment():
            self.record.invoice_final = True
            if self.sale.is_final:
                self.persist()
            else:
                self._apply("invoice_replayed", REASON_REPLAYED_INVOICE)
            return True
        if status is InvoiceStatus.PAID:
            self.record.invoice_final = True
        if status is InvoiceStatus.PAID and self.sale.state in REOPENABLE_BY_PAYMENT:
            log.warning("sale %s: paid after it was %s", self.record.id[:8], self.sale.state.value)
            self._apply("paid_late", f"paid-after-{self.sale.state.value}")
            self._message = "Paid after the sale was closed: the money arrived."
        elif status is InvoiceStatus.PAID and self.sale.is_final:
            self.persist()  # already paid: just remember the invoice is final
        elif status is InvoiceStatus.PAID:
            if self.sale.state is SaleState.INVOICED:
                # No card in flight: a wallet paid the QR (perhaps after a refused card, whose
                # attempt stays in the history but must not count as this card's payment).
                self.record.method = "qr"
                self.record.card_id = self.record.issuer = self.record.counter = None
            elif self.record.method is None:
                self.record.method = "card"
            self._apply("paid")
            self._unblock_card()
        elif status is InvoiceStatus.UNDERPAID:
            # Only part arrived before expiry: failed, not expired, whatever was in flight (the
            # invoice can no longer be paid as asked). The invoice stays watched: a later
            # payment of the rest (BTCPay's PaidLate) still makes the sale PAID.
            if not self.sale.is_final:
                try:
                    self._apply("underpaid", "invoice-underpaid")
                except IllegalTransition:
                    return False
                self._message = UNDERPAID_TEXT
            return True
        elif status is InvoiceStatus.EXPIRED:
            self.record.invoice_final = True
            if self.sale.is_final:
                self.persist()
                return True
            # An unconfirmed card payment keeps the issuer's word as the reason it ended.
            if why is None:
                why = (self.record.reason if self.sale.state is SaleState.UNCONFIRMED
                       and self.record.reason else "invoice-expired")
            else:
                self._message = EXPIRED_UNVERIFIED_TEXT
            try:
                self._apply("expired", why)
            except IllegalTransition:  # CREATED / offline states: not this invoice's to end
                self.record.invoice_final = False
                return False
        return self.sale.is_final

    def _unblock_card(self) -> None:
        """A card that just paid online may be accepted offline again."""
        if self.record.method != "card" or not self.record.card_id:
            return
        card = self.checkout.ledger.card(self.record.card_id)
        if card.blocked:
            card.blocked, card.blocked_reason = False, None
            self.checkout.ledger.save_card(card)

    async def cancel(self) -> bool:
        try:
            self._apply("cancel", "cancelled-by-merchant")
        except IllegalTransition:
            return False
        return True

    def fail(self, code: str) -> bool:
        """End the sale as failed; refused (False) once it ended, or once a payment has left
        (a callback was sent): then only its invoice can end it."""
        if self.sale.is_final or self.sale.state in PAYMENT_IN_FLIGHT or self.sale.payment_left:
            return False
        self._apply("fail", code)
        return True

    def outcome(self) -> SaleOutcome:
        state = self.sale.state
        status = {
            SaleState.PAID: "paid",
            SaleState.FAILED: "failed",
            SaleState.EXPIRED: "expired",
            SaleState.CANCELLED: "cancelled",
            SaleState.QUEUED: "queued",
            SaleState.SUBMITTED: "queued",
            SaleState.DECLINED: "declined",
            SaleState.UNCONFIRMED: "unconfirmed",
        }.get(state, "pending")
        return SaleOutcome(
            status=status,
            sale_id=self.record.id,
            reason=self.record.reason if status != "paid" else None,
            message=self._message or _status_text(status),
            payment_hash=self.record.payment_hash,
            amount_msat=self.record.amount_msat,
        )


UNDERPAID_TEXT = (
    "Only part of the amount arrived before the invoice expired: the sale is NOT paid. "
    "Do not just charge again; refund or settle the part paid from the backend."
)


def _late_text(state: SaleState) -> str:
    if state is SaleState.PAID:
        return "This sale is already paid: the card was not charged again."
    return f"This sale has ended ({state.value}). Start a new sale to charge the card."


def _status_text(status: str) -> str:
    return {
        "paid": "Paid.",
        "failed": "The payment failed.",
        "expired": "The invoice expired before it was paid.",
        "cancelled": "The sale was cancelled.",
        "queued": "Accepted offline: it will be paid when the terminal reconnects.",
        "declined": "Declined.",
        "unconfirmed": ("Not confirmed — do not charge again: the payment may still arrive. The "
                        "sale is settled by its invoice; check History before taking another "
                        "payment."),
        "pending": "Waiting for payment.",
    }[status]


def backend_reason(exc: BackendError, default: str) -> str:
    """A backend's error code as a ledger reason (`TOO_MANY_REQUESTS` → `too-many-requests`).
    The code is server-supplied: anything but a short plain word becomes `default`."""
    code = exc.code
    if not isinstance(code, str):
        return default
    reason = code.strip().lower().replace("_", "-")
    if not reason or len(reason) > 64 or not all(c.isalnum() or c == "-" for c in reason):
        return default
    return reason if reason.isascii() else default


def _outcome_unknown() -> TapResult:
    return TapResult("unknown", "callback-outcome-unknown", "Waiting for the payment to confirm…")


def _offline_text(exc: Exception) -> str:
    if isinstance(exc, BackendRateLimited):
        return ("The backend is busy (too many invoices): no invoice was created. Waiting for "
                "the backend; a card can still be accepted offline.")
    return ("The backend could not be used: no invoice was created. Waiting for the backend; "
            "a card can still be accepted offline.")


__all__ = ["Checkout", "SaleOutcome", "SaleSession", "TapResult", "NoRate"]
