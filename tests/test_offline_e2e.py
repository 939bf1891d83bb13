"""Acceptance, through the command line: `flash-terminal charge` against a stopped sandbox (the
issuer's keys are local) answers `queued`; once the sandbox is back, `flash-terminal sync` turns it
into `paid`; `flash-terminal history --export json` lists it with its full state history.
Also: a network cut in the middle of an online sale."""

from __future__ import annotations

import contextlib
import io
import json

from terminal.adapters import simcards
from terminal.app.cli import main
from terminal.app.cli.exits import EXIT_BACKEND
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox import SandboxThread


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _sim_card(sb: SandboxThread, path, balance_sats: int) -> str:
    uid = simcards.new_uid()
    issued = sb.register_card(uid, balance_sats)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)),
                        version=int(issued["version"]))
    # The sandbox serves plain HTTP on loopback; an lnurlw:// link would mean https.
    simcards.create_programmed(path, f"http://127.0.0.1:{sb.port}/ln", keys, uid)
    return issued["card_id"]


def test_charge_offline_then_sync_then_history(tmp_path):
    data = tmp_path / "sandbox"
    sb = SandboxThread(data).start()
    port = sb.port
    config = str(sb.write_terminal_config())
    card_file = tmp_path / "card.json"
    card_id = _sim_card(sb, card_file, 5_000)
    simcards.tap(card_file)  # a tap read elsewhere: the counter moves on, gaps are fine
    sb.stop()

    code, out = _cli("charge", "150", "--currency", "SAT", "--config", config,
                     "--card-file", str(card_file), "--json")
    queued = json.loads(out)
    assert code == 0 and queued["status"] == "queued", out

    code, out = _cli("sync", "--config", config, "--json")  # still down: stays queued
    down = json.loads(out)
    assert code == EXIT_BACKEND and down["pending"] == 1 and down["paid"] == 0

    sb = SandboxThread(data, port=port).start()
    try:
        # The first pass set a backoff; a pass run by hand tries again at once.
        code, out = _cli("sync", "--config", config, "--json")
        done = json.loads(out)
        assert code == 0, out
        assert [i["outcome"] for i in done["items"]] == ["paid"]
        assert done["items"][0]["sale_id"] == queued["sale_id"]
        assert done["items"][0]["card_id"] == card_id[:12]
        balance = sb.card_state(card_id)["balance_msat"]
    finally:
        sb.stop()

    code, out = _cli("history", "--config", config, "--export", "json")
    assert code == 0
    [sale] = [s for s in json.loads(out) if s["id"] == queued["sale_id"]]
    assert sale["state"] == "paid" and sale["payment_hash"]
    assert 5_000_000 - balance == sale["amount_msat"]
    states = [h["to_state"] for h in sale["history"]]
    assert states[-3:] == ["queued", "submitted", "paid"]
    assert "tap_url" not in out and "p=" not in out  # the one-time tap never leaves the ledger


def test_network_cut_mid_sale_resolves_through_the_invoice(tmp_path):
    """The link drops after the callback went out (issuer paid, answer lost): the sale is not
    retried with the same p/c; the invoice status settles it as paid, charged once."""
    data = tmp_path / "sandbox"
    with SandboxThread(data) as sb:
        config = str(sb.write_terminal_config())
        card_file = tmp_path / "card.json"
        card_id = _sim_card(sb, card_file, 5_000)
        # The issuer pays, then the connection breaks before its answer (the terminal sees a
        # 500 without JSON): the outcome is unknown to the terminal.
        original = sb.core.withdraw_pay
        calls = []

        def pay_then_cut(card, record):
            calls.append(1)
            original(card, record)
            raise ConnectionResetError("link lost")  # the answer never reaches the terminal

        sb.core.withdraw_pay = pay_then_cut
        code, out = _cli("charge", "200", "--currency", "SAT", "--config", config,
                         "--card-file", str(card_file), "--json", "--timeout", "10")
        result = json.loads(out)
        assert code == 0 and result["status"] == "paid", out
        assert len(calls) == 1
        assert 5_000_000 - sb.card_state(card_id)["balance_msat"] == result["amount_msat"]
        code, out = _cli("history", "--config", config, "--export", "json")
        [sale] = json.loads(out)
        assert "tap_failed" not in [h["event"] for h in sale["history"]]  # not retried


def test_invoice_limit_reached_by_another_terminal_is_offline_not_failed(tmp_path):
    """Another terminal of the merchant tripped Flash's invoice limit (20 per 120 s, then 300 s
    blocked): `charge` with a verified card answers `queued` (a wait), never `failed`."""
    data = tmp_path / "sandbox"
    with SandboxThread(data) as sb:
        config = str(sb.write_terminal_config())
        card_file = tmp_path / "card.json"
        _sim_card(sb, card_file, 5_000)
        for _ in range(21):  # the other terminal: its 21st request blocks the account
            with contextlib.suppress(Exception):
                sb.call(sb.core.consume_invoice_limit, "recipient")
        assert sb.limit_state()["invoice_blocks"] == 1
        code, out = _cli("charge", "120", "--currency", "SAT", "--config", config,
                         "--card-file", str(card_file), "--json")
        result = json.loads(out)
    assert code == 0 and result["status"] == "queued", out
