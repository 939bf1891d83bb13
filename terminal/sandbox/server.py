"""The sandbox server: one uvicorn + Starlette app on loopback serving Flash's GraphQL API
(HTTP and graphql-transport-ws), a Boltcard issuer's LNURL-withdraw, customers' Lightning
Addresses (LUD-16), and sandbox admin routes.

`Sandbox` runs on the caller's event loop (`await start()` / `await stop()`); `SandboxThread`
runs one in a background thread for synchronous code (tests, the demo, the CLI).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from . import admin_routes, hotlist_routes, lnurl_routes
from .config import write_terminal_config
from .core import SandboxCore
from .faults import Faults
from .flash_http import graphql_http
from .flash_ws import graphql_ws
from .lightning import Rates
from .limits import FlashLimits

T = TypeVar("T")
DEFAULT_USERNAME = "sandbox-merchant"
THREAD_TIMEOUT_S = 15.0


async def _health(_request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


def build_app(core: SandboxCore) -> Starlette:
    app = Starlette(routes=[
        Route("/graphql", graphql_http, methods=["POST"]),
        WebSocketRoute("/graphql", graphql_ws),
        Route("/ln", lnurl_routes.withdraw_request, methods=["GET"]),
        Route("/ln/callback", lnurl_routes.withdraw_callback, methods=["GET"]),
        Route("/lnurlp/card/{card_id}", lnurl_routes.card_pay_request, methods=["GET"]),
        Route("/lnurlp/card/{card_id}/callback", lnurl_routes.card_pay_callback,
              methods=["GET"]),
        Route("/.well-known/lnurlp/{name}", lnurl_routes.address_pay_request, methods=["GET"]),
        Route("/lnurlp/wallet/{name}/callback", lnurl_routes.address_pay_callback,
              methods=["GET"]),
        Route("/sandbox/wallets/{name}", admin_routes.customer_wallet, methods=["GET"]),
        Route("/sandbox/pay", admin_routes.pay, methods=["POST"]),
        Route("/sandbox/expire", admin_routes.expire, methods=["POST"]),
        Route("/sandbox/purge", admin_routes.purge, methods=["POST"]),
        Route("/sandbox/api-keys", admin_routes.create_api_key, methods=["POST"]),
        Route("/sandbox/limits", admin_routes.limits, methods=["GET"]),
        Route("/sandbox/invoices/{payment_hash}", admin_routes.invoice, methods=["GET"]),
        Route("/sandbox/cards", admin_routes.register_card, methods=["POST"]),
        Route("/sandbox/cards/{card_id}", admin_routes.card, methods=["GET", "POST"]),
        Route("/sandbox/faults", admin_routes.faults, methods=["GET", "POST", "DELETE"]),
        Route("/sandbox/info", admin_routes.info, methods=["GET"]),
        Route("/hotlist.json", hotlist_routes.hotlist, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
    ])
    app.state.core = core
    app.state.connections = set()
    return app


class Sandbox:
    """A Flash API + Boltcard issuer stand-in on `host:port` (0 picks a free port)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        network: str = "regtest",
        faults: Faults | None = None,
        issuer_key: bytes | None = None,
        rates: Rates | None = None,
        username: str = DEFAULT_USERNAME,
        clock: Callable[[], float] = time.time,
        limits: FlashLimits | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.faults = faults if faults is not None else Faults()
        self.core = SandboxCore(
            self.data_dir,
            network=network,
            faults=self.faults,
            rates=rates or Rates(),
            username=username,
            issuer_key=issuer_key,
            clock=clock,
            limits=limits,
        )
        self.public_port: int | None = None  # where terminals reach it (a NetworkLink's port)
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._main: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only for it,
        # and without it every keep-alive response stalls 40 ms (Nagle + delayed ACK).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock
        self.core.public_base = self.url
        config = uvicorn.Config(
            build_app(self.core),
            log_level="warning",
            access_log=False,  # URLs carry p/c and PINs: never log them
            lifespan="off",
            ws="websockets-sansio",
            timeout_graceful_shutdown=2,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server
        self._main = asyncio.create_task(server.main_loop())

    async def stop(self) -> None:
        server, main = self._server, self._main
        if server is None or main is None:
            return
        self._server = self._main = None
        server.should_exit = True
        await main
        await server.shutdown(sockets=[self._socket] if self._socket else None)

    async def serve_forever(self, stop: asyncio.Event | None = None) -> None:
        """Start, serve until `stop` is set (or the task is cancelled), then stop cleanly."""
        await self.start()
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- where things are ----------------------------------------------------------------------

    def expose_at(self, port: int) -> None:
        """Terminals reach the sandbox through `port` (a `NetworkLink` in front of it): every
        URL it hands out (config, LNURL callbacks, card URLs) names that port."""
        self.public_port = port
        self.core.public_base = self.url

    @property
    def _authority(self) -> str:
        return f"{self.host}:{self.public_port or self.port}"

    @property
    def url(self) -> str:
        return f"http://{self._authority}"

    @property
    def http_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._authority}/graphql"

    @property
    def lnurlw_base(self) -> str:
        return f"lnurlw://{self._authority}/ln"

    @property
    def issuer_key(self) -> bytes:
        return self.core.keys.issuer_key

    @property
    def api_key(self) -> str:
        return self.core.keys.api_key

    @property
    def username(self) -> str:
        return self.core.state.account.username

    def wallet_id(self, currency: str = "USD") -> str:
        wallet = self.core.state.account.wallet_in(currency)
        if wallet is None:
            raise LookupError(f"sandbox account has no {currency} wallet")
        return wallet.id

    # --- actions (call on the server's loop thread, or before start) ---------------------------

    def register_card(self, uid: bytes, balance_sats: int, **options: Any) -> dict[str, Any]:
        """Keys k0..k4 (hex), version, card_id, lnurlw_base, balance_msat. Options: pin,
        pin_limit_sats, per_tap_limit_sats, enabled."""
        return self.core.register_card(uid, balance_sats, **options)

    def pay_invoice(self, bolt11: str) -> str:
        return self.core.pay(bolt11).value

    def customer_balance_msat(self, name: str) -> int:
        """The balance of the wallet behind `name@<sandbox>` (made on first use)."""
        return self.core.customer_wallet(name).balance_msat

    def address(self, name: str) -> str:
        """`name@127.0.0.1:PORT`: a customer's Lightning Address at this sandbox."""
        return f"{name}@{self._authority}"

    def create_api_key(self, scopes: list[str], rate_limit: int | None = None) -> str:
        return self.core.create_api_key(scopes, rate_limit)

    def write_terminal_config(self, path: Path | None = None, *,
                              with_api_key: bool = False) -> Path:
        """`DIR/terminal.toml` (or `path`): a receive-only terminal by the merchant's username,
        or (`with_api_key`) one with the sandbox's API key, which can also send refunds."""
        return write_terminal_config(
            path or self.data_dir / "terminal.toml",
            api_key=self.api_key if with_api_key else None,
            data_dir=self.data_dir,
            network=self.core.network,
            http_url=self.http_url,
            ws_url=self.ws_url,
            username=self.username,
            issuer_key=self.issuer_key,
            host=self.host,
            lnurlw_base=self.lnurlw_base,
        )


