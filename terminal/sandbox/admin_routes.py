"""Sandbox-only endpoints: the phone-wallet stand-in, card registration, fault injection."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import SandboxCore, SandboxError
from .faults import FaultsError
from .http_faults import apply_http_faults

ERROR_STATUS = {"NOT_FOUND": 404, "ALREADY_PAID": 409, "EXPIRED": 409}


def _core(request: Request) -> SandboxCore:
    return request.app.state.core


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _sandbox_error(exc: SandboxError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "code": exc.code},
                        status_code=ERROR_STATUS.get(exc.code or "", 400))


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def pay(request: Request) -> Response:
    """POST /sandbox/pay {"paymentRequest"}: a customer's phone wallet pays the invoice."""
    core = _core(request)
    faulted = await apply_http_faults(core.faults, "sandbox_pay")
    if faulted is not None:
        return faulted
    body = await _json_object(request)
    if body is None or not isinstance(body.get("paymentRequest"), str):
        return _error("expected JSON {\"paymentRequest\": \"lnbcrt…\"}")
    try:
        status = core.pay(body["paymentRequest"])
    except SandboxError as exc:
        return _sandbox_error(exc)
    record = core.find_invoice(body["paymentRequest"])
    assert record is not None
    return JSONResponse({"status": status.value, "paymentHash": record.payment_hash})


async def customer_wallet(request: Request) -> Response:
    """GET /sandbox/wallets/{name}: the balance of the wallet behind `name@<sandbox>` (made on
    first use, like the address itself)."""
    from .core import WithdrawRefused

    try:
        wallet = _core(request).customer_wallet(request.path_params["name"])
    except WithdrawRefused as exc:
        return _error(exc.reason)
    return JSONResponse({"name": wallet.name, "balance_msat": wallet.balance_msat})


async def expire(request: Request) -> Response:
    """POST /sandbox/expire {"paymentRequest"}: end an unpaid invoice now."""
    core = _core(request)
    body = await _json_object(request)
    if body is None or not isinstance(body.get("paymentRequest"), str):
        return _error("expected JSON {\"paymentRequest\": \"lnbcrt…\"}")
    record = core.find_invoice(body["paymentRequest"])
    if record is None:
        return _error("Unknown invoice: not issued by this sandbox", 404)
    try:
        core.expire_now(record)
    except SandboxError as exc:
        return _sandbox_error(exc)
    return JSONResponse({"status": "EXPIRED", "paymentHash": record.payment_hash})


async def purge(request: Request) -> Response:
    """POST /sandbox/purge {"paymentRequest"}: the provider forgets an expired invoice now (its
    status then reads EXPIRED, even if it was paid; the wallet's transaction stays)."""
    core = _core(request)
    body = await _json_object(request)
    if body is None or not isinstance(body.get("paymentRequest"), str):
        return _error("expected JSON {\"paymentRequest\": \"lnbcrt…\"}")
    record = core.find_invoice(body["paymentRequest"])
    if record is None:
        return _error("Unknown invoice (or already purged)", 404)
    try:
        core.purge_now(record)
    except SandboxError as exc:
        return _sandbox_error(exc)
    return JSONResponse({"purged": record.payment_hash})


async def create_api_key(request: Request) -> Response:
    """POST /sandbox/api-keys {"scopes": ["read:user", …], "rate_limit": 120?}: a new key with
    exactly these scopes, as the merchant makes one in the Flash app → {"api_key"}."""
    core = _core(request)
    body = await _json_object(request)
    scopes = body.get("scopes") if body else None
    rate = body.get("rate_limit") if body else None
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        return _error("expected JSON {\"scopes\": [\"read:user\", …]}")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
        return _error("rate_limit must be a positive integer")
    try:
        return JSONResponse({"api_key": core.create_api_key(scopes, rate)})
    except SandboxError as exc:
        return _sandbox_error(exc)


async def limits(request: Request) -> Response:
    """GET /sandbox/limits: the limits in force and what the account has used."""
    core = _core(request)
    return JSONResponse({"limits": dataclasses.asdict(core.limits), **core.limit_state()})


async def invoice(request: Request) -> Response:
    core = _core(request)
    record = core.state.invoices.get(request.path_params["payment_hash"].lower())
    if record is None:
        return _error("Unknown invoice", 404)
    return JSONResponse(core.invoice_state(record))


def card_options(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "pin": body.get("pin"),
        "pin_limit_sats": body.get("pin_limit_sats"),
        "per_tap_limit_sats": body.get("per_tap_limit_sats"),
        "enabled": bool(body.get("enabled", True)),
    }


async def register_card(request: Request) -> Response:
    """POST /sandbox/cards {uid, balance_sats, [pin, pin_limit_sats, per_tap_limit_sats,
    enabled]} → {card_id, uid, version, k0…k4, lnurlw_base, balance_msat}."""
    core = _core(request)
    body = await _json_object(request)
    if body is None:
        return _error("expected a JSON object")
    try:
        uid = bytes.fromhex(str(body.get("uid", "")))
        balance = int(body.get("balance_sats", 0))
        return JSONResponse(core.register_card(uid, balance, **card_options(body)))
    except (ValueError, TypeError):
        return _error("uid must be 14 hex characters and balance_sats an integer")
    except SandboxError as exc:
        return _sandbox_error(exc)


async def card(request: Request) -> Response:
    """GET /sandbox/cards/{card_id}: state; POST: change enabled/balance_msat/limits/pin."""
    core = _core(request)
    card_id = request.path_params["card_id"].lower()
    try:
        if request.method == "POST":
            body = await _json_object(request)
            if body is None:
                return _error("expected a JSON object")
            core.update_card(card_id, body)
        return JSONResponse(core.card_state(card_id))
    except SandboxError as exc:
        return _sandbox_error(exc)


async def faults(request: Request) -> Response:
    """GET: current faults; POST {name: value, …}: change some; DELETE: reset all."""
    core = _core(request)
    if request.method == "POST":
        body = await _json_object(request)
        if body is None:
            return _error("expected a JSON object")
        try:
            core.faults.update(body)
        except FaultsError as exc:
            return _error(str(exc))
    elif request.method == "DELETE":
        core.faults.reset()
    return JSONResponse(core.faults.as_dict())


async def info(request: Request) -> Response:
    """GET /sandbox/info: where things are (no secrets)."""
    core = _core(request)
    from .lightning import node_pubkey

    return JSONResponse({
        "network": core.network,
        "username": core.state.account.username,
        "graphql_http": f"{core.public_base}/graphql",
        "graphql_ws": core.public_base.replace("http://", "ws://", 1) + "/graphql",
        "lnurlw_base": core.lnurlw_base,
        "node_pubkey": node_pubkey(core.keys.node_key),
        "wallets": [
            {"id": w.id, "currency": w.currency, "balance": w.balance}
            for w in core.state.account.wallets
        ],
    })
