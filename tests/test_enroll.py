"""`flash-terminal enroll`: files and codes in, a 0600 secrets file and live checks out.

Runs against the sandbox (Flash API) and the BTCPay fake on loopback; files are real, in tmp dirs.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.app import enroll
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.core.pins import verify_pin
from terminal.sandbox.server import SandboxThread
from tests.fakes.btcpay_server import ALL_PERMISSIONS, DEFAULT_KEY, FakeBTCPay

SECRET = "field-staff-enrollment-secret"
PIN = "482916"
NO_READER = "tty:FTNOREADER:pn532"  # nfcpy finds nothing there, at once


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def enrollment(sandbox, tmp_path) -> dict:
    """A receive-only Flash enrollment for the sandbox, with an issuer and an admin PIN."""
    raw = tomllib.loads(sandbox.write_terminal_config(tmp_path / "sandbox.toml").read_text())
    raw["terminal"]["data_dir"] = str(tmp_path / "data")
    raw["admin"] = {"pin": PIN}
    raw["reader"] = {"path": NO_READER}
    return raw


def _write(path: Path, raw: dict) -> Path:
    path.write_text(enroll.dumps_toml(raw))
    return path


def _run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["enroll", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _row(result: dict, name: str) -> dict:
    return next(c for c in result["checks"] if c["name"] == name)


def _all_files_text(folder: Path) -> str:
    return "".join(p.read_text() for p in folder.iterdir())


def test_enroll_from_file_writes_private_secrets_and_passes_live_checks(
    sandbox, enrollment, tmp_path, capsys
):
    etc = tmp_path / "etc"
    code, result = _run(capsys, str(_write(tmp_path / "e.toml", enrollment)),
                        "--config-dir", str(etc))
    assert code == 0, result
    assert result["ok"] is True
    assert result["terminal_id"].startswith("ft-")
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    for name in ("config", "files", "backend", "credentials", "privilege", "rate:USD",
                 "issuer:sandbox"):
        assert statuses[name] == "ok", result
    assert statuses["reader"] == "warn"  # none plugged in: allowed at enrollment
    assert set(_row(result, "reader")) == {"name", "status", "detail", "fix"}

    main_file, secrets_file = etc / "terminal.toml", etc / "secrets.toml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    public = main_file.read_text()
    issuer_hex = sandbox.issuer_key.hex()
    assert issuer_hex not in public and "pin_hash =" not in public
    assert PIN not in _all_files_text(etc)  # only its hash is kept
    assert issuer_hex in secrets_file.read_text()

    config = load_config(main_file)
    assert config.terminal_id == result["terminal_id"]
    assert config.issuers[0].issuer_key == sandbox.issuer_key
    assert config.backend.flash.username == sandbox.username
    assert verify_pin(PIN, config.admin_pin_hash)
    assert not verify_pin("000000", config.admin_pin_hash)


def test_enroll_from_signed_code(sandbox, enrollment, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(enroll.ENV_SECRET, SECRET)
    assert main(["enroll", "--make-code", str(_write(tmp_path / "e.toml", enrollment))]) == 0
    code_text = capsys.readouterr().out.strip()
    assert code_text.startswith("FT1:") and "." in code_text
    assert PIN not in code_text and len(code_text) < enroll.QR_MAX_BYTES

    etc = tmp_path / "etc"
    rc, result = _run(capsys, code_text, "--config-dir", str(etc))
    assert rc == 0, result
    assert _row(result, "enrollment")["status"] == "ok"
    config = load_config(etc / "terminal.toml")
    assert config.issuers[0].issuer_key == sandbox.issuer_key
    assert verify_pin(PIN, config.admin_pin_hash)


def test_tampered_code_is_refused_and_nothing_is_written(enrollment, tmp_path, capsys):
    code_text = enroll.make_code(enrollment, secret=SECRET.encode())
    body, tag = code_text[len("FT1:"):].split(".")
    flipped = "B" if body[10] != "B" else "C"
    tampered = f"FT1:{body[:10]}{flipped}{body[11:]}.{tag}"
    etc = tmp_path / "etc"
    rc, result = _run(capsys, tampered, "--config-dir", str(etc), "--secret", SECRET)
    assert rc == 1
    row = _row(result, "enrollment")
    assert row["status"] == "fail" and "signature" in row["detail"] and row["fix"]
    assert not etc.exists()


def test_wrong_secret_and_unsigned_codes_are_refused(enrollment):
    signed = enroll.make_code(enrollment, secret=SECRET.encode())
    with pytest.raises(enroll.CodeError, match="signature"):
        enroll.decode_code(signed, secret=b"another secret")
    with pytest.raises(enroll.EnrollUsageError):
        enroll.decode_code(signed, secret=None)
    unsigned = enroll.make_code(enrollment, secret=None)
    with pytest.raises(enroll.CodeError, match="not signed"):
        enroll.decode_code(unsigned, secret=SECRET.encode())
    decoded = enroll.decode_code(unsigned, secret=None, allow_unsigned=True)
    assert decoded["backend"] == enrollment["backend"]
    assert "pin" not in decoded["admin"] and verify_pin(PIN, decoded["admin"]["pin_hash"])


def test_signed_code_without_a_secret_is_a_usage_error(enrollment, tmp_path, monkeypatch):
    monkeypatch.delenv(enroll.ENV_SECRET, raising=False)
    signed = enroll.make_code(enrollment, secret=SECRET.encode())
    with pytest.raises(SystemExit) as exit_:
        main(["enroll", signed, "--config-dir", str(tmp_path / "etc")])
    assert exit_.value.code == 2


@given(position=st.integers(min_value=4), char=st.sampled_from("AZaz09-_."))
def test_any_single_character_change_to_a_signed_code_is_refused(position, char):
    raw = {"terminal": {"name": "Shop"}, "backend": {"kind": "flash", "flash": {
        "http_url": "https://x/graphql", "username": "shop"}}}
    code_text = enroll.make_code(raw, secret=b"k")
    position %= len(code_text)
    if position < 4 or code_text[position] == char:
        return
    changed = code_text[:position] + char + code_text[position + 1:]
    try:
        decoded = enroll.decode_code(changed, secret=b"k")
    except enroll.EnrollError:
        return
    # base64url's last character may carry unused bits: then the bytes did not change.
    assert decoded == raw


def test_code_that_inflates_too_far_is_refused():
    import base64
    import zlib

    bomb = zlib.compress(b"{" + b" " * (enroll.MAX_PAYLOAD_BYTES * 4) + b"}", 9)
    code_text = "FT1:" + base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    with pytest.raises(enroll.CodeError, match="more than"):
        enroll.decode_code(code_text, secret=None, allow_unsigned=True)


def test_re_enrollment_keeps_the_terminal_id(enrollment, tmp_path, capsys):
    etc = tmp_path / "etc"
    source = str(_write(tmp_path / "e.toml", enrollment))
    _, first = _run(capsys, source, "--config-dir", str(etc))
    enrollment["terminal"]["name"] = "Renamed shop"
    enrollment["terminal"]["id"] = "ft-someoneelse"
    _, second = _run(capsys, str(_write(tmp_path / "e2.toml", enrollment)),
                     "--config-dir", str(etc))
    assert second["terminal_id"] == first["terminal_id"]
    assert _row(second, "terminal-id")["status"] == "warn"
    config = load_config(etc / "terminal.toml")
    assert config.name == "Renamed shop" and config.terminal_id == first["terminal_id"]


def test_the_id_a_running_terminal_generated_is_kept(enrollment, tmp_path):
    data = Path(enrollment["terminal"]["data_dir"])
    data.mkdir()
    (data / "terminal-id").write_text("ft-alreadyhere\n")
    result = enroll.enroll(enrollment, tmp_path / "etc", dry_run=True)
    assert result.terminal_id == "ft-alreadyhere"
    assert not (tmp_path / "etc").exists()  # dry run


def test_unreachable_backend_fails_with_a_fix(enrollment, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Closed now: nothing listens on that port.
    enrollment["backend"]["flash"]["http_url"] = f"http://127.0.0.1:{port}/graphql"
    rc, result = _run(capsys, str(_write(tmp_path / "e.toml", enrollment)),
                      "--config-dir", str(tmp_path / "etc"))
    assert rc == 1 and result["ok"] is False
    row = _row(result, "backend")
    assert row["status"] == "fail" and str(port) in row["detail"]
    assert "backend.flash.http_url" in row["fix"]
    assert _row(result, "credentials")["status"] == "warn"  # not checked, not blamed


def test_wrong_flash_username_fails_the_credentials_row(enrollment, tmp_path, capsys):
    enrollment["backend"]["flash"]["username"] = "no-such-merchant"
    rc, result = _run(capsys, str(_write(tmp_path / "e.toml", enrollment)),
                      "--config-dir", str(tmp_path / "etc"))
    assert rc == 1
    row = _row(result, "credentials")
    assert row["status"] == "fail" and "no-such-merchant" in row["detail"]
    assert "backend.flash.username" in row["fix"]
    assert _row(result, "backend")["status"] == "ok"


def test_flash_api_key_works_but_is_flagged_and_never_printed(
    sandbox, enrollment, tmp_path, capsys
):
    enrollment["backend"]["flash"]["api_key"] = sandbox.api_key
    del enrollment["backend"]["flash"]["username"]
    etc = tmp_path / "etc"
    rc = main(["enroll", str(_write(tmp_path / "e.toml", enrollment)), "--config-dir", str(etc)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert sandbox.api_key not in out and enroll.mask(sandbox.api_key) in out
    assert "WARN" in out and "spend" in out  # the privilege row
    assert sandbox.api_key not in (etc / "terminal.toml").read_text()
    assert load_config(etc / "terminal.toml").backend.flash.api_key == sandbox.api_key


def test_bad_api_key_fails(sandbox, enrollment, tmp_path, capsys):
    enrollment["backend"]["flash"]["api_key"] = "fk_wrong_key_123456"
    rc, result = _run(capsys, str(_write(tmp_path / "e.toml", enrollment)),
                      "--config-dir", str(tmp_path / "etc"))
    assert rc == 1
    row = _row(result, "credentials")
    assert row["status"] == "fail" and "api_key" in row["fix"]
    assert "fk_wrong_key_123456" not in json.dumps(result)


def _btcpay_enrollment(fake: FakeBTCPay, key: str, tmp_path: Path) -> dict:
    return {
        "terminal": {"name": "BTCPay shop", "network": "regtest", "display_currency": "JMD",
                     "data_dir": str(tmp_path / "data")},
        "backend": {"kind": "btcpay", "btcpay": {"url": fake.base_url,
                                                 "store_id": fake.store_id, "api_key": key}},
        "offline": {"enabled": False},
        "reader": {"path": NO_READER},
    }


def test_btcpay_permissions_exact_too_few_and_too_many(tmp_path):
    broad = "broad-key-0123456789"
    narrow = "narrow-key-0123456789"
    fake = FakeBTCPay(api_keys={
        DEFAULT_KEY: ALL_PERMISSIONS,
        broad: (*ALL_PERMISSIONS, "btcpay.store.canmodifystoresettings"),
        narrow: ALL_PERMISSIONS[:2],  # cannot read the store's rates
    })
    with fake:
        def run(key: str) -> dict[str, enroll.Check]:
            etc = tmp_path / f"etc-{len(key)}"
            result = enroll.enroll(_btcpay_enrollment(fake, key, tmp_path), etc)
            assert key not in json.dumps(result.to_json())
            return {c.name: c for c in result.checks}

        exact = run(DEFAULT_KEY)
        assert exact["credentials"].status is enroll.Status.OK
        assert exact["privilege"].status is enroll.Status.OK
        assert exact["rate:JMD"].status is enroll.Status.OK
        too_many = run(broad)
        assert too_many["privilege"].status is enroll.Status.WARN
        assert "canmodifystoresettings" in too_many["privilege"].detail
        too_few = run(narrow)
        assert too_few["credentials"].status is enroll.Status.FAIL
        assert too_few["credentials"].detail == (
            f"the API key lacks btcpay.store.canviewstoresettings on store {fake.store_id}")
        assert "btcpay.store.canviewstoresettings" in too_few["credentials"].fix
        assert too_few["rate:JMD"].status is enroll.Status.FAIL
        # canviewstoresettings includes canviewinvoices: a key without the latter is enough.
        fake.api_keys["implied"] = ("btcpay.store.cancreateinvoice",
                                    "btcpay.store.canviewstoresettings")
        implied = run("implied")
        assert implied["credentials"].status is enroll.Status.OK
        assert implied["privilege"].status is enroll.Status.OK


def test_btcpay_before_2_is_refused_at_enrollment(tmp_path):
    with FakeBTCPay(version="1.13.7") as fake:
        result = enroll.enroll(_btcpay_enrollment(fake, DEFAULT_KEY, tmp_path), tmp_path / "etc")
    row = {c.name: c for c in result.checks}["credentials"]
    assert not result.ok and row.status is enroll.Status.FAIL
    assert row.detail.startswith("BTCPay Server 1.13.7 is older than 2.0.0")
    assert row.fix == "upgrade BTCPay Server to 2.0.0 or later"


def test_btcpay_wrong_store_id_is_named_at_enrollment(tmp_path):
    with FakeBTCPay() as fake:
        raw = _btcpay_enrollment(fake, DEFAULT_KEY, tmp_path)
        raw["backend"]["btcpay"]["store_id"] = "TypoStore"
        result = enroll.enroll(raw, tmp_path / "etc")
    row = {c.name: c for c in result.checks}["credentials"]
    assert row.status is enroll.Status.FAIL
    assert row.detail.startswith(f"the API key is for store {fake.store_id}, not TypoStore")
    assert "backend.btcpay.store_id" in row.fix


def test_invalid_enrollment_writes_nothing_and_names_the_key(enrollment, tmp_path, capsys):
    enrollment["issuers"][0]["issuer_key"] = "zz"
    etc = tmp_path / "etc"
    rc, result = _run(capsys, str(_write(tmp_path / "e.toml", enrollment)),
                      "--config-dir", str(etc))
    assert rc == 1
    row = _row(result, "config")
    assert row["status"] == "fail" and "issuer_key" in row["detail"]
    assert not etc.exists()


def test_example_issuer_key_and_missing_printer_fail(enrollment):
    enrollment["issuers"][0]["issuer_key"] = "00000000000000000000000000000001"
    enrollment["printer"] = {"enabled": True, "port": "/dev/ft-no-such-printer"}
    checks = {c.name: c for c in enroll.enroll(enrollment, Path("/unused"), dry_run=True).checks}
    assert checks["issuer:sandbox"].status is enroll.Status.FAIL
    assert checks["printer"].status is enroll.Status.FAIL and checks["printer"].fix


def test_unknown_source_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["enroll", str(tmp_path / "missing.toml"), "--config-dir", str(tmp_path)])
    assert exit_.value.code == 2


def test_secrets_file_is_never_wider_than_0600_even_with_a_lax_umask(enrollment, tmp_path):
    old = os.umask(0)
    try:
        files = enroll.write_config(tmp_path / "etc", enroll.prepare(enrollment))
    finally:
        os.umask(old)
    assert stat.S_IMODE(files[1].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o644


# ---------------------------------------------------------------------- pure parts

_keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=12,
)
_tables = st.dictionaries(_keys, _values, max_size=5)


@given(_tables)
def test_toml_writer_round_trips(raw):
    assert tomllib.loads(enroll.dumps_toml(raw)) == raw


def _merge(base: dict, extra: dict) -> dict:  # as terminal.app.config merges secrets.toml
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_with_secrets = st.recursive(
    st.one_of(_scalars, st.just("SECRET")),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["api_key", "issuer_key", "name", "k1", "url", "x"]),
                        inner, max_size=4),
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["terminal", "backend", "issuers", "api_key", "a"]),
                       _with_secrets, max_size=5))
def test_split_secrets_merges_back_and_leaves_no_secret_key_public(raw):
    original = copy.deepcopy(raw)
    public, secret = enroll.split_secrets(raw)
    assert raw == original
    assert tomllib.loads(enroll.dumps_toml(_merge(public, secret))) == raw
    assert not enroll._holds_secret(public)
