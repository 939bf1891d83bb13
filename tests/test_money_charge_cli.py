"""`flash-terminal charge AMOUNT`: the amount is parsed and held to the per-sale limit before any
rate or invoice work; a refusal is exit 2 naming the limit."""

from __future__ import annotations

import os

import pytest

from terminal.app.cli import main

CONFIG = """\
[terminal]
name = "Test shop"
data_dir = "data"
display_currency = "USD"
max_sale = {{ USD = "50", SAT = 100000 }}

[backend]
kind = "flash"

[backend.flash]
http_url = "http://127.0.0.1:{port}/graphql"
username = "shop"
"""


@pytest.fixture
def config(tmp_path, unused_port):
    path = tmp_path / "terminal.toml"
    path.write_text(CONFIG.format(port=unused_port))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:  # bound, never listening: any request would fail at once
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("amount", "currency", "message"), [
    ("50.01", "USD", "amount: more than the per-sale limit of $50.00 (terminal.max_sale.USD in "
                     "the configuration)"),
    ("99999999999999999999", "USD", "the per-sale limit of $50.00"),
    ("1e400", "USD", "amount: write the amount in plain digits, without an exponent"),
    ("1e5000", "SAT", "without an exponent"),
    ("100001", "SAT", "the per-sale limit of 100,000 sats (terminal.max_sale.SAT"),
    ("١٢", "USD", "amount: use the digits 0-9 only"),
    ("-5", "USD", "no sign"),
    ("0", "USD", "more than zero"),
    ("12.345", "USD", "USD amounts have at most 2 decimals"),
    ("2000000", "JMD", "the per-sale limit of J$1,500,000.00"),  # the default JMD limit
])
def test_refused_amounts_exit_2_before_any_sale(config, capsys, amount, currency, message):
    with pytest.raises(SystemExit) as info:
        main(["charge", amount, "--currency", currency, "--qr", "--config", str(config)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and "Traceback" not in err
    assert not (config.parent / "data").exists()  # no ledger, no terminal id: nothing began
