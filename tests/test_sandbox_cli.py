"""`sandbox serve`, `sandbox card new` and `charge` as separate processes, as staff run them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "terminal.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_charge_against_a_running_sandbox_is_paid_and_state_survives_restart(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    data = tmp_path / "sandbox"
    port = free_port()
    serve_cmd = [sys.executable, "-m", "terminal.app.cli", "sandbox", "serve", "--port", str(port),
                 "--data", str(data)]
    server = subprocess.Popen(serve_cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "sandbox serving on" in server.stdout.readline()  # ready: it has bound the port
        config = data / "terminal.toml"
        assert (config.stat().st_mode & 0o777) == 0o600
        card = tmp_path / "card.json"
        issued = cli("sandbox", "card", "new", str(card), "--data", str(data), "--json", env=env)
        assert issued.returncode == 0, issued.stderr
        card_id = json.loads(issued.stdout)["card_id"]
        paid = cli("charge", "5", "--currency", "USD", "--config", str(config),
                   "--card-file", str(card), "--json", env=env)
        assert paid.returncode == 0, paid.stderr
        assert json.loads(paid.stdout.strip().splitlines()[-1])["status"] == "paid"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    state = json.loads((data / "state.json").read_text())
    assert card_id in json.dumps(state)  # cards, counters and balances persisted in DIR
