"""`card simulate` contract: a programmed card's taps verify with `card decode`; info and blank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from hw.ntag424.crypto import aes_ecb_decrypt
from terminal.app.cli import main
from terminal.protocols.boltcard import derive_card_keys

ROOT = Path(__file__).resolve().parents[1]
ISSUER_KEY = "00000000000000000000000000000001"
UID = "04a39493cc8680"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_programmed_card_taps_verify_with_decode_and_counter_advances(tmp_path, capsys):
    card = tmp_path / "card.json"
    code, _ = run(capsys, "card", "simulate", "new", str(card), "--url",
                  "lnurlw://card.example.com/ln", "--uid", UID, "--issuer-key", ISSUER_KEY,
                  "--version", "1")
    assert code == 0
    assert (os.stat(card).st_mode & 0o777) == 0o600  # the file holds the card's keys
    keys = derive_card_keys(bytes.fromhex(ISSUER_KEY), bytes.fromhex(UID), 1)
    counters = []
    for _ in range(2):
        code, out = run(capsys, "card", "simulate", "tap", str(card))
        url = out.strip().splitlines()[-1]
        assert url.startswith("lnurlw://card.example.com/ln?p=")
        code, out = run(capsys, "card", "decode", url, "--k1", keys.k1.hex(),
                        "--k2", keys.k2.hex(), "--json")
        decoded = json.loads(out)
        assert code == 0 and decoded["valid"] and decoded["uid"] == UID
        counters.append(decoded["counter"])
    assert counters[1] == counters[0] + 1  # one tap = one read sequence
    code, out = run(capsys, "card", "simulate", "info", str(card), "--json")
    assert json.loads(out) == {"uid": UID, "counter": counters[1], "key_versions": [1] * 5}


def test_explicit_keys_and_blank_card(tmp_path, capsys):
    keys = [f"{n:02x}" * 16 for n in range(1, 6)]
    card = tmp_path / "explicit.json"
    args = ["card", "simulate", "new", str(card), "--url", "lnurlw://x.example/ln"]
    for n, key in enumerate(keys):
        args += [f"--k{n}", key]
    assert run(capsys, *args)[0] == 0
    _, out = run(capsys, "card", "simulate", "tap", str(card))
    _, out = run(capsys, "card", "decode", out.strip().splitlines()[-1], "--k1", keys[1],
                 "--k2", keys[2], "--json")
    assert json.loads(out)["valid"] is True

    blank = tmp_path / "blank.json"
    assert run(capsys, "card", "simulate", "new", str(blank), "--blank", "--uid", UID)[0] == 0
    _, out = run(capsys, "card", "simulate", "info", str(blank), "--json")
    assert json.loads(out) == {"uid": UID, "counter": 0, "key_versions": [0] * 5}
    code = main(["card", "simulate", "tap", str(blank)])
    assert code == 3 and "no URL" in capsys.readouterr().err  # nothing to emit


@pytest.mark.parametrize(
    "argv",
    [
        ["card", "simulate", "new", "x.json"],  # neither --url nor --blank
        ["card", "simulate", "new", "x.json", "--url", "lnurlw://h/ln"],  # no keys
        ["card", "simulate", "new", "x.json", "--blank", "--uid", "zz"],
        ["card", "simulate", "new", "x.json", "--url", "lnurlw://h/ln", "--k0", "00"],
    ],
)
def test_usage_errors_exit_2(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_console_script_contract_in_a_subprocess(tmp_path):
    card = tmp_path / "sub.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "terminal.app.cli", "card", "simulate", "new", str(card),
                    "--url", "lnurlw://h.example/ln", "--issuer-key", ISSUER_KEY], check=True,
                   env=env, capture_output=True)
    tap = subprocess.run([sys.executable, "-m", "terminal.app.cli", "card", "simulate", "tap",
                          str(card)], check=True, env=env, capture_output=True, text=True)
    url = tap.stdout.strip().splitlines()[-1]
    wrong = subprocess.run([sys.executable, "-m", "terminal.app.cli", "card", "decode", url,
                            "--k1", "00" * 16, "--k2", "00" * 16, "--json"], env=env,
                           capture_output=True, text=True)
    assert wrong.returncode == 3
    # The tap is random: decrypted with the wrong k1, p starts with the PICC data tag (0xC7) one
    # time in 256, and then the CMAC is what fails. Expect exactly the reason this p gives.
    p = parse_qs(urlsplit(url).query)["p"][0]
    tag = aes_ecb_decrypt(bytes(16), bytes.fromhex(p))[0]
    expected = "cmac-mismatch" if tag == 0xC7 else "not-picc-data"
    assert json.loads(wrong.stdout)["reason"] == expected
