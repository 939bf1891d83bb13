"""The fast BOLT11 decoder (terminal/bolt11.py): spec vectors, reader rules on hand-built
invoices, equivalence with the `bolt11` package on invoices it mints, and corruption."""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

import bech32
import bolt11 as pkg
import pytest
from coincurve import PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from terminal.protocols import bolt11 as ours
from terminal.protocols.bolt11 import CHARSET, Bolt11Error, Bolt11ErrorReason

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bolt11.json").read_text())
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
KEY = PrivateKey(bytes.fromhex("e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734"))
OTHER_KEY = PrivateKey(b"\x02" * 32)
PUBKEY = KEY.public_key.format(compressed=True).hex()
HASH_A = bytes(range(32))
HASH_B = bytes(range(32, 64))
SECRET = b"\x11" * 32
TS = 1_700_000_000


def _reason(text: str) -> Bolt11ErrorReason:
    with pytest.raises(Bolt11Error) as err:
        ours.decode(text)
    assert err.value.message and str(err.value) == err.value.message
    return err.value.reason


# ------------------------------------------------------------------ specification vectors


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["invoice"][:24])
def test_valid_vectors_decode_exactly(case: dict) -> None:
    inv = ours.decode(case["invoice"])
    got = {key: getattr(inv, key) for key in (
        "currency", "amount_msat", "payment_hash", "description", "description_hash", "expiry",
        "timestamp", "payee")}  # fmt: skip
    assert got == {key: case[key] for key in got}
    assert inv.expires_at == case["timestamp"] + case["expiry"]
    assert inv.payment_secret is not None and len(inv.payment_secret) == 64


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["invoice"][:24])
def test_valid_vectors_match_the_package(case: dict) -> None:
    _assert_same(ours.decode(case["invoice"]), pkg.decode(case["invoice"]))


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["why"][:30])
def test_invalid_vectors_rejected(case: dict) -> None:
    expected = {
        "bad checksum": Bolt11ErrorReason.BAD_CHECKSUM,
        "invalid amount multiplier": Bolt11ErrorReason.BAD_AMOUNT,
        "mixed case": Bolt11ErrorReason.MIXED_CASE,
        "too short": Bolt11ErrorReason.BAD_CHECKSUM,  # "lnbc1pvjluez": its checksum fails first
    }
    reason = _reason(case["invoice"])
    if case["why"].startswith("sub-millisatoshi"):
        assert reason is Bolt11ErrorReason.SUB_MSAT_AMOUNT
    else:
        assert reason is expected[case["why"]]


def test_spec_vector_with_fallback_and_route_hint() -> None:
    # BOLT #11 vectors: a P2PKH fallback (version 17) and one with a route hint.
    fallback = next(ours.decode(c["invoice"]) for c in VALID if c["currency"] == "tb")
    assert fallback.fallback is not None and fallback.fallback.version == 17
    assert len(fallback.fallback.data) == 20
    store = ours.decode(next(c["invoice"] for c in VALID if c["invoice"].startswith("lnbc9678")))
    assert len(store.route_hints) == 1 and store.min_final_cltv == 10
    hop = store.route_hints[0][0]
    assert len(hop.pubkey) == 66 and hop.cltv_expiry_delta > 0


# ------------------------------------------------------------------ hand-built invoices


def _u5(data: bytes) -> list[int]:
    return bech32.convertbits(data, 8, 5, True)  # type: ignore[return-value]


def _int_u5(value: int, length: int = 0) -> list[int]:
    out = []
    while value:
        out.append(value & 31)
        value >>= 5
    out += [0] * (length - len(out))
    return out[::-1]


def _field(char: str, values: list[int]) -> list[int]:
    return [CHARSET.index(char), len(values) >> 5, len(values) & 31, *values]


def _base_fields() -> list[int]:
    return (_field("p", _u5(HASH_A)) + _field("s", _u5(SECRET))
            + _field("d", _u5(b"coffee")))


