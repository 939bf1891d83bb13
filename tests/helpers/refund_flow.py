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


# `refund --json`'s contract: exactly these keys (the words for a person go to stderr).
REFUND_KEYS = {"status", "refund_id", "sale_id", "amount_msat", "reason"}


class Answer(dict):
    """A command's JSON answer; `err`: what it said on stderr beside it."""

    err = ""


def run(capsys, *args: str) -> tuple[int, dict]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    answer = Answer(json.loads(lines[-1]) if lines else {"stderr": captured.err})
    answer.err = captured.err
    return code, answer


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
    """`refund … --json`: exit 0 sent, 4 failed or pending (the contract's keys, exactly, on
    stdout either way), 2 usage (nothing on stdout)."""
    code, out = run(capsys, "refund", sale_id, *args, "--config", str(config_path), "--json")
    if code in (0, 4):
        assert set(out) == REFUND_KEYS, out
        assert out["status"] in ("sent", "pending", "failed")
        assert (code == 0) == (out["status"] == "sent"), (code, out)
        assert (out["reason"] is None) == (out["status"] == "sent"), out
    return code, out
