"""Errors of the simulated card.

`CardStatus` never leaves the card: it carries the status word the card answers with. The typed
errors below are for the people running the simulator (bad state files, bad arguments).
"""

from __future__ import annotations

from hw.sim.constants import Sw


class CardStatus(Exception):  # noqa: N818 - a status word, not a failure of the simulator
    """Abort the current command and answer `sw` (without MAC, ending any authentication)."""

    def __init__(self, sw: Sw, reason: str = ""):
        super().__init__(f"{sw.name} ({int(sw):04X}){': ' + reason if reason else ''}")
        self.sw = sw
        self.reason = reason


class SimulatorError(Exception):
    """Base class for errors in using the simulator itself."""


class CardStateError(SimulatorError):
    """A saved card state cannot be read: missing, unreadable, or not a simulated card's state."""
