"""Refunds: all or part of a paid sale back to the customer (service layer; no Kivy, no I/O of
its own: the books, the backend and the LNURL clients come in as ports).

Where the money goes:
- the card that paid: the customer taps it again; its withdrawRequest is read WITHOUT calling
  back (nothing is withdrawn), its LUD-19 `payLink` is resolved (LUD-06/17) and an invoice for
  the amount is fetched and checked (amount, description hash = sha256 of the metadata);
- a Lightning Address (LUD-16), an LNURL-pay (LUD-06/17) keyed or scanned, or a BOLT11 the
  customer shows;
- Flash sends from the merchant's wallet: `lnInvoicePaymentSend` keyed by the refund's id.
  BTCPay refunds its own way: a pull payment (`POST …/invoices/{id}/refund`) the customer claims
  by scanning its LNURL-withdraw (shown as a QR), or paid out at once to a destination given.

Crash safety, as for a sale (terminal.core.refunds has the state machine):
- the refund is recorded (CREATED, linked to its sale) before anything is resolved, PREPARED
  once its invoice is checked, SENDING before the send goes out (write-ahead);
- an answer that does not say (PENDING, a provider error that may follow the debit, a lost
  answer) leaves it PENDING: it is resolved from the wallet's transactions, never sent again;
  one not found by the time its invoice has expired was not paid (FAILED);
- after a restart, `resolve_open()` ends refunds that never reached their send (nothing was sent)
  and resolves the rest the same way.

The total refunded (sent, and anything still on its way) never exceeds what the sale took:
`terminal.core.refunds.room`, checked under one lock per terminal before each refund. Refunds are
in whole sats (rounded down): a wallet may refuse millisatoshis, and a refund never rounds up.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from terminal.core.memo import sale_memo
from terminal.core.money import Money, RateError, RatePolicy, sats_figure
from terminal.core.ports.backend import BackendError, BackendUnavailable
from terminal.core.ports.books import RefundBooks
from terminal.core.ports.paylinks import PayLinks
from terminal.core.ports.refunds import (
    CannotSend,
    InvoicePayer,
    Lookup,
    PullPaymentPayout,
    PullPaymentRefund,
    PullPaymentRefunder,
    SendStatus,
)
from terminal.core.ports.withdraw import CardReader
from terminal.core.records import SaleRecord, short_card_id
from terminal.core.refunds import (
    NOTHING_SENT,
    Destination,
    NotRefundable,
    Rail,
    RefundRecord,
    RefundState,
    Room,
    proportional_msat,
    refundable,
    room,
    sent_refunds_msat,
)
from terminal.protocols import lnurl
from terminal.protocols.boltcard import Keyring, TapReason
from terminal.protocols.lnurl_pay import (
    DestinationInvalid,
    DestinationKind,
    ParsedDestination,
    PayLinkError,
    Resolved,
)

log = logging.getLogger(__name__)

MSAT_PER_SAT = 1000
EXPIRY_GRACE_S = 120.0  # a payment settling just after its invoice's expiry still counts
BTCPAY_SETTLE_S = 60.0  # a lost pull-payment answer: how long before "not found" means "none"
PENDING_WAIT_S = 10.0  # how long a refund waits for a PENDING send to settle before answering
POLL_S = 1.0


# ---------------------------------------------------------------------------- in and out


@dataclass(frozen=True)
class RefundRequest:
    """One refund as the manager asks for it. `amount` None: all that is left (or, for a
    BOLT11, the invoice's own amount). Exactly one of `to` and `tap_url` (none for BTCPay's
    claim link)."""

    sale_id: str
    amount: Money | None = None
    to: str | None = None  # an address, LNURL-pay or BOLT11, keyed or scanned
    tap_url: str | None = None  # the card that paid, tapped again
    cashier: str | None = None


class RefundRefused(Exception):
    """Nothing was recorded or sent. `usage`: the request itself is wrong (an amount above
    what is left, an unknown sale, a destination that does not parse): exit 2 on the command
    line; otherwise the refund could not be made (exit 4)."""

    def __init__(self, code: str, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class RefundOutcome:
    status: str  # sent | pending | failed
    refund_id: str | None
    sale_id: str
    amount_msat: int
    reason: str | None
    message: str
    target: str = ""
    claim_link: str | None = None  # BTCPay: the LNURL-withdraw the customer scans

    def to_json(self) -> dict[str, object]:
        """The command line's contract, exactly its keys (`message` and `claim_link` are said
        in words beside it)."""
        return {
            "status": self.status,
            "refund_id": self.refund_id,
            "sale_id": self.sale_id,
            "amount_msat": self.amount_msat,
            "reason": self.reason,
        }

    @classmethod
    def of(cls, refund: RefundRecord) -> RefundOutcome:
        state = refund.refund_state
        status = ("sent" if state is RefundState.SENT else
                  "failed" if state is RefundState.FAILED else "pending")
        return cls(status, refund.id, refund.sale_id, refund.amount_msat,
                   None if status == "sent" else (refund.reason or status), refund.message,
                   refund.target, refund.claim_link)


@dataclass(frozen=True)
class Quote:
    """What the refund screen shows before anything happens."""

    sale: SaleRecord
    room: Room
    problem: str | None  # why this sale cannot be refunded (None: it can)

    @property
    def left_msat(self) -> int:
        return _whole_sats(self.room.left_msat)


# ---------------------------------------------------------------------------- the service


class RefundService:
    def __init__(
        self,
        books: RefundBooks,
        *,
        payer: InvoicePayer | None = None,
        pull_payments: PullPaymentRefunder | None = None,
        pay_links: PayLinks,
        cards: CardReader,
        keyring: Keyring,
        rates: RatePolicy | None = None,
        terminal_id: str = "",
        clock: Callable[[], float] = time.time,
        pending_wait_s: float = PENDING_WAIT_S,
        poll_s: float = POLL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if (payer is None) == (pull_payments is None):
            raise ValueError("a refund service sends through exactly one rail")
        self.books = books
        self.payer = payer
        self.pull_payments = pull_payments
        self.pay_links = pay_links
        self.cards = cards
        self.keyring = keyring
        self.rates = rates or RatePolicy()
        self.terminal_id = terminal_id
        self.clock = clock
        self.pending_wait_s = pending_wait_s
        self.poll_s = poll_s
        self.sleep = sleep
        self._lock = asyncio.Lock()
        self._active: set[str] = set()  # refunds this process is driving right now

    # -- what a screen asks first -----------------------------------------------------------
    @property
    def rail(self) -> Rail:
        return Rail.FLASH_SEND if self.payer is not None else Rail.BTCPAY_PULL_PAYMENT

    @property
    def needs_destination(self) -> bool:
        """Flash sends somewhere; BTCPay can issue a claim link with no destination."""
        return self.rail is Rail.FLASH_SEND

    def send_problem(self) -> CannotSend | None:
        rail = self.payer if self.payer is not None else self.pull_payments
        return rail.send_problem() if rail is not None else None

    def quote(self, sale_id: str) -> Quote:
        sale = self._sale(sale_id)
        left = room(sale, self.books.refunds(sale.id))
        problem: str | None = None
        try:
            refundable(sale)
        except NotRefundable as exc:
            problem = exc.message
        cannot = self.send_problem()
        if problem is None and cannot is not None:
            problem = cannot.text
        if problem is None and _whole_sats(left.left_msat) <= 0:
            problem = "Everything paid for this sale has been refunded (or is on its way back)."
        return Quote(sale, left, problem)

    def refunds_of(self, sale_id: str) -> list[RefundRecord]:
        return self.books.refunds(sale_id)

    def amount_msat(self, sale: SaleRecord, amount: Money) -> int:
        """`amount` as msat, whole sats rounded down: in the sale's own currency at the rate
        the sale was made at, in sats as such, in another currency at today's rate."""
        if amount.minor <= 0:
            raise RefundRefused("amount", "The refund amount must be more than zero.",
                                usage=True)
        if amount.currency.is_sat:
            return amount.minor * MSAT_PER_SAT
        if amount.currency.code == sale.currency:
            msat = proportional_msat(sale, amount.minor)
            if msat is not None:
                return _whole_sats(msat)
        try:
            msat_value, _quote = self.rates.price(amount, now=self.clock())
        except RateError as exc:
            raise RefundRefused(
                "no-rate", f"{amount.currency.code} cannot be priced now ({exc}): key the "
                f"amount in SAT or in the sale's currency ({sale.currency}).",
                usage=True) from None
        return _whole_sats(int(msat_value.value))

    # -- one refund ---------------------------------------------------------------------------
    async def refund(self, request: RefundRequest) -> RefundOutcome:
        """Make one refund. Raises `RefundRefused` when nothing was recorded; otherwise the
        outcome (sent, pending, or failed with its reason) is in the books too."""
        async with self._lock:
            sale = self._sale(request.sale_id)
            try:
                refundable(sale)
            except NotRefundable as exc:
                raise RefundRefused(exc.code, exc.message, usage=True) from None
            cannot = self.send_problem()
            if cannot is not None:
                raise RefundRefused(cannot.code, cannot.text)
            await self._resolve_sale(sale.id)  # a refund left unresolved holds its amount
            sale = self._sale(sale.id)
            left = room(sale, self.books.refunds(sale.id))
            plan = self._plan(sale, request)
            amount = plan.amount_msat
            if amount is None:
                amount = _whole_sats(left.left_msat)
            self._check_room(left, amount)
            refund = self._record(sale, request, plan, amount)
            self._active.add(refund.id)
        try:
            if self.rail is Rail.BTCPAY_PULL_PAYMENT:
                await self._pull_payment(refund, sale, plan)
            else:
                await self._send(refund, sale, plan, request)
        except Exception as exc:  # a bug must not leave a refund looking in flight forever
            log.exception("refund %s failed unexpectedly", refund.id[:8])
            if refund.refund_state in NOTHING_SENT:
                self._fail(refund, "internal-error", f"The refund stopped: {type(exc).__name__}."
                           " Nothing was sent.")
            raise
        finally:
            self._active.discard(refund.id)
        return RefundOutcome.of(self.books.get_refund(refund.id) or refund)

    def _sale(self, sale_id: str) -> SaleRecord:
        sale_id = sale_id.strip().lower()
        sale = self.books.get_sale(sale_id) if sale_id else None
        if sale is None:
            raise RefundRefused("no-sale", f"There is no sale {sale_id[:32]!r} in the books.",
                                usage=True)
        return sale

    @staticmethod
    def _check_room(left: Room, amount: int) -> None:
        available = _whole_sats(left.left_msat)
        if amount <= 0 or available <= 0:
            raise RefundRefused(
                "nothing-left", "Nothing is left to refund on this sale" + (
                    f" ({sats_figure(left.reserved_msat)} sats are still being resolved)."
                    if left.reserved_msat else "."), usage=True)
        if amount > available:
            pending = (f"; {sats_figure(left.reserved_msat)} sats are still being resolved"
                       if left.reserved_msat else "")
            raise RefundRefused(
                "above-remainder", f"{sats_figure(amount)} sats is more than is left to refund "
                f"on this sale: {sats_figure(available)} sats (paid {sats_figure(left.paid_msat)}, "
                f"refunded {sats_figure(left.refunded_msat)}{pending}).", usage=True)

    # -- the plan: where the money goes, before anything is recorded --------------------------
    @dataclass(frozen=True)
    class _Plan:
        destination: Destination
        amount_msat: int | None  # None: all that is left
        parsed: ParsedDestination | None = None
        tap_url: str | None = None
        card_id: str | None = None
        target: str = ""

    def _plan(self, sale: SaleRecord, request: RefundRequest) -> RefundService._Plan:
        amount = None if request.amount is None else self.amount_msat(sale, request.amount)
        if request.to is not None and request.tap_url is not None:
            raise RefundRefused("destination", "Refund either to an address or to a card, not "
                                "both.", usage=True)
        if request.tap_url is not None:
            card_id = self._check_card(sale, request.tap_url)
            target = f"card {short_card_id(card_id)}" if card_id else "card"
            return self._Plan(Destination.CARD, amount, tap_url=request.tap_url,
                              card_id=card_id, target=target)
        if request.to is None:
            if self.rail is Rail.BTCPAY_PULL_PAYMENT:
                return self._Plan(Destination.PULL_PAYMENT, amount, target="claim link")
            raise RefundRefused("destination", "Say where the refund goes: the card that paid, "
                                "a Lightning Address, an LNURL-pay or an invoice.", usage=True)
        try:
            parsed = self.pay_links.parse(request.to)
        except DestinationInvalid as exc:
            raise RefundRefused("destination-invalid", exc.user_message + f" ({exc.detail})",
                                usage=True) from None
        kind = {DestinationKind.ADDRESS: Destination.ADDRESS,
                DestinationKind.LNURL: Destination.LNURL,
                DestinationKind.BOLT11: Destination.BOLT11}[parsed.kind]
        if parsed.kind is DestinationKind.BOLT11:
            amount = self._invoice_amount(parsed, amount)
        return self._Plan(kind, amount, parsed=parsed, target=parsed.shown)

    def _invoice_amount(self, parsed: ParsedDestination, amount: int | None) -> int:
        from terminal.protocols.invoice import InvoiceCheckError, decode_invoice

        assert parsed.bolt11 is not None
        try:
            asked = decode_invoice(parsed.bolt11).amount_msat
        except InvoiceCheckError as exc:
            raise RefundRefused("destination-invalid", exc.message, usage=True) from None
        if not asked:
            raise RefundRefused("destination-invalid", "The invoice has no amount: ask the "
                                "customer for one with the refund's amount.", usage=True)
        if amount is not None and asked != amount:
            raise RefundRefused(
                "invoice-amount", f"The invoice asks {asked / 1000:,.3f} sats, the refund is "
                f"{sats_figure(amount)} sats: ask for an invoice of the refund's amount.",
                usage=True)
        return asked

    def _check_card(self, sale: SaleRecord, url: str) -> str | None:
        """The tapped card is a real card (its SUN checks) and, for a sale a card paid, THAT
        card; its counter moves on (a tap is used once). Returns its card id."""
        verification = self.keyring.verify_tap(url)
        reason = verification.reason
        if reason is not None and reason is not TapReason.UNKNOWN_ISSUER:
            raise RefundRefused("card-unreadable", "This card failed its check (unreadable, "
                                "forged or altered data). Ask the customer to tap again.")
        card = verification.card
        if sale.method == "card" and sale.card_id:
            if card is None:
                raise RefundRefused("not-the-paying-card", "This card cannot be checked against "
                                    "the one that paid (its issuer is not configured here). "
                                    "Refund to an address instead.")
            if card.card_id != sale.card_id:
                raise RefundRefused(
                    "not-the-paying-card", f"This is not the card that paid (card "
                    f"{short_card_id(sale.card_id)}). Tap that card, or refund to an address.")
        if card is None:
            return None
        previous = self.books.advance_counter(card.card_id, card.issuer, card.counter)
        if previous >= card.counter:
            raise RefundRefused("replayed-tap", "This tap was already used. Ask the customer to "
                                "tap the card again.")
        return card.card_id

    # -- write-ahead ------------------------------------------------------------------------
    def _record(self, sale: SaleRecord, request: RefundRequest, plan: RefundService._Plan,
                amount: int) -> RefundRecord:
        now = self.clock()
        keyed = request.amount
        refund = RefundRecord(
            id=uuid.uuid4().hex, sale_id=sale.id, created_at=now, amount_msat=amount,
            destination=plan.destination.value, rail=self.rail.value, target=plan.target,
            card_id=plan.card_id, cashier=request.cashier, terminal_id=self.terminal_id,
            currency=keyed.currency.code if keyed is not None else None,
            amount_minor=keyed.minor if keyed is not None else None, updated_at=now,
        )
        sale.refund_ids.append(refund.id)
        with self.books.transaction():  # the refund and its link on the sale: together
            self.books.save_refund(refund)
            self.books.save_sale(sale)
        return refund

    def _save(self, refund: RefundRecord) -> None:
        """Write the refund (and, once it is sent, the sale's refunded total) together."""
        if refund.refund_state is not RefundState.SENT:
            self.books.save_refund(refund)
            return
        sale = self.books.get_sale(refund.sale_id)
        with self.books.transaction():
            self.books.save_refund(refund)
            if sale is not None:
                others = [r for r in self.books.refunds(sale.id) if r.id != refund.id]
                sale.refunded_msat = sent_refunds_msat([*others, refund])
                if refund.id not in sale.refund_ids:
                    sale.refund_ids.append(refund.id)
                self.books.save_sale(sale)

    def _apply(self, refund: RefundRecord, event: str, detail: str | None = None,
               message: str | None = None) -> None:
        refund.apply(event, self.clock(), detail)
        if message is not None:
            refund.message = message
        self._save(refund)

    def _fail(self, refund: RefundRecord, code: str, message: str) -> None:
        self._apply(refund, "fail", code, message)

    # -- Flash: pay an invoice from the merchant's wallet -----------------------------------
    async def _send(self, refund: RefundRecord, sale: SaleRecord, plan: RefundService._Plan,
                    request: RefundRequest) -> None:
        try:
            resolved = await self._resolve_destination(plan, refund.amount_msat)
        except PayLinkError as exc:
            self._fail(refund, exc.code, exc.user_message)
            return
        except RefundRefused as exc:
            self._fail(refund, exc.code, exc.message)
            return
        invoice = resolved.invoice
        if invoice.amount_msat != refund.amount_msat:  # a BOLT11 without --amount is its own
            self._fail(refund, "invoice-mismatch", "The invoice does not ask for the refund's "
                       "amount. Nothing was sent.")
            return
        refund.bolt11 = invoice.bolt11
        refund.payment_hash = invoice.payment_hash
        refund.invoice_expires_at = float(invoice.expires_at)
        if resolved.shown and plan.destination is not Destination.CARD:
            refund.target = resolved.shown
        self._apply(refund, "prepared")
        self._apply(refund, "send")  # write-ahead: from here it may have been paid
        assert self.payer is not None
        memo = sale_memo(f"Refund of sale {sale.id[:8]}", terminal_id=self.terminal_id or "ft",
                         sale_id=refund.id)
        result = await self.payer.pay_invoice(invoice.bolt11, idempotency_key=refund.id,
                                              memo=memo)
        if result.status is SendStatus.SENT and not result.already_paid:
            self._apply(refund, "sent", None, "Refund sent.")
            return
        if result.status is SendStatus.FAILED:
            self._fail(refund, result.code or "send-failed", result.message)
            return
        # PENDING, unclear, or "already paid" (by whom?): the wallet's transactions decide.
        self._apply(refund, "pending", result.code or "pending", result.message)
        await self._settle(refund)

    async def _resolve_destination(self, plan: RefundService._Plan, amount: int) -> Resolved:
        if plan.destination is Destination.CARD:
            assert plan.tap_url is not None
            try:
                request = await self.cards.fetch_request(plan.tap_url)  # no callback: nothing
            except lnurl.LnurlError as exc:  # is withdrawn
                raise RefundRefused(exc.code, exc.user_message) from None
            if not request.pay_link:
                raise RefundRefused(
                    "no-pay-link", "This card's issuer does not say where the card receives "
                    "(no payLink: BTCPay's cards send none). Refund to a Lightning Address or "
                    "an invoice from the customer's wallet. Nothing was sent.")
            return await self.pay_links.invoice_from_pay_link(request.pay_link, amount)
        assert plan.parsed is not None
        return await self.pay_links.invoice_for(plan.parsed, amount)

    async def _settle(self, refund: RefundRecord) -> None:
        """Wait a little for a pending send to show up in the wallet's transactions."""
        deadline = self.clock() + self.pending_wait_s
        while refund.refund_state is RefundState.PENDING:
            await self._look_up(refund)
            if refund.refund_state is not RefundState.PENDING or self.clock() >= deadline:
                return
            await self.sleep(self.poll_s)

    async def _look_up(self, refund: RefundRecord) -> None:
        """One look at a sent (or maybe sent) refund's outcome; it changes only on evidence."""
        if self.rail is Rail.BTCPAY_PULL_PAYMENT:
            await self._look_up_pull_payment(refund)
            return
        assert self.payer is not None
        if not refund.bolt11:  # SENDING without an invoice cannot be: nothing could be sent
            self._fail(refund, "interrupted-before-send", "The refund stopped before it was "
                       "sent. Nothing was sent.")
            return
        lookup = await self.payer.find_sent(refund.bolt11)
        now = self.clock()
        if lookup.result is Lookup.SENT:
            refund.apply("sent", now, None)
            if lookup.sent_at is not None:
                refund.sent_at = min(lookup.sent_at, now)
            refund.message = "Refund sent (found in the wallet's transactions)."
            self._save(refund)
        elif (lookup.result is Lookup.NOT_FOUND
              and now >= (refund.invoice_expires_at or 0) + EXPIRY_GRACE_S):
            self._fail(refund, "not-paid", "The refund was not paid before its invoice expired: "
                       "nothing left the wallet. Refund again if needed.")
        elif refund.refund_state is RefundState.SENDING:
            self._apply(refund, "pending", "unresolved", _unresolved_words(lookup.result,
                                                                           lookup.message))
        elif lookup.result is Lookup.UNKNOWN:
            words = _unresolved_words(lookup.result, lookup.message)
            if refund.message != words:  # say why it cannot be told (once, not every pass)
                refund.message = words
                self._save(refund)

    # -- BTCPay: the invoice's own refund (a pull payment) ----------------------------------
    async def _pull_payment(self, refund: RefundRecord, sale: SaleRecord,
                            plan: RefundService._Plan) -> None:
        assert self.pull_payments is not None
        if not sale.invoice_ref:
            self._fail(refund, "no-invoice", "This sale has no BTCPay invoice to refund. Nothing "
                       "was sent.")
            return
        # Where it is paid out, known BEFORE the pull payment may exist (the card's payLink is
        # read now, without a callback): written with the SENDING record, so a refund whose
        # answer is lost, or a restart, still pays the customer there.
        destination, note = await self._claim_destination(plan)
        if destination is not None and plan.parsed is not None \
                and plan.parsed.kind is DestinationKind.BOLT11:
            expires_at = _bolt11_expiry(destination)
            if expires_at is not None and self.clock() >= expires_at:
                self._fail(refund, "invoice-expired", "The customer's invoice has expired: ask "
                           "for a new one, or refund with the claim QR. Nothing was sent.")
                return
            refund.invoice_expires_at = expires_at
        refund.claim_destination = destination
        log.info("refund %s: BTCPay pull payment, paid out to %s", refund.id[:8],
                 f"the {plan.destination.value} given" if destination else "the claim QR")
        self._apply(refund, "send", None, note or None)  # write-ahead: the pull payment may
        try:                                              # exist from here
            issued = await self.pull_payments.refund_invoice(
                sale.invoice_ref, refund.amount_msat, name=_pull_payment_name(refund),
                description=f"Refund of sale {sale.id[:8]}")
        except BackendUnavailable as exc:
            if exc.code == "not_sent":
                self._fail(refund, "not-sent", f"{exc.message} Nothing was sent.")
                return
            self._apply(refund, "pending", "answer-lost", exc.message)
            return
        except BackendError as exc:
            self._fail(refund, exc.reason("refused"), f"{exc.message} Nothing was sent.")
            return
        await self._issued(refund, issued, just_made=True)

    async def _claim_destination(self, plan: RefundService._Plan) -> tuple[str | None, str]:
        """Where BTCPay pays the pull payment out at once (None: the customer scans the claim
        link), and why none when a card says nowhere: a BOLT11 or address as given, an
        LNURL-pay as bech32, the card's payLink as bech32 (read now, before the send, so it is
        on the books if the answer to the pull payment is lost)."""
        parsed = plan.parsed
        if parsed is not None:
            if parsed.kind is DestinationKind.BOLT11:
                return parsed.bolt11, ""
            if parsed.kind is DestinationKind.ADDRESS:
                return parsed.address, ""
            return (lnurl.encode_lnurl(parsed.url) if parsed.url else None), ""
        if plan.destination is Destination.CARD and plan.tap_url is not None:
            try:
                request = await self.cards.fetch_request(plan.tap_url)  # no callback
            except lnurl.LnurlError as exc:
                return None, (f"The card could not be read ({exc.user_message}): the customer "
                              "scans the claim QR.")
            if not request.pay_link:
                return None, ("This card's issuer says nowhere to pay it (BTCPay's own cards "
                              "carry no payLink): the customer scans the claim QR.")
            try:
                link = self.pay_links.parse(request.pay_link)
            except DestinationInvalid:
                return None, ("The card's payLink is not one the terminal can use: the customer "
                              "scans the claim QR.")
            return (lnurl.encode_lnurl(link.url) if link.url else None), ""
        return None, ""

    async def _issued(self, refund: RefundRecord, issued: PullPaymentRefund, *,
                      just_made: bool) -> None:
        """The pull payment exists: pay it out to the refund's destination (at most one payout
        per pull payment), then the refund is SENT. `just_made`: this process made it a moment
        ago (no payout can exist yet); otherwise BTCPay is asked first, as a payout asked for
        before a lost answer or a restart may exist (a second POST would be a second payout)."""
        assert self.pull_payments is not None
        refund.backend_ref = issued.pull_payment_id
        refund.claim_link = issued.claim_link or issued.claim_uri or None
        words = _claim_words(issued.auto_approved)
        note = refund.message if refund.message and just_made else ""
        destination = refund.claim_destination
        if not destination:
            if not note and refund.destination == Destination.CARD.value:
                note = "The card gave nowhere to pay it out: the customer scans the claim QR."
            self._apply(refund, "sent", None, f"{words} {note}".strip())
            return
        expires_at = refund.invoice_expires_at
        if expires_at is not None and self.clock() >= expires_at:
            self._apply(refund, "sent", None, _expired_words(refund.target))
            return
        if not just_made:
            try:
                existing = await self.pull_payments.payouts(issued.pull_payment_id)
            except BackendError as exc:  # not known: never claimed blindly; looked up again
                self._apply(refund, "pending", "payout-unknown", _payout_unknown_words(
                    refund.target, exc.message))
                return
            if existing:
                self._apply(refund, "sent", None,
                            _existing_payout_words(existing, destination, refund.target))
                return
        try:
            state = await self.pull_payments.claim(issued.pull_payment_id, destination,
                                                   refund.amount_msat)
        except BackendUnavailable as exc:  # the payout may have been made: asked next time
            self._apply(refund, "pending", "payout-unknown", _payout_unknown_words(
                refund.target, exc.message))
            return
        except BackendError as exc:
            self._apply(refund, "sent", None, (
                f"Refund issued, but BTCPay would not pay it to {refund.target} ({exc.message}):"
                " the customer scans the claim QR instead."))
            return
        log.info("refund %s: paid out by BTCPay (%s)", refund.id[:8], state)
        self._apply(refund, "sent", None, _payout_words(state, refund.target))

    async def _look_up_pull_payment(self, refund: RefundRecord) -> None:
        assert self.pull_payments is not None
        try:
            found = await self.pull_payments.find_refund(_pull_payment_name(refund))
        except BackendError as exc:
            log.info("refund %s: BTCPay lookup failed (%s)", refund.id[:8], exc.message)
            return
        if found is not None:
            await self._issued(refund, found, just_made=False)
        elif refund.backend_ref is None and (
                self.clock() - (refund.updated_at or refund.created_at) >= BTCPAY_SETTLE_S):
            self._fail(refund, "not-issued", "BTCPay holds no such refund: nothing was issued. "
                       "Refund again if needed.")

    # -- after a restart, and now and then ----------------------------------------------------
    async def resolve_open(self) -> list[RefundOutcome]:
        """Resolve every refund not final (not one this process is driving): those that never
        reached their send end FAILED (nothing was sent); the rest are looked up."""
        outcomes = []
        for refund in self.books.open_refunds():
            if refund.id in self._active:
                continue
            current = await self._resolve_one(refund)
            if current is not None:
                outcomes.append(RefundOutcome.of(current))
        return outcomes

    async def _resolve_sale(self, sale_id: str) -> None:
        for refund in self.books.refunds(sale_id):
            if not refund.is_final and refund.id not in self._active:
                await self._resolve_one(refund)

    async def _resolve_one(self, listed: RefundRecord) -> RefundRecord | None:
        """Resolve one refund, read afresh from the books (another look-up may have ended it
        since it was listed) and held as active meanwhile: two look-ups of one refund never
        run together (a BTCPay refund found again may be paid out: once)."""
        if listed.id in self._active:
            return None
        refund = self.books.get_refund(listed.id) or listed
        if refund.is_final:
            return refund
        self._active.add(refund.id)
        try:
            if refund.refund_state in NOTHING_SENT:
                self._fail(refund, "interrupted-before-send", "The refund stopped before it was "
                           "sent (the terminal restarted). Nothing was sent.")
            else:
                await self._look_up(refund)
        except Exception:  # one refund's lookup must not stop the others
            log.exception("resolving refund %s failed", refund.id[:8])
        finally:
            self._active.discard(refund.id)
        return refund


