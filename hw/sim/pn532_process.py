"""The emulated PN532 in a process of its own, as the real chip is a device of its own.

A chip inside the host's process stops whenever the host's interpreter does (a long garbage
collection in a big test run pauses every thread for hundreds of milliseconds), and nfcpy
gives the chip 100 ms to acknowledge a command. In its own process the emulator answers on
time whatever the host is doing. Cards are simulated card files (`hw.sim.card`): the child
saves a card's state when the card leaves the antenna and when it stops (`autosave=True`:
after every change as well, at the cost of two fsyncs inside the RF exchange that changed it),
and reads it from its file again each time it is placed: off the antenna the file is the card
(`card simulate tap` or `card wipe --card-file` may have used it meanwhile).

    with Pn532Process("/dev/ttyFLASHSIM0") as reader:
        reader.place(card_file)
        reader.wait_for(lambda s: s.commands.get("IN_COMMUNICATE_THRU", 0) > 5)
        reader.unplug(); reader.plug()

`stats()` is a snapshot of the chip and the antenna; `wait_for` waits, without polling on a
timer, until a snapshot satisfies a predicate (the child answers when something changed).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hw.sim.pn532_pty import Pn532Emulator, nfcpy_device_string

START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Snapshot:
    """What the emulated reader has seen and done so far."""

    version: int
    plugged: bool
    port: str | None
    commands: dict[str, int] = field(default_factory=dict)  # PN532 commands by name
    history: list[str] = field(default_factory=list)  # the last 256 command names
    rf_errors: dict[str, int] = field(default_factory=dict)  # status names sent (TIMEOUT, CRC)
    frame_errors: int = 0
    baud_requests: list[int] = field(default_factory=list)
    baudrate: int = 0
    asleep: bool = True
    parameters: int = 0
    apdus: int = 0  # command APDUs the cards on the antenna processed
    cards: list[str] = field(default_factory=list)  # card files on the antenna


class EmulatorError(RuntimeError):
    pass


class Pn532Process:
    """A `Pn532Emulator` in a child process, driven over a pipe."""

    def __init__(self, link: str | os.PathLike[str], *, autosave: bool = False):
        self.link = Path(link)
        self.autosave = autosave
        self.nfcpy_path = nfcpy_device_string(self.link)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: Any = None

    def start(self) -> Pn532Process:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # children fork ready-made, in milliseconds
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve,
                                        args=(child, str(self.link), self.autosave),
                                        name="pn532-emulator", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        try:
            if not parent.poll(START_TIMEOUT_S):
                raise EOFError
            kind, value = parent.recv()
        except EOFError:
            self.stop()
            raise EmulatorError("the PN532 emulator process did not start") from None
        if kind != "ok":
            self.stop()
            raise EmulatorError(value)
        return self

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(("stop", ()))
                conn.poll(CALL_TIMEOUT_S)
            except (OSError, EOFError):
                pass
            conn.close()
        if self._process is not None:
            self._process.join(CALL_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def __enter__(self) -> Pn532Process:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the hands --------------------------------------------------------------------------
    def place(self, *card_files: str | os.PathLike[str], pull_after: int | None = None,
              answer_last: bool = True) -> None:
        """Put the cards on the antenna at once; `pull_after` N: they leave after N APDUs."""
        self._call("place", [str(f) for f in card_files], pull_after, answer_last)

    def add(self, card_file: str | os.PathLike[str]) -> None:
        self._call("add", str(card_file))

    def remove(self, card_file: str | os.PathLike[str] | None = None) -> None:
        self._call("remove", None if card_file is None else str(card_file))

    def unplug(self) -> None:
        self._call("unplug")

    def plug(self) -> None:
        self._call("plug")

    def stats(self) -> Snapshot:
        result: Snapshot = self._call("stats")
        return result

    def wait_for(self, predicate: Callable[[Snapshot], bool],
                 timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.stats()
            if predicate(snapshot):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._call("wait_change", snapshot.version, left)

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise EmulatorError("the PN532 emulator is not running")
            self._conn.send((op, args))
            if not self._conn.poll(CALL_TIMEOUT_S):
                raise EmulatorError(f"the PN532 emulator did not answer {op}")
            kind, value = self._conn.recv()
        if kind != "ok":
            raise EmulatorError(value)
        return value


# -- the child ------------------------------------------------------------------------------
def _serve(conn: Connection, link: str, autosave: bool) -> None:
    from hw.sim.card import SimulatedNtag424

    try:
        emulator = Pn532Emulator(link).start()
    except Exception as error:
        conn.send(("error", f"cannot start the PN532 emulator on {link}: {error}"))
        return
    cards: dict[str, SimulatedNtag424] = {}
    held: set[str] = set()  # placed since they were last saved

    def card(path: str) -> SimulatedNtag424:
        if path not in held:  # in the hand, the file is the card: it may have been tapped
            cards[path] = SimulatedNtag424.load(path, autosave=autosave)  # or wiped meanwhile
        held.add(path)
        return cards[path]

    def save_the_absent() -> None:
        with emulator.changed:
            present = {id(c) for c in emulator.antenna.cards}
        for path in [p for p in held if id(cards[p]) not in present]:
            cards[path].save(path)
            held.discard(path)

    def place(paths: list[str], pull_after: int | None, answer_last: bool) -> None:
        save_the_absent()  # a card pulled by remove_after goes back to its file first
        with emulator.changed:  # placed and, if asked, doomed in the same instant
            emulator.place(*(card(p) for p in paths))
            if pull_after is not None:
                emulator.remove_after(pull_after, answer_last=answer_last)
        save_the_absent()

    def remove(path: str | None) -> None:
        emulator.remove(None if path is None else card(path))
        save_the_absent()

    def wait_change(version: int, timeout: float) -> None:
        emulator.wait_for(lambda: emulator.version != version, timeout)

    def snapshot() -> Snapshot:
        with emulator.changed:
            chip, antenna = emulator.chip, emulator.antenna
            names = {id(c): p for p, c in cards.items()}
            return Snapshot(
                version=emulator.version, plugged=emulator.plugged, port=emulator.port,
                commands=dict(chip.commands), history=list(chip.history),
                rf_errors={s.name: n for s, n in chip.rf_errors.items()},
                frame_errors=chip.frame_errors, baud_requests=list(chip.baud_requests),
                baudrate=chip.baudrate, asleep=chip.asleep, parameters=chip.parameters,
                apdus=antenna.apdus, cards=[names.get(id(c), "?") for c in antenna.cards])

    handlers: dict[str, Callable[..., Any]] = {
        "place": place,
        "add": lambda path: emulator.add(card(path)),
        "remove": remove,
        "unplug": emulator.unplug,
        "plug": emulator.plug,
        "stats": snapshot,
        "wait_change": wait_change,
    }
    conn.send(("ok", None))
    try:
        while True:
            try:
                op, args = conn.recv()
            except EOFError:
                break
            if op == "stop":
                break
            try:
                conn.send(("ok", handlers[op](*args)))
            except Exception as error:
                conn.send(("error", f"{op}: {error}"))
    finally:
        emulator.remove()
        emulator.stop()
        save_the_absent()  # only the cards it held: the others' files may have moved on
        try:
            conn.send(("ok", None))
        except OSError:
            pass
