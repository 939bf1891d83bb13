"""FlashBackend against real servers on 127.0.0.1.

`MiniFlash` is a small Flash of our own (starlette + uvicorn, GraphQL executed by graphql-core
against the real public schema, graphql-transport-ws by hand, real signed BOLT11s). It exists for
gateway behaviours that are awkward to provoke elsewhere: HTML 401 bodies, mid-stream socket drops,
silent (dead) sockets, lost mutation responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import bolt11
import pytest
from graphql import GraphQLError, build_schema, graphql, parse, validate
from helpers import loopback
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from terminal.adapters.backends import flash as flash_mod
from terminal.adapters.backends import flash_errors, flash_status
from terminal.adapters.backends.flash import FlashBackend, ReconnectPolicy, RetryPolicy
from terminal.adapters.backends.flash_ws import WSTimings
from terminal.core.ports.backend import (
    Backend,
    BackendError,
    BackendProtocolError,
    BackendRateLimited,
    BackendRejected,
    BackendUnauthorized,
    BackendUnavailable,
    InvoiceRequest,
    InvoiceStatus,
)
from terminal.sandbox.flash_schema import schema_sdl


def flash_format_error(error: GraphQLError) -> dict[str, Any]:
    """Flash's formatError: `{message, locations, path, code}`, the code at the top level."""
    out = {k: v for k, v in error.formatted.items() if k != "extensions"}
    code = (error.extensions or {}).get("code")
    if code is not None:
        out["code"] = code
    return out


SCHEMA = build_schema(schema_sdl())  # the one copy: packaged with the sandbox
API_KEY = "fk_test_0123456789abcdef_SECRET"
USERNAME = "merchant"
NODE_KEY = hashlib.sha256(b"mini-flash node key").hexdigest()
# 1 sat = 0.1 US cent (BTC at 100,000 USD); 1 USD = 157 JMD, so 1 US cent = 157 JMD cents.
USD_CENTS_PER_SAT = Decimal("0.1")
JMD_CENTS_PER_USD_CENT = Decimal(157)
PRICE_OFFSET = 12
BOLT11_PREFIX = {"mainnet": "bc", "regtest": "bcrt"}


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(bounded())


def sale(amount: int = 1250, currency: str = "USD", key: str = "sale-1") -> InvoiceRequest:
    return InvoiceRequest(
        amount_minor=amount, currency=currency, memo="coffee", idempotency_key=key
    )


# ----------------------------------------------------------------------------- MiniFlash


@dataclass
class Faults:
    rate_limit_reads: int = 0  # next N queries answer TOO_MANY_REQUESTS
    rate_limit_mutations: int = 0
    retry_after_s: float = 0.2
    http_503_reads: int = 0
    http_503_mutations: int = 0
    unauthorized_json: bool = False  # 401 {"error":"invalid_api_key"} instead of HTML
    hang_mutations: bool = False  # never answer a mutation (the answer is "lost")
    payload_error: str | None = None  # next invoice creation answers payload errors[]
    wrong_hash: bool = False
    price_factor: Decimal = Decimal(1)  # mis-price BOLT11 amounts for USD invoices
    ws_refuse: bool = False  # refuse the WebSocket handshake
    ws_silent: bool = False  # ack + accept subscribe, then never answer anything (dead socket)
    ws_server_pings: bool = False  # ping the client before the ack and after each subscribe
    usd_expiry_s: int = 60  # IBEX caps USD invoices at 60 s whatever expiresIn says


