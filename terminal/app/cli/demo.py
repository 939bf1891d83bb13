"""`flash-terminal demo`: the terminal against an in-process sandbox and simulated cards.

Windowed by default (the demo strip taps cards A, B or a blank one, pays the QR as a phone
wallet would, and switches the network off and on). `--headless` runs one sale in the console
(exit 0 when paid, 4 otherwise); `--headless --script FILE [--json]` runs a cashier's journey
step by step (see `terminal.app.demo_script`; a contract: exit 0 when every step ran, 2 on a
malformed script).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from terminal.app.display import DIRECT_SDL_DRIVERS, has_display

__all__ = ["DIRECT_SDL_DRIVERS", "has_display", "register"]

EXIT_OK, EXIT_USAGE = 0, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the terminal against a local sandbox")
    parser.add_argument("--headless", action="store_true",
                        help="no window: one sale in the console (exit 0 when paid), or --script")
    parser.add_argument("--script", type=Path, metavar="FILE",
                        help="headless: run these cashier steps, one per line")
    parser.add_argument("--json", action="store_true",
                        help="with --script: one JSON object per step")
    parser.add_argument("--amount", default="5.00", help="headless sale amount in USD")
    parser.add_argument("--card", choices=("A", "B"), default="A",
                        help="headless: the card to tap (A funded, B nearly empty)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="keep the sandbox and terminal state here (default: a temp dir)")
    parser.set_defaults(handler=_demo, parser=parser)


def _demo(args: argparse.Namespace) -> int:
    if args.script is not None:
        return _script(args)
    if not args.headless and not has_display():
        print("No display found ($DISPLAY and $WAYLAND_DISPLAY are unset): running the "
              "headless demo instead (one sale in the console).", file=sys.stderr)
        args.headless = True
    if args.headless:
        from terminal.app.demo_script import run_headless

        return asyncio.run(run_headless(args.amount, args.card, sys.stdout, work_dir=args.data))
    os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")  # no xclip/xsel needed (no CRITICAL log)
    # Kivy's own log mode makes the root logger log everything (DEBUG too: a failure's traceback,
    # meant for the log only, reached stderr) and rewrites stderr; Python's keeps our levels.
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from terminal.app.demo_window import run_demo_window

    return run_demo_window(args.data)


def _script(args: argparse.Namespace) -> int:
    from terminal.app.demo_script import ScriptError, parse_script, run_script

    try:
        text = args.script.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"flash-terminal demo: cannot read the script {args.script}: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        steps = parse_script(text)
    except ScriptError as exc:
        print(f"flash-terminal demo: {args.script}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(run_script(steps, sys.stdout, as_json=args.json, work_dir=args.data))
