"""The sandbox's durable state: records and their atomic, crash-safe files in the data DIR.

Two files, both 0600 because they hold secrets (keys, PINs, preimages):
- `keys.json`: issuer key (Boltcard), Lightning node key (signs BOLT11), merchant API key.
- `state.json`: merchant account, cards, invoices, withdraw sessions, sends, the wallet's
  transactions, API keys created with restricted scopes, customers' Lightning Address wallets.
Every write is temp file + fsync + os.replace + directory fsync, so a kill leaves the old or
the new file, never a torn one. A restart on the same DIR carries on where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.adapters.system.files import atomic_write

STATE_FILE = "state.json"
KEYS_FILE = "keys.json"
STATE_VERSION = 1


class SandboxStateError(Exception):
    """The data DIR holds files the sandbox cannot use (corrupt, or another issuer key)."""


@dataclass
class Keys:
    issuer_key: bytes = field(repr=False)
    node_key: bytes = field(repr=False)  # secp256k1 secret of the sandbox Lightning node
    api_key: str = field(repr=False)  # fk_<keyId>_<secret>, as Flash issues them

    @classmethod
    def generate(cls) -> Keys:
        return cls(
            issuer_key=secrets.token_bytes(16),
            node_key=_secp256k1_secret(),
            api_key=cls.new_api_key(),
        )

    @staticmethod
    def new_api_key() -> str:
        """`fk_<8 hex key id>_<64 hex secret>`, as Flash issues them."""
        return f"fk_{secrets.token_hex(4)}_{secrets.token_hex(32)}"

    def to_json(self) -> dict[str, str]:
        return {
            "issuer_key": self.issuer_key.hex(),
            "node_key": self.node_key.hex(),
            "api_key": self.api_key,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Keys:
        return cls(
            issuer_key=bytes.fromhex(data["issuer_key"]),
            node_key=bytes.fromhex(data["node_key"]),
            api_key=data["api_key"],
        )


def _secp256k1_secret() -> bytes:
    from coincurve import PrivateKey  # installed with bolt11

    return PrivateKey().secret


@dataclass
class Wallet:
    id: str
    currency: str  # BTC | USD | USDT
    balance: int  # USD/USDT: cents; BTC: sats


@dataclass
class Account:
    id: str
    username: str
    default_wallet_id: str
    display_currency: str
    wallets: list[Wallet]

    def wallet(self, wallet_id: str) -> Wallet | None:
        return next((w for w in self.wallets if w.id == wallet_id), None)

    def wallet_in(self, currency: str) -> Wallet | None:
        return next((w for w in self.wallets if w.currency == currency), None)


@dataclass
class Card:
    card_id: str  # hex CMAC(IssuerKey, 2D003F7B ‖ UID)
    uid: str  # hex, 7 bytes
    version: int
    balance_msat: int
    counter: int = 0  # last accepted SDMReadCtr; the next tap must be greater
    enabled: bool = True
    per_tap_limit_msat: int | None = None
    pin: str | None = field(default=None, repr=False)
    pin_limit_msat: int | None = None

    def public(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("pin")
        data["has_pin"] = self.pin is not None
        return data


@dataclass
class InvoiceRecord:
    payment_hash: str
    payment_request: str
    preimage: str = field(repr=False)
    payment_secret: str = field(repr=False)
    amount_msat: int
    wallet_id: str
    memo: str
    created_at: float
    expires_at: float
    usd_cents: str | None = None  # Decimal as text for USD invoices; None for sat invoices
    satoshis: int | None = None  # Flash answers null for USD invoices
    paid_at: float | None = None
    paid_by: str | None = None  # "boltcard:<card_id>", "sandbox-pay", "send"
    purged: bool = False  # the provider forgot it (some time after expiry): status reads EXPIRED
    card_id: str | None = None  # a card's payLink invoice: paying it credits that card
    customer: str | None = None  # a Lightning Address invoice: paying it credits that wallet


@dataclass
class TransactionRecord:
    """A settled wallet transaction as the provider (IBEX) lists it."""

    id: str  # IBEX transaction id (a UUID)
    wallet_id: str
    type_id: int  # IBEX transactionTypeId: 1 Lightning receive, 2 Lightning send
    amount: str  # Decimal text, in the wallet's major unit (USD dollars), as IBEX reports it
    created_at: float
    payment_hash: str
    bolt11: str
    memo: str
    preimage: str = field(default="", repr=False)
    status: str = "SUCCESS"  # Flash's TxStatus: a send in flight is PENDING until it settles


@dataclass
class ApiKeyRecord:
    """An API key the merchant created, with its scopes (`read:user`, `write:wallet`, …)."""

    key: str = field(repr=False)
    scopes: list[str]
    rate_limit: int | None = None  # requests per minute; None: the server default

@dataclass
class WithdrawSession:
    k1: str
    card_id: str
    created_at: float
    min_msat: int
    max_msat: int
    used: bool = False


@dataclass
class SendRecord:
    """A send's definitive answer, kept under its (wallet, idempotency key) for 24 h as Flash
    keeps it (app/payments/idempotency.ts): `fingerprint` is the invoice it paid."""

    idempotency_key: str
    payment_hash: str
    status: str
    fingerprint: str = ""
    wallet_id: str = ""
    at: float = 0.0


@dataclass
class CustomerWallet:
    """A customer's wallet behind a Lightning Address (`name@host:port`), made on first use:
    where refunds to an address land. Balances in msat."""

    name: str
    balance_msat: int = 0
    created_at: float = 0.0


@dataclass
class State:
    account: Account
    cards: dict[str, Card] = field(default_factory=dict)
    invoices: dict[str, InvoiceRecord] = field(default_factory=dict)
    withdrawals: dict[str, WithdrawSession] = field(default_factory=dict)
    sends: dict[str, SendRecord] = field(default_factory=dict)
    transactions: dict[str, TransactionRecord] = field(default_factory=dict)
    api_keys: dict[str, ApiKeyRecord] = field(default_factory=dict, repr=False)
    customers: dict[str, CustomerWallet] = field(default_factory=dict)

    @classmethod
    def fresh(cls, username: str) -> State:
        # Flash accounts hold USD (and USDT) wallets; Flash does not support BTC wallets.
        usd = Wallet(id=str(uuid.uuid4()), currency="USD", balance=0)
        account = Account(
            id=str(uuid.uuid4()),
            username=username,
            default_wallet_id=usd.id,
            display_currency="USD",
            wallets=[usd],
        )
        return cls(account=account)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "account": dataclasses.asdict(self.account),
            "cards": {k: dataclasses.asdict(v) for k, v in self.cards.items()},
            "invoices": {k: dataclasses.asdict(v) for k, v in self.invoices.items()},
            "withdrawals": {k: dataclasses.asdict(v) for k, v in self.withdrawals.items()},
            "sends": {k: dataclasses.asdict(v) for k, v in self.sends.items()},
            "transactions": {k: dataclasses.asdict(v) for k, v in self.transactions.items()},
            "api_keys": {k: dataclasses.asdict(v) for k, v in self.api_keys.items()},
            "customers": {k: dataclasses.asdict(v) for k, v in self.customers.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        if data.get("version") != STATE_VERSION:
            raise SandboxStateError(f"unsupported sandbox state version {data.get('version')!r}")
        acct = dict(data["account"])
        acct["wallets"] = [Wallet(**w) for w in acct["wallets"]]
        return cls(
            account=Account(**acct),
            cards={k: Card(**v) for k, v in data["cards"].items()},
            invoices={k: InvoiceRecord(**v) for k, v in data["invoices"].items()},
            withdrawals={k: WithdrawSession(**v) for k, v in data["withdrawals"].items()},
            sends={k: SendRecord(**v) for k, v in data["sends"].items()},
            transactions={k: TransactionRecord(**v)
                          for k, v in data.get("transactions", {}).items()},
            api_keys={k: ApiKeyRecord(**v) for k, v in data.get("api_keys", {}).items()},
            customers={k: CustomerWallet(**v) for k, v in data.get("customers", {}).items()},
        )


class Store:
    """Loads and saves the sandbox files in one data DIR."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def load_keys(self, issuer_key: bytes | None = None) -> Keys:
        path = self.data_dir / KEYS_FILE
        if path.exists():
            keys = Keys.from_json(self._read_json(path))
            if issuer_key is not None and issuer_key != keys.issuer_key:
                raise SandboxStateError(
                    f"{self.data_dir} already belongs to another issuer key; "
                    "use a new data directory for a new issuer"
                )
            return keys
        keys = Keys.generate()
        if issuer_key is not None:
            if len(issuer_key) != 16:
                raise SandboxStateError("issuer key must be 16 bytes (AES-128)")
            keys.issuer_key = issuer_key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(keys.to_json(), indent=1).encode())
        return keys

    def load_state(self, username: str) -> State:
        path = self.data_dir / STATE_FILE
        if path.exists():
            return State.from_json(self._read_json(path))
        state = State.fresh(username)
        self.save_state(state)
        return state

    def save_state(self, state: State) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.data_dir / STATE_FILE, json.dumps(state.to_json(), indent=1).encode())

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SandboxStateError(f"cannot read sandbox file {path}: {exc}") from exc
