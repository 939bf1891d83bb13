"""Flash's GraphQL-over-HTTP endpoint as the gateway and Apollo server answer it.

- Bad API key: HTTP 401 `{"error":"invalid_api_key"}` from the gateway, before any GraphQL.
- Every request with an API key counts against that key's limit (120 a minute unless the key
  says otherwise); over it: HTTP 200, `data: null`, an error with
  `extensions: {code: "TOO_MANY_REQUESTS", retryAfterSeconds, rateLimit}` (api-key-rate-limit.ts).
- Syntax / validation / variable errors: HTTP 400 with `errors[].extensions.code`
  GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED / BAD_USER_INPUT (the router's shape).
- A document costing more than 200 complexity points (plugins/complexity.ts: 1 per field,
  120 more for the fields that declare it): HTTP 400, "Query complexity of N exceeds …".
- Resolver errors: HTTP 200 with `data` and top-level `errors[]` shaped by Flash's formatError:
  `{message, locations, path, code}` (the code at the top level, none when Flash has none).

Parsing and validating a document costs ~5 ms; a client sends the same few documents over and over
(only the variables change), and the outcome is a pure function of the text against the fixed
schema, so it is kept in a small LRU keyed by the text (`prepare_document`, also used over WS).
"""

from __future__ import annotations

import inspect
import json
import math
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .core import SandboxCore
from .flash_schema import ANONYMOUS, SESSION, Caller, RequestContext, flash_schema
from .http_faults import apply_http_faults
from .limits import retry_after_seconds

API_KEY_HEADER = "x-api-key"
DOCUMENT_CACHE_SIZE = 256  # distinct documents; a terminal uses about a dozen
MAXIMUM_QUERY_COMPLEXITY = 200
# Root fields declaring `extensions.complexity` (every invoice and payment mutation: 120); the
# declared number replaces the field's own 1.
FIELD_COMPLEXITY = {
    "transactionDetails": 120,
    "lnUsdInvoiceCreate": 120,
    "lnUsdInvoiceCreateOnBehalfOfRecipient": 120,
    "lnInvoiceCreate": 120,
    "lnInvoiceCreateOnBehalfOfRecipient": 120,
    "lnInvoicePaymentSend": 120,
    "lnNoAmountInvoiceCreate": 120,
    "lnNoAmountInvoiceCreateOnBehalfOfRecipient": 120,
    "lnurlPaymentSend": 120,
}


@dataclass(frozen=True)
class PreparedDocument:
    """A query text parsed and validated against the Flash schema: `document`, or the errors and
    the Apollo code they answer with (GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    code: str = ""
    complexity: int = 0


@lru_cache(maxsize=DOCUMENT_CACHE_SIZE)
def prepare_document(query: str) -> PreparedDocument:
    """Parse and validate `query` once per distinct text. Execution never mutates the AST, so
    requests share it; errors are shared too (their `formatted` form is built per response)."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return PreparedDocument(None, (exc,), "GRAPHQL_PARSE_FAILED")
    errors = validate(flash_schema(), document)
    if errors:
        return PreparedDocument(None, tuple(errors), "GRAPHQL_VALIDATION_FAILED")
    return PreparedDocument(document, complexity=_complexity(document))


def _complexity(document: DocumentNode) -> int:
    """graphql-query-complexity with fieldExtensionsEstimator + simpleEstimator(1): every field
    costs 1 (its declared complexity if it has one) plus its children (of the costliest
    operation; fragments counted where they are spread)."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}

    def cost(selection_set: SelectionSetNode | None, seen: frozenset[str], root: bool) -> int:
        total = 0
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                if node.name.value == "__typename":
                    continue
                own = FIELD_COMPLEXITY.get(node.name.value, 1) if root else 1
                total += own + cost(node.selection_set, seen, False)
            elif isinstance(node, InlineFragmentNode):
                total += cost(node.selection_set, seen, root)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
                fragment = fragments.get(node.name.value)
                if fragment is not None:
                    total += cost(fragment.selection_set, seen | {node.name.value}, root)
        return total

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return max((cost(op.selection_set, frozenset(), True) for op in operations), default=0)


def format_error(error: GraphQLError, default_code: str = "INTERNAL_SERVER_ERROR") -> dict:
    """The router's shape (request-level failures): the code under `extensions`."""
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", default_code)
    formatted["extensions"] = extensions
    return formatted


