"""BOLT11 decode: `terminal.protocols.bolt11` (ours) vs the `bolt11` package, median/p95 µs per
decode.

Inputs: every valid BOLT #11 spec vector plus a sandbox-minted invoice (what the terminal sees
from Flash) and one carrying `n` (signature verified against it instead of recovered).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_bolt11.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import bolt11 as pkg
from coincurve import PrivateKey

from terminal.protocols import bolt11 as ours
from terminal.sandbox.lightning import mint_invoice

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "bolt11.json"


def _inputs() -> list[str]:
    texts = [case["invoice"] for case in json.loads(VECTORS.read_text())["valid"]]
    key = PrivateKey(b"\x07" * 32)
    texts.append(mint_invoice(key.secret, "mainnet", 1_234_000, "Coffee", 300, 1_700_000_000)
                 .payment_request)
    tags = pkg.Tags()
    tags.add(pkg.TagChar.payment_hash, "00" * 32)
    tags.add(pkg.TagChar.payment_secret, "11" * 32)
    tags.add(pkg.TagChar.description, "with n")
    tags.add(pkg.TagChar.payee, key.public_key.format().hex())
    texts.append(pkg.encode(pkg.Bolt11(currency="bc", date=1_700_000_000, tags=tags,
                                       amount_msat=pkg.MilliSatoshi(5000)),
                            key.to_hex(), keep_payee=True))
    return texts


def _time(decode: Callable[[str], object], texts: list[str], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            decode(text)
            samples.append(time.perf_counter() - started)
    return sorted(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    texts = _inputs()
    for text in texts:  # same answer before timing anything
        assert ours.decode(text).payment_hash == pkg.decode(text).payment_hash
    rows = {
        "terminal.protocols.bolt11.decode": _time(ours.decode, texts, args.rounds * 10),
        "bolt11 package decode": _time(pkg.decode, texts, args.rounds),
    }
    print(f"BOLT11 decode, {len(texts)} invoices ({min(map(len, texts))}-"
          f"{max(map(len, texts))} chars)")
    print(f"{'decoder':<28}{'n':>7}{'median µs':>12}{'p95 µs':>12}")
    medians = {}
    for name, samples in rows.items():
        medians[name] = statistics.median(samples) * 1e6
        p95 = samples[int(0.95 * (len(samples) - 1))] * 1e6
        print(f"{name:<28}{len(samples):>7}{medians[name]:>12.1f}{p95:>12.1f}")
    ratio = medians["bolt11 package decode"] / medians["terminal.protocols.bolt11.decode"]
    print(f"speed-up (median): {ratio:.0f}x")


if __name__ == "__main__":
    main()
