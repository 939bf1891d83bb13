"""View models: what every screen shows and does, in plain Python (no Kivy)."""

from terminal.app.ui.viewmodels.admin import AdminLock, Attempt
from terminal.app.ui.viewmodels.controller import Screen, TerminalController, UiSettings
from terminal.app.ui.viewmodels.history import HistoryViewModel, ListSource, SalesSource
from terminal.app.ui.viewmodels.keypad import AmountEntry
from terminal.app.ui.viewmodels.pay import PayPhase, PayViewModel, PinEntry
from terminal.app.ui.viewmodels.result import ResultInfo, ResultViewModel
from terminal.app.ui.viewmodels.sale import ChargeRequest, SaleStep, SaleViewModel
from terminal.app.ui.viewmodels.status import StatusViewModel
from terminal.app.ui.viewmodels.tip import TipChoice, TipSettings, tip_minor
from terminal.core.pins import hash_pin, verify_pin

__all__ = [
    "AdminLock", "AmountEntry", "Attempt", "ChargeRequest", "HistoryViewModel", "ListSource",
    "PayPhase", "PayViewModel", "PinEntry", "ResultInfo", "ResultViewModel", "SaleStep",
    "SaleViewModel", "SalesSource", "Screen", "StatusViewModel", "TerminalController",
    "TipChoice", "TipSettings", "UiSettings", "hash_pin", "tip_minor", "verify_pin",
]
