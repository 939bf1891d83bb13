"""HTTP helpers shared by the backends (the requests themselves: `json_endpoint`): one backoff
(exponential with full jitter) for retries and reconnects, retries for idempotent reads honouring
Retry-After, JSON without floats, and server text made fit for a screen or a log.

Nothing here ever formats request headers into a message: credentials travel in headers only.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
)
from terminal.core.text import clean_text as _clean

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_AFTER_S = 30.0  # never park a request longer than this on a server's say-so
MAX_SERVER_TEXT = 200  # characters of server-supplied text kept in a message
_TAG_RE = re.compile(r"<[^>]*>")
# ANSI/VT escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL/ST), and two-byte escapes.
def clean_text(value: object, limit: int = MAX_SERVER_TEXT) -> str:
    """Server-supplied text fit for a screen, a log line or stdout (`terminal.core.text`)."""
    return _clean(value, limit)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: delay n (0-based) is uniform in [floor, cap] where
    cap = min(max_s, base_s·2ⁿ) and floor = cap·(1 - jitter). The one backoff of every HTTP
    retry and WebSocket reconnect."""

    base_s: float = 0.25
    max_s: float = 4.0
    jitter: float = 1.0  # 1: full jitter ([0, cap]); 0.5: [cap/2, cap]
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, attempt: int) -> float:
        cap = min(self.max_s, self.base_s * 2 ** min(max(attempt, 0), 30))
        return self.rng.uniform(cap * (1.0 - self.jitter), cap)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for idempotent requests only. `attempts` counts the first try. A server's
    Retry-After longer than `max_retry_after_s` is raised to the caller, not slept through."""

    attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    max_retry_after_s: float = MAX_RETRY_AFTER_S
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_delay_s, self.max_delay_s, 1.0, self.rng)

    def delay(self, attempt: int, error: BackendError) -> float:
        """Delay before retry number `attempt` (1-based): the server's retry time when it gave
        one (plus up to 10 % jitter, so terminals told the same time do not return together),
        else the backoff."""
        if isinstance(error, BackendRateLimited):
            return max(error.retry_after_s, 0.0) * self.rng.uniform(1.0, 1.1)
        return self.backoff.delay(attempt - 1)


NO_RETRY = RetryPolicy(attempts=1)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Run `call`, retrying on retryable `BackendError`s. Use ONLY for idempotent requests."""
    attempt = 1
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                raise
            if isinstance(exc, BackendRateLimited) and exc.retry_after_s > policy.max_retry_after_s:
                raise
            await policy.sleep(policy.delay(attempt, exc))
            attempt += 1


class HasBody(Protocol):
    """An answer with a status, headers and a body read whole (`json_endpoint.HttpAnswer`)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...


def json_default(value: object) -> str:
    """`json.dumps`'s `default`: a `Decimal` as its text (money never becomes a float)."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_json(response: HasBody, *, service: str) -> Any:
    """The body as JSON, numbers with a fraction as `Decimal` (money never becomes a float)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BackendProtocolError(
            f"{service} answered HTTP {response.status_code} with something that is not JSON: "
            f"{body_excerpt(response)!r}",
            code="not_json",
        ) from exc


def try_json(response: HasBody) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def body_excerpt(response: HasBody, limit: int = 120) -> str:
    """A short, tag-free, cleaned excerpt of a body for an error message (a proxy's HTML error
    page becomes its visible text)."""
    text = response.content[: limit * 8].decode("utf-8", "replace") if response.content else ""
    return clean_text(_TAG_RE.sub(" ", text), limit)


def retry_after_s(response: HasBody, default: float = 1.0, *,
                  now: Callable[[], float] = time.time) -> float:
    """Retry-After as seconds: delta-seconds or an HTTP-date; `default` when absent or garbage."""
    return parse_retry_after(response.headers.get("Retry-After", ""), default, now=now)


def parse_retry_after(value: object, default: float = 1.0, *,
                      now: Callable[[], float] = time.time) -> float:
    """A server's retry time (Retry-After header, GraphQL `retryAfterSeconds`) as seconds ≥ 0."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        return seconds if 0 <= seconds < float("inf") else default
    if not isinstance(value, str) or not value.strip():
        return default
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return default
        if when.tzinfo is None:
            return default
        return max(0.0, when.timestamp() - now())
    return seconds if 0 <= seconds < float("inf") else default
