"""SIGKILL at random points while a child process writes the ledger: nothing acknowledged is lost.

The child adds and updates sales, payouts, card counters and events (events are capped, so old
ones are removed), with a tiny compaction threshold so kills also land inside compactions. Before
each write it prints the write it is about to make ("intent"), after it returns it prints "ack".
After each kill the parent reopens the ledger and checks that it equals its model with every
acknowledged write applied, plus possibly the one write that was in flight, and nothing else:
no lost write, no removed record coming back, no unreadable file.

Starting Python and importing the ledger costs ~80 ms, more than the writes between kills, so
each worker runs one small launcher script (a subprocess) that imports once and then forks one
writer per cycle, prints its pid and, once the parent has SIGKILLed it, its exit status. The
writer is a real separate process with its own open files: the kill is exactly as abrupt.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from terminal.adapters.books.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
KILLS_PER_WORKER = 110
WORKERS = 2
MAX_EVENTS = 4
CHILD_OPTIONS = {"max_events": MAX_EVENTS, "compact_min_bytes": 6000, "compact_ratio": 1.5}

LAUNCHER = r"""
import json, os, random, sys
from terminal.adapters.books.ledger import Ledger
from terminal.core.records import QueuedPayout, SaleRecord


def writer(path, seed, options, fifo):
    rng = random.Random(seed)
    out = open(fifo, "w")
    led = Ledger(path, **options)
    sales = [r.id for r in led.sales()]
    payouts = [p.id for p in led.payouts()]
    compactions = 0

    def say(kind, **fields):
        out.write(json.dumps({"k": kind, **fields}) + "\n")
        out.flush()

    say("ready")
    n = 0
    while True:
        n += 1
        uid = f"{seed}-{n}"
        roll = rng.random()
        if roll < 0.25 or not sales:
            op = {"op": "sale", "id": uid, "state": "created", "amount": rng.randrange(10**6)}
        elif roll < 0.5:
            op = {"op": "sale", "id": rng.choice(sales),
                  "state": rng.choice(["invoiced", "paid", "failed", "queued"]),
                  "amount": rng.randrange(10**6)}
        elif roll < 0.6 or not payouts:
            op = {"op": "payout", "id": uid, "status": "queued", "sats": rng.randrange(1, 5000)}
        elif roll < 0.72:
            op = {"op": "payout", "id": rng.choice(payouts),
                  "status": rng.choice(["submitting", "paid", "failed"]), "sats": None}
        elif roll < 0.85:
            op = {"op": "counter", "card": f"card-{rng.randrange(4)}",
                  "counter": rng.randrange(200)}
        else:
            op = {"op": "event", "kind": uid}
        say("intent", op=op)
        if op["op"] == "sale":
            record = led.get_sale(op["id"]) or SaleRecord(op["id"], float(n), 0, "SAT")
            record.state, record.amount_minor = op["state"], op["amount"]
            led.save_sale(record)
            if op["id"] not in sales:
                sales.append(op["id"])
        elif op["op"] == "payout":
            p = led.get_payout(op["id"])
            if p is None:
                p = QueuedPayout(op["id"], "s", None, op["sats"], "card-0", "iss", n,
                                 tap_url="lnurlw://x/ln?p=00&c=00", created_at=float(n))
                led.add_payout(p)
                payouts.append(op["id"])
            else:
                p.status = op["status"]
                led.save_payout(p)
        elif op["op"] == "counter":
            led.advance_counter(op["card"], "iss", op["counter"])
        else:
            led.log_event(op["kind"], "x")
        say("ack")
        if led._db.journal.compactions != compactions:
            compactions = led._db.journal.compactions
            say("compacted")


for command in sys.stdin:
    path, seed, fifo = command.split()
    pid = os.fork()
    if pid == 0:
        try:
            writer(path, int(seed), json.loads(sys.argv[1]), fifo)
        finally:
            os._exit(1)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
