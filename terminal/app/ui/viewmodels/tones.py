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
    Tone.SUCCESS: (0.05, 0.46, 0.20, 1),
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

WHITE = (1.0, 1.0, 1.0, 1.0)
INK = (0.07, 0.07, 0.08, 1.0)
MIN_CONTRAST = 4.5  # WCAG AA for body text


def _luminance(rgba: tuple[float, float, float, float]) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour(tone: Tone) -> tuple[float, float, float, float]:
    """White on the tone's colour when it reads well enough, else near-black (amber warnings)."""
    background = COLOURS[tone]
    return WHITE if contrast(WHITE, background) >= MIN_CONTRAST else INK
