"""`flash-terminal card decode` / `card keys`: output contract and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.app.cli import main

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
SUN = json.loads((VECTORS / "boltcard-sun.json").read_text())
KEYS = json.loads((VECTORS / "boltcard-keys.json").read_text())
REAL = next(case for case in SUN["cases"] if case["name"] == "boltcard-real-card-1")
NXP = next(case for case in SUN["cases"] if case["name"] == "an12196-table3-table5")


def decode_args(case: dict, url: str | None = None, *extra: str) -> list[str]:
    return ["card", "decode", url or case["url"], "--k1", case["k1"], "--k2", case["k2"], *extra]


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize("case", [c for c in SUN["cases"] if "url" in c], ids=lambda c: c["name"])
def test_decode_vectors_json(capsys, case):
    extra = ["--p-param", case["p_param"]] if "p_param" in case else []
    code, out = run_json(capsys, decode_args(case, None, *extra, "--json"))
    assert code == 0
    assert out == {"valid": True, "uid": case["expect"]["uid"].lower(),
                   "counter": case["expect"]["counter"], "reason": None}


@pytest.mark.parametrize("case", [c for c in SUN["cases"] if "url" not in c],
                         ids=lambda c: c["name"])
def test_decode_invalid_vectors_json(capsys, case):
    url = f"lnurlw://card.yourdomain.com/ln?p={case['p']}&c={case['c']}"
    code, out = run_json(capsys, decode_args(case, url, "--json"))
    assert code == 3
    expect = case["expect"]
    assert out["valid"] is False and out["reason"] == expect["reason"]
    if expect["reason"] == "not-picc-data":
        assert out["uid"] is None and out["counter"] is None
    else:
        assert out["uid"] == REAL["expect"]["uid"].lower() and out["counter"] == 3
    assert list(out) == ["valid", "uid", "counter", "reason"]


@pytest.mark.parametrize("url", SUN["malformed_urls"])
def test_decode_malformed_json(capsys, url):
    code = main(decode_args(REAL, url, "--json"))
    captured = capsys.readouterr()
    assert code == 3
    assert json.loads(captured.out) == {"valid": False, "uid": None, "counter": None,
                                        "reason": "malformed"}
    assert captured.err.strip()  # the specific detail goes to stderr


def test_decode_custom_c_param(capsys):
    url = f"https://x.example/scan?picc_data={REAL['p']}&cmac={REAL['c']}"
    code, out = run_json(capsys, decode_args(REAL, url, "--p-param", "picc_data",
                                             "--c-param", "cmac", "--json"))
    assert code == 0 and out["valid"] is True and out["counter"] == 3


def test_decode_human_readable(capsys):
    assert main(decode_args(REAL)) == 0
    out = capsys.readouterr().out
    assert "valid:   yes" in out and "04996c6a926980" in out and "counter: 3" in out
    tampered = REAL["url"][:-1] + "F"
    assert main(decode_args(REAL, tampered)) == 3
    out = capsys.readouterr().out
    assert "valid:   no" in out and "cmac-mismatch" in out


@pytest.mark.parametrize("bad", ["0c3b25d92b38ae443229dd59ad34b85", "zz" * 16, ""])
def test_decode_bad_key_is_usage_error(capsys, bad):
    with pytest.raises(SystemExit) as info:
        main(["card", "decode", REAL["url"], "--k1", bad, "--k2", REAL["k2"], "--json"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--k1" in err and "32 hex characters" in err
    if bad:
        assert bad not in err  # key material is not echoed


def test_keys_json(capsys):
    case = KEYS["cases"][0]
    code, out = run_json(capsys, ["card", "keys", "--issuer-key", case["issuer_key"], "--uid",
                                  case["uid"].upper(), "--version", str(case["version"]), "--json"])
    expect = case["expect"]
    assert code == 0
    assert out == {"k0": expect["k0"], "k1": expect["k1"], "k2": expect["k2"], "k3": expect["k3"],
                   "k4": expect["k4"], "card_id": expect["id"]}


def test_keys_human_readable(capsys):
    case = KEYS["cases"][0]
    assert main(["card", "keys", "--issuer-key", case["issuer_key"], "--uid", case["uid"],
                 "--version", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("k0", "k1", "k2", "k3", "k4"):
        assert case["expect"][name] in out
    assert "card ID" in out and case["expect"]["id"] in out


@pytest.mark.parametrize("argv", [
    ["--issuer-key", "00" * 16, "--uid", "04a39493cc86", "--version", "1"],
    ["--issuer-key", "00" * 16, "--uid", "04a39493cc8680", "--version", "-1"],
    ["--issuer-key", "00" * 16, "--uid", "04a39493cc8680", "--version", str(2**32)],
    ["--issuer-key", "00" * 15, "--uid", "04a39493cc8680", "--version", "1"],
])
def test_keys_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["card", "keys", *argv, "--json"])
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


def test_exit_codes_via_subprocess():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "terminal.app.cli", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    ok = run(*decode_args(NXP, None, "--p-param", "e", "--json"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"valid": True, "uid": "04de5f1eacc040", "counter": 61,
                                     "reason": None}
    invalid = run(*decode_args(REAL, REAL["url"][:-1] + "F", "--json"))
    assert invalid.returncode == 3
    assert json.loads(invalid.stdout)["reason"] == "cmac-mismatch"
    usage = run("card", "decode", REAL["url"], "--k1", "nothex", "--k2", REAL["k2"], "--json")
    assert usage.returncode == 2 and "--k1" in usage.stderr