"""


def snapshot(led: Ledger) -> dict:
    payouts = {p.id: (p.status, p.amount_sats) for p in led.payouts()}
    return {
        "sales": {r.id: (r.state, r.amount_minor) for r in led.sales()},
        "payouts": payouts,
        "cards": {c.card_id: c.last_counter for c in led.cards()},
        "events": [e.kind for e in reversed(led.events(100))],
    }


def apply(model: dict, op: dict) -> dict:
    model = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in model.items()}
    if op["op"] == "sale":
        model["sales"][op["id"]] = (op["state"], op["amount"])
    elif op["op"] == "payout":
        if op["id"] in model["payouts"]:
            model["payouts"][op["id"]] = (op["status"], model["payouts"][op["id"]][1])
        else:
            model["payouts"][op["id"]] = (op["status"], op["sats"])
    elif op["op"] == "counter":
        if op["counter"] > model["cards"].get(op["card"], -1):
            model["cards"][op["card"]] = op["counter"]
    else:
        model["events"] = (model["events"] + [op["kind"]])[-MAX_EVENTS:]
    return model


class Launcher:
    """The launcher subprocess of one worker (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.fifo = directory / "writer.fifo"
        os.mkfifo(self.fifo)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, json.dumps(CHILD_OPTIONS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True,
        )

    def run_until_killed(self, path: Path, seed: int, rng: random.Random) -> list[dict]:
        self.process.stdin.write(f"{path} {seed} {self.fifo}\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        fd = os.open(self.fifo, os.O_RDONLY)  # returns once the writer has opened its end
        try:
            buffer = self._read_until_kill_point(fd, rng)
            os.kill(pid, signal.SIGKILL)
            while chunk := os.read(fd, 65536):  # printed before the kill: still acknowledged
                buffer += chunk
        finally:
            os.close(fd)
        status = int(self.process.stdout.readline())
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"the writer ended by itself (status {status})"
        )
        lines = buffer.split(b"\n")[:-1]  # a line cut by the kill is not an ack
        return [json.loads(line) for line in lines]

    @staticmethod
    def _read_until_kill_point(fd: int, rng: random.Random) -> bytes:
        buffer = b""
        deadline = None
        if rng.random() < 0.15:  # sometimes while the ledger is still opening (and repairing)
            deadline = time.monotonic() + rng.uniform(0.0, 0.005)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], timeout)
            if not readable:
                return buffer  # the random kill point has come
            chunk = os.read(fd, 65536)
            if not chunk:
                return buffer  # the writer died on its own: the status check will say why
            buffer += chunk
            if deadline is None and b'"ready"' in buffer:  # kill during the writes
                deadline = time.monotonic() + rng.uniform(0.005, 0.060)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


def kill_loop(directory: Path, worker: int) -> tuple[int, int, int]:
    rng = random.Random(1000 + worker)
    workdir = directory / f"worker-{worker}"
    workdir.mkdir()
    path = workdir / "ledger.jsonl"
    model = {"sales": {}, "payouts": {}, "cards": {}, "events": []}
    launcher = Launcher(workdir)
    try:
        return _cycles(launcher, path, rng, model, worker)
    finally:
        launcher.close()


def _cycles(launcher, path, rng, model, worker) -> tuple[int, int, int]:
    acked = compactions = 0
    for cycle in range(KILLS_PER_WORKER):
        messages = launcher.run_until_killed(path, worker * 100_000 + cycle, rng)
        in_flight = None
        for message in messages:
            if message["k"] == "intent":
                in_flight = message["op"]
            elif message["k"] == "ack":
                model = apply(model, in_flight)
                in_flight = None
                acked += 1
            elif message["k"] == "compacted":
                compactions += 1
        led = Ledger(path, **CHILD_OPTIONS)  # must always open
        on_disk = snapshot(led)
        led.close()
        candidates = [model] + ([apply(model, in_flight)] if in_flight else [])
        assert on_disk in candidates, f"cycle {cycle}: ledger differs from acknowledged writes"
        model = on_disk
    return KILLS_PER_WORKER, acked, compactions


def test_sigkill_never_loses_an_acknowledged_write(tmp_path):
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda w: kill_loop(tmp_path, w), range(WORKERS)))
    kills = sum(r[0] for r in results)
    acked = sum(r[1] for r in results)
    compactions = sum(r[2] for r in results)
    assert kills >= 200
    assert acked > kills  # the children did real work between kills
    assert compactions > 0  # and some kills fell around compactions
