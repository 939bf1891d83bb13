"""The configuration schema: one model per TOML table of terminal.toml (+ secrets.toml).

Every model is strict (a value of the wrong TOML type is refused, never converted), refuses
unknown keys, and is frozen. Field types come from `fields`: each says what it expects.
Secret fields (`fields.secret()`) stay out of reprs and messages, and may live in a terminal.toml
only when that file is private (0600).

Adding a key: add the field to its section model below with its default, document it in
`config.example.toml` (a test checks every key of the schema is there). Adding a section: a model
here, a field of `ConfigFile`, and a field of the same name on `terminal.app.config.Config`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from terminal.app.config.fields import (
    Flag,
    HostList,
    ParamName,
    TerminalId,
    array,
    choice,
    choice_int,
    hex_bytes,
    hex_string,
    integer,
    matching,
    private,
    sale_limit,
    seconds,
    secret,
    table,
    text,
    url,
)
from terminal.core.money import MAX_INVOICE_MSAT, SALE_CURRENCIES

NETWORKS = ("bitcoin", "testnet", "signet", "regtest")
CURRENCIES = SALE_CURRENCIES
UNKNOWN_CARD_POLICIES = ("require-verification", "online-only")
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_PIN_HASH = re.compile(r"pbkdf2_sha256\$[0-9]{1,9}\$[0-9a-f]{2,256}\$[0-9a-f]{64}")

PATH = text(4096)
_PULL_PAYMENT_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{16,64}")  # BTCPay: base58 of 20 bytes
KEY = "a 16-byte AES key"


def rule(message: str, key: str | None = None) -> PydanticCustomError:
    """A problem that involves more than one value; `key` (if any) is the one to fix, relative
    to the table being checked."""
    return PydanticCustomError("rule", "{message}", {"message": message, "key": key or ""})


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, hide_input_in_errors=True)


# ------------------------------------------------------------------------------ [backend]


class FlashSettings(Section):
    """[backend.flash]: the Flash GraphQL API."""

    http_url: Annotated[str, url("https", "http")]
    ws_url: Annotated[str, url("wss", "ws")] | None = None
    username: Annotated[str, text(100)] | None = None  # receive-only: invoices for this user
    api_key: Annotated[str, text(1000)] | None = secret()
    # Flash does not support BTC wallets (both BTC invoice mutations refuse, in its source).
    wallet_currency: Annotated[str, choice("USD", why="Flash does not support BTC wallets")] = \
        "USD"

    @model_validator(mode="after")
    def _credentials(self) -> FlashSettings:
        if not self.username and not self.api_key:
            raise rule("needs username (receive-only) or api_key", "username")
        return self


class BTCPaySettings(Section):
    """[backend.btcpay]: a BTCPay Server store (Greenfield API)."""

    url: Annotated[str, url("https", "http")]
    store_id: Annotated[str, text(200)]
    api_key: Annotated[str, text(1000)] = secret(...)


class BackendSettings(Section):
    """[backend]: which backend takes the payments; only the chosen one's table is kept."""

    kind: Annotated[str, choice("flash", "btcpay")] = "flash"
    flash: FlashSettings | None = None
    btcpay: BTCPaySettings | None = None

    @model_validator(mode="after")
    def _chosen(self) -> BackendSettings:
        chosen = getattr(self, self.kind)
        if chosen is None:
            raise rule(f'missing: [backend.{self.kind}] is required with kind = "{self.kind}"',
                       self.kind)
        other = "btcpay" if self.kind == "flash" else "flash"
        return self.model_copy(update={other: None}) if getattr(self, other) else self


# ------------------------------------------------------------------------------ [lnurl]


class LnurlSettings(Section):
    """[lnurl]: which issuers the terminal talks to, and how long it waits for them."""

    allow_insecure_hosts: HostList = ()
    allow_private_hosts: HostList = ()
    issuer_allowlist: HostList = ()
    connect_timeout_s: Annotated[float, seconds(0, 60)] = 3.0
    read_timeout_s: Annotated[float, seconds(0, 120)] = 10.0
    callback_timeout_s: Annotated[float, seconds(0, 120)] = 20.0
    # After an issuer refuses a sent callback: how long to watch the invoice before answering
    # "not confirmed — do not charge again" (it may pay anyway).
    confirm_timeout_s: Annotated[float, seconds(0, 60)] = 5.0
    max_body_bytes: Annotated[int, integer(1024, 16 * 1024 * 1024)] = 64 * 1024


# ------------------------------------------------------------------------------ [[issuers]]


