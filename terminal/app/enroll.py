"""Enrollment: give a terminal its whole configuration from one file or one QR-sized code, write
it (secrets apart, 0600), then check every item live and say what works and what does not.

Inputs
- an enrollment file: the terminal configuration's own TOML schema (`config.example.toml`), with
  one addition: `[admin] pin = "1234"` and each cashier's `[[cashiers]] pin = "…"` are accepted
  and stored only as PBKDF2 hashes (`pin_hash`);
- an enrollment code: `FT1:<body>.<tag>` where `body` is base64url(zlib(JSON or TOML)) and `tag`
  is base64url(HMAC-SHA256(secret, "FT1:" + body)[:16]). The secret is shared by the field staff's
  tooling and the technician (`--secret` or `FLASH_TERMINAL_ENROLL_SECRET`). A code without a tag
  (`FT1:<body>`) is accepted only when explicitly allowed: anyone can make one.

Outputs (in the configuration folder, `/etc/flash-terminal` on an installed terminal)
- `terminal.toml`: everything but secrets, plus the terminal id (`[terminal] id`), kept across
  re-enrollments so the ledger and the backend see one terminal;
- `secrets.toml`: API keys, issuer keys (the whole `[[issuers]]` array, because the loader merges
  arrays whole), the admin PIN hash, the cashiers (their PIN hashes; the array moves whole).
  Created 0600 from the first byte (temp file, fsync, rename).

Checks are `Check(name, status, detail, fix)`; a `fail` means the terminal cannot work as
enrolled, a `warn` that something is missing that a technician may add later (a reader not yet
plugged in). Secret values never appear in a detail: `mask()` shows the first 4 characters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import hmac
import json
import math
import os
import re
import time
import tomllib
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from terminal.adapters.backends.json_endpoint import one_request
from terminal.adapters.system.files import atomic_write

# The checks shared with the doctor: one vocabulary and one look at each part for both reports.
from terminal.app.checks import (
    Check,
    ReaderKind,
    ReaderProbe,
    Status,
    backend_health,
    check_printer,
    find_reader,
    flash_scope_check,
    probe_reader,
)
from terminal.app.config import Config, ConfigError, IssuerSettings, load_config, parse_config
from terminal.core.ports.backend import BackendError
from terminal.protocols.boltcard.keys import key_fingerprint

CODE_PREFIX = "FT1:"
ENV_SECRET = "FLASH_TERMINAL_ENROLL_SECRET"  # noqa: S105 - a variable name, not a secret
DEFAULT_CONFIG_DIR = Path("/etc/flash-terminal")
CONFIG_FILE = "terminal.toml"
SECRETS_FILE = "secrets.toml"
TERMINAL_ID_FILE = "terminal-id"  # as terminal.app.root keeps it in data_dir
TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits: forging still needs 2^128 work
MAX_PAYLOAD_BYTES = 64 * 1024  # a decompressed code larger than this is refused (zip bomb)
QR_MAX_BYTES = 2953  # QR version 40-L in byte mode
HTTP_TIMEOUT_S = 5.0

# Keys whose values are secret wherever they appear; a list holding one moves whole.
SECRET_KEYS = frozenset(
    {"api_key", "session_token", "issuer_key", "pin_hash", "pin", "k0", "k1", "k2", "k3", "k4"}
)
# The keys of the example configuration: an enrolled terminal must not keep them.
EXAMPLE_ISSUER_KEYS = frozenset({bytes(16), bytes.fromhex("00000000000000000000000000000001")})

# BTCPay policies the terminal needs, and policies that imply far more than it needs.
BTCPAY_NEEDED = (
    "btcpay.store.cancreateinvoice",
    "btcpay.store.canviewinvoices",
    "btcpay.store.canviewstoresettings",  # the store's rates
)
BTCPAY_BROAD = ("unrestricted", "btcpay.store.canmodifystoresettings", "btcpay.server.")


class EnrollError(Exception):
    """The enrollment input cannot be used. `fix` says what the technician should do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class CodeError(EnrollError):
    """An enrollment code is malformed, unsigned when that is not allowed, or tampered with."""


class EnrollUsageError(EnrollError):
    """The command was used wrongly (missing secret, unknown input): exit 2."""


@dataclass
class EnrollResult:
    terminal_id: str | None
    checks: list[Check]
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status is not Status.FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "terminal_id": self.terminal_id,
            "checks": [c.to_json() for c in self.checks],
            "files": [str(f) for f in self.files],
        }


