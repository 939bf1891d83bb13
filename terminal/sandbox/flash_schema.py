"""Flash's real public schema, executable: graphql-core `build_schema` plus sandbox resolvers.

Documents are parsed and validated against the very schema Flash serves, so a field Flash does
not have fails here with the same GraphQL validation error. Only what a terminal uses resolves;
anything else validates but answers null (or an error for non-null fields), as a partial backend.
Resolvers find the sandbox and the caller's credential in `info.context` (a `RequestContext`).

Behaviour follows lnflash/flash at 892346e:
- Input scalars (Memo, FractionalCentAmount, Minutes, WalletId) do not throw on a bad value: they
  hand the resolver an error, which answers it as a payload error WITHOUT a code
  ("Memo is too long", more than 639 UTF-8 bytes).
- Authorisation is graphql-shield's: an authed root field asked anonymously → "Not authorized"
  (NOT_AUTHORIZED); asked with an API key lacking the scope (scope-map.ts; write:X implies read:X)
  → "API key missing required scope: read:user" with no code. Nested wallet/transaction fields
  of `me` need their own scopes.
- Both BTC invoice mutations answer "Flash does not support BTC wallets." (a resolver error, no
  code; the payload is non-null, so `data` is null).
- `lnInvoicePaymentStatus` asks the provider: an unknown invoice throws IBEX_ERROR (data null),
  an unknown one past its BOLT11 expiry (purged) reads EXPIRED.
- `transactions` serve at most 100 rows, newest first (`last`: oldest), ignore cursors (which
  must look like Mongo ids), and give Lightning rows `memo: null` and an empty payment hash;
  `transactionDetails` has the memo, hash and invoice.
- The subscription pushes the current status, PAID when the provider's webhook arrives, and
  EXPIRED at expiry + 1 s even after PAID; it never completes.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

from .core import (
    IBEX_ERROR_MESSAGE,
    MEMO_MAX_BYTES,
    InvoiceRecord,
    InvoiceStatus,
    SandboxCore,
    SandboxError,
    has_scope,
)
from .lightning import CURRENCIES, price_base
from .lightning import PRICE_OFFSET as OFFSET
from .store import TransactionRecord

SCHEMA_RESOURCE = "flash-schema.graphql"
USERNAME_MAX = 50
MAX_CENTS = Decimal(10_000_000_000_000)
MAX_CONNECTION = 100  # DEFAULT_MAX_CONNECTION_LIMIT
CURSOR_RE = re.compile(r"^[A-Fa-f0-9]{24}$")
BTC_UNSUPPORTED = "Flash does not support BTC wallets."
# Root fields that need a caller (graphql-shield isAuthenticated) and the scope an API key needs.
AUTHED_FIELDS = {
    "me": "read:user",
    "transactionDetails": "read:transactions",
    "lnUsdInvoiceCreate": "write:wallet",
    "lnInvoiceCreate": "write:wallet",
    "lnInvoicePaymentSend": "write:wallet",
}
NESTED_SCOPES = {
    ("ConsumerAccount", "wallets"): "read:wallet",
    ("ConsumerAccount", "transactions"): "read:transactions",
    ("UsdWallet", "balance"): "read:wallet",
    ("UsdWallet", "transactions"): "read:transactions",
    ("UsdtWallet", "balance"): "read:wallet",
    ("UsdtWallet", "transactions"): "read:transactions",
}


@dataclass(frozen=True)
class Caller:
    """Who sent the request: anonymous, a session, or an API key with its scopes."""

    kind: str = "anon"  # anon | session | api_key
    scopes: tuple[str, ...] = ()
    key_id: str = ""

    @property
    def authenticated(self) -> bool:
        return self.kind != "anon"


ANONYMOUS = Caller()
SESSION = Caller("session")


@dataclass
class RequestContext:
    core: SandboxCore
    caller: Caller = field(default=ANONYMOUS)

    @property
    def authenticated(self) -> bool:
        return self.caller.authenticated


@dataclass(frozen=True)
class InputError:
    """What Flash's input scalars hand a resolver instead of throwing (InputValidationError)."""

    message: str