@dataclass
class MiniFlash:
    network: str = "regtest"
    wallet_currency: str = "USD"
    faults: Faults = field(default_factory=Faults)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    mutations_received: int = 0
    mutation_bodies: list[str] = field(default_factory=list)
    ws_connections: int = 0
    ws_subscriptions: int = 0
    ws_subscribed_at: list[float] = field(default_factory=list)
    ws_client_pings: int = 0
    ws_client_pongs: int = 0
    status_answers: int = 0  # status queries answered (their status already computed)
    ws_init_payloads: list[Any] = field(default_factory=list)
    currency_list_calls: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _sockets: set[WebSocket] = field(default_factory=set)
    _watchers: dict[str, set[asyncio.Queue[str]]] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    # --- test controls
    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _bump(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def pay(self, payment_request: str) -> None:
        self.invoices[payment_request]["status"] = "PAID"
        for queue in self._watchers.get(payment_request, set()):
            queue.put_nowait("PAID")

    async def drop_sockets(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1011)
        self._sockets.clear()

    def status_polls(self) -> list[float]:
        return [t for t, op, _ in self.requests if op == "LnInvoicePaymentStatus"]

    # --- pricing and invoices
    def minor_per_sat(self, currency: str) -> Decimal:
        return USD_CENTS_PER_SAT * (JMD_CENTS_PER_USD_CENT if currency == "JMD" else 1)

    def minor_per_usd_cent(self, currency: str) -> Decimal:
        return JMD_CENTS_PER_USD_CENT if currency == "JMD" else Decimal(1)

    def mint(self, amount_msat: int, memo: str, expires_in_min: int | None) -> dict[str, Any]:
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        tags = bolt11.Tags()
        tags.add(bolt11.TagChar.payment_hash, payment_hash)
        tags.add(bolt11.TagChar.payment_secret, os.urandom(32).hex())
        tags.add(bolt11.TagChar.description, memo or "")
        tags.add(bolt11.TagChar.expire_time, self.faults.usd_expiry_s)
        tags.add(bolt11.TagChar.min_final_cltv_expiry, 18)
        invoice = bolt11.Bolt11(
            currency=BOLT11_PREFIX[self.network],
            date=int(time.time()),
            tags=tags,
            amount_msat=bolt11.MilliSatoshi(amount_msat),
        )
        pr = bolt11.encode(invoice, NODE_KEY)
        self.invoices[pr] = {"hash": payment_hash, "status": "PENDING"}
        if self.faults.wrong_hash:
            payment_hash = hashlib.sha256(b"another invoice").hexdigest()
        return {"paymentHash": payment_hash, "paymentRequest": pr,
                "paymentSecret": "00" * 32, "satoshis": None}  # fmt: skip

    # --- GraphQL resolvers (root value; graphql-core calls them with info + arguments)
    def root(self, authed: bool) -> dict[str, Any]:
        server = self

        def wallet_obj() -> dict[str, Any]:
            currency = server.wallet_currency
            typename = "UsdWallet" if currency == "USD" else "BTCWallet"
            return {"__typename": typename, "id": f"wallet-{currency.lower()}",
                    "walletCurrency": currency, "balance": 0}  # fmt: skip

        def payload_errors() -> list[dict[str, Any]]:
            message, server.faults.payload_error = server.faults.payload_error, None
            return [{"__typename": "GraphQLApplicationError", "message": message,
                     "code": "INVALID_INPUT", "path": ["amount"]}]  # fmt: skip

        def usd_invoice(input: dict[str, Any]) -> dict[str, Any]:
            if server.faults.payload_error:
                return {"errors": payload_errors(), "invoice": None}
            sats = Decimal(str(input["amount"])) / USD_CENTS_PER_SAT * server.faults.price_factor
            msat = int(sats.to_integral_value()) * 1000
            return {"errors": [], "invoice": server.mint(msat, input.get("memo"),
                                                         input.get("expiresIn"))}

        def account_default_wallet(info: Any, username: str, walletCurrency: str | None = None):
            if username != USERNAME:  # as Flash: an error with its code, not a null
                raise GraphQLError(f"Account does not exist for username {username}",
                                   extensions={"code": "NOT_FOUND"})
            return wallet_obj()

        def need_auth() -> None:
            if not authed:
                raise GraphQLError("Not authorized", extensions={"code": "NOT_AUTHORIZED"})

        def price(currency: str) -> dict[str, Any]:
            scale = Decimal(10) ** PRICE_OFFSET
            return {
                "id": currency, "timestamp": 1_750_000_000, "denominatorCurrency": currency,
                "btcSatPrice": {"base": int(server.minor_per_sat(currency) * scale),
                                "offset": PRICE_OFFSET, "currencyUnit": "x"},
                "usdCentPrice": {"base": int(server.minor_per_usd_cent(currency) * scale),
                                 "offset": PRICE_OFFSET, "currencyUnit": "x"},
            }  # fmt: skip

        def currency_list(info: Any) -> list[dict[str, Any]]:
            server.currency_list_calls += 1
            return [
                {"id": "USD", "symbol": "$", "fractionDigits": 2, "name": "US Dollar", "flag": ""},
                {"id": "JMD", "symbol": "J$", "fractionDigits": 2, "name": "Jamaican Dollar",
                 "flag": ""},
            ]  # fmt: skip

        def status(info: Any, input: dict[str, Any]) -> dict[str, Any]:
            server.status_answers += 1
            record = server.invoices.get(input["paymentRequest"])
            if record is None:  # the provider does not know it: Flash throws IBEX_ERROR
                raise GraphQLError("An error occurred. Contact support if error persists.",
                                   extensions={"code": "IBEX_ERROR"})
            return {"status": record["status"], "errors": []}

        def btc_unsupported(info: Any, input: dict[str, Any]) -> None:
            raise GraphQLError("Flash does not support BTC wallets.")

        def create_own(kind: Callable[[dict[str, Any]], dict[str, Any]]):
            def resolver(info: Any, input: dict[str, Any]) -> dict[str, Any]:
                need_auth()
                assert input["walletId"] == f"wallet-{server.wallet_currency.lower()}"
                return kind(input)

            return resolver

        def create_for(kind: Callable[[dict[str, Any]], dict[str, Any]]):
            def resolver(info: Any, input: dict[str, Any]) -> dict[str, Any]:
                assert input["recipientWalletId"] == f"wallet-{server.wallet_currency.lower()}"
                return kind(input)

            return resolver

        return {
            "accountDefaultWallet": account_default_wallet,
            "me": lambda info: (
                {"defaultAccount": {"__typename": "ConsumerAccount", "id": "acct-1",
                                    "defaultWalletId": wallet_obj()["id"], "displayCurrency": "JMD",
                                    "wallets": [wallet_obj()]}}  # fmt: skip
                if authed
                else None
            ),
            "realtimePrice": lambda info, currency="USD": price(currency),
            "currencyList": currency_list,
            "globals": lambda info: {"network": server.network},
            "lnInvoicePaymentStatus": status,
            "lnUsdInvoiceCreate": create_own(usd_invoice),
            "lnUsdInvoiceCreateOnBehalfOfRecipient": create_for(usd_invoice),
            "lnInvoiceCreate": btc_unsupported,
            "lnInvoiceCreateOnBehalfOfRecipient": btc_unsupported,
        }

    # --- HTTP
    async def http(self, request: Request) -> Response:
        body = await request.json()
        op = body.get("operationName") or "?"
        self.requests.append((time.monotonic(), op, dict(request.headers)))
        await self._bump()
        key = request.headers.get("x-api-key")
        if key is not None and key != API_KEY:
            if self.faults.unauthorized_json:
                return JSONResponse({"error": "invalid_api_key"}, status_code=401)
            return HTMLResponse("<html><body><h1>401 Authorization Required</h1></body></html>",
                                status_code=401)  # fmt: skip
        document = parse(body["query"])
        errors = validate(SCHEMA, document)
        if errors:
            failed = {"code": "GRAPHQL_VALIDATION_FAILED"}
            return JSONResponse(
                {"errors": [{"message": e.message, "extensions": failed} for e in errors]},
                status_code=400,
            )
        is_mutation = body["query"].lstrip().startswith("mutation")
        if is_mutation:
            self.mutations_received += 1
            self.mutation_bodies.append(json.dumps(body))
        limited = "rate_limit_mutations" if is_mutation else "rate_limit_reads"
        # The key limiter (api-key-rate-limit.ts) counts requests that carry a key, only.
        if key is not None and getattr(self.faults, limited) > 0:
            setattr(self.faults, limited, getattr(self.faults, limited) - 1)
            return JSONResponse({"data": None, "errors": [{"message": "Too many requests",
                "extensions": {"code": "TOO_MANY_REQUESTS",
                               "retryAfterSeconds": self.faults.retry_after_s}}]})  # fmt: skip
        failing = "http_503_mutations" if is_mutation else "http_503_reads"
        if getattr(self.faults, failing) > 0:
            setattr(self.faults, failing, getattr(self.faults, failing) - 1)
            return HTMLResponse("<html>503 Service Temporarily Unavailable</html>", 503)
        authed = key == API_KEY or request.headers.get("authorization") == f"Bearer {API_KEY}"
        result = await graphql(SCHEMA, body["query"], root_value=self.root(authed),
                               variable_values=body.get("variables"),
                               operation_name=body.get("operationName"))  # fmt: skip
        await self._bump()
        if is_mutation and self.faults.hang_mutations:
            await self._release.wait()  # the invoice exists; its answer never arrives
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [flash_format_error(e) for e in result.errors]
        return JSONResponse(out)

    # --- graphql-transport-ws
    async def ws(self, websocket: WebSocket) -> None:
        if self.faults.ws_refuse or "graphql-transport-ws" not in websocket.scope["subprotocols"]:
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept(subprotocol="graphql-transport-ws")
        self.ws_connections += 1
        self._sockets.add(websocket)
        await self._bump()
        queue: asyncio.Queue[str] = asyncio.Queue()
        watched: str | None = None
        forward: asyncio.Task[None] | None = None
        try:
            init = json.loads(await websocket.receive_text())
            assert init["type"] == "connection_init"
            self.ws_init_payloads.append(init.get("payload"))
            if self.faults.ws_server_pings:
                await websocket.send_text(json.dumps({"type": "ping"}))
            await websocket.send_text(json.dumps({"type": "connection_ack"}))
            while True:
                message = json.loads(await websocket.receive_text())
                kind = message["type"]
                if kind == "ping":
                    self.ws_client_pings += 1
                    await self._bump()
                    if not self.faults.ws_silent:
                        await websocket.send_text(json.dumps({"type": "pong"}))
                elif kind == "pong":
                    self.ws_client_pongs += 1
                    await self._bump()
                elif kind == "subscribe":
                    payload = message["payload"]
                    assert validate(SCHEMA, parse(payload["query"])) == []
                    watched = payload["variables"]["input"]["paymentRequest"]
                    self._watchers.setdefault(watched, set()).add(queue)
                    self.ws_subscriptions += 1
                    self.ws_subscribed_at.append(time.monotonic())
                    await self._bump()
                    if self.faults.ws_server_pings:
                        await websocket.send_text(json.dumps({"type": "ping"}))
                    if not self.faults.ws_silent:
                        forward = asyncio.create_task(self._forward(websocket, message["id"],
                                                                    queue))  # fmt: skip
                elif kind == "complete":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if forward is not None:
                forward.cancel()
            if watched is not None:
                self._watchers[watched].discard(queue)
            self._sockets.discard(websocket)

    async def _forward(self, websocket: WebSocket, sub_id: str, queue: asyncio.Queue[str]) -> None:
        with contextlib.suppress(Exception):
            while True:
                status = await queue.get()
                await websocket.send_text(json.dumps({"id": sub_id, "type": "next", "payload": {
                    "data": {"lnInvoicePaymentStatus": {"status": status, "errors": []}}}}))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/graphql", self.http, methods=["POST"]),
                                 WebSocketRoute("/graphql", self.ws)])  # fmt: skip


