"""A raw HTTP/1.1 server on 127.0.0.1, run on the test's loop, for the edge cases a real server
or a proxy can produce and a well-behaved app cannot: an answer that never comes, a dropped
connection, a redirect, a huge body, a cookie. Every request is recorded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class EdgeServer:
    """HTTP/1.1 on loopback: each request is recorded, then `answer` writes what it likes."""

    answer: Answer
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (h.partition(":") for h in rest if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, target, headers, body)
                self.seen.append(seen)
                await self.answer(seen, writer)
                if writer.is_closing():
                    return
        writer.close()


@contextlib.asynccontextmanager
async def edge(answer: Answer) -> AsyncIterator[EdgeServer]:
    server = EdgeServer(answer)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


def reply(status: int, body: bytes = b"{}", *extra: str) -> Answer:
    async def write(_seen: Seen, writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *extra]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
    return write


async def never_answer(_seen: Seen, _writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # cancelled when the server closes


async def hang_up(_seen: Seen, writer: asyncio.StreamWriter) -> None:
    writer.close()