# ------------------------------------------------------------------------------ helpers


def _whole_sats(msat: int) -> int:
    return max(0, msat) // MSAT_PER_SAT * MSAT_PER_SAT


def _pull_payment_name(refund: RefundRecord) -> str:
    """The pull payment's name: how a refund whose answer was lost is found again."""
    return f"Refund {refund.id}"


def _claim_words(auto_approved: bool) -> str:
    text = "Refund issued by BTCPay: the customer scans the claim QR with a Lightning wallet."
    if not auto_approved:
        text += (" BTCPay will wait for the merchant to approve the claim (the API key cannot "
                 "approve pull payments).")
    return text


def _unresolved_words(result: Lookup, why: str) -> str:
    if result is Lookup.UNKNOWN:
        return (f"Whether the refund was paid cannot be read yet ({why.rstrip('.')}). Do not "
                "refund again until it is resolved: see the wallet's history in the Flash app.")
    return ("Not found in the wallet's transactions yet: still checking. Do not refund again "
            "until it is resolved.")


def _expired_words(target: str) -> str:
    return (f"Refund issued by BTCPay, but the customer's invoice ({target}) expired before it "
            "could be paid out: nothing was paid to it. The customer scans the claim QR with a "
            "Lightning wallet, or gives a new invoice to claim it in BTCPay.")


