"""GraphQL over HTTP to Flash: one request, its answer type-checked and its errors mapped.

Every Flash call goes through `FlashTransport`: `backends/http.py` sends it (`JsonEndpoint`,
transport errors mapped there) and retries idempotent reads (`with_retries`); `flash_errors` maps
what Flash answers. A request carries the API key only when it needs one (`keyed=True`): every
keyed request counts against the key's limit (120 a minute), so whatever works anonymously
(status, prices, currency list, the recipient's wallet) goes without it. Keyed requests are
paced by the backend budget's API-key window.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from terminal.adapters.backends import flash_errors
from terminal.adapters.backends.budget import BackendBudget
from terminal.adapters.backends.http import (
    RetryPolicy,
    body_excerpt,
    parse_json,
    retry_after_s,
    try_json,
    with_retries,
)
from terminal.adapters.backends.json_endpoint import HttpAnswer, JsonEndpoint
from terminal.core.budget import Ticket
from terminal.core.ports.backend import (
    BackendProtocolError,
    BackendRateLimited,
    BackendUnauthorized,
    BackendUnavailable,
)

log = logging.getLogger(__name__)
SERVICE = "Flash"


@dataclass
class Credentials:
    api_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def present(self) -> bool:
        return bool(self.api_key or self.session_token)

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"X-API-KEY": self.api_key}
        if self.session_token:
            return {"Authorization": f"Bearer {self.session_token}"}
        return {}


@dataclass(frozen=True)
class Answer:
    """A GraphQL response: `data` (an object or None) and its top-level errors, checked."""

    data: dict[str, Any] | None
    errors: list[flash_errors.FlashError]


class FlashTransport:
    def __init__(
        self,
        endpoint: JsonEndpoint,
        credentials: Credentials,
        budget: BackendBudget,
        retry: RetryPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.endpoint = endpoint
        self.url = str(endpoint.url)
        self.credentials = credentials
        self.budget = budget
        self.retry = retry
        self.clock = clock

    async def read(self, document: str, variables: dict[str, Any], operation: str, *,
                   keyed: bool = False, background: bool = False) -> dict[str, Any]:
        """An idempotent query, retried on unavailability and (short) rate limits."""
        return await with_retries(
            lambda: self.call(document, variables, operation, keyed=keyed,
                              background=background), self.retry)

    async def call(self, document: str, variables: dict[str, Any], operation: str, *,
                   keyed: bool = False, mutation: bool = False,
                   background: bool = False) -> dict[str, Any]:
        """One request; its `data`, or the mapped error."""
        answer = await self.exchange(document, variables, operation, keyed=keyed,
                                     mutation=mutation, background=background)
        if answer.errors:
            raise flash_errors.top_level_error(answer.errors, operation)
        if answer.data is None:
            raise BackendProtocolError(f"Flash answered {operation} without data.",
                                       code="no_data")
        return answer.data

    async def exchange(self, document: str, variables: dict[str, Any], operation: str, *,
                       keyed: bool = False, mutation: bool = False,
                       background: bool = False) -> Answer:
        """One request; data and errors side by side (a batch reads both). Limits, credential
        and transport failures are raised here."""
        body = json.dumps({"query": document, "variables": variables,
                           "operationName": operation}, separators=(",", ":")).encode()
        headers: dict[str, str] = {}
        ticket = None
        if keyed and self.credentials.present:
            headers.update(self.credentials.headers())
            if self.credentials.api_key:
                ticket = await self._key_slot(operation, background)
        try:
            response = await self.endpoint.post(body, headers)
        except BackendUnavailable as exc:
            if ticket is not None:
                if exc.code == "not_sent":
                    self.budget.key_not_sent(ticket)
                else:
                    self.budget.key_answered(ticket)
            if mutation and exc.code != "not_sent":
                raise BackendUnavailable(
                    f"Flash's answer to {operation} was lost ({exc.message}): it may or may not "
                    "have been done. Not re-sent; check before trying again.",
                    code="outcome_unknown") from None
            raise
        if ticket is not None:
            self.budget.key_answered(ticket)
        answer = self._parse(response, operation, mutation=mutation, keyed=keyed)
        for error in answer.errors:
            if error.code == flash_errors.CODE_KEY_LIMIT:
                self.budget.key_refused(error.retry_after_s)
                raise flash_errors.rate_limited(error)
        return answer

    async def _key_slot(self, operation: str, background: bool) -> Ticket:
        """Wait for the API key's budget: briefly for a sale, up to a window for background
        work (which leaves part of every window to sales); a longer wait is raised."""
        limit = self.budget.key_limit
        max_wait = (limit.duration_s + limit.margin_s if background
                    else self.retry.max_retry_after_s)
        while True:
            ticket, wait = self.budget.take_key(background=background)
            if ticket is not None:
                return ticket
            if wait > max_wait:
                raise BackendRateLimited(
                    f"The terminal has used this minute's allowance of requests with its Flash API "
                    f"key; {operation} can go in {wait:.0f} s.", retry_after_s=wait,
                    code="budget_api_key")
            log.info("Flash %s: waiting %.1f s for the API key's request budget", operation, wait)
            await self.retry.sleep(wait)

    def _parse(self, response: HttpAnswer, operation: str, *, mutation: bool,
               keyed: bool) -> Answer:
        status = response.status_code
        if status in (401, 403):
            raise BackendUnauthorized(self._unauthorized(response, keyed), code=f"http_{status}")
        if status == 429:
            wait = retry_after_s(response, 60.0)
            raise BackendRateLimited(f"Flash (or a proxy in front of it) is rate limiting the "
                                     f"terminal; retry in {wait:.0f} s.", retry_after_s=wait,
                                     code="http_429")
        if status >= 500:
            if mutation:
                # A gateway 502/504 can come after the upstream already did it.
                raise BackendUnavailable(
                    f"Flash answered HTTP {status} to {operation}: it may or may not have been "
                    "done. Not re-sent; check before trying again.", code="outcome_unknown")
            raise BackendUnavailable(f"Flash answered HTTP {status} to {operation}.",
                                     code=f"http_{status}")
        body = parse_json(response, service="Flash")
        if not isinstance(body, dict):
            raise BackendProtocolError(f"Flash answered {operation} with a body that is not a "
                                       "JSON object.", code="not_object")
        errors = flash_errors.parse_errors(body.get("errors"), operation)
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise BackendProtocolError(f"Flash answered {operation} with `data` that is not an "
                                       "object.", code="bad_data")
        if status >= 400 and not errors:
            raise BackendProtocolError(f"Flash answered HTTP {status} to {operation}: "
                                       f"{body_excerpt(response)!r}", code=f"http_{status}")
        return Answer(data, errors)

    def _unauthorized(self, response: HttpAnswer, keyed: bool) -> str:
        body = try_json(response)
        code = body.get("error") if isinstance(body, dict) else None
        if not (keyed and self.credentials.present):
            return (f"Flash refused an anonymous request (HTTP {response.status_code}). Check the "
                    "Flash URL.")
        what = "invalid API key" if code == "invalid_api_key" else "credential refused"
        return (f"Flash refused the terminal's API key (HTTP {response.status_code}, {what}). "
                "Check the key in the terminal settings: it may be wrong, revoked or expired.")