@contextlib.asynccontextmanager
async def serving(server: MiniFlash):
    """MiniFlash on this loop (tests/helpers/loopback.py): its GraphQL URLs over HTTP and WS."""
    async with loopback.serving(server.app(), ws="websockets-sansio") as base:
        try:
            yield f"{base}/graphql", f"ws{base.removeprefix('http')}/graphql"
        finally:  # held answers and open subscriptions end before the server stops
            server._release.set()
            await server.drop_sockets()


def backend(http_url: str, ws_url: str | None, **kwargs: Any) -> FlashBackend:
    defaults: dict[str, Any] = dict(
        username=USERNAME,
        network="regtest",
        poll_interval_s=0.05,
        retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=2),
        reconnect=ReconnectPolicy(initial_s=0.01, max_s=0.05),
        ws_timings=WSTimings(open_timeout_s=2, ack_timeout_s=2, ping_interval_s=5,
                             pong_timeout_s=2),  # fmt: skip
    )
    defaults.update(kwargs)
    return FlashBackend(http_url, ws_url, **defaults)


async def collect(agen: Any, out: list[InvoiceStatus]) -> None:
    async for status in agen:
        out.append(status)


# ----------------------------------------------------------------------------- happy paths


def test_flash_backend_is_a_backend():
    b = FlashBackend("https://api.example.test/graphql", None, username="m")
    assert isinstance(b, Backend)
    asyncio.run(b.aclose())


