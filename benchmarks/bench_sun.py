"""SUN verifications per second on one core: plain pycryptodome versus terminal.protocols.boltcard.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_sun.py [--rounds N] [--batch N]

Each implementation verifies genuine taps (one card with many counters, or 64 cards of one
deterministic issuer) in `rounds` batches. Rounds are interleaved across implementations and timed
in process CPU time, so other load on the machine skews every row alike. The table shows the median
and 95th percentile time per verification across rounds and the median rate against the baseline.
"""

from __future__ import annotations

import argparse
import hmac
import os
import statistics
import time
from collections.abc import Callable

from Crypto.Cipher import AES
from Crypto.Hash import CMAC

from hw.ntag424.crypto import aes_ecb_encrypt, sdm_mac
from terminal.protocols.boltcard import (
    DeterministicIssuer,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
    SunVerifier,
    derive_card_keys,
    verify_sun,
)

SV2_LABEL = bytes.fromhex("3CC300010080")


def baseline_verify(p: bytes, c: bytes, k1: bytes, k2: bytes) -> bool:
    """What a straightforward implementation does: new cipher and two CMAC objects per tap."""
    plain = AES.new(k1, AES.MODE_ECB).decrypt(p)
    if plain[0] != 0xC7:
        return False
    uid, ctr = plain[1:8], plain[8:11]
    session_key = CMAC.new(k2, SV2_LABEL + uid + ctr, ciphermod=AES).digest()
    mac = CMAC.new(session_key, ciphermod=AES).digest()[1::2]
    return hmac.compare_digest(mac, c)


def make_tap(k1: bytes, k2: bytes, uid: bytes, counter: int) -> tuple[bytes, bytes]:
    ctr = counter.to_bytes(3, "little")
    p = aes_ecb_encrypt(k1, b"\xc7" + uid + ctr + os.urandom(5))
    return p, sdm_mac(k2, uid, ctr)


def to_url(p: bytes, c: bytes) -> str:
    return f"lnurlw://card.example.com/ln?p={p.hex().upper()}&c={c.hex().upper()}"


def measure(cases: list[tuple[str, Callable[[int], None]]], batch: int, rounds: int,
            ) -> dict[str, list[float]]:
    """CPU seconds per verification for each implementation and round (after a warm-up)."""
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _, fn in cases:
        fn(batch)
    for _ in range(rounds):
        for name, fn in cases:
            start = time.process_time()
            fn(batch)
            samples[name].append((time.process_time() - start) / batch)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    n_cards = 64
    issuer_key = os.urandom(16)
    uids = [b"\x04" + os.urandom(6) for _ in range(n_cards)]
    card_keys = [derive_card_keys(issuer_key, uid, 1) for uid in uids]
    k1 = card_keys[0].k1  # shared by every card of the issuer
    k2 = card_keys[0].k2
    single = [make_tap(k1, k2, uids[0], n) for n in range(1, 257)]  # one card, many taps
    many = [make_tap(k1, keys.k2, uid, 7) for uid, keys in zip(uids, card_keys, strict=True)]
    many_urls = [to_url(p, c) for p, c in many]

    deterministic = Keyring([DeterministicIssuer("bench", issuer_key)])
    table = Keyring([KeyTableIssuer("table", [KeyTableCard(k1=k1, k2=k2, uid=uids[0])])])
    single_urls = [to_url(p, c) for p, c in single]
    verifier = SunVerifier(k1, k2)

    assert all(baseline_verify(p, c, k1, k2) for p, c in single)
    assert all(verify_sun(p, c, k1, k2).valid for p, c in single)
    assert all(deterministic.verify_tap(url).valid for url in many_urls)
    assert all(table.verify_tap(url).valid for url in single_urls)

    def loop(taps, call):
        def run(batch: int) -> None:
            n = len(taps)
            for i in range(batch):
                call(taps[i % n])
        return run

    cases: list[tuple[str, Callable[[int], None]]] = [
        ("baseline: AES.new + CMAC.new x2 (bytes)",
         loop(single, lambda t: baseline_verify(t[0], t[1], k1, k2))),
        ("verify_sun(p, c, k1, k2) (bytes)",
         loop(single, lambda t: verify_sun(t[0], t[1], k1, k2))),
        ("SunVerifier(k1, k2).verify (bytes)", loop(single, lambda t: verifier.verify(*t))),
        ("Keyring key table: verify_tap(URL)", loop(single_urls, table.verify_tap)),
        ("Keyring deterministic, 64 cards: verify_tap(URL)",
         loop(many_urls, deterministic.verify_tap)),
    ]
    measured = measure(cases, args.batch, args.rounds)
    results = [(name, measured[name]) for name, _ in cases]
    base_rate = 1 / statistics.median(results[0][1])

    print(f"SUN verification, one core (CPU time), {args.rounds} rounds x {args.batch} taps")
    header = f"{'implementation':<50} {'median us':>10} {'p95 us':>8} {'verif/s':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, samples in results:
        median = statistics.median(samples)
        rate = 1 / median
        print(f"{name:<50} {median * 1e6:>10.2f} {percentile(samples, 0.95) * 1e6:>8.2f} "
              f"{rate:>9,.0f} {rate / base_rate:>5.2f}x")


if __name__ == "__main__":
    main()
