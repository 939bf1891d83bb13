"""Admin > Cards > Block through the controller (no Kivy), against the demo's in-process sandbox
and simulated cards: tap to block with a reason, what a card that cannot be named gets, the
unblock list, and blocks from a fetched list that only their source can lift."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hw.nfc import read_tap
from hw.sim.card import SimulatedNtag424
from terminal.adapters import simcards
from terminal.app.demo import DEMO_ADMIN_PIN, DemoEnvironment
from terminal.app.ui.viewmodels import Screen, TerminalController
from terminal.app.ui.viewmodels.card_tools import Tool, ToolPhase
from terminal.core.hotlist import HotlistSnapshot
from terminal.protocols.boltcard.provisioning import BoltcardKeys


@pytest.fixture
def demo(tmp_path: Path):
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(DemoEnvironment.start(tmp_path, background=False))
    try:
        yield loop, env
    finally:
        loop.run_until_complete(env.stop())
        loop.close()


def _unlock(c: TerminalController) -> None:
    c.go(Screen.ADMIN)
    for d in DEMO_ADMIN_PIN:
        c.admin.press(d)
    c.admin.submit()
    assert c.admin.unlocked


def _stranger(tmp_path: Path):
    """A card on the demo's host whose keys the terminal lacks, on the reader."""
    path = tmp_path / "stranger.json"
    keys = BoltcardKeys(*(bytes([n + 7]) * 16 for n in range(5)), version=1)
    simcards.create_programmed(path, "http://127.0.0.1:1/ln", keys)
    card = SimulatedNtag424.load(path)
    card.power_on()
    return read_tap(card)


def test_tap_to_block_with_a_reason_then_unblock_from_the_list(demo, tmp_path: Path) -> None:
    loop, env = demo

    async def scenario() -> None:
        c = env.controller()
        try:
            _unlock(c)
            assert c.tools.choose(Tool.BLOCK) and c.tools.armed
            c.blocks.next_reason()
            c.blocks.set_custom_reason("  left on the counter  ")
            assert "It will be blocked as: left on the counter" in c.tools.detail_lines
            await env.present("A")
            assert c.tools.phase is ToolPhase.DONE and c.tools.title == "Card blocked"
            [row] = c.blocks.rows
            assert row.can_unblock and "left on the counter (this terminal)" in row.text
            uid = SimulatedNtag424.load(env.card_path("A"), autosave=False).real_uid
            shown = "\n".join([c.tools.title, *c.tools.detail_lines, *(r.text for r in
                                                                        c.blocks.rows)])
            assert uid.hex() not in shown.lower()  # cards are named by card id only
            # A card that cannot be named cannot be blocked here; it says why.
            assert c.tools.choose(Tool.BLOCK)
            await c.present_card(_stranger(tmp_path))
            assert c.tools.phase is ToolPhase.FAILED
            # (One tap in 256 of a stranger decrypts under the demo issuer's K1 and then fails
            # its CMAC: the same refusal, named cmac-mismatch.)
            assert any(f"does not verify with the configured keys ({why})" in
                       c.tools.detail_lines[0] for why in ("unknown-issuer", "cmac-mismatch"))
            assert "unknown-card policy" in c.tools.next_text
            # Unblock from the list.
            c.blocks.unblock(row.card_id)
            assert c.blocks.rows == [] and "unblocked" in c.blocks.notice
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_a_block_from_a_fetched_list_cannot_be_lifted_here(demo) -> None:
    loop, env = demo

    async def scenario() -> None:
        c = env.controller()
        policy = c.till.checkout.card_policy
        url = env.tap("A")
        card_id = c.till.checkout.keyring.verify_tap(url).card_id
        policy.store_snapshot(HotlistSnapshot("issuer-list", time.time(),
                                              {card_id: "reported stolen"}))
        try:
            [row] = c.blocks.rows
            assert not row.can_unblock and "reported stolen (issuer-list)" in row.text
            c.blocks.unblock(card_id)
            assert "still blocked by the list issuer-list" in c.blocks.notice
            assert policy.hotlist.block_of(card_id) is not None
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_block_needs_the_books(demo) -> None:
    loop, env = demo

    async def scenario() -> None:
        c = env.controller()
        c.blocks.policy = None
        try:
            assert not c.tools.choose(Tool.BLOCK)
            assert "books" in c.tools.detail_lines[0]
        finally:
            await c.aclose()

    loop.run_until_complete(scenario())


def test_the_settings_overview_shows_card_limits_and_hotlists_without_keys(tmp_path: Path):
    from terminal.app.config import parse_config
    from terminal.app.ui.viewmodels.admin import admin_sections

    config = parse_config({
        "terminal": {"data_dir": str(tmp_path)},
        "backend": {"flash": {"http_url": "https://api.example/graphql", "username": "shop"}},
        "issuers": [{"name": "acme", "issuer_key": "11" * 16, "hosts": ["cards.acme.example"]}],
        "cards": {"max_per_day_sats": 20_000, "max_taps_per_hour": 6,
                  "limits": [{"card_id": "ab" * 16, "max_per_day_sats": 0}],
                  "hotlists": [{"name": "lnbits", "kind": "lnbits", "api_key": "secret-key-1",
                                "url": "https://lnbits.example/boltcards/api/v1/cards"}]},
    })
    text = repr([(s.title, s.lines) for s in admin_sections(config)])
    for expected in ("Card limits and hotlists", "per tap no limit", "per day 20,000 sats",
                     "6 payments an hour", "1 card(s) with their own limits",
                     "unknown cards on other hosts: online-only",
                     "hotlist lnbits (lnbits) · lnbits.example · every 15 min",
                     "unknown cards require-verification"):
        assert expected in text, expected
    assert "secret-key-1" not in text