def test_receive_only_creates_a_checked_usd_invoice():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            invoice = await b.create_invoice(sale(1250))
            await b.aclose()
        decoded = bolt11.decode(invoice.bolt11)
        # 12.50 USD at 0.1 cent/sat = 12,500 sat, read from the BOLT11 (satoshis is null).
        assert invoice.amount_msat == 12_500_000 == decoded.amount_msat
        assert invoice.payment_hash == decoded.payment_hash
        assert invoice.expires_at == decoded.date + 60  # whatever the sale's 300 s asked
        assert invoice.backend_ref == invoice.bolt11
        ops = [op for _, op, _ in server.requests]
        assert "AccountDefaultWallet" in ops and "LnUsdInvoiceCreateOnBehalfOfRecipient" in ops
        assert all("x-api-key" not in h for _, _, h in server.requests)

    run(scenario)


def test_api_key_mode_uses_own_wallet_and_header(caplog):
    caplog.set_level(logging.DEBUG)

    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username=None, api_key=API_KEY)
            first = await b.create_invoice(sale(100, key="a"))
            second = await b.create_invoice(sale(200, key="b"))
            await b.aclose()
        # The socket is used anonymously: status needs no key, and Flash's takes none.
        assert b.mode == "api-key" and b.uses_websocket
        assert first.amount_msat == 1_000_000 and second.amount_msat == 2_000_000
        ops = [op for _, op, _ in server.requests]
        assert ops.count("MeWallets") == 1  # wallet id cached
        assert ops.count("LnUsdInvoiceCreate") == 2
        # Only what needs the key carries it: every keyed request counts against its limit.
        keyed = {op for _, op, h in server.requests if h.get("x-api-key") == API_KEY}
        assert keyed == {"MeWallets", "LnUsdInvoiceCreate"}
        assert "RealtimePrice" in ops

    run(scenario)
    assert API_KEY not in caplog.text


def test_session_token_mode_authorises_http_and_watches_anonymously(caplog):
    caplog.set_level(logging.DEBUG)  # websockets logs frames at DEBUG: not ours

    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username=None, session_token=API_KEY)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            first = await anext(statuses)
            await server.wait_for(lambda: server.ws_subscriptions == 1)
            await server.pay(invoice.bolt11)
            rest = [s async for s in statuses]
            await b.aclose()
        assert b.mode == "session" and b.uses_websocket
        assert [first, *rest] == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
        assert server.ws_init_payloads == [None]  # status is public: no credential sent
        creations = [h for _, op, h in server.requests if op == "LnUsdInvoiceCreate"]
        assert creations and creations[0]["authorization"] == f"Bearer {API_KEY}"
        polls = [h for _, op, h in server.requests if op == "LnInvoicePaymentStatus"]
        assert polls and all("authorization" not in h for h in polls)

    run(scenario)
    assert "connection_init" not in caplog.text and API_KEY not in caplog.text


def test_receive_only_socket_sends_no_credentials():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            await anext(statuses)
            await server.wait_for(lambda: server.ws_subscriptions == 1)
            await statuses.aclose()  # the caller may stop watching at any time
            await b.aclose()
        assert server.ws_init_payloads == [None]

    run(scenario)


def test_same_sale_twice_creates_one_invoice():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            one, two = await asyncio.gather(  # concurrently, as a double tap might
                b.create_invoice(sale(key="sale-7")), b.create_invoice(sale(key="sale-7"))
            )
            three = await b.create_invoice(sale(key="sale-7"))
            await b.aclose()
        assert one == two == three and server.mutations_received == 1

    run(scenario)


def test_jmd_sale_on_usd_wallet_is_converted_to_cents():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            invoice = await b.create_invoice(sale(157_00, currency="JMD"))  # 157 JMD = 1 USD
            await b.aclose()
        assert invoice.amount_msat == 1000 * 1000  # 100 cents at 0.1 cent/sat = 1000 sat

    run(scenario)


def test_sat_sale_is_sent_as_exact_fractional_cents():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            invoice = await b.create_invoice(sale(15, currency="SAT"))
            await b.aclose()
        sent = [json.loads(body) for body in server.mutation_bodies]
        return invoice, sent

    invoice, sent = run(scenario)
    # 15 sat at 0.1 US cent a sat is 1.5 cents (not 2): Flash takes FractionalCentAmount.
    assert sent[0]["variables"]["input"]["amount"] == 1.5
    assert invoice.amount_msat == 15_000


