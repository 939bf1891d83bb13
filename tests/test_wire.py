"""The aiohttp layer under the payout path's clients (terminal.adapters.wire): sessions made on
the running loop, the one "was it sent?" classification, bodies read under a cap. Real sockets
on loopback throughout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import warnings
from collections.abc import Iterator

import aiohttp
import pytest

from terminal.adapters.wire import BodyTooLarge, LoopSession, never_sent, read_capped
from terminal.adapters.withdraw import WithdrawClient
from terminal.protocols.lnurl import UrlPolicy
from tests.fakes.lnurl_issuer import Issuer

LOOPBACK_NAMES = frozenset({"127.0.0.1"})
LOOPBACK = UrlPolicy(allow_insecure_hosts=LOOPBACK_NAMES, allow_private_hosts=LOOPBACK_NAMES)


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    running = Issuer().start()
    yield running
    running.stop()


class HangUpServer:
    """Accepts, reads a request's first bytes, then closes without a word: the request reached
    the server, so whoever sent it cannot know whether it was acted on."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.sock.accept()
            with conn:
                if conn.recv(65536):
                    self.received.set()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _failure(url: str) -> BaseException:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(url, data=b"{}"):
                pass
        except (aiohttp.ClientError, OSError) as exc:
            return exc
    raise AssertionError("the request did not fail")


def test_a_refused_connection_was_never_sent() -> None:
    exc = asyncio.run(_failure(f"http://127.0.0.1:{_unused_port()}/graphql"))
    assert never_sent(exc), type(exc)


def test_a_request_the_server_hung_up_on_may_have_been_sent() -> None:
    server = HangUpServer()
    try:
        exc = asyncio.run(_failure(f"http://127.0.0.1:{server.port}/graphql"))
        assert server.received.wait(5)  # it did arrive: resending could do it twice
    finally:
        server.close()
    assert not never_sent(exc), type(exc)


@pytest.mark.parametrize("declare", ["0", "1"])
def test_a_body_over_the_cap_is_cut_whether_declared_or_not(issuer: Issuer, declare: str
                                                            ) -> None:
    async def read() -> BodyTooLarge:
        url = issuer.card_url("/huge", f"declare={declare}")
        async with (aiohttp.ClientSession(auto_decompress=False) as session,
                    session.get(url) as response):
            with pytest.raises(BodyTooLarge) as info:
                await read_capped(response, 64 * 1024)
            assert response.closed or response.connection is None  # dropped, not drained
            return info.value

    error = asyncio.run(read())
    assert error.cap == 64 * 1024
    assert (error.declared is not None) == (declare == "1")


def test_a_body_exactly_at_the_cap_is_read_whole(issuer: Issuer) -> None:
    async def read(cap_delta: int) -> bytes:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.get(issuer.card_url()) as first:
                size = len(await first.read())
            async with session.get(issuer.card_url()) as response:
                return await read_capped(response, size + cap_delta)

    body = asyncio.run(read(0))
    assert body.startswith(b"{") and body.endswith(b"}")
    with pytest.raises(BodyTooLarge):
        asyncio.run(read(-1))


def test_a_session_per_running_loop_made_on_first_use() -> None:
    made: list[aiohttp.ClientSession] = []

    def factory() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession())
        return made[-1]

    sessions = LoopSession(factory)
    assert made == []  # nothing made without a loop: the composition root runs before one

    async def twice() -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        return sessions.get(), sessions.get()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, again = asyncio.run(twice())
        assert first is again
        second, _ = asyncio.run(twice())  # the next command's loop
        assert second is not first
        assert first.closed  # the dead loop's session was let go, not left to warn
        asyncio.run(sessions.aclose())
        assert second.closed
        assert len(made) == 2
        del first, again, second, made[:]
        gc.collect()
    assert [str(w.message) for w in caught if "client session" in str(w.message)] == []


def test_a_client_built_before_any_loop_serves_one_command_after_another(issuer: Issuer) -> None:
    # The command line runs one event loop per command; the kiosk one for its life. The same
    # client object must work in each, with no connection carried across loops.
    issuer.reset()
    client = WithdrawClient(LOOPBACK)
    first = asyncio.run(client.fetch_request(issuer.card_url()))
    second = asyncio.run(client.fetch_request(issuer.card_url()))
    asyncio.run(client.aclose())
    assert first.k1 and second.k1
    assert [seen.path for seen in issuer.seen] == ["/scan", "/scan"]
    assert client.stats.connections_opened == 2  # a fresh connection on the second loop
    assert client.stats.requests_sent == 2
