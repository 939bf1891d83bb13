"""While the kiosk app holds the ledger, the sync timer skips cleanly and `charge` says why."""

from __future__ import annotations

import json

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.cli.exits import EXIT_BUSY
from terminal.app.root import LEDGER_FILE

CONFIG = """
[terminal]
network = "regtest"
data_dir = "data"
[backend]
kind = "flash"
[backend.flash]
http_url = "http://127.0.0.1:9/graphql"
username = "shop"
"""


@pytest.fixture
def held(tmp_path):
    config = tmp_path / "terminal.toml"
    config.write_text(CONFIG)
    (tmp_path / "data").mkdir()
    ledger = Ledger(tmp_path / "data" / LEDGER_FILE)  # the running app's writer lock
    yield config
    ledger.close()


def test_sync_skips_when_the_app_holds_the_ledger(held, capsys):
    assert main(["sync", "--config", str(held), "--json"]) == 0
    assert "syncs it itself" in json.loads(capsys.readouterr().out)["skipped"]


def test_charge_explains_the_running_app(held, capsys):
    code = main(["charge", "100", "--currency", "SAT", "--qr", "--config", str(held)])
    assert code == EXIT_BUSY
    err = capsys.readouterr().err
    assert "terminal app" in err and "systemctl stop flash-terminal" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["block", "--card-id", "ab" * 16],
                                  ["unblock", "--card-id", "ab" * 16]])
def test_card_block_and_unblock_point_to_the_admin_screen(held, capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["card", *argv, "--config", str(held), "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "terminal app is running" in err and "Admin > Cards" in err


def test_card_list_reads_beside_the_running_app(held, capsys):
    assert main(["card", "list", "--config", str(held), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
