"""Whether a window can open here (the kiosk, the demo and the screenshots ask)."""

from __future__ import annotations

import os

# SDL drivers that draw without X or Wayland: the Pi's KMS/DRM console and the offscreen one.
DIRECT_SDL_DRIVERS = ("kmsdrm", "offscreen")


def has_display() -> bool:
    """A window can open: an X or Wayland display, or an SDL driver that needs neither (the
    kiosk service sets SDL_VIDEODRIVER=kmsdrm; tests and screenshots use offscreen)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("SDL_VIDEODRIVER") in DIRECT_SDL_DRIVERS)
