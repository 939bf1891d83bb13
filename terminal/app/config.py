"""Terminal configuration: one TOML file (documented in `config.example.toml`) plus an optional
0600 secrets file beside it.

Secrets (API keys, issuer keys, admin PIN hash) may live in either file, but `enroll` writes them to
`secrets.toml` (mode 0600) and the loader warns-by-refusing when that file is readable by others.
Reprs never show secret values.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_CONFIG = "FLASH_TERMINAL_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("/etc/flash-terminal/terminal.toml"),)
NETWORKS = ("bitcoin", "testnet", "signet", "regtest")
CURRENCIES = ("USD", "JMD", "SAT")


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid. The message names the key."""


@dataclass(frozen=True)
class FlashSettings:
    http_url: str
    ws_url: str | None = None
    username: str | None = None
    api_key: str | None = field(default=None, repr=False)
    wallet_currency: str = "USD"


@dataclass(frozen=True)
class BTCPaySettings:
    url: str
    store_id: str
    api_key: str = field(repr=False, default="")


@dataclass(frozen=True)
class BackendSettings:
    kind: str  # "flash" | "btcpay"
    flash: FlashSettings | None = None
    btcpay: BTCPaySettings | None = None


@dataclass(frozen=True)
class LnurlSettings:
    allow_insecure_hosts: tuple[str, ...] = ()
    allow_private_hosts: tuple[str, ...] = ()
    issuer_allowlist: tuple[str, ...] = ()
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    callback_timeout_s: float = 20.0
    max_body_bytes: int = 64 * 1024


@dataclass(frozen=True)
class IssuerSettings:
    name: str
    kind: str  # "deterministic" | "table"
    issuer_key: bytes | None = field(default=None, repr=False)
    versions: dict[str, int] = field(default_factory=dict)  # card_id -> key version
    cards: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    hosts: tuple[str, ...] = ()
    p_param: str = "p"
    c_param: str = "c"
    lnurlw_base: str | None = None  # the URL programmed into this issuer's new cards
    version_window: int = 4  # key versions tried for a card not listed in `versions`


@dataclass(frozen=True)
class OfflineSettings:
    """Limits for taps accepted while the backend is unreachable (safe defaults: small)."""

    enabled: bool = True
    floor_limit_msat: int = 20_000_000  # per tap (20,000 sats)
    per_card_cap_msat: int = 50_000_000
    total_cap_msat: int = 200_000_000
    max_queued: int = 50
    max_age_s: int = 24 * 3600


@dataclass(frozen=True)
class ReaderSettings:
    path: str = "usb"
    card_file: str | None = None  # a simulated card instead of a reader (demo, training)


@dataclass(frozen=True)
class PrinterSettings:
    enabled: bool = False
    port: str | None = None
    baudrate: int = 19200
    width_mm: int = 58
    auto_print: bool = True  # print the receipt as soon as a sale is paid
    query_status: bool = True  # ask the printer's state (DLE EOT) first; off for mute printers


@dataclass(frozen=True)
class UiSettings:
    """What the counter screen offers (the merchant sets it at enrollment, not at the counter)."""

    tips: bool = False
    tip_presets: tuple[int, ...] = (10, 15, 20)  # percent
    tip_custom: bool = True
    result_seconds: int = 8  # the Result screen returns to Sale after this long


