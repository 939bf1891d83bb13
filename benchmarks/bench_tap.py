"""How long a simulated card tap takes through nfcpy: sense, RATS/ATS, NDEF read, SUN check.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tap.py [--taps 300]

Rows:
  sense + activate + NDEF read   nfcpy's ContactlessFrontend.sense, nfc.tag.activate (Type4ATag)
                                 and hw.nfc.read_tap: the reader thread's work for one tap
  ... + SUN verify               plus terminal.protocols.boltcard.verify_tap_url
  Reader thread, place -> event  hw.nfc.Reader end to end: card placed on the simulated antenna
                                 until the TapEvent reaches the consumer (includes the wait for
                                 the next poll, poll_interval below)
  ... over the PN532 emulator    the same, but through nfcpy's own pn532 driver and tty
                                 transport on a pty to the emulated PN532 in its own process
                                 (hw.sim.pn532_process): every command a PN532 frame, ACK and
                                 answer; needs write access to /dev for the link

Goal: median <= 15 ms for the full tap (sense, activation, read, SUN verify).
The card is hw.sim.card.SimulatedNtag424 programmed as a Boltcard with
terminal.protocols.boltcard.provisioning.program_boltcard, so every read renders a fresh
SDM-mirrored SUN URL.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import nfc
import nfc.tag

from hw.nfc import CardHandle, CardRemovedEvent, Reader, TapEvent, read_tap
from hw.ntag424.tag import Ntag424
from hw.sim.card import SimulatedNtag424
from hw.sim.nfcpy_device import SimReader, installed
from hw.sim.pn532_process import Pn532Process
from terminal.protocols.boltcard.provisioning import BoltcardKeys, program_boltcard

PATH = "sim:bench"
POLL_INTERVAL = 0.002
UID = bytes.fromhex("04DE5F1EACC040")
BASE_URL = "lnurlw://pay.example.com/ln"
KEYS = BoltcardKeys(*(bytes([n]) * 16 for n in range(0x20, 0x25)), version=1)


def make_card() -> tuple[SimulatedNtag424, Callable[[str], bool] | None]:
    """A Boltcard (programmed through the real command sequence) and its SUN check, if any."""
    card = SimulatedNtag424.factory(uid=UID)
    card.power_on()
    program_boltcard(Ntag424(card), KEYS, BASE_URL)
    card.deactivate()
    try:
        from terminal.protocols.boltcard import verify_tap_url
    except ImportError:
        return card, None

    def verify(uri: str) -> bool:
        return verify_tap_url(uri, KEYS.k1, KEYS.k2).valid

    return card, verify


def time_direct_taps(sim: SimReader, card: object, taps: int,
                     verify: Callable[[str], bool] | None) -> tuple[list[float], list[float]]:
    """Per tap: (sense+activate+read) and (that + SUN verify), in milliseconds."""
    read_ms, full_ms = [], []
    clf = nfc.ContactlessFrontend(PATH)
    try:
        for _ in range(taps):
            sim.place(card)
            start = time.perf_counter()
            target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
            tag = nfc.tag.activate(clf, target)
            event = read_tap(CardHandle(tag))
            read_done = time.perf_counter()
            assert isinstance(event, TapEvent), event
            if verify is not None:
                assert verify(event.uri), "SUN check failed"
            end = time.perf_counter()
            read_ms.append((read_done - start) * 1000)
            full_ms.append((end - start) * 1000)
            sim.remove()
    finally:
        clf.close()
    return read_ms, full_ms


def time_reader_taps(sim: SimReader | Pn532Process, card: object, taps: int,
                     path: str = PATH) -> list[float]:
    events: queue.Queue = queue.Queue()
    placed_at: list[float] = []
    latencies = []
    reader = Reader(path, events.put, poll_interval=POLL_INTERVAL,
                    presence_interval=POLL_INTERVAL)
    with reader:
        events.get(timeout=5)  # ReaderStatusEvent(READY)
        for _ in range(taps):
            placed_at.append(time.perf_counter())
            sim.place(card)
            while True:
                event = events.get(timeout=5)
                if isinstance(event, TapEvent):
                    latencies.append((time.perf_counter() - placed_at[-1]) * 1000)
                    break
            sim.remove()
            while not isinstance(events.get(timeout=5), CardRemovedEvent):
                pass
    return latencies


def time_pn532_taps(card: SimulatedNtag424, taps: int) -> list[float] | None:
    """Reader thread over nfcpy's pn532 driver and the emulated PN532 on a pty (None: no /dev)."""
    if not os.access("/dev", os.W_OK):
        return None
    with tempfile.TemporaryDirectory() as directory:
        card_file = os.path.join(directory, "card.json")
        card.save(card_file)
        with Pn532Process(f"/dev/ttyFLASHBENCH{os.getpid()}") as emulator:
            return time_reader_taps(emulator, card_file, taps, emulator.nfcpy_path)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=300)
    args = parser.parse_args(argv)

    card, verify = make_card()
    sim = SimReader()
    with installed(sim, PATH):
        time_direct_taps(sim, card, 10, verify)  # warm-up: imports, caches
        read_ms, full_ms = time_direct_taps(sim, card, args.taps, verify)
        reader_ms = time_reader_taps(sim, card, max(20, args.taps // 3))
    pn532_ms = time_pn532_taps(card, max(20, args.taps // 3))

    rows = [("sense + activate + NDEF read", read_ms)]
    if verify is not None:
        rows.append(("... + SUN verify (full tap)", full_ms))
    rows.append((f"Reader thread, place -> event (poll {POLL_INTERVAL * 1000:.0f} ms)",
                 reader_ms))
    if pn532_ms is not None:
        rows.append(("... over the PN532 emulator (pn532 driver, pty)", pn532_ms))
    else:
        print("PN532 emulator row skipped: nfcpy needs the pty linked in /dev (run as root)")
    print("card: hw.sim.card.SimulatedNtag424 programmed as a Boltcard (SDM on)")
    verifier = "terminal.protocols.boltcard.verify_tap_url" if verify else "not available"
    print(f"SUN verify: {verifier}")
    print(f"{'step':<48} {'n':>5} {'median ms':>10} {'p95 ms':>8}")
    for name, values in rows:
        print(f"{name:<48} {len(values):>5} {statistics.median(values):>10.2f} "
              f"{p95(values):>8.2f}")
    goal = full_ms if verify is not None else read_ms
    print(f"goal median <= 15 ms: {'met' if statistics.median(goal) <= 15 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
