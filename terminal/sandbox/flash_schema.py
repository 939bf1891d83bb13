"""Flash's real public schema, executable: graphql-core `build_schema` plus sandbox resolvers.

Documents are parsed and validated against the very schema Flash serves, so a field Flash does
not have fails here with the same GraphQL validation error. Only what a terminal uses resolves;
anything else validates but answers null (or an error for non-null fields), as a partial backend.
Resolvers find the sandbox in `info.context` (a `RequestContext`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
)
from graphql.utilities import value_from_ast_untyped

from .core import InvoiceRecord, InvoiceStatus, SandboxCore, SandboxError
from .lightning import CURRENCIES, price_base
from .lightning import PRICE_OFFSET as OFFSET

SCHEMA_RESOURCE = "flash-schema.graphql"
USERNAME_MAX = 50


@dataclass
class RequestContext:
    core: SandboxCore
    authenticated: bool


def schema_sdl() -> str:
    return resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


# --- scalars: reject what Flash's scalars reject --------------------------------------------


def _sat_amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GraphQLError("Invalid value for SatAmount")
    return value


def _cent_amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GraphQLError("Invalid value for FractionalCentAmount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise GraphQLError("Invalid value for FractionalCentAmount") from None
    if not amount.is_finite():
        raise GraphQLError("Invalid value for FractionalCentAmount")
    return amount


def _minutes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GraphQLError("Invalid value for Minutes")
    return value


def _string(name: str, max_len: int | None = None) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or (max_len is not None and len(value) > max_len):
            raise GraphQLError(f"Invalid value for {name}")
        return value

    return parse


SCALAR_PARSERS: dict[str, Callable[[Any], Any]] = {
    "SatAmount": _sat_amount,
    "FractionalCentAmount": _cent_amount,
    "Minutes": _minutes,
    "Memo": _string("Memo"),
    "WalletId": _string("WalletId"),
    "LnPaymentRequest": _string("LnPaymentRequest"),
    "Username": _string("Username", USERNAME_MAX),
    "DisplayCurrency": _string("DisplayCurrency"),
    "Hex32Bytes": _string("Hex32Bytes"),
}


def _bind_scalar(scalar: GraphQLScalarType, parse: Callable[[Any], Any]) -> None:
    """Install `parse` for values and literals (graphql-core 3.2 and 3.3 names)."""

    def parse_literal(node: Any, variables: dict[str, Any] | None = None) -> Any:
        return parse(value_from_ast_untyped(node, variables))

    scalar.parse_value = parse  # type: ignore[method-assign,assignment]
    scalar.parse_literal = parse_literal  # type: ignore[method-assign]
    if hasattr(scalar, "coerce_input_value"):  # graphql-core >= 3.3
        scalar.coerce_input_value = parse
        scalar.coerce_input_literal = parse_literal


# --- output helpers -------------------------------------------------------------------------


def payload_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {"__typename": "GraphQLApplicationError", "message": message, "code": code,
            "path": None}


def not_authorized() -> GraphQLError:
    return GraphQLError("Not authorized", extensions={"code": "NOT_AUTHORIZED"})


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def _wallet_out(core: SandboxCore, wallet_id: str) -> dict[str, Any]:
    wallet = core.state.account.wallet(wallet_id)
    assert wallet is not None
    typename = {"BTC": "BTCWallet", "USD": "UsdWallet", "USDT": "UsdtWallet"}[wallet.currency]
    return {
        "__typename": typename,
        "id": wallet.id,
        "accountId": core.state.account.id,
        "walletCurrency": wallet.currency,
        "balance": wallet.balance,
        "isExternal": False,
        "pendingIncomingBalance": 0,
        "lnurlp": None,
        "transactions": None,
    }


def _invoice_out(record: InvoiceRecord) -> dict[str, Any]:
    return {
        "paymentHash": record.payment_hash,
        "paymentRequest": record.payment_request,
        "paymentSecret": record.payment_secret,
        "satoshis": record.satoshis,  # null for USD invoices, as Flash answers
    }


def _price_out(core: SandboxCore, currency: str) -> dict[str, Any]:
    now = int(core.clock())
    rates = core.rates
    return {
        "id": f"{currency}-{now}",
        "timestamp": now,
        "denominatorCurrency": currency,
        "btcSatPrice": {"base": price_base(rates.minor_per_sat(currency)), "offset": OFFSET,
                        "currencyUnit": f"{currency}CENT"},
        "usdCentPrice": {"base": price_base(rates.minor_per_usd_cent(currency)),
                         "offset": OFFSET, "currencyUnit": f"{currency}CENT"},
    }


# --- queries --------------------------------------------------------------------------------


def resolve_account_default_wallet(
    _root: Any, info: GraphQLResolveInfo, username: str, walletCurrency: str | None = None
) -> dict[str, Any]:
    core = _ctx(info).core
    account = core.state.account
    if username.lower() != account.username.lower():
        raise GraphQLError(
            f"Account does not exist for username {username}",
            extensions={"code": "NOT_FOUND"},
        )
    wallet = (
        account.wallet_in(walletCurrency) if walletCurrency else account.wallet(
            account.default_wallet_id)
    )
    if wallet is None:
        raise GraphQLError(
            f"Account has no {walletCurrency} wallet", extensions={"code": "NOT_FOUND"}
        )
    return {"id": wallet.id, "walletCurrency": wallet.currency, "lnurlp": None}


def resolve_me(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx = _ctx(info)
    if not ctx.authenticated:
        raise not_authorized()
    account = ctx.core.state.account
    return {
        "id": account.id,
        "username": account.username,
        "language": "",
        "totpEnabled": False,
        "createdAt": 0,
        "defaultAccount": {
            "__typename": "ConsumerAccount",
            "id": account.id,
            "defaultWalletId": account.default_wallet_id,
            "displayCurrency": account.display_currency,
            "level": "TWO",
            "wallets": [_wallet_out(ctx.core, w.id) for w in account.wallets],
            "realtimePrice": _price_out(ctx.core, account.display_currency),
        },
    }


def resolve_realtime_price(
    _root: Any, info: GraphQLResolveInfo, currency: str = "USD"
) -> dict[str, Any]:
    core = _ctx(info).core
    currency = currency.upper()
    if not core.rates.supports(currency):
        raise GraphQLError(
            f"Price not available for currency {currency}",
            extensions={"code": "PRICE_NOT_AVAILABLE"},
        )
    return _price_out(core, currency)


def resolve_currency_list(_root: Any, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    core = _ctx(info).core
    return [
        {"id": c.id, "symbol": c.symbol, "name": c.name, "flag": c.flag,
         "fractionDigits": c.fraction_digits}
        for c in CURRENCIES.values()
        if core.rates.supports(c.id)
    ]


def _status_payload(core: SandboxCore, payment_request: str) -> dict[str, Any]:
    record = core.find_invoice(payment_request)
    if record is None:
        return {"status": None, "errors": [payload_error("Invoice not found", "NOT_FOUND")]}
    return {"status": core.status(record).value, "errors": []}


def resolve_payment_status(
    _root: Any, info: GraphQLResolveInfo, input: dict[str, Any]
) -> dict[str, Any]:
    return _status_payload(_ctx(info).core, input["paymentRequest"])


# --- mutations ------------------------------------------------------------------------------


def _create(
    info: GraphQLResolveInfo, input: dict[str, Any], *, wallet_key: str, usd: bool, auth: bool
) -> dict[str, Any]:
    ctx = _ctx(info)
    if auth and not ctx.authenticated:
        raise not_authorized()
    amount = input["amount"]
    try:
        record = ctx.core.create_invoice(
            input[wallet_key],
            usd_cents=amount if usd else None,
            sats=None if usd else amount,
            memo=input.get("memo"),
            expires_in_min=input.get("expiresIn"),
        )
    except SandboxError as exc:
        return {"errors": [payload_error(exc.message, exc.code)], "invoice": None}
    return {"errors": [], "invoice": _invoice_out(record)}


def resolve_send(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = _ctx(info)
    if not ctx.authenticated:
        raise not_authorized()
    try:
        status = ctx.core.send(
            input["walletId"], input["paymentRequest"], input.get("idempotencyKey")
        )
    except SandboxError as exc:
        return {"status": "FAILURE", "errors": [payload_error(exc.message, exc.code)]}
    return {"status": status, "errors": []}


# --- subscription ---------------------------------------------------------------------------


async def subscribe_payment_status(
    _root: Any, info: GraphQLResolveInfo, input: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """PENDING first, then PAID or EXPIRED; the stream ends on a final status."""
    core = _ctx(info).core
    record = core.find_invoice(input["paymentRequest"])
    if record is None:
        yield {"status": None, "errors": [payload_error("Invoice not found", "NOT_FOUND")]}
        return
    queue = core.watch(record.payment_hash)
    try:
        status = core.status(record)
        yield {"status": status.value, "errors": []}
        if core.faults.ws_silent:
            await asyncio.Event().wait()  # updates lost: the client must poll
        while status is InvoiceStatus.PENDING:
            remaining = max(record.expires_at - core.clock(), 0.0)
            try:
                await asyncio.wait_for(queue.get(), timeout=math.ceil(remaining * 1000) / 1000)
            except TimeoutError:
                pass
            status = core.status(record)
            if status is not InvoiceStatus.PENDING:
                yield {"status": status.value, "errors": []}
    finally:
        core.unwatch(record.payment_hash, queue)


# --- assembly -------------------------------------------------------------------------------


def _type_resolver(name: str) -> Callable[..., str]:
    def resolve(value: Any, _info: Any, _type: Any) -> str:
        return value.get("__typename", name)

    return resolve


@cache
def flash_schema() -> GraphQLSchema:
    """The real Flash schema with the sandbox's resolvers bound (built once per process)."""
    schema = build_schema(schema_sdl())
    for name, parse in SCALAR_PARSERS.items():
        scalar = schema.get_type(name)
        assert isinstance(scalar, GraphQLScalarType), name
        _bind_scalar(scalar, parse)
    for iface, default in (("Wallet", "UsdWallet"), ("Account", "ConsumerAccount"),
                           ("Error", "GraphQLApplicationError")):
        schema.get_type(iface).resolve_type = _type_resolver(default)  # type: ignore[union-attr]

    query = schema.query_type.fields  # type: ignore[union-attr]
    query["accountDefaultWallet"].resolve = resolve_account_default_wallet
    query["me"].resolve = resolve_me
    query["realtimePrice"].resolve = resolve_realtime_price
    query["currencyList"].resolve = resolve_currency_list
    query["lnInvoicePaymentStatus"].resolve = resolve_payment_status

    mutation = schema.mutation_type.fields  # type: ignore[union-attr]
    mutation["lnUsdInvoiceCreateOnBehalfOfRecipient"].resolve = (
        lambda _r, info, input: _create(info, input, wallet_key="recipientWalletId", usd=True,
                                        auth=False))
    mutation["lnUsdInvoiceCreate"].resolve = (
        lambda _r, info, input: _create(info, input, wallet_key="walletId", usd=True, auth=True))
    mutation["lnInvoiceCreateOnBehalfOfRecipient"].resolve = (
        lambda _r, info, input: _create(info, input, wallet_key="recipientWalletId", usd=False,
                                        auth=False))
    mutation["lnInvoiceCreate"].resolve = (
        lambda _r, info, input: _create(info, input, wallet_key="walletId", usd=False, auth=True))
    mutation["lnInvoicePaymentSend"].resolve = resolve_send

    subscription = schema.subscription_type.fields  # type: ignore[union-attr]
    subscription["lnInvoicePaymentStatus"].subscribe = subscribe_payment_status
    subscription["lnInvoicePaymentStatus"].resolve = lambda event, _info, **_kw: event
    return schema
