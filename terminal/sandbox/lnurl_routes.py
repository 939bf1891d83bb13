"""The Boltcard issuer's LNURL-withdraw endpoints (`/ln`, `/ln/callback`), boltcard-service style,
each card's LNURL-pay (`/lnurlp/card/{card_id}`: the LUD-19 `payLink` its taps carry), and the
customers' Lightning Addresses (`/.well-known/lnurlp/{name}`, LUD-16: a wallet per name, made on
first use, where a refund to `name@host:port` lands).

The counter is consumed at the first GET and k1 at the first callback; errors are
`{"status":"ERROR","reason":…}` with HTTP 200 (or 400, BTCPay-like, by fault setting).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .core import SandboxCore, WithdrawRefused
from .http_faults import apply_http_faults
from .issuer_keys import TapRejected


def lnurl_error(core: SandboxCore, reason: str) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "reason": reason},
                        status_code=core.faults.lnurl_error_http_status)


async def withdraw_request(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    faulted = await apply_http_faults(core.faults, "ln")
    if faulted is not None:
        return faulted
    p = request.query_params.getlist("p")
    c = request.query_params.getlist("c")
    if len(p) != 1 or len(c) != 1:
        return lnurl_error(core, "Missing or repeated p/c parameters")
    try:
        return JSONResponse(core.withdraw_request(p[0], c[0]))
    except TapRejected as exc:
        return lnurl_error(core, exc.reason)


async def withdraw_callback(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    faulted = await apply_http_faults(core.faults, "ln_callback")
    if faulted is not None:
        return faulted
    k1 = request.query_params.get("k1")
    pr = request.query_params.get("pr")
    if not k1 or not pr:
        return lnurl_error(core, "Missing k1 or pr parameter")
    try:
        card, record = core.withdraw_check(k1, pr, request.query_params.get("pin"))
    except WithdrawRefused as exc:
        return lnurl_error(core, exc.reason)
    delay = core.faults.withdraw_pay_delay_s
    if delay is None:
        core.withdraw_pay(card, record)
        return JSONResponse({"status": "OK"})
    # BTCPay-like: the payout is still in flight when the callback answers.
    loop = asyncio.get_running_loop()
    loop.call_later(delay, core.withdraw_pay, card, record)
    return JSONResponse({"status": "OK", "reason": "payment pending"})


async def card_pay_request(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    try:
        return JSONResponse(core.card_pay_request(request.path_params["card_id"]))
    except WithdrawRefused as exc:
        return lnurl_error(core, exc.reason)


async def card_pay_callback(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    amounts = request.query_params.getlist("amount")
    if len(amounts) != 1 or not amounts[0].isascii() or not amounts[0].isdigit():
        return lnurl_error(core, "Missing or malformed amount (msat)")
    try:
        return JSONResponse(core.card_pay_invoice(request.path_params["card_id"],
                                                  int(amounts[0])))
    except WithdrawRefused as exc:
        return lnurl_error(core, exc.reason)


async def address_pay_request(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    try:
        return JSONResponse(core.address_pay_request(request.path_params["name"]))
    except WithdrawRefused as exc:
        return lnurl_error(core, exc.reason)


async def address_pay_callback(request: Request) -> Response:
    core: SandboxCore = request.app.state.core
    amounts = request.query_params.getlist("amount")
    if len(amounts) != 1 or not amounts[0].isascii() or not amounts[0].isdigit():
        return lnurl_error(core, "Missing or malformed amount (msat)")
    try:
        return JSONResponse(core.address_invoice(request.path_params["name"], int(amounts[0])))
    except WithdrawRefused as exc:
        return lnurl_error(core, exc.reason)
