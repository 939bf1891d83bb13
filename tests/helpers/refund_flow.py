"""Refunds through the command line against the sandbox: a configuration that can send, a funded
simulated card, a sale charged with it and its refund, each answer as (exit code, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from terminal.app.cli import main
from terminal.sandbox.server import SandboxThread


def sending_config(sandbox: SandboxThread, path: Path) -> Path:
    """The sandbox's terminal configuration with its API key: a terminal that can send."""
    config = sandbox.write_terminal_config(path, with_api_key=True)
    assert sandbox.api_key in config.read_text() and config.stat().st_mode & 0o077 == 0
    return config


def run(capsys, *args: str) -> tuple[int, dict]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {"stderr": captured.err})


def new_card(tmp_path: Path, config_path: Path, sats: int, capsys) -> Path:
    card = tmp_path / f"card-{sats}.json"
    code, _ = run(capsys, "sandbox", "card", "new", str(card), "--data", str(config_path.parent),
                  "--balance", str(sats), "--json")
    assert code == 0
    return card


def charge(capsys, config_path: Path, sats: int, card: Path) -> dict:
    code, out = run(capsys, "charge", str(sats), "--currency", "SAT", "--card-file", str(card),
                    "--config", str(config_path), "--json")
    assert code == 0 and out["status"] == "paid", out
    return out


def refund(capsys, config_path: Path, sale_id: str, *args: str) -> tuple[int, dict]:
    return run(capsys, "refund", sale_id, *args, "--config", str(config_path), "--json")
