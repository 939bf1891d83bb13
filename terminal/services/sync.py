"""The sync worker: executes offline-accepted taps (queued payouts) once the backend is reachable.

Rules, in the order they matter for money:
- A payout's `p`/`c` is sent to the issuer at most once. The payout is written `SUBMITTING`
  (together with its invoice, on the sale) BEFORE the LNURL GET, because many issuers consume the
  counter at that GET. A payout found `SUBMITTING` — after a restart or a lost answer — is
  resolved through the invoice status only: paid, or failed with `outcome-unknown-expired` once
  the invoice has expired unpaid. It is never resent.
- The only way back from `SUBMITTING` to `QUEUED` is an issuer that could not be reached for the
  GET (no money moves at the GET; the callback is what pays).
- Per card, payouts go out in counter order (issuers refuse a counter lower than one already
  seen): while an earlier tap of a card is still queued, later ones wait. Different cards run
  concurrently, bounded by `concurrency`.
- Retries back off exponentially with jitter per item (`attempts`, `next_attempt_at`), and never
  sooner than a backend's Retry-After. A clock that jumped backwards cannot park an item: a
  `next_attempt_at` further away than any delay this worker sets counts as due.
- The backend's rate limits are a wait, never a failure, and never count as an attempt. With a
  pacer (the backend's budget: Flash allows 20 invoices per 2 minutes per merchant, then blocks
  for 5) the drain creates invoices at the allowed rate and leaves part of every window to sales
  at the counter; a block tripped by another terminal of the merchant pauses it until it ends.
- An issuer that refuses a callback it received (`{"status":"ERROR"}`) may pay anyway (an HTLC
  in flight): the payout stays `SUBMITTING`, its exposure counted, until the invoice is paid or
  expires; only then does it fail, with the issuer's reason (which may block the card).
- One payment, one sale: an invoice whose payment hash another sale holds is never sent.
- An EXPIRED status read long after the invoice expired may come from a provider that has purged
  the invoice (Flash then says EXPIRED even for a paid one): before such a payout is recorded as
  lost, the backend's received payments are searched for it; if they cannot be, it stays
  unresolved (`expired-unverified`), never lost on that word alone.
- Every payout ends PAID or FAILED with a reason (the issuer's, or ours). A failed payout stays in
  the ledger as the merchant's loss; nothing is dropped.

It also marks finished sales `synced`: the backend already holds what it has a place for (BTCPay:
invoice metadata at creation; Flash: the invoice memo), so `synced` means "nothing left to send".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from terminal.core.budget import InvoicePacer
from terminal.core.connectivity import Connectivity
from terminal.core.memo import sale_memo
from terminal.core.ports.backend import (
    Backend,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendUnavailable,
    Invoice,
    InvoiceRequest,
    InvoiceStatus,
)
from terminal.core.ports.books import SyncLedger
from terminal.core.ports.withdraw import Withdraw
from terminal.core.records import PayoutStatus, QueuedPayout, SaleRecord
from terminal.core.sale import SaleState
from terminal.protocols import lnurl

log = logging.getLogger(__name__)

# Reasons this worker writes (the issuer's own codes come from terminal.protocols.lnurl errors).
REASON_OUTCOME_UNKNOWN_EXPIRED = "outcome-unknown-expired"
REASON_UNDERPAID = "invoice-underpaid"
UNDERPAID_MESSAGE = ("Only part of the amount arrived before the invoice expired: not paid; "
                     "refund or settle the part paid from the backend.")
REASON_SALE_MISSING = "sale-missing"
REASON_NO_INVOICE = "outcome-unknown-no-invoice"
REASON_BACKEND_REFUSED = "backend-refused"
REASON_RATE_LIMITED = "backend-rate-limited"
REASON_BUDGET = "waiting-for-backend-budget"
REASON_EXPIRED_UNVERIFIED = "expired-unverified"
REASON_ISSUER_UNREACHABLE = "issuer-unreachable"
REASON_WAITING = "waiting-for-earlier-tap"
# Definite issuer refusals that say the card cannot pay: stop accepting it offline (until it
# pays successfully again).
BLOCKING_REASONS = frozenset(
    {"insufficient-balance", "card-disabled", "replayed-tap", "limit-exceeded", "wrong-pin"}
)
UNSENT_CALLBACK = "unsent_callback"  # payout.metadata key: a callback that never left
# payout.metadata key: the issuer's refusal of a callback that left. It may pay anyway (an HTLC
# in flight), so the payout stays SUBMITTING until the invoice says; if it expires unpaid, this
# is the reason the payout fails with (and the card is blocked by, as before).
ISSUER_REFUSED = "issuer_refused"
REASON_REPLAYED_INVOICE = "backend-replayed-invoice"

# Item outcomes in a SyncReport.
PAID, FAILED, QUEUED, SUBMITTING = "paid", "failed", "queued", "submitting"


@dataclass(frozen=True)
class SyncPolicy:
    base_delay_s: float = 2.0
    max_delay_s: float = 600.0
    max_retry_after_s: float = 3600.0  # a longer Retry-After is capped (the queue must move)
    # After the callback is accepted: how long to follow the invoice before leaving it SUBMITTING
    # for the next pass (resolved through its status then).
    settle_timeout_s: float = 20.0
    settle_first_poll_s: float = 0.02
    settle_max_poll_s: float = 1.0
    # The shortest time between two status requests of a pass: payouts sent meanwhile are
    # checked together, in one request and (those settled) one ledger record.
    settle_batch_s: float = 0.05
    # A stored invoice closer than this to expiry is replaced before it is sent to an issuer
    # (Flash's USD invoices live 60 s: a longer margin would replace every one, each new invoice
    # spending the merchant's invoice limit).
    invoice_margin_s: float = 30.0
    # EXPIRED read more than this after the invoice's expiry is cross-checked with the backend's
    # received payments before it counts (a provider may purge an expired invoice, and Flash
    # then reports EXPIRED even when it was paid).
    expired_trust_s: float = 600.0
    # A pass waits this long at most for the backend's invoice budget; a longer wait ends the
    # pass with the payout queued for the moment the budget allows (run_forever wakes then).
    budget_wait_s: float = 2.0
    # Callback that could not be sent at all (connect errors): in-process retries with the same k1.
    callback_retries: int = 2
    callback_retry_s: float = 0.5
    # An issuer answering garbage to the GET is retried this many attempts, then the payout
    # fails (visibly) instead of blocking the card's queue and the exposure forever.
    max_garbage_attempts: int = 4
    idle_poll_s: float = 5.0  # run_forever: longest sleep between passes
    report_interval_s: float = 300.0  # run_forever: how often finished sales are marked synced

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff with jitter in [½, 1] of the nominal delay."""
        nominal = min(self.max_delay_s, self.base_delay_s * 2 ** min(attempts, 30))
        return float(nominal * rng.uniform(0.5, 1.0))


