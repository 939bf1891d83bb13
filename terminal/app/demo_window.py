"""`flash-terminal demo` in a window: the touchscreen app over the demo environment, with the
demo strip (cards A and B, a blank card, Pay QR, the network switch)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from terminal.app.demo import DEMO_ADMIN_PIN, DemoEnvironment


def run_demo_window(data_dir: Path | None = None) -> int:
    from kivy.core.window import Window

    from terminal.app.ui.app import WINDOW_SIZE, FlashTerminalApp, run_app

    async def main() -> None:
        env = await DemoEnvironment.start(data_dir, receipt_sink=print)
        try:
            app = FlashTerminalApp(
                env.controller(), demo=env, config=env.config, data_dir=env.work_dir,
                admin_hint=f"Demo admin PIN: {DEMO_ADMIN_PIN} (or manager Max: 2222)",
            )
            await run_app(app)
        finally:
            await env.stop()

    Window.size = WINDOW_SIZE
    asyncio.run(main())
    return 0
