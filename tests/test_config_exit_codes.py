"""`doctor` and `history` exit 2 on an unusable configuration, like every other command (README,
exit codes: 2 = usage / unusable configuration), and say which key is wrong."""

from __future__ import annotations

import json

import pytest

from terminal.app.cli import main

UNKNOWN_KEY = '[terminal]\nnetwork = "signet"\nbogus_key = 1\n[backend]\nkind = "flash"\n'
WRONG_TYPES = '[terminal]\nnetwork = 5\ndata_dir = 7\n[backend]\nkind = "flash"\n'


@pytest.mark.parametrize(("text", "needle"), [(UNKNOWN_KEY, "terminal.bogus_key"),
                                              (WRONG_TYPES, "terminal.network")])
@pytest.mark.parametrize("command", [["doctor"], ["doctor", "--json"], ["history"],
                                     ["history", "--export", "json"]])
def test_unusable_configuration_exits_2(tmp_path, capsys, command, text, needle):
    config = tmp_path / "terminal.toml"
    config.write_text(text)
    code = main([*command, "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 2
    assert needle in out + err
    if command == ["doctor", "--json"]:
        doc = json.loads(out)
        assert doc["ok"] is False
        assert [c["status"] for c in doc["checks"] if c["name"] == "config"] == ["fail"]
    if command[0] == "history":
        assert out == ""  # nothing listed from a configuration that cannot be used


def test_missing_configuration_exits_2(tmp_path, capsys):
    for command in (["doctor"], ["history"]):
        assert main([*command, "--config", str(tmp_path / "absent.toml")]) == 2
    capsys.readouterr()