@dataclass(frozen=True)
class Config:
    name: str
    network: str
    display_currency: str
    data_dir: Path
    backend: BackendSettings
    terminal_id: str | None = None
    currencies: tuple[str, ...] = ()
    max_rate_age_s: int = 600
    invoice_expiry_s: int = 300
    lnurl: LnurlSettings = field(default_factory=LnurlSettings)
    issuers: tuple[IssuerSettings, ...] = ()
    offline: OfflineSettings = field(default_factory=OfflineSettings)
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    printer: PrinterSettings = field(default_factory=PrinterSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    admin_pin_hash: str | None = field(default=None, repr=False)
    source: Path | None = None


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
    file = config_path(path)
    raw = _read_toml(file)
    secrets_file = file.with_name("secrets.toml")
    if secrets_file.exists():
        _check_private(secrets_file)
        raw = _merge(raw, _read_toml(secrets_file))
    return parse_config(raw, source=file)


def parse_config(raw: dict[str, Any], *, source: Path | None = None) -> Config:
    base = source.parent if source else Path.cwd()
    term = _table(raw, "terminal")
    _known_keys(term, TERMINAL_KEYS, "terminal")
    _known_keys(_table(raw, "admin", required=False), ("pin_hash",), "admin")
    _known_keys(raw, TOP_LEVEL_KEYS, "the configuration")
    network = _choice(term.get("network", "bitcoin"), NETWORKS, "terminal.network")
    display = _choice(term.get("display_currency", "USD"), CURRENCIES, "terminal.display_currency")
    currencies = tuple(
        _choice(c, CURRENCIES, "terminal.currencies") for c in term.get("currencies", [display])
    )
    data_dir = Path(term.get("data_dir") or _default_data_dir())
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    return Config(
        name=str(term.get("name", "Flash Terminal")),
        network=network,
        display_currency=display,
        currencies=currencies,
        data_dir=data_dir,
        terminal_id=term.get("id"),
        max_rate_age_s=int(term.get("max_rate_age_s", 600)),
        invoice_expiry_s=int(term.get("invoice_expiry_s", 300)),
        backend=_backend(_table(raw, "backend")),
        lnurl=_lnurl(raw.get("lnurl", {})),
        issuers=tuple(_issuer(i, n) for n, i in enumerate(raw.get("issuers", []))),
        offline=_dataclass_from(OfflineSettings, raw.get("offline", {}), "offline"),
        reader=_dataclass_from(ReaderSettings, raw.get("reader", {}), "reader"),
        printer=_printer(raw.get("printer", {})),
        ui=_ui(raw.get("ui", {})),
        admin_pin_hash=_table(raw, "admin", required=False).get("pin_hash"),
        source=source,
    )


def _backend(raw: dict[str, Any]) -> BackendSettings:
    kind = _choice(raw.get("kind", "flash"), ("flash", "btcpay"), "backend.kind")
    if kind == "flash":
        flash = _table(raw, "flash", where="backend.flash")
        if "http_url" not in flash:
            raise ConfigError("backend.flash.http_url is required")
        if not flash.get("username") and not flash.get("api_key"):
            raise ConfigError("backend.flash needs a username (receive-only) or an api_key")
        return BackendSettings(kind, flash=_dataclass_from(FlashSettings, flash, "backend.flash"))
    btcpay = _table(raw, "btcpay", where="backend.btcpay")
    for key in ("url", "store_id", "api_key"):
        if not btcpay.get(key):
            raise ConfigError(f"backend.btcpay.{key} is required")
    return BackendSettings(kind, btcpay=_dataclass_from(BTCPaySettings, btcpay, "backend.btcpay"))


def _lnurl(raw: dict[str, Any]) -> LnurlSettings:
    values = dict(raw)
    for key in ("allow_insecure_hosts", "allow_private_hosts", "issuer_allowlist"):
        if key in values:
            values[key] = tuple(str(h).lower() for h in values[key])
    return _dataclass_from(LnurlSettings, values, "lnurl")


def _issuer(raw: dict[str, Any], index: int) -> IssuerSettings:
    where = f"issuers[{index}]"
    name = str(raw.get("name") or f"issuer-{index + 1}")
    kind = _choice(raw.get("kind", "deterministic"), ("deterministic", "table"), f"{where}.kind")
    issuer_key = None
    if kind == "deterministic":
        issuer_key = _hex_key(raw.get("issuer_key"), f"{where}.issuer_key")
    cards = tuple(dict(c) for c in raw.get("cards", ()))
    if kind == "table" and not cards:
        raise ConfigError(f"{where}.cards: a key-table issuer needs at least one card")
    return IssuerSettings(
        name=name,
        kind=kind,
        issuer_key=issuer_key,
        versions={str(k): int(v) for k, v in raw.get("versions", {}).items()},
        cards=cards,
        hosts=tuple(str(h).lower() for h in raw.get("hosts", ())),
        p_param=str(raw.get("p_param", "p")),
        c_param=str(raw.get("c_param", "c")),
        lnurlw_base=str(raw["lnurlw_base"]) if raw.get("lnurlw_base") else None,
        version_window=_int_in(raw.get("version_window", 4), 1, 16, f"{where}.version_window"),
    )


def _int_in(value: Any, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer from {low} to {high}")
    return value


def _printer(raw: dict[str, Any]) -> PrinterSettings:
    printer = _dataclass_from(PrinterSettings, raw, "printer")
    if printer.width_mm not in (58, 80):
        raise ConfigError("printer.width_mm must be 58 or 80")
    if printer.enabled and not printer.port:
        raise ConfigError("printer.port is required when printer.enabled = true")
    return printer


def _ui(raw: dict[str, Any]) -> UiSettings:
    values = dict(raw)
    if "tip_presets" in values:
        presets = tuple(int(p) for p in values["tip_presets"])
        if not presets or any(not 0 < p <= 100 for p in presets):
            raise ConfigError("ui.tip_presets must be percentages between 1 and 100")
        values["tip_presets"] = presets
    ui = _dataclass_from(UiSettings, values, "ui")
    if not 2 <= ui.result_seconds <= 120:
        raise ConfigError("ui.result_seconds must be between 2 and 120")
    return ui


def _hex_key(value: Any, where: str) -> bytes:
    try:
        key = bytes.fromhex(str(value))
    except ValueError:
        raise ConfigError(f"{where} must be 32 hex characters") from None
    if len(key) != 16:
        raise ConfigError(f"{where} must be 32 hex characters (an AES-128 key)")
    return key


TERMINAL_KEYS = ("name", "id", "network", "display_currency", "currencies", "data_dir",
                 "max_rate_age_s", "invoice_expiry_s")
TOP_LEVEL_KEYS = ("terminal", "backend", "lnurl", "issuers", "offline", "reader", "printer",
                  "ui", "admin")


def _known_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """A misspelt key must not silently fall back to a default (a wrong currency, say)."""
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _dataclass_from(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return cls(**raw)


def _table(raw: dict[str, Any], key: str, *, where: str | None = None, required: bool = True):
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"[{where or key}] section is missing")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where or key} must be a table")
    return value


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif _named_tables(value) and _named_tables(merged.get(key)):
            merged[key] = _merge_by_name(merged[key], value)
        else:
            merged[key] = value
    return merged


def _named_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and "name" in item for item in value)


def _merge_by_name(base: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict]:
    """`[[issuers]]` in secrets.toml may hold only `name` + `issuer_key`: merge it into the
    public entry of the same name instead of replacing the whole list."""
    merged = [dict(item) for item in base]
    for item in extra:
        same = next((m for m in merged if m["name"] == item["name"]), None)
        if same is None:
            merged.append(dict(item))
        else:
            same.update(_merge(same, item))
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except PermissionError:
        raise ConfigError(
            f"{path} is not readable by this user: run as the terminal's user "
            "(sudo -u flash-terminal …) or fix its owner"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} holds secrets and must be mode 0600 (is {mode:04o}): chmod 600")
