"""Touchscreen app: cold start to the Sale screen, RSS after one sale, and the transition time
after a paid notification (offscreen window, in-process sandbox).

    SDL_VIDEODRIVER=offscreen .venv/bin/python benchmarks/bench_ui.py [--runs 5] [--sales 10]

Each run is a fresh process (a cold start: imports, Kivy window and GL context, sandbox, terminal).
Goals (issue 5): cold start <= 3 s, RSS <= 150 MB, transition <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys, tempfile, time
T0 = float(sys.argv[1]); SALES = int(sys.argv[2])
from pathlib import Path
from terminal.app.demo import DemoEnvironment
from terminal.app.ui.app import FlashTerminalApp
from terminal.app.ui.driver import launch, next_frames, until
from terminal.app.ui.viewmodels import Screen
from kivy.core.window import Window

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

async def main():
    Window.size = (800, 480)
    env = await DemoEnvironment.start(Path(tempfile.mkdtemp()))
    c = env.controller()
    app = FlashTerminalApp(c, demo=env, config=env.config)
    running = await launch(app)
    await next_frames(1)
    cold = time.time() - T0
    await until(c, lambda: c.status.online is True)
    transitions = []
    rss_after_one = None
    for i in range(SALES):
        c.sale.entry.type("1")
        await c.charge(c.sale.next())
        bolt11 = c.pay.invoice.bolt11
        drawn = asyncio.get_running_loop().create_future()
        def on_current(_mgr, name):
            if name == "result" and not drawn.done():
                drawn.set_result(None)
        app.manager.bind(current=on_current)
        t = time.perf_counter()
        env.pay_qr(bolt11)                         # the wallet pays: settlement is pushed
        await drawn                                # the Result screen is current...
        await next_frames(1)                       # ...and drawn
        transitions.append((time.perf_counter() - t) * 1000)
        app.manager.unbind(current=on_current)
        if rss_after_one is None:
            rss_after_one = rss_mb()
        c.result_done()
    app.stop()
    await running
    await env.stop()
    print(json.dumps({"cold_s": cold, "rss_mb": rss_after_one, "transitions_ms": transitions}))

asyncio.run(main())
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sales", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "SDL_VIDEODRIVER": os.environ.get("SDL_VIDEODRIVER", "offscreen"),
           "KIVY_NO_ARGS": "1", "KIVY_NO_FILELOG": "1", "KIVY_NO_CONSOLELOG": "1",
           "PYTHONPATH": str(ROOT)}
    cold, rss, transitions = [], [], []
    for _ in range(args.runs):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CHILD, repr(t0), str(args.sales)], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            print(out.stdout, out.stderr, file=sys.stderr)
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        cold.append(result["cold_s"] * 1000)
        rss.append(result["rss_mb"])
        transitions.extend(result["transitions_ms"])
    print(f"{'measure':<44}{'n':>5}{'median':>10}{'p95':>10}  goal")
    for name, values, _unit, goal in (
        ("cold start to Sale screen drawn (ms)", cold, "ms", "<= 3000"),
        ("RSS after one sale (MB)", rss, "MB", "<= 150"),
        ("paid notification -> Result drawn (ms)", transitions, "ms", "<= 100"),
    ):
        print(f"{name:<44}{len(values):>5}{statistics.median(values):>10.1f}"
              f"{pct(values, 95):>10.1f}  {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