def _payout_unknown_words(target: str, why: str) -> str:
    return (f"Refund issued by BTCPay; whether it is paid out to {target} cannot be read yet "
            f"({why.rstrip('.')}). The terminal checks again; do not refund again.")


def _existing_payout_words(payouts: list[PullPaymentPayout], destination: str,
                           target: str) -> str:
    """A payout was made already (before a lost answer or a restart, or by the customer
    scanning the claim QR): none is made again; say what BTCPay holds."""
    ours = [p for p in payouts if _same_destination(p.destination, destination)]
    live = [p for p in payouts if not p.cancelled]
    if ours and not ours[-1].cancelled:
        return _payout_words(ours[-1].state, target)
    if live:
        return (f"Refund issued by BTCPay and already claimed by a Lightning wallet (the claim "
                f"QR) ({live[-1].state}): nothing more is paid out to {target}.")
    return (f"Refund issued by BTCPay; its payout to {target} was cancelled in BTCPay: nothing "
            "was paid. The merchant decides in BTCPay (the refund's payouts).")


def _same_destination(said: str, ours: str) -> bool:
    def norm(text: str) -> str:
        text = text.strip().lower()
        return text.removeprefix("lightning:")

    return norm(said) == norm(ours)


def _bolt11_expiry(bolt11: str) -> float | None:
    from terminal.protocols.invoice import InvoiceCheckError, decode_invoice

    try:
        return float(decode_invoice(bolt11).expires_at)
    except InvoiceCheckError:
        return None


def _payout_words(state: str, target: str) -> str:
    if state == "AwaitingApproval":
        return (f"Refund issued and claimed for {target}: BTCPay pays it once the merchant "
                "approves the payout.")
    return f"Refund issued and paid out by BTCPay to {target} ({state})."


__all__ = ["Quote", "RefundOutcome", "RefundRefused", "RefundRequest", "RefundService"]
