"""The graphql-transport-ws protocol (enisdenjo/graphql-ws) on `/graphql`, as Flash serves it.

connection_init → connection_ack; subscribe {id, payload:{query, variables}} → next …, or
error; ping → pong. Close codes as graphql-ws: 4400 bad message, 4401 subscribe before ack,
4403 forbidden, 4406 wrong subprotocol, 4408 init timeout, 4409 duplicate id, 4429 repeated
init. Only subscriptions are served; queries and mutations get an `error` message.

As Flash's ws-server.ts: anonymous connections are accepted (status needs no credential); an API
key is not a credential there (only a session is): a connection_init carrying one is refused
(4403). The status subscription never completes (Flash's stream has no end).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationType,
    get_operation_ast,
    subscribe,
)
from starlette.websockets import WebSocket, WebSocketDisconnect

from .core import SandboxCore
from .flash_http import prepare_document
from .flash_schema import RequestContext, flash_schema

SUBPROTOCOL = "graphql-transport-ws"
CONNECTION_INIT_TIMEOUT_S = 3.0
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_SUBPROTOCOL = 4406
CLOSE_INIT_TIMEOUT = 4408
CLOSE_DUPLICATE_ID = 4409
CLOSE_TOO_MANY_INITS = 4429
CLOSE_DROPPED = 1011  # fault injection: the gateway drops the socket
ONLY_SUBSCRIPTIONS = "Only subscriptions are supported over WebSocket; use HTTP for queries"


class _Dropped(Exception):
    """Fault injection closed the socket."""


class Connection:
    def __init__(self, websocket: WebSocket, core: SandboxCore) -> None:
        self.ws = websocket
        self.core = core
        self.acked = False
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self.send_lock = asyncio.Lock()
        self.sent = 0
        faults = core.faults
        self.drop_after = faults.ws_drop_after_messages if faults.take("ws_drop_next") else None

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))
            self.sent += 1
            if self.drop_after is not None and self.sent >= self.drop_after:
                await self.ws.close(CLOSE_DROPPED)
                raise _Dropped

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError):
            await self.ws.close(code, reason)

    async def run(self) -> None:
        try:
            first = await asyncio.wait_for(self.ws.receive_text(), CONNECTION_INIT_TIMEOUT_S)
        except TimeoutError:
            await self.close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")
            return
        await self.handle(first)
        while True:
            await self.handle(await self.ws.receive_text())

    async def handle(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            await self.close(CLOSE_BAD_REQUEST, "Invalid message received")
            raise WebSocketDisconnect(CLOSE_BAD_REQUEST) from None
        if kind == "connection_init":
            if self.acked:
                await self.close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests")
                raise WebSocketDisconnect(CLOSE_TOO_MANY_INITS)
            if _carries_api_key(message.get("payload")):
                await self.close(CLOSE_FORBIDDEN, "Forbidden: API keys are not accepted here")
                raise WebSocketDisconnect(CLOSE_FORBIDDEN)
            self.acked = True
            await self.send({"type": "connection_ack"})
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if message.get("payload") is not None:
                pong["payload"] = message["payload"]
            await self.send(pong)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self.start(message)
        elif kind == "complete":
            task = self.subscriptions.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        else:
            await self.close(CLOSE_BAD_REQUEST, f"Unexpected message of type {kind}")
            raise WebSocketDisconnect(CLOSE_BAD_REQUEST)

    async def start(self, message: dict[str, Any]) -> None:
        if not self.acked:
            await self.close(CLOSE_UNAUTHORIZED, "Unauthorized")
            raise WebSocketDisconnect(CLOSE_UNAUTHORIZED)
        sub_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(sub_id, str) or not sub_id or not isinstance(payload, dict):
            await self.close(CLOSE_BAD_REQUEST, "Invalid message received")
            raise WebSocketDisconnect(CLOSE_BAD_REQUEST)
        if sub_id in self.subscriptions:
            await self.close(CLOSE_DUPLICATE_ID, f"Subscriber for {sub_id} already exists")
            raise WebSocketDisconnect(CLOSE_DUPLICATE_ID)
        stream = self.prepare(payload)
        if isinstance(stream, list):
            await self.send({"id": sub_id, "type": "error",
                             "payload": [e.formatted for e in stream]})
            return
        self.subscriptions[sub_id] = asyncio.create_task(self.pump(sub_id, stream))

    def prepare(self, payload: dict[str, Any]) -> Any:
        """The parsed, validated subscription document, or a list of GraphQL errors."""
        prepared = prepare_document(str(payload.get("query", "")))
        if prepared.document is None:
            return list(prepared.errors)
        document = prepared.document
        operation = get_operation_ast(document, payload.get("operationName"))
        if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
            return [GraphQLError(ONLY_SUBSCRIPTIONS)]
        return document, payload.get("variables") or {}, payload.get("operationName")

    async def pump(self, sub_id: str, prepared: tuple[Any, dict[str, Any], str | None]) -> None:
        document, variables, operation_name = prepared
        try:
            result = subscribe(
                flash_schema(),
                document,
                context_value=RequestContext(core=self.core),
                variable_values=variables,
                operation_name=operation_name,
            )
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, ExecutionResult):
                await self.send({"id": sub_id, "type": "error",
                                 "payload": [e.formatted for e in result.errors or []]})
                return
            async for item in result:
                await self.send({"id": sub_id, "type": "next", "payload": item.formatted})
            # Flash's stream never ends, so it never sends `complete`.
        except (_Dropped, WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.subscriptions.pop(sub_id, None)

    def cancel_all(self) -> None:
        for task in self.subscriptions.values():
            task.cancel()
        self.subscriptions.clear()


def _carries_api_key(payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    for name, value in payload.items():
        if str(name).lower() == "x-api-key":
            return True
        if str(name).lower() == "authorization" and isinstance(value, str):
            token = value.partition(" ")[2] or value
            if token.startswith("fk_"):
                return True
    return False


async def graphql_ws(websocket: WebSocket) -> None:
    core: SandboxCore = websocket.app.state.core
    delay = core.faults.latency_for("ws")
    if delay > 0:
        await asyncio.sleep(delay)
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
        await websocket.accept()
        await websocket.close(CLOSE_SUBPROTOCOL, "Subprotocol not acceptable")
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    connection = Connection(websocket, core)
    websocket.app.state.connections.add(connection)
    try:
        await connection.run()
    except (WebSocketDisconnect, _Dropped, RuntimeError):
        pass
    finally:
        connection.cancel_all()
        websocket.app.state.connections.discard(connection)
