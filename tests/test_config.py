"""Configuration: the example file parses, secrets stay private, errors name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from terminal.app.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_example_configuration_is_valid_and_documents_every_section():
    config = load_config(ROOT / "config.example.toml")
    assert config.backend.kind == "flash"
    assert config.backend.flash.username == "cornershop"
    assert config.issuers[0].issuer_key == bytes.fromhex("00000000000000000000000000000001")
    assert config.offline.floor_limit_msat == 20_000_000
    assert config.display_currency == "JMD"
    assert config.ui.tip_presets == (10, 15, 20) and config.printer.auto_print


def test_issuer_key_never_appears_in_repr():
    config = load_config(ROOT / "config.example.toml")
    assert "00000000000000000000000000000001" not in repr(config)
    assert "0000000000000001" not in repr(config.issuers[0])


def test_secrets_file_is_merged_only_when_private(tmp_path):
    (tmp_path / "terminal.toml").write_text(
        '[terminal]\n[backend]\nkind = "flash"\n[backend.flash]\nhttp_url = "https://x/graphql"\n'
        'username = "shop"\n'
    )
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[backend.flash]\napi_key = "fk_secret"\n')
    os.chmod(secrets, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_config(tmp_path / "terminal.toml")
    os.chmod(secrets, 0o600)
    config = load_config(tmp_path / "terminal.toml")
    assert config.backend.flash.api_key == "fk_secret"
    assert "fk_secret" not in repr(config)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"backend": {"kind": "flash"}}, "terminal"),
        ({"terminal": {}, "backend": {"kind": "paypal"}}, "backend.kind"),
        ({"terminal": {"network": "moon"}, "backend": {"kind": "flash"}}, "terminal.network"),
        ({"terminal": {}, "backend": {"kind": "btcpay", "btcpay": {"url": "u"}}}, "store_id"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u"}}}, "username"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u", "username": "a"}},
          "issuers": [{"kind": "deterministic", "issuer_key": "zz"}]}, "issuer_key"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u", "username": "a"}},
          "offline": {"floor": 1}}, "unknown key"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u", "username": "a"}},
          "printer": {"enabled": True}}, "printer.port"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u", "username": "a"}},
          "printer": {"width_mm": 62}}, "width_mm"),
        ({"terminal": {}, "backend": {"kind": "flash", "flash": {"http_url": "u", "username": "a"}},
          "ui": {"tip_presets": [0, 150]}}, "tip_presets"),
    ],
)
def test_invalid_configuration_names_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_issuer_secrets_merge_into_the_public_entry_of_the_same_name(tmp_path):
    (tmp_path / "terminal.toml").write_text(
        '[terminal]\n[backend]\nkind = "flash"\n[backend.flash]\nhttp_url = "https://x/graphql"\n'
        'username = "shop"\n[[issuers]]\nname = "cards"\nkind = "deterministic"\n'
        'hosts = ["card.example"]\n'
    )
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[[issuers]]\nname = "cards"\nissuer_key = "' + "11" * 16 + '"\n')
    os.chmod(secrets, 0o600)
    [issuer] = load_config(tmp_path / "terminal.toml").issuers
    assert issuer.hosts == ("card.example",) and issuer.issuer_key == bytes([0x11]) * 16