def mask(value: str | None) -> str:
    """What a secret looks like on screen: its first 4 characters, then an ellipsis."""
    if not value:
        return "(none)"
    return f"{value[:4]}…"


# ------------------------------------------------------------------------------ codes


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise CodeError(f"the enrollment code's {what} is not base64url", _CODE_FIX)
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CodeError(f"the enrollment code's {what} is not base64url", _CODE_FIX) from None


_CODE_FIX = "scan or copy the whole code again (it starts with FT1:)"


def _tag(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, (CODE_PREFIX + body).encode("ascii"), hashlib.sha256).digest()[
        :TAG_BYTES
    ]


def make_code(raw: dict[str, Any], *, secret: bytes | None) -> str:
    """An enrollment code for `raw` (a parsed enrollment file); signed unless `secret` is None.

    The admin PIN, if given in clear, is hashed first so the code never carries it.
    """
    try:
        payload = json.dumps(prepare(raw), separators=(",", ":"), sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise EnrollError(f"the enrollment cannot go into a code ({exc})",
                          "use strings instead of TOML dates and times") from None
    body = _b64encode(zlib.compress(payload, 9))
    if secret is None:
        return CODE_PREFIX + body
    return f"{CODE_PREFIX}{body}.{_b64encode(_tag(secret, body))}"


def decode_code(code: str, *, secret: bytes | None, allow_unsigned: bool = False) -> dict[str, Any]:
    """The enrollment (a TOML-shaped dict) in `code`. Raises `CodeError`, or `EnrollUsageError`
    when the code is signed and no secret was given."""
    code = "".join(code.split())  # QR scanners and chat apps add line breaks
    if not code.upper().startswith(CODE_PREFIX):
        raise CodeError("not an enrollment code (it must start with FT1:)", _CODE_FIX)
    rest = code[len(CODE_PREFIX):]
    body, dot, tag_text = rest.partition(".")
    if dot:
        if secret is None:
            raise EnrollUsageError(
                "this enrollment code is signed: give the enrollment secret",
                f"pass --secret or set {ENV_SECRET}",
            )
        tag = _b64decode(tag_text, "signature")
        # Constant-time: a forger learns nothing from how long the refusal took.
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, _tag(secret, body)):
            raise CodeError(
                "the enrollment code's signature does not match: it was altered, truncated, or "
                "made with another enrollment secret",
                "ask for a fresh code; check the enrollment secret",
            )
    elif not allow_unsigned:
        raise CodeError(
            "the enrollment code is not signed, so its origin cannot be checked",
            "ask for a signed code, or pass --allow-unsigned if you made it yourself",
        )
    payload = _inflate(_b64decode(body, "body"))
    return parse_payload(payload)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(data, MAX_PAYLOAD_BYTES + 1)
    except zlib.error:
        raise CodeError("the enrollment code is damaged (not zlib data)", _CODE_FIX) from None
    if len(payload) > MAX_PAYLOAD_BYTES or inflater.unconsumed_tail:
        raise CodeError(f"the enrollment code holds more than {MAX_PAYLOAD_BYTES} bytes")
    if not inflater.eof:
        raise CodeError("the enrollment code is truncated", _CODE_FIX)
    return payload


