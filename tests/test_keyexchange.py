"""Issuer key-exchange responses, key files, deeplinks, and a fetch from a loopback issuer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers.loopback import LoopbackServer
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hw.ntag424 import Ntag424
from hw.sim.card import SimulatedNtag424
from terminal.adapters.keyexchange import (
    Action,
    IssuerKeySource,
    KeyExchangeError,
    UrlKeySource,
    card_url,
    fetch_keys,
    load_keys_file,
    parse_deeplink,
    parse_issuer_response,
)
from terminal.adapters.provisioning_journal import ProvisioningJournal
from terminal.protocols.boltcard import derive_card_keys, verify_tap_url
from terminal.protocols.boltcard.provisioning import program_card
from terminal.protocols.lnurl import UrlPolicy
from tests.fakes.btcpay_server import FakeBTCPay

K = [f"{n}{n}" * 16 for n in range(5)]
BOLTCARD_SERVICE = {
    "protocol_name": "create_bolt_card_response", "protocol_version": 2, "card_name": "Alice",
    "lnurlw_base": "lnurlw://card.example/ln", "k0": K[0], "k1": K[1], "k2": K[2], "k3": K[3],
    "k4": K[4], "uid_privacy": "Y",
}
# LNbits boltcards (views_lnurl.py api_auth_post): upper-case names, an upper-case scheme, the
# card's K1/K2 repeated as K3/K4, and no version.
LNBITS_SCAN = "/boltcards/api/v1/scan/x7Kd9Q2mPnWz"
LNBITS = {"CARD_NAME": "Bob", "ID": "1", "K0": K[0], "K1": K[1], "K2": K[2], "K3": K[3],
          "K4": K[4], "LNURLW_BASE": "LNURLW://lnbits.example" + LNBITS_SCAN,
          "LNURLW": "LNURLW://lnbits.example" + LNBITS_SCAN,
          "PROTOCOL_NAME": "NEW_BOLT_CARD_RESPONSE", "PROTOCOL_VERSION": "1"}
# Its GET variant (api_auth): lower-case names and scheme.
LNBITS_GET = {"card_name": "Bob", "id": "1", "k0": K[0], "k1": K[1], "k2": K[2], "k3": K[3],
              "k4": K[4], "lnurlw_base": "lnurlw://lnbits.example" + LNBITS_SCAN,
              "protocol_name": "new_bolt_card_response", "protocol_version": "1"}
# BTCPay Server (GreenfieldPullPaymentController.RegisterBoltcard): upper-case hex, version 0 for
# a new card.
BTCPAY = {"LNURLW": "lnurlw://btcpay.example/boltcard", "version": 0,
          **{f"K{n}": key.upper() for n, key in enumerate(K)}}
WIPE = {"action": "wipe", "k0": K[0], "k1": K[1], "k2": K[2], "k3": K[3], "k4": K[4],
        "uid": "04a1b2c3d4e5f6", "version": 1}


def case_variant(draw_bits: list[bool], text: str) -> str:
    return "".join(c.upper() if b else c.lower() for c, b in zip(text, draw_bits, strict=False))


@pytest.mark.parametrize(("payload", "url", "version", "action"), [
    (BOLTCARD_SERVICE, "lnurlw://card.example/ln", 1, Action.PROGRAM),
    (LNBITS, "lnurlw://lnbits.example" + LNBITS_SCAN, 1, Action.PROGRAM),
    (LNBITS_GET, "lnurlw://lnbits.example" + LNBITS_SCAN, 1, Action.PROGRAM),
    (BTCPAY, "lnurlw://btcpay.example/boltcard", 1, Action.PROGRAM),  # derived at 0
    (WIPE, None, 1, Action.WIPE),
], ids=["boltcard", "lnbits-post", "lnbits-get", "btcpay", "wipe"])
def test_each_issuer_format(payload, url, version, action) -> None:
    parsed = parse_issuer_response(payload)
    assert [parsed.keys.key(n).hex() for n in range(5)] == K
    assert parsed.lnurlw_base == url and parsed.keys.version == version
    assert parsed.issuer_version == (0 if payload is BTCPAY else version)
    assert parsed.action is action
    assert (parsed.uid == bytes.fromhex("04a1b2c3d4e5f6")) is (payload is WIPE)
    for key in K:
        assert key not in repr(parsed)


@given(st.sampled_from([BOLTCARD_SERVICE, LNBITS, LNBITS_GET, BTCPAY, WIPE]),
       st.lists(st.booleans(), min_size=20, max_size=20), st.booleans())
def test_field_names_in_any_case(payload, bits, upper_hex) -> None:
    varied = {case_variant(bits, name): (value.upper() if upper_hex and isinstance(value, str)
                                         and len(value) == 32 else value)
              for name, value in payload.items()}
    parsed = parse_issuer_response(varied)
    assert [parsed.keys.key(n).hex() for n in range(5)] == K
    assert parsed.action is (Action.WIPE if payload is WIPE else Action.PROGRAM)


@given(st.sampled_from(["k0", "k1", "k2", "k3", "k4"]),
       st.one_of(st.text(max_size=40), st.integers(), st.none()))
def test_bad_keys_are_refused_without_echo(name, value) -> None:
    payload = dict(WIPE, **{name: value})
    if isinstance(value, str):
        try:
            if len(bytes.fromhex(value.strip())) == 16:
                return
        except ValueError:
            pass
    with pytest.raises(KeyExchangeError) as info:
        parse_issuer_response(payload)
    assert name.upper() in str(info.value)
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(info.value)


def test_not_a_key_response() -> None:
    with pytest.raises(KeyExchangeError, match="not a JSON object"):
        parse_issuer_response([1, 2])
    with pytest.raises(KeyExchangeError, match="lacks K3, K4"):
        parse_issuer_response({"k0": K[0], "k1": K[1], "k2": K[2]})
    with pytest.raises(KeyExchangeError, match="refused: card already"):
        parse_issuer_response({"status": "ERROR", "reason": "card already registered"})
    with pytest.raises(KeyExchangeError, match="twice"):
        parse_issuer_response(dict(WIPE, K0=K[0]))


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(dict(BTCPAY, version=2)))
    assert load_keys_file(path).keys.version == 2
    path.write_text("{not json")
    with pytest.raises(KeyExchangeError, match="not JSON"):
        load_keys_file(path)
    with pytest.raises(KeyExchangeError, match="cannot read"):
        load_keys_file(tmp_path / "missing.json")


def test_deeplinks() -> None:
    link = parse_deeplink("boltcard://program?url=https%3A%2F%2Fi.example%2Fnew%3Fa%3D1")
    assert link.action is Action.PROGRAM and link.url == "https://i.example/new?a=1"
    assert parse_deeplink("boltcard://reset?url=https://i.example/w").action is Action.WIPE
    assert parse_deeplink("https://i.example/new").url == "https://i.example/new"
    with pytest.raises(KeyExchangeError):
        parse_deeplink("boltcard://program")
    with pytest.raises(KeyExchangeError):
        parse_deeplink("boltcard://steal?url=https://x.example")


# --- a real issuer on loopback -----------------------------------------------------------------


class IssuerServer:
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.answer: tuple[int, object] = (200, LNBITS)
        self.headers: dict[str, str] = {}
        app = Starlette(routes=[Route("/new", self._new, methods=["POST"])])
        self.server = LoopbackServer(app, name="issuer")
        self.port = self.server.port

    async def _new(self, request: Request) -> JSONResponse:
        self.seen.append(await request.json())
        status, body = self.answer
        return JSONResponse(body, status_code=status, headers=self.headers)

    def __enter__(self) -> IssuerServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@pytest.fixture
def issuer() -> Iterator[IssuerServer]:
    with IssuerServer() as server:
        yield server


POLICY = UrlPolicy(allow_insecure_hosts=frozenset({"127.0.0.1"}),
                   allow_private_hosts=frozenset({"127.0.0.1"}))


def test_fetch_posts_uid_and_parses(issuer: IssuerServer) -> None:
    url = f"http://127.0.0.1:{issuer.port}/new"
    deeplink = "boltcard://program?url=" + url.replace(":", "%3A").replace("/", "%2F")
    for target in (url, deeplink):
        response = fetch_keys(target, POLICY, uid=bytes.fromhex("04a1b2c3d4e5f6"))
        assert response.lnurlw_base == "lnurlw://lnbits.example" + LNBITS_SCAN
        assert [response.keys.key(n).hex() for n in range(5)] == K
    assert issuer.seen == [{"UID": "04A1B2C3D4E5F6"}] * 2


def test_fetch_reset_posts_the_tap(issuer: IssuerServer) -> None:
    issuer.answer = (200, WIPE)
    tap = "lnurlw://card.example/ln?p=00&c=11"
    response = fetch_keys(f"http://127.0.0.1:{issuer.port}/new", POLICY, lnurlw=tap)
    assert response.action is Action.WIPE and issuer.seen == [{"LNURLW": tap}]


def test_fetch_errors(issuer: IssuerServer) -> None:
    url = f"http://127.0.0.1:{issuer.port}/new"
    issuer.answer = (400, {"status": "ERROR", "reason": "unknown card"})
    with pytest.raises(KeyExchangeError, match="unknown card"):
        fetch_keys(url, POLICY, uid=bytes(7))
    issuer.answer = (500, {"oops": 1})
    with pytest.raises(KeyExchangeError, match="HTTP 500"):
        fetch_keys(url, POLICY, uid=bytes(7))
    # The default policy refuses plain http and loopback: nothing is sent.
    seen = len(issuer.seen)
    with pytest.raises(KeyExchangeError, match="refused"):
        fetch_keys(url, UrlPolicy(), uid=bytes(7))
    assert len(issuer.seen) == seen


def test_fetch_follows_no_redirect_and_names_an_unreachable_issuer(issuer: IssuerServer
                                                                   ) -> None:
    url = f"http://127.0.0.1:{issuer.port}/new"
    issuer.answer, issuer.headers = (307, LNBITS), {"Location": "/new"}  # would POST again
    with pytest.raises(KeyExchangeError, match="redirect"):
        fetch_keys(url, POLICY, uid=bytes(7))
    assert len(issuer.seen) == 1
    issuer.server.stop()  # nothing listens any more
    with pytest.raises(KeyExchangeError) as info:
        fetch_keys(url, POLICY, uid=bytes(7))
    assert str(info.value).startswith("cannot reach issuer 127.0.0.1 (")
    assert "/new" not in str(info.value)


def test_fetch_refuses_a_huge_answer(issuer: IssuerServer) -> None:
    issuer.answer = (200, {"pad": "x" * 70_000, **LNBITS})
    with pytest.raises(KeyExchangeError, match="far too large"):
        fetch_keys(f"http://127.0.0.1:{issuer.port}/new", POLICY, uid=bytes(7))


# --- refusals as the issuers send them -----------------------------------------------------------

# (HTTP status, body) exactly as LNbits (FastAPI) and BTCPay (Greenfield) answer, and the words the
# terminal shows.
REFUSALS = [
    (404, {"detail": "Card does not exist."},  # LNbits: stale one-time code or unknown UID
     "issuer refused: Card does not exist. (HTTP 404)"),
    (400, {"detail": "Missing UID."}, "issuer refused: Missing UID. (HTTP 400)"),
    (422, {"detail": [{"type": "missing", "loc": ["query", "a"], "msg": "Field required",
                       "input": None}]},  # FastAPI validation: the deeplink lost its `a=`
     "issuer refused: query.a: Field required (HTTP 422)"),
    (200, {"status": "ERROR", "reason": "Card UID mis-match."},
     "issuer refused: Card UID mis-match."),
    (404, {"code": "pullpayment-not-found", "message": "The pull payment was not found"},
     "issuer refused: The pull payment was not found (HTTP 404)"),
    (422, [{"path": "UID", "message": "The UID is required and should be 7 bytes"}],
     "issuer refused: UID: The UID is required and should be 7 bytes (HTTP 422)"),
    (400, {"code": "lnurl-not-supported", "message": "This pull payment currency should be BTC "
           "or SATS and accept lightning"},
     "issuer refused: This pull payment currency should be BTC or SATS and accept lightning "
     "(HTTP 400)"),
    (403, {"message": "Forbidden\x1b[31m\nnow"}, "issuer refused: Forbidden now (HTTP 403)"),
    (500, {"oops": 1}, "issuer answered HTTP 500"),
    (200, {"message": "card already programmed"}, "issuer refused: card already programmed"),
]


@pytest.mark.parametrize(("status", "body", "shown"), REFUSALS)
def test_refusals_show_the_issuers_reason(issuer: IssuerServer, status: int, body: object,
                                          shown: str) -> None:
    issuer.answer = (status, body)
    with pytest.raises(KeyExchangeError) as info:
        fetch_keys(f"http://127.0.0.1:{issuer.port}/new", POLICY, uid=bytes(7))
    assert str(info.value) == shown
    assert ".." not in str(info.value)


# --- the URL written to a card -----------------------------------------------------------------


@pytest.mark.parametrize(("given_url", "written"), [
    ("LNURLW://LNbits.Example/boltcards/api/v1/scan/x7Kd9Q2mPnWz",
     "lnurlw://lnbits.example/boltcards/api/v1/scan/x7Kd9Q2mPnWz"),
    ("Lnurlw://HOST:8443/Path?Card=AbC#F", "lnurlw://host:8443/Path?Card=AbC#F"),
    ("HTTPS://Issuer.Example", "https://issuer.example"),
    ("lnurlw://[2001:DB8::1]/ln", "lnurlw://[2001:db8::1]/ln"),
])
def test_card_url_lower_cases_scheme_and_host_only(given_url: str, written: str) -> None:
    assert card_url(given_url) == written
    assert parse_issuer_response(dict(BTCPAY, LNURLW=given_url)).lnurlw_base == written


@given(st.sampled_from(["lnurlw", "LNURLW", "LnUrLw", "https"]),
       st.from_regex(r"[A-Za-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True),
       st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs")), max_size=40))
def test_card_url_keeps_path_and_query_as_given(scheme: str, host: str, rest: str) -> None:
    tail = "/" + rest
    assert card_url(f"{scheme}://{host}{tail}") == f"{scheme.lower()}://{host.lower()}{tail}"


def _program(tmp_path: Path, source: object, uid: bytes = bytes.fromhex("04a1b2c3d4e5f6")
             ) -> tuple[SimulatedNtag424, str]:
    """Program a factory card through the real command sequence; the URL it then emits."""
    card = SimulatedNtag424.factory(uid)
    card.power_on()
    program_card(Ntag424(card), source, ProvisioningJournal(tmp_path / "journal.jsonl"))
    return card, Ntag424(card).read_ndef_url()


def test_cards_are_written_with_a_lower_case_scheme_and_host(issuer: IssuerServer,
                                                             tmp_path: Path) -> None:
    issuer.answer = (200, LNBITS)  # "LNURLW_BASE": "LNURLW://lnbits.example/…"
    _, tap = _program(tmp_path / "a", UrlKeySource(f"http://127.0.0.1:{issuer.port}/new", POLICY))
    assert tap.startswith("lnurlw://lnbits.example" + LNBITS_SCAN + "?p=")
    assert verify_tap_url(tap, bytes.fromhex(K[1]), bytes.fromhex(K[2])).valid

    source = IssuerKeySource(bytes(range(16)), url="LNURLW://Shop.Example/Ln?x=A")
    _, tap = _program(tmp_path / "b", source)
    assert tap.startswith("lnurlw://shop.example/Ln?x=A&p=")


# --- BTCPay Server's card registration (the Greenfield fake answers as BTCPay does) -------------

PP_ID = "3dGzDaVRvTmB5ubBC6ykKznAbSy5"
UID = bytes.fromhex("04a1b2c3d4e5f6")


@pytest.fixture
def btcpay() -> Iterator[FakeBTCPay]:
    with FakeBTCPay(pull_payments={PP_ID: "SATS", "UsdPullPayment1234567": "USD"}) as fake:
        yield fake


def _register_url(fake: FakeBTCPay, pp_id: str = PP_ID, on_existing: str = "UpdateVersion"
                  ) -> str:
    """The deeplink BTCPay's pull-payment page shows (UIPullPaymentController)."""
    target = f"{fake.base_url}/api/v1/pull-payments/{pp_id}/boltcards?onExisting={on_existing}"
    action = "program" if on_existing == "UpdateVersion" else "reset"
    return f"boltcard://{action}?url={quote(target, safe='')}"


