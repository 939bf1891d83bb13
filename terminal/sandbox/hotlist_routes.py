"""The sandbox issuer's hotlist: its disabled cards in the terminal's hotlist format (version 1,
`terminal.protocols.hotlist`), as an issuer publishing an exception list would serve it.

`GET /hotlist.json` → `{"version": 1, "cards": [{"card_id", "reason"}]}`: every card the issuer
has disabled (`POST /sandbox/cards/{card_id}` with `{"enabled": false}`), named by card id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

DISABLED_REASON = "Card is disabled by its issuer"


async def hotlist(request: Request) -> Response:
    core = request.app.state.core
    cards = [{"card_id": card.card_id, "reason": DISABLED_REASON}
             for card in core.state.cards.values() if not card.enabled]
    return JSONResponse({"version": 1, "cards": sorted(cards, key=lambda c: c["card_id"])})
