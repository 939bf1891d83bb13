"""`flash-terminal doctor`: what works on this terminal and, for what does not, the fix.

Each check returns one `Check` (ok / warn / fail, a detail and a fix a field technician can act
on). A check never raises: an unexpected error becomes a failed check naming it. The report is
`ok` when no check failed.

Checks: configuration, reader, backend, clock, disk, ledger, offline exposure, hotlists (blocked
cards, each fetched list's age), printer, service.
Checks that need the configuration are left out when it does not load (the configuration check
says why). The doctor only reads: it opens the ledger read-only and never takes the reader or
printer away from a running service for longer than one probe.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.app.checks import (
    Check,
    ReaderKind,
    ReaderProbe,
    Status,
    backend_health,
    check_printer,
    find_reader,
    flash_budget_check,
    flash_scope_check,
    probe_reader,
)
from terminal.app.config import Config, ConfigError, load_config

__all__ = ["Check", "ReaderProbe", "Report", "Status", "System", "check_printer",
           "flash_budget_check", "flash_scope_check", "format_report", "probe_reader",
           "run_doctor"]

SERVICE = "flash-terminal"
BACKEND_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 5.0
DISK_FAIL_BYTES = 50 * 1024 * 1024  # below this a ledger write may fail mid-sale
DISK_WARN_BYTES = 500 * 1024 * 1024
EXPOSURE_WARN_FRACTION = 0.8
# A clock before this is certainly wrong (a Pi without RTC boots at its last shutdown time or 1970).
EARLIEST_PLAUSIBLE_TIME = 1_735_689_600  # 2025-01-01T00:00:00Z

FIX_READER = (
    "Plug the reader in and check `lsusb` lists it (ACR122U 072f:2200, PN533 04cc:2533); for the "
    "PN532 HAT enable the UART (firmware-config/config.txt). Install "
    "firmware-config/udev/60-flash-terminal.rules and "
    "firmware-config/modprobe/flash-terminal-nfc-blacklist.conf (scripts/install-pi does both), "
    "then `sudo modprobe -r pn533_usb pn533 nfc` or reboot."
)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status is not Status.FAIL for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


# -- the machine around the terminal ----------------------------------------------------------
@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str


class System:
    """Commands and facts from the operating system (systemd, clock). `path` overrides PATH."""

    def __init__(self, *, path: str | None = None,
                 systemd_dir: Path = Path("/run/systemd/system")) -> None:
        self.path = path
        self.systemd_dir = systemd_dir

    def systemd_running(self) -> bool:
        # sd_booted(3): systemd is PID 1 exactly when this directory exists.
        return self.systemd_dir.is_dir()

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        """Run a command; None when it is not installed or does not finish in time."""
        exe = shutil.which(argv[0], path=self.path)
        if exe is None:
            return None
        env = dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0")
        try:
            done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return CommandResult(done.returncode, done.stdout)


# -- checks that need no configuration --------------------------------------------------------
def check_config(path: str | None) -> tuple[Check, Config | None]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        text = str(exc)
        if "not found" in text or "no configuration" in text:
            fix = ("Enrol the terminal: `sudo -u flash-terminal flash-terminal enroll FILE|CODE` "
                   "(or pass --config FILE).")
        elif "readable only" in text or "not readable" in text:
            fix = "Run as the terminal's user: `sudo -u flash-terminal flash-terminal doctor`."
        else:
            fix = ("Fix the named key (see config.example.toml) or re-run "
                   "`flash-terminal enroll`.")
        return Check("config", Status.FAIL, text, fix), None
    where = config.source or "?"
    return Check("config", Status.OK, f"{where}: {config.name}, backend {config.backend.kind}, "
                 f"network {config.network}"), config


def check_clock(system: System, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    if now < EARLIEST_PLAUSIBLE_TIME:
        return Check("clock", Status.FAIL,
                     f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(now))}: not set",
                     "Connect the terminal to the network so NTP can set the clock "
                     "(the Pi has no battery-backed clock); `sudo timedatectl set-ntp true`.")
    result = system.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if result is None or result.returncode != 0:
        return Check("clock", Status.WARN,
                     "cannot tell whether the clock is synchronised (no timedatectl/systemd)",
                     "Check the time is right: invoices expire by the clock.")
    if result.stdout.strip() == "yes":
        return Check("clock", Status.OK, "synchronised by NTP")
    return Check("clock", Status.FAIL, "the clock is not synchronised by NTP",
                 "Invoice expiry depends on the clock and the Pi has no RTC: connect the network, "
                 "then `sudo timedatectl set-ntp true` and check "
                 "`systemctl status systemd-timesyncd`.")


def _systemctl_show(system: System, unit: str) -> dict[str, str] | None:
    props = "LoadState,ActiveState,SubState,WatchdogUSec,NRestarts"
    result = system.run(["systemctl", "show", unit, f"--property={props}"])
    if result is None or result.returncode != 0:
        return None
    values = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _watchdog_off(value: str) -> bool:
    return value in ("", "0", "infinity") or value.startswith("0 ")


def check_service(system: System) -> Check:
    if not system.systemd_running():
        return Check("service", Status.WARN,
                     "systemd is not running here: service and watchdog state unknown",
                     "On the terminal, run the app as the flash-terminal service "
                     "(scripts/install-pi installs it).")
    props = _systemctl_show(system, SERVICE)
    if props is None:
        return Check("service", Status.WARN, "systemctl did not answer",
                     "Run `systemctl status flash-terminal` by hand.")
    if props.get("LoadState") != "loaded":
        return Check("service", Status.WARN, f"{SERVICE}.service is not installed",
                     "Install it: `sudo scripts/install-pi`.")
    active = props.get("ActiveState", "?")
    restarts = props.get("NRestarts", "0")
    if active != "active":
        return Check("service", Status.FAIL,
                     f"{SERVICE}.service is {active} ({props.get('SubState', '?')})",
                     "`sudo systemctl restart flash-terminal`; the reason is in "
                     "`journalctl -u flash-terminal -b`.")
    watchdog = props.get("WatchdogUSec", "")
    detail = f"{SERVICE}.service active, restarted {restarts} time(s), watchdog {watchdog or 'off'}"
    if _watchdog_off(watchdog):
        return Check("service", Status.WARN, detail,
                     "Reinstall the unit from systemd/ (it sets WatchdogSec=).")
    return Check("service", Status.OK, detail)


# -- checks that need the configuration -------------------------------------------------------
def check_reader(config: Config, system: System,
                 probe: Callable[[str], ReaderProbe] = probe_reader) -> Check:
    found = find_reader(config, probe)
    if found.kind is ReaderKind.SIMULATED_MISSING:
        return Check("reader", Status.FAIL, f"simulated card file {found.detail} does not exist",
                     "Create it (`flash-terminal sandbox card new`) or remove "
                     "reader.card_file to use the NFC reader.")
    if found.kind is ReaderKind.SIMULATED:
        return Check("reader", Status.WARN, f"using the simulated card {found.detail}, not a "
                     "reader", "Remove reader.card_file for real taps.")
    if found.kind is ReaderKind.FOUND:
        return Check("reader", Status.OK, found.detail)
    service = _systemctl_show(system, SERVICE) if system.systemd_running() else None
    if service and service.get("ActiveState") == "active":
        return Check("reader", Status.WARN,
                     f"{found.detail} (the running service holds the reader)",
                     "The service's status bar shows the reader state; to probe here, "
                     "`sudo systemctl stop flash-terminal` first.")
    return Check("reader", Status.FAIL, found.detail, FIX_READER)


async def _health(config: Config) -> tuple[Any, list[Check]]:
    from terminal.adapters.backends.flash import FlashBackend
    from terminal.app.root import build_backend

    backend = build_backend(config)
    try:
        health = await asyncio.wait_for(backend_health(backend), BACKEND_TIMEOUT_S)
        extra: list[Check] = []
        if isinstance(backend, FlashBackend):
            if backend.mode == "api-key":
                extra.append(await asyncio.wait_for(flash_scope_check(backend),
                                                    BACKEND_TIMEOUT_S))
            extra.append(flash_budget_check(backend))
        return health, extra
    finally:
        await backend.aclose()


def check_backend(config: Config) -> list[Check]:
    try:
        health, extra = asyncio.run(_health(config))
    except TimeoutError:
        return [Check("backend", Status.FAIL,
                      f"{config.backend.kind} did not answer within {BACKEND_TIMEOUT_S:.0f} s",
                      "Check the network connection and the backend URL.")]
    latency = f" in {health.latency_ms:.0f} ms" if health.latency_ms is not None else ""
    if health.ok:
        return [Check("backend", Status.OK, f"{health.detail}{latency}"), *extra]
    fix = getattr(health, "fix", "")
    return [Check("backend", Status.FAIL, health.detail,
                  f"{fix[:1].upper()}{fix[1:]}, then re-run `flash-terminal doctor`." if fix else
                  "Check the network and the backend URL; if the key or username was refused, "
                  "re-run `flash-terminal enroll` with a valid one."), *extra]


def queue_drain_time_s(config: Config, count: int, now: float | None = None) -> float | None:
    """How long `count` queued payouts need at the backend's invoice limit (Flash), from the
    budget this terminal keeps; None when the backend has no such limit."""
    if config.backend.kind != "flash" or count <= 0:
        return None
    from terminal.adapters.backends.budget import BackendBudget
    from terminal.app.root import FLASH_BUDGET_FILE

    return BackendBudget(path=config.data_dir / FLASH_BUDGET_FILE).drain_time_s(count, now)


def check_disk(config: Config) -> Check:
    directory = config.data_dir
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_mb = usage.free // (1024 * 1024)
    detail = f"{free_mb:,} MB free of {usage.total // (1024 * 1024):,} MB at {directory}"
    if not directory.exists():
        return Check("disk", Status.WARN, f"{detail}; the data directory does not exist yet",
                     "It is created on first start; check the service user can write there.")
    if not os.access(directory, os.W_OK):
        return Check("disk", Status.FAIL, f"{directory} is not writable by this user",
                     f"`sudo chown -R flash-terminal: {directory}`")
    if usage.free < DISK_FAIL_BYTES:
        return Check("disk", Status.FAIL, detail,
                     "Free space now: sales cannot be recorded. `sudo journalctl --vacuum-size=50M`"
                     "; remove old exports.")
    if usage.free < DISK_WARN_BYTES:
        return Check("disk", Status.WARN, detail,
                     "Free some space: `sudo journalctl --vacuum-size=50M`; remove old exports.")
    return Check("disk", Status.OK, detail)


def _open_ledger(config: Config):
    from terminal.adapters.books.layout import journal_path
    from terminal.adapters.books.ledger import Ledger

    return Ledger(journal_path(config.data_dir), read_only=True)


def check_ledger_and_exposure(config: Config, now: float | None = None) -> list[Check]:
    from terminal.adapters.books.errors import BooksDamaged

    now = time.time() if now is None else now
    try:
        ledger = _open_ledger(config)
    except BooksDamaged as exc:  # exit 6 once every check has run (terminal.app.cli.doctor)
        return [Check("ledger", Status.FAIL, f"the books are damaged: {exc.damage.file}: "
                      f"{exc.damage.what}", f"{exc.damage.affected} {exc.damage.fix}")]
    except Exception as exc:  # a read error and friends: name it, do not crash
        return [Check("ledger", Status.FAIL, f"the ledger does not open: {exc}",
                      "Stop the service and keep a copy of the data directory; then contact "
                      "support before deleting anything (queued payments live there).")]
    try:
        counts = ledger.counts()
        open_sales = ledger.open_sales()
        queued = ledger.queued_sales()
        exposure = ledger.exposure()
    finally:
        ledger.close()
    total = counts["sales_in_flight"] + counts["sales_archived"]
    ledger_check = Check("ledger", Status.OK,
                         f"{total} sale(s), {len(open_sales)} open, "
                         f"{len(queued)} waiting for sync")
    drain_s = queue_drain_time_s(config, exposure.count, now)
    return [ledger_check, _exposure_check(config, exposure, now, drain_s)]


HOTLIST_STALE_INTERVALS = 3  # a hotlist older than this many refresh intervals is a warning


def check_hotlists(config: Config, now: float | None = None) -> Check:
    """The card exception lists: the terminal's own blocks, each fetched hotlist's age and last
    error, and offline payments of blocked cards still waiting (read-only)."""
    from terminal.app.root import card_policy_settings
    from terminal.core.money import Msat, format_msat
    from terminal.services.card_policy import CardPolicy

    now = time.time() if now is None else now
    ledger = _open_ledger(config)
    try:
        policy = CardPolicy(ledger, card_policy_settings(config))
        own = sum(1 for b in policy.blocked() if b.by_terminal)
        snapshots = policy.snapshots()
        flagged = policy.flagged_payouts()
    finally:
        ledger.close()
    parts = [f"{own} card(s) blocked on this terminal"]
    problems = []
    stale_after = HOTLIST_STALE_INTERVALS * config.cards.hotlist_refresh_s
    for snap in snapshots:
        age = snap.age_s(now)
        if age is None:
            parts.append(f"{snap.source}: never fetched" + (f" ({snap.error})" if snap.error
                                                            else ""))
            problems.append(snap.source)
            continue
        text = f"{snap.source}: fetched {_age_text(age)} ago, {len(snap.blocked)} card(s) blocked"
        if snap.error and (snap.checked_at or 0) > (snap.fetched_at or 0):
            text += f"; the last attempt failed: {snap.error}"
            problems.append(snap.source)
        elif age > stale_after:
            problems.append(snap.source)
        parts.append(text)
    if flagged:
        parts.append(f"{len(flagged)} offline payment(s) of blocked cards waiting "
                     f"({format_msat(Msat(sum(p.amount_sats for p in flagged) * 1000))}): they "
                     "are still sent; the issuer may refuse them")
    detail = "; ".join(parts)
    if problems:
        return Check("hotlists", Status.WARN, detail,
                     f"Check the network and the URL of {', '.join(problems)} "
                     "([[cards.hotlists]]): until it is fetched again the last good list stays "
                     "in force.")
    if flagged:
        return Check("hotlists", Status.WARN, detail,
                     "Look the sales up in History; settle with the customer if the issuer "
                     "refuses them.")
    return Check("hotlists", Status.OK, detail)


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _exposure_check(config: Config, exposure: Any, now: float,
                    drain_s: float | None = None) -> Check:
    from terminal.core.money import Msat, format_msat

    limits = config.offline
    if exposure.count == 0:
        return Check("exposure", Status.OK, "no offline payments waiting")
    age = exposure.oldest_age_s(now) or 0.0
    detail = (f"{exposure.count} offline payment(s) waiting, "
              f"{format_msat(Msat(exposure.queued_msat))} of "
              f"{format_msat(Msat(limits.total_cap_msat))} allowed, oldest {age / 3600:.1f} h")
    if drain_s is not None:
        # Flash creates 20 invoices per 2 minutes per merchant: the queue's pace once online.
        detail += f"; sending them takes about {_duration(drain_s)} at Flash's invoice limit"
    sync_fix = "Restore the network, then `flash-terminal sync` (the sync timer also runs it)."
    if (age > limits.max_age_s or exposure.queued_msat >= limits.total_cap_msat
            or exposure.count >= limits.max_queued):
        return Check("exposure", Status.FAIL, detail + ": new offline taps are being declined",
                     sync_fix)
    if (exposure.queued_msat >= EXPOSURE_WARN_FRACTION * limits.total_cap_msat
            or age > EXPOSURE_WARN_FRACTION * limits.max_age_s):
        return Check("exposure", Status.WARN, detail, sync_fix)
    return Check("exposure", Status.OK, detail)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the whole examination --------------------------------------------------------------------
def _guarded(name: str, fn: Callable[[], Check | list[Check]]) -> list[Check]:
    try:
        result = fn()
    except Exception as exc:
        return [Check(name, Status.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                      "Report this to support with the output of `flash-terminal doctor --json`.")]
    return result if isinstance(result, list) else [result]


def run_doctor(
    config_path: str | None = None,
    *,
    system: System | None = None,
    reader_probe: Callable[[str], ReaderProbe] = probe_reader,
) -> Report:
    system = system or System()
    config_check, config = check_config(config_path)
    report = Report([config_check])
    if config is not None:
        cfg = config
        report.checks += _guarded("reader", lambda: check_reader(cfg, system, reader_probe))
        report.checks += _guarded("backend", lambda: check_backend(cfg))
    report.checks += _guarded("clock", lambda: check_clock(system))
    if config is not None:
        cfg = config
        report.checks += _guarded("disk", lambda: check_disk(cfg))
        report.checks += _guarded("ledger", lambda: check_ledger_and_exposure(cfg))
        if report.check("ledger").status is not Status.FAIL:
            report.checks += _guarded("hotlists", lambda: check_hotlists(cfg))
        report.checks += _guarded("printer", lambda: check_printer(cfg))
    report.checks += _guarded("service", lambda: check_service(system))
    return report


MARKS = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL"}


def format_report(report: Report) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines = []
    for c in report.checks:
        lines.append(f"[{MARKS[c.status]}] {c.name.ljust(width)}  {c.detail}")
        if c.fix and c.status is not Status.OK:
            lines.append(f"       {' ' * width}  fix: {c.fix}")
    lines.append("all checks passed" if report.ok and all(
        c.status is Status.OK for c in report.checks) else
        ("no failures (see warnings)" if report.ok else "some checks FAILED"))
    return "\n".join(lines)
