"""Issue 9, clean exits: every command maps damaged books, a full disk, a held lock, a bad
configuration, an unusable backend and its own bugs to its documented exit code and one plain
paragraph. A Python traceback on stderr is a defect: these tests run the real command (a child
process where stderr must be the real thing) and assert there is none.

Hostile backend answers come from a proxy on loopback in front of the sandbox
(`tests/fakes/hostile_backend.py`); a full disk from RLIMIT_FSIZE (no root needed: the kernel
refuses the write with EFBIG, as it refuses one with ENOSPC on a full disk) and from the storage's
injectable write function.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.cli import main
from terminal.app.cli.exits import (
    EXIT_BOOKS_DAMAGED,
    EXIT_BUSY,
    EXIT_INTERNAL,
    EXIT_NOT_PAID,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_USAGE,
    paragraph,
)
from terminal.app.root import LEDGER_FILE
from terminal.core.records import SaleRecord
from terminal.sandbox.config import render_terminal_config
from terminal.sandbox.server import SandboxThread
from tests.fakes.hostile_backend import HostileBackend

ROOT = Path(__file__).resolve().parents[1]

UNREACHABLE = """
[terminal]
network = "regtest"
data_dir = "data"
[backend]
kind = "flash"
[backend.flash]
http_url = "http://127.0.0.1:9/graphql"
username = "shop"
"""


def cli(*argv: str, limit_file_bytes: int | None = None, timeout: float = 60):
    """The real command in a child process: (exit code, stdout, stderr)."""
    def limits() -> None:
        if limit_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    env = {k: v for k, v in os.environ.items() if k != "FLASH_TERMINAL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run([sys.executable, "-m", "terminal.app.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
    return done.returncode, done.stdout, done.stderr


def assert_clean(err: str, *, max_lines: int = 2) -> None:
    assert "Traceback" not in err, err
    assert "\x1b" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= max_lines, err  # one paragraph (plus argparse's usage line at most)


@pytest.fixture
def unreachable(tmp_path) -> Path:
    config = tmp_path / "terminal.toml"
    config.write_text(UNREACHABLE)
    (tmp_path / "data").mkdir(mode=0o700)
    return config


def some_books(config: Path) -> Path:
    path = config.parent / "data" / LEDGER_FILE
    with Ledger(path) as ledger:
        for n in range(3):
            ledger.save_sale(SaleRecord(id=f"{n:032x}", created_at=1.0 + n, amount_minor=100,
                                        currency="SAT", state="paid"))
    return path


# ------------------------------------------------------------------------------- damaged books


def damage(path: Path) -> None:
    """Flip a bit in the middle of a complete line that has intact lines after it."""
    lines = path.read_bytes().split(b"\n")
    victim = bytearray(lines[2])
    victim[len(victim) // 2] ^= 0x01
    lines[2] = bytes(victim)
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("argv", [
    ["charge", "100", "--currency", "SAT", "--qr"],
    ["sync"],
    ["history"],
])
def test_damaged_books_exit_6_with_one_paragraph(unreachable, argv):
    books = some_books(unreachable)
    damage(books)
    before = books.read_bytes()
    code, out, err = cli(*argv, "--config", str(unreachable))
    assert code == EXIT_BOOKS_DAMAGED, err
    assert "damaged" in err and str(books) in err
    assert_clean(err)
    assert books.read_bytes() == before  # nothing was changed


# ------------------------------------------------------------------------------------ full disk


def test_a_full_disk_exits_7_and_records_nothing(unreachable):
    books = some_books(unreachable)
    before = books.read_bytes()
    # Room for nothing more than what is there: the sale's first write cannot fit.
    code, out, err = cli("charge", "100", "--currency", "SAT", "--qr", "--config",
                         str(unreachable), limit_file_bytes=len(before) + 16)
    assert code == EXIT_STORAGE, err
    assert "ledger" in err
    assert_clean(err)
    assert books.read_bytes() == before  # the partial line was cut off


def test_a_full_disk_says_so(unreachable, capsys, monkeypatch):
    """ENOSPC through the storage's injectable write function: the message names the disk."""
    import terminal.app.root as root

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(root, "open_ledger", lambda config: Ledger(
        root.ensure_data_dir(config) / LEDGER_FILE, write_fn=no_space))
    code = main(["charge", "100", "--currency", "SAT", "--qr", "--config", str(unreachable)])
    err = capsys.readouterr().err
    assert code == EXIT_STORAGE
    assert "full" in err and "NOT saved" in err
    assert_clean(err)


# ----------------------------------------------------------------------------------- held lock


def test_a_held_lock_exits_5_for_charge_and_0_for_sync(unreachable):
    holder = Ledger(unreachable.parent / "data" / LEDGER_FILE)  # the running app's lock
    try:
        code, _, err = cli("charge", "100", "--currency", "SAT", "--qr", "--config",
                           str(unreachable))
        assert code == EXIT_BUSY and "in use" in err
        assert_clean(err)
        code, out, err = cli("sync", "--config", str(unreachable))
        assert code == EXIT_OK and "syncs it itself" in out
        assert_clean(err)
    finally:
        holder.close()


# --------------------------------------------------------------------- configuration and bugs


