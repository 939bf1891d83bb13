"""View-model tests: every screen's logic without Kivy (keypad, tip, countdown, states, PIN)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.app.ui import strings
from terminal.app.ui.viewmodels import (
    AdminLock,
    AmountEntry,
    Attempt,
    HistoryViewModel,
    ListSource,
    PayPhase,
    PayViewModel,
    ResultInfo,
    ResultViewModel,
    SaleStep,
    SaleViewModel,
    TipChoice,
    TipSettings,
    hash_pin,
    tip_minor,
)
from terminal.app.ui.viewmodels.admin import mask_key
from terminal.app.ui.viewmodels.pay import PayInvoice
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.app.ui.viewmodels.tones import Tone
from terminal.core.money import JMD, SAT, USD, Money, RatePolicy, currency
from terminal.core.pins import verify_pin
from terminal.core.records import SaleRecord


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Rate:
    def __init__(self, code: str, minor_per_sat: str, ts: float) -> None:
        self.currency, self.minor_per_sat = code, Decimal(minor_per_sat)
        self.fraction_digits, self.timestamp = 2, ts


# --------------------------------------------------------------------------- keypad


def test_keypad_decimals_follow_the_currency() -> None:
    usd = AmountEntry(USD, 1_000_000)
    assert usd.type("12.50")
    assert usd.minor == 1250 and usd.display == "$12.50"
    assert not usd.press("1")  # a third decimal is refused
    assert usd.minor == 1250
    sats = AmountEntry(SAT, 10_000_000)
    assert not sats.press(".")  # no minor unit
    assert sats.type("2100") and sats.minor == 2100 and sats.display == "2,100 sats"
    jpy = AmountEntry(currency("JPY"), 10_000)
    assert not jpy.press(".")


def test_keypad_leading_zeros_and_point() -> None:
    e = AmountEntry(JMD, 10_000_000)
    assert e.press("0") and not e.press("0")  # one leading zero only
    assert e.press("5") and e.text == "5"  # replaced by the next digit
    e.press("clear")
    assert e.press(".") and e.text == "0."  # a point first means 0.
    assert not e.press(".")  # one point
    assert e.type("05") and e.minor == 5 and e.display == "J$0.05"
    e.press("back"), e.press("back")
    assert e.text == "0." and e.press("back") and e.text == ""


def test_keypad_refuses_keys_past_the_maximum() -> None:
    e = AmountEntry(USD, 10_000)  # $100.00
    assert e.type("100")
    assert not e.press("0")  # $1000 > max
    assert e.minor == 10_000
    assert e.press(".") and e.press("0") and not e.press("1")  # $100.01 > max


@given(st.lists(st.sampled_from(list("0123456789.") + ["back", "clear", "00"]), max_size=30),
       st.sampled_from([USD, JMD, SAT]), st.integers(1, 10**9))
def test_keypad_invariants(keys: list[str], cur, max_minor: int) -> None:
    e = AmountEntry(cur, max_minor)
    for k in keys:
        before = e.text
        if not e.press(k):
            assert e.text == before  # a refused key changes nothing
        assert 0 <= e.minor <= max_minor
        assert not (len(e.text) > 1 and e.text.startswith("0") and e.text[1] != ".")
        if "." in e.text:
            assert len(e.text.split(".")[1]) <= cur.fraction_digits
    assert Money.from_major(e.text.rstrip(".") or "0", cur).minor == e.minor


# --------------------------------------------------------------------------- tip


def test_tip_maths_rounds_half_up_to_the_minor_unit() -> None:
    assert tip_minor(1000, 15) == 150
    assert tip_minor(333, 15) == 50  # 49.95 -> 50
    assert tip_minor(330, 15) == 50  # 49.5 -> 50
    assert tip_minor(329, 15) == 49  # 49.35 -> 49
    assert tip_minor(0, 20) == 0
    assert TipChoice(custom_minor=275).tip(1000) == 275
    with pytest.raises(ValueError):
        tip_minor(-1, 10)


@given(st.integers(0, 10**10), st.integers(0, 100))
def test_tip_is_within_half_a_minor_unit(amount: int, percent: int) -> None:
    assert abs(tip_minor(amount, percent) * 100 - amount * percent) <= 50


# --------------------------------------------------------------------------- sale


def _rates(clock: Clock) -> RatePolicy:
    rates = RatePolicy(max_age_s=600)
    rates.accept(Rate("USD", "0.095", clock.now), now=clock.now)
    return rates


def test_sale_shows_sats_and_rate_age_and_charges() -> None:
    clock = Clock()
    vm = SaleViewModel(_rates(clock), ("USD", "SAT"), clock=clock)
    assert not vm.can_charge and vm.next() is None
    vm.entry.type("5")
    assert vm.sats_text == "≈ 5,264 sats"  # 500 / 0.095 rounded up
    assert vm.rate_age_text == "rate just now"
    clock.now += 150
    assert vm.rate_age_text == "rate 2 min old"
    vm.set_memo("coffee")
    request = vm.next()
    assert request is not None
    assert (request.amount_minor, request.currency, request.memo) == (500, "USD", "coffee")


def test_sale_refuses_a_stale_or_missing_rate() -> None:
    clock = Clock()
    vm = SaleViewModel(_rates(clock), ("USD", "SAT"), clock=clock)
    vm.entry.type("5")
    clock.now += 601
    assert not vm.can_charge and "old" in (vm.rate_problem or "")
    assert vm.sats_text == strings.t("sale.no_rate")
    assert vm.switch_currency() == "SAT"  # sats need no rate
    assert vm.amount_text == "0 sats"  # switching clears the amount
    vm.entry.type("2100")
    assert vm.can_charge and vm.next().amount_minor == 2100
    empty = SaleViewModel(RatePolicy(), ("JMD",), clock=clock)
    empty.entry.type("100")
    assert not empty.can_charge and "no exchange rate" in empty.rate_problem


def test_sale_tip_step() -> None:
    clock = Clock()
    vm = SaleViewModel(_rates(clock), ("USD",), tips=TipSettings(enabled=True), clock=clock)
    vm.entry.type("20")
    assert vm.next() is None and vm.step is SaleStep.TIP
    labels = [label for label, _ in vm.tip_options]
    assert labels == ["No tip", "10%", "15%", "20%"]
    assert vm.tip_line(TipChoice(percent=15)) == "Tip $3.00 · Total $23.00"
    request = vm.choose_tip(TipChoice(percent=15))
    assert request.amount_minor == 2300 and request.tip_minor == 300
    vm.back_to_amount()
    assert vm.step is SaleStep.AMOUNT and vm.request().amount_minor == 2000


# --------------------------------------------------------------------------- pay


def test_pay_countdown_qr_and_expiry() -> None:
    clock = Clock()
    vm = PayViewModel(clock)
    vm.reset(Money(500, USD))
    assert vm.phase is PayPhase.CREATING and vm.qr_data is None and vm.tone is Tone.BUSY
    vm.invoice_ready(PayInvoice("lnbcrt52640n1xyz", 5_264_000, clock.now + 125))
    assert vm.qr_data == "LNBCRT52640N1XYZ"  # uppercase: QR alphanumeric mode
    assert vm.countdown_text == "Expires in 2:05"
    assert vm.sats_text == "5,264 sats" and vm.amount_text == "$5.00"
    clock.now += 124.5
    assert vm.countdown_text == "Expires in 0:01"  # rounds up: never shows 0 while valid
    clock.now += 1
    vm.tick()
    assert vm.phase is PayPhase.EXPIRED and vm.tone is Tone.ERROR
    assert vm.countdown_text == "Invoice expired"


def test_pay_offline_and_pin_pad() -> None:
    vm = PayViewModel(Clock())
    vm.reset(Money(500, USD))
    vm.invoice_ready(None)
    assert vm.phase is PayPhase.OFFLINE and vm.tone is Tone.WARNING and vm.qr_data is None
    vm.set_phase(PayPhase.PIN)
    assert vm.show_pin_pad and vm.pin_title == "Card PIN for $5.00"
    for d in "123":
        vm.pin.press(d)
    assert not vm.pin.complete and vm.pin.masked == "•••"
    vm.pin.press("4")
    assert vm.pin.complete and "1234" not in repr(vm.pin)
    for d in "56789":
        vm.pin.press(d)
    assert vm.pin.masked == "•" * 8  # at most 8 digits
    assert vm.pin.take() == "12345678" and vm.pin.masked == ""
    vm.set_phase(PayPhase.CONFIRMING)
    assert not vm.can_cancel and not vm.show_pin_pad


# --------------------------------------------------------------------------- result


def test_result_states_show_colour_icon_words() -> None:
    clock = Clock()
    vm = ResultViewModel(clock, auto_return_s=5)
    vm.show(ResultInfo("paid", "$5.00", "5,264 sats", method="card", at=clock.now))
    assert (vm.tone, vm.icon, vm.title) == (Tone.SUCCESS, "✓", "Paid")
    assert vm.detail_text.startswith("Card · ") and vm.return_to == "sale"
    assert vm.print_label == "Print receipt"
    vm.mark_printed()
    assert vm.print_label == "Reprint"
    assert vm.remaining_s == 5 and not vm.due
    clock.now += 5
    assert vm.due

    vm.show(ResultInfo("refused", "$5.00", reason="insufficient-balance",
                       message="Card balance too low.", sale_open=True))
    assert (vm.tone, vm.icon, vm.title) == (Tone.ERROR, "✕", "Card refused")
    assert vm.detail_text == "Card balance too low."  # the issuer's specific words
    assert vm.next_text == strings.t("next.retry") and vm.return_to == "pay"

    vm.show(ResultInfo("expired", "$5.00", reason="invoice-expired", message="x"))
    assert vm.detail_text == "The invoice expired before it was paid."
    assert vm.next_text == strings.t("next.new_sale")
    vm.show(ResultInfo("failed", "$5.00", reason="no-such-code", message="Backend said no"))
    assert vm.detail_text == "Backend said no"
    with pytest.raises(ValueError):
        vm.show(ResultInfo("weird", "$1"))


def test_strings_translation_falls_back_to_english() -> None:
    try:
        strings.use({"result.paid": "Pagado"})
        assert strings.t("result.paid") == "Pagado"
        assert strings.t("result.failed") == "Payment failed"
    finally:
        strings.use({})
    assert strings.reason_text(None) == strings.reason_text("nonsense") == \
        strings.t("reason.unknown")


# --------------------------------------------------------------------------- admin


def test_admin_pin_hash_roundtrip_and_lockout() -> None:
    encoded = hash_pin("2468", iterations=1000)
    assert "2468" not in encoded and verify_pin("2468", encoded)
    assert not verify_pin("2469", encoded)
    clock = Clock(100.0)
    lock = AdminLock(encoded, max_attempts=3, lockout_s=30, clock=clock)
    for attempt in range(2):
        lock.digits = "0000"
        assert lock.submit() is Attempt.WRONG
        assert lock.message == f"Wrong PIN: {3 - attempt - 1} attempts left"
    lock.digits = "0000"
    assert lock.submit() is Attempt.LOCKED and lock.locked
    assert lock.message == "Locked: try again in 30 s"
    assert not lock.press("2")  # the pad is dead while locked
    lock.digits = "2468"
    assert lock.submit() is Attempt.LOCKED and not lock.unlocked  # even the right PIN
    clock.now += 30
    for d in "2468":
        assert lock.press(d)
    assert lock.submit() is Attempt.OK and lock.unlocked
    lock.lock()
    for _ in range(3):
        lock.digits = "1111"
        lock.submit()
    assert lock.locked_for_s == 60  # the second lock-out lasts twice as long
    assert "2468" not in repr(lock)


def test_admin_without_pin_and_key_masking() -> None:
    lock = AdminLock(None)
    lock.digits = "1234"
    assert lock.submit() is Attempt.NOT_CONFIGURED and not lock.unlocked
    assert "pin_hash" in lock.message
    key = bytes(range(16))
    shown = mask_key(key)
    assert key.hex() not in shown and key.hex()[:8] not in shown and "128-bit" in shown


# --------------------------------------------------------------------------- status


def test_status_bar() -> None:
    from terminal.core.risk import Exposure

    vm = StatusViewModel(Clock())
    assert vm.link_text == "Connecting" and vm.reader_tone is Tone.ERROR
    vm.update(online=False, reader="demo", exposure=Exposure(queued_msat=12_000_000, count=2))
    assert vm.link_text == "Offline" and vm.link_tone is Tone.ERROR
    assert vm.queue_text == "Queued 12,000 sats (2)" and vm.queue_tone is Tone.WARNING
    vm.update(online=True)
    assert vm.link_tone is Tone.SUCCESS and vm.reader_text == "Demo cards"


# --------------------------------------------------------------------------- history


def _record(i: int, at: float, state: str, method: str | None, card: str | None,
            amount: int = 500, code: str = "USD") -> SaleRecord:
    return SaleRecord(id=f"sale{i:04d}" + "0" * 24, created_at=at, amount_minor=amount,
                      currency=code, state=state, method=method, card_id=card,
                      amount_msat=amount * 10_000, updated_at=at)


def test_history_filters_totals_detail_export(tmp_path: Path) -> None:
    tz = dt.UTC
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=tz).timestamp()
    yesterday = now - 86_400
    source = ListSource([
        _record(1, now - 60, "paid", "card", "cardA"),
        _record(2, now - 120, "paid", "qr", None, 250),
        _record(3, now - 180, "expired", None, None),
        _record(4, now - 240, "queued", "card", "cardB", 100),
        _record(5, yesterday, "paid", "card", "cardA", 999),
    ])
    vm = HistoryViewModel(source, clock=lambda: now, tz=tz)
    assert [r.sale_id[:8] for r in vm.rows()] == ["sale0001", "sale0002", "sale0003", "sale0004"]
    assert vm.total_today().count == 3 and vm.total_today().fiat == (Money(850, USD),)
    vm.set_filter(state="failed")
    assert [r.state for r in vm.rows()] == ["expired"] and vm.rows()[0].tone is Tone.ERROR
    vm.set_filter(state="all", method="card")
    assert {r.sale_id[:8] for r in vm.rows()} == {"sale0001", "sale0004"}
    vm.set_filter(method="all", card="cardA")
    assert [r.sale_id[:8] for r in vm.rows()] == ["sale0001"]
    vm.set_filter(card=None)
    days = vm.per_day()
    assert [d.isoformat() for d in days] == ["2026-03-04", "2026-03-03"]
    assert days[dt.date(2026, 3, 3)].fiat == (Money(999, USD),)
    assert set(vm.per_card()) == {"cardA", "cardB"}
    vm.select(source.records[0].id)
    assert vm.detail()[1] == "$5.00 · 5,000 sats"
    assert vm.export(tmp_path / "sales.csv", "csv") == 4
    text = (tmp_path / "sales.csv").read_text()
    assert text.count("\n") >= 5 and "sale0005" not in text  # today's only
    assert vm.export(tmp_path / "sales.json", "json") == 4
    with pytest.raises(ValueError):
        vm.export(tmp_path / "x", "xml")


# --------------------------------------------------------------------------- controller


def test_controller_full_sale_and_refusal_against_the_sandbox(tmp_path: Path) -> None:
    from terminal.app.demo import DemoEnvironment
    from terminal.app.ui.viewmodels import Screen

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path)
        printed: list[str] = []
        c = env.controller(receipt_sink=printed.append)
        try:
            await c.refresh_rates()
            assert c.status.online is True
            assert await c.handle_tap(env.tap("A")) is None  # no sale: a clear notice
            assert c.notice == strings.t("sale.enter_amount")
            c.sale.entry.type("5")
            assert await c.charge(c.sale.next())
            assert c.screen is Screen.PAY and c.pay.phase is PayPhase.WAITING
            bolt11 = c.pay.invoice.bolt11
            refused = await c.handle_tap(env.tap("B"))
            assert refused.kind == "refused"
            assert c.screen is Screen.RESULT and c.result.title == "Card refused"
            assert c.result.detail_text == refused.message  # the specific reason, in plain words
            assert refused.message and c.result.return_to == "pay"
            c.result_done()
            assert c.screen is Screen.PAY and c.pay.invoice.bolt11 == bolt11  # same invoice
            accepted = await c.handle_tap(env.tap("A"))
            assert accepted.kind == "accepted"
            info = await c.wait_result(10)
            assert info.kind == "paid" and info.method == "card" and c.result.paid
            await c.print_receipt()
            assert "PAID" in printed[0] and "$5.00" in printed[0]
            late = await c.handle_tap(env.tap("A"))
            assert late.kind == "late" and "already paid" in c.notice
            c.result_done()
            assert c.screen is Screen.SALE and c.sale.amount_text == "$0.00"
            # QR path: a wallet pays the invoice
            c.sale.entry.type("1")
            await c.charge(c.sale.next())
            env.pay_qr(c.pay.invoice.bolt11)
            info = await c.wait_result(10)
            assert info.kind == "paid" and info.method == "qr"
            c.result_done()
            # history behind the admin PIN
            c.go(Screen.HISTORY)
            assert c.screen is Screen.ADMIN
            c.admin.digits = "1234"
            c.admin.submit()
            c.go(Screen.HISTORY)
            assert c.screen is Screen.HISTORY
            assert [r.state for r in c.history.rows()] == ["paid", "paid"]
        finally:
            await c.aclose()
            await env.stop()

    asyncio.run(scenario())


def test_controller_pin_and_cancel(tmp_path: Path) -> None:
    from terminal.app.demo import CARD_A_PIN, DemoEnvironment
    from terminal.app.ui.viewmodels import Screen

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path)
        c = env.controller()
        try:
            await c.refresh_rates()
            c.sale.switch_currency(), c.sale.switch_currency()  # USD -> JMD -> SAT
            c.sale.entry.type("150000")  # above card A's PIN limit
            await c.charge(c.sale.next())
            result = await c.handle_tap(env.tap("A"))
            assert result.kind == "pin-required" and c.pay.show_pin_pad
            for d in CARD_A_PIN:
                c.pay.pin.press(d)
            assert (await c.submit_pin()).kind == "accepted"
            assert (await c.wait_result(10)).kind == "paid"
            c.result_done()
            c.sale.entry.type("100")
            await c.charge(c.sale.next())
            await c.cancel()
            assert c.screen is Screen.SALE and c.session is None
            assert c.history.source.sales()[-1].state == "cancelled"
        finally:
            await c.aclose()
            await env.stop()

    asyncio.run(scenario())
