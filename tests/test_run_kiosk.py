"""`flash-terminal run` as the kiosk service starts it: against the sandbox, in an offscreen
window, it tells systemd READY=1 after the first frame, pings the watchdog, and stops cleanly
on SIGTERM (as `systemctl stop` sends)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.sandbox import SandboxThread

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ui
def test_run_notifies_ready_and_watchdog_then_stops_on_sigterm(tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(60)
    with SandboxThread(tmp_path / "sandbox") as sb:
        config = sb.write_terminal_config()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": notify_path,
               "WATCHDOG_USEC": "400000", "SDL_VIDEODRIVER": "offscreen",
               "KIVY_NO_ARGS": "1", "KIVY_NO_FILELOG": "1", "KIVY_NO_CONSOLELOG": "1",
               "KIVY_HOME": str(tmp_path / "kivy")}
        app = subprocess.Popen(
            [sys.executable, "-m", "terminal.app.cli", "run", "--fullscreen",
             "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            messages: list[str] = []
            while not (any("READY=1" in m for m in messages)
                       and any("WATCHDOG=1" in m for m in messages)):
                messages.append(listener.recv(4096).decode())  # times out (fails) after 60 s
            app.send_signal(signal.SIGTERM)
            assert app.wait(timeout=30) == 0, app.stderr.read()[-2000:]
        finally:
            if app.poll() is None:
                app.kill()
            listener.close()
