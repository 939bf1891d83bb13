"""The Boltcard programming routine: keys record, blank-card check, order of steps.

The full program/wipe cycle against the simulated card is in test_ntag424_roundtrip.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw.ntag424 import Ntag424
from terminal.protocols.boltcard.provisioning import BoltcardKeys, CardNotBlank, program_boltcard

h = bytes.fromhex
keys16 = st.binary(min_size=16, max_size=16)


class ScriptedTransport:
    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = list(script)

    def transceive(self, apdu: bytes) -> bytes:
        assert self.script, f"unexpected APDU {apdu.hex().upper()}"
        expected, reply = self.script.pop(0)
        assert apdu.hex().upper() == expected.hex().upper()
        return reply


# Property: a keys record never shows any key in its repr.
@given(keys16, keys16, keys16, keys16, keys16)
def test_keys_repr_hides_keys(k0: bytes, k1: bytes, k2: bytes, k3: bytes, k4: bytes) -> None:
    keys = BoltcardKeys(k0, k1, k2, k3, k4, version=3)
    text = repr(keys)
    for key in (k0, k1, k2, k3, k4):
        assert key.hex() not in text and repr(key) not in text
    assert "version=3" in text
    assert [keys.key(n) for n in range(5)] == [k0, k1, k2, k3, k4]


def test_keys_are_validated() -> None:
    with pytest.raises(ValueError, match="k2"):
        BoltcardKeys(bytes(16), bytes(16), bytes(15), bytes(16), bytes(16))
    with pytest.raises(ValueError, match="version"):
        BoltcardKeys(bytes(16), bytes(16), bytes(16), bytes(16), bytes(16), version=256)
    assert BoltcardKeys.factory().version == 0


def test_programmed_card_is_refused_before_any_write() -> None:
    steps: list[str] = []
    tag = Ntag424(ScriptedTransport([
        (h("00A4040C07D276000085010100"), h("9000")),
        (h("90640000010100"), h("01") + h("9100")),
    ]))
    keys = BoltcardKeys(*(bytes([n]) * 16 for n in range(5)))
    with pytest.raises(CardNotBlank, match="wipe") as info:
        program_boltcard(tag, keys, "lnurlw://pos.example/ln", on_step=steps.append)
    assert info.value.key_version == 1
    assert steps == ["select application", "check the card is blank"]
    assert tag.transport.script == []


def test_bad_url_is_refused_before_touching_the_card() -> None:
    tag = Ntag424(ScriptedTransport([]))
    with pytest.raises(ValueError):
        program_boltcard(tag, BoltcardKeys.factory(), "not a url")
    with pytest.raises(ValueError):
        program_boltcard(tag, BoltcardKeys.factory(), "lnurlw://h.example/ln?c=1")
