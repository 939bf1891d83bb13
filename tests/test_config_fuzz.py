"""Malformed configurations made from valid ones, key by key: every one is refused with a
`ConfigError` whose lines name each broken key; none is accepted, none ends in a traceback.

The valid bases are `config.example.toml` and FULL (every key of the schema set; a test checks
that together they cover the whole schema, so a new key is fuzzed as soon as it is added to
them). Mutations: a value of another TOML type, an unknown key in any table (inline card tables
and `max_sale` included), strings that no string key accepts, numbers out of every range, strings
for booleans and lists, bad hex, bad URLs, and a byte that is not UTF-8 in the file.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from terminal.app.cli import main
from terminal.app.config import ConfigError, ConfigFile, load_config, parse_config
from terminal.app.config.problems import HIDDEN_KEYS, models_in
from terminal.app.enroll import dumps_toml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TEXT = (ROOT / "config.example.toml").read_text()

FULL_TEXT = """\
[terminal]
name = "Full shop"
id = "ft-0123456789ab"
network = "signet"
display_currency = "USD"
currencies = ["USD", "JMD", "SAT"]
data_dir = "/var/lib/flash-terminal"
max_rate_age_s = 300
invoice_expiry_s = 600
max_sale = { USD = "2500.50", JMD = "400000", SAT = 5000000 }

[backend]
kind = "btcpay"

[backend.flash]
http_url = "http://127.0.0.1:8799/graphql"
ws_url = "ws://127.0.0.1:8799/graphql"
username = "shop"
api_key = "flash_api_key_secret_aaaaaaaaaaaaaaaaaaaa"
wallet_currency = "USD"

[backend.btcpay]
url = "https://btcpay.example.com"
store_id = "StoreIdABC123"
api_key = "btcpay_api_key_secret_bbbbbbbbbbbbbbbbbbbb"

[lnurl]
allow_insecure_hosts = ["127.0.0.1"]
allow_private_hosts = ["127.0.0.1", "::1"]
issuer_allowlist = ["cards.example.com"]
connect_timeout_s = 2.5
read_timeout_s = 8.0
callback_timeout_s = 30.0
max_body_bytes = 32768

[[issuers]]
name = "derived"
kind = "deterministic"
issuer_key = "c0ffee00c0ffee00c0ffee00c0ffee01"
versions = { "abababababababababababababababab" = 2 }
hosts = ["cards.example.com"]
p_param = "p"
c_param = "c"
lnurlw_base = "lnurlw://cards.example.com/ln"
version_window = 8

[[issuers]]
name = "btcpay-cards"
kind = "deterministic"
issuer_key = "c0ffee00c0ffee00c0ffee00c0ffee02"
pull_payment_id = "3dGzDaVRvTmB5ubBC6ykKznAbSy5"
first_version = 0