def test_btc_wallets_are_refused_at_configuration():
    with pytest.raises(ValueError, match="does not support BTC wallets"):
        FlashBackend("https://api.flashapp.me/graphql", None, username="m", wallet_currency="BTC")


def test_display_rate_and_cached_currency_list():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            jmd = await b.display_rate("jmd")
            usd = await b.display_rate("USD")
            await b.aclose()
        assert jmd.currency == "JMD" and jmd.minor_per_sat == Decimal("15.7")
        assert usd.minor_per_sat == Decimal("0.1") and usd.fraction_digits == 2
        assert jmd.timestamp == 1_750_000_000
        assert server.currency_list_calls == 1

    run(scenario)


def test_health_reports_network_mismatch():
    async def scenario():
        server = MiniFlash(network="mainnet")
        async with serving(server) as (http_url, ws_url):
            wrong = backend(http_url, ws_url)  # regtest
            right = backend(http_url, ws_url, network="bitcoin")
            bad, good = await wrong.health(), await right.health()
            await wrong.aclose()
            await right.aclose()
        assert not bad.ok and "mainnet" in bad.detail
        assert good.ok and good.latency_ms is not None

    run(scenario)


# ----------------------------------------------------------------------------- status


def test_subscription_delivers_paid():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            # Polls 60 s apart: only the socket can report the payment in time.
            b = backend(http_url, ws_url, poll_interval_s=60, safety_poll_s=60)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            first = await anext(statuses)
            # Subscribed, and the catch-up query after subscribing answered: from here on only
            # the socket can report the payment.
            await server.wait_for(lambda: server.ws_subscriptions == 1
                                  and server.status_answers == 2)  # fmt: skip
            await server.pay(invoice.bolt11)
            rest = [s async for s in statuses]
            assert await b.invoice_status(invoice) is InvoiceStatus.PAID
            await b.aclose()
        assert [first, *rest] == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
        assert server.status_answers == 3

    run(scenario)


def test_dropped_socket_falls_back_to_polling():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            first = await anext(statuses)
            await server.wait_for(lambda: server.ws_subscriptions == 1)
            server.faults.ws_refuse = True  # the socket stays down
            await server.drop_sockets()
            polls_at_drop = len(server.status_polls())
            await server.wait_for(lambda: len(server.status_polls()) > polls_at_drop)
            await server.pay(invoice.bolt11)
            rest = [s async for s in statuses]
            await b.aclose()
        assert [first, *rest] == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
        assert server.ws_subscriptions == 1  # so PAID came by polling

    run(scenario)


def test_dropped_socket_reconnects_and_resubscribes():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, poll_interval_s=60, safety_poll_s=60)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            first = await anext(statuses)
            await server.wait_for(lambda: server.ws_subscriptions == 1
                                  and server.status_answers == 2)  # fmt: skip
            await server.drop_sockets()
            # The drop and the resubscription each ask for a query at once (one query when they
            # come together); the 60 s polls never fire, so PAID must come through the new
            # socket, after a query that followed the resubscription.
            await server.wait_for(lambda: server.ws_subscriptions == 2 and any(
                t > server.ws_subscribed_at[1] for t in server.status_polls()))
            await server.pay(invoice.bolt11)
            rest = [s async for s in statuses]
            await b.aclose()
        assert [first, *rest] == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
        assert server.ws_connections == 2 and 3 <= server.status_answers <= 4

    run(scenario)


def test_client_answers_server_pings_before_and_after_the_ack():
    async def scenario():
        server = MiniFlash()
        server.faults.ws_server_pings = True
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, poll_interval_s=60, safety_poll_s=60)
            invoice = await b.create_invoice(sale())
            statuses = b.watch(invoice)
            first = await anext(statuses)
            await server.wait_for(lambda: server.ws_client_pongs == 2
                                  and server.status_answers == 2)  # fmt: skip
            await server.pay(invoice.bolt11)
            rest = [s async for s in statuses]
            await b.aclose()
        assert [first, *rest] == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
        assert server.ws_connections == 1  # the pings did not upset the connection

    run(scenario)


def test_silent_socket_is_declared_dead_and_replaced():
    async def scenario():
        server = MiniFlash()
        server.faults.ws_silent = True
        async with serving(server) as (http_url, ws_url):
            timings = WSTimings(ping_interval_s=0.05, pong_timeout_s=0.1, ack_timeout_s=2)
            b = backend(http_url, ws_url, ws_timings=timings)
            invoice = await b.create_invoice(sale())
            seen: list[InvoiceStatus] = []
            watcher = asyncio.create_task(collect(b.watch(invoice), seen))
            await server.wait_for(lambda: server.ws_connections >= 2)
            await server.pay(invoice.bolt11)
            await watcher
            await b.aclose()
        assert server.ws_client_pings >= 1  # the client probed before giving up
        assert seen[-1] is InvoiceStatus.PAID

    run(scenario)


def test_watch_without_websocket_polls_until_expired():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, _):
            b = backend(http_url, None)
            invoice = await b.create_invoice(sale())
            seen: list[InvoiceStatus] = []
            watcher = asyncio.create_task(collect(b.watch(invoice), seen))
            await server.wait_for(lambda: len(server.status_polls()) >= 2)
            server.invoices[invoice.bolt11]["status"] = "EXPIRED"
            await watcher
            await b.aclose()
        assert seen == [InvoiceStatus.PENDING, InvoiceStatus.EXPIRED]
        assert server.ws_connections == 0

    run(scenario)


