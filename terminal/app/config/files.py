"""The configuration files: reading TOML, merging secrets.toml over terminal.toml, and the rules
for files that hold secrets (0600, or no secret at all)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from terminal.app.config.fields import SECRET
from terminal.app.config.problems import ConfigError, describe, key_path, models_in
from terminal.app.config.schema import ConfigFile, field_for

SECRETS_FILE = "secrets.toml"


def read_toml(path: Path) -> dict[str, Any]:
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
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None


def file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def check_private(path: Path) -> None:
    mode = file_mode(path)
    if mode & 0o077:
        raise ConfigError(f"{path} holds secrets and must be mode 0600 (is {mode:04o}): chmod 600")


def secret_paths(raw: dict[str, Any], model: type[BaseModel] = ConfigFile,
                 loc: tuple[str | int, ...] = ()) -> list[str]:
    """Key paths of the secret values in `raw` (the schema's `secret()` fields)."""
    found: list[str] = []
    for key, value in raw.items():
        field = field_for(model, key)
        if field is None:
            continue  # an unknown key: the schema refuses it
        info = field[1]
        here = (*loc, key)
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(SECRET):
            found.append(key_path(here))
            continue
        nested = models_in(info.annotation)
        if not nested:
            continue
        if isinstance(value, dict):
            found += secret_paths(value, nested[0], here)
        elif isinstance(value, list):
            for n, item in enumerate(value):
                if isinstance(item, dict):
                    found += secret_paths(item, nested[0], (*here, n))
    return found


def check_public_file(path: Path, raw: dict[str, Any]) -> str | None:
    """The problem with a terminal.toml that others may read and that holds a secret."""
    mode = file_mode(path)
    if not mode & 0o077:
        return None
    held = secret_paths(raw)
    if not held:
        return None
    return (f"{path} holds secrets ({', '.join(held)}) but is open to other users (mode "
            f"{mode:04o}): move them to {SECRETS_FILE} beside it (mode 0600), or chmod 600 "
            f"{path.name}")


# ------------------------------------------------------------------------------ merging


def merge(base: dict[str, Any], extra: dict[str, Any], *, where: Path,
          loc: tuple[str | int, ...] = ()) -> dict[str, Any]:
    """`extra` (secrets.toml) over `base` (terminal.toml): tables merge key by key, arrays of
    named tables (`[[issuers]]`) merge by name, anything else is replaced. A table, array or
    value that would replace one of another shape is refused, naming the secrets file."""
    merged = dict(base)
    problems: list[str] = []
    for key, value in extra.items():
        here = (*loc, key)
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = merge(old, value, where=where, loc=here)
        elif isinstance(old, list) and _named_tables(value) and _named_tables(old):
            merged[key] = _merge_by_name(old, value, where=where, loc=here)
        elif old is not None and _shape(old) != _shape(value):
            problems.append(f"{key_path(here)}: {where.name} has {describe(value, hidden=True)}"
                            f" where the configuration has {describe(old, hidden=True)}")
        else:
            merged[key] = value
    if problems:
        raise ConfigError(*problems)
    return merged


def _shape(value: Any) -> str:
    return "table" if isinstance(value, dict) else "array" if isinstance(value, list) else "value"


def _named_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and "name" in item for item in value)


def _merge_by_name(base: list[dict[str, Any]], extra: list[dict[str, Any]], *, where: Path,
                   loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """`[[issuers]]` in secrets.toml may hold only `name` + `issuer_key`: merge it into the
    public entry of the same name instead of replacing the whole list."""
    merged = [dict(item) for item in base]
    for item in extra:
        same = next((n for n, m in enumerate(merged) if m["name"] == item["name"]), None)
        if same is None:
            merged.append(dict(item))
        else:
            merged[same] = merge(merged[same], item, where=where, loc=(*loc, same))
    return merged
