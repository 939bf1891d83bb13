"""A simulated contactless reader that plugs in beneath nfcpy's real ContactlessFrontend.

Only nfcpy's driver lookup (`nfc.clf.device.connect`) is replaced. Everything above it runs for
real: `ContactlessFrontend.sense`, `nfc.tag.activate`, `Type4ATag` (RATS/ATS), nfcpy's ISO-DEP
initiator (chaining, R(NAK) presence checks, retries) and NDEF reading. Beneath it this module
plays the card side of ISO/IEC 14443-3 (ATQA/UID/SAK) and ISO/IEC 14443-4 (ISO-DEP block
protocol) and hands each complete command APDU to the simulated card's `transceive`.

    sim = SimReader()
    with installed(sim, "usb"):          # ContactlessFrontend("usb") now opens `sim`
        sim.place(card)                  # card: anything with `uid` and `transceive(apdu)`
        ...
        sim.remove()

A card with `exchange_frame(frame) -> bytes | None` instead of an APDU processor is passed raw
frames (no ISO-DEP): that is how a Type 2 tag (SAK 00) is simulated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

import nfc.clf
import nfc.clf.device
from nfc.clf import RemoteTarget

log = logging.getLogger(__name__)

# NTAG 424 DNA answers (NT4H2421Gx datasheet, section 8.2 and table "ATS"): ATQA 0x0344 is sent
# least significant byte first, SAK 0x20 = "compliant with ISO/IEC 14443-4".
NTAG424_SENS_RES = bytes.fromhex("4403")
NTAG424_SEL_RES = bytes.fromhex("20")
# ATS: TL=06, T0=77 (FSCI 7 = 128 bytes; TA, TB, TC follow), TA=77, TB=71 (FWI 7 = 38.7 ms,
# SFGI 1), TC=02 (CID supported, NAD not), historical byte 80.
NTAG424_ATS = bytes.fromhex("067777710280")

# ISO/IEC 14443-4 FSDI -> FSD (frame size for proximity coupling device)
FSD_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)

RATS = 0xE0
# PCB (protocol control byte) coding, ISO/IEC 14443-4 section 7.1.1
PCB_I_BLOCK_MASK, PCB_I_BLOCK = 0xE2, 0x02
PCB_R_BLOCK_MASK, PCB_R_BLOCK = 0xE6, 0xA2
PCB_S_BLOCK_MASK, PCB_S_BLOCK = 0xC7, 0xC2
PCB_CHAINING = 0x10
PCB_CID_FOLLOWING = 0x08
PCB_NAK = 0x10
PCB_BLOCK_NUMBER = 0x01
S_DESELECT = 0xC2
S_WTX = 0xF2
EDC_LEN = 2  # CRC_A, added and checked by the reader chip, never seen by nfcpy


@runtime_checkable
class ApduCard(Protocol):
    """An ISO-DEP card at APDU level (e.g. `hw.sim.card.SimulatedNtag424`)."""

    @property
    def uid(self) -> bytes: ...

    def transceive(self, apdu: bytes) -> bytes: ...


class _Power(Enum):
    OFF = "off"  # no field, or not on the antenna
    ACTIVE = "active"  # ISO 14443-3 selected; ISO-DEP state lives in IsoDepCardSide


class IsoDepCardSide:
    """The PICC half of the ISO/IEC 14443-4 half-duplex block transmission protocol.

    Block numbering follows the PICC rules of section 7.5.4: the current block number starts at 1,
    is toggled on every I-block received (rule D) and on an R(ACK) with a different number (rule
    E); an R-block carrying the current number asks for the last block again (rule 11); an R(NAK)
    carrying the other number is answered with R(ACK) (rule 12) - that is nfcpy's presence check.
    """

    def __init__(self, process_apdu: Callable[[bytes], bytes | None],
                 ats: bytes | None = NTAG424_ATS):
        # ats None: a card that never answers RATS (pulled during activation)
        self._process_apdu = process_apdu
        self._ats = ats
        self.activated = False
        self._fsd = 256
        self._cid: int | None = None
        self._block_number = 1
        self._rx = bytearray()  # command being received in chained I-blocks
        self._tx: list[bytes] = []  # response chunks still to send
        self._last_block = b""

    def handle(self, frame: bytes) -> bytes | None:
        """Answer one frame; None means "no answer" (the reader sees a timeout)."""
        if not self.activated:
            return self._rats(frame)
        pcb = frame[0]
        cid, inf = self._split_prologue(frame)
        if cid is not None and cid != (self._cid or 0):
            return None  # addressed to another card
        if pcb & PCB_I_BLOCK_MASK == PCB_I_BLOCK:
            return self._i_block(pcb, inf)
        if pcb & PCB_R_BLOCK_MASK == PCB_R_BLOCK:
            return self._r_block(pcb)
        if pcb & PCB_S_BLOCK_MASK == PCB_S_BLOCK and pcb & 0xF7 == S_DESELECT:
            self.activated = False
            return self._send(bytes([pcb]) + (bytes([cid]) if cid is not None else b""))
        return None  # unknown block: a real PICC stays mute

    def _rats(self, frame: bytes) -> bytes | None:
        if len(frame) != 2 or frame[0] != RATS or self._ats is None:
            return None
        fsdi, cid = frame[1] >> 4, frame[1] & 0x0F
        self._fsd = FSD_TABLE[min(fsdi, 8)]
        self._cid = cid
        self._block_number = 1
        self._rx.clear()
        self._tx.clear()
        self.activated = True
        return self._ats

    @staticmethod
    def _split_prologue(frame: bytes) -> tuple[int | None, bytes]:
        if frame[0] & PCB_CID_FOLLOWING and len(frame) > 1:
            return frame[1], frame[2:]
        return None, frame[1:]

    def _max_inf(self, with_cid: bool) -> int:
        return self._fsd - 1 - EDC_LEN - (1 if with_cid else 0)

    def _i_block(self, pcb: int, inf: bytes) -> bytes | None:
        self._block_number ^= 1  # rule D
        self._rx += inf
        if pcb & PCB_CHAINING:
            return self._send(bytes([0xA2 | self._block_number]))  # R(ACK) for the chunk
        apdu, self._rx = bytes(self._rx), bytearray()
        response = self._process_apdu(apdu)
        if response is None:
            return None  # the card left the field
        size = self._max_inf(with_cid=False)
        self._tx = [response[i:i + size] for i in range(0, len(response), size)] or [b""]
        return self._next_chunk()

    def _next_chunk(self) -> bytes:
        chunk = self._tx.pop(0)
        more = PCB_CHAINING if self._tx else 0
        return self._send(bytes([PCB_I_BLOCK | more | self._block_number]) + chunk)

    def _r_block(self, pcb: int) -> bytes | None:
        if pcb & PCB_BLOCK_NUMBER == self._block_number:
            return self._last_block or None  # rule 11: send the last block again
        if pcb & PCB_NAK:
            return self._send(bytes([0xA2 | self._block_number]))  # rule 12 (presence check)
        if self._tx:
            self._block_number ^= 1  # rule E: the reader acknowledged our chained block
            return self._next_chunk()
        return None

    def _send(self, block: bytes) -> bytes:
        self._last_block = block
        return block


@dataclass
class _Interruption:
    """Leave the field after `apdus` more APDUs; `answer_last` False loses the last reply."""

    apdus: int
    answer_last: bool


class SimReader:
    """The simulated reader hardware: its antenna (which card lies on it) and its USB plug.

    Thread-safe: a test moves cards while the reader thread talks to them. `changed` is notified
    after every frame, placement and plug change so tests can wait for conditions without sleeps.
    """

    def __init__(self, *, plugged: bool = True, max_send: int = 263, max_recv: int = 262):
        # PN533/PN532 limits as nfcpy's pn53x driver reports them (frame max 265 - 2/3)
        self.max_send = max_send
        self.max_recv = max_recv
        self.changed = threading.Condition()
        self._plugged = plugged
        self._card: Any = None  # a simulated card (duck-typed: transceive, uid, …)
        self._power = _Power.OFF
        self._iso_dep: IsoDepCardSide | None = None
        self._interruption: _Interruption | None = None
        self.frames_exchanged = 0
        self.presence_checks = 0
        self.senses = 0  # anticollision rounds that found the card
        self.apdus = 0
        self.opened = 0  # how many times a driver instance was opened on this reader

    # -- the test's hands ------------------------------------------------------------------
    def place(self, card: object) -> None:
        """Put `card` on the antenna (it powers up at the next poll)."""
        with self.changed:
            self._pull_card()
            self._card = card
            self.changed.notify_all()

    def remove(self) -> None:
        """Take the card away: every later exchange times out, as on a real reader."""
        with self.changed:
            self._pull_card()
            self.changed.notify_all()

    def remove_after(self, apdus: int, *, answer_last: bool = True) -> None:
        """Pull the card after it has processed `apdus` more command APDUs.

        With `answer_last=False` the last of those APDUs is executed by the card but its response
        never reaches the reader (the card was pulled while answering) - the worst case for
        programming.
        """
        with self.changed:
            self._interruption = _Interruption(apdus, answer_last)

    def unplug(self) -> None:
        """Pull the reader's USB cable: open drivers fail with ENODEV, lookups find nothing."""
        with self.changed:
            self._plugged = False
            self._power_down()
            self.changed.notify_all()

    def plug(self) -> None:
        with self.changed:
            self._plugged = True
            self.changed.notify_all()

    @property
    def card(self) -> object | None:
        return self._card

    @property
    def plugged(self) -> bool:
        return self._plugged

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (checked after every reader event) or `timeout`."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    # -- the card's power and presence ------------------------------------------------------
    def _power_down(self) -> None:
        if self._card is not None and self._power is not _Power.OFF:
            deactivate = getattr(self._card, "deactivate", None)
            if deactivate is not None:
                deactivate()
        self._power = _Power.OFF
        self._iso_dep = None

    def _pull_card(self) -> None:
        self._power_down()
        self._card = None
        self._interruption = None

    def _require_plugged(self) -> None:
        if not self._plugged:
            raise OSError(errno.ENODEV, "simulated reader unplugged")

    # -- the driver's side -----------------------------------------------------------------
    def field_off(self) -> None:
        """RF field off (nfcpy mutes before every poll): the card loses power."""
        with self.changed:
            self._require_plugged()
            self._power_down()

    def sense_a(self, sel_req: bytes | None) -> RemoteTarget | None:
        """SENS_REQ, SDD_REQ, SEL_REQ: the anticollision answers of the card in the field."""
        with self.changed:
            self._require_plugged()
            card = self._card
            if card is None:
                return None
            uid = bytes(card.uid)
            if sel_req and bytes(sel_req) != uid:
                return None
            if self._power is _Power.OFF:
                power_on = getattr(card, "power_on", None)
                if power_on is not None:
                    power_on()
            self._power = _Power.ACTIVE
            self.senses += 1
            self._iso_dep = None
            if not hasattr(card, "exchange_frame"):
                self._iso_dep = IsoDepCardSide(self._run_apdu, getattr(card, "ats", NTAG424_ATS))
            sens_res = getattr(card, "sens_res", NTAG424_SENS_RES)
            sel_res = getattr(card, "sel_res", NTAG424_SEL_RES)
            self.changed.notify_all()
            return RemoteTarget("106A", sens_res=bytearray(sens_res), sdd_res=bytearray(uid),
                                sel_res=bytearray(sel_res))

    def exchange(self, frame: bytes) -> bytes:
        """One command frame to the card, one response frame back (CRC handled by the 'chip')."""
        with self.changed:
            try:
                self._require_plugged()
                self.frames_exchanged += 1
                if frame and frame[0] & PCB_R_BLOCK_MASK == PCB_R_BLOCK and frame[0] & PCB_NAK:
                    self.presence_checks += 1
                response = self._card_answer(bytes(frame))
                if response is None:
                    raise nfc.clf.TimeoutError("no answer from card")
                return bytes(response)
            finally:
                self.changed.notify_all()

    def _card_answer(self, frame: bytes) -> bytes | None:
        card = self._card
        if card is None or self._power is _Power.OFF or not frame:
            return None
        if self._iso_dep is None:
            return card.exchange_frame(frame)
        return self._iso_dep.handle(frame)

    def _run_apdu(self, apdu: bytes) -> bytes | None:
        """One complete command APDU to the card; applies `remove_after`. None: card gone."""
        interruption = self._interruption
        if interruption is not None and interruption.apdus <= 0:
            self._pull_card()
            return None
        response = self._card.transceive(apdu)
        self.apdus += 1
        if interruption is not None:
            interruption.apdus -= 1
            if interruption.apdus == 0 and not interruption.answer_last:
                self._pull_card()  # executed, but pulled before the answer got out
                return None
        return bytes(response)


