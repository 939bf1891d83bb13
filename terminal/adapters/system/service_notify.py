"""systemd service notifications (sd_notify): READY=1, WATCHDOG=1 pings and STATUS= lines.

`systemd/flash-terminal.service` is `Type=notify` with `WatchdogSec=`: systemd restarts the app
when the pings stop, which catches a hung event loop (a frozen screen), not only a crash. The
pings therefore come from the asyncio loop itself (`watchdog_loop`), never from a helper thread
that would keep pinging while the loop is stuck.

Outside systemd (`NOTIFY_SOCKET` unset: development, tests, the CLI) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import sdnotify

ENV_NOTIFY_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """How often to ping: half the watchdog timeout systemd asked for (sd_watchdog_enabled(3)),
    or None when the watchdog is off or meant for another process."""
    env = os.environ if environ is None else environ
    usec = env.get(ENV_WATCHDOG_USEC)
    if not usec:
        return None
    pid = env.get(ENV_WATCHDOG_PID)
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 / 2 if value > 0 else None


class ServiceNotifier:
    """Talks to systemd's notification socket (silently does nothing without one)."""

    def __init__(self) -> None:
        # sdnotify reads NOTIFY_SOCKET from the process environment itself.
        self.enabled = bool(os.environ.get(ENV_NOTIFY_SOCKET))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self.interval_s = watchdog_interval_s()

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> None:
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def watchdog_loop(
    notifier: ServiceNotifier, healthy: Callable[[], bool] = lambda: True
) -> None:
    """Ping the watchdog from the event loop for as long as `healthy()` says so.

    Returns at once when the watchdog is off. Cancel the task to stop.
    """
    interval = notifier.interval_s
    if interval is None or not notifier.enabled:
        return
    while True:
        if healthy():
            notifier.watchdog()
        await asyncio.sleep(interval)
