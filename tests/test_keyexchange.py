"""Issuer key-exchange responses, key files, deeplinks, and a fetch from a loopback issuer."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from terminal.adapters.keyexchange import (
    Action,
    KeyExchangeError,
    fetch_keys,
    load_keys_file,
    parse_deeplink,
    parse_issuer_response,
)
from terminal.protocols.lnurl import UrlPolicy

K = [f"{n}{n}" * 16 for n in range(5)]
BOLTCARD_SERVICE = {
    "protocol_name": "create_bolt_card_response", "protocol_version": 2, "card_name": "Alice",
    "lnurlw_base": "lnurlw://card.example/ln", "k0": K[0], "k1": K[1], "k2": K[2], "k3": K[3],
    "k4": K[4], "uid_privacy": "Y",
}
LNBITS = {"CARD_NAME": "Bob", "LNURLW_BASE": "lnurlw://lnbits.example/boltcards/api/v1/scan/x",
          "K0": K[0], "K1": K[1], "K2": K[2], "K3": K[3], "K4": K[4], "ID": "1"}
BTCPAY = {"LNURLW": "lnurlw://btcpay.example/boltcard", "version": 2, "K0": K[0], "K1": K[1],
          "K2": K[2], "K3": K[3], "K4": K[4]}
WIPE = {"action": "wipe", "k0": K[0], "k1": K[1], "k2": K[2], "k3": K[3], "k4": K[4],
        "uid": "04a1b2c3d4e5f6", "version": 1}


def case_variant(draw_bits: list[bool], text: str) -> str:
    return "".join(c.upper() if b else c.lower() for c, b in zip(text, draw_bits, strict=False))


@pytest.mark.parametrize(("payload", "url", "version", "action"), [
    (BOLTCARD_SERVICE, "lnurlw://card.example/ln", 1, Action.PROGRAM),
    (LNBITS, LNBITS["LNURLW_BASE"], 1, Action.PROGRAM),
    (BTCPAY, "lnurlw://btcpay.example/boltcard", 2, Action.PROGRAM),
    (WIPE, None, 1, Action.WIPE),
], ids=["boltcard", "lnbits", "btcpay", "wipe"])
def test_each_issuer_format(payload, url, version, action) -> None:
    parsed = parse_issuer_response(payload)
    assert [parsed.keys.key(n).hex() for n in range(5)] == K
    assert parsed.lnurlw_base == url and parsed.keys.version == version
    assert parsed.action is action
    assert (parsed.uid == bytes.fromhex("04a1b2c3d4e5f6")) is (payload is WIPE)
    for key in K:
        assert key not in repr(parsed)


@given(st.sampled_from([BOLTCARD_SERVICE, LNBITS, BTCPAY, WIPE]),
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
    path.write_text(json.dumps(BTCPAY))
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
        app = Starlette(routes=[Route("/new", self._new, methods=["POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # connections queue in the backlog until uvicorn serves: no start wait
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)

    async def _new(self, request: Request) -> JSONResponse:
        self.seen.append(await request.json())
        status, body = self.answer
        return JSONResponse(body, status_code=status)

    def __enter__(self) -> IssuerServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self._sock.close()


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
        assert response.lnurlw_base == LNBITS["LNURLW_BASE"]
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
