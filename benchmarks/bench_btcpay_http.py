"""CPU per BTCPay request: the backend's client (aiohttp, `json_endpoint.HttpClient`) against
httpx's `AsyncClient` as the backend used it before, and one whole `invoice_status` read.

The Greenfield fake (tests/fakes/btcpay_server) serves on loopback from a thread of this process;
only the client thread's CPU is counted (`time.thread_time`), so the server's work is not. Each
row: median over `--runs` runs of `--requests` kept-alive GETs of one invoice.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_btcpay_http.py [--requests 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from fakes.btcpay_server import DEFAULT_KEY, FakeBTCPay  # noqa: E402

from terminal.adapters.backends.btcpay import BTCPayBackend  # noqa: E402
from terminal.adapters.backends.json_endpoint import HttpClient  # noqa: E402
from terminal.core.ports.backend import Invoice, InvoiceRequest  # noqa: E402


async def per_request_us(call: Callable[[], Awaitable[object]], n: int) -> float:
    await call()  # the connection made, the pool warm
    started = time.thread_time()
    for _ in range(n):
        await call()
    return (time.thread_time() - started) / n * 1e6


async def measure(fake: FakeBTCPay, n: int) -> dict[str, float]:
    backend = BTCPayBackend(fake.base_url, fake.store_id, DEFAULT_KEY, network="regtest",
                            terminal_id="bench")
    invoice: Invoice = await backend.create_invoice(InvoiceRequest(
        amount_minor=1250, currency="JMD", memo="bench", idempotency_key="bench-1",
        expires_in_s=600))
    url = f"{fake.base_url}/api/v1/stores/{fake.store_id}/invoices/{invoice.backend_ref}"
    headers = {"Authorization": f"token {DEFAULT_KEY}", "Accept": "application/json"}
    aio = HttpClient(service="BTCPay", timeout_s=10.0, https=False)
    old = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
    try:
        return {
            "aiohttp HttpClient GET": await per_request_us(
                lambda: aio.request("GET", url, headers=headers), n),
            "httpx AsyncClient GET (before)": await per_request_us(
                lambda: old.request("GET", url, headers=headers), n),
            "BTCPayBackend.invoice_status": await per_request_us(
                lambda: backend.invoice_status(invoice), n),
        }
    finally:
        await aio.aclose()
        await old.aclose()
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    with FakeBTCPay() as fake:
        for _ in range(args.runs):
            for name, value in asyncio.run(measure(fake, args.requests)).items():
                rows.setdefault(name, []).append(value)
            fake.invoices.clear()
    print(f"{'client CPU per request (µs, median of runs)':<44} {'median':>8} {'min':>8}")
    for name, values in rows.items():
        print(f"{name:<44} {statistics.median(values):>8.0f} {min(values):>8.0f}")


if __name__ == "__main__":
    main()