class CardKeys(Section):
    """One card of a key-table issuer: `{ uid = "04…", k1 = "…", k2 = "…" }`."""

    uid: Annotated[str, hex_string(7, "a 7-byte card UID")] | None = private()
    card_id: Annotated[str, hex_string(16, "a 16-byte card id", lower=True)] | None = None
    k1: Annotated[str, hex_string(16, KEY)] = secret(...)
    k2: Annotated[str, hex_string(16, KEY)] = secret(...)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("uid", self.uid), ("card_id", self.card_id),
                                  ("k1", self.k1), ("k2", self.k2)) if v is not None}


class IssuerSettings(Section):
    """[[issuers]]: a card issuer whose taps the terminal verifies itself."""

    name: Annotated[str, text(64)] = ""  # "" -> "issuer-N" (its place in the list)
    kind: Annotated[str, choice("deterministic", "table")] = "deterministic"
    issuer_key: Annotated[bytes, hex_bytes(16, KEY)] | None = secret()
    versions: Annotated[
        dict[Annotated[str, hex_string(16, "a 16-byte card id", lower=True)],
             Annotated[int, integer(0, 0xFFFF_FFFF)]],
        table("card ids to key versions"),
    ] = Field(default_factory=dict)
    card_table: Annotated[tuple[CardKeys, ...], array("card tables", max_items=100_000)] = Field(
        default=(), alias="cards", repr=False)
    hosts: HostList = ()
    p_param: ParamName = "p"
    c_param: ParamName = "c"
    lnurlw_base: Annotated[str, url("lnurlw", "https", "http")] | None = None
    version_window: Annotated[int, integer(1, 16)] = 4
    # BTCPay Server's cards: the pull payment the cards draw on (its CardKey derivation appends
    # the id), and the key version of a newly programmed card (BTCPay: 0, boltcard: 1).
    pull_payment_id: Annotated[str, matching(
        _PULL_PAYMENT_ID, "a BTCPay pull-payment id (base58, as in the pull payment's URL)")
    ] | None = None
    first_version: Annotated[int, integer(0, 0xFFFF_FFFF)] | None = None
    # A card on one of `hosts` whose keys the terminal lacks: refused, or sent online unchecked.
    unknown_cards: Annotated[str, choice(*UNKNOWN_CARD_POLICIES)] = "require-verification"

    @property
    def default_version(self) -> int:
        """The version a card not listed in `versions` is tried with first."""
        if self.first_version is not None:
            return self.first_version
        return 0 if self.pull_payment_id is not None else 1

    @property
    def cards(self) -> tuple[dict[str, str], ...]:
        """The key table as the keyring builder reads it: `{"uid"|"card_id", "k1", "k2"}`."""
        return tuple(card.as_dict() for card in self.card_table)

    @model_validator(mode="after")
    def _unknown_cards(self) -> IssuerSettings:
        if "unknown_cards" in self.model_fields_set and not self.hosts:
            raise rule("applies to the issuer's hosts: set hosts too (other hosts follow "
                       "[cards] unknown_cards)", "unknown_cards")
        return self

    @model_validator(mode="after")
    def _kind(self) -> IssuerSettings:
        if self.kind == "deterministic":
            if self.issuer_key is None:
                raise rule('required with kind = "deterministic" (32 hex characters; keep it '
                           "in secrets.toml)", "issuer_key")
            if "card_table" in self.model_fields_set:
                raise rule('only for kind = "table" (this issuer derives its cards\' keys)',
                           "cards")
        else:
            if not self.card_table:
                raise rule("a key-table issuer needs at least one card", "cards")
            for key in ("issuer_key", "versions", "version_window", "pull_payment_id",
                        "first_version"):
                if key in self.model_fields_set:
                    raise rule('only for kind = "deterministic"', key)
        return self


# ------------------------------------------------------------------------------ [cards]

SATS = integer(0, MAX_INVOICE_MSAT // 1000)
TAPS = integer(0, 100_000)


class CardLimitSettings(Section):
    """[[cards.limits]]: one card's own limits; a key left out keeps the default, 0 lifts it."""

    card_id: Annotated[str, hex_string(16, "a 16-byte card id", lower=True)]
    max_per_tap_sats: Annotated[int, SATS] | None = None
    max_per_day_sats: Annotated[int, SATS] | None = None
    max_taps_per_hour: Annotated[int, TAPS] | None = None


class HotlistSettings(Section):
    """[[cards.hotlists]]: a list of blocked cards to fetch (an issuer's, the merchant's, or an
    LNbits boltcards card list)."""

    name: Annotated[str, matching(re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}"),
                                  "a short name: letters, digits, . _ -")]
    url: Annotated[str, url("https", "http")]
    kind: Annotated[str, choice("hotlist", "lnbits")] = "hotlist"
    api_key: Annotated[str, text(200)] | None = secret()  # lnbits: the wallet's invoice key

    @model_validator(mode="after")
    def _key(self) -> HotlistSettings:
        if self.kind == "lnbits" and not self.api_key:
            raise rule('required with kind = "lnbits" (the card wallet\'s invoice key; keep it '
                       "in secrets.toml)", "api_key")
        return self


