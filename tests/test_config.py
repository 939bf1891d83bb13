"""Configuration: the schema refuses every malformed value with one line naming the key; the
example file validates; secrets stay private (reprs, messages, file modes)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from terminal.app.config import (
    Config,
    ConfigError,
    ConfigFile,
    load_config,
    parse_config,
)
from terminal.app.config.problems import models_in

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"
ISSUER_KEY = "00112233445566778899aabbccddeeff"
API_KEY = "fk_live_very_secret_0123456789"

BASE = """\
[terminal]
name = "Test shop"
data_dir = "data"

[backend]
kind = "flash"

[backend.flash]
http_url = "https://api.flash.example/graphql"
username = "shop"
"""


def example_raw() -> dict:
    return tomllib.loads(EXAMPLE.read_text())


def write(folder: Path, text: str | bytes, name: str = "terminal.toml", mode: int = 0o600) -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)
    return path


def problems_of(raw: dict) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


# ------------------------------------------------------------------------------ the example


def test_example_configuration_validates_against_the_schema():
    config = parse_config(example_raw(), source=EXAMPLE)
    assert config.backend.kind == "flash"
    assert config.backend.flash.username == "cornershop"
    assert config.backend.btcpay is None
    assert config.issuers[0].issuer_key == bytes.fromhex("00000000000000000000000000000001")
    assert config.issuers[0].hosts == ("boltcard.example.com",)
    assert config.offline.floor_limit_msat == 20_000_000
    assert config.display_currency == "JMD" and config.currencies == ("JMD", "USD")
    assert config.ui.tip_presets == (10, 15, 20) and config.printer.auto_print
    assert config.lnurl.allow_insecure_hosts == () and config.lnurl.read_timeout_s == 10.0
    assert config.data_dir == Path("/var/lib/flash-terminal")
    assert config.max_sale_minor("USD") == 1_000_000 and config.max_sale_minor("SAT") == 10**7


def _documented_keys(text: str) -> set[str]:
    """Every `key =` in the example, commented out or not."""
    keys = set()
    for line in text.splitlines():
        body = line.lstrip("# ").split("#")[0]
        if body.startswith("["):  # [backend.flash], [[issuers]]
            keys.add(body.strip("[] \n").split(".")[-1])
        if "=" in body and not body.startswith("["):
            keys.add(body.split("=")[0].strip())
        for inline in body.split("{")[1:]:  # { uid = "04…", k1 = "…", k2 = "…" }
            keys |= {part.split("=")[0].strip() for part in inline.split(",") if "=" in part}
    return keys


def test_example_documents_every_key_of_the_schema():
    documented = _documented_keys(EXAMPLE.read_text())

    def keys(model) -> set[str]:
        out = set()
        for name, info in model.model_fields.items():
            out.add(info.alias or name)
            for nested in models_in(info.annotation):
                out |= keys(nested)
        return out

    missing = keys(ConfigFile) - documented - {"terminal", "backend", "lnurl", "issuers",
                                                "offline", "reader", "printer", "ui", "admin"}
    assert not missing, f"document these keys in config.example.toml: {sorted(missing)}"


def test_issuer_key_never_appears_in_repr():
    config = parse_config(example_raw())
    assert "00000000000000000000000000000001" not in repr(config)
    assert "0000000000000001" not in repr(config.issuers[0])


def test_defaults_without_optional_tables(tmp_path):
    config = load_config(write(tmp_path, BASE))
    assert config.name == "Test shop" and config.network == "bitcoin"
    assert config.currencies == ("USD",) and config.issuers == ()
    assert config.data_dir == tmp_path / "data" and config.data_dir.is_absolute()
    assert config.source == tmp_path / "terminal.toml"
    assert config.offline.enabled is True and config.lnurl.max_body_bytes == 65536
    assert config.sale_limit("JMD").minor == 150_000_000


def test_relative_config_path_still_gives_an_absolute_data_dir(tmp_path, monkeypatch):
    write(tmp_path, BASE)
    monkeypatch.chdir(tmp_path)
    config = load_config("terminal.toml")
    assert config.data_dir.is_absolute() and config.data_dir == tmp_path / "data"


def test_consumer_types_are_kept(tmp_path):
    raw = example_raw()
    raw["lnurl"]["allow_insecure_hosts"] = ["LocalHost."]
    raw["issuers"].append({"name": "lnbits", "kind": "table", "hosts": ["LNbits.example"],
                           "cards": [{"uid": "04a1b2c3d4e5f6", "k1": "11" * 16, "k2": "22" * 16},
                                     {"card_id": "AB" * 16, "k1": "33" * 16, "k2": "44" * 16}]})
    raw["issuers"][0]["versions"] = {"CD" * 16: 3}
    config = parse_config(raw)
    assert config.lnurl.allow_insecure_hosts == ("localhost",)
    lnbits = config.issuers[1]
    assert lnbits.hosts == ("lnbits.example",) and lnbits.issuer_key is None
    assert lnbits.cards == ({"uid": "04a1b2c3d4e5f6", "k1": "11" * 16, "k2": "22" * 16},
                            {"card_id": "ab" * 16, "k1": "33" * 16, "k2": "44" * 16})
    assert "11" * 16 not in repr(config) and "04a1b2c3d4e5f6" not in repr(config)
    assert config.issuers[0].versions == {"cd" * 16: 3}
    assert isinstance(config.issuers[0].issuer_key, bytes)


def test_unnamed_issuers_are_numbered_and_names_are_unique():
    raw = example_raw()
    raw["issuers"] = [{"issuer_key": ISSUER_KEY}, {"name": "b", "issuer_key": ISSUER_KEY}]
    assert [i.name for i in parse_config(raw).issuers] == ["issuer-1", "b"]
    raw["issuers"][0]["name"] = "b"
    assert problems_of(raw) == ('issuers[1].name: "b" is already the name of issuers[0]',)


def test_only_the_chosen_backend_is_kept():
    raw = example_raw()
    raw["backend"]["btcpay"] = {"url": "https://btcpay.example", "store_id": "S", "api_key": "k"}
    assert parse_config(raw).backend.btcpay is None
    raw["backend"]["kind"] = "btcpay"
    config = parse_config(raw)
    assert config.backend.flash is None and config.backend.btcpay.store_id == "S"
    assert "api_key='k'" not in repr(config)


def test_max_sale_takes_major_units_as_strings_or_integers():
    raw = example_raw()
    raw["terminal"]["max_sale"] = {"USD": "250.50", "SAT": 21_000_000 * 10**8}
    config = parse_config(raw)
    assert config.max_sale_minor("USD") == 25_050
    assert config.max_sale_minor("sat") == 21 * 10**14  # every bitcoin: the ceiling
    assert config.max_sale_minor("JMD") == 150_000_000  # the default
    with pytest.raises(ValueError):
        config.max_sale_minor("EUR")


def test_config_is_still_a_frozen_dataclass():
    import dataclasses

    config = parse_config(example_raw())
    assert dataclasses.replace(config, terminal_id="ft-1").terminal_id == "ft-1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "x"  # type: ignore[misc]
    assert isinstance(config, Config)


# ------------------------------------------------------------------------------ refusals

FLASH = {"kind": "flash", "flash": {"http_url": "https://x.example/graphql", "username": "a"}}


def with_(section: str, values: dict, base: dict | None = None) -> dict:
    raw = {"terminal": {}, "backend": FLASH} if base is None else base
    raw = {**raw, section: {**raw.get(section, {}), **values}}
    return raw


def card_issuer(**card) -> dict:
    return {"terminal": {}, "backend": FLASH,
            "issuers": [{"name": "t", "kind": "table", "cards": [card]}]}


# (raw configuration, the one problem line expected: its start, then a phrase of it)
CASES = [
    # the issue's cases
    (with_("terminal", {"data_dir": 5}), "terminal.data_dir: expected a string",
     "got an integer (5)"),
    (with_("terminal", {"invoice_expiry_s": "abc"}), "terminal.invoice_expiry_s: expected an "
     "integer from 1 to 86,400", 'got a string ("abc")'),
    ({"terminal": {}, "backend": {"flash": {"http_url": "ftp://x.example", "username": "a"}}},
     "backend.flash.http_url: expected a URL starting https:// or http://", "ftp://"),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": "0011zz"}]},
     "issuers[0].issuer_key: expected 32 hex characters", "got a string of 6 characters"),
    (card_issuer(uid="04a1b2c3d4e5f6", k1="11" * 16), "issuers[0].cards[0].k2: missing", ""),
    (card_issuer(uid="04a1b2c3d4e5f6", k1="11" * 16, k2="22" * 15),
     "issuers[0].cards[0].k2: expected 32 hex characters", "string of 30 characters"),
    (with_("ui", {"tip_presets": ["a"]}), "ui.tip_presets[0]: expected an integer from 1 to 100",
     'got a string ("a")'),
    (with_("lnurl", {"max_body_bytes": 0}), "lnurl.max_body_bytes: expected an integer from "
     "1,024", "got an integer (0)"),
    (with_("offline", {"enabled": "false"}), "offline.enabled: expected true or false",
     'got a string ("false")'),
    (with_("lnurl", {"allow_insecure_hosts": "127.0.0.1"}), "lnurl.allow_insecure_hosts: "
     "expected an array of host names", 'got a string ("127.0.0.1")'),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "hosts": "cards.example"}]},
     "issuers[0].hosts: expected an array of host names", "cards.example"),
    (with_("lnurl", {"read_timeout_s": -1}), "lnurl.read_timeout_s: expected a number of "
     "seconds greater than 0", "got an integer (-1)"),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY, "p_parm": "x"}]},
     "issuers[0].p_parm: unknown key", "did you mean p_param?"),
    (with_("offline", {"floor_limit_msat": "20000000"}), "offline.floor_limit_msat: expected "
     "an integer", 'got a string ("20000000")'),
    # more of the same kinds
    (card_issuer(uid="04a1b2c3d4e5f6", k1="11" * 16, k2="22" * 16, k3="33" * 16),
     "issuers[0].cards[0].k3: unknown key", ""),
    (card_issuer(uid="04a1b2c3d4", k1="11" * 16, k2="22" * 16),
     "issuers[0].cards[0].uid: expected 14 hex characters", "string of 10 characters"),
    ({"terminal": {}, "backend": {"flash": {"http_url": "https://x.example", "username": "a",
                                            "ws_url": "https://x.example/ws"}}},
     "backend.flash.ws_url: expected a URL starting wss:// or ws://", ""),
    ({"terminal": {}, "backend": {"kind": "btcpay", "btcpay": {
        "url": "btcpay.example", "store_id": "s", "api_key": "k"}}},
     "backend.btcpay.url: expected a URL starting https:// or http://", ""),
    ({"terminal": {}, "backend": {"kind": "btcpay", "btcpay": {"url": "https://b.example",
                                                                "api_key": "k"}}},
     "backend.btcpay.store_id: missing", ""),
    ({"terminal": {}, "backend": {"flash": {"http_url": "https://x.example"}}},
     "backend.flash.username: needs username (receive-only) or api_key", ""),
    ({"terminal": {}, "backend": {"kind": "btcpay"}}, "backend.btcpay: missing", ""),
    ({"terminal": {}, "backend": {"kind": "paypal"}}, "backend.kind: expected one of", "paypal"),
    ({"terminal": {"network": "moon"}, "backend": FLASH}, "terminal.network: expected one of",
     '"signet"'),
    ({"backend": FLASH}, "terminal: missing", ""),
    (with_("lnurl", {"read_timeout_s": float("inf")}), "lnurl.read_timeout_s: expected", "inf"),
    (with_("lnurl", {"connect_timeout_s": float("nan")}), "lnurl.connect_timeout_s: expected",
     "nan"),
    (with_("lnurl", {"callback_timeout_s": "20"}), "lnurl.callback_timeout_s: expected", '"20"'),
    (with_("ui", {"tips": 1}), "ui.tips: expected true or false", "got an integer (1)"),
    (with_("ui", {"tip_presets": [0, 15]}), "ui.tip_presets[0]: expected an integer from 1", ""),
    (with_("ui", {"tip_presets": []}), "ui.tip_presets: expected an array of at least 1", ""),
    (with_("ui", {"result_seconds": 8.0}), "ui.result_seconds: expected an integer",
     "got a float (8.0)"),
    (with_("terminal", {"currencies": "USD"}), "terminal.currencies: expected an array of "
     "currency codes", ""),
    (with_("terminal", {"currencies": ["usd"]}), "terminal.currencies[0]: expected one of", ""),
    (with_("terminal", {"data_dir": "da\x00ta"}), "terminal.data_dir: expected a string", ""),
    (with_("terminal", {"id": "ft 1"}), "terminal.id: expected 1 to 64 letters", ""),
    (with_("terminal", {"max_sale": {"EUR": "5"}}), "terminal.max_sale.EUR: unknown key", ""),
    (with_("terminal", {"max_sale": {"USD": 10.5}}), "terminal.max_sale.USD: expected an amount "
     "in USD", "got a float (10.5)"),
    (with_("terminal", {"max_sale": {"SAT": 21 * 10**14 + 1}}), "terminal.max_sale.SAT: expected "
     "an amount in SAT of at most 2,100,000,000,000,000 sats", ""),
    (with_("terminal", {"max_sale": {"USD": "1e400"}}), "terminal.max_sale.USD: expected an "
     "amount in USD written in digits", ""),
    (with_("terminal", {"max_sale": {"JMD": "0"}}), "terminal.max_sale.JMD: expected", ""),
    (with_("printer", {"enabled": True}), "printer.port: required when enabled = true", ""),
    (with_("printer", {"width_mm": 62}), "printer.width_mm: expected one of 58, 80", ""),
    (with_("printer", {"baudrate": "9600"}), "printer.baudrate: expected one of", ""),
    (with_("reader", {"path": ""}), "reader.path: expected a string of 1 to", ""),
    (with_("offline", {"max_queued": -1}), "offline.max_queued: expected an integer from 0", ""),
    (with_("offline", {"total_cap_msat": 10**30}), "offline.total_cap_msat: expected", ""),
    (with_("offline", {"floor": 1}), "offline.floor: unknown key", "floor_limit_msat"),
    (with_("admin", {"pin": "1234"}), "admin.pin: unknown key", "pin_hash"),
    (with_("admin", {"pin_hash": "1234"}), "admin.pin_hash: expected the PBKDF2 hash",
     "string of 4 characters"),
    ({"terminal": {}, "backend": FLASH, "offline": 5}, "offline: expected a table",
     "got an integer (5)"),
    ({"terminal": {}, "backend": FLASH, "issuers": "x"}, "issuers: expected an array", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [5]}, "issuers[0]: expected a table", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "versions": {"zz": 1}}]},
     'issuers[0].versions.zz: expected 32 hex characters (a 16-byte card id)', ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "versions": {"ab" * 16: -1}}]},
     f"issuers[0].versions.{'ab' * 16}: expected an integer from 0", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "version_window": 17}]},
     "issuers[0].version_window: expected an integer from 1 to 16", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "lnurlw_base": "ftp://x"}]},
     "issuers[0].lnurlw_base: expected a URL starting lnurlw://", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY,
                                                    "p_param": "p&x=1"}]},
     "issuers[0].p_param: expected a URL parameter name", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"kind": "deterministic"}]},
     'issuers[0].issuer_key: required with kind = "deterministic"', ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"kind": "table"}]},
     "issuers[0].cards: a key-table issuer needs at least one card", ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"kind": "table", "issuer_key": ISSUER_KEY,
                                                    "cards": [{"k1": ISSUER_KEY,
                                                               "k2": ISSUER_KEY}]}]},
     'issuers[0].issuer_key: only for kind = "deterministic"', ""),
    ({"terminal": {}, "backend": FLASH, "issuers": [{"issuer_key": ISSUER_KEY, "cards": []}]},
     'issuers[0].cards: only for kind = "table"', ""),
    ({"terminal": {}, "backend": FLASH, "lnurl": {"allow_private_hosts": ["http://h.example/"]}},
     "lnurl.allow_private_hosts[0]: expected a host name, not a URL", ""),
    ({"terminal": {}, "backend": FLASH, "terminl": {}}, "terminl: unknown key",
     "did you mean terminal?"),
    ({"terminal": {"nme": "x"}, "backend": FLASH}, "terminal.nme: unknown key", "name"),
    ({"terminal": {}, "backend": FLASH, "\x1b[31mred": 1}, '"\\u001b[31mred": unknown key', ""),
]


@pytest.mark.parametrize(("raw", "start", "phrase"), CASES, ids=[c[1][:48] for c in CASES])
def test_each_problem_is_one_line_naming_the_key(raw, start, phrase):
    problems = problems_of(raw)
    assert len(problems) == 1, problems
    [line] = problems
    assert line.startswith(start), line
    assert phrase in line
    assert "\n" not in line and "\x1b" not in line


def test_every_problem_is_reported_at_once():
    raw = example_raw()
    raw["offline"]["enabled"] = "false"
    raw["lnurl"]["read_timeout_s"] = -1
    raw["issuers"][0]["p_parm"] = "x"
    raw["ui"]["tip_presets"] = ["a"]
    problems = problems_of(raw)
    assert [p.split(":")[0] for p in problems] == [
        "lnurl.read_timeout_s", "issuers[0].p_parm", "offline.enabled", "ui.tip_presets[0]"]


def test_strings_are_never_read_as_booleans_numbers_or_lists():
    for section, key, value in [("offline", "enabled", "true"), ("offline", "enabled", "no"),
                                ("printer", "auto_print", "false"), ("ui", "tips", "yes"),
                                ("offline", "max_queued", "50"), ("lnurl", "max_body_bytes", "1e5"),
                                ("lnurl", "issuer_allowlist", "a,b")]:
        [line] = problems_of(with_(section, {key: value}))
        assert line.startswith(f"{section}.{key}: expected") and "got a string" in line


def test_secret_values_never_appear_in_messages():
    raw = example_raw()
    raw["backend"]["flash"]["api_key"] = ["not", API_KEY]
    raw["issuers"][0]["issuer_key"] = ISSUER_KEY + "00"
    raw["admin"] = {"pin_hash": API_KEY}
    text = "\n".join(problems_of(raw))
    assert API_KEY not in text and ISSUER_KEY not in text
    assert "backend.flash.api_key" in text and "issuers[0].issuer_key" in text


# ------------------------------------------------------------------------------ files


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_non_utf8_terminal_toml_is_refused(tmp_path):
    path = write(tmp_path, BASE.replace('"Test shop"', '"Caf\xe9"').encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == (
        f"{path}: not UTF-8 text (byte 0xe9 at offset {BASE.index('Test shop') + 3}): save it "
        "as UTF-8",)


def test_non_utf8_secrets_toml_is_refused(tmp_path):
    path = write(tmp_path, BASE)
    write(tmp_path, b'[backend.flash]\napi_key = "\xff"\n', "secrets.toml")
    with pytest.raises(ConfigError, match="secrets.toml: not UTF-8 text"):
        load_config(path)


def test_invalid_toml_and_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, BASE + "[terminal]\n"))
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path / "dir.toml")


def test_empty_file_names_the_missing_tables(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert info.value.problems == ("terminal: missing (required)", "backend: missing (required)")
    assert info.value.source == tmp_path / "terminal.toml"


@pytest.mark.parametrize(("secrets", "line"), [
    ("backend = 5\n", "backend: secrets.toml has an integer where the configuration has a table"),
    ('backend = "x"\n', "backend: secrets.toml has a string of 1 characters where"),
    ("[backend]\nflash = [1]\n", "backend.flash: secrets.toml has an array of 1 item where"),
    ("lnurl = 5\n", "lnurl: expected a table, got an integer (5)"),
    ("issuers = 5\n", "issuers: expected an array of issuer tables"),
])
def test_scalar_in_secrets_toml_is_refused_with_the_key(tmp_path, secrets, line):
    path = write(tmp_path, BASE)
    write(tmp_path, secrets, "secrets.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(line), info.value.problems


def test_secrets_file_is_merged_only_when_private(tmp_path):
    path = write(tmp_path, BASE)
    secrets = write(tmp_path, f'[backend.flash]\napi_key = "{API_KEY}"\n', "secrets.toml",
                    mode=0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_config(path)
    os.chmod(secrets, 0o600)
    config = load_config(path)
    assert config.backend.flash.api_key == API_KEY
    assert API_KEY not in repr(config)


def test_issuer_secrets_merge_into_the_public_entry_of_the_same_name(tmp_path):
    path = write(tmp_path, BASE + '[[issuers]]\nname = "cards"\nkind = "deterministic"\n'
                 'hosts = ["card.example"]\n', mode=0o644)
    write(tmp_path, f'[[issuers]]\nname = "cards"\nissuer_key = "{"11" * 16}"\n', "secrets.toml")
    [issuer] = load_config(path).issuers
    assert issuer.hosts == ("card.example",) and issuer.issuer_key == bytes([0x11]) * 16


@pytest.mark.parametrize(("extra", "key"), [
    (f'[admin]\npin_hash = "pbkdf2_sha256$1000${"ab" * 16}${"cd" * 32}"\n', "admin.pin_hash"),
    (f'[[issuers]]\nname = "c"\nissuer_key = "{ISSUER_KEY}"\n', "issuers[0].issuer_key"),
    (f'[[issuers]]\nname = "t"\nkind = "table"\ncards = [{{ k1 = "{ISSUER_KEY}", '
     f'k2 = "{ISSUER_KEY}" }}]\n', "issuers[0].cards[0].k1, issuers[0].cards[0].k2"),
])
def test_world_readable_terminal_toml_holding_a_secret_is_refused(tmp_path, extra, key):
    path = write(tmp_path, BASE + extra, mode=0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [line] = info.value.problems
    assert line == (f"{path} holds secrets ({key}) but is open to other users (mode 0644): "
                    "move them to secrets.toml beside it (mode 0600), or chmod 600 terminal.toml")
    assert ISSUER_KEY not in line
    os.chmod(path, 0o600)
    assert load_config(path).source == path


def test_api_key_in_a_group_readable_terminal_toml_is_refused_with_other_problems(tmp_path):
    text = BASE.replace('username = "shop"', f'api_key = "{API_KEY}"') + "[ui]\ntips = 1\n"
    path = write(tmp_path, text, mode=0o640)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path} holds secrets (backend.flash.api_key)")
    assert info.value.problems[1].startswith("ui.tips: expected true or false")
    assert API_KEY not in str(info.value)


# -- BTCPay Server's card issuers ---------------------------------------------------------------

PULL_PAYMENT_ID = "3dGzDaVRvTmB5ubBC6ykKznAbSy5"


def test_btcpay_issuer_starts_at_version_0_and_builds_btcpays_keyring():
    from terminal.app.root import build_issuer

    raw = example_raw()
    raw["issuers"] = [{"name": "btcpay", "issuer_key": ISSUER_KEY,
                       "pull_payment_id": PULL_PAYMENT_ID},
                      {"name": "boltcard", "issuer_key": ISSUER_KEY},
                      {"name": "btcpay-1", "issuer_key": ISSUER_KEY,
                       "pull_payment_id": PULL_PAYMENT_ID, "first_version": 1}]
    btcpay, boltcard, bumped = parse_config(raw).issuers
    assert (btcpay.pull_payment_id, btcpay.default_version) == (PULL_PAYMENT_ID, 0)
    assert (boltcard.pull_payment_id, boltcard.default_version) == (None, 1)
    assert bumped.default_version == 1
    built = build_issuer(btcpay)
    assert built.pull_payment_id == PULL_PAYMENT_ID and built.default_version == 0


@pytest.mark.parametrize(("issuer", "start"), [
    ({"issuer_key": ISSUER_KEY, "pull_payment_id": "0OIl-not-base58-xxxxxx"},
     "issuers[0].pull_payment_id: expected a BTCPay pull-payment id"),
    ({"issuer_key": ISSUER_KEY, "pull_payment_id": 5},
     "issuers[0].pull_payment_id: expected a BTCPay pull-payment id"),
    ({"issuer_key": ISSUER_KEY, "first_version": -1},
     "issuers[0].first_version: expected an integer from 0"),
    ({"kind": "table", "cards": [{"uid": "04a1b2c3d4e5f6", "k1": "11" * 16, "k2": "22" * 16}],
      "pull_payment_id": PULL_PAYMENT_ID},
     'issuers[0].pull_payment_id: only for kind = "deterministic"'),
])
def test_btcpay_issuer_keys_are_checked(issuer, start):
    raw = {"terminal": {}, "backend": FLASH, "issuers": [issuer]}
    assert any(line.startswith(start) for line in problems_of(raw)), problems_of(raw)
