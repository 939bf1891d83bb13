"""Issue 9, clean exits everywhere: every command of `flash-terminal` (each one named in
`terminal.app.cli.COMMANDS`) meets malformed input — an unusable configuration, damaged books,
books held by the running app, a full disk, the backend or the card's issuer down, bad files and
arguments of its own — and ends with the exit code the README's table gives it and a plain
message: never a Python traceback, never a terminal escape sequence.

The commands run in process (`terminal.app.cli.main`, one after another in one interpreter, as a
long-lived caller would: a command module must not break the next command), except the full-disk
cases, which run the real entry point in a child process limited by RLIMIT_FSIZE (the kernel
then refuses a write with EFBIG, as it refuses one with ENOSPC on a full disk).
The backend is a port on 127.0.0.1 nothing listens on; the books are real files.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import COMMANDS, main
from terminal.app.root import LEDGER_FILE
from terminal.core.records import SaleRecord

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
[terminal]
network = "regtest"
data_dir = "data"
[backend]
kind = "flash"
[backend.flash]
http_url = "http://127.0.0.1:9/graphql"
username = "shop"
api_key = "flash_test_key_0123456789"
"""
BAD = GOOD.replace('network = "regtest"', "network = 5")
SALE = f"{1:032x}"  # a paid sale of the books below
OPEN = f"{9:032x}"  # a sale whose invoice the backend never declared final
CARD_ID = "ab" * 16


def books(config: Path) -> Path:
    """Three paid sales and one still waiting for its invoice."""
    path = config.parent / "data" / LEDGER_FILE
    now = time.time()
    with Ledger(path) as ledger:
        for n in range(3):
            ledger.save_sale(SaleRecord(
                id=f"{n:032x}", created_at=now - 100 + n, amount_minor=1000, currency="SAT",
                state="paid", method="qr", amount_msat=1_000_000,
                payment_hash=f"{n + 1:02x}" * 32, bolt11="lnbcrt1x"))
        ledger.save_sale(SaleRecord(
            id=OPEN, created_at=now - 5000, amount_minor=1000, currency="SAT", state="invoiced",
            method="qr", amount_msat=1_000_000, payment_hash="99" * 32, bolt11="lnbcrt1x",
            invoice_ref="99" * 32, invoice_expires_at=now - 4000))
    return path


def damage(path: Path) -> None:
    """Flip a bit in the middle of a line that has intact lines after it."""
    lines = path.read_bytes().split(b"\n")
    victim = bytearray(lines[2])
    victim[len(victim) // 2] ^= 0x01
    lines[2] = bytes(victim)
    path.write_bytes(b"\n".join(lines))


@pytest.fixture
def terminal_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    config = tmp_path / "terminal.toml"
    config.write_text(GOOD)
    config.chmod(0o600)
    (tmp_path / "data").mkdir(mode=0o700)
    books(config)
    return tmp_path


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse and the usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, expected: int | tuple[int, ...], out: str, err: str,
                 *, escapes_allowed: bool = False) -> None:
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert code in expected, f"exit {code}, expected {expected}\nstdout: {out}\nstderr: {err}"
    for stream in (out, err):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream  # exit 70: a bug, not a documented end
    if not escapes_allowed:
        assert "\x1b" not in err and "\x1b" not in out
    if code != 0:
        assert (out + err).strip(), "a failure says why"


# ------------------------------------------------------------------------ the books' commands

# command -> argv (`--config` is added), and its exit code per fault (README: exit codes).
# Faults: an unusable configuration, damaged books, the books held by the running app, the
# backend down (nothing listens on its port), books that cannot be read (the journal's path is
# a folder). `None`: not run (`run` would start the kiosk).
Code = int | tuple[int, ...] | None
FAULTS = ("bad_config", "damaged", "locked", "backend_down", "unreadable")


def ends(*codes: Code) -> dict[str, Code]:
    """A command's exit code for each fault, in the order of FAULTS."""
    return dict(zip(FAULTS, codes, strict=True))


TAP = "lnurlw://127.0.0.1:9/ln?p=" + "00" * 16 + "&c=" + "00" * 8  # an issuer that is down
#                       bad_config  damaged  locked  backend_down  unreadable
BOOKS_COMMANDS: dict[str, tuple[list[str], dict[str, Code]]] = {
    "charge": (["charge", "100", "--currency", "SAT", "--qr", "--json"], ends(2, 6, 5, 4, 7)),
    "charge --tap": (["charge", "100", "--currency", "SAT", "--json", "--tap", TAP],
                     ends(2, 6, 5, 4, 7)),
    "sync": (["sync"], ends(2, 6, 0, 8, 7)),
    "history": (["history"], ends(2, 6, 0, 0, 7)),
    "report": (["report", "--shift"], ends(2, 6, 0, 0, 7)),
    "report --close": (["report", "--shift", "--close"], ends(2, 6, 5, 0, 7)),
    "ledger check": (["ledger", "check"], ends(2, 6, 0, 0, 7)),
    "ledger repair": (["ledger", "repair"], ends(2, 0, 5, 0, 7)),
    "recover": (["recover", "--since", "2020-01-01", "--json"], ends(2, 6, 5, 8, 7)),
    "refund": (["refund", SALE, "--to", "ana@127.0.0.1:9", "--json"], ends(2, 6, 5, 4, 7)),
    "doctor": (["doctor"], ends(2, 6, 1, 1, 1)),
    "card block": (["card", "block", "--card-id", CARD_ID], ends(2, 6, 2, 0, 7)),
    "card unblock": (["card", "unblock", "--card-id", CARD_ID], ends(2, 6, 2, 0, 7)),
    "card list": (["card", "list"], ends(2, 6, 0, 0, 7)),
    "sandbox fill-history": (["sandbox", "fill-history", "--sales", "2"], ends(2, 6, 5, 0, 7)),
    "run": (["run"], ends(2, 6, 5, None, 7)),
}
CASES = [(name, fault) for name, (_, codes) in BOOKS_COMMANDS.items() for fault in FAULTS
         if codes[fault] is not None]