def test_btcpay_registration_starts_at_version_0_with_btcpays_keys(btcpay: FakeBTCPay) -> None:
    response = fetch_keys(_register_url(btcpay), POLICY, uid=UID)
    assert response.issuer_version == 0  # BTCPay: a new card's keys are derived at version 0
    assert response.keys.version == 1  # what the slots carry, as BTCPay's own programmer writes
    assert response.lnurlw_base == f"lnurlw://{btcpay.base_url.removeprefix('http://')}/boltcard"
    derived = derive_card_keys(btcpay.boltcard_issuer_key, UID, 0, pull_payment_id=PP_ID)
    assert [response.keys.key(n) for n in range(5)] == [
        derived.k0, derived.k1, derived.k2, derived.k3, derived.k4]
    # Not the plain boltcard derivation: the pull-payment id is part of the card key.
    assert response.keys.k2 != derive_card_keys(btcpay.boltcard_issuer_key, UID, 0).k2
    # Programming it again bumps the version (onExisting=UpdateVersion).
    again = fetch_keys(_register_url(btcpay), POLICY, uid=UID)
    assert again.issuer_version == 1 and again.keys.k2 != response.keys.k2


def test_btcpay_reset_link_returns_the_cards_current_keys(btcpay: FakeBTCPay,
                                                          tmp_path: Path) -> None:
    from terminal.adapters.simcards import create_programmed, tap

    keys = fetch_keys(_register_url(btcpay), POLICY, uid=UID).keys
    card = tmp_path / "card.json"
    create_programmed(card, "lnurlw://btcpay.example/boltcard", keys, uid=UID)
    response = fetch_keys(_register_url(btcpay, on_existing="KeepVersion"), POLICY,
                          lnurlw=tap(card))
    assert response.keys == keys


