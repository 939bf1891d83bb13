"""`flash-terminal doctor` against the sandbox on loopback, a pty printer and real stub commands.

System commands (timedatectl, systemctl) are real executables: small shell scripts on a PATH the
test controls, so the doctor's subprocess handling and parsing run for real.
"""

from __future__ import annotations

import json
import os
import stat
import time
import tty
from pathlib import Path

import pytest

from terminal.adapters import simcards
from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.doctor import (
    EARLIEST_PLAUSIBLE_TIME,
    Status,
    System,
    check_clock,
    check_service,
    run_doctor,
)
from terminal.core.records import QueuedPayout
from terminal.sandbox.server import SandboxThread


def stub(bin_dir: Path, name: str, stdout: str, rc: int = 0) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{stdout}\nEOF\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def system(tmp_path: Path) -> System:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    run_dir = tmp_path / "run-systemd"
    run_dir.mkdir()
    return System(path=str(bin_dir), systemd_dir=run_dir)


def bin_dir(system: System) -> Path:
    return Path(system.path or "")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


def config_for(sandbox, tmp_path: Path, extra: str = "") -> Path:
    path = sandbox.write_terminal_config(tmp_path / "terminal.toml")
    # Each test gets its own data directory (ledger, terminal id); the sandbox is shared.
    lines = [f"data_dir = {json.dumps(str(tmp_path / 'data'))}" if x.startswith("data_dir") else x
             for x in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    if extra:
        with path.open("a") as fh:
            fh.write(extra)
    return path


def absent_reader(path: str):
    from terminal.app.doctor import ReaderProbe

    return ReaderProbe(False, f"no NFC reader found on {path}")


# -- against the sandbox -------------------------------------------------------------------------
def test_sandbox_terminal_without_reader_fails_on_the_reader_only(sandbox, tmp_path, system):
    # The real nfcpy probe: this machine has no reader on "usb".
    report = run_doctor(str(config_for(sandbox, tmp_path)), system=system)
    names = [c.name for c in report.checks]
    assert names == ["config", "reader", "backend", "budget", "clock", "disk", "ledger",
                     "exposure", "hotlists", "printer", "service"]
    assert report.check("config").status is Status.OK
    assert report.check("backend").status is Status.OK
    assert "Flash reachable" in report.check("backend").detail
    reader = report.check("reader")
    assert reader.status is Status.FAIL
    assert "blacklist" in reader.fix and "udev" in reader.fix
    assert not report.ok
    # Stub-free PATH here: no timedatectl/systemctl, so clock and service can only warn.
    assert [c.name for c in report.checks if c.status is Status.FAIL] == ["reader"]


def test_cli_json_shape_and_exit_code(sandbox, tmp_path, capsys):
    code = main(["doctor", "--json", "--config", str(config_for(sandbox, tmp_path))])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1  # no reader on this machine
    assert doc["ok"] is False
    assert {tuple(sorted(c)) for c in doc["checks"]} == {("detail", "fix", "name", "status")}
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn", "fail"}


def test_all_green_terminal_exits_zero(sandbox, tmp_path, system, capsys, pty_printer_port):
    card = tmp_path / "card.json"
    simcards.create_blank(card)
    stub(bin_dir(system), "timedatectl", "yes")
    stub(bin_dir(system), "systemctl", "LoadState=loaded\nActiveState=active\nSubState=running\n"
         "WatchdogUSec=30s\nNRestarts=0")
    extra = (f'[reader]\ncard_file = "{card}"\n'
             f'[printer]\nenabled = true\nport = "{pty_printer_port}"\n')
    report = run_doctor(str(config_for(sandbox, tmp_path, extra)), system=system)
    assert report.ok, [c for c in report.checks if c.status is not Status.OK]
    assert report.check("reader").status is Status.WARN  # a simulated card is not a reader
    assert report.check("printer").status is Status.OK
    assert report.check("clock").status is Status.OK
    assert report.check("service").status is Status.OK
    assert "watchdog 30s" in report.check("service").detail


def test_unreachable_backend_fails_with_a_fix(tmp_path, system):
    with SandboxThread(tmp_path / "sb") as sb:
        config = config_for(sb, tmp_path)
    report = run_doctor(str(config), system=system, reader_probe=absent_reader)
    backend = report.check("backend")
    assert backend.status is Status.FAIL
    assert "network" in backend.fix


def test_invalid_config_is_reported_and_skips_dependent_checks(tmp_path, system, capsys):
    bad = tmp_path / "terminal.toml"
    bad.write_text('[terminal]\nnetwork = "moonnet"\n[backend]\nkind = "flash"\n')
    code = main(["doctor", "--config", str(bad)])
    out = capsys.readouterr().out
    assert code == 2  # an unusable configuration, as for every command
    assert "terminal.network" in out and "FAIL" in out
    report = run_doctor(str(bad), system=system)
    assert [c.name for c in report.checks] == ["config", "clock", "service"]


def test_queued_exposure_over_the_cap_fails(sandbox, tmp_path, system):
    config = config_for(sandbox, tmp_path, "[offline]\ntotal_cap_msat = 30000000\n")
    (tmp_path / "data").mkdir()
    with Ledger(tmp_path / "data" / "ledger.jsonl") as ledger:
        for n in range(2):
            ledger.add_payout(QueuedPayout(
                id=f"p{n}", sale_id=f"s{n}", store_id=None, amount_sats=20_000,
                card_id="c" * 64, issuer="sandbox", counter=n + 1, tap_url="lnurlw://x?p=1&c=2",
                created_at=time.time() - 60))
    report = run_doctor(str(config), system=system, reader_probe=absent_reader)
    exposure = report.check("exposure")
    assert exposure.status is Status.FAIL
    assert "2 offline payment(s)" in exposure.detail and "40,000 sats" in exposure.detail
    assert "flash-terminal sync" in exposure.fix
    assert report.check("ledger").status is Status.OK
    assert report.check("ledger").detail.startswith("0 sale(s)")  # payouts are not sales


def test_corrupt_ledger_fails_without_crashing(sandbox, tmp_path, system):
    config = config_for(sandbox, tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ledger.jsonl").write_bytes(b"00000000 not a journal\n00000000 {}\n")
    report = run_doctor(str(config), system=system, reader_probe=absent_reader)
    ledger = report.check("ledger")
    assert ledger.status is Status.FAIL
    assert "the books are damaged" in ledger.detail
    assert "not a Flash Terminal ledger" in ledger.detail
    assert main(["doctor", "--config", str(config)]) == 6  # damaged books: exit 6


def test_damaged_books_exit_6_after_every_check(sandbox, tmp_path, system, capsys):
    config = config_for(sandbox, tmp_path)
    path = tmp_path / "data" / "ledger.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger(path) as ledger:
        ledger.set_meta("k", 1)
    path.write_bytes(b"")  # acknowledged records are gone
    report = run_doctor(str(config), system=system, reader_probe=absent_reader)
    assert "the journal is empty" in report.check("ledger").detail
    assert report.check("backend").status is Status.OK  # the other checks still ran


def test_printer_out_of_paper_fails(sandbox, tmp_path, system, pty_printer_port, pty_state):
    pty_state["paper"] = 0x12 | 0x60
    extra = f'[printer]\nenabled = true\nport = "{pty_printer_port}"\n'
    report = run_doctor(str(config_for(sandbox, tmp_path, extra)), system=system,
                        reader_probe=absent_reader)
    printer = report.check("printer")
    assert printer.status is Status.FAIL
    assert "paper" in printer.detail and "roll" in printer.fix


# -- clock and service ---------------------------------------------------------------------------
def test_clock_states(system):
    stub(bin_dir(system), "timedatectl", "no")
    assert check_clock(system).status is Status.FAIL
    stub(bin_dir(system), "timedatectl", "yes")
    assert check_clock(system).status is Status.OK
    assert check_clock(system, now=EARLIEST_PLAUSIBLE_TIME - 1).status is Status.FAIL
    (bin_dir(system) / "timedatectl").unlink()
    assert check_clock(system).status is Status.WARN


@pytest.mark.parametrize(("props", "status", "needle"), [
    ("LoadState=loaded\nActiveState=failed\nSubState=failed\nWatchdogUSec=30s\nNRestarts=5",
     Status.FAIL, "journalctl"),
    ("LoadState=not-found\nActiveState=inactive\nSubState=dead\nWatchdogUSec=0\nNRestarts=0",
     Status.WARN, "install-pi"),
    ("LoadState=loaded\nActiveState=active\nSubState=running\nWatchdogUSec=0\nNRestarts=0",
     Status.WARN, "WatchdogSec"),
])
def test_service_states(system, props, status, needle):
    stub(bin_dir(system), "systemctl", props)
    check = check_service(system)
    assert check.status is status
    assert needle in check.fix


def test_no_systemd_is_a_warning(tmp_path):
    check = check_service(System(path=str(tmp_path), systemd_dir=tmp_path / "absent"))
    assert check.status is Status.WARN


# -- a printer on a pty for the printer checks ---------------------------------------------------
@pytest.fixture
def pty_state():
    return {"printer": 0x12, "paper": 0x12, "cause": 0x12}


@pytest.fixture
def pty_printer_port(pty_state):
    import selectors
    import threading

    master, slave = os.openpty()
    tty.setraw(slave)
    wake_r, wake_w = os.pipe()

    def serve() -> None:
        sel = selectors.DefaultSelector()
        sel.register(master, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        buf = b""
        while True:
            for key, _ in sel.select():
                if key.fd == wake_r:
                    return
                buf += os.read(master, 4096)
                while (at := buf.find(b"\x10\x04")) >= 0 and len(buf) >= at + 3:
                    n = buf[at + 2]
                    os.write(master, bytes([pty_state[{1: "printer", 2: "cause", 4: "paper"}[n]]]))
                    buf = buf[at + 3:]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield os.ttyname(slave)
    os.write(wake_w, b"x")
    thread.join(5)
    for fd in (wake_r, wake_w, slave, master):
        os.close(fd)


# -- against the BTCPay Greenfield fake ----------------------------------------------------------


def btcpay_config(fake, tmp_path: Path, store_id: str) -> Path:
    from tests.fakes.btcpay_server import DEFAULT_KEY

    config = tmp_path / "terminal.toml"
    config.write_text("\n".join([
        "[terminal]", 'name = "BTCPay doctor"', 'network = "regtest"',
        'display_currency = "USD"', f"data_dir = {json.dumps(str(tmp_path / 'data'))}",
        "[backend]", 'kind = "btcpay"', "[backend.btcpay]",
        f"url = {json.dumps(fake.base_url)}", f"store_id = {json.dumps(store_id)}", "",
    ]))
    secrets = tmp_path / "secrets.toml"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"[backend.btcpay]\napi_key = {json.dumps(DEFAULT_KEY)}\n")
    return config


@pytest.mark.parametrize(("version", "store", "ok", "fix"), [
    ("2.4.1", None, True, ""),
    ("1.13.7", None, False, "Upgrade BTCPay Server to 2.0.0 or later"),
    ("2.4.1", "TypoStore", False, "Check backend.btcpay.store_id"),
])
def test_btcpay_backend_version_permissions_and_store(tmp_path, system, version, store, ok, fix):
    from tests.fakes.btcpay_server import FakeBTCPay

    with FakeBTCPay(version=version) as fake:
        config = btcpay_config(fake, tmp_path, store or fake.store_id)
        report = run_doctor(str(config), system=system, reader_probe=absent_reader)
    backend = report.check("backend")
    assert (backend.status is Status.OK) is ok
    assert backend.fix.startswith(fix)
    if ok:
        assert backend.detail.startswith("BTCPay 2.4.1 reachable; store 'Fake Store'")
