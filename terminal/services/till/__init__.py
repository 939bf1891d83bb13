"""The till: the cashier's sale as one application service (see `till.py`)."""

from terminal.services.till.entry import AmountEntry, PinEntry
from terminal.services.till.model import (
    Notice,
    PayPhase,
    Result,
    ResultKind,
    Step,
    TillSettings,
)
from terminal.services.till.staff import Staff, StaffError
from terminal.services.till.till import Till

__all__ = [
    "AmountEntry", "Notice", "PayPhase", "PinEntry", "Result", "ResultKind", "Staff", "StaffError",
    "Step", "Till", "TillSettings",
]