class CardsSettings(Section):
    """[cards]: per-card limits and velocity, unknown cards, and the hotlists to fetch."""

    max_per_tap_sats: Annotated[int, SATS] = 0  # 0: no limit
    max_per_day_sats: Annotated[int, SATS] = 0
    max_taps_per_hour: Annotated[int, TAPS] = 0
    unknown_cards: Annotated[str, choice(*UNKNOWN_CARD_POLICIES)] = "online-only"
    hotlist_refresh_s: Annotated[float, seconds(0, 7 * 24 * 3600)] = 900.0
    hotlist_retry_s: Annotated[float, seconds(0, 7 * 24 * 3600)] = 60.0
    hotlist_max_bytes: Annotated[int, integer(1024, 16 * 1024 * 1024)] = 1024 * 1024
    limits: Annotated[tuple[CardLimitSettings, ...],
                      array("card limit tables", max_items=100_000)] = ()
    hotlists: Annotated[tuple[HotlistSettings, ...], array("hotlist tables", max_items=20)] = ()

    @model_validator(mode="after")
    def _unique(self) -> CardsSettings:
        seen: dict[str, int] = {}
        for n, card in enumerate(self.limits):
            if card.card_id in seen:
                raise rule(f"this card already has limits in limits[{seen[card.card_id]}]",
                           f"limits[{n}].card_id")
            seen[card.card_id] = n
        names: dict[str, int] = {}
        for n, source in enumerate(self.hotlists):
            if source.name in names:
                raise rule(f'"{source.name}" is already the name of hotlists[{names[source.name]}]',
                           f"hotlists[{n}].name")
            names[source.name] = n
        return self


# ------------------------------------------------------------------------------ the rest


class OfflineSettings(Section):
    """[offline]: limits for taps accepted while the backend is unreachable (safe: small)."""

    enabled: Flag = True
    floor_limit_msat: Annotated[int, integer(0, MAX_INVOICE_MSAT)] = 20_000_000  # per tap
    per_card_cap_msat: Annotated[int, integer(0, MAX_INVOICE_MSAT)] = 50_000_000
    total_cap_msat: Annotated[int, integer(0, MAX_INVOICE_MSAT)] = 200_000_000
    max_queued: Annotated[int, integer(0, 100_000)] = 50
    max_age_s: Annotated[int, integer(1, 30 * 24 * 3600)] = 24 * 3600


class ReaderSettings(Section):
    """[reader]: the NFC reader (an nfcpy path), or a simulated card for training."""

    path: Annotated[str, text(200)] = "usb"
    card_file: Annotated[str, PATH] | None = None


class PrinterSettings(Section):
    """[printer]: an ESC/POS receipt printer on a serial port."""

    enabled: Flag = False
    port: Annotated[str, PATH] | None = None
    baudrate: Annotated[int, choice_int(*BAUD_RATES)] = 19200
    width_mm: Annotated[int, choice_int(58, 80)] = 58
    auto_print: Flag = True  # print the receipt as soon as a sale is paid
    query_status: Flag = True  # ask the printer's state (DLE EOT) first; off for mute printers

    @model_validator(mode="after")
    def _port(self) -> PrinterSettings:
        if self.enabled and not self.port:
            raise rule("required when enabled = true", "port")
        return self


class UiSettings(Section):
    """[ui]: what the counter screen offers (set at enrollment, not at the counter)."""

    tips: Flag = False
    tip_presets: Annotated[
        tuple[Annotated[int, integer(1, 100)], ...],
        array("percentages", min_items=1, max_items=6),
    ] = (10, 15, 20)
    tip_custom: Flag = True
    result_seconds: Annotated[int, integer(2, 120)] = 8  # Result returns to Sale after this
    require_sign_in: Flag = True  # with [[cashiers]]: no sale until a cashier signs in
    show_card_balance: Flag = False  # the card's balance (LUD-14) on the result and receipt