def parse_payload(payload: bytes) -> dict[str, Any]:
    """JSON (starts with `{`) or TOML text → dict."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CodeError("the enrollment is not UTF-8 text") from None
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CodeError(f"the enrollment is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CodeError("the enrollment must be a JSON object")
        _reject_nulls(raw, "")
        return raw
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EnrollError(f"the enrollment is not valid TOML ({exc})") from None


def _reject_nulls(value: Any, where: str) -> None:
    if value is None:
        raise CodeError(f"the enrollment has a null at {where or 'the top'} (TOML has no null)")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_nulls(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _reject_nulls(v, f"{where}[{i}]")


_OTHER_VERSION = re.compile(r"FT(\d+):", re.IGNORECASE)
_BARE_CODE = re.compile(r"[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]{8,})?")


def _looks_like_zlib(body: str) -> bool:
    """The first bytes of base64url `body` are a zlib header (what every FT1 body starts with)."""
    try:
        head = base64.urlsafe_b64decode(body[:4])
    except (binascii.Error, ValueError):
        return False
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def code_text(source: str, *, bare: bool = True) -> str | None:
    """`source` as an `FT1:` code: as given, or (if `bare`) with its prefix put back when a
    scanner or a copy left it off; None when it is no code. Another version's code (`FT2:…`)
    is a `CodeError`."""
    text = "".join(source.split())  # QR scanners and chat apps add line breaks
    if text.upper().startswith(CODE_PREFIX):
        return text
    other = _OTHER_VERSION.match(text)
    if other:
        raise CodeError(
            f"this is an FT{other.group(1)}: enrollment code; this terminal reads FT1: codes",
            "make the code with `flash-terminal enroll --make-code` of this terminal's version",
        )
    if bare and _BARE_CODE.fullmatch(text) and _looks_like_zlib(text):
        return CODE_PREFIX + text
    return None


def _shown(source: str) -> str:
    """`source` quoted for a message: control characters escaped, cut after 60 characters."""
    return json.dumps(source[:60]) + ("…" if len(source) > 60 else "")


def read_enrollment(
    source: str, *, secret: bytes | None, allow_unsigned: bool = False
) -> tuple[dict[str, Any], Check]:
    """A file path or an `FT1:` code (its prefix may be missing) → (the enrollment dict, a row
    saying where it came from)."""
    path = Path(source)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # too long for a file name, a NUL byte: not a file
        is_file = False
    code = code_text(source, bare=not is_file)
    if code is not None:
        raw = decode_code(code, secret=secret, allow_unsigned=allow_unsigned)
        if "." in code:
            return raw, Check("enrollment", Status.OK, "signed code, signature verified")
        return raw, Check(
            "enrollment", Status.WARN, "unsigned code (allowed by --allow-unsigned)",
            "use signed codes in the field",
        )
    if not is_file:
        raise EnrollUsageError(
            f"{_shown(source)} is neither an enrollment file nor an FT1: code",
            "give the path of an enrollment TOML file, or the whole code from the QR "
            "(FT1:… ; a code without its FT1: prefix is read too)",
        )
    data = path.read_bytes()
    try:
        saved = code_text(data.decode("ascii"))  # a code saved in a file
    except UnicodeDecodeError:
        saved = None
    if saved is not None:
        return read_enrollment(saved, secret=secret, allow_unsigned=allow_unsigned)
    return parse_payload(data), Check("enrollment", Status.OK, f"file {path}")


# ------------------------------------------------------------------------------ shaping


def prepare(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with `[admin] pin` and each `[[cashiers]] pin` replaced by its hash
    (a PIN is never stored)."""
    out = copy.deepcopy(raw)
    admin = out.get("admin")
    if isinstance(admin, dict):
        out["admin"] = _hash_pin_in(admin, "admin")
    cashiers = out.get("cashiers")
    if isinstance(cashiers, list):
        out["cashiers"] = [_hash_pin_in(c, f"cashiers[{n}]") if isinstance(c, dict) else c
                           for n, c in enumerate(cashiers)]
    return out


