"""BOLT11 decoding and the terminal's invoice checks (terminal/invoice.py)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.protocols.invoice import (
    DEFAULT_EXPIRY_S,
    InvoiceCheckError,
    InvoiceCheckReason,
    Network,
    _hrp_amount_msat,
    check_invoice,
    decode_invoice,
)
from tests.fakes.btcpay_server import mint_bolt11

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bolt11.json").read_text())
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]
BY_WHY = {case["why"]: case["invoice"] for case in INVALID}
COFFEE = VALID[1]  # lnbc2500u…: 250,000,000 msat, expiry 60 s, "1 cup coffee"
NOW_OK = COFFEE["timestamp"] + 10


def _code(bolt11: str, **kwargs: object) -> InvoiceCheckReason:
    with pytest.raises(InvoiceCheckError) as err:
        if kwargs:
            check_invoice(bolt11, **kwargs)  # type: ignore[arg-type]
        else:
            decode_invoice(bolt11)
    assert err.value.message and str(err.value) == err.value.message
    return err.value.reason_code


# ------------------------------------------------------------------ specification vectors


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["invoice"][:24])
def test_valid_vectors_decode_exactly(case: dict) -> None:
    inv = decode_invoice(case["invoice"])
    assert inv.currency == case["currency"]
    assert inv.amount_msat == case["amount_msat"]
    assert inv.payment_hash == case["payment_hash"]
    assert inv.description == case["description"]
    assert inv.description_hash == case["description_hash"]
    assert inv.expiry == case["expiry"]
    assert inv.timestamp == case["timestamp"]
    assert inv.payee == case["payee"]
    assert inv.expires_at == case["timestamp"] + case["expiry"]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["invoice"][:24])
def test_upper_case_decodes_identically(case: dict) -> None:
    lower = decode_invoice(case["invoice"].lower())
    upper = decode_invoice(case["invoice"].upper())
    assert upper == lower
    assert upper.bolt11 == case["invoice"].lower()


@pytest.mark.parametrize(
    ("why", "reason"),
    [
        ("bad checksum", InvoiceCheckReason.MALFORMED),
        ("invalid amount multiplier", InvoiceCheckReason.MALFORMED),
        (
            "sub-millisatoshi precision (a 'p' amount whose last digit is not 0)",
            InvoiceCheckReason.SUB_MSAT_AMOUNT,
        ),
        ("mixed case", InvoiceCheckReason.MIXED_CASE),
        ("too short", InvoiceCheckReason.MALFORMED),
    ],
)
def test_invalid_vectors_rejected(why: str, reason: InvoiceCheckReason) -> None:
    assert _code(BY_WHY[why]) is reason


def test_every_invalid_vector_is_covered() -> None:
    for case in INVALID:
        with pytest.raises(InvoiceCheckError):
            decode_invoice(case["invoice"])


# ------------------------------------------------------------------ check_invoice


def _check(**overrides: object):
    kwargs: dict[str, object] = {
        "network": "bc",
        "expected_msat": COFFEE["amount_msat"],
        "expected_payment_hash": COFFEE["payment_hash"],
        "now": NOW_OK,
    }
    kwargs.update(overrides)
    return kwargs


def test_check_accepts_a_matching_invoice() -> None:
    inv = check_invoice(COFFEE["invoice"], **_check())  # type: ignore[arg-type]
    assert inv.amount_msat == 250_000_000 and inv.network is Network.MAINNET


def test_check_accepts_uri_prefix_and_upper_case_hash() -> None:
    text = "LIGHTNING:" + COFFEE["invoice"].upper()
    kwargs = _check(expected_payment_hash=COFFEE["payment_hash"].upper(), network="mainnet")
    assert check_invoice(text, **kwargs).bolt11 == COFFEE["invoice"]  # type: ignore[arg-type]


def test_check_wrong_network() -> None:
    assert _code(COFFEE["invoice"], **_check(network="regtest")) is InvoiceCheckReason.WRONG_NETWORK
    testnet = VALID[4]
    assert testnet["currency"] == "tb"
    assert _code(testnet["invoice"], **_check(expected_msat=testnet["amount_msat"])) is (
        InvoiceCheckReason.WRONG_NETWORK
    )


def test_check_amount_must_match_exactly() -> None:
    for wrong in (COFFEE["amount_msat"] - 1, COFFEE["amount_msat"] + 1, 1):
        assert _code(COFFEE["invoice"], **_check(expected_msat=wrong)) is (
            InvoiceCheckReason.AMOUNT_MISMATCH
        )


def test_check_requires_an_amount() -> None:
    no_amount = VALID[0]
    assert no_amount["amount_msat"] is None
    assert _code(no_amount["invoice"], **_check()) is InvoiceCheckReason.NO_AMOUNT


def test_check_payment_hash() -> None:
    assert _code(COFFEE["invoice"], **_check(expected_payment_hash="ab" * 32)) is (
        InvoiceCheckReason.HASH_MISMATCH
    )
    # Without a hash from the backend, the hash is not compared.
    check_invoice(COFFEE["invoice"], **_check(expected_payment_hash=None))  # type: ignore[arg-type]


def test_check_expiry_boundary_and_default() -> None:
    expires = COFFEE["timestamp"] + 60
    check_invoice(COFFEE["invoice"], **_check(now=expires - 0.001))  # type: ignore[arg-type]
    assert _code(COFFEE["invoice"], **_check(now=expires)) is InvoiceCheckReason.EXPIRED
    check_invoice(COFFEE["invoice"], **_check(now=expires + 999, allow_expired=True))  # type: ignore[arg-type]
    # Vector with no `x` field: expiry defaults to 3600 s.
    beans = VALID[6]
    assert decode_invoice(beans["invoice"]).expiry == DEFAULT_EXPIRY_S


def test_network_aliases() -> None:
    assert Network.parse("bitcoin") is Network.MAINNET
    assert Network.parse("tbs") is Network.SIGNET
    assert Network.parse("REGTEST") is Network.REGTEST
    with pytest.raises(ValueError):
        Network.parse("liquid")


# ------------------------------------------------------------------ properties


@settings(max_examples=60)
@given(
    # The `bolt11` package's encoder (used to mint) writes multiples of 10^14 msat one
    # multiplier off (2.1e18 msat becomes "lnbc21"): stay below its bug.
    msat=st.integers(min_value=1, max_value=21 * 10**14).filter(lambda m: m % 10**14),
    network=st.sampled_from(list(Network)),
    expiry=st.integers(min_value=1, max_value=10**6),
)
def test_minted_invoices_round_trip(msat: int, network: Network, expiry: int) -> None:
    # Property: any invoice we can sign decodes to the same amount/network/hash/expiry, passes
    # the check with its exact amount and fails it one msat either side.
    payment_hash = hashlib.sha256(msat.to_bytes(8, "big")).hexdigest()
    text = mint_bolt11(
        network=network.name.lower(),
        amount_msat=msat,
        payment_hash=payment_hash,
        description="t",
        expiry_s=expiry,
        timestamp=1_700_000_000,
    )
    now = 1_700_000_000 + expiry - 1
    inv = check_invoice(
        text, network=network, expected_msat=msat, expected_payment_hash=payment_hash, now=now
    )
    assert (inv.amount_msat, inv.network, inv.expiry) == (msat, network, expiry)
    for wrong in (msat - 1, msat + 1):
        if wrong > 0:
            with pytest.raises(InvoiceCheckError) as err:
                check_invoice(text, network=network, expected_msat=wrong, now=now)
            assert err.value.reason_code is InvoiceCheckReason.AMOUNT_MISMATCH


_MULT = {"": Decimal(1), "m": Decimal("0.001"), "u": Decimal("0.000001"),
         "n": Decimal("0.000000001"), "p": Decimal("0.000000000001")}  # fmt: skip


@given(
    digits=st.integers(min_value=1, max_value=10**15),
    multiplier=st.sampled_from(sorted(_MULT)),
    prefix=st.sampled_from(["bc", "tb", "tbs", "bcrt"]),
)
def test_hrp_amount_parse_is_exact(digits: int, multiplier: str, prefix: str) -> None:
    # Property: the integer hrp parse equals amount x multiplier in BTC x 10^11 msat, and a
    # result finer than 1 msat is refused rather than truncated.
    exact = Decimal(digits) * _MULT[multiplier] * Decimal(10**11)
    if exact != exact.to_integral_value():
        with pytest.raises(InvoiceCheckError) as err:
            _hrp_amount_msat(f"ln{prefix}{digits}{multiplier}")
        assert err.value.reason_code is InvoiceCheckReason.SUB_MSAT_AMOUNT
    else:
        network, msat = _hrp_amount_msat(f"ln{prefix}{digits}{multiplier}")
        assert network.value == prefix and msat == int(exact)


BECH32_ISH = st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l1ln", max_size=400)


@given(st.text(max_size=300) | BECH32_ISH)
def test_garbage_only_ever_raises_invoice_check_error(text: str) -> None:
    # Property: whatever a QR scan yields, decoding raises only InvoiceCheckError.
    try:
        decode_invoice(text)
    except InvoiceCheckError:
        pass