@pytest.mark.parametrize(("case", "shown"), [
    ("unknown-pp", "issuer refused: The pull payment was not found (HTTP 404)"),
    ("usd-pp", "issuer refused: This pull payment currency should be BTC or SATS and accept "
               "lightning (HTTP 400)"),
    ("not-registered", "issuer refused: UID: This card isn't registered (HTTP 422)"),
    ("garbled-tap", "issuer refused: LNURLW: The LNURLW 'p=' parameter cannot be decrypted "
                    "(HTTP 422)"),
])
def test_btcpay_refusals(btcpay: FakeBTCPay, case: str, shown: str) -> None:
    with pytest.raises(KeyExchangeError) as info:
        if case == "unknown-pp":
            fetch_keys(_register_url(btcpay, "NoSuchPullPayment123"), POLICY, uid=UID)
        elif case == "usd-pp":
            fetch_keys(_register_url(btcpay, "UsdPullPayment1234567"), POLICY, uid=UID)
        elif case == "not-registered":
            fetch_keys(_register_url(btcpay, on_existing="KeepVersion"), POLICY, uid=UID)
        else:
            fetch_keys(_register_url(btcpay, on_existing="KeepVersion"), POLICY,
                       lnurlw="lnurlw://x.example/boltcard?p=" + "00" * 16 + "&c=" + "00" * 8)
    assert str(info.value) == shown


