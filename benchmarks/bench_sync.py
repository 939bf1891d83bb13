"""Sync drain of N queued offline payouts against the sandbox, in two modes.

`--mode cost` (default): the terminal's own cost (issue 12: ≤ 2 ms of terminal CPU per payout,
1,000 payouts ≤ 5 s). Flash's rate limits are switched off on both sides (the sandbox and the
terminal's budget), so the drain goes as fast as the terminal can.

`--mode paced` (issue 10): a drain with Flash's limits ON, in the sandbox as Flash enforces them
and in the terminal's budget: 20 invoices per 120 s per account, then 300 s blocked. Goal: no
payout failed, no block tripped, time within 10 % of the limit's minimum (N/20 windows: 20 min
for 200). `--scale F` makes every window F times as long (0.05: a 6 s window) so it runs in a
minute; `--scale 1` is the real thing.

Taps are queued through the real `Checkout` while invoice creation fails (sandbox fault), then a
`SyncWorker` drains them over loopback HTTP: per payout an invoice, the LNURL GET, the callback
and a status check, with the ledger's write-ahead fsyncs.

The sandbox stands in for Flash and the card issuer, which are other machines in the field. By
default it runs in its own process (`--sandbox process`), so this process's CPU time is the
terminal's alone; `--sandbox thread` keeps the old arrangement (a `SandboxThread` sharing this
interpreter and its GIL). Either way the sandbox keeps its state in memory during the drain
unless `--durable-sandbox` (its whole-state fsynced rewrite per change grows with every invoice,
so at 1,000 the sandbox, not the terminal, would dominate).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sync.py [--payouts 1000] [--cards 100]
        [--sandbox process|thread] [--durable-sandbox] [--runs 3]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_sync.py --mode paced [--payouts 200]
        [--scale 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.sync_rig import Rig  # noqa: E402

from terminal.adapters.backends.budget import BackendBudget  # noqa: E402
from terminal.adapters.books.ledger import Ledger  # noqa: E402
from terminal.app.config import load_config  # noqa: E402
from terminal.core.budget import (  # noqa: E402
    FLASH_INVOICE_LIMIT,
    WindowLimit,
)
from terminal.services.sync import SyncPolicy  # noqa: E402

SANDBOX_HANDLERS = ("create_invoice", "withdraw_request", "withdraw_check", "withdraw_pay",
                    "query_status")
NO_LIMIT = WindowLimit("no limit", 10**9, 60.0)  # the cost mode: the backend's rate is not tested
GOAL_PAYOUTS = 1000
GOAL_S = 5.0  # issue 12: 1,000 payouts in 5 s against the sandbox in its own process
GOAL_CPU_MS = 2.0  # issue 12: terminal CPU per payout
READY_LINE = "sandbox serving on "
START_TIMEOUT_S = 30.0


def _time_handlers(core: Any) -> list[float]:
    """Wrap the sandbox core's request handlers to time its own work (on its loop thread)."""
    spent: list[float] = []
    for name in SANDBOX_HANDLERS:
        original = getattr(core, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        setattr(core, name, timed)
    return spent


# ------------------------------------------------------------------------------ sandbox process


def _limits(spec: str):
    """"off": no rate limits; "flash:F": Flash's, every window F times as long."""
    from terminal.sandbox import UNLIMITED, FlashLimits

    if spec == "off":
        return UNLIMITED
    scale = float(spec.split(":", 1)[1])
    return dataclasses.replace(FlashLimits().scaled(scale), usd_invoice_expiry_s=60.0,
                               expired_push_delay_s=1.0, purge_after_s=24 * 3600.0)


def serve_sandbox(data_dir: Path, durable: bool, limits: str = "off") -> None:
    """Child process: a sandbox on a free port, driven by lines on stdin.

    `mark` starts the measured window (and, unless durable, drops per-change state writes);
    `report` answers one JSON line with the handler time and process CPU since `mark`;
    end of input stops it (so it also ends if the benchmark dies)."""
    from terminal.sandbox.server import Sandbox

    async def run() -> None:
        sandbox = Sandbox(data_dir, limits=_limits(limits))
        await sandbox.start()
        sandbox.write_terminal_config()
        core = sandbox.core
        print(f"{READY_LINE}{sandbox.url}", flush=True)
        loop = asyncio.get_running_loop()
        spent: list[float] = []
        cpu_mark = time.process_time()
        try:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                command = line.strip()
                if command == "mark":
                    if not durable:
                        core.store.save_state = lambda state: None
                    spent = _time_handlers(core)
                    cpu_mark = time.process_time()
                    print("ok", flush=True)
                elif command == "report":
                    print(json.dumps({"handler_s": sum(spent),
                                      "cpu_s": time.process_time() - cpu_mark}), flush=True)
        finally:
            await sandbox.stop()

    asyncio.run(run())


class SandboxProcess:
    """The parent's handle on the child sandbox: admin calls over HTTP, control over stdin."""

    def __init__(self, data_dir: Path, durable: bool, limits: str = "off") -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--serve-sandbox",
                   str(data_dir), "--sandbox-limits", limits]
        if durable:
            command.append("--durable-sandbox")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.url = self._wait_ready()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.data_dir = data_dir
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def _wait_ready(self) -> str:
        """The URL from the child's first line, "sandbox serving on http://127.0.0.1:PORT"."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        if not ready:
            self.proc.kill()
            raise TimeoutError("sandbox process did not start")
        line = self.proc.stdout.readline()
        if not line.startswith(READY_LINE):
            raise RuntimeError(f"sandbox process did not start (exit {self.proc.wait()})")
        return line[len(READY_LINE):].strip()

    def _command(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def mark(self) -> None:
        if self._command("mark") != "ok":
            raise RuntimeError("sandbox process did not acknowledge the mark")

    def report(self) -> dict[str, float]:
        return json.loads(self._command("report"))

    # The part of the SandboxThread surface that `Rig` uses.
    def register_card(self, uid: bytes, balance_sats: int, **options: Any) -> dict[str, Any]:
        response = self.http.post("/sandbox/cards",
                                  json={"uid": uid.hex(), "balance_sats": balance_sats, **options})
        response.raise_for_status()
        return response.json()

    def set_faults(self, **changes: Any) -> None:
        self.http.post("/sandbox/faults", json=changes).raise_for_status()

    def limit_state(self) -> dict[str, Any]:
        return self.http.get("/sandbox/limits").json()

    def stop(self) -> None:
        self.http.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # end of input: the child stops its server and exits
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)


class ProcessRig(Rig):
    """`Rig` (ledger, terminal parts, queueing) against a sandbox in another process."""

    def __init__(self, tmp: Path, durable: bool, scale: float | None = None) -> None:  # noqa: D107
        self.tmp = tmp
        self.scale = scale  # None: no rate limits on either side
        limits = "off" if scale is None else f"flash:{scale}"
        self.sb = SandboxProcess(tmp / "sandbox", durable, limits)
        self.config_path = self.sb.data_dir / "terminal.toml"
        self.config = load_config(self.config_path)
        self.clock = time.time
        self.ledger = Ledger(tmp / "ledger.jsonl", clock=self.clock)
        self.gets = Counter()
        self.get_order = []

    def parts(self, **backend_options):
        if self.scale is None:
            backend_options.setdefault("budget", BackendBudget(invoices=NO_LIMIT,
                                                               api_key=NO_LIMIT))
        return self.backend(**backend_options), self._withdraw()

    def _withdraw(self):
        from terminal.app.root import build_withdraw_client

        return build_withdraw_client(self.config)


# ------------------------------------------------------------------------------ benchmark


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[int(q * (len(sorted_values) - 1))]


async def _drain(rig: Rig, args: argparse.Namespace, per_item: list[float]):
    options = {}
    if args.mode == "cost":  # the terminal's own cost: no budget pacing either
        options["budget"] = BackendBudget(invoices=NO_LIMIT, api_key=NO_LIMIT)
    backend, withdraw = rig.parts(**options)
    worker = rig.worker(backend, withdraw, concurrency=args.concurrency,
                        policy=SyncPolicy(budget_wait_s=0.0), clock=time.time)
    original = worker._submit

    async def timed_submit(payout, state):
        t0 = time.perf_counter()
        try:
            return await original(payout, state)
        finally:
            per_item.append(time.perf_counter() - t0)

    worker._submit = timed_submit
    try:
        if args.mode == "paced":
            return await worker.drain(timeout_s=args.timeout), backend.status_requests
        return await worker.run_once(), backend.status_requests
    finally:
        await backend.aclose()
        await withdraw.aclose()


@dataclass
class Run:
    queued_s: float
    drain_s: float
    per_item: list[float]  # sorted, seconds
    terminal_cpu_s: float  # this process (with the sandbox too in thread mode)
    terminal_sys_s: float  # of which in the kernel (fsyncs, sockets)
    sandbox_handler_s: float
    sandbox_cpu_s: float | None  # its process; None in thread mode
    paid: int
    failed: int
    status_requests: int
    journal_records: int  # ledger records written by the drain (each one fsynced, twice)
    blocks: int | None  # times Flash's invoice block tripped (paced mode)


def run_once(args: argparse.Namespace) -> Run:
    from terminal.sandbox import UNLIMITED

    in_process = args.sandbox == "thread"
    scale = args.scale if args.mode == "paced" else None
    with tempfile.TemporaryDirectory() as tmp:
        if in_process:
            rig = (Rig(Path(tmp), scale=scale) if scale is not None
                   else Rig(Path(tmp), limits=UNLIMITED))
        else:
            rig = ProcessRig(Path(tmp), args.durable_sandbox, scale)
        try:
            cards = [rig.new_card(10_000_000) for _ in range(args.cards)]
            taps = [(cards[i % args.cards], 1 + i // args.cards, 100) for i in range(args.payouts)]
            started = time.perf_counter()
            asyncio.run(rig.queue(taps))
            queued_s = time.perf_counter() - started
            if in_process:
                if not args.durable_sandbox:
                    rig.sb.core.store.save_state = lambda state: None  # state in memory only
                sandbox_spent = _time_handlers(rig.sb.core)
            else:
                rig.sb.mark()
            per_item: list[float] = []
            records_before = rig.ledger.counts()["journal_records"]
            cpu_started = time.process_time()
            sys_started = os.times().system
            started = time.perf_counter()
            if args.profile is not None:  # cProfile inflates small calls: shares, not times
                import cProfile

                with cProfile.Profile(time.process_time) as profile:  # CPU, not waits
                    report, status_requests = asyncio.run(_drain(rig, args, per_item))
                profile.dump_stats(args.profile)
            else:
                report, status_requests = asyncio.run(_drain(rig, args, per_item))
            drain_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            sys_s = os.times().system - sys_started
            journal_records = rig.ledger.counts()["journal_records"] - records_before
            if in_process:
                sandbox: dict[str, Any] = {"handler_s": sum(sandbox_spent), "cpu_s": None}
            else:
                sandbox = rig.sb.report()
            blocks = rig.sb.limit_state()["invoice_blocks"] if scale is not None else None
        finally:
            rig.close()
    if args.mode == "cost":
        assert report.paid == args.payouts, report.to_json()["items"][:3]
    return Run(queued_s, drain_s, sorted(per_item), cpu_s, sys_s, sandbox["handler_s"],
               sandbox["cpu_s"], report.paid, report.failed, status_requests, journal_records,
               blocks)


def _rows(run: Run, payouts: int) -> list[tuple[str, str]]:
    rows = [
        ("paid / failed", f"{run.paid}/{run.failed}"),
        ("drain wall time (s)", f"{run.drain_s:.2f}"),
        ("payouts per second", f"{payouts / run.drain_s:.1f}"),
        ("per payout, median (ms)", f"{statistics.median(run.per_item) * 1000:.1f}"),
        ("per payout, p95 (ms)", f"{_percentile(run.per_item, 0.95) * 1000:.1f}"),
        ("status requests (batched)", f"{run.status_requests}"),
        ("ledger records written per payout", f"{run.journal_records / payouts:.2f}"),
        ("sandbox request handlers, total (s)", f"{run.sandbox_handler_s:.2f}"),
    ]
    if run.sandbox_cpu_s is None:
        return rows + [
            ("CPU of this process: terminal + sandbox (s)", f"{run.terminal_cpu_s:.2f}"),
            ("drain minus sandbox handlers (s)", f"{run.drain_s - run.sandbox_handler_s:.2f}"),
        ]
    share = run.sandbox_cpu_s / (run.terminal_cpu_s + run.sandbox_cpu_s)
    user_s = run.terminal_cpu_s - run.terminal_sys_s
    return rows + [
        ("terminal CPU, this process (s)", f"{run.terminal_cpu_s:.2f}"),
        ("terminal CPU per payout (ms)", f"{run.terminal_cpu_s / payouts * 1000:.2f}"),
        ("  of which user / kernel (ms)",
         f"{user_s / payouts * 1000:.2f}/{run.terminal_sys_s / payouts * 1000:.2f}"),
        ("sandbox CPU, its process (s)", f"{run.sandbox_cpu_s:.2f}"),
        ("sandbox share of the CPU used (%)", f"{100 * share:.0f}"),
    ]


def _table(runs: list[Run], args: argparse.Namespace) -> None:
    columns = [_rows(r, args.payouts) for r in runs]
    heads = [f"run {n + 1}" for n in range(len(runs))] if len(runs) > 1 else ["value"]
    print(f"{'measure':<46}" + "".join(f"{h:>10}" for h in heads))
    for i, (name, _value) in enumerate(columns[0]):
        print(f"{name:<46}" + "".join(f"{col[i][1]:>10}" for col in columns))


def _cost_goal(runs: list[Run], args: argparse.Namespace) -> None:
    drain_s = statistics.median(r.drain_s for r in runs)
    cpu_ms = statistics.median(r.terminal_cpu_s / args.payouts * 1000 for r in runs)
    label = "median drain" if len(runs) > 1 else "drain"
    if args.payouts != GOAL_PAYOUTS:  # judged per 1,000, linearly scaled
        drain_s *= GOAL_PAYOUTS / args.payouts
        label += f" scaled to {GOAL_PAYOUTS:,}"
    print(f"goal: ≤ {GOAL_S:.0f} s for {GOAL_PAYOUTS:,} → {label} {drain_s:.2f} s: "
          f"{'met' if drain_s <= GOAL_S else 'NOT met'}")
    if args.sandbox == "process":
        print(f"goal: terminal CPU ≤ {GOAL_CPU_MS:.0f} ms per payout → median {cpu_ms:.2f} ms: "
              f"{'met' if cpu_ms <= GOAL_CPU_MS else 'NOT met'}")


def _paced_goal(runs: list[Run], args: argparse.Namespace) -> None:
    window = FLASH_INVOICE_LIMIT.duration_s * args.scale
    points = FLASH_INVOICE_LIMIT.points
    minimum = math.ceil(args.payouts / points) * window  # N/20 windows (20 min for 200)
    earliest = (math.ceil(args.payouts / points) - 1) * window  # the last window's opening
    drain_s = statistics.median(r.drain_s for r in runs)
    print(f"Flash's limit: {points} invoices per {window:g} s window "
          f"({FLASH_INVOICE_LIMIT.duration_s:g} s × scale {args.scale:g}), then "
          f"{FLASH_INVOICE_LIMIT.block_s * args.scale:g} s blocked")
    print(f"the limit's minimum for {args.payouts}: {minimum:.1f} s ({args.payouts}/{points} "
          f"windows); the last window cannot open before {earliest:.1f} s")
    ok = all(r.failed == 0 and r.paid == args.payouts and r.blocks == 0 for r in runs)
    ratio = drain_s / minimum
    print(f"goal: all paid, none failed, no block tripped → "
          f"{'met' if ok else 'NOT met'} (blocks: {[r.blocks for r in runs]})")
    print(f"goal: within 10 % of the minimum → median {drain_s:.1f} s = {ratio:.3f} × "
          f"minimum: {'met' if ratio <= 1.10 else 'NOT met'} "
          f"({drain_s / earliest:.3f} × the last window's opening)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("cost", "paced"), default="cost")
    parser.add_argument("--payouts", type=int, default=None,
                        help="default: 1,000 (cost), 200 (paced)")
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", type=float, default=0.05,
                        help="paced mode: Flash's windows times this (1 = real time)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="paced mode: give up after this many seconds")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat with a fresh sandbox and ledger; the table shows each run "
                        "and the goal is judged on the median")
    parser.add_argument(
        "--sandbox", choices=("process", "thread"), default="process",
        help="run the sandbox in its own process (default: the terminal's CPU is measured "
        "alone) or in a thread of this one (the two share one interpreter and GIL)")
    parser.add_argument(
        "--durable-sandbox", action="store_true",
        help="keep the sandbox's own fsynced whole-state rewrite on every change (it grows with "
        "every invoice, so the sandbox, not the terminal, dominates at 1,000)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="write a cProfile of the (last) drain to FILE (pstats format)")
    parser.add_argument("--serve-sandbox", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-limits", default="off", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox is not None:
        serve_sandbox(args.serve_sandbox, args.durable_sandbox, args.sandbox_limits)
        return
    if args.payouts is None:
        args.payouts = GOAL_PAYOUTS if args.mode == "cost" else 200
    if args.timeout is None:
        window = FLASH_INVOICE_LIMIT.duration_s * args.scale
        args.timeout = 3 * math.ceil(args.payouts / 19) * window + 60
    logging.disable(logging.WARNING)  # one "offline mode" line per queued sale otherwise
    runs = [run_once(args) for _ in range(args.runs)]
    where = "a thread of this process" if args.sandbox == "thread" else "its own process"
    queued = ", ".join(f"{r.queued_s:.1f}" for r in runs)
    limits = ("Flash's limits on, windows × " + f"{args.scale:g}" if args.mode == "paced"
              else "rate limits off")
    print(f"sync drain ({args.mode}): {args.payouts} payouts, {args.cards} cards, "
          f"concurrency {args.concurrency} (queueing took {queued} s; sandbox in {where}, "
          f"state {'fsynced per change' if args.durable_sandbox else 'in memory'}; {limits})")
    _table(runs, args)
    if args.mode == "cost":
        _cost_goal(runs, args)
    else:
        _paced_goal(runs, args)


if __name__ == "__main__":
    main()
