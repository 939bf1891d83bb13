"""Drive the running app like a finger would (real touches through Kivy's input dispatch), wait
for states by event, and take screenshots. Used by `scripts/screenshots`, the real-window tests
and the UI benchmark."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.tests.common import UnitTestTouch
from kivy.uix.widget import Widget

from terminal.app.ui.viewmodels.controller import TerminalController


async def next_frames(n: int = 2) -> None:
    """Return after `n` Kivy frames (each frame draws after its clock tick)."""
    loop = asyncio.get_running_loop()
    for _ in range(n):
        fut = loop.create_future()
        Clock.schedule_once(lambda _dt, f=fut: f.done() or f.set_result(None), 0)
        await fut


async def press(widget: Widget) -> None:
    """Like `touch`, after the pending layout is done (a screen just shown has no positions)."""
    await next_frames(2)
    touch(widget)


def touch(widget: Widget) -> None:
    """A tap at the widget's centre: touch down, then up, through the window's input dispatch."""
    x, y = widget.to_window(*widget.center)
    t = UnitTestTouch(x, y)
    t.touch_down()
    t.touch_up()


async def until(controller: TerminalController, predicate: Callable[[], bool],
                timeout: float = 10.0) -> None:
    """Wait for `predicate()` to hold, re-checked at every controller or view-model change."""
    if predicate():
        return
    event = asyncio.Event()

    def check(_obj=None) -> None:
        if predicate():
            event.set()

    observed = (controller, controller.pay, controller.result, controller.sale, controller.admin,
                controller.tools, controller.tests, controller.refund, controller.history,
                controller.reports)
    unsubscribe = [o.subscribe(check) for o in observed]
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    finally:
        for u in unsubscribe:
            u()


async def screenshot(path: Path) -> Path:
    """Save the window as PNG at `path` (after the pending changes are drawn)."""
    await next_frames(3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = Window.screenshot(name=str(path.with_name(path.stem + "-shot.png")))
    os.replace(written, path)
    return path


async def launch(app) -> asyncio.Task:
    """Start `app` (a FlashTerminalApp) on this loop; return once its first screen is up.
    A failure while building (a .kv error) is raised here instead of hanging the caller."""
    from terminal.app.ui.app import run_app

    running = asyncio.ensure_future(run_app(app))
    started = asyncio.ensure_future(app.started.wait())
    await asyncio.wait([running, started], return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        started.cancel()
        running.result()  # raises the build error
        raise RuntimeError("the app stopped before its first screen")
    return running
