"""httpx helpers shared by the HTTP backends: one request with its errors mapped, retries for
idempotent reads (exponential backoff with full jitter, honouring Retry-After), JSON without floats.

Nothing here ever formats request headers into a message: credentials travel in headers only.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendUnavailable,
)

T = TypeVar("T")

MAX_RETRY_AFTER_S = 30.0  # never park a sale longer than this on a server's say-so
_TAG_RE = re.compile(r"<[^>]*>")
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for idempotent requests only. `attempts` counts the first try."""

    attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, attempt: int, error: BackendError) -> float:
        """Delay before retry number `attempt` (1-based): full jitter over an exponential cap,
        or the server's Retry-After when it gave one."""
        if isinstance(error, BackendRateLimited):
            return min(max(error.retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return self.rng.uniform(0.0, cap)


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
            await policy.sleep(policy.delay(attempt, exc))
            attempt += 1


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    service: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    timeout_s: float | None = None,
) -> httpx.Response:
    """One HTTP exchange. Transport failures become `BackendUnavailable` with a message naming
    `service` and the kind of failure, never the URL's query or any header."""
    kwargs: dict[str, Any] = {"headers": dict(headers or {}), "params": params}
    if json_body is not None:
        kwargs["content"] = json.dumps(json_body, default=_json_default).encode()
        kwargs["headers"]["Content-Type"] = "application/json"
    if timeout_s is not None:
        kwargs["timeout"] = timeout_s
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise BackendUnavailable(f"{service} did not answer in time", code="timeout") from exc
    except httpx.TransportError as exc:
        raise BackendUnavailable(
            f"cannot reach {service} ({type(exc).__name__}); check the network connection",
            code="network",
        ) from exc


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def parse_json(response: httpx.Response, *, service: str) -> Any:
    """The body as JSON, numbers with a fraction as `Decimal` (money never becomes a float)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackendProtocolError(
            f"{service} answered HTTP {response.status_code} with something that is not JSON: "
            f"{body_excerpt(response)!r}",
            code="not_json",
        ) from exc


def try_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def body_excerpt(response: httpx.Response, limit: int = 120) -> str:
    """A short, tag-free excerpt of a body for an error message (a proxy's HTML error page
    becomes its visible text)."""
    text = response.text if response.content else ""
    text = _SPACE_RE.sub(" ", _TAG_RE.sub(" ", text)).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def retry_after_s(response: httpx.Response, default: float = 1.0) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default  # HTTP-date form or garbage: fall back to our own backoff step
