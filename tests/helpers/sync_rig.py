"""The sync worker's rig: a sandbox (Flash + issuer), the books, checkout and the worker,
with a clock a test can move and a withdraw client that "loses power" at a chosen step."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hw.ntag424.crypto import aes_ecb_encrypt, sdm_mac
from terminal.adapters.backends.budget import BackendBudget
from terminal.adapters.backends.flash import FlashBackend, RetryPolicy
from terminal.adapters.books.ledger import Ledger
from terminal.app.config import load_config
from terminal.app.root import build_backend, build_keyring, build_withdraw_client
from terminal.core.budget import FLASH_API_KEY_LIMIT, FLASH_INVOICE_LIMIT
from terminal.core.connectivity import Connectivity
from terminal.core.risk import OfflineLimits
from terminal.sandbox import FlashLimits, SandboxThread
from terminal.sandbox.issuer_keys import decrypt_p, k1_for
from terminal.services.checkout import Checkout
from terminal.services.sync import SyncPolicy, SyncWorker

FAST = SyncPolicy(base_delay_s=1.0, max_delay_s=60.0, settle_timeout_s=5.0,
                  callback_retry_s=0.01)
BIG_LIMITS = OfflineLimits(floor_limit_msat=10**12, per_card_cap_msat=10**15,
                           total_cap_msat=10**15, max_queued=100_000, max_age_s=10**9)


class SyncClock:
    """Wall time plus an offset a test can move (both directions)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class SimCard:
    card_id: str
    uid: bytes
    k1: bytes
    k2: bytes


