"""SIGKILL at each step of a refund, then restart: the refund ends sent exactly once or not at all,
never twice, and the books agree with the customer's wallet.

The child process (this file run as a script) refunds through the real terminal against the sandbox
running in the test process and kills itself with SIGKILL at the named step (hooks wrap the books,
the LNURL-pay client and the backend's send). The parent then restarts the way the terminal does
(`RefundService.resolve_open`, which every `refund` command and the kiosk run first) and checks
the sandbox's own books: the customer's wallet and the sends Flash kept per idempotency key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
AMOUNT_MSAT = 1_000_000


# ----------------------------------------------------------------------------- the child


def _install_kill_hooks(step: str, ledger, pay_links, backend) -> None:
    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    save_refund, invoice_for, pay_invoice = (ledger.save_refund, pay_links.invoice_for,
                                             backend.pay_invoice)

    def save_refund_(refund):
        save_refund(refund)
        if step == f"refund:{refund.state}":
            die()

    async def invoice_for_(*args, **kwargs):
        answer = await invoice_for(*args, **kwargs)
        if step == "invoice-fetched":
            die()
        return answer

    async def pay_invoice_(*args, **kwargs):
        if step == "before-send":
            die()
        answer = await pay_invoice(*args, **kwargs)
        if step == "sent-unrecorded":
            die()
        return answer

    ledger.save_refund, pay_links.invoice_for, backend.pay_invoice = (
        save_refund_, invoice_for_, pay_invoice_)


async def _child_refund(config_path: str, step: str, sale_id: str, address: str) -> None:
    from terminal.app.config import load_config
    from terminal.app.root import build_refunds, build_terminal
    from terminal.core.money import Money, currency
    from terminal.services.refunds import RefundRequest

    config = load_config(config_path)
    terminal = build_terminal(config)
    service = build_refunds(config, terminal)
    _install_kill_hooks(step, terminal.ledger, terminal.pay_links, terminal.backend)
    await service.refund(RefundRequest(sale_id, Money(AMOUNT_MSAT // 1000, currency("SAT")),
                                       to=address))
    await terminal.aclose()


def _child(argv: list[str]) -> None:
    config_path, step, sale_id, address = argv
    asyncio.run(_child_refund(config_path, step, sale_id, address))


# ----------------------------------------------------------------------------- the parent


def _run_child(*args: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, *args], env=env, cwd=ROOT, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr[-2000:]
    return done.returncode


@pytest.fixture
def rig(tmp_path, capsys):
    from helpers.refund_flow import charge, new_card, sending_config

    from terminal.sandbox.server import SandboxThread

    with SandboxThread(tmp_path / "sandbox") as sandbox:
        config = sending_config(sandbox, tmp_path / "sandbox" / "terminal.toml")
        card = new_card(tmp_path, config, 50_000, capsys)
        sale = charge(capsys, config, 10_000, card)
        yield sandbox, config, sale["sale_id"]


def _restart(config: Path, offset_s: float = 0.0):
    """What a restart does: resolve the refunds left open (with the clock `offset_s` on)."""
    from terminal.app.config import load_config
    from terminal.app.root import build_refunds, build_terminal

    async def go():
        cfg = load_config(config)
        terminal = build_terminal(cfg)
        try:
            service = build_refunds(cfg, terminal)
            service.clock = lambda: time.time() + offset_s
            await service.resolve_open()
            return terminal.ledger.refunds()
        finally:
            await terminal.aclose()

    return asyncio.run(go())


def _sends_per_key(sandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in sandbox.call(lambda: list(sandbox.core.state.sends.values())):
        counts[record.idempotency_key] = counts.get(record.idempotency_key, 0) + 1
    return counts


# step -> (state right after the restart, final state, money landed?)
STEPS = {
    # Killed inside the transaction that records the refund with its sale: none of it stays.
    "refund:created": (None, None, False),
    "invoice-fetched": ("failed", "failed", False),  # an invoice exists, never paid
    "refund:prepared": ("failed", "failed", False),
    "refund:sending": ("pending", "failed", False),  # write-ahead, the send never left
    "before-send": ("pending", "failed", False),
    "sent-unrecorded": ("sent", "sent", True),  # Flash paid; the answer died with the process
    "refund:sent": ("sent", "sent", True),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_kill_during_a_refund_never_sends_it_twice(rig, step, capsys):
    sandbox, config, sale_id = rig
    after_restart, final, landed = STEPS[step]
    address = sandbox.address("bob")
    assert _run_child(str(config), step, sale_id, address) == -signal.SIGKILL

    refunds = _restart(config)
    assert [r.state for r in refunds] == ([after_restart] if after_restart else [])
    if after_restart is None:
        assert sandbox.customer_balance_msat("bob") == 0
    elif after_restart == "pending":
        # Not in the wallet's transactions, its invoice still alive: it could still be paid, so
        # it keeps its amount, and a new refund cannot take it. Once its invoice has expired
        # (an hour on), "not found" means "not paid".
        refunds = _restart(config, offset_s=3600)
    if final is not None:
        assert refunds[0].state == final, refunds[0].history
    assert sandbox.customer_balance_msat("bob") == (AMOUNT_MSAT if landed else 0)
    assert all(n == 1 for n in _sends_per_key(sandbox).values())
    # A second restart changes nothing.
    assert [r.state for r in _restart(config, offset_s=3600)] == ([final] if final else [])

    # The next refund of the same sale counts what the first one did: 10,000 sats paid.
    from helpers.refund_flow import refund

    left = 10_000 - (AMOUNT_MSAT // 1000 if landed else 0)
    code, out = refund(capsys, config, sale_id, "--amount", str(left + 1), "--currency", "SAT",
                       "--to", address)
    assert code == 2 and f"{left:,} sats" in out["stderr"]
    code, out = refund(capsys, config, sale_id, "--to", address)
    assert code == 0 and out["amount_msat"] == left * 1000
    assert sandbox.customer_balance_msat("bob") == 10_000_000  # all of it, once
    assert all(n == 1 for n in _sends_per_key(sandbox).values())


if __name__ == "__main__":
    _child(sys.argv[1:])
