"""The background work the kiosk runs beside the till: the offline queue's drain and the
hotlists' refresh (`terminal.services.sync.SyncWorker`, `terminal.services.hotlists`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol


class Drainer(Protocol):
    async def run_forever(self, stop: asyncio.Event) -> None: ...

    def drain_time_s(self) -> float | None:
        """How long the queue needs at the backend's limit (None: the limit is not the bound)."""
        ...


class Refresher(Protocol):
    def wait_s(self) -> float: ...
    async def refresh_due(self) -> Sequence[object]: ...
