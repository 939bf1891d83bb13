"""View models: what every screen shows and does, in plain Python (no Kivy), over the till."""

from terminal.app.ui.viewmodels.admin import AdminLock, Attempt
from terminal.app.ui.viewmodels.controller import Screen, TerminalController, UiSettings
from terminal.app.ui.viewmodels.history import HistoryViewModel
from terminal.app.ui.viewmodels.pay import PayViewModel
from terminal.app.ui.viewmodels.result import ResultViewModel
from terminal.app.ui.viewmodels.sale import SaleViewModel
from terminal.app.ui.viewmodels.status import StatusViewModel

__all__ = [
    "AdminLock", "Attempt", "HistoryViewModel", "PayViewModel", "ResultViewModel",
    "SaleViewModel", "Screen", "StatusViewModel", "TerminalController", "UiSettings",
]