def _hash_pin_in(table: dict[str, Any], where: str) -> dict[str, Any]:
    """`table` with its `pin` replaced by `pin_hash`; a given hash is checked for its form."""
    from terminal.core.pins import PinHashError, hash_pin, verify_pin

    table = dict(table)
    pin = table.pop("pin", None)
    if pin is not None:
        try:
            table["pin_hash"] = hash_pin(str(pin))
        except ValueError as exc:
            raise EnrollError(f"{where}.pin: {exc}", "choose a PIN of 4 to 8 digits") from None
    if "pin_hash" in table:
        try:
            verify_pin("0000", str(table["pin_hash"]))
        except PinHashError as exc:
            raise EnrollError(f"{where}.pin_hash: {exc}",
                              f"give {where}.pin (it is hashed) instead") from None
    return table


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k in SECRET_KEYS or _holds_secret(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def split_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public, secret) such that merging secret over public (as `load_config` does) gives back
    `raw`. Lists holding a secret (the issuers) move whole: the loader replaces lists whole."""
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECRET_KEYS or (isinstance(value, list) and _holds_secret(value)):
            secret[key] = value
        elif isinstance(value, dict):
            pub, sec = split_secrets(value)
            if pub or not sec:  # a table that held only secrets is not left empty behind
                public[key] = pub
            if sec:
                secret[key] = sec
        else:
            public[key] = value
    return public, secret


# ------------------------------------------------------------------------------ TOML out

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise EnrollError(f"cannot write a {type(value).__name__} value to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps_toml(raw: dict[str, Any]) -> str:
    """TOML text that `tomllib.loads` reads back as `raw`."""
    lines: list[str] = []
    _emit(raw, [], lines, header=None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _emit(table: dict[str, Any], path: list[str], lines: list[str], header: str | None) -> None:
    plain = [(k, v) for k, v in table.items()
             if not isinstance(v, dict) and not _is_table_array(v)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
    if header is not None and (plain or not tables or header.startswith("[[")):
        lines += ["", header]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in plain]
    for k, v in tables:
        sub = [*path, k]
        _emit(v, sub, lines, header="[" + ".".join(_key(p) for p in sub) + "]")
    for k, items in arrays:
        sub = [*path, k]
        for item in items:
            _emit(item, sub, lines, header="[[" + ".".join(_key(p) for p in sub) + "]]")


# ------------------------------------------------------------------------------ files


def existing_terminal_id(config_dir: Path, data_dir: Path | None = None) -> str | None:
    """The id this terminal already has: from a previous enrollment's `terminal.toml`, or the
    one `terminal.app.root.terminal_id` generated into a data folder."""
    folders: list[Path] = []
    try:
        old = tomllib.loads((config_dir / CONFIG_FILE).read_text())
        term = old.get("terminal", {})
        if isinstance(term, dict):
            if term.get("id"):
                return str(term["id"])
            if term.get("data_dir"):
                old_dir = Path(str(term["data_dir"]))
                folders.append(old_dir if old_dir.is_absolute() else config_dir / old_dir)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        pass
    if data_dir is not None:
        folders.append(data_dir)
    for folder in folders:
        try:
            found = (folder / TERMINAL_ID_FILE).read_text().strip()
        except OSError:
            continue
        if found:
            return found
    return None


def new_terminal_id() -> str:
    return f"ft-{uuid.uuid4().hex[:12]}"


_HEADER_MAIN = (
    "# Written by `flash-terminal enroll`. Secrets (API keys, issuer keys, the admin PIN hash)\n"
    "# are in secrets.toml beside this file (mode 0600). Re-run enroll rather than editing.\n"
)
_HEADER_SECRETS = "# Secrets of this terminal, written by `flash-terminal enroll`. Keep it 0600.\n"


def write_config(config_dir: Path, raw: dict[str, Any]) -> list[Path]:
    """Write `terminal.toml` (0644, no secrets) and `secrets.toml` (0600) into `config_dir`.

    `secrets.toml` is always rewritten, even empty, so a re-enrollment leaves no stale key."""
    config_dir.mkdir(parents=True, exist_ok=True)
    public, secret = split_secrets(raw)
    main = config_dir / CONFIG_FILE
    private = config_dir / SECRETS_FILE
    if "issuers" in secret:
        note = "# [[issuers]] are in secrets.toml (they hold card keys).\n"
    else:
        note = ""
    atomic_write(private, (_HEADER_SECRETS + dumps_toml(secret)).encode(), 0o600)
    atomic_write(main, (_HEADER_MAIN + note + dumps_toml(public)).encode(), 0o644)
    return [main, private]


# ------------------------------------------------------------------------------ checks


def check_reader(
    config: Config, probe: Callable[[str], ReaderProbe] = probe_reader
) -> Check:
    """Like the doctor's, but an absent reader is only a warning: a technician may enroll the
    terminal first and plug the reader in later."""
    found = find_reader(config, probe)
    if found.kind is ReaderKind.SIMULATED:
        return Check("reader", Status.OK, f"simulated card {found.detail} (no reader used)")
    if found.kind is ReaderKind.SIMULATED_MISSING:
        return Check("reader", Status.WARN, f"simulated card file {found.detail} does not exist",
                     "create it, or remove reader.card_file to use a real reader")
    if found.kind is ReaderKind.FOUND:
        return Check("reader", Status.OK, found.detail)
    return Check("reader", Status.WARN, found.detail,
                 "plug in the reader (ACR122U, PN533 or the PN532 HAT), check reader.path, then "
                 "run `flash-terminal doctor`")


def check_issuers(config: Config) -> list[Check]:
    from terminal.app.root import build_issuer

    if not config.issuers:
        if config.offline.enabled:
            return [Check("issuers", Status.WARN,
                          "no card issuer: taps cannot be verified on the terminal, so none is "
                          "accepted offline", "add the issuer key of the cards handed out")]
        return [Check("issuers", Status.OK, "none (taps are verified by the issuer online)")]
    return [_check_issuer(settings, build_issuer) for settings in config.issuers]


def _check_issuer(settings: IssuerSettings, build: Callable[[IssuerSettings], Any]) -> Check:
    name = f"issuer:{settings.name}"
    if settings.kind == "deterministic" and settings.issuer_key in EXAMPLE_ISSUER_KEYS:
        return Check(name, Status.FAIL, "the issuer key is the example (or zero) key",
                     "put the issuer's real key in the enrollment file")
    try:
        build(settings)
    except (KeyError, ValueError, TypeError) as exc:
        return Check(name, Status.FAIL, f"card keys are malformed ({type(exc).__name__}: "
                     f"{_no_hex(str(exc))})", "each card needs k1 and k2 as 32 hex characters")
    if settings.kind == "table":
        for n, card in enumerate(settings.cards):
            for k in ("k1", "k2"):
                try:
                    ok = len(bytes.fromhex(str(card.get(k, "")))) == 16
                except ValueError:
                    ok = False
                if not ok:
                    return Check(name, Status.FAIL, f"cards[{n}].{k} is not a 16-byte hex key",
                                 "each card needs k1 and k2 as 32 hex characters")
        return Check(name, Status.OK, f"key table, {len(settings.cards)} card(s)")
    hosts = ", ".join(settings.hosts) or "any host"
    return Check(name, Status.OK, f"deterministic key, fingerprint "
                 f"{key_fingerprint(settings.issuer_key)} ({hosts})"
                 if settings.issuer_key else "deterministic")


def _no_hex(text: str) -> str:
    return re.sub(r"[0-9a-fA-F]{8,}", "…", text)


async def check_backend(config: Config) -> list[Check]:
    """Reachability, credentials (and what they allow), and a rate for each currency."""
    from terminal.app.root import build_backend
    from terminal.core.ports.backend import BackendError

    kind = config.backend.kind
    try:
        backend = build_backend(config)
    except ValueError as exc:
        return [Check("backend", Status.FAIL, str(exc), _url_fix(config))]
    checks: list[Check] = []
    try:
        reach = await _check_reachable(config)
        checks.append(reach)
        if reach.status is Status.FAIL:
            skipped = "not checked: the backend is unreachable"
            checks.append(Check("credentials", Status.WARN, skipped))
            checks += [Check(f"rate:{c}", Status.WARN, skipped) for c in _currencies(config)]
            return checks
        ok, detail, fix = await _credentials(backend, config)
        if ok:
            checks.append(Check("credentials", Status.OK,
                                f"{detail}; {_credential_summary(config)}"))
            checks.append(await _check_privilege(config))
        else:
            checks.append(Check("credentials", Status.FAIL, detail, fix))
        if getattr(backend, "mode", None) == "api-key":
            # Flash: the key's scopes, the missing one named (a key without read_user fails
            # every sale with "missing required scope", which is a setup error, not a refusal).
            checks.append(await flash_scope_check(backend))
        for cur in _currencies(config):
            try:
                rate = await backend.display_rate(cur)
            except BackendError as exc:
                checks.append(Check(f"rate:{cur}", Status.FAIL, exc.message,
                                    f"check that {kind} prices {cur}, or change "
                                    "terminal.display_currency / terminal.currencies"))
                continue
            checks.append(_rate_check(cur, rate, config.max_rate_age_s))
    finally:
        await backend.aclose()
    return checks


async def _credentials(backend: Any, config: Config) -> tuple[bool, str, str]:
    """(ok, detail, fix). BTCPay's own diagnosis checks the version (2.0.0 or later), names a
    missing permission and tells a wrong store id from a missing permission."""
    found = await backend_health(backend)
    fix = getattr(found, "fix", "")  # BTCPay's diagnosis names its own fix
    return found.ok, found.detail, fix or _credential_fix(config, found.detail)


def _currencies(config: Config) -> list[str]:
    return list(dict.fromkeys([config.display_currency, *config.currencies]))


def _rate_check(cur: str, rate: Any, max_age_s: int) -> Check:
    if cur == "SAT":
        return Check(f"rate:{cur}", Status.OK, "sats need no rate")
    sats_per_unit = Decimal(10) ** rate.fraction_digits / rate.minor_per_sat
    age = time.time() - rate.timestamp
    detail = f"1 {cur} = {sats_per_unit:,.0f} sats"
    if age > max_age_s:
        return Check(f"rate:{cur}", Status.WARN, f"{detail}, but priced {age:.0f} s ago",
                     "the backend's price feed is stale; check the terminal clock too")
    return Check(f"rate:{cur}", Status.OK, detail)


async def _check_reachable(config: Config) -> Check:
    """One unauthenticated request: the server answers at that URL at all."""
    backend = config.backend
    if backend.kind == "flash":
        from terminal.adapters.backends import flash_documents as docs

        assert backend.flash is not None
        url = backend.flash.http_url
        method, body = "POST", {"query": docs.GLOBALS_NETWORK, "variables": {},
                                "operationName": "GlobalsNetwork"}
    else:
        assert backend.btcpay is not None
        url = backend.btcpay.url.rstrip("/") + "/api/v1/health"
        method, body = "GET", None
    started = time.perf_counter()
    try:
        response = await one_request(method, url, service=f"{backend.kind} at {_host(url)}",
                                     timeout_s=HTTP_TIMEOUT_S, json_body=body)
    except BackendError as exc:
        return Check("backend", Status.FAIL, exc.message, _url_fix(config))
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code >= 500 or response.status_code in (404, 405):
        return Check("backend", Status.FAIL,
                     f"{_host(url)} answered HTTP {response.status_code}", _url_fix(config))
    return Check("backend", Status.OK, f"{backend.kind} answers at {_host(url)} "
                 f"({elapsed_ms:.0f} ms)")


def _host(url: str) -> str:
    """host[:port] of a URL, never its credentials, path or query."""
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _url_fix(config: Config) -> str:
    key = "backend.flash.http_url" if config.backend.kind == "flash" else "backend.btcpay.url"
    return (f"check {key}, the terminal's network (Wi-Fi, DNS, firewall) and that the server "
            "is up; then run enroll again")


def _credential_summary(config: Config) -> str:
    flash, btcpay = config.backend.flash, config.backend.btcpay
    if flash is not None:
        if flash.api_key:
            return f"API key {mask(flash.api_key)}"
        return f"receive-only for {flash.username!r}"
    assert btcpay is not None
    return f"store {btcpay.store_id}, API key {mask(btcpay.api_key)}"


def _credential_fix(config: Config, detail: str) -> str:
    flash = config.backend.flash
    if "configured for" in detail:
        return "set terminal.network to the backend's network"
    if flash is not None:
        if flash.api_key:
            return ("check backend.flash.api_key (not revoked; scopes read_user, read_wallet, "
                    f"write_wallet, read_transactions) and that the account has a "
                    f"{flash.wallet_currency} wallet")
        return (f"check backend.flash.username (the merchant's Flash username, as shown in "
                f"their app) and that it has a {flash.wallet_currency} wallet")
    return ("check backend.btcpay.api_key and store_id; the key needs "
            + ", ".join(BTCPAY_NEEDED) + " on that store")


async def _check_privilege(config: Config) -> Check:
    """Credentials should allow what the terminal needs and nothing more."""
    flash, btcpay = config.backend.flash, config.backend.btcpay
    if flash is not None:
        if not flash.api_key:
            return Check("privilege", Status.OK, "receive-only: nothing on the terminal can spend")
        note = " (username ignored: the API key is used)" if flash.username else ""
        return Check("privilege", Status.WARN,
                     "an API key with write_wallet can also spend from the account" + note,
                     "use a receive-only username (backend.flash.username) and drop api_key")
    assert btcpay is not None
    from terminal.adapters.backends.btcpay import missing_permissions

    url = btcpay.url.rstrip("/") + "/api/v1/api-keys/current"
    try:
        response = await one_request("GET", url, service="BTCPay", timeout_s=HTTP_TIMEOUT_S,
                                     headers={"Authorization": f"token {btcpay.api_key}"})
        listed = json.loads(response.content).get("permissions")
    except (BackendError, ValueError, AttributeError):
        listed = None
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        return Check("privilege", Status.WARN, "BTCPay did not list the key's permissions")
    granted: list[str] = listed
    policies = [g.partition(":")[0] for g in granted
                if g.partition(":")[2] in ("", btcpay.store_id)]
    missing = missing_permissions(granted, btcpay.store_id, BTCPAY_NEEDED)
    broad = sorted({p for p in policies if p.startswith(BTCPAY_BROAD)})
    if missing:
        return Check("privilege", Status.FAIL, "the API key lacks " + ", ".join(missing),
                     "create a key with exactly " + ", ".join(BTCPAY_NEEDED))
    if broad:
        return Check("privilege", Status.WARN, "the API key also allows " + ", ".join(broad),
                     "create a key with exactly " + ", ".join(BTCPAY_NEEDED))
    return Check("privilege", Status.OK, "the API key allows exactly what the terminal needs")


async def validate(
    config: Config, *, reader_probe: Callable[[str], ReaderProbe] = probe_reader
) -> list[Check]:
    """Every live check of an enrolled configuration, in the order the table shows them."""
    checks = await check_backend(config)
    checks += check_issuers(config)
    # The reader and printer probes block (serial/USB I/O): keep them off the event loop.
    checks.append(await asyncio.to_thread(check_reader, config, reader_probe))
    checks.append(await asyncio.to_thread(check_printer, config))
    return checks


# ------------------------------------------------------------------------------ enroll


def enroll(
    raw: dict[str, Any],
    config_dir: Path,
    *,
    dry_run: bool = False,
    source_check: Check | None = None,
    run: Callable[[Awaitable[list[Check]]], list[Check]] | None = None,
    reader_probe: Callable[[str], ReaderProbe] = probe_reader,
) -> EnrollResult:
    """Shape, parse, write (unless `dry_run`) and check an enrollment. Never raises for a
    problem the technician can fix: it becomes a `fail` row."""
    checks = [source_check] if source_check else []
    try:
        shaped = prepare(raw)
        config = parse_config(shaped, source=config_dir / CONFIG_FILE)
    except (EnrollError, ConfigError) as exc:
        fix = getattr(exc, "fix", "") or "correct the enrollment file (see config.example.toml)"
        checks.append(Check("config", Status.FAIL, str(exc), fix))
        return EnrollResult(None, checks)

    term = shaped["terminal"]  # parse_config made sure it is a table
    existing = existing_terminal_id(config_dir, config.data_dir)
    given = term.get("id")
    tid = existing or (str(given) if given else None) or new_terminal_id()
    if existing and given and str(given) != existing:
        checks.append(Check("terminal-id", Status.WARN,
                            f"{existing} kept (the enrollment asked for {given})",
                            "a terminal keeps its id; wipe the configuration folder to change it"))
    else:
        checks.append(Check("terminal-id", Status.OK, f"{tid} ({'kept' if existing else 'new'})"))
    term["id"] = tid
    config = replace(config, terminal_id=tid)
    checks.append(Check("config", Status.OK, f"{config.name!r}: {config.backend.kind} backend, "
                        f"{config.network}, shows {config.display_currency}"))

    files: list[Path] = []
    if dry_run:
        checks.append(Check("files", Status.OK, "dry run: nothing written"))
    else:
        try:
            files = write_config(config_dir, shaped)
            config = load_config(config_dir / CONFIG_FILE)  # what the terminal will read
        except (OSError, ConfigError, EnrollError) as exc:
            checks.append(Check("files", Status.FAIL, f"cannot write {config_dir}: {exc}",
                                "run as root (or pass --config-dir) on a writable disk"))
            return EnrollResult(tid, checks, files)
        checks.append(Check("files", Status.OK,
                            f"{files[0]} and {files[1].name} (0600, holds the secrets)"))
        try:  # the books' folder, as the kiosk makes it at start: doctor's disk check needs it
            config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            checks.append(Check("data-dir", Status.WARN, f"cannot create {config.data_dir}: {exc}",
                                "the terminal creates it at its first start; check the owner"))

    live = validate(config, reader_probe=reader_probe)
    checks += (run or asyncio.run)(live)
    return EnrollResult(tid, checks, files)


def secret_from(value: str | None) -> bytes | None:
    """The enrollment secret: the `--secret` value, else $FLASH_TERMINAL_ENROLL_SECRET."""
    text = value if value is not None else os.environ.get(ENV_SECRET)
    return text.encode("utf-8") if text else None
