"""Real-window tier: the Kivy app in an offscreen window (SDL_VIDEODRIVER=offscreen, real GL via
Mesa), driven by simulated touches against the in-process sandbox.

One app and one sandbox serve the whole module (Kivy's Window is a process-wide singleton); the
asyncio loop runs only while a test's scenario runs, so the app simply pauses between tests.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.ui

if shutil.which("zbarimg") is None:  # pragma: no cover - bootstrap installs zbar-tools
    pytest.skip("zbarimg (zbar-tools) is not installed", allow_module_level=True)

import bolt11  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from PIL import Image  # noqa: E402

from terminal.app.demo import DEMO_ADMIN_PIN, DemoEnvironment  # noqa: E402
from terminal.app.ui.app import FlashTerminalApp  # noqa: E402
from terminal.app.ui.driver import launch, next_frames, press, screenshot, until  # noqa: E402
from terminal.app.ui.viewmodels import Screen, TerminalController  # noqa: E402

SCENARIO_TIMEOUT_S = 30


@dataclass
class UI:
    loop: asyncio.AbstractEventLoop
    env: DemoEnvironment
    c: TerminalController
    app: FlashTerminalApp

    def run(self, coro):
        async def bounded():
            async with asyncio.timeout(SCENARIO_TIMEOUT_S):
                return await coro

        return self.loop.run_until_complete(bounded())

    def screen(self, name: str):
        return self.app.screens[name]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    Window.size = (800, 480)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    env = loop.run_until_complete(DemoEnvironment.start(tmp))
    controller = env.controller()
    app = FlashTerminalApp(controller, demo=env, config=env.config, data_dir=tmp,
                           admin_hint=f"Demo admin PIN: {DEMO_ADMIN_PIN}")
    running = loop.run_until_complete(launch(app))
    state = UI(loop, env, controller, app)
    state.run(until(controller, lambda: controller.status.online is True))
    yield state
    app.stop()
    loop.run_until_complete(running)
    loop.run_until_complete(env.stop())
    loop.close()
    asyncio.set_event_loop(None)


KEY_INDEX = {str(d): i for i, d in enumerate("123456789")} | {".": 9, "0": 10, "back": 11}


async def key_in(ui: UI, digits: str) -> None:
    keypad = ui.screen("sale").ids.keypad.children[::-1]
    for d in digits:
        await press(keypad[KEY_INDEX[d]])


async def open_sale(ui: UI, digits: str, tip: int = 0) -> None:
    """Key the amount, Next, choose the tip (0: none, 1-3: the presets) by touch."""
    c = ui.c
    await until(c, lambda: c.screen is Screen.SALE and c.till.step.value == "sale")
    await key_in(ui, digits)
    sale = ui.screen("sale")
    await press(sale.ids.charge)
    await until(c, lambda: c.sale.tip_mode)
    await press(getattr(sale.ids, f"tip{tip}"))
    await until(c, lambda: c.screen is Screen.PAY and c.pay.phase.value != "creating")


def test_full_sale_by_touch_with_a_tip_and_the_qr_on_screen_scans(ui: UI, tmp_path: Path) -> None:
    c = ui.c

    async def scenario() -> None:
        await key_in(ui, "2.50")
        sale = ui.screen("sale")
        assert sale.ids.amount.text == "$2.50"
        assert "sats" in sale.ids.sats.text
        await press(sale.ids.charge)  # Next: the tip step
        await until(c, lambda: c.sale.tip_mode)
        await next_frames()
        assert sale.ids.tips.opacity == 1 and sale.ids.keypad.opacity == 0
        assert sale.ids.currency.disabled  # no currency change with a tip on screen
        await press(sale.ids.tip_back)  # Back: the amount is still there
        await until(c, lambda: not c.sale.tip_mode)
        await next_frames()
        assert sale.ids.amount.text == "$2.50" and sale.ids.keypad.opacity == 1
        await press(sale.ids.charge)
        await until(c, lambda: c.sale.tip_mode)
        await press(sale.ids.tip1)  # 10 %
        await until(c, lambda: c.screen is Screen.PAY and c.pay.invoice is not None)
        assert ui.app.manager.current == "pay"
        pay = ui.screen("pay")
        await next_frames()
        assert pay.ids.amount.text == "$2.75" and "tip $0.25" in pay.ids.sats.text
        shot = await screenshot(tmp_path / "pay.png")
        assert Image.open(shot).size == (800, 480)
        decoded = subprocess.run(["zbarimg", "--raw", "-q", str(shot)], capture_output=True,
                                 text=True, timeout=20)
        assert decoded.returncode == 0, decoded.stderr
        text = decoded.stdout.strip()
        invoice = c.pay.invoice
        assert text == invoice.bolt11.upper()
        assert bolt11.decode(text.lower()).amount_msat == invoice.amount_msat
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.screen is Screen.RESULT)
        await next_frames()
        result = ui.screen("result")
        assert ui.app.manager.current == "result"
        assert result.ids.title.text == "Paid" and result.ids.icon.text == "✓"
        assert "$2.75" in result.ids.amount.text and "Tip $0.25" in result.ids.amount.text
        await press(result.ids.primary)  # New sale
        await until(c, lambda: c.screen is Screen.SALE)
        assert ui.screen("sale").ids.amount.text == "$0.00"

    ui.run(scenario())
    record = ui.c.till.record
    assert record.state == "paid" and record.method == "card" and record.tip_minor == 25


def test_a_refusal_stays_until_the_cashier_acts(ui: UI) -> None:
    c = ui.c

    async def scenario() -> None:
        await open_sale(ui, "3")
        await press(ui.app.demo_strip.ids.tap_b)  # card B is nearly empty
        await until(c, lambda: c.screen is Screen.RESULT)
        await next_frames()
        result = ui.screen("result")
        assert result.ids.title.text == "Card refused" and result.ids.icon.text == "✕"
        assert result.ids.detail.text and result.ids.detail.text == c.result.info.message
        assert result.ids.primary.text == "Try again" and result.ids.back_in.text == ""
        for _ in range(int(c.till.settings.result_seconds) + 2):  # the app clock ticks on
            c.tick()
        assert c.screen is Screen.RESULT  # still there, reason and all
        await press(result.ids.primary)
        await until(c, lambda: c.screen is Screen.PAY)  # the same invoice is still open
        ui.app.demo_pay_qr()  # then a phone wallet pays it
        await until(c, lambda: c.screen is Screen.RESULT and c.result.paid)
        await press(ui.screen("result").ids.primary)
        await until(c, lambda: c.screen is Screen.SALE)

    ui.run(scenario())


def test_offline_acceptance_then_the_next_sale_at_once(ui: UI) -> None:
    c = ui.c
    strip = ui.app.demo_strip

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await press(strip.ids.network)  # training: the network is off
        await until(c, lambda: not ui.env.network_up)
        await open_sale(ui, "2")
        await next_frames()
        pay = ui.screen("pay")
        assert c.pay.offline and pay.ids.offline.opacity == 1 and pay.ids.qr.opacity == 0
        assert pay.ids.prompt.text == "Offline: tap a card"
        await press(strip.ids.tap_a)
        await until(c, lambda: c.screen is Screen.RESULT)
        await next_frames()
        result = ui.screen("result")
        assert result.ids.title.text == "Accepted offline"
        assert "Queued" in ui.app.status_bar.ids.queue.text
        assert result.ids.primary.text == "New sale"
        await press(result.ids.primary)  # the next customer, at once
        await until(c, lambda: c.screen is Screen.SALE)
        await key_in(ui, "1")
        await next_frames()
        assert ui.screen("sale").ids.amount.text == "$1"
        await press(strip.ids.network)
        await until(c, lambda: ui.env.network_up)
        await ui.env.sync_once()
        assert ui.env.till.exposure().count == 0
        await press(ui.screen("sale").ids.clear_key)

    ui.run(scenario())


def test_the_longest_queue_line_fits_the_status_bar(ui: UI) -> None:
    from terminal.core.risk import Exposure

    c = ui.c
    kept = c.status.exposure, c.status.drain_s, c.status.flagged

    async def scenario() -> None:
        c.status.update(exposure=Exposure(count=12, queued_msat=1_234_567_000), drain_s=900.0,
                        flagged=2)
        await next_frames(3)
        queue = ui.app.status_bar.ids.queue
        assert queue.text == "Queued 1,234,567 sats (12), ~15 min to send, 2 of blocked cards"
        assert queue.texture_size[0] <= queue.width and queue.texture_size[1] <= queue.height
        c.status.update(exposure=kept[0], drain_s=kept[1], flagged=kept[2])

    ui.run(scenario())


def test_cancel_from_the_pay_screen_keeps_the_amount(ui: UI) -> None:
    c = ui.c

    async def scenario() -> None:
        await open_sale(ui, "4")
        await press(ui.screen("pay").ids.cancel)
        await until(c, lambda: c.screen is Screen.SALE)
        await next_frames()
        assert ui.screen("sale").ids.amount.text == "$4"
        await press(ui.screen("sale").ids.clear_key)

    ui.run(scenario())
    assert ui.c.till.record.state == "cancelled"


def test_history_by_touch_without_a_pin(ui: UI) -> None:
    c = ui.c

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await press(ui.screen("sale").ids.history)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await next_frames()
        history = ui.screen("history")
        assert history.ids.day.text == "Today" and history.ids.next_day.disabled
        rows = history.ids.rows.children
        assert rows and all("\n" not in r.text for r in rows)
        await press(rows[-1])  # the oldest sale: select and reprint it
        await next_frames()
        assert history.ids.detail.text.startswith("Sale ")
        await press(history.ids.reprint)
        await until(c, lambda: c.till.last_print is not None, 5)
        await next_frames()
        assert history.ids.message.text == "No printer connected"
        await press(history.ids.state_filter)
        await press(history.ids.state_filter)  # failed
        await next_frames()
        assert history.ids.state_filter.text == "State: failed"
        shown = [r.text for r in history.ids.rows.children]
        # The cancelled sale of the earlier test, and nothing paid.
        assert shown and all(any(word in text for word in ("failed", "cancelled", "expired"))
                             for text in shown), shown
        await press(history.ids.back)
        await until(c, lambda: c.screen is Screen.SALE)

    ui.run(scenario())


def test_admin_pin_locks_after_failures_by_touch(ui: UI) -> None:
    c = ui.c
    admin = ui.screen("admin")

    async def scenario() -> None:
        await press(ui.screen("sale").ids.admin)
        await until(c, lambda: c.screen is Screen.ADMIN)
        keys = {b.text: b for b in admin.ids.pad_keys.children}
        for _attempt in range(c.admin.max_attempts):
            for d in "9999":
                await press(keys[d])
            await press(keys["OK"])
        await next_frames()
        assert admin.ids.message.text.startswith("Locked")
        await press(keys["1"])
        assert c.admin.masked == ""  # the pad is dead while locked
        c.admin.locked_until = 0.0  # (time passes)
        c.tick()
        for d in DEMO_ADMIN_PIN:
            await press(keys[d])
        await press(keys["OK"])
        await next_frames()
        assert c.admin.unlocked and admin.ids.settings.opacity == 1
        assert ui.env.config.issuers[0].issuer_key.hex() not in admin.ids.sections.text
        c.go(Screen.SALE)

    ui.run(scenario())


def test_admin_settings_and_card_tools_by_touch(ui: UI) -> None:
    from terminal.app.ui.viewmodels.card_tools import ToolPhase

    c = ui.c
    admin = ui.screen("admin")

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await press(ui.screen("sale").ids.admin)
        await until(c, lambda: c.screen is Screen.ADMIN)
        c.admin.locked_until = 0.0  # an earlier test may have left the pad locked
        keys = {b.text: b for b in admin.ids.pad_keys.children}
        for d in DEMO_ADMIN_PIN:
            await press(keys[d])
        await press(keys["OK"])
        await until(c, lambda: c.admin.unlocked)
        await press(admin.ids.tab_settings)
        await next_frames()
        text = admin.ids.sections.text
        assert admin.ids.settings_tab.opacity == 1 and admin.ids.cards_tab.opacity == 0
        for expected in ("Backend", "Flash · 127.0.0.1", "Merchant", "Offline limits",
                         "sandbox (deterministic)", "fingerprint", "Reader and printer"):
            assert expected in text, expected
        assert ui.env.config.issuers[0].issuer_key.hex() not in text
        assert "flash-terminal enroll" in admin.ids.enrolled.text

        await press(admin.ids.tab_cards)
        await next_frames()
        assert admin.ids.cards_tab.opacity == 1 and admin.ids.settings_tab.opacity == 0
        assert admin.ids.issuer.text.startswith("Issuer: sandbox")
        await press(admin.ids.tool_info)
        await until(c, lambda: c.tools.armed)
        await next_frames()
        assert admin.ids.tool_title.text == "Info: tap the card"
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.tools.phase is ToolPhase.DONE)
        await next_frames()
        assert admin.ids.tool_title.text == "Programmed card (key version 1)"
        assert "Tap verifies: issuer sandbox" in admin.ids.tool_detail.text
        assert c.till.session is None  # the tap went to the tool, not to a sale
        await press(admin.ids.tool_wipe)
        await next_frames()
        assert admin.ids.tool_title.text == "Wipe a card?"
        assert admin.ids.tool_action.text == "Wipe it"
        await press(admin.ids.tab_tests)  # leaving the card tools disarms them
        await next_frames()
        assert c.tools.phase is ToolPhase.IDLE and admin.ids.tests_tab.opacity == 1
        c.go(Screen.SALE)

    ui.run(scenario())


def test_a_rate_outage_is_said_in_full_on_the_sale_screen(ui: UI) -> None:
    from terminal.core.money import RatePolicy

    c = ui.c
    checkout = c.till.checkout
    kept = checkout.rates

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await ui.env.set_network(False)
        checkout.rates = RatePolicy()  # as after booting offline: no rate at all
        try:
            await key_in(ui, "5")
            await next_frames(3)
            sats = ui.screen("sale").ids.sats
            assert "rate" in sats.text.lower()
            # Said in full, inside its box: not "ange rate for USD yet; check the co".
            assert not sats.is_shortened
            assert sats.texture_size[0] <= sats.width and sats.texture_size[1] <= sats.height
            assert ui.screen("sale").ids.charge.disabled
        finally:
            checkout.rates = kept
            await ui.env.set_network(True)
            await press(ui.screen("sale").ids.clear_key)

    ui.run(scenario())


def test_a_cashier_signs_in_and_out_by_touch(ui: UI) -> None:
    c = ui.c
    sale = ui.screen("sale")
    signin = ui.screen("signin")

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE and c.till.step.value == "sale")
        c.admin.locked_until = 0.0  # an earlier test may have left the (shared) pad locked
        await next_frames()
        assert sale.ids.cashier.text == "Sign in" and sale.ids.cashier.opacity == 1
        await press(sale.ids.cashier)
        await until(c, lambda: c.screen is Screen.SIGN_IN)
        assert ui.app.manager.current == "signin"
        names = {b.text: b for b in signin.ids.names.children}
        assert set(names) == {"Ana", "Max (manager)"}
        assert signin.ids.pad_keys.disabled  # a name first
        await press(names["Max (manager)"])
        await next_frames()
        assert signin.ids.message.text == "PIN for Max"
        keys = {b.text: b for b in signin.ids.pad_keys.children}
        for d in "2222":
            await press(keys[d])
        assert signin.ids.digits.text == "••••"  # never the digits
        await press(keys["OK"])
        await until(c, lambda: c.screen is Screen.SALE)
        await next_frames()
        assert c.till.cashier == "max" and sale.ids.cashier.text == "Max · Sign out"
        await press(sale.ids.admin)  # a manager: Admin opens without the pad
        await until(c, lambda: c.screen is Screen.ADMIN)
        assert c.admin.unlocked
        c.go(Screen.SALE)
        await until(c, lambda: c.screen is Screen.SALE)
        await press(sale.ids.cashier)
        await next_frames()
        assert c.till.cashier is None and sale.ids.cashier.text == "Sign in"

    ui.run(scenario())


def test_the_shift_report_with_its_bar_chart_and_the_z_by_touch(ui: UI) -> None:
    c = ui.c
    sale, history, report = ui.screen("sale"), ui.screen("history"), ui.screen("report")

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE and c.till.step.value == "sale")
        c.admin.locked_until = 0.0
        await press(sale.ids.history)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await press(history.ids.report)
        await until(c, lambda: c.screen is Screen.REPORT)
        await next_frames()
        assert ui.app.manager.current == "report"
        vm = c.reports
        assert report.ids.title.text.startswith("X report, shift ")
        assert " sales · " in report.ids.summary.text.splitlines()[0]
        # The earlier tests' sales are on the chart: one bar per hour, tallest full height.
        chart = report.ids.chart
        bars = vm.bars()
        assert len(chart.bars) == len(bars) and any(b.taken for b in bars)
        assert len(chart.drawn) == sum(1 for b in bars if b.taken)
        tallest = max(h for (_x, _y, _w, h) in chart.drawn)
        assert tallest > chart.height * 0.5
        assert report.ids.close.disabled  # a cashier's view: no Z without a manager
        c.go(Screen.SALE)
        c.go(Screen.SIGN_IN)
        c.signin.choose("max")
        for d in "2222":
            c.signin.press(d)
        c.sign_in_pressed()
        await until(c, lambda: c.screen is Screen.SALE)
        await press(sale.ids.history)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await press(history.ids.report)
        await until(c, lambda: c.screen is Screen.REPORT)
        await next_frames()
        assert not report.ids.close.disabled
        shift = vm.report.period.shift
        await press(report.ids.close)
        await until(c, lambda: "closed" in report.ids.message.text)
        assert report.ids.title.text == f"Z report, shift {shift}"
        await press(report.ids.shift)
        await next_frames()
        assert report.ids.title.text == f"X report, shift {shift + 1}"
        assert not report.ids.chart.drawn  # nothing sold since the Z
        await press(report.ids.day)
        await next_frames()
        assert report.ids.title.text == "Today so far" and report.ids.chart.drawn
        c.sign_out()
        c.go(Screen.SALE)

    ui.run(scenario())


def test_block_a_card_by_touch_then_its_tap_is_refused_then_unblock_from_the_list(ui: UI) -> None:
    from terminal.app.ui.viewmodels.card_tools import ToolPhase

    c = ui.c
    admin = ui.screen("admin")

    async def unlock_cards() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await press(ui.screen("sale").ids.admin)
        await until(c, lambda: c.screen is Screen.ADMIN)
        c.admin.locked_until = 0.0
        keys = {b.text: b for b in admin.ids.pad_keys.children}
        for d in DEMO_ADMIN_PIN:
            await press(keys[d])
        await press(keys["OK"])
        await until(c, lambda: c.admin.unlocked)
        await press(admin.ids.tab_cards)
        await press(admin.ids.tool_block)
        await until(c, lambda: c.tools.armed)
        await next_frames()

    async def scenario() -> None:
        await unlock_cards()
        assert admin.ids.tool_title.text == "Block: tap the card"
        assert admin.ids.block_options.opacity == 1 and admin.ids.tool_options.opacity == 0
        assert admin.ids.blocked_title.text == "No card is blocked"
        await press(admin.ids.block_reason)  # lost -> stolen
        await next_frames()
        assert admin.ids.block_reason.text == "Reason: stolen"
        assert "It will be blocked as: stolen" in admin.ids.tool_detail.text
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.tools.phase is ToolPhase.DONE)
        await next_frames()
        assert admin.ids.tool_title.text == "Card blocked"
        assert "Reason: stolen" in admin.ids.tool_detail.text
        [label, unblock] = admin.ids.blocked_list.children[::-1]
        assert "stolen (this terminal)" in label.text and unblock.text == "Unblock"
        assert c.till.session is None  # the tap went to the tool
        c.go(Screen.SALE)

        await open_sale(ui, "3")
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.screen is Screen.RESULT)
        await next_frames()
        result = ui.screen("result")
        assert result.ids.title.text == "Card refused"
        assert "blocked by this terminal: stolen" in result.ids.detail.text
        await press(ui.screen("result").ids.cancel_sale)
        await until(c, lambda: c.screen is Screen.SALE)

        await unlock_cards()
        [label, unblock] = admin.ids.blocked_list.children[::-1]
        await press(unblock)
        await until(c, lambda: not c.blocks.rows)
        await next_frames()
        assert admin.ids.blocked_list.children == []
        assert "unblocked" in admin.ids.blocked_title.text
        c.go(Screen.SALE)

    try:
        ui.run(scenario())
    finally:
        policy = c.till.checkout.card_policy
        for block in policy.blocked():
            policy.unblock(block.card_id)
        c.go(Screen.SALE)


def test_a_refund_by_touch_pin_part_tap_then_the_rest_to_an_address(ui: UI,
                                                                      tmp_path: Path) -> None:
    """History > the sale > Refund: the manager's PIN, part of it back onto the card that paid
    (tapped on the reader), then the rest to a Lightning Address keyed in; both land."""
    c = ui.c
    card_a = ui.env.cards["A"].card_id

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await open_sale(ui, "4.00")
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.screen is Screen.RESULT)
        sale_id = c.till.result.sale_id
        await press(ui.screen("result").ids.primary)
        await until(c, lambda: c.screen is Screen.SALE)
        await press(ui.screen("sale").ids.history)
        await until(c, lambda: c.screen is Screen.HISTORY)
        history = ui.screen("history")
        await next_frames()
        c.history.set_filter(state="all", method="all")  # an earlier test left a filter on
        await next_frames()
        index = [r.sale_id for r in c.history.rows()].index(sale_id)
        row = history.ids.rows.children[::-1][index]  # this sale's row (others may be $4.00)
        assert history.ids.refund.disabled  # nothing selected yet
        await press(row)
        await until(c, lambda: c.history.selected == sale_id)
        await next_frames()
        await press(history.ids.refund)
        await until(c, lambda: c.screen is Screen.REFUND)
        screen = ui.screen("refund")
        await next_frames()
        assert screen.ids.pad.opacity == 1 and screen.ids.form.opacity == 0
        pad = {b.text: b for b in screen.ids.pin_keys.children}
        for digit in DEMO_ADMIN_PIN:
            await press(pad[digit])
        await press(pad["OK"])
        await until(c, lambda: c.refund.phase.value == "choose")
        await next_frames()
        assert screen.ids.form.opacity == 1 and "Left to refund" in screen.ids.sale.text
        keys = {b.text: b for b in screen.ids.amount_keys.children}
        await press(screen.ids.part)
        for key in "1.50":
            await press(keys[key])
        await until(c, lambda: c.refund.entry.minor == 150)
        await next_frames()
        assert screen.ids.amount.text.startswith("$1.50")
        await screenshot(tmp_path / "refund-choose.png")
        card_before = ui.env.sandbox.core.card_state(card_a)["balance_msat"]
        await press(screen.ids.card)
        await until(c, lambda: c.refund.waiting_for_card)
        await press(ui.app.demo_strip.ids.tap_a)  # the customer taps the card that paid
        await until(c, lambda: c.refund.phase.value == "done", 15)
        await next_frames()
        assert screen.ids.result.opacity == 1
        assert screen.ids.status.text.startswith("Refunded")
        refunded = c.refund.outcome.amount_msat
        assert ui.env.sandbox.core.card_state(card_a)["balance_msat"] == card_before + refunded
        await screenshot(tmp_path / "refund.png")
        await press(screen.ids.again)  # the rest, to an address keyed in
        await until(c, lambda: c.refund.phase.value == "choose")
        await next_frames()
        assert screen.ids.full.state == "down"
        screen.ids.address.text = ui.env.sandbox.address("wanda")
        await next_frames()
        assert not screen.ids.send.disabled
        await press(screen.ids.send)
        await until(c, lambda: c.refund.phase.value == "done", 15)
        assert c.refund.outcome.status == "sent"
        assert ui.env.sandbox.customer_balance_msat("wanda") == c.refund.outcome.amount_msat
        await press(screen.ids.done)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await press(history.ids.back)
        await until(c, lambda: c.screen is Screen.SALE)

    ui.run(scenario())
    record = ui.c.till.checkout.ledger.get_sale(ui.c.refund.quote.sale.id)
    assert record.refunded_msat == record.amount_msat // 1000 * 1000  # all of it, in whole sats
    assert len(record.refund_ids) == 2


def test_a_cashiers_shift_by_touch_sign_in_a_tipped_sale_a_refund_and_the_report(
        ui: UI, tmp_path: Path, pty_printer) -> None:
    """One cashier's journey through the real window: Ana signs in with her PIN, sells with a
    tip (the customer taps card A), Max is called over to refund part of it onto the card that
    paid (Ana's own PIN is no manager's), and the X report on screen counts the sale, Ana's tip
    and Max's refund, draws the hour's bar and prints on the receipt printer; Ana cannot close
    the shift, and signs out."""
    import dataclasses

    from hw.printer import SerialPrinter
    from terminal.core.money import Msat, format_msat

    fake, port = pty_printer
    c = ui.c
    sale, signin, history, report = (ui.screen(n) for n in ("sale", "signin", "history",
                                                             "report"))
    card_a = ui.env.cards["A"].card_id
    reports = c.till.reports
    receipts = c.till.receipts
    settings = c.till.settings
    found: dict = {}

    async def to_history() -> None:
        await until(c, lambda: c.screen is Screen.SALE)
        await press(sale.ids.history)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await next_frames()

    async def scenario() -> None:
        await until(c, lambda: c.screen is Screen.SALE and c.till.step.value == "sale")
        c.admin.locked_until = 0.0  # an earlier test may have left the (shared) pad locked
        if c.till.cashier is not None:
            c.sign_out()
        before = reports.shift()
        # 1. Ana signs in.
        await next_frames()
        await press(sale.ids.cashier)
        await until(c, lambda: c.screen is Screen.SIGN_IN)
        await press({b.text: b for b in signin.ids.names.children}["Ana"])
        keys = {b.text: b for b in signin.ids.pad_keys.children}
        for d in "1111":
            await press(keys[d])
        await press(keys["OK"])
        await until(c, lambda: c.screen is Screen.SALE)
        await next_frames()
        assert c.till.cashier == "ana" and sale.ids.cashier.text == "Ana · Sign out"

        # 2. A sale of $6.00 with the 10 % tip, paid by card A (this merchant shows the card's
        # balance after the tap: `[ui] show_card_balance`, off by default).
        c.till.settings = dataclasses.replace(settings, show_card_balance=True)
        await open_sale(ui, "6.00", tip=1)
        await next_frames()
        assert ui.screen("pay").ids.amount.text == "$6.60"
        await press(ui.app.demo_strip.ids.tap_a)
        await until(c, lambda: c.screen is Screen.RESULT)
        await next_frames()
        sale_id = found["sale"] = c.till.result.sale_id
        balance = c.till.result.card_balance_msat
        assert balance is not None and balance == \
            ui.env.sandbox.core.card_state(card_a)["balance_msat"]
        assert f"Card balance {format_msat(Msat(balance))}" in \
            ui.screen("result").ids.detail.text
        paid = c.till.checkout.ledger.get_sale(sale_id)
        assert (paid.state, paid.cashier, paid.tip_minor) == ("paid", "ana", 60)
        assert paid.tip_msat > 0
        await press(ui.screen("result").ids.primary)

        # 3. A refund of $2.00 of it onto the card that paid: a manager's PIN first.
        await to_history()
        c.history.set_filter(state="all", method="all")  # an earlier test left a filter on
        await next_frames()
        index = [r.sale_id for r in c.history.rows()].index(sale_id)
        await press(history.ids.rows.children[::-1][index])
        await until(c, lambda: c.history.selected == sale_id)
        await next_frames()
        await press(history.ids.refund)
        await until(c, lambda: c.screen is Screen.REFUND)
        screen = ui.screen("refund")
        await next_frames()
        assert screen.ids.pad.opacity == 1 and screen.ids.form.opacity == 0  # Ana: no manager
        pad = {b.text: b for b in screen.ids.pin_keys.children}
        for d in "1111":  # a cashier's PIN opens nothing
            await press(pad[d])
        await press(pad["OK"])
        await next_frames()
        assert c.refund.phase.value == "pin" and "Wrong PIN" in c.refund.message
        for d in "2222":  # Max, called over
            await press(pad[d])
        await press(pad["OK"])
        await until(c, lambda: c.refund.phase.value == "choose")
        await next_frames()
        amount_keys = {b.text: b for b in screen.ids.amount_keys.children}
        await press(screen.ids.part)
        for key in "2.00":
            await press(amount_keys[key])
        await until(c, lambda: c.refund.entry.minor == 200)
        card_before = ui.env.sandbox.core.card_state(card_a)["balance_msat"]
        await press(screen.ids.card)
        await until(c, lambda: c.refund.waiting_for_card)
        await press(ui.app.demo_strip.ids.tap_a)  # the customer taps the card that paid
        await until(c, lambda: c.refund.phase.value == "done", 15)
        outcome = found["refund"] = c.refund.outcome
        assert outcome.status == "sent" and 0 < outcome.amount_msat < paid.amount_msat
        assert ui.env.sandbox.core.card_state(card_a)["balance_msat"] == \
            card_before + outcome.amount_msat
        [kept] = c.till.checkout.ledger.refunds(sale_id)
        assert kept.cashier == "max"  # the refund is the manager's who gave his PIN
        await press(screen.ids.done)
        await until(c, lambda: c.screen is Screen.HISTORY)
        await press(history.ids.back)

        # 4. The X report: back at the counter, Ana opens it from History.
        await to_history()
        await press(history.ids.report)
        await until(c, lambda: c.screen is Screen.REPORT)
        await press(report.ids.shift)  # the shift (an earlier test left the day on screen)
        await next_frames()
        assert report.ids.title.text.startswith("X report, shift ")
        x = c.reports.report
        assert x.total.taken == before.total.taken + 1
        assert x.total.tips_msat == before.total.tips_msat + paid.tip_msat
        ana_before = before.by_cashier.get("ana")
        ana = x.by_cashier["ana"]
        assert ana.taken == (ana_before.taken if ana_before else 0) + 1
        assert ana.tips_msat == (ana_before.tips_msat if ana_before else 0) + paid.tip_msat
        assert x.refunds_msat == before.refunds_msat + outcome.amount_msat
        doc = x.to_json()
        max_before = before.to_json()["by_cashier"].get("max", {}).get("refunds_msat", 0)
        assert doc["by_cashier"]["max"]["refunds_msat"] == max_before + outcome.amount_msat
        assert doc["net_msat"] == doc["gross_msat"] - doc["refunds_msat"]
        summary = report.ids.summary.text
        assert "Tips " in summary and "Refunds " in summary and "Net " in summary
        assert any(line.startswith("Ana") and "tips" in line for line in summary.splitlines())
        assert report.ids.chart.drawn  # this hour's bar at least
        assert report.ids.close.disabled  # Ana is no manager: no Z
        receipts.printer = SerialPrinter(port)
        try:
            await press(report.ids.print_btn)
            await until(c, lambda: c.reports.message.endswith("Receipt printed"))
        finally:
            receipts.printer = None
        await next_frames()
        assert report.ids.message.text.endswith("Receipt printed")
        assert fake.cut.wait(5)
        printed = bytes(fake.received).decode("cp858", "replace")
        assert "X report" in printed and "By cashier" in printed and "Refunds" in printed

        # 5. Ana signs out.
        c.go(Screen.SALE)
        await until(c, lambda: c.screen is Screen.SALE)
        await press(sale.ids.cashier)
        await next_frames()
        assert c.till.cashier is None and sale.ids.cashier.text == "Sign in"

    try:
        ui.run(scenario())
    finally:
        c.till.settings = settings
    record = ui.c.till.checkout.ledger.get_sale(found["sale"])
    assert (record.cashier, record.refunded_msat) == ("ana", found["refund"].amount_msat)