@dataclass(frozen=True)
class ItemResult:
    payout_id: str
    sale_id: str
    card_id: str
    amount_sats: int
    outcome: str  # paid | failed | queued | submitting
    reason: str | None = None
    message: str = ""
    attempts: int = 0
    next_attempt_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "payout_id": self.payout_id,
            "sale_id": self.sale_id,
            "card_id": self.card_id[:12],  # a prefix is enough to tell cards apart on screen
            "amount_sats": self.amount_sats,
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
        }


@dataclass
class SyncReport:
    started_at: float
    finished_at: float = 0.0
    items: list[ItemResult] = field(default_factory=list)
    reported_sales: int = 0
    backend_down: str | None = None  # why the pass stopped early, if it did

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def paid(self) -> int:
        return self.count(PAID)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def pending(self) -> int:
        return self.count(QUEUED) + self.count(SUBMITTING)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "paid": self.paid,
            "failed": self.failed,
            "pending": self.pending,
            "reported_sales": self.reported_sales,
            "backend_down": self.backend_down,
            "items": [item.to_json() for item in self.items],
        }


class _Pass:
    """State shared by the card chains of one pass."""

    def __init__(self, settlements: _Settlements) -> None:
        self.backend_down: str | None = None
        self.paused_until: float | None = None  # Retry-After for the whole backend
        self.force = False
        self.settlements = settlements


@dataclass
class _Followed:
    payout: QueuedPayout
    sale: SaleRecord
    invoice: Invoice
    future: asyncio.Future[ItemResult]
    deadline: float
    next_check: float
    delay: float = 0.0


