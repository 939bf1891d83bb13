"""Terminal configuration: one TOML file (documented in `config.example.toml`) plus an optional
0600 `secrets.toml` beside it, merged over it, checked against one typed schema (`schema`).

The schema is written with pydantic v2 rather than msgspec: pydantic reports every problem of a
file at once, each with its location, which is what "one line per problem, naming the key" needs
(msgspec stops at the first error); its strict mode refuses a string where a boolean, number or
list belongs instead of converting it.

Loading refuses, with a `ConfigError` holding one line per problem:
- wrong TOML types, unknown keys at any depth, out-of-range numbers, bad hex, bad URLs (the
  schema), a file that is not UTF-8 or not TOML, a secrets.toml value of the wrong shape;
- a secrets.toml readable by others, and a terminal.toml readable by others that holds a secret
  (API keys, issuer and card keys, the admin PIN hash). Reprs never show secret values.

Consumers read `Config` (a frozen dataclass) and the section models (`config.offline`,
`config.backend.flash`, …), whose attributes are typed as they read them: bytes for an issuer
key, tuples for lists, an absolute `Path` for `data_dir`, minor units for `max_sale`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from terminal.app.config.files import (
    SECRETS_FILE,
    check_private,
    check_public_file,
    merge,
    read_toml,
)
from terminal.app.config.problems import ConfigError, problem_lines
from terminal.app.config.schema import (
    CURRENCIES,
    NETWORKS,
    AdminSection,
    BackendSettings,
    BTCPaySettings,
    CardKeys,
    CardLimitSettings,
    CardsSettings,
    CashierSettings,
    ConfigFile,
    FlashSettings,
    HotlistSettings,
    IssuerSettings,
    LnurlSettings,
    MaxSale,
    OfflineSettings,
    PrinterSettings,
    ReaderSettings,
    TerminalSection,
    UiSettings,
)
from terminal.core.money import Money, currency

__all__ = [
    "CURRENCIES", "DEFAULT_CONFIG_PATHS", "ENV_CONFIG", "NETWORKS", "SECRETS_FILE",
    "AdminSection", "BTCPaySettings", "BackendSettings", "CardKeys", "CardLimitSettings",
    "CardsSettings", "CashierSettings", "Config", "ConfigError", "ConfigFile", "FlashSettings",
    "HotlistSettings", "IssuerSettings", "LnurlSettings", "MaxSale",
    "OfflineSettings", "PrinterSettings", "ReaderSettings", "TerminalSection", "UiSettings",
    "config_path", "load_config", "parse_config",
]

ENV_CONFIG = "FLASH_TERMINAL_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("/etc/flash-terminal/terminal.toml"),)


@dataclass(frozen=True)
class Config:
    """The terminal's configuration as the rest of the code reads it: `[terminal]` flattened
    (`config.name`, `config.terminal_id`, …), every other table as its section model."""

    name: str
    network: str
    display_currency: str
    data_dir: Path  # absolute
    backend: BackendSettings
    terminal_id: str | None = None
    currencies: tuple[str, ...] = ()
    max_rate_age_s: int = 600
    invoice_expiry_s: int = 300
    max_sale: MaxSale = field(default_factory=MaxSale)
    lnurl: LnurlSettings = field(default_factory=LnurlSettings)
    issuers: tuple[IssuerSettings, ...] = ()
    offline: OfflineSettings = field(default_factory=OfflineSettings)
    cards: CardsSettings = field(default_factory=CardsSettings)
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    printer: PrinterSettings = field(default_factory=PrinterSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    cashiers: tuple[CashierSettings, ...] = ()
    admin_pin_hash: str | None = field(default=None, repr=False)
    source: Path | None = None

    def max_sale_minor(self, currency_code: str) -> int:
        """The largest single sale in `currency_code`, in its minor units (cents, sats)."""
        code = currency(currency_code).code
        if code not in MaxSale.model_fields:
            raise ValueError(f"no per-sale limit for {code}: not one of {', '.join(CURRENCIES)}")
        limit: int = getattr(self.max_sale, code)
        return limit

    def sale_limit(self, currency_code: str) -> Money:
        """`max_sale_minor` as Money (to show: "at most $10,000.00")."""
        return Money(self.max_sale_minor(currency_code), currency(currency_code))


def _default_data_dir() -> str:
    """systemd's StateDirectory= (the kiosk service: /var/lib/flash-terminal), else `data`
    beside the configuration file."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return state or "data"


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIG_PATHS:
        try:
            if candidate.exists():
                return candidate
        except PermissionError:  # /etc/flash-terminal is 0700, owned by the service user
            raise ConfigError(
                f"{candidate.parent} is readable only by the terminal's user: run this as "
                "`sudo -u flash-terminal flash-terminal …`"
            ) from None
    raise ConfigError(
        f"no configuration: pass --config FILE or set {ENV_CONFIG} "
        "(see config.example.toml; `flash-terminal sandbox serve` writes a ready one)"
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """The configuration at `path` (or $FLASH_TERMINAL_CONFIG, or the installed one), with
    secrets.toml beside it merged over it. Raises `ConfigError` naming every problem."""
    file = config_path(path)
    public = read_toml(file)
    raw = public
    secrets_file = file.with_name(SECRETS_FILE)
    try:
        has_secrets = secrets_file.is_file()
    except OSError:
        has_secrets = False
    if has_secrets:
        check_private(secrets_file)
        raw = merge(public, read_toml(secrets_file), where=secrets_file)
    problems: list[str] = []
    exposed = check_public_file(file, public)
    if exposed:
        problems.append(exposed)
    try:
        config = parse_config(raw, source=file)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(*problems, source=file)
    return config


def parse_config(raw: Any, *, source: Path | None = None) -> Config:
    """The configuration in `raw` (a parsed TOML document, or the same shape from JSON)."""
    try:
        checked = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(*problem_lines(exc), source=source) from None
    term = checked.terminal
    base = source.parent if source else Path.cwd()
    data_dir = Path(term.data_dir or _default_data_dir())
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    sections = {name: getattr(checked, name) for name in ConfigFile.model_fields
                if name not in ("terminal", "admin")}
    return Config(
        name=term.name,
        network=term.network,
        display_currency=term.display_currency,
        currencies=term.currencies if term.currencies is not None else (term.display_currency,),
        data_dir=data_dir.absolute(),
        terminal_id=term.id,
        max_rate_age_s=term.max_rate_age_s,
        invoice_expiry_s=term.invoice_expiry_s,
        max_sale=term.max_sale,
        admin_pin_hash=checked.admin.pin_hash,
        source=source,
        **sections,
    )