def test_an_invoice_the_provider_does_not_know_is_not_a_refusal():
    # Flash throws IBEX_ERROR for an invoice its provider does not know (yet): temporary. The
    # watch keeps asking, and the sale is not failed over it.
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, _):
            b = backend(http_url, None)
            invoice = await b.create_invoice(sale())
            record = server.invoices.pop(invoice.bolt11)
            with pytest.raises(BackendUnavailable) as err:
                await b.invoice_status(invoice)
            seen: list[InvoiceStatus] = []
            watcher = asyncio.create_task(collect(b.watch(invoice), seen))
            polls = len(server.status_polls())
            await server.wait_for(lambda: len(server.status_polls()) >= polls + 2)
            assert not watcher.done()
            server.invoices[invoice.bolt11] = dict(record, status="PAID")
            await watcher
            await b.aclose()
        assert err.value.code == "IBEX_ERROR" and err.value.retryable
        assert seen == [InvoiceStatus.PAID]

    run(scenario)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("json_body", [False, True])
def test_unauthorized_key_gives_a_clear_message_without_the_key(json_body, caplog):
    wrong_key = "fk_wrong_key_do_not_leak_42"

    async def scenario():
        server = MiniFlash()
        server.faults.unauthorized_json = json_body
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username=None, api_key=wrong_key)
            with pytest.raises(BackendUnauthorized) as err:
                await b.create_invoice(sale())
            health = await b.health()
            text = repr(b)
            await b.aclose()
        return err.value, health, text

    caplog.set_level(logging.DEBUG)
    error, health, text = run(scenario)
    assert "API key" in error.message and "401" in error.message
    assert ("invalid API key" in error.message) == json_body
    assert not health.ok
    for shown in (error.message, str(error), health.detail, text, caplog.text):
        assert wrong_key not in shown


def test_key_limited_read_honours_retry_after():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username=None, api_key=API_KEY)
            server.faults.rate_limit_reads, server.faults.retry_after_s = 1, 0.2
            assert (await b.health()).ok  # `me` (keyed): limited once, retried after 0.2 s
            other = backend(http_url, ws_url, username=None, api_key=API_KEY)
            server.faults.rate_limit_reads, server.faults.retry_after_s = 1, 60
            health = await other.health()  # too long to wait: reported
            await b.aclose()
            await other.aclose()
        polls = [t for t, op, _ in server.requests if op == "MeWallets"]
        assert polls[1] - polls[0] >= 0.2
        assert not health.ok and "60 s" in health.detail

    run(scenario)


def test_key_limited_creation_is_not_retried():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username=None, api_key=API_KEY)
            await b.health()
            server.faults.rate_limit_mutations = 1
            with pytest.raises(BackendRateLimited) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert server.mutations_received == 1
        assert err.value.code == "TOO_MANY_REQUESTS"

    run(scenario)


def test_unavailable_read_is_retried_but_creation_is_not():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            server.faults.http_503_reads = 2
            rate = await b.display_rate("USD")  # third attempt succeeds
            server.faults.http_503_mutations = 1
            with pytest.raises(BackendUnavailable) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert rate.minor_per_sat == Decimal("0.1")
        assert server.mutations_received == 1 and err.value.code == "outcome_unknown"

    run(scenario)


def test_lost_creation_answer_is_not_resent():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, timeout_s=0.3)
            await b.display_rate("USD")  # warm the wallet-independent path
            server.faults.hang_mutations = True
            with pytest.raises(BackendUnavailable) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert err.value.code == "outcome_unknown" and "Not re-sent" in err.value.message
        assert server.mutations_received == 1

    run(scenario)


def test_unreachable_backend_is_unavailable_not_sent():
    async def scenario():
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        b = backend(f"http://127.0.0.1:{port}/graphql", None)
        with pytest.raises(BackendUnavailable) as err:
            await b.create_invoice(sale())
        await b.aclose()
        return err.value

    error = run(scenario)
    assert error.code == "not_sent"


def test_payload_errors_are_surfaced():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            server.faults.payload_error = "Amount exceeds the recipient's limit"
            with pytest.raises(BackendRejected) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert "Amount exceeds the recipient's limit" in err.value.message
        assert err.value.code == "INVALID_INPUT"

    run(scenario)


def test_invoice_whose_hash_mismatches_is_refused():
    async def scenario():
        server = MiniFlash()
        server.faults.wrong_hash = True
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            with pytest.raises(BackendProtocolError) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert err.value.code == "bad_invoice:hash_mismatch"

    run(scenario)


def test_invoice_for_another_network_is_refused():
    async def scenario():
        server = MiniFlash(network="mainnet")
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)  # regtest terminal
            with pytest.raises(BackendProtocolError) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert err.value.code == "bad_invoice:wrong_network"

    run(scenario)


def test_implausibly_priced_usd_invoice_is_refused():
    async def scenario():
        server = MiniFlash()
        server.faults.price_factor = Decimal("0.5")  # Flash-side pricing accident
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url)
            with pytest.raises(BackendProtocolError) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert err.value.code == "implausible_amount"

    run(scenario)


