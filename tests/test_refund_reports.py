"""Refunds in reports and history: a day's report equals the sum over `history --export json` of
the same day, with offline and refunded sales in it (end to end against the sandbox), and the
refunds are named per cashier."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

from helpers.refund_flow import sending_config
from helpers.report_checks import CONTRACT, _card, _cli, _compare

from terminal.core.pins import hash_pin
from terminal.sandbox.server import SandboxThread


def test_a_days_report_equals_its_history_with_offline_and_refunded_sales(tmp_path: Path):
    data = tmp_path / "sandbox"
    sb = SandboxThread(data).start()
    port = sb.port
    config = sending_config(sb, data / "terminal.toml")
    staffed = config.with_name("staffed.toml")
    staffed.write_text(config.read_text() + '\n[[cashiers]]\nid = "ana"\nname = "Ana"\n'
                       'role = "manager"\n'
                       f'pin_hash = "{hash_pin("1111", iterations=1000)}"\n'
                       '\n[[cashiers]]\nid = "cy"\nname = "Cy"\n'
                       f'pin_hash = "{hash_pin("2222", iterations=1000)}"\n'
                       "\n[ui]\nrequire_sign_in = false\n")
    staffed.chmod(0o600)
    card, poor, away = tmp_path / "card.json", tmp_path / "poor.json", tmp_path / "away.json"
    _card(sb, card, 100_000)
    _card(sb, poor, 10)
    _card(sb, away, 10_000)
    sb.stop()
    # Offline: accepted by the local checks, queued (counted, named apart); not refundable yet.
    code, out = _cli("charge", "150", "--currency", "SAT", "--config", str(staffed),
                     "--card-file", str(away), "--cashier", "cy", "--json")
    offline = json.loads(out)
    assert code == 0 and offline["status"] == "queued"
    sb = SandboxThread(data, port=port).start()
    try:
        paid = []
        for args in (["5000", "--currency", "SAT", "--tip", "10%", "--cashier", "cy"],
                     ["300", "--currency", "SAT", "--cashier", "cy"]):
            code, out = _cli("charge", *args, "--config", str(staffed), "--card-file",
                             str(card), "--json")
            assert code == 0 and json.loads(out)["status"] == "paid", out
            paid.append(json.loads(out))
        code, out = _cli("charge", "5", "--currency", "USD", "--config", str(staffed),
                         "--card-file", str(poor), "--cashier", "cy", "--json")
        assert code == 4  # refused: an attempt, never a sale
        address = f"zoe@127.0.0.1:{port}"
        # A cashier is no manager; the manager refunds part of one sale and all of the other.
        try:
            _cli("refund", paid[0]["sale_id"], "--to", address, "--cashier", "cy",
                 "--config", str(staffed), "--json")
            raise AssertionError("a cashier refunded")
        except SystemExit as exc:
            assert exc.code == 2
        code, out = _cli("refund", paid[0]["sale_id"], "--amount", "1000", "--currency", "SAT",
                         "--to", address, "--cashier", "ana", "--config", str(staffed), "--json")
        assert code == 0 and json.loads(out)["status"] == "sent"
        code, out = _cli("refund", paid[1]["sale_id"], "--card-file", str(card),
                         "--cashier", "ana", "--config", str(staffed), "--json")
        assert code == 0 and json.loads(out)["amount_msat"] == 300_000
        try:
            _cli("refund", offline["sale_id"], "--to", address, "--cashier", "ana",
                 "--config", str(staffed), "--json")
            raise AssertionError("an unsettled offline sale was refunded")
        except SystemExit as exc:
            assert exc.code == 2
    finally:
        sb.stop()
    today = dt.date.today().isoformat()
    code, out = _cli("history", "--from", today, "--to", today, "--export", "json",
                     "--config", str(staffed))
    sales = json.loads(out)
    assert code == 0 and Counter(s["state"] for s in sales) == {"paid": 2, "queued": 1,
                                                               "failed": 1}
    code, out = _cli("report", "--day", today, "--config", str(staffed), "--json")
    day = json.loads(out)
    assert code == 0 and set(day) == CONTRACT
    # The one counting rule, as history counts it (a cashier who only refunded has no sales).
    _compare({**day, "by_cashier": {c: g for c, g in day["by_cashier"].items() if g["sales"]}},
             sales)
    refunded = sum(s["refunded_msat"] for s in sales)
    assert day["refunds_msat"] == refunded == 1_300_000
    assert day["net_msat"] == day["gross_msat"] - refunded
    assert day["queued_msat"] == offline["amount_msat"]
    # Sales are Cy's; the refunds are Ana's (who refunded them).
    assert day["by_cashier"]["ana"]["refunds_msat"] == 1_300_000
    assert day["by_cashier"]["ana"]["sales"] == 0
    assert day["by_cashier"]["cy"]["sales"] == 3 and day["by_cashier"]["cy"]["refunds_msat"] == 0
    code, out = _cli("report", "--shift", "--config", str(staffed), "--json")
    assert code == 0 and json.loads(out)["refunds_msat"] == 1_300_000
    code, out = _cli("report", "--day", today, "--config", str(staffed))
    assert "Refunds" in out
