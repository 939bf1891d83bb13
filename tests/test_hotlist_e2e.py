"""Fetched hotlists end to end: a loopback hotlist server and an LNbits-shaped card list
(tests/fakes/card_lists.py), the sandbox issuer's own list of disabled cards, the kiosk's loop,
the books on disk, and taps of the simulated card through checkout, online and offline."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes.card_lists import CARDS_PATH, HOTLIST_PATH, CardLists, LnbitsCard

from terminal.adapters import simcards
from terminal.app.config import load_config
from terminal.app.doctor import check_hotlists
from terminal.app.root import build_hotlists, build_kiosk, build_sync, build_terminal, build_till
from terminal.core.connectivity import Connectivity
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox import SandboxThread
from terminal.services.hotlists import HotlistRefresher, HotlistSource


def _sim_card(sb: SandboxThread, path: Path, balance_sats: int = 5_000) -> tuple[str, bytes]:
    uid = simcards.new_uid()
    issued = sb.register_card(uid, balance_sats)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)),
                        version=int(issued["version"]))
    simcards.create_programmed(path, f"http://127.0.0.1:{sb.port}/ln", keys, uid)
    return issued["card_id"], uid


def _config(sb: SandboxThread, extra: str) -> Path:
    path = sb.write_terminal_config()
    with path.open("a") as fh:
        fh.write(extra)
    return path


async def _tap(terminal, card_file: Path, sats: int = 150):
    session = await terminal.checkout.open_sale(sats, "SAT")
    return session, await session.tap(simcards.tap(card_file))


def test_a_loopback_hotlist_blocks_a_card_within_one_fetch_interval_and_holds_offline(tmp_path):
    refresh_s = 1.0
    lists = CardLists().start()
    sb = SandboxThread(tmp_path / "sb").start()
    card_file = tmp_path / "card.json"
    card_id, _uid = _sim_card(sb, card_file)
    path = _config(sb, f"""
[cards]
hotlist_refresh_s = {refresh_s}
hotlist_retry_s = {refresh_s}

[[cards.hotlists]]
name = "merchant"
url = "{lists.origin}{HOTLIST_PATH}"
""")
    config = load_config(path)

    async def online() -> None:
        terminal = build_terminal(config)
        till = build_till(config, terminal)
        kiosk = build_kiosk(config, terminal, till)
        policy = terminal.cards
        fetched, blocked = asyncio.Event(), asyncio.Event()

        def changed() -> None:
            if policy.snapshot("merchant").fetched_at is not None:
                fetched.set()
            if policy.hotlist.block_of(card_id) is not None:
                blocked.set()

        policy.subscribe(changed)
        kiosk.start()
        try:
            await asyncio.wait_for(fetched.wait(), 10)  # the fetch at start
            assert policy.hotlist.block_of(card_id) is None
            _session, result = await _tap(terminal, card_file)
            assert result.kind == "accepted"
            before = lists.set_hotlist({"version": 1, "cards": [
                {"card_id": card_id, "reason": "reported stolen"}]})
            await asyncio.wait_for(blocked.wait(), 5 * refresh_s)
            # The first fetch after the list changed blocked it: the kiosk fetches every
            # refresh_s, so that is within one interval.
            assert lists.requests[HOTLIST_PATH] == before + 1
            session, result = await _tap(terminal, card_file)
            assert (result.kind, result.code) == ("refused", "card-blocked")
            assert "reported stolen" in result.message and "merchant" in result.message
            assert not session.sale.is_final  # another card or the QR may still pay
        finally:
            await kiosk.stop()
            await till.aclose()
            await terminal.aclose()

    asyncio.run(online())
    lists.stop()
    sb.stop()

    async def offline_after_restart() -> None:
        terminal = build_terminal(config)  # a restart: the block comes from the books
        try:
            assert terminal.cards.hotlist.block_of(card_id).reason == "reported stolen"
            refresher = build_hotlists(config, terminal)
            [result] = await refresher.refresh()  # the list's server is gone too
            assert not result.ok and result.blocked == 1
            assert terminal.cards.hotlist.block_of(card_id) is not None  # the last good list
            session, tapped = await _tap(terminal, card_file)
            assert session.offline
            assert (tapped.kind, tapped.code) == ("refused", "card-blocked")
        finally:
            await terminal.aclose()

    asyncio.run(offline_after_restart())
    doctor = check_hotlists(config)
    assert doctor.status.value == "warn"
    assert "merchant: fetched" in doctor.detail and "1 card(s) blocked" in doctor.detail
    assert "the last attempt failed" in doctor.detail


def test_the_refresh_schedule_start_interval_backoff_and_reconnect(tmp_path):
    """The schedule with a hand-driven clock (real server, real client, real books)."""
    lists = CardLists().start()
    sb = SandboxThread(tmp_path / "sb").start()
    path = _config(sb, f"""