def test_unknown_username_is_rejected():
    async def scenario():
        server = MiniFlash()
        async with serving(server) as (http_url, ws_url):
            b = backend(http_url, ws_url, username="nobody")
            with pytest.raises(BackendError) as err:
                await b.create_invoice(sale())
            await b.aclose()
        assert "nobody" in err.value.message

    run(scenario)


def test_configuration_is_validated():
    with pytest.raises(ValueError, match="https"):
        FlashBackend("http://api.flashapp.me/graphql", None, username="m")
    with pytest.raises(ValueError, match="username"):
        FlashBackend("https://api.flashapp.me/graphql", None)
    with pytest.raises(ValueError, match="wallet_currency"):
        FlashBackend("https://api.flashapp.me/graphql", None, username="m", wallet_currency="EUR")
    b = FlashBackend("https://api.x.test/graphql", "wss://ws.x.test/graphql", api_key=API_KEY)
    assert API_KEY not in repr(b) and b.uses_websocket  # anonymous socket
    asyncio.run(b.aclose())


# ----------------------------------------------------------------------------- properties


@given(base=st.integers(min_value=1, max_value=2**53 - 1), offset=st.integers(0, 20))
def test_price_is_base_over_ten_to_the_offset_exactly(base, offset):
    # Property: the parsed price equals base / 10^offset with no float rounding.
    value = flash_mod._price_value({"base": base, "offset": offset})
    assert Fraction(value) == Fraction(base, 10**offset)


EXPECTED_BY_CODE = {
    "TOO_MANY_REQUESTS": BackendRateLimited,  # the API key's limit
    "TOO_MANY_REQUEST": BackendRateLimited,  # the account's invoice limit
    "NOT_AUTHENTICATED": BackendUnauthorized,
    "NOT_AUTHORIZED": BackendUnauthorized,
    "INTERNAL_SERVER_ERROR": BackendUnavailable,
    "IBEX_ERROR": BackendUnavailable,
    "DB_ERROR": BackendUnavailable,
    "GRAPHQL_VALIDATION_FAILED": BackendProtocolError,
    "INVALID_INPUT": BackendRejected,
    "NOT_FOUND": BackendRejected,
    None: BackendUnavailable,  # a resolver that threw without a code: not a definite refusal
}


@given(code=st.sampled_from(sorted(EXPECTED_BY_CODE, key=str)),
       where=st.sampled_from(["top", "extensions"]),
       retry=st.floats(min_value=0, max_value=1e6, allow_nan=False))  # fmt: skip
def test_top_level_error_codes_map_to_typed_errors(code, where, retry):
    # Property: each code maps to exactly one typed error wherever Flash puts it (top level from
    # formatError, `extensions` from the key limiter); rate limits carry their delay.
    entry: dict[str, Any] = {"message": "m", "locations": [], "path": ["op"]}
    extensions: dict[str, Any] = {"retryAfterSeconds": retry}
    if code is not None and where == "top":
        entry["code"] = code
    elif code is not None:
        extensions["code"] = code
    entry["extensions"] = extensions
    error = flash_errors.top_level_error(flash_errors.parse_errors([entry], "Op"), "Op")
    assert type(error) is EXPECTED_BY_CODE[code]
    if code == "TOO_MANY_REQUESTS":
        assert error.retry_after_s == retry
    if code == "TOO_MANY_REQUEST":
        assert error.retry_after_s == 300  # no retry time given: the block's length


@given(st.one_of(st.text(), st.none(), st.integers(), st.lists(st.text()),
                 st.dictionaries(st.text(), st.text())))
def test_unknown_status_values_are_protocol_errors(raw):
    # Property: only PENDING/PAID/EXPIRED are statuses; anything else is refused, never guessed.
    if raw in ("PENDING", "PAID", "EXPIRED"):
        assert flash_status.status_value(raw).name == raw
    else:
        with pytest.raises(BackendProtocolError):
            flash_status.status_value(raw)


# ----------------------------------------------------------------------------- the project sandbox
# The same client against `terminal.sandbox` (graphql-core executing Flash's schema, its own
# graphql-transport-ws server, its fault injection), started once for these tests.


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from terminal.sandbox.server import SandboxThread

    with SandboxThread(tmp_path_factory.mktemp("flash-sandbox")) as sb:
        yield sb


@pytest.fixture
def sb(sandbox):
    sandbox.call(sandbox.faults.reset)
    sandbox.reset_limits()
    yield sandbox
    sandbox.call(sandbox.faults.reset)


def sandbox_backend(sb: Any, **kwargs: Any) -> FlashBackend:
    kwargs.setdefault("username", sb.username)
    return backend(sb.http_url, sb.ws_url, **kwargs)


async def pay(sb: Any, invoice: Any) -> None:
    # SandboxThread hops onto the sandbox's own loop; keep ours free meanwhile.
    assert await asyncio.to_thread(sb.pay_invoice, invoice.bolt11) == "PAID"


def test_sandbox_receive_only_invoice_is_watched_to_paid(sb):
    async def scenario():
        b = sandbox_backend(sb)
        invoice = await b.create_invoice(sale(1250, key="sb-1"))
        statuses = b.watch(invoice)
        first = await anext(statuses)
        await pay(sb, invoice)
        rest = [s async for s in statuses]
        health = await b.health()
        await b.aclose()
        return invoice, [first, *rest], health

    invoice, seen, health = run(scenario)
    decoded = bolt11.decode(invoice.bolt11)
    assert invoice.amount_msat == decoded.amount_msat > 0
    assert invoice.payment_hash == decoded.payment_hash
    assert seen == [InvoiceStatus.PENDING, InvoiceStatus.PAID]
    assert health.ok