@pytest.mark.parametrize(("name", "fault"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_every_books_command_ends_each_fault_with_its_code(terminal_dir, name, fault):
    argv_template, codes = BOOKS_COMMANDS[name]
    config = terminal_dir / "terminal.toml"
    journal = terminal_dir / "data" / LEDGER_FILE
    if fault == "bad_config":
        config.write_text(BAD)
    elif fault == "damaged":
        damage(journal)
    elif fault == "unreadable":
        journal.unlink()
        journal.mkdir()
    holder = Ledger(journal) if fault == "locked" else None  # the running app's lock
    before = journal.read_bytes() if journal.is_file() else b""
    argv = [*argv_template, "--config", str(config)]
    try:
        if name == "run":  # the toolkit takes over logging and stderr: the real entry point
            code, out, err = cli(*argv, env={"SDL_VIDEODRIVER": "offscreen"})
        else:
            code, out, err = run_main(argv)
    finally:
        if holder is not None:
            holder.close()
    assert_clean(code, codes[fault], out, err)
    if fault == "bad_config" and code == 2:  # doctor says it in its table of checks
        assert "terminal.network" in (out if name == "doctor" else err)
    if fault == "damaged" and code == 6:
        assert str(journal) in out + err and journal.read_bytes() == before  # nothing changed
    if fault == "locked" and code in (1, 2, 5):
        assert "running" in out + err or "in use" in out + err


def test_the_matrix_covers_every_command():
    covered = {argv[0] for argv, _ in BOOKS_COMMANDS.values()}
    covered |= {argv[0] for argv, _ in OTHER_INPUTS}
    assert covered == set(COMMANDS)


# --------------------------------------------------------------- each command's own bad input

def other_inputs(d: Path) -> None:
    (d / "garbage.json").write_text("{not json")
    (d / "dir").mkdir()
    (d / "afile").write_text("x")
    (d / "enroll.toml").write_text("[terminal]\nname = 5\n")
    (d / "script.txt").write_text("amount banana\n")
    (d / "served").mkdir()
    (d / "served" / "terminal.toml").write_text(
        '[[issuers]]\nlnurlw_base = "lnurlw://127.0.0.1:9/ln"\n')


K = "00" * 16
# (argv with `{d}` for the test's directory, exit code)
OTHER_INPUTS: list[tuple[list[str], int]] = [
    (["enroll", "{d}/nope.toml", "--config-dir", "{d}/etc"], 2),
    (["enroll", "{d}/dir", "--config-dir", "{d}/etc"], 2),
    (["enroll", "FT2:eNotjFsKwjAQRH9lmG", "--config-dir", "{d}/etc"], 1),
    (["enroll", "{d}/enroll.toml", "--config-dir", "{d}/etc"], 1),
    (["enroll", "{d}/garbage.json", "--config-dir", "{d}/afile"], 1),
    (["card", "decode", "lnurlw://x.example/ln?p=zz&c=00", "--k1", K, "--k2", K, "--json"], 3),
    (["card", "decode", "lnurlw://x.example/ln?p=00&c=00", "--k1", "zz", "--k2", K], 2),
    (["card", "keys", "--issuer-key", "zz", "--uid", "04" * 7, "--version", "1"], 2),
    (["card", "program", "--issuer-key", K, "--url", "lnurlw://x.example/ln", "--card-file",
      "{d}/garbage.json", "--json"], 1),
    (["card", "program", "--keys-url", "http://127.0.0.1:9/keys", "--card-file",
      "{d}/nope.json", "--json"], 1),
    (["card", "program", "--keys-file", "{d}/garbage.json", "--card-file", "{d}/nope.json"], 1),
    (["card", "wipe", "--issuer-key", K, "--card-file", "{d}/garbage.json", "--json"], 1),
    (["card", "wipe", "--keys-url", "http://127.0.0.1:9/keys", "--card-file",
      "{d}/nope.json"], 1),
    (["card", "simulate", "tap", "{d}/garbage.json"], 2),
    (["card", "simulate", "tap", "{d}/nope.json"], 2),
    (["card", "simulate", "info", "{d}/dir", "--json"], 2),
    (["card", "simulate", "new", "{d}/afile/card.json", "--blank"], 7),
    (["card", "block", "--card-file", "{d}/garbage.json", "--config", "{d}/nope.toml"], 2),
    (["sandbox", "card", "new", "{d}/card.json", "--data", "{d}/dir"], 2),
    (["sandbox", "card", "new", "{d}/card.json", "--data", "{d}/served", "--pin", "ab"], 2),
    (["sandbox", "card", "new", "{d}/card.json", "--data", "{d}/afile"], 2),
    (["sandbox", "serve", "--data", "{d}/afile", "--port", "1"], 7),
    (["sandbox", "fill-history", "--config", "{d}/nope.toml", "--sales", "3"], 2),
    (["demo", "--headless", "--script", "{d}/script.txt", "--data", "{d}/demo"], 2),
    (["demo", "--headless", "--script", "{d}/nope.txt", "--data", "{d}/demo"], 2),
    (["demo", "--headless", "--data", "{d}/afile"], 7),
    (["recover", "--since", "yesterday-ish", "--config", "{d}/nope.toml"], 2),
    (["refund", "not-a-sale", "--to", "ana@127.0.0.1:9", "--config", "{d}/nope.toml"], 2),
    (["history", "--from", "2024-02-30", "--config", "{d}/nope.toml"], 2),
    (["report", "--day", "2024-13-01", "--config", "{d}/nope.toml"], 2),
    (["ledger", "check", "--config", "{d}/nope.toml"], 2),
    (["doctor", "--config", "{d}/nope.toml"], 2),
    (["run", "--config", "{d}/nope.toml"], 2),
    (["charge", "1e5000", "--currency", "SAT", "--qr", "--config", "{d}/nope.toml"], 2),
    (["sync", "--config", "{d}/nope.toml"], 2),
]


@pytest.mark.parametrize(("argv", "expected"), OTHER_INPUTS,
                         ids=[" ".join(a[:3])[:40] + f"-{i}" for i, (a, _) in
                              enumerate(OTHER_INPUTS)])
def test_each_commands_own_bad_input_ends_cleanly(tmp_path, monkeypatch, argv, expected):
    monkeypatch.delenv("FLASH_TERMINAL_CONFIG", raising=False)
    other_inputs(tmp_path)
    code, out, err = run_main([a.replace("{d}", str(tmp_path)) for a in argv])
    assert_clean(code, expected, out, err)


def test_a_port_in_use_is_a_usage_error_not_a_file_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_main(["sandbox", "serve", "--port", str(port), "--data",
                                   str(tmp_path / "sandbox")])
    assert_clean(code, 2, out, err)
    assert "--port" in err and "file" not in err


# ---------------------------------------------------------------------------- the full disk


def cli(*argv: str, limit_file_bytes: int | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> tuple[int, str, str]:
    """The real command in a child process (whose files cannot grow past `limit_file_bytes`)."""
    def limits() -> None:
        if limit_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    environment = {k: v for k, v in os.environ.items()
                   if k not in ("FLASH_TERMINAL_CONFIG", "FLASH_TERMINAL_LOG")}
    environment.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    done = subprocess.run([sys.executable, "-m", "terminal.app.cli", *argv], env=environment,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
    return done.returncode, done.stdout, done.stderr


# Commands that write to the books, and their code when the disk is full (README: 7 storage).
FULL_DISK = {
    "charge": (["charge", "100", "--currency", "SAT", "--qr", "--json"], 7),
    "sync": (["sync"], 7),
    "refund": (["refund", SALE, "--to", "ana@127.0.0.1:9", "--json"], 7),
    "card block": (["card", "block", "--card-id", CARD_ID], 7),
    "report --close": (["report", "--shift", "--close"], 7),
    "sandbox fill-history": (["sandbox", "fill-history", "--sales", "5"], 7),
}


@pytest.mark.parametrize("name", list(FULL_DISK))
def test_a_full_disk_ends_with_its_code_and_loses_nothing(terminal_dir, name):
    argv, expected = FULL_DISK[name]
    config = terminal_dir / "terminal.toml"
    journal = terminal_dir / "data" / LEDGER_FILE
    before = journal.read_bytes()
    # Room for nothing more than what is there: the command's first write cannot fit.
    code, out, err = cli(*argv, "--config", str(config), limit_file_bytes=len(before) + 16)
    assert_clean(code, expected, out, err)
    assert journal.read_bytes() == before  # a partial line was cut off: the books are whole
    code, out, err = run_main(["ledger", "check", "--config", str(config)])
    assert code == 0, out + err


def test_a_failure_after_the_report_command_was_loaded_still_exits_cleanly(terminal_dir):
    """Importing `terminal.app.cli.report` rebinds the package's name `report`: `main` must not
    call that module as its failure reporter (a second command in one process crashed)."""
    import importlib

    importlib.import_module("terminal.app.cli.report")
    damage(terminal_dir / "data" / LEDGER_FILE)
    code, out, err = run_main(["sync", "--config", str(terminal_dir / "terminal.toml")])
    assert_clean(code, 6, out, err)