def schema_sdl() -> str:
    return resources.files(__package__).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


# --- scalars: accept and refuse what Flash's scalars do --------------------------------------


def _sat_amount(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return InputError("Invalid value for SatAmount")
    return value


def _cent_amount(value: Any) -> Any:
    # cent-amount-fraction.ts: a number or a numeric string, finite, within ±MAX_CENTS.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return InputError("Invalid type for FractionalCentAmount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return InputError("Invalid value for FractionalCentAmount")
    if not amount.is_finite():
        return InputError("Invalid value for FractionalCentAmount")
    if abs(amount) > MAX_CENTS:
        return InputError("Value out of range for FractionalCentAmount")
    return amount


def _minutes(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return InputError("Invalid type for Minutes")
    try:
        minutes = int(value)
    except ValueError:
        return InputError("Invalid value for Minutes")
    return minutes if minutes >= 0 else InputError("Invalid value for Minutes")


def _memo(value: Any) -> Any:
    if not isinstance(value, str):
        return InputError("Invalid type for Memo")
    if len(value.encode("utf-8")) > MEMO_MAX_BYTES:
        return InputError("Memo is too long")
    return value


def _wallet_id(value: Any) -> Any:
    if not isinstance(value, str):
        return InputError("Invalid type for WalletId")
    if not 0 < len(value) <= 64:
        return InputError("Invalid value for WalletId")
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
    "Memo": _memo,
    "WalletId": _wallet_id,
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


def ibex_error() -> GraphQLError:
    return GraphQLError(IBEX_ERROR_MESSAGE, extensions={"code": "IBEX_ERROR"})


def _error(exc: SandboxError) -> GraphQLError:
    return GraphQLError(exc.message, extensions={"code": exc.code} if exc.code else None)


def _ctx(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def guard(info: GraphQLResolveInfo, scope: str | None) -> None:
    """graphql-shield: `and(isAuthenticated, scopedApiKeyAccess)` for an authed field."""
    caller = _ctx(info).caller
    if not caller.authenticated:
        raise not_authorized()
    if scope is not None and caller.kind == "api_key" and not has_scope(list(caller.scopes),
                                                                       scope):
        raise GraphQLError(f"API key missing required scope: {scope}")


def nested_guard(info: GraphQLResolveInfo, scope: str) -> None:
    """scopedApiKeyTypeField: only API-key callers are checked (the root field gated the rest)."""
    caller = _ctx(info).caller
    if caller.kind == "api_key" and not has_scope(list(caller.scopes), scope):
        raise GraphQLError(f"API key missing required scope: {scope}")


def _first_input_error(values: dict[str, Any]) -> InputError | None:
    return next((v for v in values.values() if isinstance(v, InputError)), None)


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


# --- transactions ---------------------------------------------------------------------------


def _transaction_out(tx: TransactionRecord) -> dict[str, Any]:
    """A row as get-transactions-for-wallet.ts builds it from IBEX's list: no memo, no hash."""
    send = tx.type_id in (2, 4, 10, 12)
    amount = Decimal(tx.amount)
    signed = -amount if send else amount
    return {
        "id": tx.id,
        "createdAt": int(tx.created_at),
        "direction": "SEND" if send else "RECEIVE",
        # Flash passes IBEX's amount (dollars) through as the settlement amount.
        "settlementAmount": float(signed),
        "settlementCurrency": "USD",
        "settlementDisplayAmount": str(signed),
        "settlementDisplayCurrency": "USD",
        "settlementDisplayFee": "0",
        "settlementFee": 0,
        "settlementPrice": {"base": 0, "offset": 0, "currencyUnit": "USDCENT",
                            "formattedAmount": "0"},
        "status": getattr(tx, "status", "SUCCESS"),
        "memo": None,
        "initiationVia": {"__typename": "InitiationViaLn", "paymentHash": ""},
        "settlementVia": {"__typename": "SettlementViaLn", "preImage": None,
                          "paymentSecret": None},
    }


def _connection(info: GraphQLResolveInfo, wallet_ids: set[str], args: dict[str, Any]
                ) -> dict[str, Any]:
    """checkedConnectionArgs + toIbexPaginationArgs + connectionFromPaginatedArray."""
    first, last = args.get("first"), args.get("last")
    after, before = args.get("after"), args.get("before")
    for name, value in (("first", first), ("last", last)):
        if value is not None and value > MAX_CONNECTION:
            raise GraphQLError(f'Requesting {value} records on this connection exceeds the '
                               f'"{name}" limit of {MAX_CONNECTION} records.',
                               extensions={"code": "INVALID_INPUT"})
        if value is not None and value <= 0:
            raise GraphQLError(f'Argument "{name}" must be greater than 0',
                               extensions={"code": "INVALID_INPUT"})
    for name, value in (("after", after), ("before", before)):
        if value and not CURSOR_RE.match(value):
            raise GraphQLError(f'Argument "{name}" must be a valid cursor',
                               extensions={"code": "INVALID_INPUT"})
    rows = _ctx(info).core.wallet_transactions(wallet_ids)
    if first is None and last is None:
        first = MAX_CONNECTION
    # IBEX sorts newest first for `first`, oldest first for `last`.
    rows = rows[:first] if first is not None else list(reversed(rows))[:last]
    edges = [{"cursor": tx.id, "node": _transaction_out(tx)} for tx in rows]
    return {
        "edges": edges,
        "pageInfo": {
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": False,
            "hasPreviousPage": False,
        },
    }


def resolve_account_transactions(source: dict[str, Any], info: GraphQLResolveInfo,
                                 **args: Any) -> dict[str, Any]:
    nested_guard(info, NESTED_SCOPES[("ConsumerAccount", "transactions")])
    account = _ctx(info).core.state.account
    requested = args.get("walletIds")
    wallet_ids = {w.id for w in account.wallets}
    if requested:
        wallet_ids &= {w for w in requested if isinstance(w, str)}
    return _connection(info, wallet_ids, args)


def _wallet_transactions(typename: str) -> Callable[..., dict[str, Any]]:
    def resolve(source: dict[str, Any], info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
        nested_guard(info, NESTED_SCOPES[(typename, "transactions")])
        return _connection(info, {source["id"]}, args)

    return resolve


def _wallet_balance(typename: str) -> Callable[..., Any]:
    def resolve(source: dict[str, Any], info: GraphQLResolveInfo) -> Any:
        nested_guard(info, NESTED_SCOPES[(typename, "balance")])
        return source.get("balance")

    return resolve


def resolve_transaction_details(_root: Any, info: GraphQLResolveInfo,
                                input: dict[str, Any]) -> dict[str, Any]:
    """get-transaction-by-id.ts: IBEX's record of one transaction; a failure (also an unknown
    id) comes back as a payload error with IBEX's generic text and no code."""
    guard(info, AUTHED_FIELDS["transactionDetails"])
    core = _ctx(info).core
    try:
        tx = core.transaction(str(input.get("transactionId", "")))
    except SandboxError as exc:
        return {"errors": [{"message": exc.message}], "transactionDetails": None}
    if tx.wallet_id not in {w.id for w in core.state.account.wallets}:
        return {"errors": [{"message": IBEX_ERROR_MESSAGE}], "transactionDetails": None}
    created = datetime.fromtimestamp(tx.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "errors": [],
        "transactionDetails": {
            "id": tx.id,
            "accountId": tx.wallet_id,
            "amount": float(Decimal(tx.amount)),
            "currency": "USD",
            "status": "completed",
            "type": "",
            "createdAt": created,
            "updatedAt": "",
            "fee": 0.0,
            "invoice": tx.bolt11,
            "paymentHash": tx.payment_hash,
            "paymentPreimage": tx.preimage or None,
            "memo": tx.memo or None,
        },
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
    guard(info, AUTHED_FIELDS["me"])
    core = _ctx(info).core
    account = core.state.account
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
            "wallets": lambda info: _account_wallets(core, info),
            "realtimePrice": _price_out(core, account.display_currency),
        },
    }


def _account_wallets(core: SandboxCore, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    nested_guard(info, NESTED_SCOPES[("ConsumerAccount", "wallets")])
    return [_wallet_out(core, w.id) for w in core.state.account.wallets]


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


def resolve_payment_status(
    _root: Any, info: GraphQLResolveInfo, input: dict[str, Any]
) -> dict[str, Any]:
    """ln-invoice-payment-status.ts: errors are thrown (top level), never in the payload."""
    try:
        status = _ctx(info).core.query_status(input["paymentRequest"])
    except SandboxError as exc:
        raise _error(exc) from None
    return {"status": status.value, "errors": []}


# --- mutations ------------------------------------------------------------------------------


def _create(info: GraphQLResolveInfo, input: dict[str, Any], *, wallet_key: str,
            limiter: str) -> dict[str, Any]:
    bad = _first_input_error(input)
    if bad is not None:
        return {"errors": [{"message": bad.message}], "invoice": None}
    amount = input["amount"]
    expires_in = input.get("expiresIn") or None  # 0 means "the default" (args.expiresIn || 1)
    try:
        record = _ctx(info).core.create_invoice(
            input[wallet_key],
            usd_cents=amount,
            memo=input.get("memo"),
            expires_in_min=expires_in,
            limiter=limiter,
        )
    except SandboxError as exc:
        return {"errors": [payload_error(exc.message, exc.code)], "invoice": None}
    return {"errors": [], "invoice": _invoice_out(record)}


def resolve_usd_create(_root: Any, info: GraphQLResolveInfo,
                       input: dict[str, Any]) -> dict[str, Any]:
    guard(info, AUTHED_FIELDS["lnUsdInvoiceCreate"])
    return _create(info, input, wallet_key="walletId", limiter="self")


def resolve_usd_create_for_recipient(_root: Any, info: GraphQLResolveInfo,
                                     input: dict[str, Any]) -> dict[str, Any]:
    return _create(info, input, wallet_key="recipientWalletId", limiter="recipient")


def resolve_btc_create(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> None:
    guard(info, AUTHED_FIELDS["lnInvoiceCreate"])
    raise GraphQLError(BTC_UNSUPPORTED)


def resolve_btc_create_for_recipient(_root: Any, info: GraphQLResolveInfo,
                                     input: dict[str, Any]) -> None:
    raise GraphQLError(BTC_UNSUPPORTED)


def resolve_send(_root: Any, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    guard(info, AUTHED_FIELDS["lnInvoicePaymentSend"])
    bad = _first_input_error(input)
    if bad is not None:  # the input scalars' errors: answered before any payment, no status
        return {"status": None, "errors": [{"message": bad.message}]}
    try:
        status = _ctx(info).core.send(
            input["walletId"], input["paymentRequest"], input.get("idempotencyKey")
        )
    except SandboxError as exc:
        return {"status": "FAILURE", "errors": [payload_error(exc.message, exc.code)]}
    return {"status": status, "errors": []}


# --- subscription ---------------------------------------------------------------------------


async def subscribe_payment_status(
    _root: Any, info: GraphQLResolveInfo, input: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The current status first; PAID when the provider's webhook arrives; EXPIRED at
    expiry + 1 s whatever happened meanwhile (Flash's timer is never cancelled). The stream
    never ends: Flash never sends `complete`."""
    core = _ctx(info).core
    request = input["paymentRequest"]
    try:
        status = core.query_status(request)
    except SandboxError as exc:
        yield {"status": None, "errors": [payload_error(exc.message, exc.code)]}
        await asyncio.Event().wait()  # the iterator stays open, silent
        return
    record = core.find_invoice(request)
    yield {"status": status.value, "errors": []}
    if record is None or core.faults.ws_silent:
        await asyncio.Event().wait()  # updates lost (or nothing to watch): the client must poll
        return
    queue = core.watch(record.payment_hash)
    timer_due = (record.expires_at + core.limits.expired_push_delay_s
                 if status is InvoiceStatus.PENDING else None)
    try:
        while True:
            timeout = None
            if timer_due is not None:
                timeout = max(math.ceil((timer_due - core.clock()) * 1000) / 1000, 0.0)
            try:
                event = await asyncio.wait_for(queue.get(), timeout=timeout)
            except TimeoutError:
                timer_due = None
                yield {"status": InvoiceStatus.EXPIRED.value, "errors": []}
                continue
            yield {"status": event.value, "errors": []}
    finally:
        core.unwatch(record.payment_hash, queue)


# --- assembly -------------------------------------------------------------------------------


def _type_resolver(name: str) -> Callable[..., str]:
    def resolve(value: Any, _info: Any, _type: Any) -> str:
        return value.get("__typename", name)

    return resolve


def _field_or_callable(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """The default resolver, calling a value that is a function of `info` (lazy nested
    fields that check their own scopes)."""
    value = source.get(info.field_name) if isinstance(source, dict) else getattr(
        source, info.field_name, None)
    return value(info) if callable(value) else value


@cache
def flash_schema() -> GraphQLSchema:
    """The real Flash schema with the sandbox's resolvers bound (built once per process)."""
    schema = build_schema(schema_sdl())
    for name, parse in SCALAR_PARSERS.items():
        scalar = schema.get_type(name)
        assert isinstance(scalar, GraphQLScalarType), name
        _bind_scalar(scalar, parse)
    for iface, default in (("Wallet", "UsdWallet"), ("Account", "ConsumerAccount"),
                           ("Error", "GraphQLApplicationError"),
                           ("InitiationVia", "InitiationViaLn"),
                           ("SettlementVia", "SettlementViaLn")):
        schema.get_type(iface).resolve_type = _type_resolver(default)  # type: ignore[union-attr]

    query = schema.query_type.fields  # type: ignore[union-attr]
    query["accountDefaultWallet"].resolve = resolve_account_default_wallet
    query["me"].resolve = resolve_me
    query["realtimePrice"].resolve = resolve_realtime_price
    query["currencyList"].resolve = resolve_currency_list
    query["lnInvoicePaymentStatus"].resolve = resolve_payment_status
    query["transactionDetails"].resolve = resolve_transaction_details

    account = schema.get_type("ConsumerAccount").fields  # type: ignore[union-attr]
    account["wallets"].resolve = _field_or_callable
    account["transactions"].resolve = resolve_account_transactions
    for typename in ("UsdWallet", "UsdtWallet"):
        fields = schema.get_type(typename).fields  # type: ignore[union-attr]
        fields["transactions"].resolve = _wallet_transactions(typename)
        fields["balance"].resolve = _wallet_balance(typename)

    mutation = schema.mutation_type.fields  # type: ignore[union-attr]
    mutation["lnUsdInvoiceCreateOnBehalfOfRecipient"].resolve = resolve_usd_create_for_recipient
    mutation["lnUsdInvoiceCreate"].resolve = resolve_usd_create
    mutation["lnInvoiceCreateOnBehalfOfRecipient"].resolve = resolve_btc_create_for_recipient
    mutation["lnInvoiceCreate"].resolve = resolve_btc_create
    mutation["lnInvoicePaymentSend"].resolve = resolve_send

    subscription = schema.subscription_type.fields  # type: ignore[union-attr]
    subscription["lnInvoicePaymentStatus"].subscribe = subscribe_payment_status
    subscription["lnInvoicePaymentStatus"].resolve = lambda event, _info, **_kw: event
    return schema
