"""Properties of SUN verification, URL parsing and the fast CMAC path (hypothesis)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hw.ntag424.crypto import (
    ShortCmac,
    aes_ecb_encrypt,
    cmac,
    cmac_empty,
    sdm_mac,
    sdm_mac_precomputed,
)
from terminal.protocols.boltcard import (
    DeterministicIssuer,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
    TapError,
    TapReason,
    derive_card_keys,
    parse_tap_url,
    verify_sun,
    verify_tap_url,
)

keys = st.binary(min_size=16, max_size=16)
uids = st.binary(min_size=7, max_size=7)
counters = st.integers(min_value=0, max_value=2**24 - 1)
tails = st.binary(min_size=5, max_size=5)
short_messages = st.binary(max_size=16)


def simulated_tap(
    k1: bytes, k2: bytes, uid: bytes, counter: int, tail: bytes
) -> tuple[bytes, bytes]:
    """What the card writes: p = E(K1, C7 ‖ UID ‖ ctr LE ‖ 5 random bytes), c = SDMMAC."""
    ctr = counter.to_bytes(3, "little")
    return aes_ecb_encrypt(k1, b"\xc7" + uid + ctr + tail), sdm_mac(k2, uid, ctr)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def hex_case(data: bytes, upper: bool) -> str:
    return data.hex().upper() if upper else data.hex()


# Property: the precomputed CMAC equals the general CMAC for every message of 0..16 bytes.
@given(keys, short_messages)
def test_short_cmac_equals_cmac(key, message):
    assert ShortCmac(key).digest(message) == cmac(key, message)


# Property: CMAC of the empty message via two block encryptions equals the general CMAC.
@given(keys)
def test_cmac_empty_equals_cmac(key):
    assert cmac_empty(key) == cmac(key, b"")


# Property: the fast SDMMAC path equals crypto.sdm_mac.
@given(keys, uids, counters)
def test_sdm_mac_precomputed_equals_sdm_mac(k2, uid, counter):
    ctr = counter.to_bytes(3, "little")
    assert sdm_mac_precomputed(ShortCmac(k2), uid, ctr) == sdm_mac(k2, uid, ctr)


# Property: a tap built the way the card builds it verifies and yields its UID and counter.
@given(keys, keys, uids, counters, tails)
def test_simulated_tap_verifies(k1, k2, uid, counter, tail):
    p, c = simulated_tap(k1, k2, uid, counter, tail)
    result = verify_sun(p, c, k1, k2)
    assert (result.valid, result.reason, result.uid, result.counter) == (True, None, uid, counter)


# Property: the same tap as a URL (either hex case, any parameter order) verifies in a keyring.
@given(keys, keys, uids, counters, tails, st.booleans(), st.booleans())
def test_simulated_tap_url_verifies_in_keyring(k1, k2, uid, counter, tail, upper, c_first):
    p, c = simulated_tap(k1, k2, uid, counter, tail)
    query = [f"p={hex_case(p, upper)}", f"c={hex_case(c, not upper)}", "x=1"]
    if c_first:
        query.reverse()
    url = "lnurlw://card.example/ln?" + "&".join(query)
    keyring = Keyring([KeyTableIssuer("t", [KeyTableCard(k1=k1, k2=k2, uid=uid)])])
    result = keyring.verify_tap(url)
    assert (result.valid, result.counter, result.internal_uid) == (True, counter, uid)


# Property: any single-bit change to p or c is rejected, never valid.
@given(keys, keys, uids, counters, tails, st.integers(min_value=0, max_value=16 * 8 + 8 * 8 - 1))
def test_single_bit_flip_is_rejected(k1, k2, uid, counter, tail, bit):
    p, c = simulated_tap(k1, k2, uid, counter, tail)
    if bit < 128:
        p = flip_bit(p, bit)
    else:
        c = flip_bit(c, bit - 128)
    result = verify_sun(p, c, k1, k2)
    assert not result.valid
    assert result.reason in (TapReason.NOT_PICC_DATA, TapReason.CMAC_MISMATCH)
    if bit >= 128:  # p untouched: it still decrypts, only the MAC fails
        assert result.reason is TapReason.CMAC_MISMATCH
        assert (result.uid, result.counter) == (uid, counter)


# Property: deterministic keys round-trip through the keyring with the right card ID and version.
@given(keys, uids, st.integers(min_value=0, max_value=2**32 - 1), counters, tails)
@settings(max_examples=50)
def test_deterministic_keyring_round_trip(issuer_key, uid, version, counter, tail):
    card = derive_card_keys(issuer_key, uid, version)
    p, c = simulated_tap(card.k1, card.k2, uid, counter, tail)
    url = f"https://pay.example/ln?p={p.hex()}&c={c.hex()}"
    issuer = DeterministicIssuer("svc", issuer_key, versions={card.card_id: version})
    result = Keyring([issuer]).verify_tap(url)
    assert (result.valid, result.issuer, result.card_id, result.counter) == (
        True, "svc", card.card_id, counter)


# Property: another issuer's keys never accept the tap.
@given(keys, keys, uids, counters, tails)
@settings(max_examples=50)
def test_other_issuer_never_accepts(issuer_key, other_key, uid, counter, tail):
    assume(issuer_key != other_key)
    card = derive_card_keys(issuer_key, uid, 1)
    p, c = simulated_tap(card.k1, card.k2, uid, counter, tail)
    result = Keyring([DeterministicIssuer("other", other_key)]).verify_tap(
        f"lnurlw://h/ln?p={p.hex()}&c={c.hex()}")
    assert not result.valid
    assert result.reason in (TapReason.UNKNOWN_ISSUER, TapReason.CMAC_MISMATCH)


# Property: a URL with well-formed p and c parses back to exactly those bytes.
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8), st.booleans(),
       st.sampled_from(["lnurlw", "LNURLW", "https", "http"]),
       st.lists(st.from_regex(r"[d-o]{1,5}=[A-Za-z0-9]{0,3}", fullmatch=True), max_size=3))
def test_parse_round_trip(p, c, upper, scheme, extras):
    query = [*extras, f"p={hex_case(p, upper)}", f"c={hex_case(c, upper)}"]
    params = parse_tap_url(f"{scheme}://host.example/a/b?{'&'.join(query)}")
    assert (params.p, params.c, params.host, params.path) == (p, c, "host.example", "/a/b")


URL_ALPHABET = st.sampled_from(list("pc=&?%/:#[]@.-_0123456789abcdefABCDEFxyz \x00\n\u00e9"))
url_like = st.builds(
    lambda scheme, body: scheme + body,
    st.sampled_from(["lnurlw://", "LNURLW://", "https://", "http://", "", "ftp://", "lnurlw:"]),
    st.text(URL_ALPHABET, max_size=80),
)
REAL_URL = "lnurlw://card.yourdomain.com/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE"
near_valid = st.builds(
    lambda start, length, junk: REAL_URL[:start] + junk + REAL_URL[start + length:],
    st.integers(min_value=0, max_value=len(REAL_URL)),
    st.integers(min_value=0, max_value=4),
    st.text(URL_ALPHABET, max_size=4),
)
keyring_for_fuzz = Keyring([
    DeterministicIssuer("d", bytes(16)),
    KeyTableIssuer("t", [KeyTableCard(k1=bytes(range(16)), k2=bytes(16))], p_param="e"),
])


# Property: arbitrary text or URL-like junk raises nothing but TapError; the keyring never raises.
@given(st.one_of(st.text(max_size=200), url_like, near_valid))
@settings(max_examples=300)
def test_arbitrary_text_only_raises_tap_error(text):
    try:
        parse_tap_url(text)
    except TapError as exc:
        assert exc.reason is TapReason.MALFORMED and exc.detail
    result = keyring_for_fuzz.verify_tap(text)
    assert result.reason in (TapReason.MALFORMED, TapReason.UNKNOWN_ISSUER,
                             TapReason.CMAC_MISMATCH)
    assert not verify_tap_url(text, bytes(16), bytes(16)).valid
