"""The hotlist document and the LNbits card list as the terminal reads them
(terminal.protocols.hotlist), and UIDs mapped to card ids (Keyring.card_ids)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.protocols.boltcard import (
    DeterministicIssuer,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
    derive_card_id,
    key_table_card_id,
)
from terminal.protocols.hotlist import (
    DEFAULT_REASON,
    MAX_ENTRIES,
    HotlistEntry,
    HotlistFormatError,
    parse_hotlist,
    parse_lnbits_cards,
)

CARD_ID = "7d3c" + "ab" * 14
UID = "04a1b2c3d4e5f6"


def test_a_hotlist_names_cards_by_card_id_or_uid_with_cleaned_reasons():
    entries = parse_hotlist({
        "version": 1,
        "cards": [
            {"card_id": CARD_ID.upper(), "reason": "reported\x1b[31m lost\n"},
            {"uid": UID, "reason": "x" * 500},
            {"uid": UID.upper()},
        ],
        "issued_by": "room to grow: unknown keys are ignored",
    })
    assert entries[0] == HotlistEntry(CARD_ID, None, "reported lost")  # escape removed whole
    assert entries[1].uid == bytes.fromhex(UID) and len(entries[1].reason) == 120
    assert entries[2].reason == DEFAULT_REASON
    assert parse_hotlist({"cards": []}) == []  # version defaults to 1; an empty list is a list


@pytest.mark.parametrize("doc, words", [
    ([], "JSON object"),
    ({}, '"cards" must be a list'),
    ({"cards": {}}, '"cards" must be a list'),
    ({"version": 2, "cards": []}, "version 2"),
    ({"version": True, "cards": []}, "version"),
    ({"cards": ["x"]}, "cards[0] is not an object"),
    ({"cards": [{}]}, "exactly one of card_id or uid"),
    ({"cards": [{"card_id": CARD_ID, "uid": UID}]}, "exactly one of card_id or uid"),
    ({"cards": [{"card_id": CARD_ID[:-1]}]}, "32 hex"),
    ({"cards": [{"card_id": 5}]}, "32 hex"),
    ({"cards": [{"uid": UID + "00"}]}, "14 hex"),
    ({"cards": [{"uid": "zz" + UID[2:]}]}, "14 hex"),
    ({"cards": [{"card_id": CARD_ID, "reason": 5}]}, "reason must be text"),
    ({"cards": [{"card_id": CARD_ID}] * (MAX_ENTRIES + 1)}, "more than"),
])
def test_a_document_that_breaks_a_rule_is_refused_whole(doc, words):
    with pytest.raises(HotlistFormatError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_hotlist(doc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["cards", "card_id", "uid", "reason", "version", "enable", "tx_limit",
                         "daily_limit", "counter", "x"]), inner, max_size=5),
    max_leaves=20)


@given(json_values)
def test_any_json_is_either_a_list_of_entries_or_a_clear_refusal(doc):
    for parse in (parse_hotlist, parse_lnbits_cards):
        try:
            entries = parse(doc)
        except HotlistFormatError as exc:
            assert str(exc) and str(exc).isprintable()
        else:
            assert isinstance(entries, list)


@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=7, max_size=7),
                          st.text(min_size=1, max_size=50)), max_size=20))
def test_a_written_hotlist_reads_back(items):
    cards = [{"card_id": uid.hex() * 2 + "00" * 2} if by_id else {"uid": uid.hex()}
             for by_id, uid, _ in items]
    for card, (_, _, reason) in zip(cards, items, strict=True):
        card["reason"] = reason
    entries = parse_hotlist(json.loads(json.dumps({"version": 1, "cards": cards})))
    assert len(entries) == len(items)
    for entry, (by_id, uid, _) in zip(entries, items, strict=True):
        assert (entry.card_id is not None) == by_id
        assert entry.uid == (None if by_id else uid)
        assert entry.reason and entry.reason.isprintable() and len(entry.reason) <= 120


# An LNbits 1.6.2 boltcards answer (GET /boltcards/api/v1/cards), keys included as it sends them.
LNBITS_ANSWER = [
    {"id": "NKNT6ZMH9PQ4D", "wallet": "7b5f0d0c1c3e4f2a8b9c", "card_name": "Alice",
     "uid": "04A1B2C3D4E5F6", "external_id": "ab12cd34ef", "counter": 17, "tx_limit": 5000,
     "daily_limit": 20000, "enable": False, "k0": "11" * 16, "k1": "22" * 16, "k2": "33" * 16,
     "prev_k0": "00" * 16, "prev_k1": "00" * 16, "prev_k2": "00" * 16, "otp": "deadbeef",
     "time": "2025-05-01T10:00:00"},
    {"id": "QW3ERTY7UIOP0", "wallet": "7b5f0d0c1c3e4f2a8b9c", "card_name": "Bob",
     "uid": "04112233445566", "external_id": "ff00ee11", "counter": 0, "tx_limit": 0,
     "daily_limit": 0, "enable": True, "k0": "44" * 16, "k1": "55" * 16, "k2": "66" * 16,
     "prev_k0": "00" * 16, "prev_k1": "00" * 16, "prev_k2": "00" * 16, "otp": "cafebabe",
     "time": "2025-05-02T10:00:00"},
]


def test_an_lnbits_card_list_gives_uid_enable_and_limits_and_nothing_else():
    alice, bob = parse_lnbits_cards(LNBITS_ANSWER)
    assert alice.uid == bytes.fromhex("04a1b2c3d4e5f6") and alice.enabled is False
    assert (alice.tx_limit_sats, alice.daily_limit_sats, alice.counter) == (5000, 20000, 17)
    assert bob.enabled and bob.tx_limit_sats == 0
    assert "22222222" not in repr(alice)  # the card keys are not kept


@pytest.mark.parametrize("change, words", [
    ({"uid": "04A1B2"}, "uid"), ({"enable": "false"}, "enable"), ({"tx_limit": -1}, "tx_limit"),
    ({"daily_limit": 1.5}, "daily_limit"), ({"counter": 2**24}, "counter"),
])
def test_an_lnbits_card_of_the_wrong_shape_refuses_the_list(change, words):
    with pytest.raises(HotlistFormatError, match=words):
        parse_lnbits_cards([{**LNBITS_ANSWER[0], **change}])
    with pytest.raises(HotlistFormatError, match="not a JSON list"):
        parse_lnbits_cards({"detail": "Wallet not found."})


def test_the_keyring_maps_a_uid_to_each_issuers_card_id():
    issuer_key = bytes(range(16))
    uid = bytes.fromhex(UID)
    k2 = bytes([7] * 16)
    other = bytes.fromhex("04000000000001")
    ring = Keyring([
        DeterministicIssuer("derived", issuer_key),
        KeyTableIssuer("table", [KeyTableCard(k1=bytes(16), k2=k2, uid=uid),
                                 KeyTableCard(k1=bytes(16), k2=bytes([8] * 16), uid=other),
                                 KeyTableCard(k1=bytes(16), k2=bytes([9] * 16),
                                              card_id="ff" * 16)]),
    ])
    assert ring.card_ids(uid) == [("derived", derive_card_id(issuer_key, uid)),
                                  ("table", key_table_card_id(k2, uid))]
    with pytest.raises(ValueError):
        ring.card_ids(b"\x04\x01")