class Rig:
    """A sandbox, a ledger and the terminal's own backend/withdraw/keyring built from config."""

    def __init__(self, tmp: Path, *, ledger_clock=None, sandbox_clock=None,
                 limits: FlashLimits | None = None, scale: float | None = None) -> None:
        """`scale`: Flash's windows and blocks that much shorter on both sides (the sandbox's
        limits and the terminal's budget), the numbers unchanged."""
        self.tmp = tmp
        self.scale = scale
        if limits is None and scale is not None:
            limits = dataclasses.replace(FlashLimits().scaled(scale),
                                         usd_invoice_expiry_s=60.0, expired_push_delay_s=1.0,
                                         purge_after_s=24 * 3600.0)
        self.sandbox_clock = sandbox_clock or SyncClock()
        self.sb = SandboxThread(tmp / "sandbox", clock=self.sandbox_clock, limits=limits).start()
        self.config_path = self.sb.write_terminal_config()
        self.config = load_config(self.config_path)
        self.clock = ledger_clock or time.time
        self.ledger = Ledger(tmp / "ledger.jsonl", clock=self.clock)
        self.gets: Counter[tuple[str, str]] = Counter()  # (p, c) -> GETs seen by the issuer
        self.get_order: list[tuple[str, int]] = []  # (card id, counter) in arrival order
        core = self.sb.core
        original = core.withdraw_request
        issuer_k1 = k1_for(core.keys.issuer_key)

        def counting(p: str, c: str):
            self.gets[(p.upper(), c.upper())] += 1
            try:
                picc = decrypt_p(issuer_k1, p)
                self.get_order.append((picc.uid.hex(), picc.counter))
            except Exception:  # noqa: BLE001 - the real handler reports bad data itself
                pass
            return original(p, c)

        core.withdraw_request = counting  # the route calls core.withdraw_request(p, c)

    def close(self) -> None:
        self.ledger.close()
        self.sb.stop()

    # -- cards and taps -------------------------------------------------------------------
    def new_card(self, balance_sats: int, **options) -> SimCard:
        uid = b"\x04" + os.urandom(6)
        keys = self.sb.register_card(uid, balance_sats, **options)
        return SimCard(keys["card_id"], uid, bytes.fromhex(keys["k1"]), bytes.fromhex(keys["k2"]))

    def tap_url(self, card: SimCard, counter: int) -> str:
        # The sandbox serves plain HTTP; an `lnurlw://` link always means https (LUD-17).
        ctr = counter.to_bytes(3, "little")
        p = aes_ecb_encrypt(card.k1, bytes([0xC7]) + card.uid + ctr + os.urandom(5))
        c = sdm_mac(card.k2, card.uid, ctr)
        return f"http://127.0.0.1:{self.sb.port}/ln?p={p.hex().upper()}&c={c.hex().upper()}"

    def balance_msat(self, card: SimCard) -> int:
        return self.sb.card_state(card.card_id)["balance_msat"]

    def gets_for(self, url: str) -> int:
        query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
        return self.gets[(query["p"].upper(), query["c"].upper())]

    # -- terminal parts -------------------------------------------------------------------
    def parts(self, **backend_options):
        if self.scale is None and not backend_options:
            return build_backend(self.config), build_withdraw_client(self.config)
        return self.backend(**backend_options), build_withdraw_client(self.config)

    def budget(self, clock=time.time) -> BackendBudget:
        """The terminal's budget file, on Flash's limits (scaled like the sandbox's)."""
        factor = self.scale or 1.0
        return BackendBudget(invoices=FLASH_INVOICE_LIMIT.scaled(factor),
                             api_key=FLASH_API_KEY_LIMIT.scaled(factor),
                             path=self.tmp / "flash-budget.json", clock=clock)

    def backend(self, **options) -> FlashBackend:
        flash = self.config.backend.flash
        options.setdefault("budget", self.budget(options.get("clock", time.time)))
        if "api_key" not in options:
            options.setdefault("username", flash.username)
        return FlashBackend(flash.http_url, flash.ws_url, network=self.config.network,
                            terminal_id="ft-test", **options)

    async def queue(self, taps: list[tuple[SimCard, int, int]]) -> list[str]:
        """Accept taps offline (invoice creation answers 502); returns the sale ids."""
        flash = self.config.backend.flash
        # No read retries: each offline sale finds the backend down at once.
        backend = FlashBackend(flash.http_url, None, username=flash.username,
                               network=self.config.network, retry=RetryPolicy(attempts=1))
        withdraw = build_withdraw_client(self.config)
        checkout = Checkout(
            backend=backend, withdraw=withdraw, keyring=build_keyring(self.config),
            ledger=self.ledger, terminal_id="ft-test", network=self.config.network,
            offline_limits=BIG_LIMITS, clock=self.clock,
        )
        self.sb.set_faults(server_error_next={"graphql": 10**9})
        sale_ids = []
        try:
            for card, counter, sats in taps:
                session = await checkout.open_sale(sats, "SAT")
                result = await session.tap(self.tap_url(card, counter))
                assert result.kind == "queued", result
                sale_ids.append(session.record.id)
        finally:
            self.sb.set_faults(server_error_next={})
            await backend.aclose()
            await withdraw.aclose()
        return sale_ids

    def worker(self, backend, withdraw, **kwargs) -> SyncWorker:
        kwargs.setdefault("policy", FAST)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("rng", random.Random(7))
        return SyncWorker(self.ledger, backend, withdraw, Connectivity(), terminal_id="ft-test",
                          **kwargs)

    async def sync_once(self, backend_options=None, **kwargs):
        backend, withdraw = self.parts(**(backend_options or {}))
        try:
            return await self.worker(backend, withdraw, **kwargs).run_once()
        finally:
            await backend.aclose()
            await withdraw.aclose()




def run(coro):
    return asyncio.run(coro)


class Crash(BaseException):
    """Stands in for a power cut at a chosen point (the kill tests do it for real)."""


class CrashingWithdraw:
    def __init__(self, inner, after: str) -> None:
        self.inner, self.after = inner, after

    async def fetch_request(self, url):
        result = await self.inner.fetch_request(url)
        if self.after == "get":
            raise Crash()
        return result

    async def submit(self, *args, **kwargs):
        result = await self.inner.submit(*args, **kwargs)
        if self.after == "callback":
            raise Crash()
        return result
