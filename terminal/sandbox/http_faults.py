"""Latency and gateway failures applied at the front of every sandbox HTTP route."""

from __future__ import annotations

import asyncio

from starlette.responses import HTMLResponse, Response

from .faults import Faults

GATEWAY_PAGE = "<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"


async def apply_http_faults(faults: Faults, route: str) -> Response | None:
    """Sleep the configured latency; return a gateway error page when one is due."""
    delay = faults.latency_for(route)
    if delay > 0:
        await asyncio.sleep(delay)
    if faults.take("server_error_next", route):
        status = faults.server_error_status
        return HTMLResponse(GATEWAY_PAGE.format(status=status), status_code=status)
    return None
