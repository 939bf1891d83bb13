"""Flash's GraphQL-over-HTTP endpoint as the gateway and Apollo server answer it.

- Bad API key: HTTP 401 `{"error":"invalid_api_key"}` from the gateway, before any GraphQL.
- Syntax / validation / variable errors: HTTP 400 with `errors[].extensions.code`
  GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED / BAD_USER_INPUT (Apollo Server 4).
- Resolver errors: HTTP 200 with `data` and top-level `errors[]`; payload errors in the payload.
- Rate limiting (fault): HTTP 200 + TOO_MANY_REQUESTS with `retryAfterSeconds`.

Parsing and validating a document costs ~5 ms; a client sends the same few documents over and over
(only the variables change), and the outcome is a pure function of the text against the fixed
schema, so it is kept in a small LRU keyed by the text (`prepare_document`, also used over WS).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .core import SandboxCore
from .flash_schema import RequestContext, flash_schema
from .http_faults import apply_http_faults

API_KEY_HEADER = "x-api-key"
DOCUMENT_CACHE_SIZE = 256  # distinct documents; a terminal uses about a dozen


@dataclass(frozen=True)
class PreparedDocument:
    """A query text parsed and validated against the Flash schema: `document`, or the errors and
    the Apollo code they answer with (GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    code: str = ""


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
    return PreparedDocument(document)


def format_error(error: GraphQLError, default_code: str = "INTERNAL_SERVER_ERROR") -> dict:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", default_code)
    formatted["extensions"] = extensions
    return formatted


def errors_response(errors: list[GraphQLError], code: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"errors": [format_error(e, code) for e in errors]}, status_code=status)


def authenticate(core: SandboxCore, request: Request) -> bool | Response:
    """True with a valid key, False anonymous, or the gateway's 401 response."""
    api_key = request.headers.get(API_KEY_HEADER)
    if api_key is not None:
        if api_key == core.keys.api_key:
            return True
        return JSONResponse({"error": "invalid_api_key"}, status_code=401)
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        # The sandbox has no user sessions; its API key doubles as the bearer token.
        if scheme.lower() == "bearer" and token == core.keys.api_key:
            return True
        return HTMLResponse("<html><body><h1>401 Unauthorized</h1></body></html>", 401)
    return False


def rate_limited(core: SandboxCore) -> JSONResponse:
    return JSONResponse({
        "errors": [{
            "message": "Too many requests, please try again later",
            "extensions": {
                "code": "TOO_MANY_REQUESTS",
                "retryAfterSeconds": core.faults.retry_after_s,
            },
        }],
        "data": None,
    })


async def graphql_http(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    faulted = await apply_http_faults(core.faults, "graphql")
    if faulted is not None:
        return faulted
    if core.faults.take("malformed_json_next"):
        return Response(b'{"data":{"lnUsdInvoiceCreateOnBehalfOfRec', 200,
                        media_type="application/json")
    auth = authenticate(core, request)
    if isinstance(auth, Response):
        return auth
    if core.faults.take("rate_limit_next"):
        return rate_limited(core)

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
    operation = get_operation_ast(document, operation_name)
    if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
        return errors_response(
            [GraphQLError("Subscriptions are served on the WebSocket endpoint only")],
            "BAD_REQUEST",
        )

    result = execute(
        schema,
        document,
        context_value=RequestContext(core=core, authenticated=auth),
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
        payload["errors"] = [format_error(e) for e in result.errors]
    return JSONResponse(payload)
