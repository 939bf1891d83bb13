"""What the configuration schema costs: import time (once per command start) and the time to
load and check a configuration (once per command, or per enrollment), median and p95.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_config.py [--rounds N]

"import" rows start a fresh interpreter per round (`python -X importtime`) and read the cumulative
import time of the module: what every `flash-terminal` command pays before it does anything.
`parse_config` checks config.example.toml (already parsed TOML) against the schema;
`load_config` adds reading terminal.toml + secrets.toml, the merge and the file-mode checks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from terminal.app.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config.example.toml"


def import_ms(module: str) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in done.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"{module} not in the import trace")


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(name: str, samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    return f"| {name:<38} | {statistics.median(samples):9.3f} | {p95:9.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    raw = tomllib.loads(EXAMPLE.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        public = dict(raw)
        issuers = public.pop("issuers")
        (folder / "terminal.toml").write_text(EXAMPLE.read_text().split("[[issuers]]")[0])
        (folder / "secrets.toml").write_text(
            f'[[issuers]]\nname = "{issuers[0]["name"]}"\nissuer_key = '
            f'"{issuers[0]["issuer_key"]}"\n')
        os.chmod(folder / "secrets.toml", 0o600)
        rows = [
            row("import pydantic (ms)", [import_ms("pydantic") for _ in range(args.rounds)]),
            row("import terminal.app.config (ms)",
                [import_ms("terminal.app.config") for _ in range(args.rounds)]),
            row("parse_config(example) (ms)", timed(lambda: parse_config(raw), args.rounds * 20)),
            row("load_config(terminal+secrets) (ms)",
                timed(lambda: load_config(folder / "terminal.toml"), args.rounds * 20)),
        ]
    print(f"| {'what':<38} | {'median':>9} | {'p95':>9} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 11}|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