class SandboxThread:
    """A `Sandbox` on its own event loop in a daemon thread; a context manager.

    Methods that touch sandbox state hop onto that loop, so they are safe from any thread.
    """

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        self.sandbox = Sandbox(data_dir, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxThread:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.sandbox.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.sandbox.stop())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="flash-sandbox", daemon=True)
        self._thread.start()
        if not ready.wait(THREAD_TIMEOUT_S):
            raise TimeoutError("sandbox server did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(THREAD_TIMEOUT_S)

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the sandbox loop and return its result."""
        if self._loop is None:
            return fn(*args, **kwargs)

        async def invoke() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(THREAD_TIMEOUT_S)

    # --- the same surface as Sandbox ---------------------------------------------------------

    url = property(lambda self: self.sandbox.url)
    http_url = property(lambda self: self.sandbox.http_url)
    ws_url = property(lambda self: self.sandbox.ws_url)
    lnurlw_base = property(lambda self: self.sandbox.lnurlw_base)
    port = property(lambda self: self.sandbox.port)
    issuer_key = property(lambda self: self.sandbox.issuer_key)
    api_key = property(lambda self: self.sandbox.api_key)
    username = property(lambda self: self.sandbox.username)
    faults = property(lambda self: self.sandbox.faults)
    core = property(lambda self: self.sandbox.core)
    limits = property(lambda self: self.sandbox.core.limits)
    data_dir = property(lambda self: self.sandbox.data_dir)

    def wallet_id(self, currency: str = "USD") -> str:
        return self.call(self.sandbox.wallet_id, currency)

    def register_card(self, uid: bytes, balance_sats: int, **options: Any) -> dict[str, Any]:
        return self.call(self.sandbox.register_card, uid, balance_sats, **options)

    def pay_invoice(self, bolt11: str) -> str:
        return self.call(self.sandbox.pay_invoice, bolt11)

    def customer_balance_msat(self, name: str) -> int:
        return self.call(self.sandbox.customer_balance_msat, name)

    def address(self, name: str) -> str:
        return self.sandbox.address(name)

    def merchant_balance_cents(self, currency: str = "USD") -> int:
        def balance() -> int:
            wallet = self.sandbox.core.state.account.wallet_in(currency)
            return wallet.balance if wallet is not None else 0

        return self.call(balance)

    def create_api_key(self, scopes: list[str], rate_limit: int | None = None) -> str:
        return self.call(self.sandbox.create_api_key, scopes, rate_limit)

    def purge_invoice(self, bolt11: str) -> None:
        def purge() -> None:
            record = self.sandbox.core.find_invoice(bolt11)
            if record is not None:
                self.sandbox.core.purge_now(record)

        self.call(purge)

    def limit_state(self) -> dict[str, Any]:
        return self.call(self.sandbox.core.limit_state)

    def reset_limits(self) -> None:
        self.call(self.sandbox.core.reset_limits)

    def update_card(self, card_id: str, **changes: Any) -> dict[str, Any]:
        return self.call(lambda: self.sandbox.core.update_card(card_id, changes).public())

    def card_state(self, card_id: str) -> dict[str, Any]:
        return self.call(self.sandbox.core.card_state, card_id)

    def set_faults(self, **changes: Any) -> None:
        self.call(self.sandbox.faults.update, changes)

    def write_terminal_config(self, path: Path | None = None, *,
                              with_api_key: bool = False) -> Path:
        return self.call(lambda: self.sandbox.write_terminal_config(
            path, with_api_key=with_api_key))
