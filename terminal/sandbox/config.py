"""`terminal.toml` for a terminal that uses this sandbox (the lead's config loader reads it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from terminal.adapters.system.files import atomic_write


def _q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these values


def render_terminal_config(
    *,
    data_dir: Path,
    network: str,
    http_url: str,
    ws_url: str,
    username: str,
    issuer_key: bytes,
    host: str,
    lnurlw_base: str,
    api_key: str | None = None,
) -> str:
    """`api_key`: the sandbox's own key goes in (a terminal that can send: refunds); without
    it the terminal is receive-only (its username)."""
    flash_key = [f"api_key = {_q(api_key)}"] if api_key else []
    return "\n".join([
        "[terminal]",
        'name = "Sandbox terminal"',
        f"network = {_q(network)}",
        'display_currency = "USD"',
        f"data_dir = {_q(str(Path(data_dir).resolve() / 'terminal-data'))}",
        "[backend]",
        'kind = "flash"',
        "[backend.flash]",
        f"http_url = {_q(http_url)}",
        f"ws_url = {_q(ws_url)}",
        f"username = {_q(username)}",
        *flash_key,
        "[lnurl]",
        f"allow_insecure_hosts = [{_q(host)}]",
        f"allow_private_hosts = [{_q(host)}]",
        "[[issuers]]",
        'name = "sandbox"',
        'kind = "deterministic"',
        f"issuer_key = {_q(issuer_key.hex())}",
        f"hosts = [{_q(host)}]",
        f"lnurlw_base = {_q(lnurlw_base)}",
        "",
    ])


def write_terminal_config(path: Path, **fields: object) -> Path:
    """Write the configuration atomically, 0600 (it holds the issuer key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_terminal_config(**fields).encode())  # type: ignore[arg-type]
    os.chmod(path, 0o600)
    return path
