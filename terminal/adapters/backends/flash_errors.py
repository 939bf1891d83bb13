"""Flash's error answers as typed `BackendError`s: one mapping for every Flash call.

Where Flash puts errors (lnflash/flash at 892346e):
- Top-level `errors[]` of a GraphQL response. Flash's `formatError` (servers/graphql-server.ts)
  answers `{message, locations, path, code}`: the code at the TOP level, not under `extensions`.
  The API-key limiter (servers/middlewares/api-key-rate-limit.ts) answers before GraphQL runs,
  HTTP 200, `extensions: {code: "TOO_MANY_REQUESTS", retryAfterSeconds}`. Both places are
  read.
- A mutation payload's own `errors[] {message code path}` (`mapAndParseErrorForGqlResponse`);
  input validation errors come there with no code at all ("Memo is too long").

Codes and what they mean for the terminal (graphql/error.ts, graphql/error-map.ts):
- `TOO_MANY_REQUEST` (singular): the merchant account's invoice limit (20 per 120 s, then 300 s
  blocked), no retry time → `BackendRateLimited` (wait, never failed).
- `TOO_MANY_REQUESTS`: the API key's request limit, with `retryAfterSeconds` → `BackendRateLimited`.
- `IBEX_ERROR` ("An error occurred. Contact support if error persists."): the Lightning provider
  failed, also for an invoice it does not know; `INTERNAL_SERVER_ERROR`, `DB_ERROR`,
  `UNKNOWN_CLIENT_ERROR`, dealer and LND outages; and any top-level error Flash gives no code
  (a resolver that threw) → `BackendUnavailable`: temporary, retried, never a refusal.
- `NOT_AUTHENTICATED`, `NOT_AUTHORIZED`, "API key missing required scope: read:user"
  (graphql-shield, no code), "API keys cannot access …" → `BackendUnauthorized`: a setup
  problem, named.
- "Flash does not support BTC wallets." (no code) → `BackendRejected`: a setup problem.
- Parse/validation failures → `BackendProtocolError`: our documents no longer match the API.
- `INVALID_INPUT`, `NOT_FOUND`, … and payload errors without a code → `BackendRejected`.

Every server text is cleaned (`http.clean_text`) before it reaches a message; every field is
type-checked first, so an answer of the wrong shape is a `BackendProtocolError`, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from terminal.adapters.backends.http import clean_text, parse_retry_after
from terminal.core.ports.backend import (
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
)

CODE_INVOICE_LIMIT = "TOO_MANY_REQUEST"  # per merchant account, no retry time
CODE_KEY_LIMIT = "TOO_MANY_REQUESTS"  # per API key, with retryAfterSeconds
CODE_IBEX = "IBEX_ERROR"
INVOICE_BLOCK_S = 300.0  # how long Flash blocks invoice creation once the limit is exceeded
KEY_LIMIT_DEFAULT_RETRY_S = 60.0

AUTH_CODES = frozenset({"NOT_AUTHENTICATED", "NOT_AUTHORIZED", "UNAUTHENTICATED", "FORBIDDEN"})
SCHEMA_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", "BAD_USER_INPUT",
                          "BAD_REQUEST", "PERSISTED_QUERY_NOT_FOUND"})
TEMPORARY_CODES = frozenset({CODE_IBEX, "INTERNAL_SERVER_ERROR", "DB_ERROR",
                             "UNKNOWN_CLIENT_ERROR", "UNEXPECTED_CLIENT_ERROR", "LND_OFFLINE",
                             "DEALER_ERROR", "DEALER_OFFLINE", "SUBREQUEST_HTTP_ERROR"})
MAX_ERRORS = 20  # errors looked at per answer
MAX_CODE = 64

# Scope names as Flash writes them ("read:user") and as its API-key UI shows them ("read_user").
SCOPES = ("read_user", "read_wallet", "write_wallet", "read_transactions")
_MISSING_SCOPE_RE = re.compile(r"API key missing required scope:\s*([a-z]+)[:_]([a-z]+)")
_CANNOT_ACCESS_RE = re.compile(r"API keys cannot access\s+(\w+)")
_BTC_UNSUPPORTED = "does not support BTC wallets"
_COMPLEXITY = "Query complexity"
_MEMO_TOO_LONG = "Memo is too long"
SCOPE_USES = {
    "read_user": "to find the account (me)",
    "read_wallet": "to list the account's wallets",
    "write_wallet": "to create invoices",
    "read_transactions": "to look up received payments (recovery, purged invoices)",
}


@dataclass(frozen=True)
class FlashError:
    """One error entry, type-checked and cleaned."""

    message: str
    code: str | None
    retry_after_s: float | None = None
    path: tuple[str, ...] = ()


def parse_errors(raw: Any, where: str) -> list[FlashError]:
    """An `errors` value (top level or payload) as typed entries; anything of the wrong shape
    raises `BackendProtocolError`. None and [] are no errors."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BackendProtocolError(f"Flash answered {where} with `errors` that is not a list.",
                                   code="bad_errors")
    entries = []
    for entry in raw[:MAX_ERRORS]:
        if not isinstance(entry, dict):
            raise BackendProtocolError(f"Flash answered {where} with an error that is not an "
                                       "object.", code="bad_errors")
        entries.append(_parse_entry(entry, where))
    return entries


