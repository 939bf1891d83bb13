"""The emulated PN532 on a pseudo-terminal: a serial port that nfcpy's own `pn532` driver and
`tty` transport open, unmodified, with simulated cards on its antenna.

    with Pn532Emulator(link="/dev/ttyFLASHSIM0") as reader:
        reader.nfcpy_path                  # "tty:ttyFLASHSIM0:pn532"
        reader.place(card)                 # a card on the antenna (e.g. SimulatedNtag424)
        reader.remove()
        reader.unplug(); reader.plug()     # the USB-serial cable out and back in

nfcpy finds serial readers by name in /dev only (`tty:NAME:DRIVER` opens /dev/NAME, NAME made
of letters, digits and '-'), so the symlink that names the pty for nfcpy lives in /dev
(creating it needs write access there, i.e. root). `nfcpy_device_string` says whether a path
qualifies.

The line speed is not modelled: a pty passes bytes whatever rate either end has set. The chip
keeps the rate it was asked for (`chip.baud_requests`) and switches when the host acknowledges,
as the manual says; nfcpy reopens the port right after that ACK (which flushes the port's
output), so on a pty the ACK may never reach the chip - harmless here, as no byte is garbled.

Unplugging closes the pty (an open port then fails with EIO, as a USB-serial adapter that has
gone does) and removes the link as udev would; plugging in opens a new pty, points the link at
it and powers the chip up from reset. One I/O thread owns the pty; every other method may be
called from any thread. `changed` is notified after everything the reader does, so tests wait
for conditions instead of sleeping.
"""

from __future__ import annotations

import errno
import os
import re
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from hw.sim.nfcpy_device import ApduCard
from hw.sim.pn532 import Pn532
from hw.sim.pn532_rf import Antenna

NFCPY_DRIVER = "pn532"
_NFCPY_NAME = re.compile(r"[a-zA-Z0-9-]+")
# Names nfcpy's TTY.find maps to something else (/dev/ttyS0, /dev/ttyUSB*, /dev/cu.usbserial*).
_NFCPY_SPECIAL = re.compile(r"(S|ACM|AMA|USB)\d*|usbserial.*")
READ_CHUNK = 4096


class LinkError(ValueError):
    """A link path that nfcpy cannot address."""


def nfcpy_device_string(link: str | os.PathLike[str]) -> str:
    """The nfcpy device string (`tty:NAME:pn532`) for a serial port at `link`.

    Raises `LinkError` when nfcpy cannot open that path: its `tty:` paths only name entries
    directly in /dev.
    """
    path = Path(os.path.abspath(link))
    if path.parent != Path("/dev"):
        raise LinkError(f"nfcpy opens serial readers only in /dev (tty:NAME:{NFCPY_DRIVER} "
                        f"means /dev/NAME): put the link there, e.g. /dev/ttyFLASHSIM0, "
                        f"not {path}")
    name = path.name
    if not _NFCPY_NAME.fullmatch(name):
        raise LinkError(f"nfcpy accepts only letters, digits and '-' in a tty name: {name!r}")
    if _NFCPY_SPECIAL.fullmatch(name):
        raise LinkError(f"nfcpy reads the name {name!r} as a standard port "
                        "(ttyS*, ttyUSB*, …): choose another, e.g. ttyFLASHSIM0")
    return f"tty:{name}:{NFCPY_DRIVER}"


