"""Issue 9, item 1: an issuer that answers the callback with ERROR (or garbage, an HTTP error, or
nothing) may be paying anyway. The terminal never reports `failed` while the invoice can still
be paid: it watches the invoice a few seconds, then answers `paid` or "not confirmed — do not
charge again" (`unconfirmed`), and `sync` settles the sale by its invoice later.

Real parts: the sandbox's Flash GraphQL on 127.0.0.1 (the invoices and their payments), a hostile
LNURL issuer on 127.0.0.2 (`tests/fakes/lnurl_issuer.py`, an issuer this terminal has no keys
for, so taps go online as they come), the ledger on disk, the CLI in process.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from helpers.unclaimed_issuer import ISSUER_HOST, tap_url, write_config

from terminal.app.cli import main
from terminal.app.cli.exits import EXIT_NOT_PAID, EXIT_OK
from terminal.sandbox.server import SandboxThread
from tests.fakes.lnurl_issuer import Issuer


class Clock:
    def __init__(self) -> None:
        import time

        self._time = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._time() + self.offset


@pytest.fixture(scope="module")
def sandbox_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, sandbox_clock):
    with SandboxThread(tmp_path_factory.mktemp("sandbox"), clock=sandbox_clock) as sb:
        yield sb


@pytest.fixture(scope="module")
def issuer():
    fake = Issuer(host=ISSUER_HOST).start()
    yield fake
    fake.stop()


@pytest.fixture
def hostile(issuer):
    issuer.reset()
    yield issuer
    issuer.reset()


@pytest.fixture
def config(sandbox, tmp_path) -> Path:
    # A short confirmation window keeps the tests quick; the default is 5 s.
    return write_config(sandbox, tmp_path / "terminal.toml", lnurl="confirm_timeout_s = 2.0")


def charge(capsys, config: Path, *args: str) -> tuple[int, dict, str]:
    code = main(["charge", "100", "--currency", "SAT", "--config", str(config), "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def sync(capsys, config: Path) -> tuple[int, dict]:
    code = main(["sync", "--config", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def history(capsys, config: Path) -> list[dict]:
    assert main(["history", "--config", str(config), "--export", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def sent_invoice(issuer: Issuer) -> str:
    [callback] = [s for s in issuer.seen if s.path == "/cb"]
    return parse_qs(callback.raw_query)["pr"][0]


def pays(sandbox: SandboxThread, *, after_s: float = 0.0):
    """An issuer that pays the invoice it was sent (at once, or a moment later)."""
    def on_callback(query: dict[str, str]) -> None:
        if after_s:
            threading.Timer(after_s, sandbox.pay_invoice, args=(query["pr"],)).start()
        else:
            sandbox.pay_invoice(query["pr"])

    return on_callback


ERROR = {"status": "ERROR", "reason": "Payment failed - Insufficient balance."}


@pytest.mark.parametrize("http_status", [200, 400])  # LNbits answers 200, BTCPay 400
def test_error_answer_but_paid_at_once_is_paid(sandbox, hostile, config, capsys, http_status):
    hostile.callback_answer = (http_status, ERROR)
    hostile.on_callback = pays(sandbox)
    code, result, err = charge(capsys, config, "--tap", tap_url(hostile))
    assert result["status"] == "paid", result
    assert code == EXIT_OK
    assert "Traceback" not in err


def test_error_answer_paid_a_moment_later_is_paid(sandbox, hostile, config, capsys):
    hostile.callback_answer = (200, ERROR)
    hostile.on_callback = pays(sandbox, after_s=1.0)  # inside the 2 s confirmation window
    code, result, _ = charge(capsys, config, "--tap", tap_url(hostile))
    assert (code, result["status"]) == (EXIT_OK, "paid"), result


def test_error_answer_paid_after_the_window_is_unconfirmed_then_sync_finds_it(
    sandbox, hostile, config, capsys
):
    hostile.callback_answer = (200, ERROR)
    code, result, _ = charge(capsys, config, "--tap", tap_url(hostile))
    # Not "failed": the cashier must not ask the customer to pay again.
    assert result["status"] == "unconfirmed", result
    assert code == EXIT_NOT_PAID
    assert result["reason"] == "insufficient-balance"
    assert "do not charge again" in result["message"].lower()
    sale_id = result["sale_id"]

    sandbox.pay_invoice(sent_invoice(hostile))  # the issuer's payment lands after all
    code, report = sync(capsys, config)
    assert code == EXIT_OK
    assert {"sale_id": sale_id, "status": "paid"}.items() <= next(
        s for s in report["sales"] if s["sale_id"] == sale_id).items()
    [sale] = [s for s in history(capsys, config) if s["id"] == sale_id]
    assert sale["state"] == "paid" and sale["method"] == "card"
    assert [h["to_state"] for h in sale["history"]][-3:] == ["callback_sent", "unconfirmed",
                                                            "paid"]


def test_error_answer_and_no_payment_ends_expired_not_failed(
    sandbox, sandbox_clock, hostile, config, capsys
):
    hostile.callback_answer = (200, {"status": "ERROR", "reason": "Card is disabled."})
    code, result, _ = charge(capsys, config, "--tap", tap_url(hostile))
    assert (code, result["status"], result["reason"]) == (EXIT_NOT_PAID, "unconfirmed",
                                                          "card-disabled")
    code, _ = sync(capsys, config)  # the invoice is still open: nothing changes
    [sale] = [s for s in history(capsys, config) if s["id"] == result["sale_id"]]
    assert sale["state"] == "unconfirmed"

    sandbox_clock.offset += 3600  # the invoice expires unpaid, as the backend says
    sync(capsys, config)
    [sale] = [s for s in history(capsys, config) if s["id"] == result["sale_id"]]
    assert sale["state"] == "expired"
    assert sale["reason"] == "card-disabled"  # the issuer's word is kept as the reason


@pytest.mark.parametrize("answer", [
    (502, b"<html>Bad Gateway</html>"),  # a proxy's page
    (200, {"status": "PENDING"}),  # not LNURL
    (500, {"unexpected": True}),
])
def test_garbage_or_http_error_after_the_callback_is_never_failed(
    sandbox, hostile, config, capsys, answer
):
    hostile.callback_answer = answer
    hostile.on_callback = pays(sandbox, after_s=0.5)
    code, result, err = charge(capsys, config, "--tap", tap_url(hostile), "--timeout", "20")
    assert (code, result["status"]) == (EXIT_OK, "paid"), result
    assert "Traceback" not in err


def test_garbage_and_no_payment_within_the_timeout_is_pending_not_failed(
    sandbox, hostile, config, capsys
):
    hostile.callback_answer = (502, b"<html>Bad Gateway</html>")
    code, result, _ = charge(capsys, config, "--tap", tap_url(hostile), "--timeout", "3")
    assert code == EXIT_NOT_PAID
    assert result["status"] == "pending"
    assert "do not charge again" in result["message"].lower()
    sandbox.pay_invoice(sent_invoice(hostile))
    sync(capsys, config)
    [sale] = [s for s in history(capsys, config) if s["id"] == result["sale_id"]]
    assert sale["state"] == "paid"


def test_an_issuer_that_never_answers_is_bounded_by_timeout(sandbox, hostile, config, capsys):
    """`--timeout` bounds the whole command: the callback's own deadline (23 s here) is not
    added to it. The sale stays open (pending): the issuer may still pay."""
    import time

    hostile.callback_hangs = True
    started = time.monotonic()
    code, result, err = charge(capsys, config, "--tap", tap_url(hostile), "--timeout", "2")
    elapsed = time.monotonic() - started
    hostile._release.set()
    assert (code, result["status"]) == (EXIT_NOT_PAID, "pending"), result
    assert elapsed < 2 + 3, f"charge --timeout 2 took {elapsed:.1f} s"
    assert "Traceback" not in err


def test_an_unconfirmed_sale_takes_the_card_again_on_the_same_invoice(
    sandbox, hostile, config, capsys
):
    """A wrong PIN (or any refusal) after the callback leaves the sale open: the card tapped
    again pays the SAME invoice, which is paid at most once, so nothing is charged twice even if
    the first attempt pays after all. The sale is never failed on the way."""
    import asyncio

    from terminal.app.config import load_config
    from terminal.app.root import build_terminal

    async def scenario():
        terminal = build_terminal(load_config(config))
        terminal.checkout.confirm_timeout_s = 0.2
        try:
            session = await terminal.checkout.open_sale(100, "SAT")
            hostile.callback_answer = (200, {"status": "ERROR", "reason": "Wrong PIN"})
            first = await session.tap(tap_url(hostile))
            refused_fail = session.fail("given-up")  # a payment left: only the invoice ends it
            hostile.callback_answer = (200, {"status": "OK"})
            hostile.on_callback = pays(sandbox)
            second = await session.tap(tap_url(hostile))
            outcome = await session.wait_settled(10)
            return first, refused_fail, second, outcome, session.record
        finally:
            await terminal.aclose()

    first, refused_fail, second, outcome, record = asyncio.run(scenario())
    assert first.kind == "unconfirmed" and first.code == "wrong-pin"
    assert "Wrong PIN" in first.message and "do not charge again" in first.message.lower()
    assert refused_fail is False
    assert second.kind == "accepted"
    assert outcome.status == "paid"
    invoices = [parse_qs(s.raw_query)["pr"][0] for s in hostile.seen if s.path == "/cb"]
    assert len(invoices) == 2 and invoices[0] == invoices[1] == record.bolt11
    assert [h.to_state for h in record.history][-5:] == [
        "unconfirmed", "card_read", "withdraw_requested", "callback_sent", "paid"]


def test_a_cancelled_unconfirmed_sale_still_counts_its_late_payment(sandbox, hostile, config):
    import asyncio

    from terminal.app.config import load_config
    from terminal.app.root import build_terminal

    hostile.callback_answer = (200, ERROR)

    async def scenario():
        terminal = build_terminal(load_config(config))
        terminal.checkout.confirm_timeout_s = 0.2
        try:
            session = await terminal.checkout.open_sale(100, "SAT")
            first = await session.tap(tap_url(hostile))
            cancelled = await session.cancel()  # the merchant gives up…
            sandbox.pay_invoice(session.invoice.bolt11)  # …and the money arrives anyway
            await terminal.checkout.recover()
            return first, cancelled, terminal.ledger.get_sale(session.record.id)
        finally:
            await terminal.aclose()

    first, cancelled, record = asyncio.run(scenario())
    assert first.kind == "unconfirmed" and cancelled
    assert record.state == "paid"
    assert [h.to_state for h in record.history][-3:] == ["unconfirmed", "cancelled", "paid"]
