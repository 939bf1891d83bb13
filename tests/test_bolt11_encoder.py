"""The BOLT11 writer (terminal/bolt11.encode): spec vectors re-encoded byte for byte, round trips
through our decoder and the `bolt11` package's, exact amounts (the package's own writer gets
multiples of 10^14 msat wrong; ours must not), writer errors, and the sandbox's minting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bolt11 as pkg
import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.protocols import bolt11 as ours
from terminal.protocols.bolt11 import CHARSET, Bolt11EncodeError
from terminal.sandbox.lightning import INVOICE_FEATURES, MIN_FINAL_CLTV_EXPIRY, mint_invoice

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bolt11.json").read_text())
SPEC_KEY = bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734")
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HASH = bytes(range(32))
SECRET = b"\x11" * 32
TS = 1_700_000_000
UNIT_MSAT = {"": 10**11, "m": 10**8, "u": 10**5, "n": 10**2}


def _fields(invoice: str) -> list[tuple[str, int]]:
    """The tagged fields' letters and data lengths (5-bit groups), in the invoice's order."""
    _hrp, data = ours.bech32_split(invoice)
    pos, end, fields = ours.TIMESTAMP_LEN, len(data) - ours.SIGNATURE_LEN, []
    while pos < end:
        length = data[pos + 1] << 5 | data[pos + 2]
        fields.append((CHARSET[data[pos]], length))
        pos += 3 + length
    return fields


def _field_order(invoice: str) -> str:
    return "".join(char for char, _length in _fields(invoice))


# Vectors made of fields the writer knows (no `f` fallback, no `r` route hint): with RFC 6979
# signatures they are deterministic, so re-encoding must give the very same string.
REENCODABLE = [c for c in VECTORS["valid"]
               if set(_field_order(c["invoice"])) <= set(ours.DEFAULT_FIELD_ORDER)]


def _encode(**overrides) -> str:
    values = {
        "private_key": SPEC_KEY, "currency": "bc", "amount_msat": 250_000_000, "timestamp": TS,
        "payment_hash": HASH, "payment_secret": SECRET, "description": "coffee",
    }
    values.update(overrides)
    return ours.encode(**values)


# ------------------------------------------------------------------ specification vectors


def test_most_spec_vectors_are_reencodable() -> None:
    assert len(REENCODABLE) >= 7  # the filter must not quietly empty the next test


@pytest.mark.parametrize("case", REENCODABLE, ids=lambda c: c["invoice"][:24])
def test_spec_vectors_reencode_byte_for_byte(case: dict) -> None:
    order = _field_order(case["invoice"])
    inv = ours.decode(case["invoice"])
    text = ours.encode(
        private_key=SPEC_KEY,
        currency=inv.currency,
        amount_msat=inv.amount_msat,
        timestamp=inv.timestamp,
        payment_hash=bytes.fromhex(inv.payment_hash),
        payment_secret=bytes.fromhex(inv.payment_secret or ""),
        description=inv.description,
        description_hash=bytes.fromhex(inv.description_hash) if inv.description_hash else None,
        expiry=inv.expiry if "x" in order else None,
        min_final_cltv=inv.min_final_cltv if "c" in order else None,
        features=inv.features,
        metadata=bytes.fromhex(inv.metadata) if inv.metadata else None,
        field_order=order,
    )
    assert text == case["invoice"].lower()


# ------------------------------------------------------------------ amounts and the hrp


@pytest.mark.parametrize(
    ("msat", "hrp"),
    [
        (None, "lnbc"),
        (1, "lnbc10p"),
        (123, "lnbc1230p"),
        (100, "lnbc1n"),
        (1000, "lnbc10n"),
        (10**5, "lnbc1u"),
        (250_000_000, "lnbc2500u"),
        (2 * 10**9, "lnbc20m"),
        (10**11, "lnbc1"),
        (10**14, "lnbc1000"),  # the package's writer gets multiples of 10^14 msat wrong
        (7 * 10**14, "lnbc7000"),
        (21 * 10**17, "lnbc21000000"),
    ],
)
def test_hrp_uses_the_shortest_exact_multiplier(msat: int | None, hrp: str) -> None:
    assert ours.hrp_for("bc", msat) == hrp
    inv = ours.decode(_encode(amount_msat=msat))
    assert (inv.hrp, inv.amount_msat) == (hrp, msat)


@given(st.integers(min_value=1, max_value=21 * 10**17))
def test_hrp_is_exact_and_no_exact_form_is_shorter(msat: int) -> None:
    hrp = ours.hrp_for("tb", msat)
    assert ours.parse_hrp(hrp) == ("tb", msat)
    exact_digits = [len(str(msat // per)) for per in UNIT_MSAT.values() if msat % per == 0]
    exact_digits.append(len(str(msat * 10)))  # `p` always fits
    assert len(hrp) - len("lntb") - (not hrp[-1].isdigit()) == min(exact_digits)


@given(st.integers(min_value=1, max_value=21_000).map(lambda n: n * 10**14))
def test_multiples_of_10_14_msat_read_back_exactly(msat: int) -> None:
    text = _encode(amount_msat=msat)
    assert ours.decode(text).amount_msat == msat
    assert int(pkg.decode(text).amount_msat) == msat


# ------------------------------------------------------------------ round trips

AMOUNTS = st.none() | st.integers(min_value=1, max_value=21 * 10**17) | st.sampled_from(
    [1, 10, 100, 10**5, 10**8, 10**11, 10**14, 10**15, 21 * 10**17])
KEYS = st.integers(min_value=1, max_value=SECP256K1_ORDER - 1).map(
    lambda n: n.to_bytes(32, "big"))
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=150)


@st.composite
def invoices(draw: st.DrawFn) -> dict:
    values = {
        "private_key": draw(KEYS),
        "currency": draw(st.sampled_from(ours.CURRENCIES)),
        "amount_msat": draw(AMOUNTS),
        "timestamp": draw(st.integers(min_value=0, max_value=ours.MAX_TIMESTAMP)),
        "payment_hash": draw(st.binary(min_size=32, max_size=32)),
        "payment_secret": draw(st.binary(min_size=32, max_size=32)),
        "expiry": draw(st.none() | st.integers(min_value=0, max_value=2**40)),
        "min_final_cltv": draw(st.none() | st.integers(min_value=0, max_value=5000)),
        "features": draw(st.integers(min_value=0, max_value=2**120)),
        "metadata": draw(st.none() | st.binary(min_size=1, max_size=40)),
        "include_payee": draw(st.booleans()),
    }
    if draw(st.booleans()):
        values["description"] = draw(TEXT)
    else:
        values["description_hash"] = draw(st.binary(min_size=32, max_size=32))
    return values


@settings(max_examples=80, deadline=None)
@given(invoices())
def test_round_trip_through_both_decoders(values: dict) -> None:
    text = ours.encode(**values)
    assert text == text.lower() and text.startswith("ln" + values["currency"])
    payee = PrivateKey(values["private_key"]).public_key.format(compressed=True).hex()
    mine = ours.decode(text)
    assert mine.currency == values["currency"]
    assert mine.amount_msat == values["amount_msat"]
    assert mine.timestamp == values["timestamp"]
    assert mine.payment_hash == values["payment_hash"].hex()
    assert mine.payment_secret == values["payment_secret"].hex()
    assert mine.description == values.get("description")
    desc_hash = values.get("description_hash")
    assert mine.description_hash == (desc_hash.hex() if desc_hash else None)
    expiry, cltv = values["expiry"], values["min_final_cltv"]
    assert mine.expiry == (ours.DEFAULT_EXPIRY_S if expiry is None else expiry)
    assert mine.min_final_cltv == (ours.DEFAULT_MIN_FINAL_CLTV if cltv is None else cltv)
    assert mine.features == values["features"]
    assert mine.metadata == (values["metadata"].hex() if values["metadata"] else None)
    assert (mine.payee, mine.payee_from_n) == (payee, values["include_payee"])
    assert ours.decode(text.upper()) == mine

    theirs = pkg.decode(text)
    assert theirs.currency == values["currency"]
    assert (int(theirs.amount_msat) if theirs.amount_msat else None) == values["amount_msat"]
    assert theirs.date == values["timestamp"]
    assert (theirs.payment_hash, theirs.payment_secret) == (mine.payment_hash,
                                                            mine.payment_secret)
    assert (theirs.description, theirs.description_hash) == (mine.description,
                                                             mine.description_hash)
    assert (theirs.expiry, theirs.min_final_cltv_expiry) == (mine.expiry, mine.min_final_cltv)
    assert (theirs.features.data.uint if theirs.features else 0) == values["features"]
    assert theirs.metadata == mine.metadata
    assert theirs.payee == payee
    assert theirs.signature.hex == mine.signature.hex()  # type: ignore[union-attr]


def test_minimal_lengths_for_integer_fields() -> None:
    # BOLT #11 writers SHOULD use the minimum data_length for x, c and 9 (zero: one group).
    text = _encode(expiry=60, min_final_cltv=10, features=1 << 8 | 1 << 14)
    assert dict(_fields(text)) == {"p": 52, "s": 52, "d": 10, "x": 2, "c": 1, "9": 3}
    inv = ours.decode(text)
    assert (inv.expiry, inv.min_final_cltv, inv.features) == (60, 10, 1 << 8 | 1 << 14)
    assert dict(_fields(_encode(expiry=0, min_final_cltv=32))) == {
        "p": 52, "s": 52, "d": 10, "x": 1, "c": 2}
    assert dict(_fields(_encode(include_payee=True)))["n"] == 53
    assert dict(_fields(_encode(description=None, description_hash=HASH)))["h"] == 52


def test_long_description_without_the_90_character_limit() -> None:
    text = _encode(description="é" * 319 + "x")  # 639 bytes: the most a `d` field holds
    assert len(text) > 1100
    assert ours.decode(text).description == "é" * 319 + "x"
    with pytest.raises(Bolt11EncodeError, match="639 bytes"):
        _encode(description="x" * 640)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"description_hash": HASH}, "exactly one"),
        ({"description": None}, "exactly one"),
        ({"payment_hash": HASH[:31]}, "payment hash must be 32 bytes"),
        ({"payment_secret": SECRET + b"\x00"}, "payment secret must be 32 bytes"),
        ({"description": None, "description_hash": b"\x00" * 16}, "description hash"),
        ({"amount_msat": 0}, "positive"),
        ({"amount_msat": -5}, "positive"),
        ({"currency": "ltc"}, "unknown currency"),
        ({"timestamp": 2**35}, "35 bits"),
        ({"timestamp": -1}, "35 bits"),
        ({"expiry": -1}, "expiry must not be negative"),
        ({"private_key": b"\x00" * 32}, "not a valid secp256k1 secret"),
        ({"private_key": SECP256K1_ORDER.to_bytes(32, "big")}, "not a valid secp256k1 secret"),
        ({"field_order": "pd"}, "leaves out 's'"),
    ],
)
def test_writer_errors(overrides: dict, match: str) -> None:
    with pytest.raises(Bolt11EncodeError, match=match) as err:
        _encode(**overrides)
    assert SPEC_KEY.hex() not in str(err.value)  # the key never reaches a message


def test_signature_is_over_sha256_of_hrp_and_data() -> None:
    text = _encode()
    inv = ours.decode(text)
    hrp, data = ours.bech32_split(text)
    signed = data[: -ours.SIGNATURE_LEN]
    bits = len(signed) * 5
    message = hrp.encode() + (int("".join(f"{v:05b}" for v in signed), 2) << (-bits % 8)
                              ).to_bytes(-(-bits // 8), "big")
    expected = PrivateKey(SPEC_KEY).sign_recoverable(hashlib.sha256(message).digest(),
                                                     hasher=None)
    assert inv.signature + bytes([inv.recovery_id]) == expected


# ------------------------------------------------------------------ the sandbox's minting


def test_sandbox_mints_with_the_direct_writer() -> None:
    node_key = PrivateKey(b"\x07" * 32)
    minted = mint_invoice(node_key.secret, "regtest", 123_000, "Boltcard payment", 300, TS)
    inv = ours.decode(minted.payment_request)
    assert minted.payment_request.startswith("lnbcrt1230n1")
    assert (inv.currency, inv.amount_msat, inv.timestamp) == ("bcrt", 123_000, TS)
    assert (inv.description, inv.expiry, inv.min_final_cltv) == ("Boltcard payment", 300,
                                                                 MIN_FINAL_CLTV_EXPIRY)
    assert inv.features == INVOICE_FEATURES == 1 << 8 | 1 << 14
    assert inv.payee == node_key.public_key.format(compressed=True).hex()
    assert inv.payment_hash == minted.payment_hash
    assert hashlib.sha256(bytes.fromhex(minted.preimage)).hexdigest() == minted.payment_hash
    assert inv.payment_secret == minted.payment_secret
    theirs = pkg.decode(minted.payment_request)
    assert theirs.payment_hash == minted.payment_hash and theirs.payee == inv.payee
    assert "preimage" not in repr(minted) and minted.preimage not in repr(minted)