def _parse_entry(entry: Mapping[str, Any], where: str) -> FlashError:
    message = entry.get("message", "")
    if not isinstance(message, str):
        raise BackendProtocolError(f"Flash answered {where} with an error message that is not "
                                   "text.", code="bad_errors")
    extensions = entry.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise BackendProtocolError(f"Flash answered {where} with error extensions that are not "
                                   "an object.", code="bad_errors")
    extensions = extensions or {}
    code = entry.get("code")
    if code is None:
        code = extensions.get("code")
    if code is not None and (not isinstance(code, str) or len(code) > MAX_CODE):
        raise BackendProtocolError(f"Flash answered {where} with an error code that is not a "
                                   "short text.", code="bad_errors")
    retry = extensions.get("retryAfterSeconds")
    retry_after = None if retry is None else parse_retry_after(retry, KEY_LIMIT_DEFAULT_RETRY_S)
    raw_path = entry.get("path")
    path: tuple[str, ...] = ()
    if isinstance(raw_path, list):
        path = tuple(str(p)[:64] for p in raw_path[:8] if isinstance(p, str | int))
    return FlashError(clean_text(message), code.upper() if code else None, retry_after, path)


def top_level_error(errors: list[FlashError], operation: str) -> BackendError:
    """The one `BackendError` that a response's top-level errors amount to. A recognised limit,
    credential or schema problem wins over the rest; otherwise the first entry decides."""
    if not errors:
        return BackendProtocolError(f"Flash answered {operation} with an empty error.")
    for error in errors:
        if error.code in (CODE_KEY_LIMIT, CODE_INVOICE_LIMIT):
            return rate_limited(error)
    for error in errors:
        mapped = _setup_error(error, operation)
        if mapped is not None:
            return mapped
    return _by_code(errors[0], operation, payload=False)


def payload_error(errors: list[FlashError], operation: str) -> BackendError:
    """The `BackendError` a mutation payload's `errors[]` amount to (non-empty list)."""
    for error in errors:
        if error.code in (CODE_KEY_LIMIT, CODE_INVOICE_LIMIT):
            return rate_limited(error)
    for error in errors:
        mapped = _setup_error(error, operation)
        if mapped is not None:
            return mapped
    return _by_code(errors[0], operation, payload=True)


def rate_limited(error: FlashError) -> BackendRateLimited:
    if error.code == CODE_INVOICE_LIMIT:
        return BackendRateLimited(
            "Flash's limit on new invoices for this merchant is reached (20 every 2 minutes, "
            "then a 5-minute pause): waiting before creating more.",
            retry_after_s=INVOICE_BLOCK_S,
            code=CODE_INVOICE_LIMIT,
        )
    retry = error.retry_after_s if error.retry_after_s is not None else KEY_LIMIT_DEFAULT_RETRY_S
    return BackendRateLimited(
        f"Flash is limiting requests made with this API key; retry in {retry:.0f} s.",
        retry_after_s=retry,
        code=CODE_KEY_LIMIT,
    )


def missing_scope(message: str) -> str | None:
    """The scope (in Flash's UI spelling, `read_user`) a scope error names, if it names one."""
    match = _MISSING_SCOPE_RE.search(message)
    return f"{match.group(1)}_{match.group(2)}" if match else None


def scope_advice(scope: str | None = None) -> str:
    needed = ", ".join(SCOPES)
    if scope is None:
        return f"create a Flash API key with the scopes {needed}"
    use = SCOPE_USES.get(scope, "")
    return (f"the Flash API key lacks the {scope} scope{(' (' + use + ')') if use else ''}: "
            f"create a key with {needed}")


def _setup_error(error: FlashError, operation: str) -> BackendError | None:
    message = error.message
    scope = missing_scope(message)
    if scope is not None:
        return BackendUnauthorized(f"Flash refused {operation}: {scope_advice(scope)}.",
                                   code=f"missing_scope:{scope}")
    access = _CANNOT_ACCESS_RE.search(message)
    if access is not None:
        return BackendUnauthorized(
            f"Flash does not let API keys call {access.group(1)}; {operation} needs a session.",
            code="api_key_blocked")
    if error.code in AUTH_CODES:
        reason = message or "no reason given"
        return BackendUnauthorized(f"Flash refused {operation} ({error.code}): {reason}. "
                                   "Check the API key and its scopes.", code=error.code)
    if _BTC_UNSUPPORTED in message:
        return BackendRejected("Flash does not support BTC wallets: configure the terminal "
                               "for the merchant's USD wallet.", code="btc_wallet_unsupported")
    if error.code in SCHEMA_CODES or message.startswith(_COMPLEXITY):
        return BackendProtocolError(
            f"Flash does not accept the terminal's {operation} ({message or error.code}): the "
            "API may have changed.", code=error.code or "query_complexity")
    return None


def _by_code(error: FlashError, operation: str, *, payload: bool) -> BackendError:
    text = error.message or "no reason given"
    if error.code in TEMPORARY_CODES:
        what = ("its Lightning provider failed" if error.code == CODE_IBEX
                else "it failed internally")
        return BackendUnavailable(f"Flash could not answer {operation}: {what} ({text}); "
                                  "it will be retried.", code=error.code)
    if error.code is None and payload:
        # Flash's resolvers put input validation errors in the payload without a code.
        code = "memo_too_long" if _MEMO_TOO_LONG in error.message else "invalid_input"
        return BackendRejected(f"Flash refused {operation}: {text}", code=code)
    if error.code is None:
        # A resolver threw something Flash did not map: not a definite refusal.
        return BackendUnavailable(f"Flash failed on {operation}: {text}", code="flash_error")
    return BackendRejected(f"Flash refused {operation}: {text}", code=error.code)
