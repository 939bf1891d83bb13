"""A `graphql-transport-ws` subscription client (one connection, one subscription).

Protocol (graphql-ws PROTOCOL.md, the one Flash/Galoy serves on `wss://ws.<domain>/graphql`):

    client                         server
    connection_init {payload?} ->
                                <- connection_ack
    subscribe {id, payload}    ->
                                <- next {id, payload} ...
                                <- complete {id} | error {id, payload: [GraphQLError]}
    ping / pong in both directions, at any time after the handshake.

`subscribe()` runs exactly one connection and yields each `next` payload. It raises
`WSConnectionLost` for anything worth a reconnect (drop, dead socket, timeouts) and
`WSRefused` / `WSSubscriptionError` for things a reconnect will not fix. Reconnection, backoff and
the HTTP polling fallback belong to the caller (`flash.FlashBackend.watch`).

Liveness: every received message proves the socket alive. After `ping_interval_s` of silence
we send a protocol `ping`; if nothing at all arrives within `pong_timeout_s` after it, the socket
is declared dead (a NAT box or Wi-Fi drop can leave a TCP connection open but silent for minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

logger = logging.getLogger(__name__)
# websockets logs every frame at DEBUG, and connection_init may carry a bearer token: give it
# a logger of its own that never goes below INFO, whatever the root level is.
_wire_logger = logging.getLogger(f"{__name__}.wire")
_wire_logger.setLevel(logging.INFO)

GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")


class MessageType(enum.StrEnum):
    CONNECTION_INIT = "connection_init"
    CONNECTION_ACK = "connection_ack"
    PING = "ping"
    PONG = "pong"
    SUBSCRIBE = "subscribe"
    NEXT = "next"
    ERROR = "error"
    COMPLETE = "complete"


# Close codes defined by graphql-transport-ws.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_CONNECTION_INIT_TIMEOUT = 4408
CLOSE_SUBSCRIBER_ALREADY_EXISTS = 4409
CLOSE_TOO_MANY_INIT_REQUESTS = 4429
# Close codes after which reconnecting with the same settings cannot help.
_FATAL_CLOSE_CODES = frozenset({CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN})


class WSError(Exception):
    """Base class; messages never contain the connection_init payload (it may hold a token)."""


class WSConnectionLost(WSError):
    """The connection failed or died; a reconnect may succeed."""


class WSRefused(WSError):
    """The server refused us (HTTP 401/403 at the handshake, close 4400/4401/4403)."""


class WSSubscriptionError(WSError):
    """The server answered our `subscribe` with `error` (the document or variables were refused)."""

    def __init__(self, message: str, errors: list[Any]) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass(frozen=True)
class WSTimings:
    open_timeout_s: float = 5.0
    ack_timeout_s: float = 5.0
    ping_interval_s: float = 10.0
    pong_timeout_s: float = 5.0
    close_timeout_s: float = 2.0


async def subscribe(
    url: str,
    query: str,
    variables: dict[str, Any],
    *,
    operation_name: str | None = None,
    init_payload: dict[str, Any] | None = None,
    timings: WSTimings = WSTimings(),
    subscription_id: str = "1",
    on_subscribed: Callable[[], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Open one connection, run one subscription, yield each `next` payload ({data, errors}).

    Returns normally when the server sends `complete`. `on_subscribed` is called once the
    `subscribe` message has been sent, so the caller can close the gap with one HTTP query.
    """
    try:
        ws = await connect(
            url,
            subprotocols=[GRAPHQL_TRANSPORT_WS],
            open_timeout=timings.open_timeout_s,
            close_timeout=timings.close_timeout_s,
            # Our own protocol-level pings below detect dead sockets; the library's keepalive
            # would race them with a different timeout.
            ping_interval=None,
            logger=_wire_logger,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise WSRefused(f"WebSocket handshake refused with HTTP {status}") from None
        raise WSConnectionLost(f"WebSocket handshake failed with HTTP {status}") from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise WSConnectionLost(f"cannot open WebSocket: {type(exc).__name__}") from None

    completed = False
    try:
        if ws.subprotocol != GRAPHQL_TRANSPORT_WS:
            raise WSRefused(f"server did not accept subprotocol {GRAPHQL_TRANSPORT_WS}")
        init: dict[str, Any] = {"type": MessageType.CONNECTION_INIT}
        if init_payload is not None:
            init["payload"] = init_payload
        await _send(ws, init)
        await _await_ack(ws, timings.ack_timeout_s)
        await _send(
            ws,
            {
                "id": subscription_id,
                "type": MessageType.SUBSCRIBE,
                "payload": _operation(query, variables, operation_name),
            },
        )
        if on_subscribed is not None:
            on_subscribed()
        async for message in _messages(ws, timings):
            kind = message.get("type")
            if message.get("id") not in (None, subscription_id):
                continue  # not ours; a server bug, but harmless
            if kind == MessageType.NEXT:
                payload = message.get("payload")
                if not isinstance(payload, dict):
                    raise WSConnectionLost("server sent `next` without an object payload")
                yield payload
            elif kind == MessageType.ERROR:
                completed = True
                errors = message.get("payload")
                errors = errors if isinstance(errors, list) else [errors]
                raise WSSubscriptionError(_first_message(errors), errors)
            elif kind == MessageType.COMPLETE:
                completed = True
                return
            else:
                logger.debug("ignoring graphql-transport-ws message of type %r", kind)
    finally:
        if not completed:
            # The consumer stopped early or the socket broke: tell the server, best effort.
            with contextlib.suppress(Exception):
                await _send(ws, {"id": subscription_id, "type": MessageType.COMPLETE})
        with contextlib.suppress(Exception):
            await ws.close()


def _operation(query: str, variables: dict[str, Any], name: str | None) -> dict[str, Any]:
    operation: dict[str, Any] = {"query": query, "variables": variables}
    if name is not None:
        operation["operationName"] = name
    return operation


async def _await_ack(ws: ClientConnection, timeout_s: float) -> None:
    """Wait for connection_ack, answering pings meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise WSConnectionLost(f"no connection_ack within {timeout_s:g} s")
        message = await _recv(ws, remaining)
        if message is None:
            raise WSConnectionLost(f"no connection_ack within {timeout_s:g} s")
        kind = message.get("type")
        if kind == MessageType.CONNECTION_ACK:
            return
        if kind == MessageType.PING:
            await _send(ws, {"type": MessageType.PONG})
        elif kind != MessageType.PONG:
            raise WSConnectionLost(f"expected connection_ack, got {kind!r}")


async def _messages(ws: ClientConnection, timings: WSTimings) -> AsyncIterator[dict[str, Any]]:
    """Yield incoming messages other than ping/pong; keep the socket provably alive."""
    ping_outstanding = False
    while True:
        timeout = timings.pong_timeout_s if ping_outstanding else timings.ping_interval_s
        message = await _recv(ws, timeout)
        if message is None:
            if ping_outstanding:
                raise WSConnectionLost(
                    f"socket silent for {timings.ping_interval_s + timings.pong_timeout_s:g} s"
                    " (no pong): treating it as dead"
                )
            await _send(ws, {"type": MessageType.PING})
            ping_outstanding = True
            continue
        ping_outstanding = False  # anything received proves the socket alive
        kind = message.get("type")
        if kind == MessageType.PING:
            await _send(ws, {"type": MessageType.PONG})
        elif kind != MessageType.PONG:
            yield message


async def _recv(ws: ClientConnection, timeout_s: float) -> dict[str, Any] | None:
    """One decoded message, or None on timeout. Cancelling websockets' recv() loses no data.

    `asyncio.timeout`, not `wait_for`: on 3.11 `wait_for` can swallow a cancellation that
    arrives together with a message, which left `watch()` unable to stop its socket task.
    """
    try:
        async with asyncio.timeout(timeout_s):
            raw = await ws.recv()
    except TimeoutError:
        return None
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code in _FATAL_CLOSE_CODES:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            raise WSRefused(f"server closed the WebSocket with {code} {reason}".strip()) from None
        raise WSConnectionLost(f"WebSocket closed (code {code})") from None
    try:
        message = json.loads(raw)
    except ValueError:
        raise WSConnectionLost("server sent a frame that is not JSON") from None
    if not isinstance(message, dict):
        raise WSConnectionLost("server sent a JSON frame that is not an object")
    return message


async def _send(ws: ClientConnection, message: dict[str, Any]) -> None:
    try:
        await ws.send(json.dumps(message))
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        raise WSConnectionLost(f"WebSocket closed while sending (code {code})") from None


def _first_message(errors: list[Any]) -> str:
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:200]
    return "subscription refused"