class _Settlements:
    """Follows the invoices of sent payouts until they settle, all of a pass's together: one
    status request checks every invoice due (Flash answers many per request), instead of one
    per payout, and a card's chain goes on meanwhile (the issuer's order concerns the GET,
    already made)."""

    def __init__(self, worker: SyncWorker) -> None:
        self.worker = worker
        self._followed: list[_Followed] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def follow(self, payout: QueuedPayout, sale: SaleRecord,
               invoice: Invoice) -> asyncio.Future[ItemResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ItemResult] = loop.create_future()
        now = loop.time()
        self._followed.append(_Followed(payout, sale, invoice, future,
                                        now + self.worker.policy.settle_timeout_s, now))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return future

    async def wait(self) -> None:
        """Until every followed payout has its outcome (settled, or still being sent)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch_s = self.worker.policy.settle_batch_s
        asked_at = -math.inf  # the last status request
        try:
            while self._followed:
                now = loop.time()
                due = [f for f in self._followed if f.next_check <= now]
                if not due or now < asked_at + batch_s:
                    wake_at = max(min(f.next_check for f in self._followed), asked_at + batch_s)
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wake_at - now):
                            await self._wake.wait()
                    continue
                asked_at = now
                statuses = await self.worker._statuses([f.invoice for f in due])
                rest = self._record_settled(due, statuses)
                for followed, status in rest:
                    await self._settle(followed, status, loop.time())
        except Exception:  # never leave a chain without its outcome
            log.exception("following sent payouts failed")
            for followed in list(self._followed):  # a copy: `_done` removes from the list
                self._done(followed, self.worker._result(
                    followed.payout, SUBMITTING, None, "Sent; waiting for the payment to confirm."))

    def _record_settled(self, due: list[_Followed], statuses: list[InvoiceStatus | BackendError]
                        ) -> list[tuple[_Followed, InvoiceStatus | BackendError]]:
        """Record the paid and underpaid payouts of one status answer in ONE ledger transaction
        (one journal record and fsync instead of one each: nothing lies between them that
        needs its own durability boundary), and only then hand out their outcomes, so none is
        reported before it is durable. If the transaction fails nothing of it is recorded:
        `_run` leaves them all SUBMITTING, resolved by the next pass through their invoices.
        The rest (pending, expired, errors: some await the backend) are returned for `_settle`.
        """
        worker = self.worker
        done: list[tuple[_Followed, ItemResult]] = []
        rest: list[tuple[_Followed, InvoiceStatus | BackendError]] = []
        with worker.ledger.transaction():
            for followed, status in zip(due, statuses, strict=True):
                if status is InvoiceStatus.PAID:
                    done.append((followed, worker._finish_paid(followed.payout, followed.sale)))
                elif status is InvoiceStatus.UNDERPAID:
                    done.append((followed, worker._finish_failed(
                        followed.payout, followed.sale, REASON_UNDERPAID, UNDERPAID_MESSAGE)))
                else:
                    rest.append((followed, status))
        for followed, result in done:
            self._done(followed, result)
        return rest

    async def _settle(self, followed: _Followed, status: InvoiceStatus | BackendError,
                      now: float) -> None:
        worker, payout, sale = self.worker, followed.payout, followed.sale
        if isinstance(status, BackendError):
            log.info("payout %s: status check failed (%s)", payout.id[:8], status.message)
        elif status is InvoiceStatus.PAID:
            return self._done(followed, worker._finish_paid(payout, sale))
        elif status is InvoiceStatus.UNDERPAID:
            return self._done(followed, worker._finish_failed(payout, sale, REASON_UNDERPAID,
                                                              UNDERPAID_MESSAGE))
        elif status is InvoiceStatus.EXPIRED:
            return self._done(followed, await worker._expired_unpaid(
                payout, sale, followed.invoice, "The invoice expired unpaid after it was sent."))
        policy = worker.policy
        followed.delay = min(policy.settle_max_poll_s,
                             max(policy.settle_first_poll_s, followed.delay * 2))
        if now + followed.delay > followed.deadline:
            return self._done(followed, worker._result(
                payout, SUBMITTING, None, "Sent; waiting for the payment to confirm."))
        followed.next_check = now + followed.delay
        return None

    def _done(self, followed: _Followed, result: ItemResult) -> None:
        self._followed.remove(followed)
        if not followed.future.done():
            followed.future.set_result(result)


class _Requeue(Exception):
    """Internal: the payout goes back to (or stays) QUEUED with backoff. `counts=False` (a rate
    limit, the budget): not the payout's failure, no attempt counted, due exactly when told."""

    def __init__(self, reason: str, message: str, retry_after_s: float | None = None,
                 *, counts: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s
        self.counts = counts


class _Fail(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SyncWorker:
    def __init__(
        self,
        ledger: SyncLedger,
        backend: Backend,
        withdraw: Withdraw,
        connectivity: Connectivity,
        *,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        policy: SyncPolicy | None = None,
        terminal_id: str | None = None,
        invoice_expiry_s: int = 300,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pacer: InvoicePacer | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        # The backend's own budget when it keeps one (Flash); none: no pacing.
        found = getattr(backend, "budget", None)
        self.pacer = pacer if pacer is not None else (
            found if isinstance(found, InvoicePacer) else None)
        self.ledger = ledger
        self.backend = backend
        self.withdraw = withdraw
        self.connectivity = connectivity
        self.concurrency = concurrency
        self.clock = clock
        self.rng = rng or random.Random()
        self.policy = policy or SyncPolicy()
        self.terminal_id = terminal_id
        self.invoice_expiry_s = invoice_expiry_s
        self._sleep = sleep
        self._last_report: float | None = None

    # ------------------------------------------------------------------------------ passes
    async def run_once(self, *, report_sales: bool = True, force: bool = False) -> SyncReport:
        """One pass: resolve SUBMITTING payouts, submit due QUEUED ones, mark finished sales.

        `force` (a pass run by hand) tries every queued payout now, backoff or not; the order
        per card and a Retry-After met during the pass still hold.
        """
        report = SyncReport(started_at=self.clock())
        state = _Pass(_Settlements(self))
        state.force = force
        chains: dict[str, list[QueuedPayout]] = {}
        for payout in (self.ledger.payouts(PayoutStatus.SUBMITTING)
                       + self.ledger.payouts(PayoutStatus.QUEUED)):
            chains.setdefault(payout.card_id, []).append(payout)
        limit = asyncio.Semaphore(self.concurrency)

        async def chain(items: list[QueuedPayout]) -> list[ItemResult | asyncio.Future[ItemResult]]:
            async with limit:
                return await self._run_chain(sorted(items, key=lambda p: p.counter), state)

        outcomes = await asyncio.gather(*(chain(items) for items in chains.values()))
        await state.settlements.wait()
        for results in outcomes:
            report.items.extend(r.result() if isinstance(r, asyncio.Future) else r
                                for r in results)
        report.backend_down = state.backend_down
        if report_sales and state.backend_down is None:
            report.reported_sales = self.mark_synced()
        report.finished_at = self.clock()
        return report

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Drain whenever the backend is reachable, until `stop` is set."""
        while not stop.is_set():
            wait_s = self.policy.idle_poll_s
            if self.connectivity.online or await self._probe():
                since = None if self._last_report is None else self.clock() - self._last_report
                due_report = since is None or abs(since) >= self.policy.report_interval_s
                try:
                    report = await self.run_once(report_sales=due_report)
                except Exception:  # never let one bad record stop the worker
                    log.exception("sync pass failed")
                    report = None
                if report is not None:
                    if due_report and report.backend_down is None:
                        self._last_report = self.clock()
                    wait_s = self._next_wake_s(report)
            else:
                wait_s = self.connectivity.next_probe_in_s()
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait_s)
            except TimeoutError:
                pass

    async def drain(self, *, timeout_s: float) -> SyncReport:
        """Passes until nothing is queued or being sent (or `timeout_s` is spent), waiting
        between them as `run_forever` does: at the backend's allowed rate. The report holds
        each payout's last outcome."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        latest: dict[str, ItemResult] = {}
        started: float | None = None
        report = SyncReport(started_at=self.clock())
        while True:
            report = await self.run_once(report_sales=False)
            started = report.started_at if started is None else started
            latest.update((item.payout_id, item) for item in report.items)
            if not any(i.outcome in (QUEUED, SUBMITTING) for i in report.items):
                break
            wait = self._next_wake_s(report)
            if loop.time() + wait > deadline:
                break
            await self._sleep(wait)
        return SyncReport(started_at=started, finished_at=self.clock(),
                          items=list(latest.values()), backend_down=report.backend_down)

    async def _probe(self) -> bool:
        try:
            health = await self.backend.health()
        except BackendError as exc:
            self.connectivity.failure(self.clock(), exc.message)
            return False
        if health.ok:
            self.connectivity.success(self.clock())
        else:
            self.connectivity.failure(self.clock(), health.detail)
        return health.ok

    def _next_wake_s(self, report: SyncReport) -> float:
        now = self.clock()
        waits = [self.policy.idle_poll_s]
        for item in report.items:
            # A tap held back behind an earlier one of its card goes when that one does.
            if (item.outcome == QUEUED and item.next_attempt_at is not None
                    and item.reason != REASON_WAITING):
                waits.append(max(0.05, item.next_attempt_at - now))
        return min(waits)

    # ------------------------------------------------------------------------------ chains
    async def _run_chain(self, items: list[QueuedPayout], state: _Pass
                         ) -> list[ItemResult | asyncio.Future[ItemResult]]:
        """One card's payouts in counter order; a still-queued earlier tap holds back later ones.
        A sent payout's settlement is followed by the pass (a future), not waited for here."""
        results: list[ItemResult | asyncio.Future[ItemResult]] = []
        blocked = False
        for payout in items:
            if payout.status == PayoutStatus.SUBMITTING:
                if state.backend_down is not None:
                    results.append(self._result(payout, SUBMITTING, None, state.backend_down))
                    continue
                results.append(await self._resolve_submitting(payout, state))
                continue
            if blocked:
                results.append(self._result(payout, QUEUED, REASON_WAITING,
                                            "An earlier tap of this card is still queued."))
                continue
            if state.backend_down is not None or not self._due(payout, state):
                blocked = True
                why = ("The backend is unreachable; it will be retried." if state.backend_down
                       else "Not due yet (backing off).")
                results.append(self._result(payout, QUEUED, None, why))
                continue
            result = await self._submit(payout, state)
            blocked = isinstance(result, ItemResult) and result.outcome == QUEUED
            results.append(result)
        return results

    def _due(self, payout: QueuedPayout, state: _Pass) -> bool:
        now = self.clock()
        if state.paused_until is not None and state.paused_until > now:
            return False
        if state.force:
            return True
        ahead = payout.next_attempt_at - now
        # Further ahead than any delay we set: the clock went backwards. Due now.
        horizon = max(self.policy.max_delay_s, self.policy.max_retry_after_s)
        return ahead <= 0 or ahead > horizon

    # ------------------------------------------------------------------------------ submit
    async def _submit(self, payout: QueuedPayout, state: _Pass
                      ) -> ItemResult | asyncio.Future[ItemResult]:
        sale = self.ledger.get_sale(payout.sale_id)
        if sale is None:
            return self._finish_failed(payout, None, REASON_SALE_MISSING,
                                       "The sale for this payout is missing from the ledger.")
        if sale.is_final:  # settled by an earlier run that stopped before the payout was
            return self._adopt_final_sale(payout, sale)
        try:
            if self._needs_invoice(sale):
                await self._budget(state)
            invoice = await self._invoice_for(payout, sale, state)
            # Write-ahead: the invoice (on the sale) and SUBMITTING together, before the GET.
            payout.status = PayoutStatus.SUBMITTING
            payout.attempts += 1
            payout.payment_hash = invoice.payment_hash
            payout.error_message = None
            with self.ledger.transaction():
                self.ledger.save_payout(payout)
                self.ledger.save_sale(sale)
            request = await self._fetch(payout)
        except _Requeue as requeue:
            return self._requeue(payout, requeue, state)
        except _Fail as fail:
            return self._finish_failed(payout, sale, fail.reason, fail.message)
        return await self._callback(payout, sale, invoice, request, state)

    def _needs_invoice(self, sale: SaleRecord) -> bool:
        left = (sale.invoice_expires_at or 0) - self.clock()
        return not (sale.bolt11 and left > self.policy.invoice_margin_s)

    async def _budget(self, state: _Pass) -> None:
        """Wait (briefly) for the backend's invoice budget, or requeue until it allows."""
        if self.pacer is None:
            return
        wait = self.pacer.invoice_wait_s(self.clock(), background=True)
        if wait <= 0:
            return
        if wait <= self.policy.budget_wait_s:
            await self._sleep(wait)
            return
        raise _Requeue(REASON_BUDGET,
                       f"Waiting for the backend's invoice limit (next invoice in {wait:.0f} s); "
                       "sales at the counter go first.", wait, counts=False)

    async def _invoice_for(self, payout: QueuedPayout, sale: SaleRecord, state: _Pass) -> Invoice:
        """The sale's invoice, created (idempotency key: the sale id) when missing or stale."""
        current = sale.invoice()
        if current is not None and not self._needs_invoice(sale):
            return current
        # Only a QUEUED payout gets here: its invoice (if any) never went to an issuer, so an
        # expired one is simply replaced.
        generation = int(payout.metadata.get("invoices", 0))
        # Its own key space: checkout may already have used the sale id for an invoice whose
        # answer was lost when the terminal went offline (BTCPay would find that one).
        key = f"{sale.id}:offline:{generation}"
        request = InvoiceRequest(
            amount_minor=payout.amount_sats,
            currency="SAT",  # what the offline policy approved, in the unit the card is charged
            memo=self._memo(payout, sale),
            idempotency_key=key,
            expires_in_s=self.invoice_expiry_s,
            background=True,  # the counter's sales go first under the backend's limits
            metadata={
                "saleId": sale.id,
                "terminalId": self.terminal_id or sale.terminal_id or "",
                "offline": "true",
                "capturedAt": _iso(payout.created_at),
                "amount": str(sale.amount_minor),
                "currency": sale.currency,
            },
        )
        try:
            invoice = await self.backend.create_invoice(request)
        except BackendRateLimited as exc:
            # A wait, never a loss: the whole pass stops creating invoices until then.
            state.paused_until = self.clock() + exc.retry_after_s
            reason = REASON_BUDGET if exc.code == "budget" else REASON_RATE_LIMITED
            raise _Requeue(reason, exc.message, exc.retry_after_s, counts=False) from None
        except BackendRejected as exc:
            raise _Fail(exc.reason(REASON_BACKEND_REFUSED), exc.message) from None
        except BackendError as exc:  # unreachable, unauthorized, nonsense: try again later
            if isinstance(exc, BackendUnavailable):
                self.connectivity.failure(self.clock(), exc.message)
            state.backend_down = exc.message
            raise _Requeue(exc.reason("backend-unavailable"), exc.message) from None
        self.connectivity.success(self.clock())
        holder = self.ledger.find_sale_by_payment_hash(invoice.payment_hash)
        if holder is not None and holder.id != sale.id:
            # One payment, one sale: an invoice another sale holds (a replay, a caching proxy)
            # is never sent to an issuer. Asked again later, with the next key.
            payout.metadata["invoices"] = generation + 1
            raise _Requeue(REASON_REPLAYED_INVOICE,
                           f"The backend answered with the invoice of sale {holder.id[:8]}.")
        # The card's queued total was raised by the capture amount; remember it before the sale
        # amount becomes the invoice's (whole sats).
        payout.metadata.setdefault("queued_msat", sale.amount_msat or payout.amount_sats * 1000)
        payout.metadata["invoices"] = generation + 1
        sale.bolt11 = invoice.bolt11
        sale.payment_hash = invoice.payment_hash
        sale.priced(invoice.amount_msat)
        sale.invoice_ref = invoice.backend_ref
        sale.invoice_expires_at = invoice.expires_at
        sale.updated_at = self.clock()
        return invoice

    def _memo(self, payout: QueuedPayout, sale: SaleRecord) -> str:
        base = sale.memo or f"Sale {sale.id[:8]}"
        text = (f"{base} (offline tap {_iso(payout.created_at)}, card {payout.card_id[:8]}, "
                f"{sale.amount_minor} {sale.currency})")
        return sale_memo(text, terminal_id=self.terminal_id or sale.terminal_id or "ft",
                         sale_id=sale.id)

    async def _fetch(self, payout: QueuedPayout) -> lnurl.WithdrawRequest:
        try:
            return await self.withdraw.fetch_request(payout.tap_url)
        except lnurl.IssuerGarbage as exc:
            if payout.attempts >= self.policy.max_garbage_attempts:
                raise _Fail(exc.code, _plain(exc)) from None
            raise _Requeue(exc.code, _plain(exc)) from None
        except lnurl.IssuerUnreachable as exc:
            # No money moves at the GET. If it did reach the issuer, the retry is refused there
            # ("already used") and ends FAILED; nothing can be paid twice.
            raise _Requeue(exc.code, _plain(exc)) from None
        except lnurl.LnurlError as exc:
            raise _Fail(exc.code, _plain(exc)) from None

    async def _callback(
        self, payout: QueuedPayout, sale: SaleRecord, invoice: Invoice,
        request: lnurl.WithdrawRequest, state: _Pass,
    ) -> ItemResult | asyncio.Future[ItemResult]:
        try:
            lnurl.check_amount(request, invoice.amount_msat, None)
        except lnurl.LnurlError as exc:  # nothing was sent: the card cannot pay this (PIN, max)
            return self._finish_failed(payout, sale, exc.code, _plain(exc))
        # The sale reads SUBMITTED from here; it is saved with the outcome, not on its own. The
        # write-ahead that keeps this callback from ever going twice is the payout's SUBMITTING
        # record, durable since before the GET; a QUEUED and a SUBMITTED sale are alike to every
        # reader (refunds, recovery, receipts, the queue). One durable write fewer per payout.
        self._sale_event(sale, "submitted")
        for attempt in range(self.policy.callback_retries + 1):
            try:
                await self.withdraw.submit(request, invoice.bolt11, invoice.amount_msat, None)
                break
            except lnurl.IssuerUnreachable as exc:
                # The callback never left: the same k1 may be sent again (the p/c is not, and
                # the GET already spent it). Keep the request so later passes can send it while
                # the invoice lives, instead of losing the payment over a short outage.
                if attempt == self.policy.callback_retries:
                    return self._keep_unsent_callback(payout, request, _plain(exc))
                await self._sleep(self.policy.callback_retry_s * (attempt + 1))
            except (lnurl.CallbackOutcomeUnknown, lnurl.IssuerGarbage):
                break  # it may have arrived: only the invoice status can tell
            except lnurl.IssuerError as exc:
                # The issuer refused the callback it received: it may pay anyway (servers
                # answer ERROR while an HTLC is in flight). Only the invoice can tell.
                self._note_refusal(payout, exc)
                break
            except lnurl.LnurlError as exc:  # refused before sending (URL, amount): not sent
                return self._finish_failed(payout, sale, exc.code, _plain(exc))
        return state.settlements.follow(payout, sale, invoice)

    def _note_refusal(self, payout: QueuedPayout, exc: lnurl.IssuerError) -> None:
        payout.metadata[ISSUER_REFUSED] = exc.code
        payout.metadata[f"{ISSUER_REFUSED}_text"] = _plain(exc)
        payout.error_message = f"{exc.code}: {_plain(exc)} (waiting for the invoice)"
        self.ledger.save_payout(payout)

    async def _expired_unpaid(self, payout: QueuedPayout, sale: SaleRecord, invoice: Invoice,
                              unknown_message: str) -> ItemResult:
        """The backend says the invoice expired after the callback left: the issuer's refusal,
        if it refused, is the reason; otherwise the outcome was simply unknown."""
        refused = payout.metadata.get(ISSUER_REFUSED)
        if isinstance(refused, str) and refused:
            said = payout.metadata.get(f"{ISSUER_REFUSED}_text") or refused
            return await self._expired(payout, sale, invoice, refused,
                                       f"{said} (the invoice then expired unpaid)")
        return await self._expired(payout, sale, invoice, REASON_OUTCOME_UNKNOWN_EXPIRED,
                                   unknown_message)

    async def _statuses(self, invoices: list[Invoice]) -> list[InvoiceStatus | BackendError]:
        """Several invoices' statuses: in one request when the backend can (Flash), else one
        request each, concurrently."""
        batch = getattr(self.backend, "invoice_statuses", None)
        if batch is not None:
            results: list[InvoiceStatus | BackendError] = await batch(invoices)
            return results
        answers = await asyncio.gather(*(self.backend.invoice_status(i) for i in invoices),
                                       return_exceptions=True)
        out: list[InvoiceStatus | BackendError] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, BackendError):
                raise answer
            out.append(answer)
        return out

    # ------------------------------------------------------------------------------ resolve
    async def _resolve_submitting(self, payout: QueuedPayout, state: _Pass
                                  ) -> ItemResult | asyncio.Future[ItemResult]:
        """Outcome unknown: ask the invoice, never the issuer again."""
        sale = self.ledger.get_sale(payout.sale_id)
        if sale is None:
            return self._finish_failed(payout, None, REASON_SALE_MISSING,
                                       "The sale for this payout is missing from the ledger.")
        if sale.is_final:
            return self._adopt_final_sale(payout, sale)
        invoice = sale.invoice()
        if invoice is None:  # cannot happen (written together), but never leave it hanging
            return self._finish_failed(payout, sale, REASON_NO_INVOICE,
                                       "No invoice was recorded for a payout being sent.")
        try:
            status = await self.backend.invoice_status(invoice)
        except BackendRateLimited as exc:
            state.paused_until = self.clock() + exc.retry_after_s
            return self._result(payout, SUBMITTING, "backend-rate-limited", exc.message)
        except BackendError as exc:
            if isinstance(exc, BackendUnavailable):
                self.connectivity.failure(self.clock(), exc.message)
                state.backend_down = exc.message
            return self._result(payout, SUBMITTING, exc.reason("backend-unavailable"),
                                exc.message)
        self.connectivity.success(self.clock())
        if status is InvoiceStatus.PAID:
            return self._finish_paid(payout, sale)
        unsent = payout.metadata.get(UNSENT_CALLBACK)
        if status is InvoiceStatus.UNDERPAID:
            return self._finish_failed(payout, sale, REASON_UNDERPAID, UNDERPAID_MESSAGE)
        if status is InvoiceStatus.EXPIRED:
            if unsent:
                return await self._expired(
                    payout, sale, invoice, REASON_ISSUER_UNREACHABLE,
                    "The card's issuer could not be reached before the invoice expired.",
                )
            return await self._expired_unpaid(
                payout, sale, invoice,
                "The payment's outcome was unknown and its invoice expired unpaid.")
        if unsent:  # known NOT sent: the same k1 may go out now
            return await self._retry_unsent_callback(payout, sale, invoice, unsent, state)
        return self._result(payout, SUBMITTING, None, "Outcome unknown; invoice still open.")

    async def _expired(self, payout: QueuedPayout, sale: SaleRecord, invoice: Invoice,
                       reason: str, message: str) -> ItemResult:
        """The backend says EXPIRED. Soon after expiry that is the answer; long after, the
        provider may have purged a PAID invoice: look the payment up before recording a loss."""
        if self.clock() - invoice.expires_at <= self.policy.expired_trust_s:
            return self._finish_failed(payout, sale, reason, message)
        try:
            payment = await self.backend.find_payment(invoice)
        except BackendError as exc:
            log.warning("payout %s: expired long ago and not verifiable (%s)", payout.id[:8],
                        exc.message)
            return self._result(
                payout, SUBMITTING, REASON_EXPIRED_UNVERIFIED,
                "The backend reports the invoice expired, but it was checked long after "
                "expiry, when a paid invoice can read the same; its received payments could "
                f"not be searched ({exc.message}). Left unresolved: not counted as lost.")
        if payment is not None and payment.payment_hash == invoice.payment_hash:
            log.info("payout %s: found paid in the backend's received payments", payout.id[:8])
            return self._finish_paid(payout, sale)
        return self._finish_failed(payout, sale, reason,
                                   message + " (checked in the backend's received payments)")

    def _keep_unsent_callback(
        self, payout: QueuedPayout, request: lnurl.WithdrawRequest, message: str
    ) -> ItemResult:
        payout.metadata[UNSENT_CALLBACK] = {
            "callback": request.callback,
            "k1": request.k1,
            "min_msat": request.min_withdrawable_msat,
            "max_msat": request.max_withdrawable_msat,
        }
        payout.error_message = f"{REASON_ISSUER_UNREACHABLE}: {message}"
        self.ledger.save_payout(payout)  # the ledger is 0600; k1 is single-use anyway
        return self._result(payout, SUBMITTING, REASON_ISSUER_UNREACHABLE,
                            "The issuer could not be reached; the callback will be retried.")

    async def _retry_unsent_callback(
        self, payout: QueuedPayout, sale: SaleRecord, invoice: Invoice, unsent: dict[str, Any],
        state: _Pass,
    ) -> ItemResult | asyncio.Future[ItemResult]:
        request = lnurl.WithdrawRequest(
            card_url=payout.tap_url,
            callback=unsent["callback"],
            k1=unsent["k1"],
            min_withdrawable_msat=int(unsent["min_msat"]),
            max_withdrawable_msat=int(unsent["max_msat"]),
        )
        try:
            await self.withdraw.submit(request, invoice.bolt11, invoice.amount_msat, None)
        except lnurl.IssuerUnreachable as exc:
            return self._result(payout, SUBMITTING, REASON_ISSUER_UNREACHABLE, _plain(exc))
        except (lnurl.CallbackOutcomeUnknown, lnurl.IssuerGarbage):
            pass  # it may have arrived: the invoice status tells
        except lnurl.IssuerError as exc:
            self._note_refusal(payout, exc)  # it may pay anyway: the invoice status tells
        except lnurl.LnurlError as exc:
            return self._finish_failed(payout, sale, exc.code, _plain(exc))
        del payout.metadata[UNSENT_CALLBACK]
        self.ledger.save_payout(payout)
        return state.settlements.follow(payout, sale, invoice)

    # ------------------------------------------------------------------------------ endings
    def _requeue(self, payout: QueuedPayout, why: _Requeue, state: _Pass) -> ItemResult:
        now = self.clock()
        if not why.counts:
            # A rate limit or the budget: due exactly when the backend allows (a little jitter
            # so terminals told the same time do not return together), no attempt spent.
            told = min(why.retry_after_s or 0.0, self.policy.max_retry_after_s)
            delay = told * self.rng.uniform(1.0, 1.02) if told > 0 else 0.0
        else:
            if payout.status != PayoutStatus.SUBMITTING:
                payout.attempts += 1  # the failed invoice creation counts as an attempt
            delay = self.policy.delay(payout.attempts - 1, self.rng)
            if why.retry_after_s is not None:
                delay = max(delay, min(why.retry_after_s, self.policy.max_retry_after_s))
        payout.status = PayoutStatus.QUEUED
        payout.next_attempt_at = now + delay
        payout.error_message = f"{why.reason}: {why.message}"
        self.ledger.save_payout(payout)
        return self._result(payout, QUEUED, why.reason, why.message)

    def _finish_paid(self, payout: QueuedPayout, sale: SaleRecord) -> ItemResult:
        if sale.state == SaleState.QUEUED.value:
            self._sale_event(sale, "submitted")
        if sale.state != SaleState.PAID.value:
            self._sale_event(sale, "paid")
        sale.synced = True  # the backend holds the invoice (memo / metadata) and its payment
        return self._finish(payout, sale, PayoutStatus.PAID, None, "Paid.")

    def _finish_failed(
        self, payout: QueuedPayout, sale: SaleRecord | None, reason: str, message: str
    ) -> ItemResult:
        if sale is not None and not sale.is_final:
            self._sale_event(sale, "fail", reason)
            sale.synced = True
        return self._finish(payout, sale, PayoutStatus.FAILED, reason, message)

    def _adopt_final_sale(self, payout: QueuedPayout, sale: SaleRecord) -> ItemResult:
        if sale.state == SaleState.PAID.value:
            return self._finish(payout, sale, PayoutStatus.PAID, None, "Paid.")
        reason = sale.reason or sale.state
        return self._finish(payout, sale, PayoutStatus.FAILED, reason, f"Sale ended {sale.state}.")

    def _finish(
        self, payout: QueuedPayout, sale: SaleRecord | None, status: str, reason: str | None,
        message: str,
    ) -> ItemResult:
        payout.status = status
        payout.completed_at = self.clock()
        payout.error_message = None if reason is None else f"{reason}: {message}"
        card = self.ledger.card(payout.card_id)
        queued = int(payout.metadata.get("queued_msat") or
                     (sale.amount_msat if sale and sale.amount_msat else payout.amount_sats * 1000))
        card.queued_msat = max(0, card.queued_msat - queued)
        if status == PayoutStatus.FAILED and reason in BLOCKING_REASONS:
            # The issuer says this card cannot pay: accepting it offline again would only
            # queue more losses. A later successful payment lifts the block.
            card.blocked, card.blocked_reason = True, reason
        elif status == PayoutStatus.PAID and card.blocked:
            card.blocked, card.blocked_reason = False, None
        with self.ledger.transaction():  # payout, sale and card totals change together
            self.ledger.save_payout(payout)
            if sale is not None:
                self.ledger.save_sale(sale)
            self.ledger.save_card(card)
        outcome = PAID if status == PayoutStatus.PAID else FAILED
        if outcome == FAILED:
            log.warning("payout %s for sale %s failed: %s", payout.id[:8], payout.sale_id[:8],
                        reason)
        return self._result(payout, outcome, reason, message)

    def _sale_event(self, sale: SaleRecord, event: str, detail: str | None = None) -> None:
        machine = sale.to_sale()
        machine.apply(event, self.clock(), detail)
        sale.follow(machine)
        sale.updated_at = self.clock()

    def _result(
        self, payout: QueuedPayout, outcome: str, reason: str | None, message: str
    ) -> ItemResult:
        return ItemResult(
            payout_id=payout.id,
            sale_id=payout.sale_id,
            card_id=payout.card_id,
            amount_sats=payout.amount_sats,
            outcome=outcome,
            reason=reason,
            message=message,
            attempts=payout.attempts,
            next_attempt_at=payout.next_attempt_at if outcome == QUEUED else None,
        )

    # ------------------------------------------------------------------------------ reporting
    def drain_time_s(self) -> float | None:
        """How long the queued payouts need at the backend's invoice limit (None: no pacer, the
        backend's rate is not the bound). Shown beside the offline exposure."""
        if self.pacer is None:
            return None
        queued = len(self.ledger.payouts(PayoutStatus.QUEUED))
        return self.pacer.drain_time_s(queued, self.clock())

    def mark_synced(self) -> int:
        """Mark finished sales synced; returns how many were marked.

        Nothing is sent here: what the backend has a place for went with the invoice at creation
        (BTCPay metadata, Flash memo), and a sale that never got an invoice has nothing to send.
        """
        todo = self.ledger.unsynced_sales()  # final sales not yet marked: indexed, not a scan
        if not todo:
            return 0
        with self.ledger.transaction():
            for sale in todo:
                sale.synced = True
                self.ledger.save_sale(sale)
        return len(todo)


def _plain(exc: lnurl.LnurlError) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else str(exc)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


__all__ = ["ItemResult", "SyncPolicy", "SyncReport", "SyncWorker"]
