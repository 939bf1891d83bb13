"""`flash-terminal demo`: the terminal against an in-process sandbox and two simulated cards.

Windowed by default (taps with the "Tap card A / B" buttons or keys 1/2, "Pay QR" settles the
invoice as a phone wallet would). `--headless` runs one scripted sale in the console and exits 0
when it was paid (4 otherwise): it needs no display.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the terminal against a local sandbox")
    parser.add_argument("--headless", action="store_true",
                        help="one scripted sale in the console, no window (exit 0 when paid)")
    parser.add_argument("--amount", default="5.00", help="headless sale amount in USD")
    parser.add_argument("--card", choices=("A", "B"), default="A",
                        help="headless: the card to tap (A funded, B nearly empty)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="keep the sandbox and terminal state here (default: a temp dir)")
    parser.set_defaults(handler=_demo)


# SDL drivers that draw without X or Wayland: the Pi's KMS/DRM console and the offscreen one.
DIRECT_SDL_DRIVERS = ("kmsdrm", "offscreen")


def has_display() -> bool:
    """A window can open: an X or Wayland display, or an SDL driver that needs neither (the
    kiosk service sets SDL_VIDEODRIVER=kmsdrm; tests and screenshots use offscreen)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("SDL_VIDEODRIVER") in DIRECT_SDL_DRIVERS)


def _demo(args: argparse.Namespace) -> int:
    from terminal.app.demo import headless

    if not args.headless and not has_display():
        print("No display found ($DISPLAY and $WAYLAND_DISPLAY are unset): running the demo "
              "--headless instead (a scripted sale in the console).", file=sys.stderr)
        args.headless = True
    if args.headless:
        return headless(args.amount, args.card, args.data)
    os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")  # no xclip/xsel needed (no CRITICAL log)
    from terminal.app.ui.app import run_demo_window

    return run_demo_window(args.data)