def _build(
    hrp: str = "lnbc10u",
    fields: list[int] | None = None,
    *,
    key: PrivateKey = KEY,
    recovery_id: int | None = None,
) -> str:
    """A signed BOLT11 built from raw 5-bit fields (so tests can write what writers must not)."""
    data = _int_u5(TS, 7) + (_base_fields() if fields is None else fields)
    bits = len(data) * 5
    signed = (int("".join(f"{v:05b}" for v in data), 2) << (-bits % 8)).to_bytes(
        -(-bits // 8), "big")
    sig = key.sign_recoverable(hrp.encode() + signed)
    if recovery_id is not None:
        sig = sig[:64] + bytes([recovery_id])
    return bech32.bech32_encode(hrp, data + _u5(sig))


def test_built_invoice_decodes() -> None:
    inv = ours.decode(_build())
    assert (inv.amount_msat, inv.payment_hash, inv.payment_secret, inv.description) == (
        1_000_000, HASH_A.hex(), SECRET.hex(), "coffee")
    assert inv.payee == PUBKEY and not inv.payee_from_n
    assert (inv.expiry, inv.min_final_cltv, inv.features) == (3600, 18, 0)


@pytest.mark.parametrize(
    ("hrp", "currency", "msat"),
    [
        ("lnbc", "bc", None),
        ("lntb1", "tb", 10**11),
        ("lntbs25m", "tbs", 25 * 10**8),
        ("lnbcrt7u", "bcrt", 7 * 10**5),
        ("lnbc3n", "bc", 300),
        ("lnbc10p", "bc", 1),
        ("lnbc2500000000p", "bc", 250_000_000),
    ],
)
def test_hrp_currency_and_amount(hrp: str, currency: str, msat: int | None) -> None:
    inv = ours.decode(_build(hrp))
    assert (inv.currency, inv.amount_msat, inv.hrp) == (currency, msat, hrp)


@pytest.mark.parametrize(
    ("hrp", "reason"),
    [
        ("lnbc1p", Bolt11ErrorReason.SUB_MSAT_AMOUNT),
        ("lnbc2500000001p", Bolt11ErrorReason.SUB_MSAT_AMOUNT),
        ("lnbc25x", Bolt11ErrorReason.BAD_AMOUNT),
        ("lnbcm", Bolt11ErrorReason.BAD_AMOUNT),
        ("lnbc0", Bolt11ErrorReason.BAD_AMOUNT),
        ("lnbc10mm", Bolt11ErrorReason.BAD_PREFIX),
        ("lnxy10u", Bolt11ErrorReason.BAD_PREFIX),
        ("bc10u", Bolt11ErrorReason.BAD_PREFIX),
    ],
)
def test_bad_hrp_rejected_even_when_signed(hrp: str, reason: Bolt11ErrorReason) -> None:
    assert _reason(_build(hrp)) is reason


def test_upper_case_decodes_identically() -> None:
    text = _build("lntbs10u")
    assert ours.decode(text.upper()) == ours.decode(text)
    assert _reason(text[:10] + text[10:].upper()) is Bolt11ErrorReason.MIXED_CASE


def test_wrong_length_fields_are_skipped() -> None:
    short_p = _field("p", _u5(HASH_B)[:51])
    short_h = _field("h", _u5(HASH_B)[:51])
    long_s = _field("s", _u5(HASH_B) + [0])
    short_n = _field("n", _u5(OTHER_KEY.public_key.format())[:52])
    fields = short_p + short_h + long_s + short_n + _base_fields()
    inv = ours.decode(_build(fields=fields))
    assert (inv.payment_hash, inv.payment_secret, inv.description_hash) == (
        HASH_A.hex(), SECRET.hex(), None)
    assert inv.payee == PUBKEY and not inv.payee_from_n  # recovered, not the skipped `n`
    # Only a wrong-length `p`: there is no payment hash at all.
    only_short = short_p + _field("s", _u5(SECRET)) + _field("d", _u5(b"x"))
    assert _reason(_build(fields=only_short)) is Bolt11ErrorReason.NO_PAYMENT_HASH


def test_unknown_fields_skipped_and_first_of_a_kind_counts() -> None:
    fields = (_field("q", [1, 2, 3]) + _field("v", [])
              + _base_fields() + _field("p", _u5(HASH_B)) + _field("h", _u5(HASH_B))
              + _field("x", _int_u5(60)) + _field("x", _int_u5(90)) + _field("c", _int_u5(144)))
    inv = ours.decode(_build(fields=fields))
    assert (inv.payment_hash, inv.description, inv.description_hash) == (
        HASH_A.hex(), "coffee", None)
    assert (inv.expiry, inv.min_final_cltv) == (60, 144)


def test_description_hash_instead_of_description() -> None:
    digest = hashlib.sha256(b"a long menu").digest()
    fields = (_field("p", _u5(HASH_A)) + _field("s", _u5(SECRET)) + _field("h", _u5(digest))
              + _field("d", _u5(b"ignored")))
    inv = ours.decode(_build(fields=fields))
    assert (inv.description, inv.description_hash) == (None, digest.hex())


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (_field("s", _u5(SECRET)) + _field("d", _u5(b"x")), Bolt11ErrorReason.NO_PAYMENT_HASH),
        (_field("p", _u5(HASH_A)) + _field("d", _u5(b"x")), Bolt11ErrorReason.NO_PAYMENT_SECRET),
        (_field("p", _u5(HASH_A)) + _field("s", _u5(SECRET)), Bolt11ErrorReason.NO_DESCRIPTION),
        (_field("p", _u5(HASH_A)) + _field("s", _u5(SECRET)) + _field("d", _u5(b"\xff\xfe")),
         Bolt11ErrorReason.BAD_DESCRIPTION),
        (_base_fields() + [CHARSET.index("x"), 0, 9, 1, 2], Bolt11ErrorReason.TRUNCATED_FIELD),
        (_base_fields() + [CHARSET.index("x"), 0], Bolt11ErrorReason.TRUNCATED_FIELD),
    ],
)
def test_structural_errors(fields: list[int], reason: Bolt11ErrorReason) -> None:
    assert _reason(_build(fields=fields)) is reason