class MaxSale(Section):
    """[terminal] max_sale: the largest single sale per currency, in minor units once parsed
    (the file holds major units: `{ USD = "10000", JMD = "1500000", SAT = 10000000 }`)."""

    USD: Annotated[int, sale_limit("USD")] = 10_000_00
    JMD: Annotated[int, sale_limit("JMD")] = 1_500_000_00
    SAT: Annotated[int, sale_limit("SAT")] = 10_000_000


class TerminalSection(Section):
    """[terminal]: identity, network, currencies, where the books live."""

    name: Annotated[str, text(100)] = "Flash Terminal"
    id: TerminalId | None = None
    network: Annotated[str, choice(*NETWORKS)] = "bitcoin"
    display_currency: Annotated[str, choice(*CURRENCIES)] = "USD"
    currencies: Annotated[
        tuple[Annotated[str, choice(*CURRENCIES)], ...], array("currency codes", max_items=10)
    ] | None = None  # None: just the display currency
    data_dir: Annotated[str, PATH] | None = None  # None: $STATE_DIRECTORY, else "data"
    max_rate_age_s: Annotated[int, integer(1, 24 * 3600)] = 600
    invoice_expiry_s: Annotated[int, integer(1, 24 * 3600)] = 300
    max_sale: MaxSale = MaxSale()


_CASHIER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class CashierSettings(Section):
    """[[cashiers]]: one who signs in at the till, with the PIN's hash `flash-terminal enroll`
    writes (the enrollment file gives `pin = "…"`; only the hash is kept, in secrets.toml)."""

    id: Annotated[str, matching(
        _CASHIER_ID, "1 to 32 lower-case letters, digits, '-' or '_' (a short id: ana, till-2)")]
    name: Annotated[str, text(40)]
    role: Annotated[str, choice("cashier", "manager")] = "cashier"
    pin_hash: Annotated[str, matching(
        _PIN_HASH, "the PBKDF2 hash `flash-terminal enroll` writes (pbkdf2_sha256$…); put "
        '`pin = "…"` in the enrollment file instead')] = secret(...)

    @model_validator(mode="after")
    def _reserved(self) -> CashierSettings:
        if self.id == "none":
            raise rule('"none" is reserved (reports name sales without a cashier so)', "id")
        if not self.name.strip():
            raise rule("a cashier needs a name", "name")
        return self


class AdminSection(Section):
    """[admin]: the admin PIN, as the hash `flash-terminal enroll` writes (never the PIN)."""

    pin_hash: Annotated[str, matching(
        _PIN_HASH, "the PBKDF2 hash `flash-terminal enroll` writes (pbkdf2_sha256$…); put "
        '`pin = "…"` in the enrollment file instead')] | None = secret()


class ConfigFile(Section):
    """The whole configuration: terminal.toml with secrets.toml merged over it."""

    terminal: TerminalSection
    backend: BackendSettings
    lnurl: LnurlSettings = LnurlSettings()
    issuers: Annotated[tuple[IssuerSettings, ...], array("issuer tables", max_items=100)] = ()
    offline: OfflineSettings = OfflineSettings()
    cards: CardsSettings = CardsSettings()
    reader: ReaderSettings = ReaderSettings()
    printer: PrinterSettings = PrinterSettings()
    ui: UiSettings = UiSettings()
    admin: AdminSection = AdminSection()
    cashiers: Annotated[tuple[CashierSettings, ...],
                        array("cashier tables", max_items=200)] = ()

    @model_validator(mode="after")
    def _cashier_ids(self) -> ConfigFile:
        seen: dict[str, int] = {}
        for n, cashier in enumerate(self.cashiers):
            if cashier.id in seen:
                raise rule(f'"{cashier.id}" is already the id of cashiers[{seen[cashier.id]}]',
                           f"cashiers[{n}].id")
            seen[cashier.id] = n
        return self

    @model_validator(mode="after")
    def _issuer_names(self) -> ConfigFile:
        named: list[IssuerSettings] = []
        seen: dict[str, int] = {}
        for n, issuer in enumerate(self.issuers):
            name = issuer.name or f"issuer-{n + 1}"
            if name in seen:
                raise rule(f'"{name}" is already the name of issuers[{seen[name]}]',
                           f"issuers[{n}].name")
            seen[name] = n
            named.append(issuer if issuer.name else issuer.model_copy(update={"name": name}))
        return self.model_copy(update={"issuers": tuple(named)})


def field_for(model: type[BaseModel], key: str) -> tuple[str, Any] | None:
    """(field name, FieldInfo) of the field `key` names in the file (its alias, else its name)."""
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return name, info
    return None