def test_btcpay_card_wiped_with_the_issuer_key_and_pull_payment_id(btcpay: FakeBTCPay,
                                                                  tmp_path: Path) -> None:
    """Slots at version 1, keys derived at 0: the source finds the derivation by the tap."""
    from terminal.adapters.simcards import create_programmed
    from terminal.protocols.boltcard.provisioning import wipe_card

    keys = fetch_keys(_register_url(btcpay), POLICY, uid=UID).keys
    path = tmp_path / "card.json"
    card, _ = create_programmed(path, "lnurlw://btcpay.example/boltcard", keys, uid=UID)
    assert [k.version for k in card.state.keys] == [1] * 5
    source = IssuerKeySource(btcpay.boltcard_issuer_key, pull_payment_id=PP_ID)
    card = SimulatedNtag424.load(path)
    card.power_on()
    wipe_card(Ntag424(card), source, ProvisioningJournal(tmp_path / "j.jsonl"))
    assert [k.version for k in card.state.keys] == [0] * 5
    assert all(k.value == bytes(16) for k in card.state.keys)


def test_btcpay_blank_card_programmed_from_the_issuer_key(btcpay: FakeBTCPay,
                                                          tmp_path: Path) -> None:
    source = IssuerKeySource(btcpay.boltcard_issuer_key, url="lnurlw://btcpay.example/boltcard",
                             pull_payment_id=PP_ID)
    card, tap = _program(tmp_path, source, UID)
    expected = btcpay.card_keys(UID, 0, PP_ID)  # BTCPay's derivation, version 0
    assert [k.value for k in card.state.keys] == [expected[f"K{n}"] for n in range(5)]
    assert [k.version for k in card.state.keys] == [1] * 5
    assert verify_tap_url(tap, expected["K1"], expected["K2"]).valid