def test_payee_field_verifies_the_signature() -> None:
    with_n = _base_fields() + _field("n", _u5(KEY.public_key.format()))
    inv = ours.decode(_build(fields=with_n))
    assert inv.payee == PUBKEY and inv.payee_from_n
    # `n` names another node than the one that signed: refused, not "recovered" around.
    other_n = _base_fields() + _field("n", _u5(OTHER_KEY.public_key.format()))
    assert _reason(_build(fields=other_n)) is Bolt11ErrorReason.BAD_SIGNATURE
    # `n` that is not a curve point.
    junk_n = _base_fields() + _field("n", _u5(b"\x05" + b"\x00" * 32))
    assert _reason(_build(fields=junk_n)) is Bolt11ErrorReason.BAD_SIGNATURE


def test_recovery_id_and_signature() -> None:
    assert _reason(_build(recovery_id=4)) is Bolt11ErrorReason.BAD_RECOVERY_ID
    good = ours.decode(_build())
    flipped = ours.decode(_build(recovery_id=good.recovery_id ^ 1))
    assert flipped.payee != PUBKEY  # recovery finds some other key: the payee differs
    too_short = bech32.bech32_encode("lnbc", _int_u5(TS, 7) + [0] * 100)
    assert _reason(too_short) is Bolt11ErrorReason.TOO_SHORT


def test_features_metadata_and_routes() -> None:
    hop = (OTHER_KEY.public_key.format() + (123 << 40 | 4 << 16 | 1).to_bytes(8, "big")
           + (1000).to_bytes(4, "big") + (250).to_bytes(4, "big") + (40).to_bytes(2, "big"))
    fields = (_base_fields() + _field("9", _int_u5(1 << 8 | 1 << 14, 4))
              + _field("m", _u5(b"\x01\xfa\xfa\xf0")) + _field("r", _u5(hop * 2))
              + _field("r", _u5(hop)) + _field("r", _u5(hop[:50])) + _field("f", [31, 1]))
    inv = ours.decode(_build(fields=fields))
    assert inv.features == 1 << 8 | 1 << 14 and inv.metadata == "01fafaf0"
    assert [len(r) for r in inv.route_hints] == [2, 1]  # the 50-byte hint is skipped
    assert inv.route_hints[1][0] == ours.RouteHop(
        OTHER_KEY.public_key.format().hex(), 123 << 40 | 4 << 16 | 1, 1000, 250, 40)
    assert inv.fallback is None  # version 31 is unknown: skipped


def test_no_90_character_limit() -> None:
    text = _build(fields=_base_fields() + _field("d", _u5(b"x" * 600)) + _field("m", [1] * 900))
    assert len(text) > 1100
    assert ours.decode(text).description == "coffee"


# ------------------------------------------------------------------ equivalence with the package

_MULTIPLIER_MSAT = {"": 10**11, "m": 10**8, "u": 10**5, "n": 10**2, "p": 1}


@st.composite
def amounts(draw: st.DrawFn) -> int | None:
    """None, or an msat amount that the package writes with the drawn multiplier."""
    unit = draw(st.sampled_from(["", "m", "u", "n", "p", None]))
    if unit is None:
        return None
    digits = draw(st.integers(min_value=1, max_value=10**6))
    # The package writes the biggest unit that divides the amount: keep the drawn one the
    # biggest (for `p`, 1 msat = 10p, so a multiple of 100 msat would be written as `n`).
    if unit == "p":
        assume(digits % 100)
    elif unit:
        assume(digits % 1000)
    return digits * _MULTIPLIER_MSAT[unit]


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=150)


