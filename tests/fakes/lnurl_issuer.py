"""An LNURL-withdraw card issuer, served for real over HTTP(S) on loopback (uvicorn thread).

What it models: `GET /scan` answering a withdrawRequest (LUD-03/14/19 + pinLimit) or any
`{"status":"ERROR"}` with any HTTP status (BTCPay's 400, LNbits' 200); `GET /cb` recording the
raw callback query and answering what the test set (JSON or an HTML body, any status), or
hanging until the server stops, or calling `on_callback(query)` first (e.g. to pay `pr` at a
fake backend, as a real issuer would, before answering OK); hostile behaviours: `/redirect`
(302 to `redirect_to`), `/huge` (a 50 MB body, chunked or with Content-Length), `/trickle` (one
byte every 100 ms), `/text` (HTML with any status). TLS with a throwaway certificate
(`make_self_signed_cert`).
`SilentListener`: a listening socket nobody accepts on; connections stay in the kernel's backlog,
so counting them afterwards is exact and needs no timing.

What it does NOT model: SUN/CMAC checks, counters, k1 bookkeeping, paying invoices (unless
`on_callback` does), LNURL-pay.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from helpers.loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

BOLT11 = json.loads((Path(__file__).parents[1] / "vectors" / "bolt11.json").read_text())["valid"][
    0
]["invoice"]
HUGE_BYTES = 50 * 1024 * 1024


@dataclass
class Seen:
    path: str
    raw_query: str
    host_header: str


@dataclass
class Issuer:
    host: str = "127.0.0.1"
    certfile: str | None = None
    keyfile: str | None = None
    # What /scan answers: (HTTP status, JSON object). None → a withdrawRequest built by `scan`.
    scan_answer: tuple[int, Any] | None = None
    # What /cb answers: (HTTP status, JSON object or raw bytes).
    callback_answer: tuple[int, Any] = (200, {"status": "OK"})
    callback_hangs: bool = False
    # Called (in the server thread) with the callback's query parameters before it answers.
    on_callback: Callable[[dict[str, str]], None] | None = None
    redirect_to: str = ""
    seen: list[Seen] = field(default_factory=list)
    callback_seen: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        app = Starlette(
            routes=[
                Route("/scan", self._scan),
                Route("/cb", self._cb),
                Route("/redirect", self._redirect),
                Route("/huge", self._huge),
                Route("/trickle", self._trickle),
                Route("/text", self._text),
            ]
        )
        self._server = LoopbackServer(app, host=self.host, name="lnurl-issuer",
                                      ssl_certfile=self.certfile, ssl_keyfile=self.keyfile)
        self.port = self._server.port

    # --- lifecycle ---

    def start(self) -> Issuer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.stop()

    def reset(self) -> None:
        self.scan_answer = None
        self.callback_answer = (200, {"status": "OK"})
        self.callback_hangs = False
        self.on_callback = None
        self.redirect_to = ""
        self.seen.clear()
        self.callback_seen.clear()

    @property
    def origin(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def card_url(self, path: str = "/scan", query: str = "p=A1B2&c=C3D4") -> str:
        return f"{self.origin}{path}?{query}"

    def withdraw_request(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tag": "withdrawRequest",
            "callback": f"{self.origin}/cb?hit=42&sig=a%2Bb",
            "k1": "p-value-c-value",
            "minWithdrawable": 1_000,
            "maxWithdrawable": 500_000,
            "defaultDescription": "Boltcard payment",
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    # --- routes ---

    def _record(self, request: Request) -> None:
        self.seen.append(Seen(request.url.path, request.url.query, request.headers.get("host", "")))

    async def _scan(self, request: Request) -> Response:
        self._record(request)
        status, body = self.scan_answer or (200, self.withdraw_request())
        return JSONResponse(body, status_code=status)

    async def _cb(self, request: Request) -> Response:
        self._record(request)
        self.callback_seen.set()
        if self.on_callback is not None:
            self.on_callback(dict(request.query_params))
        if self.callback_hangs:
            await anyio.to_thread.run_sync(self._release.wait, 30)
        status, body = self.callback_answer
        if isinstance(body, bytes):
            return Response(body, status_code=status, media_type="text/html")
        return JSONResponse(body, status_code=status)

    async def _redirect(self, request: Request) -> Response:
        self._record(request)
        return RedirectResponse(self.redirect_to, status_code=302)

    async def _huge(self, request: Request) -> Response:
        self._record(request)
        declare = request.query_params.get("declare") == "1"

        async def body() -> AsyncIterator[bytes]:
            chunk = b" " * (1024 * 1024)
            for _ in range(HUGE_BYTES // len(chunk)):
                yield chunk

        headers = {"content-length": str(HUGE_BYTES)} if declare else None
        return StreamingResponse(body(), headers=headers, media_type="application/json")

    async def _trickle(self, request: Request) -> Response:
        self._record(request)

        async def body() -> AsyncIterator[bytes]:
            yield b"{"
            # One byte every 100 ms: every read timeout is satisfied, only a deadline stops it.
            for _ in range(600):
                if self._release.is_set():
                    return
                await asyncio.sleep(0.1)
                yield b" "

        return StreamingResponse(body(), media_type="application/json")

    async def _text(self, request: Request) -> Response:
        self._record(request)
        status = int(request.query_params.get("status", "200"))
        return Response(b"<html>Bad Gateway</html>", status_code=status, media_type="text/html")


class SilentListener:
    """A listening socket nobody accepts on; `connections()` counts completed TCP handshakes."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


def make_self_signed_cert(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A throwaway certificate for `hostname` (openssl CLI), to test SNI + name checks."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={hostname}", "-addext", f"subjectAltName=DNS:{hostname}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