class SimDevice(nfc.clf.device.Device):
    """nfcpy driver instance for a `SimReader` (what `nfc.clf.device.connect` returns)."""

    def __init__(self, reader: SimReader, path: str):  # the base __init__ raises on purpose
        self._reader = reader
        self._path = path
        self._vendor_name = "Flash Terminal"
        self._device_name = "Simulated Reader"
        self._chipset_name = "SIM"
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.ENODEV, "simulated reader driver is closed")

    def mute(self) -> None:
        self._check_open()
        self._reader.field_off()

    def sense_tta(self, target: RemoteTarget) -> RemoteTarget | None:
        self._check_open()
        if target.brty != "106A":
            raise nfc.clf.UnsupportedTargetError(f"{self} does not support {target.brty}")
        return self._reader.sense_a(target.sel_req)

    def sense_ttb(self, target: RemoteTarget) -> None:
        self._check_open()
        return None  # no Type B card in this simulation

    def sense_ttf(self, target: RemoteTarget) -> None:
        self._check_open()
        return None  # no FeliCa card in this simulation

    def sense_dep(self, target: RemoteTarget) -> None:
        self._check_open()
        return None

    def listen_tta(self, target, timeout):
        raise nfc.clf.UnsupportedTargetError("the simulated reader does not emulate cards")

    listen_ttb = listen_ttf = listen_dep = listen_tta

    def send_cmd_recv_rsp(self, target: RemoteTarget, data: bytes, timeout: float) -> bytearray:
        self._check_open()
        return bytearray(self._reader.exchange(bytes(data)))

    def send_rsp_recv_cmd(self, target, data, timeout=None):
        raise nfc.clf.UnsupportedTargetError("the simulated reader does not emulate cards")

    def get_max_send_data_size(self, target) -> int:
        return self._reader.max_send

    def get_max_recv_data_size(self, target) -> int:
        return self._reader.max_recv


