"""A terminal against the BTCPay Greenfield fake and an LNURL issuer fake, both on loopback: the
fixtures (btcpay, issuer, its payments, a configuration, a programmed card) and the card's keys."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from terminal.adapters.simcards import create_programmed, deterministic_keys
from terminal.app.config import load_config
from terminal.app.root import Terminal, build_terminal
from tests.fakes.btcpay_server import DEFAULT_KEY, FakeBTCPay
from tests.fakes.lnurl_issuer import Issuer

TERMINAL_ID = "ft-btcpay-e2e"
ISSUER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
CARD_UID = bytes.fromhex("04a1b2c3d4e5f6")
KEY_VERSION = 1


@pytest.fixture
def btcpay() -> Iterator[FakeBTCPay]:
    with FakeBTCPay(network="regtest") as fake:
        yield fake


@pytest.fixture
def issuer_paid() -> list[str]:
    """The BTCPay invoice ids the issuer paid, in order."""
    return []


@pytest.fixture
def issuer(btcpay: FakeBTCPay, issuer_paid: list[str]) -> Iterator[Issuer]:
    """A card issuer that pays the `pr` it is sent at the BTCPay store, then answers OK."""
    server = Issuer(host="127.0.0.1")

    def pay_pr(query: dict[str, str]) -> None:
        issuer_paid.append(btcpay.pay(query["pr"]))

    server.on_callback = pay_pr
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def config_path(tmp_path: Path, btcpay: FakeBTCPay, issuer: Issuer) -> Path:
    """terminal.toml (0600: it holds the issuer key) + secrets.toml (0600) with the API key."""
    config = tmp_path / "terminal.toml"
    config.write_text("\n".join([
        "[terminal]",
        'name = "BTCPay e2e"',
        'network = "regtest"',
        'display_currency = "JMD"',
        'currencies = ["JMD", "USD", "SAT"]',
        f"id = {json.dumps(TERMINAL_ID)}",
        f"data_dir = {json.dumps(str(tmp_path / 'data'))}",
        "[backend]",
        'kind = "btcpay"',
        "[backend.btcpay]",
        f"url = {json.dumps(btcpay.base_url)}",
        f"store_id = {json.dumps(btcpay.store_id)}",
        "[lnurl]",
        'allow_insecure_hosts = ["127.0.0.1"]',
        'allow_private_hosts = ["127.0.0.1"]',
        "[[issuers]]",
        'name = "loopback"',
        'kind = "deterministic"',
        'hosts = ["127.0.0.1"]',
        f"issuer_key = {json.dumps(ISSUER_KEY.hex())}",
        "",
    ]))
    config.chmod(0o600)
    secrets = tmp_path / "secrets.toml"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[backend.btcpay]\napi_key = {json.dumps(DEFAULT_KEY)}\n")
    return config


@pytest.fixture
def card(tmp_path: Path, issuer: Issuer) -> Path:
    """A Boltcard of the configured issuer whose URL points at the loopback issuer's /scan."""
    path = tmp_path / "card.json"
    keys = deterministic_keys(ISSUER_KEY, CARD_UID, KEY_VERSION)
    host_port = issuer.origin.removeprefix("http://")
    create_programmed(path, f"lnurlw://{host_port}/scan", keys, uid=CARD_UID)
    return path


def run_terminal(config_path: Path, body: Callable[[Terminal], Awaitable[Any]]) -> Any:
    async def scenario() -> Any:
        terminal = build_terminal(load_config(config_path))
        try:
            return await body(terminal)
        finally:
            await terminal.aclose()

    return asyncio.run(scenario())
