"""Command-line start-up: how long `flash-terminal …` takes before it does its work.

Each row starts a fresh Python process (`python -m <cli> ARGS`) `--runs` times and reports the
median and p95 wall time. `--baseline DIR` runs the same rows against another checkout (e.g. a
`git worktree` of an older commit, whose CLI module is given by `--baseline-module`), so both are
measured side by side in one run.

    python benchmarks/bench_startup.py [--runs 15] \
        [--baseline /tmp/base --baseline-module terminal.cli]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    ("--help", ["--help"]),
    ("card decode --help", ["card", "decode", "--help"]),
    ("charge --help", ["charge", "--help"]),
    ("charge (config loaded, then a usage error)", ["charge", "5", "--config", "{config}"]),
    ("history --help", ["history", "--help"]),
]


def _time(module: str, args: list[str], root: str, runs: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": root}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=root,
                              capture_output=True, text=True, check=False)
        if "No module named" in done.stderr:
            raise SystemExit(f"{module} is not importable from {root}: {done.stderr.strip()}")
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--baseline-module", default="terminal.cli")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "terminal.toml"
        config.write_text('[terminal]\nnetwork = "regtest"\n[backend]\nkind = "flash"\n'
                          '[backend.flash]\nhttp_url = "http://127.0.0.1:9/graphql"\n'
                          'username = "x"\n')
        targets = [("now", "terminal.app.cli", str(ROOT))]
        if args.baseline:
            targets.append(("baseline", args.baseline_module, str(args.baseline)))
        print(f"{'command':<46}" + "".join(f" {name + ' median':>16} {'p95':>7}"
                                          for name, _m, _r in targets) + "   ratio")
        for label, row in ROWS:
            cells, medians = [], []
            for _name, module, root in targets:
                median, p95 = _time(module, [a.format(config=config) for a in row], root,
                                    args.runs)
                medians.append(median)
                cells.append(f" {median:>13.0f} ms {p95:>4.0f} ms")
            ratio = f"   {medians[1] / medians[0]:.1f}x" if len(medians) == 2 else ""
            print(f"{label:<46}" + "".join(cells) + ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
