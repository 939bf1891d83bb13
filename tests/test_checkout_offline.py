"""Offline pricing survives a restart, and a card with queued offline taps is not charged online
before they are sent (its issuer would then refuse them as replays)."""

from __future__ import annotations

import asyncio

from terminal.adapters import simcards
from terminal.app.config import load_config
from terminal.app.root import build_terminal
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox import SandboxThread
from terminal.services.sync import SyncWorker


def _card(sb: SandboxThread, path, balance_sats: int) -> None:
    uid = simcards.new_uid()
    issued = sb.register_card(uid, balance_sats)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)),
                        version=int(issued["version"]))
    simcards.create_programmed(path, issued["lnurlw_base"], keys, uid)


async def _with_terminal(config_path, scenario):
    terminal = build_terminal(load_config(config_path))
    try:
        return await scenario(terminal)
    finally:
        await terminal.aclose()


def test_fiat_sale_offline_uses_the_kept_rate_and_queued_card_waits_for_sync(tmp_path):
    data = tmp_path / "sandbox"
    sb = SandboxThread(data).start()
    port = sb.port
    config = sb.write_terminal_config()
    card = tmp_path / "card.json"
    _card(sb, card, 50_000)

    async def fetch_rate(t):
        await t.checkout.refresh_rate("USD")
        return t.checkout.rates.quote("USD", now=t.checkout.clock())

    quote = asyncio.run(_with_terminal(config, fetch_rate))
    assert quote.rate.minor_per_sat > 0
    sb.stop()

    async def offline_sale(t):
        session = await t.checkout.open_sale(150, "USD", "offline")  # $1.50, backend down
        assert session.offline
        return await session.tap(simcards.tap(card)), session

    result, session = asyncio.run(_with_terminal(config, offline_sale))
    assert result.kind == "queued", result
    assert session.record.rate_minor_per_sat == str(quote.rate.minor_per_sat)
    assert session.record.amount_msat > 0

    sb = SandboxThread(data, port=port).start()
    try:
        async def online_tap_then_sync(t):
            early = await t.checkout.open_sale(100, "SAT")
            refused = await early.tap(simcards.tap(card))
            worker = SyncWorker(t.ledger, t.backend, t.withdraw, t.checkout.connectivity)
            report = await worker.run_once(force=True)
            later = await t.checkout.open_sale(100, "SAT")
            accepted = await later.tap(simcards.tap(card))
            outcome = await later.wait_settled(10)
            return refused, report, accepted, outcome

        refused, report, accepted, outcome = asyncio.run(_with_terminal(config,
                                                                        online_tap_then_sync))
    finally:
        sb.stop()
    assert refused.kind == "refused" and refused.code == "queued-payments-pending"
    assert report.paid == 1
    assert accepted.kind == "accepted" and outcome.status == "paid"