def flash_format_error(error: GraphQLError) -> dict[str, Any]:
    """Flash's formatError (servers/graphql-server.ts): `{message, locations, path, code}`."""
    formatted = error.formatted
    out: dict[str, Any] = {"message": formatted["message"]}
    if "locations" in formatted:
        out["locations"] = formatted["locations"]
    if "path" in formatted:
        out["path"] = formatted["path"]
    code = (formatted.get("extensions") or {}).get("code")
    if code is not None:
        out["code"] = code
    return out


def errors_response(errors: list[GraphQLError], code: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"errors": [format_error(e, code) for e in errors]}, status_code=status)


def authenticate(core: SandboxCore, request: Request) -> Caller | Response:
    """The caller (anonymous, an API key with its scopes, a session), or the gateway's 401."""
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key is not None:
        known = core.api_key_scopes(api_key)
        if known is None:
            return JSONResponse({"error": "invalid_api_key"}, status_code=401)
        key_id, scopes, _rate = known
        return Caller("api_key", tuple(scopes), key_id)
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        # The sandbox has no user sessions; its own API key doubles as a session token.
        if scheme.lower() == "bearer" and secrets.compare_digest(token.encode(),
                                                                 core.keys.api_key.encode()):
            return SESSION
        return HTMLResponse("<html><body><h1>401 Unauthorized</h1></body></html>", 401)
    return ANONYMOUS


def key_rate_limited(core: SandboxCore, request: Request, caller: Caller) -> JSONResponse | None:
    """api-key-rate-limit.ts: every request with an API key counts; over the limit, HTTP 200."""
    if caller.kind != "api_key":
        return None
    known = core.api_key_scopes(request.headers.get(API_KEY_HEADER, ""))
    per_minute = known[2] if known else None
    seconds: float
    if core.faults.take("rate_limit_next"):
        seconds = core.faults.retry_after_s
    else:
        wait = core.consume_key_limit(caller.key_id, per_minute)
        if wait is None:
            return None
        seconds = retry_after_seconds(wait, whole=core.limits.key_window_s >= 60)
    limit = per_minute or core.limits.key_points
    return JSONResponse({
        "data": None,
        "errors": [{
            "message": "API key rate limit exceeded",
            "extensions": {
                "code": "TOO_MANY_REQUESTS",
                "retryAfterSeconds": seconds,
                "rateLimit": {"limit": limit, "remaining": 0},
            },
        }],
    }, headers={"Retry-After": str(math.ceil(seconds))})


async def graphql_http(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    faulted = await apply_http_faults(core.faults, "graphql")
    if faulted is not None:
        return faulted
    if core.faults.take("malformed_json_next"):
        return Response(b'{"data":{"lnUsdInvoiceCreateOnBehalfOfRec', 200,
                        media_type="application/json")
    caller = authenticate(core, request)
    if isinstance(caller, Response):
        return caller
    limited = key_rate_limited(core, request, caller)
    if limited is not None:
        return limited

    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return JSONResponse(
            {"errors": [{"message": "POST body missing, invalid Content-Type, or JSON object has "
                         "no keys.", "extensions": {"code": "BAD_REQUEST"}}]},
            status_code=400,
        )
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    if not isinstance(variables, dict):
        return errors_response([GraphQLError("`variables` must be an object")], "BAD_REQUEST")

    schema = flash_schema()
    prepared = prepare_document(body["query"])
    if prepared.document is None:
        return errors_response(list(prepared.errors), prepared.code)
    document = prepared.document
    if prepared.complexity > MAXIMUM_QUERY_COMPLEXITY:
        return JSONResponse({"errors": [{
            "message": f"Query complexity of {prepared.complexity} exceeds maximum allowed "
                       f"complexity of {MAXIMUM_QUERY_COMPLEXITY}",
            "code": "INTERNAL_SERVER_ERROR"}]}, status_code=400)
    operation = get_operation_ast(document, operation_name)
    if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
        return errors_response(
            [GraphQLError("Subscriptions are served on the WebSocket endpoint only")],
            "BAD_REQUEST",
        )

    result = execute(
        schema,
        document,
        context_value=RequestContext(core=core, caller=caller),
        variable_values=variables,
        operation_name=operation_name,
    )
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    if result.data is None and result.errors and all(e.path is None for e in result.errors):
        # Variable coercion or operation selection failed before execution.
        return errors_response(result.errors, "BAD_USER_INPUT")
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [flash_format_error(e) for e in result.errors]
    return JSONResponse(payload)
