"""An issuer no configured key claims (on 127.0.0.2, beside the sandbox): a terminal configuration
that trusts it, and a well-formed tap of one of its cards, which goes online as it is."""

from __future__ import annotations

import os
from pathlib import Path

from terminal.sandbox.config import render_terminal_config
from terminal.sandbox.server import SandboxThread
from tests.fakes.lnurl_issuer import Issuer

ISSUER_HOST = "127.0.0.2"  # not the sandbox's host: the configured issuer does not claim it


def write_config(sandbox: SandboxThread, path: Path, *, lnurl: str = "",
                 terminal: str = "", http_url: str | None = None) -> Path:
    sb = sandbox.sandbox
    text = render_terminal_config(
        data_dir=path.parent, network=sb.core.network, http_url=http_url or sb.http_url,
        ws_url=sb.ws_url, username=sb.username, issuer_key=sb.issuer_key, host=sb.host,
        lnurlw_base=sb.lnurlw_base,
    )
    hosts = f'["{sb.host}", "{ISSUER_HOST}"]'
    text = text.replace(f'allow_insecure_hosts = ["{sb.host}"]', f"allow_insecure_hosts = {hosts}")
    text = text.replace(f'allow_private_hosts = ["{sb.host}"]', f"allow_private_hosts = {hosts}")
    text = text.replace("[lnurl]\n", f"[lnurl]\n{lnurl}\n")
    text = text.replace("[terminal]\n", f"[terminal]\n{terminal}\n")
    path.write_text(text)
    path.chmod(0o600)
    return path


def tap_url(issuer: Issuer) -> str:
    """A well-formed tap of a card no configured issuer claims: it goes online as it is."""
    p, c = os.urandom(16).hex().upper(), os.urandom(8).hex().upper()
    return issuer.card_url(query=f"p={p}&c={c}")
