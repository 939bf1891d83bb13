"""A software NTAG 424 DNA (card side) for tests and the tap simulator.

`SimulatedNtag424` answers command APDUs like the real chip; `CardState` is its non-volatile
memory, saved as JSON (0600, atomic). `nfcpy_device` puts the card under real nfcpy code.
"""

from hw.sim.card import SimulatedNtag424
from hw.sim.errors import CardStateError, SimulatorError
from hw.sim.secure_messaging import Session
from hw.sim.state import CardState, factory_state, load_state, save_state

__all__ = [
    "CardState",
    "CardStateError",
    "Session",
    "SimulatedNtag424",
    "SimulatorError",
    "factory_state",
    "load_state",
    "save_state",
]