# -- driver lookup --------------------------------------------------------------------------
_registry: dict[str, SimReader] = {}
_registry_lock = threading.Lock()
_original_connect = nfc.clf.device.connect


def _connect(path: str) -> nfc.clf.device.Device | None:
    """Stand-in for `nfc.clf.device.connect`: registered paths open their SimReader."""
    with _registry_lock:
        reader = _registry.get(path)
    if reader is None:
        if path.startswith("sim"):
            return None  # a sim path nobody registered: "no reader on this path"
        return _original_connect(path)
    with reader.changed:
        if not reader.plugged:
            return None
        reader.opened += 1
        reader.changed.notify_all()
    return SimDevice(reader, path)


def install(reader: SimReader, path: str = "sim") -> None:
    """Make `ContactlessFrontend(path)` open `reader` (any path: "sim", "usb", "tty:AMA0:pn532")."""
    with _registry_lock:
        _registry[path] = reader
        nfc.clf.device.connect = _connect


def uninstall(path: str = "sim") -> None:
    with _registry_lock:
        _registry.pop(path, None)
        if not _registry:
            nfc.clf.device.connect = _original_connect


@contextlib.contextmanager
def installed(reader: SimReader, path: str = "sim") -> Iterator[SimReader]:
    """Context manager form of `install` / `uninstall`."""
    install(reader, path)
    try:
        yield reader
    finally:
        uninstall(path)
