"""Flash's GraphQL endpoint (`JsonEndpoint`) on the wire: a redirect is the caller's answer,
never followed (a 307 would post the mutation again, with its X-API-KEY, wherever it points)."""

from __future__ import annotations

import asyncio

from helpers.edge_http import edge, reply

from terminal.adapters.backends.json_endpoint import JsonEndpoint

KEY = "fk_SECRET-0123456789"


def test_a_redirect_is_answered_not_followed() -> None:
    async def scenario() -> None:
        async with (edge(reply(200, b'{"data": {}}')) as elsewhere,
                    edge(reply(307, b"", f"Location: {elsewhere.url}/graphql")) as flash):
            endpoint = JsonEndpoint(f"{flash.url}/graphql", service="Flash", timeout_s=5.0)
            try:
                answer = await endpoint.post(b'{"query": "mutation"}', {"X-API-KEY": KEY})
            finally:
                await endpoint.aclose()
        assert answer.status_code == 307
        assert [s.target for s in flash.seen] == ["/graphql"]
        assert elsewhere.seen == []  # neither the mutation nor the key went there

    asyncio.run(asyncio.wait_for(scenario(), 20))
