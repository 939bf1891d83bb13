"""What makes a state unmistakable: a tone (colour), an icon and words; decided here, not in
Kivy."""

from __future__ import annotations

import enum


class Tone(enum.Enum):
    NEUTRAL = "neutral"
    BUSY = "busy"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


# RGBA for each tone (the Kivy layer only looks them up).
COLOURS: dict[Tone, tuple[float, float, float, float]] = {
    Tone.NEUTRAL: (0.16, 0.18, 0.22, 1),
    Tone.BUSY: (0.10, 0.36, 0.70, 1),
    Tone.SUCCESS: (0.08, 0.55, 0.25, 1),
    Tone.WARNING: (0.85, 0.55, 0.05, 1),
    Tone.ERROR: (0.78, 0.13, 0.13, 1),
}

# Icons drawn with plain text glyphs present in Kivy's default font (Roboto).
ICONS: dict[Tone, str] = {
    Tone.NEUTRAL: "",
    Tone.BUSY: "…",
    Tone.SUCCESS: "✓",
    Tone.WARNING: "!",
    Tone.ERROR: "✕",
}