class Pn532Emulator:
    """A PN532 reader on a pty with an antenna; see the module docstring."""

    def __init__(self, link: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.link = Path(link) if link is not None else None
        self.clock = clock
        self.changed = threading.Condition()
        self.antenna = Antenna()
        self.chip = Pn532(self.antenna, clock)
        self.port: str | None = None  # the pty's slave device (/dev/pts/N) while plugged in
        self.plugged = False
        self.plug_count = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.version = 0  # goes up whenever anything may have changed (see `changed`)
        self._want_plugged = True
        self._stopping = False
        self._master: int | None = None
        self._slave: int | None = None
        self._out = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self.failure: OSError | None = None  # why the pty or its link could not be set up

    # -- life cycle -----------------------------------------------------------------------
    def start(self, timeout: float = 5.0) -> Pn532Emulator:
        """Start the I/O thread and plug the reader in; OSError if the pty or link fails."""
        self._thread = threading.Thread(target=self._run, name="pn532-emulator", daemon=True)
        self._thread.start()
        if not self.wait_for(lambda: self.plugged or self.failure is not None, timeout):
            raise RuntimeError("the PN532 emulator did not start")
        if self.failure is not None:
            self.stop()
            raise self.failure
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self.changed:
            self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Pn532Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def nfcpy_path(self) -> str:
        if self.link is None:
            raise LinkError("the emulator has no link in /dev, so nfcpy cannot name it")
        return nfcpy_device_string(self.link)

    # -- the test's (or the command line's) hands -----------------------------------------
    def place(self, *cards: ApduCard) -> None:
        """Put `cards` on the antenna, all at once (any card there is taken away first)."""
        self._with_antenna(lambda: self.antenna.place(*cards))

    def add(self, card: ApduCard) -> None:
        """Put `card` on the antenna beside the cards already there."""
        self._with_antenna(lambda: self.antenna.add(card))

    def remove(self, card: ApduCard | None = None) -> None:
        self._with_antenna(lambda: self.antenna.remove(card))

    def remove_after(self, apdus: int, *, answer_last: bool = True) -> None:
        self._with_antenna(lambda: self.antenna.remove_after(apdus, answer_last=answer_last))

    def unplug(self, timeout: float = 5.0) -> None:
        """Pull the cable: the port closes, the link goes, the chip loses power."""
        self._set_plugged(False, timeout)

    def plug(self, timeout: float = 5.0) -> None:
        self._set_plugged(True, timeout)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def _with_antenna(self, action: Callable[[], None]) -> None:
        with self.changed:
            action()
            self._changed()
        self._wake()  # a waiting InListPassiveTarget may now find a card

    def _changed(self) -> None:
        """Under the lock: count the change and wake whoever waits for one."""
        self.version += 1
        self.changed.notify_all()

    def _set_plugged(self, plugged: bool, timeout: float) -> None:
        with self.changed:
            self._want_plugged = plugged
        self._wake()
        if not self.wait_for(lambda: self.plugged is plugged, timeout):
            raise RuntimeError("the PN532 emulator did not change its plug")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # already awake
        except OSError as error:
            if error.errno != errno.EBADF:
                raise

    # -- the I/O thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self.changed:
                    if self._stopping:
                        break
                    if self._want_plugged is not self.plugged:
                        try:
                            self._do_plug() if self._want_plugged else self._do_unplug()
                        except OSError as error:  # no pty left, no right to write the link
                            self.failure, self._want_plugged = error, False
                            self._do_unplug()
                        self._changed()
                    deadline = self.chip.next_deadline()
                    master = self._master
                    writing = bool(self._out)
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                readers = [self._wake_r] + ([master] if master is not None else [])
                writers = [master] if master is not None and writing else []
                ready, writable, _ = select.select(readers, writers, [], timeout)
                if self._wake_r in ready:
                    os.read(self._wake_r, READ_CHUNK)
                data = b""
                if master is not None and master in ready:
                    data = self._read(master)
                with self.changed:
                    if master is None or master is not self._master:
                        continue
                    if data:
                        self.bytes_in += len(data)
                        self.chip.receive(data)
                    self.chip.tick()
                    self._out += self.chip.take_output()
                    self._flush(master)
                    self._changed()
        finally:
            with self.changed:
                self._do_unplug()
                self._changed()

    @staticmethod
    def _read(master: int) -> bytes:
        try:
            return os.read(master, READ_CHUNK)
        except OSError:
            return b""

    def _flush(self, master: int) -> None:
        while self._out:
            try:
                sent = os.write(master, self._out)
            except BlockingIOError:
                return  # the host is not reading: keep it for when the line drains
            except OSError:
                self._out.clear()
                return
            self.bytes_out += sent
            del self._out[:sent]

    def _do_plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline before the host configures the port
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._out.clear()
        if self.link is not None:
            temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}")
            temporary.unlink(missing_ok=True)
            os.symlink(self.port, temporary)
            os.replace(temporary, self.link)
        self.chip.power_on_reset()
        self.plugged = True
        self.plug_count += 1

    def _do_unplug(self) -> None:
        link = self.link
        if link is not None and self.port is not None and link.is_symlink() \
                and os.readlink(link) == self.port:
            link.unlink(missing_ok=True)  # as udev removes a device's links
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self.port = None
        self._out.clear()
        self.chip.power_off()
        self.plugged = False