def test_sandbox_subscription_pushes_paid(sb):
    # The socket alone: the sandbox pushes the current status on subscribe, then the change.
    from terminal.adapters.backends import flash_documents as docs
    from terminal.adapters.backends import flash_ws

    async def scenario():
        b = sandbox_backend(sb)
        invoice = await b.create_invoice(sale(300, key="sb-ws"))
        await b.aclose()
        pushes = flash_ws.subscribe(
            sb.ws_url,
            docs.LN_INVOICE_PAYMENT_STATUS_SUBSCRIPTION,
            {"input": {"paymentRequest": invoice.bolt11}},
            operation_name="LnInvoicePaymentStatusSubscription",
        )
        first = await anext(pushes)
        await pay(sb, invoice)
        second = await anext(pushes)
        await pushes.aclose()
        return first, second

    first, second = run(scenario)
    assert first["data"]["lnInvoicePaymentStatus"]["status"] == "PENDING"
    assert second["data"]["lnInvoicePaymentStatus"]["status"] == "PAID"


def test_sandbox_api_key_mode(sb):
    async def scenario():
        b = sandbox_backend(sb, username=None, api_key=sb.api_key)
        invoice = await b.create_invoice(sale(157_00, currency="JMD", key="sb-key"))
        status = await b.invoice_status(invoice)
        rate = await b.display_rate("JMD")
        await b.aclose()
        return invoice, status, rate, repr(b)

    invoice, status, rate, text = run(scenario)
    assert status is InvoiceStatus.PENDING
    # Within the plausibility tolerance of what the sandbox's own JMD rate says.
    expected = Decimal(157_00) / rate.minor_per_sat * 1000
    assert abs(invoice.amount_msat - expected) <= expected * Decimal("0.05") + 1000
    assert sb.api_key not in text


def test_sandbox_dropped_sockets_fall_back_to_polling(sb):
    sb.set_faults(ws_drop_next=1000, ws_drop_after_messages=1)  # every socket dies after ack

    async def scenario():
        b = sandbox_backend(sb, safety_poll_s=60)
        invoice = await b.create_invoice(sale(500, key="sb-drop"))
        statuses = b.watch(invoice)
        first = await anext(statuses)
        await pay(sb, invoice)
        rest = [s async for s in statuses]
        await b.aclose()
        return [first, *rest]

    assert run(scenario) == [InvoiceStatus.PENDING, InvoiceStatus.PAID]


def test_sandbox_silent_subscription_is_caught_by_the_safety_poll(sb):
    sb.set_faults(ws_silent=True)  # connected, acked, never pushes

    async def scenario():
        b = sandbox_backend(sb, poll_interval_s=60, safety_poll_s=0.1)
        invoice = await b.create_invoice(sale(500, key="sb-silent"))
        statuses = b.watch(invoice)
        first = await anext(statuses)
        await pay(sb, invoice)
        rest = [s async for s in statuses]
        await b.aclose()
        return [first, *rest]

    assert run(scenario) == [InvoiceStatus.PENDING, InvoiceStatus.PAID]


def test_sandbox_key_limited_read_is_retried_after_the_delay(sb):
    async def scenario():
        b = sandbox_backend(sb, username=None, api_key=sb.api_key)
        sb.set_faults(rate_limit_next=1, retry_after_s=0.2)
        started = time.monotonic()
        health = await b.health()  # `me` carries the key: limited once, then retried
        elapsed = time.monotonic() - started
        await b.aclose()
        return health, elapsed

    health, elapsed = run(scenario)
    assert health.ok and elapsed >= 0.2


def test_sandbox_errors_are_typed(sb):
    async def scenario():
        # No plausibility price read: the mutation is then the only request of a creation.
        b = sandbox_backend(sb, amount_tolerance=None)
        sb.set_faults(invoice_create_error_next=1)
        with pytest.raises(BackendRejected) as rejected:
            await b.create_invoice(sale(100, key="sb-err"))
        sb.set_faults(server_error_next={"graphql": 1})
        rate = await b.display_rate("USD")  # one 502 page, then retried
        sb.set_faults(server_error_next={"graphql": 1})
        with pytest.raises(BackendUnavailable):
            await b.create_invoice(sale(100, key="sb-502"))  # creation: never re-sent
        await b.aclose()
        bad = sandbox_backend(sb, username=None, api_key="fk_not_the_key")
        with pytest.raises(BackendUnauthorized) as unauthorized:
            await bad.create_invoice(sale(100, key="sb-401"))
        await bad.aclose()
        nobody = sandbox_backend(sb, username="nobody-here")
        with pytest.raises(BackendRejected) as unknown:
            await nobody.create_invoice(sale(100, key="sb-404"))
        await nobody.aclose()
        return rejected.value, rate, unauthorized.value, unknown.value

    rejected, rate, unauthorized, unknown = run(scenario)
    assert "Account is inactive." in rejected.message and rejected.code == "INVALID_INPUT"
    assert rate.minor_per_sat > 0
    assert "invalid API key" in unauthorized.message
    assert "fk_not_the_key" not in unauthorized.message
    assert "nobody-here" in unknown.message and unknown.code == "NOT_FOUND"
