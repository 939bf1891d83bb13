"""The kiosk: systemd units (systemd-analyze verify), sd_notify, firmware-config and install-pi."""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path

import pytest

from hw.ntag424.filesettings import boltcard_file_settings, factory_ndef_file_settings
from hw.ntag424.ndef import sun_ndef_file
from terminal.adapters.system.service_notify import (
    ServiceNotifier,
    watchdog_interval_s,
    watchdog_loop,
)

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
FIRMWARE = ROOT / "firmware-config"
INSTALL = ROOT / "scripts" / "install-pi"
UNITS = ("flash-terminal.service", "flash-terminal-sync.service", "flash-terminal-sync.timer")
EXEC = "/opt/flash-terminal/venv/bin/flash-terminal"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (Debian: systemd)")
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None,
                                      reason="shellcheck not installed")


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(SYSTEMD / name)
    return parser


def staged_units(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart points at an executable stub that exists."""
    stub = tmp_path / "bin" / "flash-terminal"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    out = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        assert name.endswith(".timer") or EXEC in text
        (tmp_path / name).write_text(text.replace(EXEC, str(stub)))
        out.append(tmp_path / name)
    return out


def verify(paths: list[Path], cwd: Path) -> str:
    done = subprocess.run(["systemd-analyze", "verify", *map(str, paths)], capture_output=True,
                          text=True, cwd=cwd, timeout=60,
                          env=dict(os.environ, SYSTEMD_LOG_COLOR="0", LC_ALL="C"))
    return (done.stdout + done.stderr).strip() + (f"\nexit {done.returncode}"
                                                  if done.returncode else "")


# -- systemd units ---------------------------------------------------------------------------
@needs_analyze
def test_units_verify_without_any_output(tmp_path):
    assert verify(staged_units(tmp_path), tmp_path) == ""


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path):
    # The check above means something: a typo in a directive produces output.
    paths = staged_units(tmp_path)
    broken = paths[0].read_text().replace("WatchdogSec=", "WatchdogSecs=")
    paths[0].write_text(broken)
    assert "WatchdogSecs" in verify(paths, tmp_path)


def test_kiosk_service_runs_as_its_user_with_watchdog_and_restart():
    s = unit("flash-terminal.service")["Service"]
    assert s["Type"] == "notify"
    assert s["Restart"] == "always"
    assert s["WatchdogSec"].rstrip("s").isdigit()
    assert s["User"] == "flash-terminal"
    groups = set(s["SupplementaryGroups"].split())
    assert {"dialout", "plugdev", "video", "input", "render"} <= groups
    assert s["ExecStart"].startswith(EXEC)
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"


def test_kiosk_hardening_still_allows_reader_printer_and_display():
    text = (SYSTEMD / "flash-terminal.service").read_text()
    allowed = {line.split("=", 1)[1].split()[0] for line in text.splitlines()
               if line.startswith("DeviceAllow=")}
    assert {"char-usb_device", "char-ttyUSB", "char-ttyAMA", "char-drm", "char-input"} <= allowed
    assert "PrivateDevices=yes" not in text
    assert "AF_NETLINK" in text  # libusb hot-plug


def test_sync_timer_runs_the_sync_service():
    timer = unit("flash-terminal-sync.timer")
    assert timer["Timer"]["Unit"] == "flash-terminal-sync.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = unit("flash-terminal-sync.service")["Service"]
    assert service["ExecStart"] == f"{EXEC} sync"
    assert service["Type"] == "oneshot"


def test_journald_dropin_limits_size():
    journal = configparser.ConfigParser()
    journal.read(SYSTEMD / "journald-flash-terminal.conf")
    assert journal["Journal"]["SystemMaxUse"].endswith("M")


# -- sd_notify ---------------------------------------------------------------------------------
@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_status_and_watchdog_reach_the_socket(notify_socket, monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = ServiceNotifier()
    assert notifier.enabled and notifier.interval_s is None
    notifier.ready("terminal up\nreader ready")
    assert notify_socket.recv(1024) == b"READY=1\nSTATUS=terminal up reader ready"
    notifier.status("offline: 2 queued")
    assert notify_socket.recv(1024) == b"STATUS=offline: 2 queued"
    notifier.watchdog()
    assert notify_socket.recv(1024) == b"WATCHDOG=1"


def test_watchdog_loop_pings_from_the_event_loop(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # 20 ms: ping every 10 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = ServiceNotifier()
    assert notifier.interval_s == pytest.approx(0.01)

    async def scenario() -> list[bytes]:
        task = asyncio.create_task(watchdog_loop(notifier))
        loop = asyncio.get_running_loop()
        notify_socket.setblocking(False)
        got = [await asyncio.wait_for(loop.sock_recv(notify_socket, 64), 5) for _ in range(3)]
        task.cancel()
        return got

    assert asyncio.run(scenario()) == [b"WATCHDOG=1"] * 3


def test_unhealthy_loop_stops_pinging(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = ServiceNotifier()
    checks: list[int] = []
    enough = asyncio.Event()

    def healthy() -> bool:
        checks.append(1)
        if len(checks) == 4:
            enough.set()
        return len(checks) == 1  # healthy once, then stuck

    async def scenario() -> None:
        task = asyncio.create_task(watchdog_loop(notifier, healthy))
        await asyncio.wait_for(enough.wait(), 5)
        task.cancel()

    asyncio.run(scenario())
    notify_socket.setblocking(False)
    assert notify_socket.recv(64) == b"WATCHDOG=1"
    with pytest.raises(BlockingIOError):
        notify_socket.recv(64)


def test_without_systemd_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = ServiceNotifier()
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()
    assert asyncio.run(watchdog_loop(notifier)) is None


def test_watchdog_interval_rules():
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None
    other = str(os.getpid() + 1)
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": other}) is None


# -- firmware-config ---------------------------------------------------------------------------
def test_boltcard_sdm_profile_matches_the_programming_code():
    profile = tomllib.loads((FIRMWARE / "boltcard" / "sdm-profile.toml").read_text())
    ex = profile["example"]
    layout = sun_ndef_file(ex["base_url"])
    assert layout.url == ex["url"]
    assert len(layout.content) == ex["ndef_file_length"]
    assert layout.picc_data_offset == ex["picc_data_offset"]
    assert layout.sdm_mac_offset == ex["sdm_mac_offset"] == ex["sdm_mac_input_offset"]
    data = boltcard_file_settings(layout.picc_data_offset, layout.sdm_mac_offset).to_bytes()
    assert data == bytes.fromhex(ex["change_file_settings_data"].replace(" ", ""))
    head = profile["file_option"] + profile["access_rights"] + profile["sdm_options"] + \
        profile["sdm_access_rights"]
    assert data.hex().upper().startswith(head) and head == "4000E0C1FF12"
    assert factory_ndef_file_settings().to_bytes().hex().upper() == \
        profile["factory"]["file_settings"]


def test_modprobe_blacklists_the_kernel_nfc_stack():
    lines = (FIRMWARE / "modprobe" / "flash-terminal-nfc-blacklist.conf").read_text().splitlines()
    blacklisted = {x.split()[1] for x in lines if x.startswith("blacklist ")}
    assert {"pn533", "pn533_usb", "nfc"} <= blacklisted


def test_udev_rules_cover_the_readers_and_printers():
    rules = [x for x in (FIRMWARE / "udev" / "60-flash-terminal.rules").read_text().splitlines()
             if x and not x.startswith("#")]
    text = "\n".join(rules)
    assert 'ATTRS{idVendor}=="072f", ATTRS{idProduct}=="2200"' in text  # ACR122U
    assert 'ATTRS{idVendor}=="04cc", ATTRS{idProduct}=="2533"' in text  # PN533
    assert 'SUBSYSTEM=="tty"' in text and 'GROUP="dialout"' in text
    for rule in rules:  # every line is key op "value" pairs separated by commas
        for part in rule.split(", "):
            assert any(op in part for op in ("==", "+=", "=")), rule


def test_boot_config_enables_kms_and_the_uart():
    text = (FIRMWARE / "boot" / "config.txt").read_text()
    assert "dtoverlay=vc4-kms-v3d" in text and "enable_uart=1" in text
    assert text.startswith("# --- Flash Terminal")  # the installer's idempotency marker


def test_kivy_config_is_full_screen_touch_only():
    kivy = configparser.ConfigParser(interpolation=None)
    kivy.read(FIRMWARE / "kivy" / "config.ini")
    assert kivy["graphics"]["fullscreen"] == "auto"
    assert (kivy["graphics"]["width"], kivy["graphics"]["height"]) == ("800", "480")
    assert kivy["kivy"]["exit_on_escape"] == "0"
    assert "mouse" not in kivy["input"]


def test_readme_explains_every_file():
    readme = (FIRMWARE / "README.md").read_text()
    for path in FIRMWARE.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(FIRMWARE)) in readme, path


# -- install-pi --------------------------------------------------------------------------------
def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=60)


@needs_shellcheck
def test_installer_is_shellcheck_clean():
    done = subprocess.run(["shellcheck", "-x", str(INSTALL)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_dry_run_lists_every_action_and_changes_nothing(tmp_path):
    done = install("--dry-run", "--force-arch", "aarch64", "--prefix", str(tmp_path / "opt"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for needle in (
        "apt-get install", "libusb-1.0-0",
        "useradd --system", "usermod --append --groups dialout,plugdev,video,input,render",
        f"python3 -m venv {tmp_path / 'opt'}/venv", "pip install",
        "/etc/udev/rules.d/60-flash-terminal.rules",
        "/etc/modprobe.d/flash-terminal-nfc-blacklist.conf",
        "/etc/systemd/system/flash-terminal.service",
        "/etc/systemd/system/flash-terminal-sync.timer",
        "/etc/systemd/journald.conf.d/flash-terminal.conf",
        "systemctl daemon-reload", "systemctl enable flash-terminal.service",
        "/var/lib/flash-terminal/kivy/config.ini",
        "/boot/firmware/config.txt", "DRY RUN",
    ):
        assert needle in out, needle
    assert not (tmp_path / "opt").exists()


@pytest.mark.parametrize("arch", ["armv7l", "armv6l"])
def test_refuses_32_bit(arch):
    done = install("--dry-run", "--force-arch", arch)
    assert done.returncode == 1
    assert "32-bit" in done.stderr and "64-bit Raspberry Pi OS" in done.stderr
    assert "+ " not in done.stdout  # nothing attempted


def test_refuses_other_machines_and_forced_arch_for_real():
    done = install("--dry-run", "--force-arch", "x86_64")
    assert done.returncode == 1 and "aarch64" in done.stderr
    done = install("--force-arch", "aarch64")
    assert done.returncode == 1 and "only allowed with --dry-run" in done.stderr


def test_unknown_option_is_refused():
    done = install("--frobnicate")
    assert done.returncode == 1 and "unknown option" in done.stderr
