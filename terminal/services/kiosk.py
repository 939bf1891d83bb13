"""The terminal's background work beside the till, the same for the kiosk and the demo.

- rates: every `rate_refresh_s`, and every `rate_retry_s` while a currency cannot be priced (so a
  terminal back online prices again within seconds, not a minute);
- reconcile: at start (sales left open by a restart) and every `reconcile_s`, settle open sales
  and catch late payments, leaving alone the sale the till is driving; and resolve the refunds
  whose outcome is not known yet (from the wallet's transactions, never sent again);
- the sync worker: drains the offline queue whenever the backend is reachable;
- hotlists: the configured lists of blocked cards, at start, on their schedule and as soon as
  the backend link comes back (`terminal.services.hotlists`).

One failure never stops a loop; `stop` ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from terminal.core.ports.workers import Drainer, Refresher
from terminal.services.till import Till

log = logging.getLogger(__name__)
RECONCILE_S = 60.0


class Kiosk:
    def __init__(self, till: Till, sync: Drainer | None = None, *,
                 reconcile_s: float = RECONCILE_S, hotlists: Refresher | None = None) -> None:
        self.till = till
        self.sync = sync
        self.hotlists = hotlists
        self.reconcile_s = reconcile_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rates_now = asyncio.Event()
        if sync is not None:  # shown beside the offline exposure on the status bar
            till.use_drain_estimate(sync.drain_time_s)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._rates(), name="rates"),
            asyncio.create_task(self._reconcile(), name="reconcile"),
        ]
        if self.sync is not None:
            self._tasks.append(asyncio.create_task(self.sync.run_forever(self._stop),
                                                   name="sync"))
        if self.hotlists is not None:
            self._tasks.append(asyncio.create_task(self._hotlists(self.hotlists),
                                                   name="hotlists"))

    def refresh_rates_now(self) -> None:
        """Ask for the rates at once (the network just came back)."""
        self._rates_now.set()

    async def stop(self) -> None:
        self._stop.set()
        self._rates_now.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _every(self, seconds: Callable[[], float], work: Callable[[], Awaitable[None]],
                     name: str, wake: asyncio.Event | None = None) -> None:
        while not self._stop.is_set():
            try:
                await work()
            except Exception:  # one bad answer or record must not stop the loop for the day
                log.exception("%s pass failed", name)
            waiters = [asyncio.ensure_future(self._stop.wait())]
            if wake is not None:
                waiters.append(asyncio.ensure_future(wake.wait()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED),
                                       timeout=seconds())
            for waiter in waiters:
                waiter.cancel()
            if wake is not None:
                wake.clear()

    async def _rates(self) -> None:
        settings = self.till.settings

        def interval() -> float:
            missing = self.till.rates_missing or self.till.online is False
            return settings.rate_retry_s if missing else settings.rate_refresh_s

        await self._every(interval, self.till.refresh_rates, "rate refresh", self._rates_now)

    async def _reconcile(self) -> None:
        async def once() -> None:
            await self.till.checkout.recover(skip=self.till.active_sale_ids())
            refunds = self.till.refunds
            if refunds is not None:
                await refunds.resolve_open()  # refunds left unresolved (a crash, PENDING)

        await self._every(lambda: self.reconcile_s, once, "reconcile")

    async def _hotlists(self, refresher: Refresher) -> None:
        async def once() -> None:
            await refresher.refresh_due()

        await self._every(refresher.wait_s, once, "hotlist refresh")
