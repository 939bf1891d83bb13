"""Real servers on loopback for the tests: an ASGI app served by uvicorn on 127.0.0.1.

The socket is bound and listening before uvicorn runs, so early connections wait in the backlog
(no "is it up yet?" polling), with TCP_NODELAY (uvicorn writes headers and body apart: without it
Nagle + delayed ACK add ~40 ms per answer). `LoopbackServer` runs in a background thread (its own
loop: for synchronous tests and for apps that must not share the test's loop); `serving` runs on
the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

STOP_TIMEOUT_S = 10.0


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind((host, port))
    sock.listen(64)
    return sock


def _config(app: Any, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          timeout_graceful_shutdown=1, **options)


class LoopbackServer:
    """`with LoopbackServer(app) as server: … server.url …` (uvicorn in a daemon thread).

    Options go to `uvicorn.Config` (`ssl_certfile`, `ssl_keyfile`, `ws`, `loop` …)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", name: str = "loopback",
                 **options: Any) -> None:
        self.host = host
        self.sock = listening_socket(host)
        self.port: int = self.sock.getsockname()[1]
        self.tls = bool(options.get("ssl_certfile"))
        self._server = uvicorn.Server(_config(app, **options))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self.sock]}, daemon=True, name=name)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def serving(app: Any, *, host: str = "127.0.0.1", **options: Any) -> AsyncIterator[str]:
    """Serve `app` on this loop for the block; yields its base URL."""
    sock = listening_socket(host)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        sock.close()
