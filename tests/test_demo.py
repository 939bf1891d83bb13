"""`flash-terminal demo --headless`: a scripted sale against the in-process sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from terminal.app.cli import main
from terminal.app.cli.demo import has_display

ROOT = Path(__file__).resolve().parent.parent


def test_headless_demo_pays_with_card_a(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--headless", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PAID: $5.00" in out
    assert "PAID - thank you" in out  # the receipt text
    assert (tmp_path / "card-a.json").exists()


def test_headless_demo_with_card_b_is_refused_with_its_reason(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--headless", "--card", "B", "--data", str(tmp_path)]) == 4
    out = capsys.readouterr().out
    assert "CARD REFUSED" in out
    reason = out.split("CARD REFUSED", 1)[1].split("—", 1)[1].splitlines()[0]
    assert "balance" in reason or "sats" in reason  # B holds only 50 sats: the reason says so


def test_no_display_detection(monkeypatch) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    assert not has_display()
    monkeypatch.setenv("SDL_VIDEODRIVER", "offscreen")
    assert has_display()


def test_scripts_demo_falls_back_to_headless_without_a_display() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    env["PYTHON"] = sys.executable
    done = subprocess.run([str(ROOT / "scripts" / "demo")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running the headless demo instead" in done.stdout
    assert "PAID - thank you" in done.stdout


def test_run_without_a_display_says_what_to_do(tmp_path: Path, monkeypatch, capsys) -> None:
    from terminal.sandbox.server import Sandbox

    config = Sandbox(tmp_path / "sb").write_terminal_config(tmp_path / "terminal.toml")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    assert main(["run", "--config", str(config)]) == 2
    assert "needs a display" in capsys.readouterr().err
