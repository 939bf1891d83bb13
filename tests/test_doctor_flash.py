"""`doctor` and `enroll` on a Flash terminal: the API key's scopes (the missing one named), what
is left of Flash's invoice limit, and how long the offline queue takes to send at that limit.
Against the sandbox enforcing Flash's scopes and limits, over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from terminal.adapters.books.ledger import Ledger
from terminal.app.config import load_config
from terminal.app.doctor import Status, System, queue_drain_time_s, run_doctor
from terminal.app.enroll import check_backend as enroll_backend_checks
from terminal.app.root import FLASH_BUDGET_FILE, build_backend
from terminal.core.ports.backend import InvoiceRequest
from terminal.core.records import QueuedPayout
from terminal.sandbox.server import SandboxThread


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def sb(sandbox):
    sandbox.reset_limits()
    yield sandbox


def keyed_config(sb, tmp_path: Path, api_key: str | None) -> Path:
    path = sb.write_terminal_config(tmp_path / "terminal.toml")
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("data_dir"):
            line = f"data_dir = {json.dumps(str(tmp_path / 'data'))}"
        if line.startswith("username") and api_key:
            line = f"api_key = {json.dumps(api_key)}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def doctor(path: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    system = System(path=str(tmp_path), systemd_dir=run_dir / "none")
    from terminal.app.doctor import ReaderProbe

    return run_doctor(str(path), system=system,
                      reader_probe=lambda p: ReaderProbe(True, "reader on " + p))


def test_a_key_without_read_user_fails_naming_the_scope(sb, tmp_path):
    key = sb.create_api_key(["write:wallet", "read:transactions"])
    report = doctor(keyed_config(sb, tmp_path, key), tmp_path)
    scopes = report.check("scopes")
    assert scopes.status is Status.FAIL and "read_user" in scopes.detail
    assert "read_user, read_wallet, write_wallet and read_transactions" in scopes.fix
    assert report.check("backend").status is Status.FAIL
    assert "read_user" in report.check("backend").detail
    assert key not in json.dumps(report.to_json())


def test_a_key_without_read_transactions_only_warns(sb, tmp_path):
    key = sb.create_api_key(["read:user", "write:wallet"])
    report = doctor(keyed_config(sb, tmp_path, key), tmp_path)
    scopes = report.check("scopes")
    assert scopes.status is Status.WARN and "read_transactions" in scopes.detail
    assert report.check("backend").status is Status.OK


def test_a_complete_key_passes_and_spends_no_invoice_slot(sb, tmp_path):
    report = doctor(keyed_config(sb, tmp_path, sb.api_key), tmp_path)
    assert report.check("scopes").status is Status.OK
    assert sb.limit_state()["invoices"]["self"]["used"] == 0


def test_enroll_names_the_missing_scope(sb, tmp_path):
    key = sb.create_api_key(["read:user", "read:wallet"])
    config = load_config(keyed_config(sb, tmp_path, key))
    checks = {c.name: c for c in asyncio.run(enroll_backend_checks(config))}
    assert checks["scopes"].status is Status.FAIL
    assert "write_wallet" in checks["scopes"].detail


def test_doctor_shows_the_budget_left_and_the_queue_drain_time(sb, tmp_path):
    path = keyed_config(sb, tmp_path, None)
    config = load_config(path)

    async def spend(n: int) -> None:
        backend = build_backend(config)
        for k in range(n):
            await backend.create_invoice(InvoiceRequest(100, "SAT", "x", f"doctor-{k}"))
        await backend.aclose()

    asyncio.run(spend(5))  # the kiosk made five invoices in this window
    ledger = Ledger(config.data_dir / "ledger.jsonl")
    now = time.time()
    with ledger.transaction():
        for n in range(40):
            ledger.add_payout(QueuedPayout(
                id=f"p{n:04d}", sale_id=f"s{n:04d}", store_id=None, amount_sats=100,
                card_id="c" * 64, issuer="sandbox", counter=n + 1,
                tap_url="lnurlw://x?p=1&c=2", created_at=now))
    ledger.close()
    report = doctor(path, tmp_path)
    budget = report.check("budget")
    assert budget.status is Status.OK and "invoices: 15 of 20 left" in budget.detail
    exposure = report.check("exposure")
    assert "at Flash's invoice limit" in exposure.detail and "min" in exposure.detail
    assert (config.data_dir / FLASH_BUDGET_FILE).exists()
    # The counter made 5 sales this window: the drain leaves it 1 + 5 slots of every window,
    # so 14 a window; 9 go now, the other 31 in three more windows: ~6 minutes.
    estimate = queue_drain_time_s(config, 40, now)
    assert 3 * 120 <= estimate <= 3 * 122