def test_an_unusable_configuration_exits_2(tmp_path):
    config = tmp_path / "terminal.toml"
    config.write_text("[terminal]\nnetwork = 5\n")
    for argv in (["charge", "1", "--qr"], ["sync"], ["history"]):
        code, _, err = cli(*argv, "--config", str(config))
        assert code == EXIT_USAGE, (argv, err)
        assert err.startswith(f"flash-terminal {argv[0]}: ") and "terminal.network" in err
        assert_clean(err, max_lines=4)  # one line per problem (the configuration's own report)


def test_a_bug_exits_70_with_a_paragraph_and_the_traceback_only_in_the_debug_log(
    unreachable, capsys, monkeypatch, caplog
):
    import terminal.app.root as root

    def broken(config):
        raise RuntimeError("boom \x1b[31m\nsecond line")

    monkeypatch.setattr(root, "build_terminal", broken)
    with caplog.at_level(logging.DEBUG, logger="terminal.app.cli"):
        code = main(["charge", "100", "--currency", "SAT", "--qr", "--config", str(unreachable)])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL
    assert "internal error" in err and "RuntimeError" in err
    assert_clean(err)
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.levelno == logging.DEBUG


def test_paragraph_cleans_server_text():
    text = paragraph("Flash refused: \x1b[2J\x1b[31mred\r\nnext\tline" + "x" * 1000)
    assert "\x1b" not in text and "\n" not in text and "\r" not in text
    assert len(text) <= 600


# --------------------------------------------------------------- an unusable or hostile backend


def test_an_unreachable_backend_fails_a_qr_charge_plainly(unreachable):
    code, out, err = cli("charge", "100", "--currency", "SAT", "--qr", "--config",
                         str(unreachable), "--json")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == EXIT_NOT_PAID
    assert (result["status"], result["reason"]) == ("failed", "backend-unavailable")
    assert "No invoice was created" in result["message"]
    assert_clean(err)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def proxy(sandbox):
    fake = HostileBackend(sandbox.sandbox.http_url).start()
    yield fake
    fake.stop()


@pytest.fixture
def proxied(sandbox, proxy, tmp_path) -> Path:
    sb = sandbox.sandbox
    config = tmp_path / "terminal.toml"
    config.write_text(render_terminal_config(
        data_dir=tmp_path, network=sb.core.network, http_url=proxy.url, ws_url=sb.ws_url,
        username=sb.username, issuer_key=sb.issuer_key, host=sb.host, lnurlw_base=sb.lnurlw_base,
    ))
    config.chmod(0o600)
    return config


def _creation(body):
    """The creation payload inside a GraphQL answer (whatever the mutation's name)."""
    [payload] = body["data"].values()
    return payload


def number_for_payment_request(operation, body):
    if "InvoiceCreate" in operation and body.get("data"):
        _creation(body)["invoice"]["paymentRequest"] = 12345
    return body


def list_for_error_code(operation, body):
    if "InvoiceCreate" in operation:
        return {"data": None, "errors": [{"message": "no\x1b[31m way\n",
                                          "extensions": {"code": ["A", "B"]}}]}
    return body


def list_for_payload_error_code(operation, body):
    if "InvoiceCreate" in operation and body.get("data"):
        payload = _creation(body)
        payload["invoice"] = None
        payload["errors"] = [{"message": "refused \x1b[2J", "code": ["X"]}]
    return body


@pytest.mark.parametrize("rewrite", [
    number_for_payment_request, list_for_error_code, list_for_payload_error_code,
])
def test_backend_answers_of_the_wrong_type_never_crash_a_charge(proxy, proxied, rewrite):
    proxy.rewrite = rewrite
    code, out, err = cli("charge", "100", "--currency", "SAT", "--qr", "--config",
                         str(proxied), "--json")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == EXIT_NOT_PAID
    assert result["status"] == "failed" and result["payment_hash"] is None
    assert "\x1b" not in out
    assert_clean(err)


@pytest.mark.parametrize("answer", [
    (429, {"errors": [{"message": "Too many requests"}]}),
    (200, {"data": None, "errors": [{"message": "Too many invoices",
                                     "extensions": {"code": "TOO_MANY_REQUESTS"}}]}),
])
def test_a_rate_limited_invoice_creation_does_not_fail_the_sale(
    sandbox, proxy, proxied, tmp_path, answer
):
    """Flash's per-account invoice limit is temporary: a verified card is still accepted
    offline (queued), and the QR path says it is waiting for the backend, never "refused"."""
    from terminal.adapters import simcards
    from terminal.protocols.boltcard.provisioning import BoltcardKeys

    proxy.fail_creations_with(*answer)
    uid = simcards.new_uid()
    issued = sandbox.register_card(uid, 10_000)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)), version=1)
    card = tmp_path / "card.json"
    simcards.create_programmed(card, f"http://127.0.0.1:{sandbox.port}/ln", keys, uid)

    code, out, err = cli("charge", "100", "--currency", "SAT", "--card-file", str(card),
                         "--config", str(proxied), "--json")
    assert (code, json.loads(out)["status"]) == (EXIT_OK, "queued"), err
    assert_clean(err)