[[issuers]]
name = "lnbits"
kind = "table"
hosts = ["lnbits.example.com"]
p_param = "pp"
c_param = "cc"
cards = [
  { uid = "04a1b2c3d4e5f6", k1 = "1111111111111111aaaaaaaaaaaaaaaa", k2 = "2222222222222222bbbbbbbbbbbbbbbb" },
  { card_id = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", k1 = "3333333333333333cccccccccccccccc", k2 = "4444444444444444dddddddddddddddd" },
]
unknown_cards = "online-only"

[offline]
enabled = false
floor_limit_msat = 10000000
per_card_cap_msat = 30000000
total_cap_msat = 100000000
max_queued = 20
max_age_s = 3600

[cards]
max_per_tap_sats = 50000
max_per_day_sats = 200000
max_taps_per_hour = 12
unknown_cards = "require-verification"
hotlist_refresh_s = 300.0
hotlist_retry_s = 30.0
hotlist_max_bytes = 65536

[[cards.limits]]
card_id = "abababababababababababababababab"
max_per_tap_sats = 0
max_per_day_sats = 500000
max_taps_per_hour = 30

[[cards.hotlists]]
name = "issuer"
url = "https://cards.example.com/hotlist.json"
kind = "hotlist"

[[cards.hotlists]]
name = "lnbits-cards"
url = "https://lnbits.example.com/boltcards/api/v1/cards"
kind = "lnbits"
api_key = "lnbits_invoice_key_secret_cccccccccccc"

[reader]
path = "tty:AMA0:pn532"
card_file = "card.json"

[printer]
enabled = true
port = "/dev/ttyUSB0"
baudrate = 9600
width_mm = 80
auto_print = false
query_status = false

[ui]
tips = true
tip_presets = [5, 10, 15, 20]
tip_custom = false
result_seconds = 5
require_sign_in = false
show_card_balance = true

[[cashiers]]
id = "ana"
name = "Ana"
role = "cashier"
pin_hash = "pbkdf2_sha256$200000$00112233445566778899aabbccddeeff$1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

[[cashiers]]
id = "max-2"
name = "Max"
role = "manager"
pin_hash = "pbkdf2_sha256$200000$00112233445566778899aabbccddeeff$2123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

[admin]
pin_hash = "pbkdf2_sha256$200000$00112233445566778899aabbccddeeff$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
"""  # noqa: E501

BASES = {"example": tomllib.loads(EXAMPLE_TEXT), "full": tomllib.loads(FULL_TEXT)}

Path_ = tuple[str | int, ...]


# ------------------------------------------------------------------------------ walking


def walk(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every (path, value) below `value`: tables, arrays, their items and scalars."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), item
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield (*path, n), item
            yield from walk(item, (*path, n))


def tables(raw: dict) -> list[Path_]:
    return [()] + [p for p, v in walk(raw) if isinstance(v, dict)]


def shown(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def get(raw: dict, path: Path_) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def put(raw: dict, path: Path_, value: Any) -> dict:
    out = copy.deepcopy(raw)
    get(out, path[:-1])[path[-1]] = value
    return out


def secrets_of(raw: dict) -> list[str]:
    return [v for p, v in walk(raw) if isinstance(v, str) and p and p[-1] in HIDDEN_KEYS]


# ------------------------------------------------------------------------------ mutations

DATE = dt.date(2026, 3, 1)
BAD_STRINGS = ("", "\x1b[2J\x1b[31mred", "x" * 5000)  # no string key accepts these
BAD_INTS = (-1, 10**30)
BAD_FLOATS = (-1.0, 0.0, math.inf, -math.inf, math.nan, 1e12)
BAD_BOOLS = ("false", "true", "yes", 0, 1)
BAD_URLS = ("ftp://example.com/x", "example.com/graphql", "https://", "http://exa mple.com/",
            "https://h.example:99999/", "https://h.example:port/")
HEX_KEYS = ("issuer_key", "k1", "k2", "uid", "card_id")
URL_KEYS = ("http_url", "ws_url", "url", "lnurlw_base")


def wrong_types(path: Path_, value: Any) -> list[Any]:
    """Values of a TOML type the key surely refuses."""
    if "max_sale" in path and not isinstance(value, dict):  # a string or an integer is fine
        return [1.5, True, [1], {"a": 1}, DATE]
    if isinstance(value, bool):
        return ["true", 1, 1.0, [True], {"a": True}, DATE]
    if isinstance(value, int):
        return ["abc", "20000000", 5.0, True, [value], {"a": value}, DATE]
    if isinstance(value, float):  # an integer is a fine number of seconds
        return ["3", True, [value], {"a": value}, DATE]
    if isinstance(value, str):
        return [5, 1.5, False, [value], {"a": value}, DATE]
    if isinstance(value, list):
        return ["a, b", 5, True, {"a": 1}, DATE]
    return ["table", 5, 1.5, True, [1], DATE]


def mutations(raw: dict) -> Iterator[tuple[str, Path_, Any]]:
    """(kind, path, new value): each makes `raw` invalid at `path`."""
    for path, value in walk(raw):
        for bad in wrong_types(path, value):
            yield "type", path, bad
        key = path[-1]
        if isinstance(value, str):
            for bad in BAD_STRINGS:
                yield "string", path, bad
            if key in HEX_KEYS:
                for bad in (value[:-1], value + "0", "zz" + value[2:], "0x" + value,
                            " ".join(value[i:i + 2] for i in range(0, len(value), 2))):
                    yield "hex", path, bad
            if key in URL_KEYS:
                for bad in BAD_URLS:
                    yield "url", path, bad
        elif isinstance(value, bool):
            for bad in BAD_BOOLS:
                yield "bool", path, bad
        elif isinstance(value, int):
            for bad in BAD_INTS:
                yield "range", path, bad
        elif isinstance(value, float):
            for bad in BAD_FLOATS:
                yield "range", path, bad
        elif isinstance(value, list) and all(not isinstance(v, dict) for v in value):
            yield "list", path, ", ".join(str(v) for v in value)


def unknown_keys(raw: dict) -> Iterator[tuple[str, Path_, Any]]:
    for table in tables(raw):
        yield "unknown", (*table, "zz_not_a_key"), 1
        yield "unknown", (*table, "p_parm"), "p"


def all_mutations() -> list[tuple[str, str, Path_, Any]]:
    found = []
    for name, raw in BASES.items():
        found += [(name, *m) for m in mutations(raw)]
        found += [(name, *m) for m in unknown_keys(raw)]
    return found


MUTATIONS = all_mutations()


def assert_refused_naming(raw: dict, paths: list[Path_], secrets: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    lines = info.value.problems
    for path in paths:
        want = shown(path)
        assert any(line.startswith(want) and line[len(want)] in ":[." for line in lines), (
            want, lines)
    text = str(info.value)
    for line in lines:
        assert "\n" not in line and not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in line)
    for value in secrets:
        assert value not in text


# ------------------------------------------------------------------------------ the tests


def test_the_bases_are_valid_and_cover_every_key_of_the_schema():
    for raw in BASES.values():
        parse_config(raw)

    def schema_paths(model, prefix: str = "") -> set[str]:
        out = set()
        for name, info in model.model_fields.items():
            here = f"{prefix}.{info.alias or name}" if prefix else info.alias or name
            out.add(here)
            for nested in models_in(info.annotation):
                out |= schema_paths(nested, here)
        return out

    def base_paths(raw) -> set[str]:
        return {".".join(str(p) for p in path if not isinstance(p, int))
                for path, _ in walk(raw)}

    covered = set().union(*(base_paths(raw) for raw in BASES.values()))
    missing = schema_paths(ConfigFile) - covered
    assert not missing, f"add these keys to FULL_TEXT so they are fuzzed: {sorted(missing)}"


def test_every_single_mutation_of_every_key_is_refused_naming_it():
    assert len(MUTATIONS) > 800
    kinds = {m[1] for m in MUTATIONS}
    assert kinds == {"type", "string", "hex", "url", "bool", "range", "list", "unknown"}
    for base, _kind, path, value in MUTATIONS:
        raw = BASES[base]
        assert_refused_naming(put(raw, path, value), [path], secrets_of(raw))


def _disjoint(paths: list[Path_]) -> bool:
    return not any(a != b and a == b[:len(a)] for a in paths for b in paths) and \
        len(set(paths)) == len(paths)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(sorted(BASES)), picks=st.lists(
    st.integers(min_value=0, max_value=10**9), min_size=1, max_size=4))
def test_several_mutations_at_once_are_all_named(base, picks):
    raw = BASES[base]
    candidates = [m for m in MUTATIONS if m[0] == base]
    chosen = [candidates[p % len(candidates)] for p in picks]
    paths = [m[2] for m in chosen]
    assume(_disjoint(paths))
    mutated = raw
    for _, _, path, value in chosen:
        mutated = put(mutated, path, value)
    assert_refused_naming(mutated, paths, secrets_of(raw))


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pick=st.integers(min_value=0, max_value=10**9))
def test_malformed_files_end_in_exit_2_without_a_traceback(tmp_path, capsys, pick):
    base, _, path, value = MUTATIONS[pick % len(MUTATIONS)]
    assume(not (isinstance(value, float) and math.isnan(value)))  # nan is fine, just noisy
    file = tmp_path / "terminal.toml"
    file.write_text(dumps_toml(put(BASES[base], path, value)))
    os.chmod(file, 0o600)
    with pytest.raises(ConfigError):
        load_config(file)
    with pytest.raises(SystemExit) as info:
        main(["sync", "--config", str(file)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "Traceback" not in err and shown(path) in err


@settings(max_examples=100, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(["example", "full"]), where=st.floats(min_value=0, max_value=1),
       byte=st.integers(min_value=0x80, max_value=0xFF))
def test_a_byte_that_is_not_utf8_anywhere_is_refused(tmp_path, base, where, byte):
    text = (EXAMPLE_TEXT if base == "example" else FULL_TEXT).encode()
    at = int(where * len(text))
    data = text[:at] + bytes([byte]) + text[at:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        assume(False)
    file = tmp_path / "terminal.toml"
    file.write_bytes(data)
    os.chmod(file, 0o600)
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0x[0-9a-f]{2} at offset \d+\)"):
        load_config(file)


@given(key=st.text(min_size=1, max_size=20))
def test_unknown_keys_of_any_spelling_are_named_and_escaped(key):
    raw = BASES["example"]
    assume(key not in raw["offline"])
    with pytest.raises(ConfigError) as info:
        parse_config(put(raw, ("offline", key), 1))
    [line] = info.value.problems
    assert line.startswith("offline.") and "unknown key" in line
    assert line.isprintable() and line.isascii()