[[cards.hotlists]]
name = "merchant"
url = "{lists.origin}{HOTLIST_PATH}"
""")
    sb.stop()
    config = load_config(path)
    now = [1_000.0]
    link = Connectivity()

    async def run() -> None:
        terminal = build_terminal(config)
        source = HotlistSource("merchant", f"{lists.origin}{HOTLIST_PATH}")
        refresher = HotlistRefresher(terminal.cards, _client(config, terminal), (source,),
                                     refresh_s=100, retry_s=10, connectivity=link,
                                     clock=lambda: now[0])
        try:
            assert len(await refresher.refresh_due()) == 1  # at start
            now[0] += 99
            assert await refresher.refresh_due() == []  # not yet
            assert 0 < refresher.wait_s() <= 5  # short enough to notice a reconnection
            now[0] += 1
            assert len(await refresher.refresh_due()) == 1  # one interval later
            link.failure(now[0], "down")
            now[0] += 3
            link.success(now[0])  # back online: fetch at once, not at the next interval
            [result] = await refresher.refresh_due()
            assert result.ok
            lists.hotlist_answer = (500, b"<html>oops</html>")
            now[0] += 100
            [failed] = await refresher.refresh_due()
            assert not failed.ok and "HTTP 500" in failed.detail
            now[0] += 9
            assert await refresher.refresh_due() == []
            now[0] += 1
            assert len(await refresher.refresh_due()) == 1  # retry_s after the failure
            now[0] += 19
            assert await refresher.refresh_due() == []  # then doubling
            now[0] += 1
            assert len(await refresher.refresh_due()) == 1
        finally:
            await terminal.aclose()

    try:
        asyncio.run(run())
    finally:
        lists.stop()
    assert lists.requests[HOTLIST_PATH] == 6


def _client(config, terminal):
    from terminal.app.root import build_hotlist_client

    terminal.hotlist_client = build_hotlist_client(config)
    return terminal.hotlist_client


def test_a_card_its_issuer_disables_is_refused_offline_once_the_issuers_list_was_fetched(
        tmp_path):
    sb = SandboxThread(tmp_path / "sb").start()
    card_file = tmp_path / "card.json"
    card_id, _ = _sim_card(sb, card_file)
    config = load_config(_config(sb, f"""
[[cards.hotlists]]
name = "sandbox-issuer"
url = "http://127.0.0.1:{sb.port}/hotlist.json"
"""))

    async def run() -> None:
        terminal = build_terminal(config)
        refresher = build_hotlists(config, terminal)
        try:
            [result] = await refresher.refresh()
            assert result.ok and result.blocked == 0
            sb.update_card(card_id, enabled=False)  # the owner reported it lost
            [result] = await refresher.refresh()
            assert result.ok and result.blocked == 1 and result.newly_blocked == 1
            sb.stop()  # the terminal goes offline before the card comes back
            session, tapped = await _tap(terminal, card_file)
            assert session.offline and (tapped.kind, tapped.code) == ("refused", "card-blocked")
            assert "Card is disabled by its issuer" in tapped.message
            assert terminal.ledger.payouts() == []  # nothing queued against a lost card
        finally:
            await terminal.aclose()

    asyncio.run(run())


def test_an_lnbits_card_list_blocks_disabled_cards_and_applies_its_limits(tmp_path):
    lists = CardLists().start()
    sb = SandboxThread(tmp_path / "sb").start()
    card_file = tmp_path / "card.json"
    card_id, uid = _sim_card(sb, card_file)
    lists.cards = [LnbitsCard(uid.hex(), "Alice", enable=True, tx_limit=100, daily_limit=5000),
                   LnbitsCard("04" + "ee" * 6, "Not here")]
    path = _config(sb, f"""
