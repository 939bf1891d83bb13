"""Fetching hotlists under the issuer URL policy (terminal.adapters.hotlist_http over the LNURL
client's wire) and keeping them in the books (terminal.services.card_policy): hostile or broken
sources change nothing; UIDs become card ids; unchanged lists are not rewritten."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from fakes.card_lists import CARDS_PATH, HOTLIST_PATH, CardLists, LnbitsCard
from fakes.lnurl_issuer import Issuer

from terminal.adapters.books.ledger import Ledger
from terminal.adapters.hotlist_http import HotlistClient
from terminal.protocols.boltcard import Keyring, KeyTableCard, KeyTableIssuer, key_table_card_id
from terminal.protocols.hotlist import HotlistUnavailable
from terminal.protocols.lnurl import UrlPolicy
from terminal.services.card_policy import CardPolicy, CardPolicySettings
from terminal.services.hotlists import HotlistRefresher, HotlistSource

LOOPBACK = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1"}),
                     allow_private_hosts=frozenset({"127.0.0.1"}))
K2 = bytes([9] * 16)
UID = bytes.fromhex("04a1b2c3d4e5f6")
CARD_ID = key_table_card_id(K2, UID)


@pytest.fixture
def lists():
    with CardLists() as server:
        yield server


def _policy(tmp_path: Path, *sources: str) -> tuple[CardPolicy, Ledger]:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ring = Keyring([KeyTableIssuer("lnbits", [KeyTableCard(k1=bytes(16), k2=K2, uid=UID)])])
    return CardPolicy(ledger, CardPolicySettings(sources=sources), card_ids=ring.card_ids), ledger


def _refresh(policy: CardPolicy, client: HotlistClient, *sources: HotlistSource):
    refresher = HotlistRefresher(policy, client, sources)

    async def run():
        try:
            return await refresher.refresh()
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_uids_map_to_card_ids_and_only_card_ids_are_kept(tmp_path, lists):
    lists.set_hotlist({"version": 1, "cards": [
        {"uid": UID.hex().upper(), "reason": "lost"},
        {"uid": "04000000000001", "reason": "someone else's card"},
        {"card_id": "ab" * 16, "reason": "stolen"},
    ]})
    policy, ledger = _policy(tmp_path, "merchant")
    [result] = _refresh(policy, HotlistClient(LOOPBACK),
                        HotlistSource("merchant", lists.origin + HOTLIST_PATH))
    assert result.ok and result.blocked == 2 and "1 entry for cards without keys" in result.detail
    assert policy.hotlist.block_of(CARD_ID).reason == "lost"
    assert policy.hotlist.block_of("ab" * 16).reason == "stolen"
    ledger.close()
    assert UID.hex() not in (tmp_path / "ledger.jsonl").read_text().lower()
    reopened, ledger = _policy(tmp_path, "merchant")  # kept in the books: a restart keeps it
    assert reopened.hotlist.block_of(CARD_ID).reason == "lost"
    assert reopened.snapshot("merchant").unmatched == 1
    ledger.close()


def test_an_unchanged_list_is_not_written_again(tmp_path, lists):
    lists.set_hotlist({"cards": [{"card_id": "cd" * 16}] * 1 + [
        {"card_id": f"{n:032x}"} for n in range(2000)]})
    policy, ledger = _policy(tmp_path, "merchant")
    source = HotlistSource("merchant", lists.origin + HOTLIST_PATH)

    async def twice():
        client = HotlistClient(LOOPBACK, max_bytes=1 << 20)
        refresher = HotlistRefresher(policy, client, (source,))
        try:
            await refresher.refresh()
            size = (tmp_path / "ledger.jsonl").stat().st_size
            await refresher.refresh()
            return size, (tmp_path / "ledger.jsonl").stat().st_size
        finally:
            await client.aclose()

    first, second = asyncio.run(twice())
    assert len(policy.hotlist.blocked_ids()) == 2001
    assert second - first < 1000  # only the fetch time, not 2,001 card ids again
    ledger.close()


@pytest.mark.parametrize("answer, words", [
    ((200, b"<html>not json</html>"), "not JSON"),
    ((200, b'{"version": 1, "cards": [{"card_id": "short"}]}'), "32 hex"),
    ((200, b'{"cards": "all"}'), '"cards" must be a list'),
    ((503, b'{"detail": "maintenance\\u001b[2J"}'), "HTTP 503: maintenance"),
    ((404, b""), "HTTP 404"),
])
def test_a_broken_answer_keeps_the_last_good_list(tmp_path, lists, answer, words):
    lists.set_hotlist({"cards": [{"card_id": "ab" * 16, "reason": "stolen"}]})
    policy, ledger = _policy(tmp_path, "merchant")
    source = HotlistSource("merchant", lists.origin + HOTLIST_PATH)
    assert _refresh(policy, HotlistClient(LOOPBACK), source)[0].ok
    lists.hotlist_answer = answer
    [result] = _refresh(policy, HotlistClient(LOOPBACK), source)
    assert not result.ok and words in result.detail and result.detail.isprintable()
    assert policy.hotlist.block_of("ab" * 16) is not None
    snap = policy.snapshot("merchant")
    assert snap.error == result.detail and snap.checked_at >= snap.fetched_at
    ledger.close()


def test_the_url_policy_holds_for_hotlists(tmp_path):
    issuer = Issuer().start()
    try:
        client = HotlistClient(LOOPBACK, max_bytes=4096)

        async def get(path: str, policy_client: HotlistClient = client):
            return await policy_client.get(f"{issuer.origin}{path}", {})

        with pytest.raises(HotlistUnavailable, match="exceeds 4096"):
            asyncio.run(get("/huge?declare=1"))
        with pytest.raises(HotlistUnavailable, match="exceeds 4096"):
            asyncio.run(get("/huge"))
        issuer.redirect_to = f"http://localhost:{issuer.port}/hotlist.json"
        both = HotlistClient(UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1", "localhost"}),
                                       allow_private_hosts=frozenset({"127.0.0.1", "localhost"})))
        with pytest.raises(HotlistUnavailable, match="redirect from 127.0.0.1 to localhost"):
            asyncio.run(get("/redirect", both))
        strict = HotlistClient(UrlPolicy())  # production: https only, public addresses only
        with pytest.raises(HotlistUnavailable, match="https only"):
            asyncio.run(get("/scan", strict))
        with pytest.raises(HotlistUnavailable, match="non-public"):
            asyncio.run(strict.get(f"https://127.0.0.1:{issuer.port}/x", {}))
    finally:
        issuer.stop()


def test_an_issuer_allowlist_still_lets_the_configured_hotlist_host_through():
    policy = UrlPolicy(issuer_hosts=frozenset({"cards.example.com"}))
    client = HotlistClient(policy, ("https://lists.example.net/hotlist.json",))
    assert client.policy.issuer_hosts == {"cards.example.com", "lists.example.net"}
    assert HotlistClient(UrlPolicy(), ("https://x.example/",)).policy.issuer_hosts is None


def test_the_lnbits_key_goes_in_its_header_and_never_into_errors_or_logs(tmp_path, lists, caplog):
    lists.cards = [LnbitsCard(UID.hex(), enable=False)]
    policy, ledger = _policy(tmp_path, "lnbits")
    source = HotlistSource("lnbits", lists.origin + CARDS_PATH, "lnbits", lists.invoice_key)
    assert lists.invoice_key not in repr(source)
    [ok] = _refresh(policy, HotlistClient(LOOPBACK), source)
    assert ok.ok and policy.hotlist.block_of(CARD_ID).reason == "disabled at its issuer (LNbits)"
    caplog.set_level(logging.DEBUG)
    bad = HotlistSource("lnbits", lists.origin + CARDS_PATH, "lnbits", "wrong-key-123")
    [failed] = _refresh(policy, HotlistClient(LOOPBACK), bad)
    assert failed.detail == "HTTP 404: Wallet not found."
    nokey = HotlistSource("lnbits", lists.origin + CARDS_PATH, "lnbits", None)
    [failed] = _refresh(policy, HotlistClient(LOOPBACK), nokey)
    assert failed.detail == "HTTP 401: No Api Key provided."
    assert lists.keys_seen == [lists.invoice_key, "wrong-key-123", None]
    assert "wrong-key-123" not in caplog.text and lists.invoice_key not in caplog.text
    ledger.close()
    assert lists.invoice_key not in (tmp_path / "ledger.jsonl").read_text()
