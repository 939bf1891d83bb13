"""`scripts/screenshots`: every screen in a realistic state, rendered in a real Kivy window
(`SDL_VIDEODRIVER=offscreen` works without a display) at 800×480, against the sandbox.

    python -m terminal.app.screenshots [OUT_DIR]   (default build/screenshots)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_WINDOW_WIDTH", "800")
os.environ.setdefault("KIVY_WINDOW_HEIGHT", "480")

SCREENS = ("sale", "tip", "pay", "pay-pin", "result-paid", "result-failed", "history", "admin",
           "admin-cards", "admin-tests", "report", "admin-cashiers", "signin")


async def capture(out: Path) -> list[Path]:
    from terminal.app.demo import CARD_A_PIN, DEMO_ADMIN_PIN, DemoEnvironment
    from terminal.app.ui.app import FlashTerminalApp
    from terminal.app.ui.driver import launch, press, screenshot, until
    from terminal.app.ui.viewmodels import Screen
    from terminal.app.ui.viewmodels.card_tools import Tool, ToolPhase

    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="flash-shots-") as tmp:
        env = await DemoEnvironment.start(Path(tmp))
        c = env.controller()
        app = FlashTerminalApp(c, demo=env, config=env.config, data_dir=Path(tmp),
                               admin_hint=f"Demo admin PIN: {DEMO_ADMIN_PIN}")
        running = await launch(app)
        try:
            await until(c, lambda: c.status.online is True)
            sale: Any = app.screens["sale"]
            for key in "12.50":
                await press(sale.ids.keypad.children[::-1][_KEY_INDEX[key]])
            sale.ids.memo.text = "2 coffees"
            written.append(await screenshot(out / "sale.png"))

            await press(sale.ids.charge)
            await until(c, lambda: c.sale.tip_mode)
            written.append(await screenshot(out / "tip.png"))
            await press(sale.ids.tip2)  # 15 %
            await until(c, lambda: c.screen is Screen.PAY and c.pay.invoice is not None)
            written.append(await screenshot(out / "pay.png"))

            app.demo_tap("A")
            await until(c, lambda: c.screen is Screen.RESULT)
            written.append(await screenshot(out / "result-paid.png"))
            c.result_done()

            for key in "9":
                c.sale.press(key)
            await press(sale.ids.charge)
            await until(c, lambda: c.sale.tip_mode)
            await press(sale.ids.tip0)  # no tip
            await until(c, lambda: c.screen is Screen.PAY and c.pay.invoice is not None)
            app.demo_tap("B")
            await until(c, lambda: c.screen is Screen.RESULT)
            written.append(await screenshot(out / "result-failed.png"))
            c.result_done()
            await until(c, lambda: c.screen is Screen.PAY)
            invoice = c.pay.invoice
            if invoice is None:
                raise RuntimeError("no invoice on the Pay screen")
            env.pay_qr(invoice.bolt11)
            await until(c, lambda: c.screen is Screen.RESULT and c.result.paid)
            c.result_done()

            c.till.set_currency("SAT")
            for key in "150000":
                c.till.key(key)
            await press(sale.ids.charge)
            await until(c, lambda: c.sale.tip_mode)
            await press(sale.ids.tip0)
            await until(c, lambda: c.screen is Screen.PAY and c.pay.invoice is not None)
            app.demo_tap("A")
            await until(c, lambda: c.pay.show_pin_pad)
            for d in CARD_A_PIN[:2]:
                c.till.key(d)
            written.append(await screenshot(out / "pay-pin.png"))
            for d in CARD_A_PIN[2:]:
                c.till.key(d)
            await c.till.submit_pin()
            await until(c, lambda: c.screen is Screen.RESULT)
            c.till.new_sale()

            c.go(Screen.ADMIN)
            written.append(await screenshot(out / "admin-locked.png"))
            for d in DEMO_ADMIN_PIN:
                c.admin.press(d)
            c.admin.submit()
            written.append(await screenshot(out / "admin.png"))
            admin: Any = app.screens["admin"]
            admin.show_tab("cards")  # program the demo's blank card: every step on screen
            c.tools.choose(Tool.PROGRAM)
            app.demo_tap("blank")
            await until(c, lambda: c.tools.phase in (ToolPhase.DONE, ToolPhase.FAILED))
            written.append(await screenshot(out / "admin-cards.png"))
            admin.show_tab("tests")
            await c.test_printer()
            c.tests.arm_reader()
            app.demo_tap("A")
            written.append(await screenshot(out / "admin-tests.png"))
            c.go(Screen.HISTORY)
            written.append(await screenshot(out / "history.png"))
            c.go(Screen.REPORT)
            c.reports.show_day()
            written.append(await screenshot(out / "report.png"))
            c.go(Screen.ADMIN)  # still unlocked: Reports and History opened from it
            admin.show_tab("cashiers")
            c.cashiers.select("max")
            written.append(await screenshot(out / "admin-cashiers.png"))
            c.go(Screen.SIGN_IN)
            c.signin.choose("ana")
            for d in "11":
                c.signin.press(d)
            written.append(await screenshot(out / "signin.png"))
        finally:
            app.stop()
            await running
            await env.stop()
    return written


_KEY_INDEX = {str(d): i for i, d in enumerate("123456789")} | {".": 9, "0": 10}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "build/screenshots")
    from kivy.core.window import Window

    Window.size = (800, 480)
    for path in asyncio.run(capture(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
