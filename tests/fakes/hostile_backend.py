"""A hostile Flash backend: a GraphQL HTTP proxy on loopback in front of the real sandbox.

Every request is forwarded to the sandbox as is; the answer comes back as is, unless the test set
one of the behaviours:

- `replay_creations`: the first answer to an invoice creation (`LnInvoiceCreate`,
  `LnUsdInvoiceCreate` and the on-behalf-of-recipient variants) is kept and sent again for every
  later creation, the way a caching proxy or a replaying server would (same payment hash);
- `rewrite(operation, body) -> body`: change an answer before it is sent (a number where a string
  belongs, an error `code` that is a list, ANSI escapes in a message…);
- `fail_creations_with(status, body)`: answer invoice creations with this HTTP status and JSON
  body without forwarding them (a rate limit, a refusal).

Only HTTP is proxied; the WebSocket URL in the terminal's configuration still points at the
sandbox (status pushes concern the real invoices). Runs uvicorn in a thread like the LNURL issuer
fake (`tests/fakes/lnurl_issuer.py`).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from helpers.loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CREATIONS = frozenset({
    "LnInvoiceCreate", "LnUsdInvoiceCreate",
    "LnInvoiceCreateOnBehalfOfRecipient", "LnUsdInvoiceCreateOnBehalfOfRecipient",
})

Rewrite = Callable[[str, Any], Any]


@dataclass
class HostileBackend:
    upstream: str  # the sandbox's GraphQL URL
    host: str = "127.0.0.1"
    replay_creations: bool = False
    rewrite: Rewrite | None = None
    creation_answer: tuple[int, Any] | None = None
    operations: list[str] = field(default_factory=list)
    _kept: Any = None

    def __post_init__(self) -> None:
        self._client = httpx.Client(timeout=10.0)
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/graphql", self._graphql, methods=["POST"])])
        self._server = LoopbackServer(app, host=self.host, name="hostile-backend")
        self.port = self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/graphql"

    def start(self) -> HostileBackend:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._client.close()

    def fail_creations_with(self, status: int, body: Any) -> None:
        self.creation_answer = (status, body)

    def _forward(self, raw: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        answer = self._client.post(self.upstream, content=raw, headers=headers)
        return answer.status_code, answer.json()

    async def _graphql(self, request: Request) -> Response:
        import anyio.to_thread

        raw = await request.body()
        try:
            operation = str(json.loads(raw).get("operationName") or "")
        except (ValueError, AttributeError):
            operation = ""
        self.operations.append(operation)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept", "authorization", "x-api-key")}
        if operation in CREATIONS and self.creation_answer is not None:
            status, body = self.creation_answer
            return JSONResponse(body, status_code=status)
        if operation in CREATIONS and self.replay_creations:
            with self._lock:
                kept = copy.deepcopy(self._kept)
            if kept is not None:
                status, body = kept
                return JSONResponse(self._rewritten(operation, body), status_code=status)
        status, body = await anyio.to_thread.run_sync(self._forward, raw, headers)
        if operation in CREATIONS and self.replay_creations:
            with self._lock:
                if self._kept is None:
                    self._kept = (status, copy.deepcopy(body))
        return JSONResponse(self._rewritten(operation, body), status_code=status)

    def _rewritten(self, operation: str, body: Any) -> Any:
        return body if self.rewrite is None else self.rewrite(operation, body)
