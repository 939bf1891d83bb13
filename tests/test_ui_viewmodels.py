"""The till's pieces and the screens' presenters, without Kivy: keypad and PIN entry, tips,
every screen's words and colours, history, and the till driven through the controller against
the in-process sandbox (real HTTP and WebSocket on loopback, simulated cards)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.app.ui import strings
from terminal.app.ui.viewmodels import AdminLock, Attempt, Screen
from terminal.app.ui.viewmodels.admin import mask_key
from terminal.app.ui.viewmodels.history import card_label, totals_text
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.app.ui.viewmodels.tones import (
    COLOURS,
    MIN_CONTRAST,
    Tone,
    contrast,
    text_colour,
)
from terminal.core.money import JMD, SAT, USD, Money, currency
from terminal.core.pins import hash_pin, verify_pin
from terminal.core.tips import TipChoice, tip_minor
from terminal.core.totals import Totals
from terminal.services.till import AmountEntry, PayPhase, PinEntry, ResultKind, Step


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


def test_switching_currency_keeps_the_digits_the_new_currency_allows() -> None:
    e = AmountEntry(USD, 1_000_000)
    e.type("12.50")
    e.set_currency(SAT, 10_000_000)
    assert e.text == "12" and e.display == "12 sats"
    e.set_currency(JMD, 10_000_000)
    assert e.text == "12"
    e.type(".75")
    e.set_currency(USD, 1_000)  # $10.00 at most: the digits no longer fit
    assert e.text == "" and e.minor == 0


def test_pin_entry_keeps_the_pin_to_itself() -> None:
    pin = PinEntry()
    for d in "123":
        pin.press(d)
    assert not pin.complete and pin.masked == "•••"
    pin.press("4")
    assert pin.complete and "1234" not in repr(pin)
    for d in "56789":
        pin.press(d)
    assert pin.masked == "•" * 8  # at most 8 digits
    assert pin.take() == "12345678" and pin.masked == "" and not pin.complete


# --------------------------------------------------------------------------- words and colours


def test_every_tone_reads_at_wcag_aa_contrast() -> None:
    for tone in Tone:
        assert contrast(text_colour(tone), COLOURS[tone]) >= MIN_CONTRAST, tone
    assert contrast(text_colour(Tone.WARNING), COLOURS[Tone.WARNING]) > 6  # not white on amber


def test_a_card_is_named_the_same_way_everywhere() -> None:
    from terminal.adapters.receipts import method_text
    from terminal.core.records import SaleRecord

    card_id = "0123456789abcdef" * 2
    record = SaleRecord(id="x" * 32, created_at=0, amount_minor=1, currency="SAT",
                        method="card", issuer="acme", card_id=card_id)
    assert card_label(card_id) == "card 01234567"
    assert method_text(record) == "Boltcard acme card 01234567"


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


# --------------------------------------------------------------------------- through the till


def test_sale_pay_and_result_screens_against_the_sandbox(tmp_path: Path) -> None:
    from terminal.app.demo import DemoEnvironment

    async def scenario() -> None:
        printed: list[str] = []
        env = await DemoEnvironment.start(tmp_path, receipt_sink=printed.append,
                                          background=False)
        c = env.controller()
        till = c.till
        try:
            assert c.status.online is True
            await env.present("A")  # no amount: a clear notice, nothing charged
            assert c.notice == "Key the amount first, then tap the card"
            for key in "5":
                c.sale.press(key)
            assert c.sale.sats_text.startswith("≈ ") and c.sale.rate_age_text == "rate just now"
            c.charge_pressed()
            await till.wait_until(lambda: c.sale.tip_mode, 5)
            assert [label for label, _ in c.sale.tip_options] == ["No tip", "10%", "15%", "20%"]
            assert c.sale.tip_line(TipChoice(percent=15)) == "Tip $0.75 · Total $5.75"
            assert not c.sale.can_switch  # no currency change on the tip step
            assert till.custom_tip() and c.sale.keypad_visible
            for key in "1":
                c.sale.press(key)
            assert c.sale.amount_text == "Tip $1" and c.sale.charge_label == "Add tip"
            assert till.back() and not c.sale.custom_tip_mode and c.sale.tip_mode
            assert await till.choose_tip(TipChoice(percent=10))
            assert c.screen is Screen.PAY and c.pay.phase is PayPhase.WAITING
            assert c.pay.amount_text == "$5.50" and c.pay.tip_text == "incl. tip $0.50"
            assert c.pay.prompt == "Tap card or scan" and c.pay.qr_data.startswith("LN")
            assert c.pay.countdown_text.startswith("Expires in ")
            bolt11 = c.pay.invoice.bolt11
            await env.present("B")
            assert c.screen is Screen.RESULT and c.result.title == "Card refused"
            assert c.result.tone is Tone.ERROR and c.result.sale_open
            assert c.result.back_text == ""  # a refusal waits for the cashier
            assert c.result.primary_text == "Try again"
            c.result_done()
            assert c.screen is Screen.PAY and c.pay.invoice.bolt11 == bolt11  # same invoice
            await env.present("A")
            await till.wait_until(lambda: c.screen is Screen.RESULT, 10)
            assert c.result.kind is ResultKind.PAID and c.result.paid
            assert c.result.tip_text == "Tip $0.50"
            assert c.result.back_text.startswith("Back in ")
            await c.print_receipt()
            assert "Tip" in printed[0] and "$5.50" in printed[0] and "PAID" in printed[0]
            assert c.result.print_status == strings.t("result.shown")
            await env.present("A")  # the sale has ended: this tap charges nothing
            assert "ended" in c.notice
            c.sale.press("1")  # the first key of the next sale leaves the Result screen
            assert c.screen is Screen.SALE and c.sale.amount_text == "$1"
        finally:
            await env.stop()

    asyncio.run(scenario())


def test_history_any_day_without_a_pin_with_one_counting_rule(tmp_path: Path) -> None:
    from terminal.adapters.receipts import summarize
    from terminal.app.demo import DemoEnvironment
    from terminal.core.totals import totals

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        c = env.controller()
        till = c.till
        try:
            till.set_currency("SAT")
            for amount, card in (("1000", "A"), ("2000", "B"), ("3000", "A")):
                till.entry.clear()
                for key in amount:
                    till.key(key)
                await till.charge()
                await till.choose_tip(TipChoice())
                await env.present(card)
                await till.wait_until(lambda: till.step is Step.RESULT, 10)
                till.new_sale()
            c.go(Screen.HISTORY)  # no PIN: a cashier looks back and reprints
            assert c.screen is Screen.HISTORY
            history = c.history
            assert history.is_today and history.day_text == "Today"
            rows = history.rows()
            assert len(rows) == 3 and all("\n" not in r.text for r in rows)
            failed = [r for r in rows if "failed" in r.text]
            assert len(failed) == 1 and "enough" in failed[0].text  # the lasting reason
            assert history.totals_text.startswith("2 sales")
            history.set_filter(method="qr")
            assert history.rows() == [] and history.empty_text == "No sales match these filters"
            history.set_filter(method="all")
            history.previous_day()
            assert history.rows() == [] and history.empty_text == "No sales that day"
            history.next_day()
            assert history.is_today
            history.next_day()  # never past today
            assert history.is_today
            records = till.sales_on(till.today())
            screen = history.totals()
            slip = summarize(records, till.today())
            assert screen.taken == totals(records).taken == slip.total.count == 2
            assert screen.taken_msat == slip.total.msat
            history.select(records[0].id)
            assert history.detail()[0].startswith("Sale ")
            assert await c.print_receipt(records[0].id) == strings.t("result.no_printer")
            c.go(Screen.SALE)
            assert c.screen is Screen.SALE
        finally:
            await env.stop()

    asyncio.run(scenario())


def test_history_never_opens_over_an_open_invoice(tmp_path: Path) -> None:
    from terminal.app.demo import DemoEnvironment

    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        c = env.controller()
        try:
            c.till.set_currency("SAT")
            for key in "500":
                c.till.key(key)
            await c.till.charge()
            await c.till.choose_tip(TipChoice())
            c.go(Screen.HISTORY)
            assert c.screen is Screen.PAY
            assert await c.till.cancel()
            c.go(Screen.HISTORY)
            assert c.screen is Screen.HISTORY
            assert c.history.rows()[0].text.endswith("cancelled")
        finally:
            await env.stop()

    asyncio.run(scenario())


def test_totals_name_sales_priced_in_sats_beside_the_fiat_ones() -> None:
    # A day of $14.38 + $9.00 card/QR sales and one 150,000-sat sale: the dollars must not read
    # as the worth of all 174,611 sats.
    mixed = Totals(taken=3, taken_msat=174_611_000, minor={"USD": 2338, "SAT": 150_000})
    assert totals_text(mixed) == "3 sales · $23.38 + 150,000 sats (174,611 sats)"
    fiat_only = Totals(taken=2, taken_msat=24_611_000, minor={"USD": 2338})
    assert totals_text(fiat_only) == "2 sales · $23.38 (24,611 sats)"
    sats_only = Totals(taken=1, taken_msat=150_000_000, minor={"SAT": 150_000})
    assert totals_text(sats_only) == "1 sale · 150,000 sats"
