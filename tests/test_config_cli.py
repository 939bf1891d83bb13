"""An unusable configuration ends every command that reads one with a plain paragraph naming
each problem (exit 2; `doctor` keeps its documented 1: the configuration is one of its checks),
never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.app.cli import main

BAD = """\
[terminal]
name = "Test shop"
data_dir = "data"
invoice_expiry_s = "abc"

[backend]
kind = "flash"

[backend.flash]
http_url = "ftp://api.flash.example/graphql"
username = "shop"

[offline]
enabled = "false"

[[issuers]]
name = "cards"
issuer_key = "0011"
p_parm = "x"
"""
KEYS = ("terminal.invoice_expiry_s", "backend.flash.http_url", "offline.enabled",
        "issuers[0].issuer_key", "issuers[0].p_parm")
# (argv before --config, exit code)
COMMANDS = [
    (["charge", "5", "--qr"], 2),
    (["charge", "5", "--tap", "lnurlw://x.example/ln?p=00&c=00"], 2),
    (["sync"], 2),
    (["sync", "--json"], 2),
    (["run"], 2),
    (["history"], 2),  # a bad configuration is a usage error everywhere (README exit codes)
    (["doctor"], 2),  # the config check fails: the table says why, exit 2 like the rest
]


@pytest.fixture
def bad_config(tmp_path, monkeypatch):
    path = tmp_path / "terminal.toml"
    path.write_text(BAD)
    os.chmod(path, 0o600)
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    return path


@pytest.mark.parametrize(("argv", "code"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_invalid_configuration_is_one_paragraph_and_the_documented_exit(
        bad_config, capsys, argv, code):
    try:
        got = main([*argv, "--config", str(bad_config)])
    except SystemExit as exc:
        got = exc.code
    out, err = capsys.readouterr()
    assert got == code
    text = out + err
    assert "Traceback" not in text and "usage:" not in err
    for key in KEYS:
        assert key in text, key
    if code == 2 and argv[0] == "doctor":  # its table of checks names each problem
        assert out.startswith("[FAIL] config") and err == ""
    elif code == 2:
        lines = err.rstrip("\n").split("\n")
        assert lines[0] == f"flash-terminal {argv[0]}: the configuration {bad_config} is not valid:"
        assert len(lines) == 2 + len(KEYS) and all(line.startswith("  ") for line in lines[1:])
        assert out == ""


def test_missing_configuration_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sync", "--config", str(tmp_path / "nope.toml")])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"flash-terminal sync: configuration file not found: {tmp_path / 'nope.toml'}\n")


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FLASH_TERMINAL_CONFIG"}
    env["SDL_VIDEODRIVER"] = "offscreen"
    return subprocess.run([sys.executable, "-m", "terminal.app.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("argv", [["charge", "5", "--qr"], ["sync"], ["history"], ["doctor"],
                                  ["run"]], ids=lambda a: a[0])
def test_no_traceback_from_the_real_entry_point(bad_config, tmp_path, argv):
    utf8_broken = tmp_path / "broken" / "terminal.toml"
    utf8_broken.parent.mkdir()
    utf8_broken.write_bytes(BAD.encode().replace(b"Test shop", b"Caf\xe9"))
    for path in (bad_config, utf8_broken):
        done = _cli(*argv, "--config", str(path), cwd=tmp_path)
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
        assert "Error" not in done.stderr  # no exception class names either
    assert "not UTF-8 text (byte 0xe9" in done.stdout + done.stderr
