"""`flash-terminal card program` / `card wipe` on a simulated card file (the acceptance path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.sim.card import SimulatedNtag424
from terminal.adapters.provisioning_journal import ProvisioningJournal, journal_for_card_file
from terminal.app.cli import main

K = {f"k{n}": f"{n + 1:x}{n + 1:x}" * 16 for n in range(5)}
ISSUER_KEY = "00000000000000000000000000000001"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "card.json"
    assert run(capsys, "card", "simulate", "new", str(path), "--blank",
               "--uid", "04a1b2c3d4e5f6")[0] == 0
    return path


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"protocol_name": "create_bolt_card_response",
                                "lnurlw_base": "lnurlw://pos.example/ln", **K}))
    return path


def info(capsys: pytest.CaptureFixture[str], sim: Path) -> dict:
    code, out, _ = run(capsys, "card", "simulate", "info", str(sim), "--json")
    assert code == 0
    return json.loads(out)


def test_program_tap_decode_wipe(capsys, sim: Path, keys_file: Path) -> None:
    code, out, _ = run(capsys, "card", "program", "--keys-file", str(keys_file),
                       "--card-file", str(sim), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["error"] is None
    assert "change key 0" in report["steps"] and report["steps"][-1] == "read back"
    # The URL the card carries, never the first tap's spendable p/c.
    assert report["url"] == "lnurlw://pos.example/ln" and report["card_id"]
    assert info(capsys, sim)["key_versions"] == [1] * 5

    code, out, _ = run(capsys, "card", "simulate", "tap", str(sim))
    url = out.strip().splitlines()[-1]
    code, out, _ = run(capsys, "card", "decode", url, "--k1", K["k1"], "--k2", K["k2"], "--json")
    decoded = json.loads(out)
    assert code == 0 and decoded["valid"] and decoded["uid"] == "04a1b2c3d4e5f6"
    assert decoded["counter"] == 2

    code, out, _ = run(capsys, "card", "wipe", "--keys-file", str(keys_file),
                       "--card-file", str(sim), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["steps"][-1] == "clear URL"
    assert info(capsys, sim)["key_versions"] == [0] * 5
    card = SimulatedNtag424.load(sim, autosave=False)
    assert [k.value for k in card.state.keys] == [bytes(16)] * 5
    assert card.state.files[2].settings.sdm is None
    assert ProvisioningJournal(journal_for_card_file(sim)).pending() == []


def test_issuer_key_program_and_wipe(capsys, sim: Path) -> None:
    code, out, _ = run(capsys, "card", "program", "--issuer-key", ISSUER_KEY, "--version", "2",
                       "--url", "lnurlw://pos.example/ln", "--card-file", str(sim), "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out, _ = run(capsys, "card", "keys", "--issuer-key", ISSUER_KEY,
                       "--uid", "04a1b2c3d4e5f6", "--version", "2", "--json")
    keys = json.loads(out)
    code, out, _ = run(capsys, "card", "simulate", "tap", str(sim))
    code, _, _ = run(capsys, "card", "decode", out.split()[-1], "--k1", keys["k1"],
                     "--k2", keys["k2"], "--json")
    assert code == 0
    code, out, _ = run(capsys, "card", "wipe", "--issuer-key", ISSUER_KEY,
                       "--card-file", str(sim), "--json")
    report = json.loads(out)
    assert code == 0 and report["card_id"] == keys["card_id"]
    assert info(capsys, sim)["key_versions"] == [0] * 5


def test_wrong_keys_fail_with_exit_1_and_no_authentication(
    capsys, sim: Path, keys_file: Path, tmp_path: Path
) -> None:
    assert run(capsys, "card", "program", "--keys-file", str(keys_file),
               "--card-file", str(sim), "--json")[0] == 0
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"action": "wipe", "version": 1,
                                 **{f"k{n}": "ab" * 16 for n in range(5)}}))
    code, out, _ = run(capsys, "card", "wipe", "--keys-file", str(wrong),
                       "--card-file", str(sim), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and "does not verify" in report["error"]
    card = SimulatedNtag424.load(sim, autosave=False)
    assert [k.tot_fail_ctr for k in card.state.keys] == [0] * 5
    assert card.state.consecutive_auth_failures == 0
    assert info(capsys, sim)["key_versions"] == [1] * 5


def test_not_blank_and_usage_errors(capsys, sim: Path, keys_file: Path) -> None:
    assert run(capsys, "card", "program", "--keys-file", str(keys_file),
               "--card-file", str(sim))[0] == 0
    code, out, _ = run(capsys, "card", "program", "--issuer-key", ISSUER_KEY,
                       "--url", "lnurlw://x.example/ln", "--card-file", str(sim), "--json")
    assert code == 1 and "already programmed" in json.loads(out)["error"]
    with pytest.raises(SystemExit) as exit_info:
        main(["card", "program", "--keys-file", str(keys_file), "--card-file", str(sim),
              "--random-uid"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["card", "wipe", "--card-file", str(sim)])  # no key source
    assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("action", ["program", "wipe"])
def test_a_named_configuration_must_be_usable(capsys, sim: Path, keys_file: Path,
                                              tmp_path: Path, action: str) -> None:
    """`--config` names the terminal whose journal and URL policy are used; a missing or broken
    one is a usage error (exit 2) before the card is touched."""
    before = sim.read_bytes()
    bad = tmp_path / "terminal.toml"
    bad.write_text("[terminal]\nnetwork = 5\n")
    bad.chmod(0o600)
    for config, words in ((tmp_path / "nope.toml", "not found"), (bad, "terminal.network")):
        try:
            code = main(["card", action, "--keys-file", str(keys_file), "--card-file", str(sim),
                         "--config", str(config), "--json"])
        except SystemExit as exc:  # the console entry exits with it
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err
    assert sim.read_bytes() == before