@st.composite
def minted(draw: st.DrawFn) -> str:
    tags = pkg.Tags()
    tags.add(pkg.TagChar.payment_hash, draw(st.binary(min_size=32, max_size=32)).hex())
    tags.add(pkg.TagChar.payment_secret, draw(st.binary(min_size=32, max_size=32)).hex())
    if draw(st.booleans()):
        tags.add(pkg.TagChar.description, draw(TEXT))
    else:
        tags.add(pkg.TagChar.description_hash, draw(st.binary(min_size=32, max_size=32)).hex())
    if draw(st.booleans()):
        tags.add(pkg.TagChar.expire_time, draw(st.integers(min_value=1, max_value=2**40)))
    if draw(st.booleans()):
        tags.add(pkg.TagChar.min_final_cltv_expiry, draw(st.integers(1, 5000)))
    if draw(st.booleans()):
        tags.add(pkg.TagChar.metadata, draw(st.binary(min_size=1, max_size=40)).hex())
    if draw(st.booleans()):
        tags.add(pkg.TagChar.features, pkg.Features.from_feature_list({
            pkg.Feature.var_onion_optin: pkg.FeatureState.required,
            pkg.Feature.payment_secret: pkg.FeatureState.required,
        }))
    key = PrivateKey.from_int(draw(st.integers(min_value=1, max_value=SECP256K1_ORDER - 1)))
    keep_payee = draw(st.booleans())
    if keep_payee:
        tags.add(pkg.TagChar.payee, key.public_key.format(compressed=True).hex())
    amount = draw(amounts())
    invoice = pkg.Bolt11(
        currency=draw(st.sampled_from(["bc", "tb", "tbs", "bcrt"])),
        date=draw(st.integers(min_value=0, max_value=2**35 - 1)),
        tags=tags,
        amount_msat=None if amount is None else pkg.MilliSatoshi(amount),
    )
    text = pkg.encode(invoice, key.to_hex(), keep_payee=keep_payee)
    return text.upper() if draw(st.booleans()) else text


def _assert_same(mine: ours.Bolt11Invoice, theirs: pkg.Bolt11) -> None:
    assert mine.currency == theirs.currency
    assert mine.amount_msat == (int(theirs.amount_msat) if theirs.amount_msat else None)
    assert mine.timestamp == theirs.date
    assert mine.payment_hash == theirs.payment_hash
    assert mine.payment_secret == theirs.payment_secret
    assert mine.description == theirs.description
    assert mine.description_hash == theirs.description_hash
    assert mine.expiry == theirs.expiry
    assert mine.expires_at == theirs.expiry_time
    assert mine.min_final_cltv == theirs.min_final_cltv_expiry
    assert mine.payee == theirs.payee
    assert mine.metadata == theirs.metadata
    assert mine.features == (theirs.features.data.uint if theirs.features else 0)
    assert mine.signature.hex() == theirs.signature.hex  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minted())
def test_equals_the_package_on_minted_invoices(text: str) -> None:
    # Property: on any invoice the package writes (each multiplier, any text, expiry, timestamp,
    # network, case, with and without `n`), our fields equal the package's decode.
    _assert_same(ours.decode(text), pkg.decode(text))


def test_multiplier_strategy_reaches_every_unit() -> None:
    # The equivalence property is only as good as its amounts: each hrp form must be reachable.
    seen = set()
    for msat in (10**11, 25 * 10**8, 7 * 10**5, 300, 1, 123):
        invoice = pkg.Bolt11(currency="bc", date=TS, tags=pkg.Tags(),
                             amount_msat=pkg.MilliSatoshi(msat))
        hrp = pkg.encode(invoice, KEY.to_hex(), ignore_exceptions=True).rsplit("1", 1)[0]
        seen.add(hrp[-1] if hrp[-1] in "munp" else "")
        assert ours.parse_hrp(hrp) == ("bc", msat)
    assert seen == {"", "m", "u", "n", "p"}


# ------------------------------------------------------------------ corruption and garbage

CORPUS = [case["invoice"] for case in VALID] + [
    _build(fields=_base_fields() + _field("n", _u5(KEY.public_key.format()))),
    _build("lnbcrt2500000000p"),
]


@settings(max_examples=400, deadline=None)
@given(
    text=st.sampled_from(CORPUS),
    where=st.integers(min_value=0, max_value=10**6),
    char=st.sampled_from(string.ascii_letters + string.digits + string.punctuation + " "),
)
def test_any_single_character_corruption_is_rejected(text: str, where: int, char: str) -> None:
    # Property: bech32 detects every single substitution at any length; nothing but our error
    # type ever escapes.
    at = where % len(text)
    assume(text[at] != char)
    corrupted = text[:at] + char + text[at + 1 :]  # a case flip makes it mixed case
    with pytest.raises(Bolt11Error):
        ours.decode(corrupted)


def test_case_flip_of_one_character_is_mixed_case() -> None:
    text = CORPUS[0]
    assert _reason(text[:20] + text[20].upper() + text[21:]) is Bolt11ErrorReason.MIXED_CASE


BECH32_ISH = st.text(alphabet=CHARSET + "1ln", max_size=400)


@settings(max_examples=300)
@given(st.text(max_size=300) | BECH32_ISH | st.sampled_from(CORPUS).map(lambda t: t[:-7]))
def test_garbage_only_ever_raises_bolt11_error(text: str) -> None:
    try:
        ours.decode(text)
    except Bolt11Error as err:
        assert isinstance(err.reason, Bolt11ErrorReason)