[[cards.hotlists]]
name = "lnbits"
kind = "lnbits"
url = "{lists.origin}{CARDS_PATH}"
api_key = "{lists.invoice_key}"
""")
    config = load_config(path)

    async def run() -> None:
        terminal = build_terminal(config)
        refresher = build_hotlists(config, terminal)
        try:
            [result] = await refresher.refresh()
            assert result.ok and result.blocked == 0
            assert terminal.cards.limits_for(card_id).per_tap_msat == 100_000
            # The other card (no limits set in LNbits: 0) gets none from the list.
            assert terminal.cards.hotlist.limited_ids() == {card_id}
            _session, tapped = await _tap(terminal, card_file, 150)
            assert (tapped.kind, tapped.code) == ("refused", "card-limit-per-tap")
            assert "at most 100 sats a tap" in tapped.message
            lists.cards[0].enable = False
            [result] = await refresher.refresh()
            assert result.ok and result.newly_blocked == 1
            _session, tapped = await _tap(terminal, card_file, 50)
            assert tapped.code == "card-blocked" and "LNbits" in tapped.message
            # A wrong key: LNbits' own words, and the last good list stays in force.
            refresher.sources = (HotlistSource("lnbits", f"{lists.origin}{CARDS_PATH}",
                                               "lnbits", "0" * 32),)
            [result] = await refresher.refresh()
            assert not result.ok and result.detail == "HTTP 404: Wallet not found."
            assert terminal.cards.hotlist.block_of(card_id) is not None
        finally:
            await terminal.aclose()

    try:
        asyncio.run(run())
    finally:
        lists.stop()
        sb.stop()
    assert lists.keys_seen[:2] == [lists.invoice_key] * 2  # in X-Api-Key, as LNbits reads it
    # The card keys in LNbits' answer were never written down.
    for file in config.data_dir.rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            assert lists.cards[0].k1.encode() not in data and lists.cards[0].k2.encode() not in data


def test_queued_payouts_of_a_card_blocked_later_are_flagged_then_still_sent(tmp_path):
    data = tmp_path / "sb"
    sb = SandboxThread(data).start()
    port = sb.port
    card_file = tmp_path / "card.json"
    card_id, _ = _sim_card(sb, card_file)
    config = load_config(_config(sb, ""))
    sb.stop()

    async def offline() -> None:
        terminal = build_terminal(config)
        try:
            session, tapped = await _tap(terminal, card_file)
            assert tapped.kind == "queued"
            policy = terminal.cards
            assert policy.flagged_payouts() == []
            policy.block(card_id, "customer says: lost yesterday")
            [flagged] = policy.flagged_payouts()
            assert flagged.sale_id == session.record.id
            kinds = [e.kind for e in terminal.ledger.events(10)]
            assert "blocked-card-payouts" in kinds
            from terminal.app.ui.viewmodels.controller import TerminalController

            till = build_till(config, terminal)
            controller = TerminalController(till, admin_pin_hash=None)
            assert "1 of blocked cards" in controller.status.queue_text
            assert controller.status.queue_tone.value == "error"
            await till.aclose()
        finally:
            await terminal.aclose()

    asyncio.run(offline())
    assert "1 offline payment(s) of blocked cards" in check_hotlists(config).detail
    sb = SandboxThread(data, port=port).start()

    async def back_online() -> None:
        terminal = build_terminal(config)
        try:
            report = await build_sync(config, terminal).run_once(force=True)
            assert [i.outcome for i in report.items] == ["paid"]  # flagged, never dropped
            assert terminal.cards.flagged_payouts() == []
        finally:
            await terminal.aclose()

    try:
        asyncio.run(back_online())
    finally:
        sb.stop()

