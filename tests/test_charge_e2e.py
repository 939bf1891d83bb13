"""One complete sale against the sandbox, through the CLI contract and the checkout service.

Real parts throughout: the sandbox's Flash GraphQL + issuer on 127.0.0.1, the simulated card read
through the NTAG 424 DNA command code, the ledger on disk.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from terminal.adapters.simcards import tap as tap_card
from terminal.app.cli import main
from terminal.app.config import load_config
from terminal.app.root import build_terminal
from terminal.sandbox.server import SandboxThread


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    data = tmp_path_factory.mktemp("sandbox")
    with SandboxThread(data) as sb:
        sb.write_terminal_config()
        yield sb


@pytest.fixture(scope="module")
def config_path(sandbox) -> Path:
    return sandbox.sandbox.data_dir / "terminal.toml"


def new_card(tmp_path: Path, config_path: Path, balance: int, capsys, *extra: str) -> Path:
    card = tmp_path / f"card-{balance}.json"
    data = str(config_path.parent)
    assert main(["sandbox", "card", "new", str(card), "--data", data,
                 "--balance", str(balance), "--json", *extra]) == 0
    capsys.readouterr()
    return card


def charge(capsys, config_path: Path, *args: str) -> tuple[int, dict]:
    code = main(["charge", *args, "--config", str(config_path), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_charge_with_a_simulated_card_is_paid(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    code, result = charge(capsys, config_path, "5", "--currency", "USD", "--card-file", str(card))
    assert result["status"] == "paid", result
    assert code == 0
    assert set(result) >= {"status", "reason", "sale_id", "payment_hash", "amount_msat"}
    assert result["reason"] is None
    assert result["amount_msat"] > 0 and len(result["payment_hash"]) == 64


def test_insufficient_balance_fails_with_its_reason(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 10, capsys)
    code, result = charge(capsys, config_path, "5", "--currency", "USD", "--card-file", str(card))
    assert code == 4
    assert result["status"] == "failed"
    assert result["reason"] == "insufficient-balance"
    assert "balance" in result["message"].lower()


def test_replayed_tap_is_refused_before_any_network_call(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    url = tap_card(card)
    code, first = charge(capsys, config_path, "100", "--currency", "SAT", "--tap", url)
    assert code == 0 and first["status"] == "paid"
    code, second = charge(capsys, config_path, "100", "--currency", "SAT", "--tap", url)
    assert code == 4
    assert second["reason"] == "replayed-tap"


def test_forged_tap_is_refused_locally(tmp_path, config_path, capsys):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    url = tap_card(card)
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    code, result = charge(capsys, config_path, "1", "--currency", "USD", "--tap", forged)
    assert code == 4 and result["reason"] == "cmac-mismatch"


def test_usage_errors_exit_2(config_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["charge", "5", "--config", str(config_path), "--json"])  # no tap/card/qr
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["charge", "abc", "--qr", "--config", str(config_path)])
    assert exc.value.code == 2


def test_qr_sale_is_paid_when_a_wallet_pays_and_a_late_tap_is_answered(
    tmp_path, sandbox, config_path, capsys
):
    card = new_card(tmp_path, config_path, 100_000, capsys)

    async def scenario():
        terminal = build_terminal(load_config(config_path))
        try:
            session = await terminal.checkout.open_sale(250, "SAT", "coffee")
            assert session.invoice is not None
            sandbox.pay_invoice(session.invoice.bolt11)
            outcome = await session.wait_settled(10)
            late = await session.tap(tap_card(card))
            return session, outcome, late
        finally:
            await terminal.aclose()

    session, outcome, late = asyncio.run(scenario())
    assert outcome.status == "paid"
    assert session.record.method == "qr"
    assert late.kind == "late" and "already paid" in late.message
    states = [h.to_state for h in session.record.history]
    assert states == ["created", "invoiced", "paid"]


def test_callback_timeout_is_resolved_through_the_invoice_status(
    tmp_path, sandbox, config_path, capsys
):
    card = new_card(tmp_path, config_path, 100_000, capsys)
    sandbox.set_faults(latency_s={"ln_callback": 3.0})
    try:
        async def scenario():
            config = load_config(config_path)
            terminal = build_terminal(config)
            from terminal.adapters.withdraw import Timeouts

            terminal.withdraw.timeouts = Timeouts(callback_read=0.5, callback_deadline=0.8)
            try:
                session = await terminal.checkout.open_sale(300, "SAT")
                result = await session.tap(tap_card(card))
                outcome = await session.wait_settled(15)
                return result, outcome, session
            finally:
                await terminal.aclose()

        result, outcome, session = asyncio.run(scenario())
    finally:
        sandbox.set_faults(latency_s={})
    assert result.kind == "unknown"
    assert outcome.status == "paid"
    assert [h.event for h in session.record.history].count("callback_sent") == 1


def _scenario(config_path, body):
    async def run():
        terminal = build_terminal(load_config(config_path))
        try:
            return await body(terminal)
        finally:
            await terminal.aclose()

    return asyncio.run(run())


def test_a_proxy_page_after_the_callback_is_never_read_as_refused(
    tmp_path, sandbox, config_path, capsys
):
    """A gateway answers the callback with HTML while the issuer behind it pays: the sale must
    not be marked failed (the next tap would charge the customer twice)."""
    card = new_card(tmp_path, config_path, 100_000, capsys)
    sandbox.set_faults(server_error_next={"ln_callback": 1}, server_error_status=200)

    async def body(terminal):
        session = await terminal.checkout.open_sale(120, "SAT")
        result = await session.tap(tap_card(card))
        sandbox.pay_invoice(session.invoice.bolt11)  # the issuer paid behind the proxy
        return result, await session.wait_settled(10)

    try:
        result, outcome = _scenario(config_path, body)
    finally:
        sandbox.set_faults(server_error_next={}, server_error_status=502)
    assert result.kind == "unknown"
    assert outcome.status == "paid"


def test_a_wallet_paying_after_cancel_is_caught_by_recovery(sandbox, config_path):
    async def body(terminal):
        session = await terminal.checkout.open_sale(130, "SAT")
        assert await session.cancel()
        sandbox.pay_invoice(session.invoice.bolt11)
        await terminal.checkout.recover()
        return terminal.ledger.get_sale(session.record.id)

    record = _scenario(config_path, body)
    assert record.state == "paid"
    assert [h.to_state for h in record.history][-2:] == ["cancelled", "paid"]


def test_one_bad_status_answer_does_not_end_the_wait(sandbox, config_path):
    async def body(terminal):
        session = await terminal.checkout.open_sale(140, "SAT")
        sandbox.set_faults(malformed_json_next=1)
        sandbox.pay_invoice(session.invoice.bolt11)
        return await session.wait_settled(15)

    try:
        outcome = _scenario(config_path, body)
    finally:
        sandbox.set_faults(malformed_json_next=0)
    assert outcome.status == "paid"


def test_qr_payment_after_a_refused_card_is_recorded_as_qr(tmp_path, sandbox, config_path,
                                                           capsys):
    poor = new_card(tmp_path, config_path, 10, capsys)

    async def body(terminal):
        session = await terminal.checkout.open_sale(500, "SAT")
        refused = await session.tap(tap_card(poor))
        sandbox.pay_invoice(session.invoice.bolt11)
        return refused, await session.wait_settled(10), session.record

    refused, outcome, record = _scenario(config_path, body)
    assert refused.kind == "refused" and refused.code == "insufficient-balance"
    assert outcome.status == "paid"
    assert record.method == "qr" and record.card_id is None
    assert [h.event for h in record.history] == [
        "created", "invoice_ready", "tap", "withdraw_requested", "tap_failed", "paid"]
