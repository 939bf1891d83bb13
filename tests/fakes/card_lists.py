"""Lists of blocked cards, served for real over HTTP on loopback (uvicorn thread).

- `GET /hotlist.json`: a merchant's or issuer's hotlist in the terminal's format (version 1), as
  the test sets it (`hotlist`), or any status and body (`hotlist_answer`).
- `GET /boltcards/api/v1/cards`: LNbits boltcards' card list exactly as LNbits 1.6.2 with the
  boltcards extension 1.1.x answers it (`payments-interop.md` §6; lnbits/boltcards `views_api.py`
  and `models.Card`, lnbits `decorators.KeyChecker`): the wallet's key in `X-Api-Key` (or the
  `api-key` query parameter); no key → 401 `{"detail": "No Api Key provided."}`; a key of no
  wallet → 404 `{"detail": "Wallet not found."}`; the invoice or admin key → 200 and a JSON list
  of the wallet's cards, every field of `Card` (keys included, uid in upper case as LNbits stores
  it, `time` as ISO text).

Every request is counted; `wait_requests(path, n)` waits (on a condition, no polling) until `n`
requests reached `path`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from helpers.loopback import LoopbackServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CARDS_PATH = "/boltcards/api/v1/cards"
HOTLIST_PATH = "/hotlist.json"
ZERO_KEY = "00000000000000000000000000000000"


@dataclass
class LnbitsCard:
    uid: str
    card_name: str = "card"
    enable: bool = True
    tx_limit: int = 0
    daily_limit: int = 0
    counter: int = 0
    id: str = field(default_factory=lambda: secrets.token_urlsafe(16)[:22].upper())
    k0: str = field(default_factory=lambda: secrets.token_hex(16))
    k1: str = field(default_factory=lambda: secrets.token_hex(16))
    k2: str = field(default_factory=lambda: secrets.token_hex(16))

    def as_lnbits(self, wallet: str) -> dict[str, Any]:
        """`boltcards.models.Card` as FastAPI serialises it."""
        return {
            "id": self.id, "wallet": wallet, "card_name": self.card_name,
            "uid": self.uid.upper(), "external_id": secrets.token_hex(8).lower(),
            "counter": self.counter, "tx_limit": self.tx_limit, "daily_limit": self.daily_limit,
            "enable": self.enable, "k0": self.k0, "k1": self.k1, "k2": self.k2,
            "prev_k0": ZERO_KEY, "prev_k1": ZERO_KEY, "prev_k2": ZERO_KEY,
            "otp": secrets.token_hex(16), "time": dt.datetime(2025, 5, 1, 10, 0).isoformat(),
        }


@dataclass
class CardLists:
    host: str = "127.0.0.1"
    wallet: str = "7b5f0d0c1c3e4f2a8b9c0d1e2f3a4b5c"
    invoice_key: str = field(default_factory=lambda: secrets.token_hex(16))
    admin_key: str = field(default_factory=lambda: secrets.token_hex(16))
    hotlist: dict[str, Any] = field(default_factory=lambda: {"version": 1, "cards": []})
    hotlist_answer: tuple[int, bytes] | None = None  # (status, raw body) instead of `hotlist`
    cards: list[LnbitsCard] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    keys_seen: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._seen = threading.Condition()
        app = Starlette(routes=[Route(HOTLIST_PATH, self._hotlist),
                                Route(CARDS_PATH, self._cards)])
        self._server = LoopbackServer(app, host=self.host, name="card-lists")
        self.port = self._server.port  # listening already: no start-up wait needed

    def start(self) -> CardLists:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> CardLists:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def wait_requests(self, path: str, count: int, timeout: float = 10.0) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: self.requests.get(path, 0) >= count, timeout)

    def _count(self, request: Request) -> None:
        with self._seen:
            self.requests[request.url.path] = self.requests.get(request.url.path, 0) + 1
            self._seen.notify_all()

    def set_hotlist(self, doc: dict[str, Any]) -> int:
        """Serve `doc` from now on; returns how many fetches came before (every later fetch,
        and only those, gets `doc`)."""
        with self._seen:
            self.hotlist = doc
            return self.requests.get(HOTLIST_PATH, 0)

    async def _hotlist(self, request: Request) -> Response:
        with self._seen:  # the content and the count change together (see set_hotlist)
            answer, doc = self.hotlist_answer, self.hotlist
            self.requests[HOTLIST_PATH] = self.requests.get(HOTLIST_PATH, 0) + 1
            self._seen.notify_all()
        if answer is not None:
            status, body = answer
            return Response(body, status_code=status, media_type="application/json")
        return JSONResponse(doc)

    async def _cards(self, request: Request) -> Response:
        try:
            key = request.headers.get("x-api-key") or request.query_params.get("api-key")
            self.keys_seen.append(key)
            if not key:
                return JSONResponse({"detail": "No Api Key provided."}, status_code=401)
            if key not in (self.invoice_key, self.admin_key):
                return JSONResponse({"detail": "Wallet not found."}, status_code=404)
            return JSONResponse([c.as_lnbits(self.wallet) for c in self.cards])
        finally:
            self._count(request)
