"""Invoice status checks, batched: concurrent `lnInvoicePaymentStatus` queries share requests.

Flash executes every field of a document, so one request can ask for many invoices under aliases
(`flash_documents.ln_invoice_payment_status_batch`). Checks asked while a request is in flight
wait for the next one; checks asked together go together (up to `STATUS_BATCH_MAX`). A drain that
follows many payouts at once then costs one round trip per round, not one per payout.

The status query is public: it is sent without the API key, which would count against its limit.
One field that throws (IBEX_ERROR: the provider does not know that invoice) nulls the whole
`data`; its error's `path` names the alias, and the others are asked again without it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from terminal.adapters.backends import flash_documents as docs
from terminal.adapters.backends import flash_errors
from terminal.adapters.backends.flash_graphql import FlashTransport
from terminal.adapters.backends.http import clean_text, with_retries
from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    InvoiceStatus,
)

log = logging.getLogger(__name__)

STATUS = {
    "PENDING": InvoiceStatus.PENDING,
    "PAID": InvoiceStatus.PAID,
    "EXPIRED": InvoiceStatus.EXPIRED,
}
SINGLE_OPERATION = "LnInvoicePaymentStatus"
MAX_IN_FLIGHT = 2

Result = InvoiceStatus | BackendError


def status_value(raw: Any) -> InvoiceStatus:
    status = STATUS.get(raw) if isinstance(raw, str) else None
    if status is None:
        shown = raw if isinstance(raw, str | None) else type(raw).__name__
        text = clean_text(str(shown), 40)
        raise BackendProtocolError(f"Flash reported an unknown invoice status {text!r}.",
                                   code="bad_status")
    return status


def status_from_payload(payload: Any, operation: str) -> InvoiceStatus:
    """A `LnInvoicePaymentStatusPayload` ({status, errors}) as a status, or its error raised."""
    if not isinstance(payload, dict):
        raise BackendProtocolError(f"Flash answered {operation} without a status payload.",
                                   code="bad_status")
    errors = flash_errors.parse_errors(payload.get("errors"), operation)
    if errors:
        raise flash_errors.payload_error(errors, operation)
    return status_value(payload.get("status"))


class StatusBatcher:
    """Coalesces status checks into aliased batch requests."""

    def __init__(self, transport: FlashTransport, *, max_batch: int = docs.STATUS_BATCH_MAX,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._transport = transport
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[str, asyncio.Future[InvoiceStatus]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0  # batch requests sent (for the benchmark)

    async def status(self, payment_request: str) -> InvoiceStatus:
        future: asyncio.Future[InvoiceStatus] = asyncio.get_running_loop().create_future()
        self._pending.append((payment_request, future))
        self._schedule()
        return await future

    async def statuses(self, payment_requests: list[str]) -> list[Result]:
        """Several at once; each result is its status or the error for that one invoice."""
        results = await asyncio.gather(*(self.status(pr) for pr in payment_requests),
                                       return_exceptions=True)
        out: list[Result] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, BackendError):
                raise result
            out.append(result)
        return out

    def _schedule(self) -> None:
        # Let every check asked in this turn of the loop join the batch before it goes.
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending and self._in_flight < self._max_in_flight:
            batch, self._pending = (self._pending[: self._max_batch],
                                    self._pending[self._max_batch:])
            batch = [(pr, fut) for pr, fut in batch if not fut.done()]  # cancelled waiters
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, asyncio.Future[InvoiceStatus]]]) -> None:
        try:
            requests = list(dict.fromkeys(pr for pr, _ in batch))
            try:
                results = await self._query(requests)
            except BackendError as exc:
                results = {pr: exc for pr in requests}
            except Exception as exc:  # noqa: BLE001 - never leave a waiter hanging
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for pr, future in batch:
                if future.done():
                    continue
                result = results[pr]
                if isinstance(result, BackendError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule()

    async def _query(self, requests: list[str]) -> dict[str, Result]:
        if len(requests) == 1:
            data = await with_retries(lambda: self._transport.call(
                docs.LN_INVOICE_PAYMENT_STATUS, {"input": {"paymentRequest": requests[0]}},
                SINGLE_OPERATION), self._transport.retry)
            self.requests += 1
            return {requests[0]: self._one(data.get("lnInvoicePaymentStatus"))}
        results: dict[str, Result] = {}
        todo = requests
        for _round in range(3):  # more rounds for those whose batch-mate threw
            answer = await with_retries(functools.partial(self._send, todo),
                                        self._transport.retry)
            failed = self._split_errors(answer, todo, results)
            if answer.data is not None:
                for n, pr in enumerate(todo):
                    if pr not in results:
                        results[pr] = self._one(answer.data.get(f"s{n}"))
                return results
            todo = [pr for pr in todo if pr not in results]
            if not todo or not failed:
                break
        for pr in todo:
            results.setdefault(pr, BackendProtocolError(
                "Flash answered a status batch without data.", code="no_data"))
        return results

    async def _send(self, requests: list[str]):  # -> Answer
        variables = {f"i{n}": {"paymentRequest": pr} for n, pr in enumerate(requests)}
        self.requests += 1
        return await self._transport.exchange(
            docs.ln_invoice_payment_status_batch(len(requests)), variables,
            docs.STATUS_BATCH_OPERATION)

    @staticmethod
    def _split_errors(answer: Any, todo: list[str], results: dict[str, Result]) -> bool:
        """Give each alias-pathed error to its invoice; True when any could be placed. An error
        that names no alias fails the whole batch."""
        placed = False
        for error in answer.errors:
            alias = error.path[0] if error.path else ""
            index = int(alias[1:]) if alias[:1] == "s" and alias[1:].isdigit() else -1
            if 0 <= index < len(todo):
                results[todo[index]] = flash_errors.top_level_error([error], SINGLE_OPERATION)
                placed = True
        if answer.errors and not placed:
            error = flash_errors.top_level_error(answer.errors, SINGLE_OPERATION)
            for pr in todo:
                results[pr] = error
        return placed

    @staticmethod
    def _one(payload: Any) -> Result:
        try:
            return status_from_payload(payload, SINGLE_OPERATION)
        except BackendError as exc:
            return exc

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
