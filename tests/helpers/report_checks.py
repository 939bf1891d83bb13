"""What the report tests share: the report's JSON contract, the command line as (exit code,
output), a funded simulated card, and the check that a report equals the sum over the history it
covers (by the one counting rule)."""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path

from terminal.adapters import simcards
from terminal.app.cli import main
from terminal.core.totals import TAKEN_STATES
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox import SandboxThread

CONTRACT = {"from", "to", "sales", "gross_msat", "tips_msat", "refunds_msat", "net_msat",
            "by_method", "by_cashier", "by_currency", "queued_msat", "failed"}


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _card(sb: SandboxThread, path: Path, sats: int) -> None:
    uid = simcards.new_uid()
    issued = sb.register_card(uid, sats)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)),
                        version=int(issued["version"]))
    simcards.create_programmed(path, f"http://127.0.0.1:{sb.port}/ln", keys, uid)


def _sum_by_the_rule(sales: list[dict]) -> dict:
    """The report's numbers recomputed from an export, by hand."""
    taken = [s for s in sales if s["state"] in TAKEN_STATES]
    return {
        "sales": len(taken),
        "gross_msat": sum(s["amount_msat"] for s in taken),
        "tips_msat": sum(s["tip_msat"] or 0 for s in taken),
        "queued_msat": sum(s["amount_msat"] for s in taken if s["state"] != "paid"),
        "failed": sum(s["state"] in ("failed", "expired", "cancelled", "declined")
                      for s in sales),
        "by_cashier": dict(Counter(s["cashier"] or "none" for s in taken)),
        "by_method": dict(Counter(s["method"] for s in taken)),
    }


def _compare(report: dict, sales: list[dict]) -> None:
    expected = _sum_by_the_rule(sales)
    for key in ("sales", "gross_msat", "tips_msat", "queued_msat", "failed"):
        assert report[key] == expected[key], key
    assert {c: g["sales"] for c, g in report["by_cashier"].items()} == expected["by_cashier"]
    assert {m: g["sales"] for m, g in report["by_method"].items()} == expected["by_method"]
    assert report["net_msat"] == report["gross_msat"] - report["refunds_msat"]
