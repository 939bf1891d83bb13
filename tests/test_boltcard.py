"""terminal.protocols.boltcard against the published vectors, plus the keyring and secret
hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.ntag424.crypto import (
    ShortCmac,
    aes_ecb_decrypt,
    aes_ecb_encrypt,
    cmac,
    cmac_empty,
    sdm_mac,
    sdm_session_enc_key,
    sdm_sv1,
    sdm_sv2,
)
from terminal.protocols.boltcard import (
    DeterministicIssuer,
    KeyFormatError,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
    PiccDecryptor,
    SunVerifier,
    TapError,
    TapReason,
    derive_card_id,
    derive_card_key,
    derive_card_keys,
    derive_k1,
    key_table_card_id,
    parse_tap_url,
    verify_sun,
    verify_tap_url,
)

VECTORS = Path(__file__).parent / "vectors"
SUN = json.loads((VECTORS / "boltcard-sun.json").read_text())
KEYS = json.loads((VECTORS / "boltcard-keys.json").read_text())
SUN_CASES = {case["name"]: case for case in SUN["cases"]}
KEY_CASE = KEYS["cases"][0]
ISSUER_KEY = bytes.fromhex(KEY_CASE["issuer_key"])
VECTOR_UID = bytes.fromhex(KEY_CASE["uid"])
REAL = SUN_CASES["boltcard-real-card-1"]
REAL_K1, REAL_K2 = bytes.fromhex(REAL["k1"]), bytes.fromhex(REAL["k2"])
REAL_URL = REAL["url"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def make_tap(k1: bytes, k2: bytes, uid: bytes, counter: int, host: str = "card.example.com",
             p_param: str = "p", c_param: str = "c") -> str:
    ctr = counter.to_bytes(3, "little")
    p = aes_ecb_encrypt(k1, b"\xc7" + uid + ctr + bytes.fromhex("0102030405"))
    c = sdm_mac(k2, uid, ctr)
    return f"lnurlw://{host}/ln?{p_param}={p.hex().upper()}&{c_param}={c.hex().upper()}"


# --- vectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SUN["session_key_cases"], ids=lambda c: c["name"])
def test_session_key_cases(case):
    key, uid, ctr = h(case["key"]), h(case["uid"]), h(case["counter_bytes_le"])
    assert sdm_sv1(uid, ctr) == h(case["sv1"])
    assert sdm_sv2(uid, ctr) == h(case["sv2"])
    assert sdm_session_enc_key(key, uid, ctr) == h(case["ses_sdm_enc_key"])
    # The fast path used by the verifier gives the same session MAC key.
    assert ShortCmac(key).digest(sdm_sv2(uid, ctr)) == h(case["ses_sdm_mac_key"])


@pytest.mark.parametrize("case", SUN["cases"], ids=lambda c: c["name"])
def test_sun_cases_bytes(case):
    expect = case["expect"]
    result = verify_sun(h(case["p"]), h(case["c"]), h(case["k1"]), h(case["k2"]))
    assert result.valid is expect["valid"]
    assert result.reason == (None if expect["valid"] else TapReason(expect["reason"]))
    if "uid" in expect:
        assert result.uid == h(expect["uid"])
        assert result.counter == expect["counter"]
    if expect.get("reason") == "not-picc-data":
        assert result.uid is None and result.counter is None
    if expect.get("reason") == "cmac-mismatch":
        assert result.uid is not None and result.counter is not None


@pytest.mark.parametrize("case", [c for c in SUN["cases"] if "url" in c], ids=lambda c: c["name"])
def test_sun_cases_url(case):
    p_param = case.get("p_param", "p")
    params = parse_tap_url(case["url"], p_param=p_param)
    assert params.p == h(case["p"]) and params.c == h(case["c"])
    result = verify_tap_url(case["url"], h(case["k1"]), h(case["k2"]), p_param=p_param)
    assert result.valid is case["expect"]["valid"]
    assert result.uid == h(case["expect"]["uid"])
    assert result.counter == case["expect"]["counter"]


@pytest.mark.parametrize("case", [c for c in SUN["cases"] if "full_cmac" in c["expect"]],
                         ids=lambda c: c["name"])
def test_sun_intermediates(case):
    expect = case["expect"]
    k1, k2 = h(case["k1"]), h(case["k2"])
    assert aes_ecb_decrypt(k1, h(case["p"])) == h(expect["picc_data"])
    picc = PiccDecryptor(k1).decrypt(h(case["p"]))
    assert picc is not None and picc.uid == h(expect["uid"])
    assert picc.counter == expect["counter"]
    assert picc.counter_le == h(expect["picc_data"])[8:11]
    if "sv2" in expect:
        assert sdm_sv2(picc.uid, picc.counter_le) == h(expect["sv2"])
    session = ShortCmac(k2).digest(sdm_sv2(picc.uid, picc.counter_le))
    assert session == h(expect["ses_sdm_mac_key"])
    assert cmac_empty(session) == h(expect["full_cmac"])
    assert h(expect["full_cmac"])[1::2] == h(case["c"])


EXPECTED_MALFORMED_DETAIL = [
    "no 'p' parameter",
    "'p' must be exactly 32 hex characters, not 31",
    "'c' must be exactly 16 hex characters, not 14",
    "'p' contains characters other than hex digits",
    "2 'p' parameters",
    "percent-encoded control character",
]


@pytest.mark.parametrize(("url", "detail"),
                         list(zip(SUN["malformed_urls"], EXPECTED_MALFORMED_DETAIL, strict=True)))
def test_malformed_urls(url, detail):
    with pytest.raises(TapError) as info:
        parse_tap_url(url)
    assert info.value.reason is TapReason.MALFORMED
    assert detail in info.value.detail
    result = verify_tap_url(url, REAL_K1, REAL_K2)
    assert (result.valid, result.reason, result.uid) == (False, TapReason.MALFORMED, None)
    keyring = Keyring([KeyTableIssuer("real", [KeyTableCard(k1=REAL_K1, k2=REAL_K2)])])
    verification = keyring.verify_tap(url)
    assert verification.reason is TapReason.MALFORMED and detail in verification.detail


def test_key_vectors():
    expect = KEY_CASE["expect"]
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, KEY_CASE["version"])
    assert keys.hex_dict() == {
        "k0": expect["k0"], "k1": expect["k1"], "k2": expect["k2"], "k3": expect["k3"],
        "k4": expect["k4"], "card_id": expect["id"],
    }
    assert derive_card_key(ISSUER_KEY, VECTOR_UID, 1) == h(expect["card_key"])
    assert derive_k1(ISSUER_KEY) == h(expect["k1"])
    assert derive_card_id(ISSUER_KEY, VECTOR_UID) == expect["id"]


# --- URL parsing details ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["lnurlw", "LNURLW", "LnUrlW", "https", "HTTP", "http"])
def test_scheme_is_case_insensitive(scheme):
    url = REAL_URL.replace("lnurlw", scheme, 1)
    params = parse_tap_url(url)
    assert params.scheme == scheme.lower() and params.host == "card.yourdomain.com"
    assert params.p == h(REAL["p"])


@pytest.mark.parametrize(("url", "detail"), [
    ("ftp://card.yourdomain.com/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE",
     "scheme"),
    ("lnurlw:///ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE", "no host"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE&%63=E19CCB1FED8892CE",
     "2 'c' parameters"),
    ("lnurlw://h/ln?p=%34E2E289D945A66BB13377A728884E86&c=E19CCB1FED8892CE", "hex digits"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE%1f", "control"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892C\x00", "control"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED88 2CE", "spaces"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE%", "'%'"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892É", "non-ASCII"),
    ("lnurlw://[::1/ln?p=4E2E289D945A66BB13377A728884E867&c=E19CCB1FED8892CE", "split"),
    ("", "empty"),
    ("lnurlw://h/ln?p=4E2E289D945A66BB13377A728884E867&c=" + "A" * 3000, "longer than"),
])
def test_parse_rejects(url, detail):
    with pytest.raises(TapError) as info:
        parse_tap_url(url)
    assert detail in info.value.detail
    assert info.value.reason is TapReason.MALFORMED


def test_parse_non_text_is_tap_error():
    with pytest.raises(TapError, match="not text"):
        parse_tap_url(b"lnurlw://x/?p=1&c=2")  # type: ignore[arg-type]


def test_parse_custom_names_query_in_base_and_fragment():
    url = ("https://lnbits.example/boltcards/api/v1/scan/abc?x=1&picc_data="
           + REAL["p"].lower() + "&cmac=" + REAL["c"] + "#frag")
    params = parse_tap_url(url, "picc_data", "cmac")
    assert (params.p, params.c, params.path) == (h(REAL["p"]), h(REAL["c"]),
                                                 "/boltcards/api/v1/scan/abc")
    with pytest.raises(TapError, match="no 'p' parameter"):
        parse_tap_url(url)


# --- SUN verification API --------------------------------------------------------------------


def test_verify_sun_rejects_wrong_sizes_with_tap_error():
    with pytest.raises(TapError):
        verify_sun(b"\x00" * 15, b"\x00" * 8, REAL_K1, REAL_K2)
    with pytest.raises(TapError):
        verify_sun(b"\x00" * 16, b"\x00" * 9, REAL_K1, REAL_K2)
    with pytest.raises(KeyFormatError):
        verify_sun(b"\x00" * 16, b"\x00" * 8, REAL_K1[:15], REAL_K2)


def test_sun_verifier_matches_function():
    verifier = SunVerifier(REAL_K1, REAL_K2)
    assert verifier.verify(h(REAL["p"]), h(REAL["c"])) == verify_sun(
        h(REAL["p"]), h(REAL["c"]), REAL_K1, REAL_K2)


# --- keys ---------------------------------------------------------------------------------------


def test_btcpay_variant_appends_pull_payment_id():
    ppid = "3dGzDaVRvTmB5ubBC6ykKznAbSy5"
    version = 2
    card_key = cmac(ISSUER_KEY, h("2D003F75") + VECTOR_UID + version.to_bytes(4, "little")
                    + ppid.encode())
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, version, pull_payment_id=ppid)
    assert derive_card_key(ISSUER_KEY, VECTOR_UID, version, pull_payment_id=ppid) == card_key
    assert keys.k2 == cmac(card_key, h("2D003F78"))
    assert keys.k0 == cmac(card_key, h("2D003F76"))
    assert keys.k1 == derive_k1(ISSUER_KEY)  # K1 does not depend on the card
    assert keys.card_id == KEY_CASE["expect"]["id"]
    assert keys.k2 != derive_card_keys(ISSUER_KEY, VECTOR_UID, version).k2


@pytest.mark.parametrize(("issuer_key", "uid", "version"), [
    (ISSUER_KEY[:15], VECTOR_UID, 1),
    (ISSUER_KEY, VECTOR_UID + b"\x00", 1),
    (ISSUER_KEY, VECTOR_UID, -1),
    (ISSUER_KEY, VECTOR_UID, 2**32),
    (ISSUER_KEY, VECTOR_UID, True),
])
def test_key_derivation_rejects_bad_input(issuer_key, uid, version):
    with pytest.raises(KeyFormatError) as info:
        derive_card_keys(issuer_key, uid, version)
    assert issuer_key.hex() not in str(info.value)


def test_version_bytes_are_little_endian():
    keys_256 = derive_card_keys(ISSUER_KEY, VECTOR_UID, 256)
    card_key = cmac(ISSUER_KEY, h("2D003F75") + VECTOR_UID + h("00010000"))
    assert keys_256.k2 == cmac(card_key, h("2D003F78"))


# --- keyring -----------------------------------------------------------------------------------


def deterministic_keyring(**kwargs) -> Keyring:
    return Keyring([DeterministicIssuer("boltcard-svc", ISSUER_KEY, **kwargs)])


def test_keyring_deterministic_tap():
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, 1)
    url = make_tap(keys.k1, keys.k2, VECTOR_UID, 42)
    result = deterministic_keyring().verify_tap(url)
    assert result.valid and result.reason is None
    assert result.issuer == "boltcard-svc"
    assert result.card_id == KEY_CASE["expect"]["id"]
    assert result.counter == 42
    assert result.internal_uid == VECTOR_UID
    # The same card again hits the prepared-K2 cache and still verifies.
    again = deterministic_keyring().verify_tap(make_tap(keys.k1, keys.k2, VECTOR_UID, 43))
    assert again.valid and again.counter == 43


def test_keyring_uses_card_version():
    keys_v3 = derive_card_keys(ISSUER_KEY, VECTOR_UID, 3)
    url = make_tap(keys_v3.k1, keys_v3.k2, VECTOR_UID, 1)
    stale = deterministic_keyring(version_window=1).verify_tap(url)  # only version 1 tried
    assert (stale.valid, stale.reason) == (False, TapReason.CMAC_MISMATCH)
    assert stale.card_id == keys_v3.card_id and stale.counter == 1
    current = deterministic_keyring(versions={keys_v3.card_id.upper(): 3}).verify_tap(url)
    assert current.valid and current.card_id == keys_v3.card_id
    default_3 = deterministic_keyring(default_version=3).verify_tap(url)
    assert default_3.valid


def test_keyring_btcpay_issuer():
    ppid = "pp-42"
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, 1, pull_payment_id=ppid)
    url = make_tap(keys.k1, keys.k2, VECTOR_UID, 9)
    assert deterministic_keyring(pull_payment_id=ppid).verify_tap(url).valid
    assert deterministic_keyring().verify_tap(url).reason is TapReason.CMAC_MISMATCH


def test_keyring_unknown_issuer_and_order():
    other_key = bytes(range(16))
    keyring = Keyring([
        DeterministicIssuer("other", other_key),
        KeyTableIssuer("real", [KeyTableCard(k1=REAL_K1, k2=REAL_K2)]),
    ])
    result = keyring.verify_tap(REAL_URL)
    assert result.valid and result.issuer == "real" and result.counter == 3
    assert result.card_id == key_table_card_id(REAL_K2, h(REAL["expect"]["uid"]))
    assert Keyring([DeterministicIssuer("other", other_key)]).verify_tap(REAL_URL).reason \
        is TapReason.UNKNOWN_ISSUER
    empty = Keyring([])
    assert empty.verify_tap(REAL_URL).reason is TapReason.UNKNOWN_ISSUER
    assert empty.verify_tap("lnurlw://x/ln").reason is TapReason.MALFORMED


def test_keyring_key_table_card_selection():
    uid = h(REAL["expect"]["uid"])
    wrong_uid = KeyTableCard(k1=REAL_K1, k2=bytes(16), uid=b"\x04" + bytes(6))
    right_uid = KeyTableCard(k1=REAL_K1, k2=REAL_K2, uid=uid)
    by_id = KeyTableCard(k1=REAL_K1, k2=REAL_K2, card_id=key_table_card_id(REAL_K2, uid).upper())
    unknown_id = KeyTableCard(k1=REAL_K1, k2=REAL_K2, card_id="00" * 16)
    for cards, valid in [([wrong_uid, right_uid], True), ([by_id], True), ([unknown_id], False),
                         ([wrong_uid], False)]:
        result = Keyring([KeyTableIssuer("t", cards)]).verify_tap(REAL_URL)
        assert result.valid is valid
        if not valid:  # K1 fits, but no listed card is this UID
            assert result.reason is TapReason.UNKNOWN_ISSUER


def test_keyring_key_table_shared_k1_and_mismatch():
    uid = h(REAL["expect"]["uid"])
    decoy = KeyTableCard(k1=REAL_K1, k2=bytes(16))
    keyring = Keyring([KeyTableIssuer("t", [decoy, KeyTableCard(k1=REAL_K1, k2=REAL_K2)])])
    assert keyring.verify_tap(REAL_URL).valid  # tries the second K2 of the shared K1
    only_decoy = Keyring([KeyTableIssuer("t", [decoy])]).verify_tap(REAL_URL)
    assert (only_decoy.valid, only_decoy.reason) == (False, TapReason.CMAC_MISMATCH)
    assert only_decoy.issuer == "t" and only_decoy.counter == 3
    assert only_decoy.card_id == key_table_card_id(bytes(16), uid)


def test_keyring_param_names_and_hosts():
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, 1)
    url = make_tap(keys.k1, keys.k2, VECTOR_UID, 5, host="Pay.Example.com:8443",
                   p_param="picc_data", c_param="cmac")
    plain = deterministic_keyring()
    assert plain.verify_tap(url).reason is TapReason.MALFORMED
    named = deterministic_keyring(p_param="picc_data", c_param="cmac")
    assert named.verify_tap(url).valid
    hosted = deterministic_keyring(p_param="picc_data", c_param="cmac", hosts=("pay.example.com",))
    assert hosted.verify_tap(url).valid
    elsewhere = deterministic_keyring(p_param="picc_data", c_param="cmac", hosts="other.example")
    assert elsewhere.verify_tap(url).reason is TapReason.UNKNOWN_ISSUER
    mixed = Keyring([
        KeyTableIssuer("real", [KeyTableCard(k1=REAL_K1, k2=REAL_K2)]),
        DeterministicIssuer("named", ISSUER_KEY, p_param="picc_data", c_param="cmac"),
    ])
    assert mixed.verify_tap(url).issuer == "named"
    assert mixed.verify_tap(REAL_URL).issuer == "real"


def test_keyring_rejects_bad_config():
    with pytest.raises(ValueError, match="two issuers"):
        Keyring([DeterministicIssuer("a", ISSUER_KEY), DeterministicIssuer("a", ISSUER_KEY)])
    with pytest.raises(KeyFormatError):
        DeterministicIssuer("a", ISSUER_KEY[:8])
    with pytest.raises(ValueError, match="parameter name"):
        DeterministicIssuer("a", ISSUER_KEY, p_param="p&x")
    with pytest.raises(KeyFormatError):
        KeyTableCard(k1=REAL_K1, k2=REAL_K2[:4])
    with pytest.raises(TypeError):
        Keyring(["not an issuer"])  # type: ignore[list-item]


# --- secrets stay out of reprs, strings and messages -------------------------------------------


def _secret_strings(*values: bytes) -> list[str]:
    return [form for value in values for form in (value.hex(), value.hex().upper(), repr(value))]


def test_no_secret_in_reprs():
    keys = derive_card_keys(ISSUER_KEY, VECTOR_UID, 1)
    uid = h(REAL["expect"]["uid"])
    issuer = DeterministicIssuer("svc", ISSUER_KEY)
    card = KeyTableCard(k1=REAL_K1, k2=REAL_K2, k0=keys.k0, k3=keys.k3, k4=keys.k4, uid=uid)
    table = KeyTableIssuer("t", [card])
    keyring = Keyring([issuer, table])
    verification = keyring.verify_tap(REAL_URL)
    assert verification.valid
    sun = verify_sun(h(REAL["p"]), h(REAL["c"]), REAL_K1, REAL_K2)
    texts = [repr(x) + str(x) for x in (keys, issuer, card, table, keyring, verification, sun,
                                         SunVerifier(REAL_K1, REAL_K2), PiccDecryptor(REAL_K1),
                                         PiccDecryptor(REAL_K1).decrypt(h(REAL["p"])),
                                         ShortCmac(REAL_K2))]
    secrets = _secret_strings(ISSUER_KEY, keys.k0, keys.k1, keys.k2, keys.k3, keys.k4, REAL_K1,
                              REAL_K2, uid, VECTOR_UID)
    for text in texts:
        for secret in secrets:
            assert secret not in text, text
    assert "svc" in repr(issuer) and "card_id=" in repr(keys)


def test_no_secret_in_errors():
    try:
        parse_tap_url(REAL_URL.replace("&c=", "&c=00&c="))
    except TapError as exc:
        message = str(exc)
    assert "malformed" in message and REAL["p"] not in message and REAL["c"] not in message


def test_a_reissued_card_verifies_within_the_version_window_but_not_beyond():
    # Issuers bump the key version on every re-programming; the terminal may not know yet.
    from hw.ntag424.crypto import aes_ecb_encrypt, sdm_mac
    from terminal.protocols.boltcard import DeterministicIssuer, Keyring, derive_card_keys

    issuer_key = bytes(range(16))
    uid = bytes.fromhex("04a39493cc8680")

    def tap(version: int) -> str:
        keys = derive_card_keys(issuer_key, uid, version)
        ctr = (7).to_bytes(3, "little")
        p = aes_ecb_encrypt(keys.k1, b"\xc7" + uid + ctr + bytes(5))
        c = sdm_mac(keys.k2, uid, ctr)
        return f"lnurlw://card.example/ln?p={p.hex()}&c={c.hex()}"

    ring = Keyring([DeterministicIssuer("i", issuer_key)])  # window: versions 1..4
    assert ring.verify_tap(tap(3)).valid
    assert not ring.verify_tap(tap(5)).valid
    card_id = ring.verify_tap(tap(3)).card_id
    pinned = Keyring([DeterministicIssuer("i", issuer_key, versions={card_id: 2})])
    assert pinned.verify_tap(tap(2)).valid
    assert not pinned.verify_tap(tap(3)).valid  # a listed version is exact
