"""The NFC reader: nfcpy's ContactlessFrontend in its own thread, one event per card tap.

    reader = Reader("usb", on_event=lambda e: loop.call_soon_threadsafe(queue.put_nowait, e))
    reader.start()
    ...
    reader.stop()

The reader is always on: every tap is read (NDEF read once, because each unauthenticated read of
a Boltcard advances its SUN counter) and reported; the consumer decides whether a sale wants it.
`on_event` is called on the reader thread and must not block for long or touch the UI; hand the
event over (e.g. `loop.call_soon_threadsafe`).

Events, in the order a consumer sees them:
  ReaderStatusEvent   the reader became ready / absent / errored (only changes are reported)
  TapEvent            a Type 4 card with an NDEF URI: `uri` (read with ndeflib's `.iri`), `uid`,
                      and `handle` to talk to the card while it stays on the reader
  NotPaymentCardEvent any other card or tag, with the reason and a message for the screen;
                      carries a `handle` too when the card speaks ISO-DEP (a blank NTAG 424 DNA
                      is "not a payment card" yet, and is programmed through that handle)
  HoldStillEvent      the card left while being read: ask for a steadier tap
  CardRemovedEvent    the card of the last Tap/NotPaymentCard event left the reader

While a card stays on the reader no further event is produced for it: one tap, one read.

Several cards at once (a wallet held to the reader): nfcpy asks a PN53x for one target
(InListPassiveTarget MaxTg 1), the chip resolves the anticollision by itself and nfcpy would
read whichever card won. So before reading, a reader whose chip can list two targets (PN532,
PN531, ACR122U) is asked for two; when two answer, nothing is read and the consumer gets a
NotPaymentCardEvent with reason SEVERAL_CARDS ("one card at a time") until one is taken away.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import queue
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import ndef
import nfc
import nfc.clf
import nfc.clf.pn53x
import nfc.tag
import nfc.tag.tt4
from nfc.clf import RemoteTarget

# CardHandle speaks hw.ntag424's Transport protocol, so it raises that package's errors.
from hw.ntag424.errors import CardRemovedError, TransportError

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ("106A", "106B", "212F")
DEFAULT_POLL_INTERVAL = 0.1  # seconds between polls when no card is in the field
DEFAULT_PRESENCE_INTERVAL = 0.1  # nfcpy's own presence-check period
# First and longest wait between attempts to open the reader: a reader plugged back in is
# found within ~2 s however long it was away (opening an absent tty costs next to nothing).
DEFAULT_BACKOFF = (0.5, 2.0)

# NFC Forum Type 4 Tag operation specification: NDEF application, capability container.
NDEF_AID = bytes.fromhex("D2760000850101")
CC_FILE_ID = bytes.fromhex("E103")
CLA_ISO = 0x00
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
P1_SELECT_BY_NAME = 0x04
P1_SELECT_BY_FILE_ID = 0x00
P2_NO_RESPONSE_DATA = 0x0C
CC_READ_LENGTH = 15  # CCLEN, version, MLe, MLc and the NDEF File Control TLV
NDEF_FILE_CONTROL_TLV = 0x04  # 2-byte file size and NLEN
EXTENDED_NDEF_FILE_CONTROL_TLV = 0x06  # 4-byte file size and ENLEN (mapping 3.0)
NDEF_READ_ACCESS_FREE = 0x00
SHORT_LE_MAX = 256
SAK_ISO14443_4 = 0x20  # SEL_RES bit 6: the tag speaks ISO-DEP (Type 4A)
SW_OK = 0x9000
SW_WRONG_LENGTH = (0x6700, 0x6B00, 0x6282)  # wrong length / offset beyond file / end of file
# PN53x InListPassiveTarget (UM0701-02 §7.3.5): MaxTg 2 at 106 kbit/s Type A counts the cards.
IN_LIST_PASSIVE_TARGET = 0x4A
BRTY_106A = 0x00
# pyserial lets termios.error (not an OSError) out when a tty has gone: a lost reader too.
LINK_ERRORS = (OSError, termios.error)

HOLD_STILL_MESSAGE = "The card moved away too soon. Hold it still on the reader and tap again."


# -- errors --------------------------------------------------------------------------------
class NfcError(Exception):
    """Base class of the reader's errors."""


class ReaderUnavailableError(NfcError, TransportError):
    """The reader is absent, unplugged, busy or not permitted.

    A `TransportError` too, so NTAG 424 programming code stops cleanly when the reader goes.
    """



class NotPaymentReason(enum.Enum):
    NOT_TYPE4 = "not_type4"  # a tag that is not ISO-DEP (Type 2 sticker, MIFARE, FeliCa...)
    NO_NDEF = "no_ndef"  # ISO-DEP card without the NFC Forum application (bank card, phone)
    READ_PROTECTED = "read_protected"
    BLANK = "blank"  # NDEF application present, empty message (a factory NTAG 424 DNA)
    NO_LINK = "no_link"  # NDEF message without a URI record
    UNREADABLE = "unreadable"  # malformed capability container or NDEF message
    SEVERAL_CARDS = "several_cards"  # more than one card in the field: none is read


NOT_PAYMENT_MESSAGES = {
    NotPaymentReason.NOT_TYPE4: "This is not a payment card ({product}). Please tap a Boltcard.",
    NotPaymentReason.NO_NDEF: "This card has no payment link. Bank and transit cards can't pay "
    "here; please tap a Boltcard.",
    NotPaymentReason.READ_PROTECTED: "This card's data is read-protected: it is not a Boltcard.",
    NotPaymentReason.BLANK: "This card is blank: it has not been set up as a Boltcard yet.",
    NotPaymentReason.NO_LINK: "This card holds data but no payment link: it is not a Boltcard.",
    NotPaymentReason.UNREADABLE: "This card's data is damaged or not in NFC Forum format.",
    NotPaymentReason.SEVERAL_CARDS: "One card at a time: there is more than one card on the "
    "reader. Take the other cards away.",
}


class NotPaymentCardError(NfcError):
    """A card that answered, but holds no payment link; `reason` says why."""

    def __init__(self, reason: NotPaymentReason, detail: str = "", product: str = "unknown tag"):
        self.reason = reason
        self.detail = detail
        super().__init__(NOT_PAYMENT_MESSAGES[reason].format(product=product))


# -- events --------------------------------------------------------------------------------
class ReaderState(enum.Enum):
    READY = "ready"
    ABSENT = "absent"
    ERROR = "error"


@dataclass(frozen=True)
class ReaderStatusEvent:
    state: ReaderState
    message: str


@dataclass(frozen=True)
class TapEvent:
    # The NDEF URI as text (ndeflib `.iri`: `p=` and `c=` not percent-encoded). A spendable
    # one-time tap: kept out of reprs and logs like the UID.
    uri: str = field(repr=False)
    uid: bytes = field(repr=False)  # keep out of logs
    handle: CardLink = field(repr=False, compare=False)


@dataclass(frozen=True)
class NotPaymentCardEvent:
    reason: NotPaymentReason
    message: str
    handle: CardLink | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class HoldStillEvent:
    message: str = HOLD_STILL_MESSAGE


@dataclass(frozen=True)
class CardRemovedEvent:
    pass


ReaderEvent = (
    ReaderStatusEvent | TapEvent | NotPaymentCardEvent | HoldStillEvent | CardRemovedEvent
)
CardEvent = TapEvent | NotPaymentCardEvent | HoldStillEvent


# -- the card of one tap -------------------------------------------------------------------
class CardLink(Protocol):
    """What a tap's consumer talks to: the card's UID and its APDU transport. `CardHandle`
    (a card on the real reader) and `hw.sim.card.SimulatedNtag424` (the demo's cards) fit it."""

    @property
    def uid(self) -> bytes: ...
    def transceive(self, apdu: bytes) -> bytes: ...


class CardHandle:
    """APDU transport to the card of one tap, valid while the card stays on the reader.

    `transceive(apdu)` returns response data followed by SW1 SW2 (no status check: NTAG 424
    native commands answer 91xx). Thread-safe: the reader's presence checks and the consumer's
    commands take turns. Once the card has gone every call raises `CardRemovedError`.
    """

    def __init__(self, tag: nfc.tag.tt4.Type4Tag):
        self._tag = tag
        self._lock = threading.Lock()
        self._gone = False

    @property
    def uid(self) -> bytes:
        return bytes(self._tag.identifier)

    @property
    def present(self) -> bool:
        """False once the card left (as far as the last exchange or presence check knows)."""
        return not self._gone

    def transceive(self, apdu: bytes, timeout: float | None = None) -> bytes:
        with self._lock:
            if self._gone:
                raise CardRemovedError()
            try:
                response = self._tag.transceive(bytearray(apdu), timeout)
            except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as error:
                self._gone = True
                raise CardRemovedError() from error
            except LINK_ERRORS as error:
                self._gone = True
                raise ReaderUnavailableError(f"NFC reader failed: {error}") from error
            if not response or len(response) < 2:
                self._gone = True
                raise CardRemovedError("the card gave an incomplete answer (tap again)")
            return bytes(response)

    def check_presence(self) -> bool:
        """ISO-DEP presence check (nfcpy's R(NAK)); OSError if the reader itself failed."""
        with self._lock:
            if self._gone:
                return False
            try:
                present = self._tag.is_present
            except termios.error as error:
                raise _as_oserror(error) from error
            if not present:
                self._gone = True
            return not self._gone

    def close(self) -> None:
        with self._lock:
            self._gone = True

    def __repr__(self) -> str:
        return f"CardHandle(present={self.present})"


# -- reading the tap: NFC Forum Type 4 Tag NDEF read procedure -------------------------------
def _apdu(ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    apdu = bytes([CLA_ISO, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    if le is not None:
        apdu += bytes([le % SHORT_LE_MAX])  # Le 00 means 256
    return apdu


def _status(response: bytes) -> int:
    return int.from_bytes(response[-2:], "big")


def _checked(response: bytes, reason: NotPaymentReason, what: str) -> bytes:
    sw = _status(response)
    if sw != SW_OK:
        raise NotPaymentCardError(reason, f"{what} failed with status {sw:04X}")
    return response[:-2]


@dataclass(frozen=True)
class CapabilityContainer:
    version: int
    max_le: int  # MLe: longest ReadBinary answer
    max_lc: int
    ndef_file_id: bytes
    ndef_file_size: int
    read_access: int
    nlen_size: int  # 2 (NLEN) or 4 (ENLEN, mapping 3.0)

    @classmethod
    def parse(cls, data: bytes) -> CapabilityContainer:
        if len(data) < CC_READ_LENGTH:
            raise NotPaymentCardError(NotPaymentReason.UNREADABLE, "capability container short")
        _cclen, version, max_le, max_lc, tlv_t, tlv_l = struct.unpack(">HBHHBB", data[:9])
        if version >> 4 not in (1, 2, 3):
            raise NotPaymentCardError(NotPaymentReason.UNREADABLE, f"CC version {version:02X}")
        if (tlv_t, tlv_l) == (NDEF_FILE_CONTROL_TLV, 6):
            file_id, size, read_access = struct.unpack(">2sHB", data[9:14])
            nlen_size = 2
        elif (tlv_t, tlv_l) == (EXTENDED_NDEF_FILE_CONTROL_TLV, 8) and len(data) >= 17:
            file_id, size, read_access = struct.unpack(">2sIB", data[9:16])
            nlen_size = 4
        else:
            raise NotPaymentCardError(NotPaymentReason.UNREADABLE, "no NDEF file control TLV")
        return cls(version, max_le, max_lc, bytes(file_id), size, read_access, nlen_size)


Transceive = Callable[[bytes], bytes]


def read_ndef_message(transceive: Transceive) -> bytes:
    """Read the NDEF message of a Type 4 tag in one read sequence; returns the message octets.

    The NDEF file is read from offset 0 in as few ReadBinary commands as MLe allows (one for a
    Boltcard), so NLEN and the message come in the same read. Raises `NotPaymentCardError` for
    status-word failures and `CardRemovedError` when the card stops answering.
    """
    select_app = _apdu(INS_SELECT, P1_SELECT_BY_NAME, P2_NO_RESPONSE_DATA, NDEF_AID, le=0)
    _checked(transceive(select_app), NotPaymentReason.NO_NDEF, "select NDEF application")
    select_cc = _apdu(INS_SELECT, P1_SELECT_BY_FILE_ID, P2_NO_RESPONSE_DATA, CC_FILE_ID)
    _checked(transceive(select_cc), NotPaymentReason.NO_NDEF, "select capability container")
    read_cc = _apdu(INS_READ_BINARY, 0, 0, le=CC_READ_LENGTH)
    cc_data = _checked(transceive(read_cc), NotPaymentReason.UNREADABLE, "read CC")
    cc = CapabilityContainer.parse(cc_data)
    if cc.read_access != NDEF_READ_ACCESS_FREE:
        raise NotPaymentCardError(NotPaymentReason.READ_PROTECTED)
    select_ndef = _apdu(INS_SELECT, P1_SELECT_BY_FILE_ID, P2_NO_RESPONSE_DATA, cc.ndef_file_id)
    _checked(transceive(select_ndef), NotPaymentReason.NO_NDEF, "select NDEF file")

    chunk = max(1, min(cc.max_le, cc.ndef_file_size, SHORT_LE_MAX))
    data = _read_binary(transceive, 0, chunk, fallback=cc.nlen_size)
    if len(data) < cc.nlen_size:
        raise NotPaymentCardError(NotPaymentReason.UNREADABLE, "NDEF length missing")
    nlen = int.from_bytes(data[:cc.nlen_size], "big")
    if nlen == 0:
        raise NotPaymentCardError(NotPaymentReason.BLANK)
    end = cc.nlen_size + nlen
    if end > cc.ndef_file_size:
        raise NotPaymentCardError(NotPaymentReason.UNREADABLE, "NDEF length beyond file size")
    while len(data) < end:
        more = _read_binary(transceive, len(data), min(chunk, end - len(data)))
        if not more:
            raise NotPaymentCardError(NotPaymentReason.UNREADABLE, "NDEF file ends early")
        data += more
    return bytes(data[cc.nlen_size:end])


def _read_binary(transceive: Transceive, offset: int, le: int, fallback: int = 0) -> bytes:
    p1, p2 = offset.to_bytes(2, "big")
    response = transceive(_apdu(INS_READ_BINARY, p1, p2, le=le))
    if fallback and _status(response) in SW_WRONG_LENGTH:
        # The CC promised more than the file holds: read just the length field instead.
        response = transceive(_apdu(INS_READ_BINARY, p1, p2, le=fallback))
    return _checked(response, NotPaymentReason.UNREADABLE, f"read NDEF at {offset}")


def first_uri(message: bytes) -> str:
    """The first URI record's text (`.iri`: `=` and `&` kept as they are on the card)."""
    try:
        records = list(ndef.message_decoder(message, errors="strict"))
    except ndef.DecodeError as error:
        raise NotPaymentCardError(NotPaymentReason.UNREADABLE, str(error)) from error
    for record in records:
        if isinstance(record, ndef.UriRecord):
            return record.iri
    if all(record.type == "" for record in records):  # one empty record: a wiped card
        raise NotPaymentCardError(NotPaymentReason.BLANK)
    raise NotPaymentCardError(NotPaymentReason.NO_LINK)


def read_tap(handle: CardLink) -> CardEvent:
    """The event for one ISO-DEP card: exactly one NDEF read sequence."""
    try:
        uri = first_uri(read_ndef_message(handle.transceive))
    except CardRemovedError:
        return HoldStillEvent()
    except NotPaymentCardError as error:
        log.info("not a payment card: %s (%s)", error.reason.value, error.detail)
        return NotPaymentCardEvent(error.reason, str(error), handle)
    return TapEvent(uri=uri, uid=handle.uid, handle=handle)


# -- one probe: is a reader there? ----------------------------------------------------------
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ReaderProbe:
    found: bool
    detail: str


def probe_reader(path: str, timeout_s: float = PROBE_TIMEOUT_S) -> ReaderProbe:
    """Open the nfcpy reader on `path` once and close it again (the doctor's and enrollment's
    reader check). Never raises: what went wrong is the probe's `detail`."""
    result: list[ReaderProbe] = []

    def attempt() -> None:
        clf = nfc.ContactlessFrontend()
        try:
            if clf.open(path):
                result.append(ReaderProbe(True, str(clf.device)))  # "PN532v1.6 at /dev/…"
            else:
                result.append(ReaderProbe(False, f"no NFC reader found on {path}"))
        except OSError as exc:
            result.append(ReaderProbe(False, f"NFC reader on {path}: {exc.strerror or exc}"))
        except Exception as exc:  # a driver bug is a finding, not a crash of the check
            result.append(ReaderProbe(False, f"NFC reader on {path} failed: {exc}"))
        finally:
            _close_quietly(clf)  # a vanished port must not keep the reader open

    thread = threading.Thread(target=attempt, name="reader-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not result:
        return ReaderProbe(False, f"the NFC reader on {path} did not answer in {timeout_s:.0f} s")
    return result[0]


# -- the reader thread -----------------------------------------------------------------------
def _as_oserror(error: BaseException) -> OSError:
    """termios.error(errno, text) as the OSError it stands for."""
    if isinstance(error, OSError):
        return error
    code, text = (*error.args, None, None)[:2]
    return OSError(code if isinstance(code, int) else errno.EIO, str(text or error))


def _link_lost(path: str, error: BaseException) -> ReaderStatusEvent:
    """The reader failed after it was opened: a port that vanished is a reader unplugged."""
    error = _as_oserror(error)
    if error.errno is None:  # pyserial: "device reports readiness to read but returned no data"
        return ReaderStatusEvent(ReaderState.ABSENT, f"NFC reader on {path} disconnected.")
    return _open_failure(path, error)


def _close_quietly(clf: nfc.ContactlessFrontend) -> None:
    """Close nfcpy's reader even when its port is gone.

    nfcpy's pn532 driver writes an ACK and a PowerDown on close; on a tty that has vanished
    pyserial raises termios.error, which ContactlessFrontend.close does not catch, and the port
    would stay open. Close the port itself then.
    """
    try:
        clf.close()
    except Exception as error:
        log.debug("closing the NFC reader: %s", error)
        device, clf.device = clf.device, None
        transport = getattr(getattr(device, "chipset", None), "transport", None)
        port = getattr(transport, "tty", None)
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()


def _open_failure(path: str, error: OSError) -> ReaderStatusEvent:
    if error.errno == errno.EACCES:
        return ReaderStatusEvent(
            ReaderState.ERROR,
            f"Permission denied opening the NFC reader on {path}: install the udev rule or add "
            "the user to the plugdev group.")
    if error.errno == errno.EBUSY:
        return ReaderStatusEvent(
            ReaderState.ERROR,
            f"The NFC reader on {path} is in use by another program (blacklist the pn533 and "
            "nfc kernel modules).")
    if error.errno in (errno.ENODEV, errno.ENOENT, errno.EIO):
        return ReaderStatusEvent(ReaderState.ABSENT, f"NFC reader on {path} disconnected.")
    return ReaderStatusEvent(ReaderState.ERROR, f"NFC reader on {path} failed: {error}")


def _identity(target: RemoteTarget) -> tuple[str, bytes]:
    ident = target.sdd_res or (target.sensf_res or b"")[1:9] or (target.sensb_res or b"")[1:5]
    return target.brty, bytes(ident)


def _can_count_cards(clf: nfc.ContactlessFrontend) -> bool:
    """True for PN53x readers whose InListPassiveTarget takes two targets (PN532, ACR122U)."""
    chipset = getattr(clf.device, "chipset", None)
    return isinstance(chipset, nfc.clf.pn53x.Chipset) and getattr(
        chipset, "in_list_passive_target_max_target", 1) >= 2


class _ReaderLost(Exception):
    def __init__(self, status: ReaderStatusEvent):
        self.status = status


class Reader:
    """nfcpy reader on `path` ("usb", "usb:072f:2200", "tty:AMA0:pn532", "udp:host:port")."""

    def __init__(
        self,
        path: str,
        on_event: Callable[[ReaderEvent], None],
        *,
        targets: tuple[str, ...] = DEFAULT_TARGETS,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        presence_interval: float = DEFAULT_PRESENCE_INTERVAL,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
    ):
        self.path = path
        self._on_event = on_event
        self._targets = targets
        self._poll_interval = poll_interval
        self._presence_interval = presence_interval
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: ReaderStatusEvent | None = None

    @property
    def status(self) -> ReaderStatusEvent | None:
        return self._status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nfc-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End the reader thread; returns once it has closed the reader (or after `timeout`)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- thread body ---------------------------------------------------------------------
    def _emit(self, event: ReaderEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("NFC event consumer failed on %s", type(event).__name__)

    def _set_status(self, status: ReaderStatusEvent) -> None:
        # Report state changes; within one state only a new error's message is news.
        last = self._status
        if last is None or status.state is not last.state or (
            status.state is ReaderState.ERROR and status.message != last.message
        ):
            self._status = status
            log.info("NFC reader %s: %s", status.state.value, status.message)
            self._emit(status)

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            clf = nfc.ContactlessFrontend()
            try:
                if not clf.open(self.path):
                    self._set_status(ReaderStatusEvent(
                        ReaderState.ABSENT, f"No NFC reader found on {self.path}."))
                else:
                    delay = self._backoff[0]
                    self._set_status(ReaderStatusEvent(ReaderState.READY, f"Ready: {clf.device}"))
                    self._poll(clf)
            except _ReaderLost as lost:
                self._set_status(lost.status)
            except LINK_ERRORS as error:
                self._set_status(_open_failure(self.path, _as_oserror(error)))
            except Exception as error:  # a driver bug must not kill the reader thread
                log.exception("NFC reader failure")
                self._set_status(ReaderStatusEvent(
                    ReaderState.ERROR, f"NFC reader on {self.path} failed: {error}"))
            finally:
                _close_quietly(clf)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self._backoff[1])

    def _sense(self, clf: nfc.ContactlessFrontend) -> RemoteTarget | None:
        targets = [RemoteTarget(brty) for brty in self._targets]
        try:
            return clf.sense(*targets, iterations=1, interval=0)
        except LINK_ERRORS as error:
            raise _ReaderLost(_link_lost(self.path, error)) from error

    def _poll(self, clf: nfc.ContactlessFrontend) -> None:
        while not self._stop.is_set():
            target = self._sense(clf)
            if target is None:
                self._stop.wait(self._poll_interval)
                continue
            log.debug("found %s", target.brty)
            if target.brty == "106A" and _can_count_cards(clf):
                if self._count_type_a(clf) > 1:
                    self._refuse_several_cards(clf)
                    continue
                target = self._sense(clf)  # counting reset the field: select the card again
                if target is None:
                    continue
            self._serve(clf, target)

    def _count_type_a(self, clf: nfc.ContactlessFrontend) -> int:
        """How many Type A cards answer when the chip is asked for two targets.

        nfcpy asks a PN53x for one target only and reads whichever card wins the
        anticollision, so a second card would go unnoticed. The chip itself can list two.
        Leaves the field reset. A chip that refuses the question counts as one card.
        """
        device = clf.device
        try:
            with clf.lock:
                device.mute()  # every card back to IDLE, so all of them answer the REQA
                data = device.chipset.command(
                    IN_LIST_PASSIVE_TARGET, bytearray([2, BRTY_106A]), timeout=1.0)
        except nfc.clf.pn53x.Chipset.Error as error:
            log.debug("counting cards: %s", error)
            return 1
        except LINK_ERRORS as error:
            raise _ReaderLost(_link_lost(self.path, error)) from error
        return data[0] if data else 0

    def _refuse_several_cards(self, clf: nfc.ContactlessFrontend) -> None:
        """Read none of several cards; report once, then wait until at most one is left."""
        self._emit(NotPaymentCardEvent(
            NotPaymentReason.SEVERAL_CARDS,
            NOT_PAYMENT_MESSAGES[NotPaymentReason.SEVERAL_CARDS]))
        while not self._stop.wait(self._presence_interval):
            if self._count_type_a(clf) < 2:
                self._emit(CardRemovedEvent())
                return

    def _serve(self, clf: nfc.ContactlessFrontend, target: RemoteTarget) -> None:
        """One card in the field: read it once, report, then wait until it leaves."""
        iso_dep = bool(target.sel_res and target.sel_res[0] & SAK_ISO14443_4)
        if iso_dep or target.brty.endswith("B"):
            try:
                tag = nfc.tag.activate(clf, target)  # RATS/ATS; None on a broken link
            except LINK_ERRORS as error:
                raise _ReaderLost(_link_lost(self.path, error)) from error
            except Exception:  # nfcpy indexes into a malformed ATS without checking
                log.warning("ISO-DEP activation failed", exc_info=True)
                self._serve_other(clf, target, product="a card that answers incorrectly")
                return
            if isinstance(tag, nfc.tag.tt4.Type4Tag):
                self._serve_type4(tag)
                return
            if tag is None:
                self._emit(HoldStillEvent())
                return
        self._serve_other(clf, target)

    def _serve_type4(self, tag: nfc.tag.tt4.Type4Tag) -> None:
        handle = CardHandle(tag)
        try:
            event = read_tap(handle)
        except ReaderUnavailableError as error:
            raise _ReaderLost(ReaderStatusEvent(ReaderState.ABSENT, str(error))) from error
        self._emit(event)
        if isinstance(event, HoldStillEvent):
            handle.close()
            return
        try:
            while not self._stop.wait(self._presence_interval):
                if not handle.check_presence():
                    self._emit(CardRemovedEvent())
                    return
        except LINK_ERRORS as error:
            raise _ReaderLost(_link_lost(self.path, error)) from error
        finally:
            handle.close()

    def _serve_other(
        self, clf: nfc.ContactlessFrontend, target: RemoteTarget, product: str | None = None
    ) -> None:
        product = product or self._describe(clf, target)
        self._emit(NotPaymentCardEvent(
            NotPaymentReason.NOT_TYPE4,
            NOT_PAYMENT_MESSAGES[NotPaymentReason.NOT_TYPE4].format(product=product)))
        identity = _identity(target)
        # No ISO-DEP presence check for these tags: sense again until it is gone.
        while not self._stop.wait(self._presence_interval):
            again = self._sense(clf)
            if again is None or _identity(again) != identity:
                self._emit(CardRemovedEvent())
                return

    @staticmethod
    def _describe(clf: nfc.ContactlessFrontend, target: RemoteTarget) -> str:
        try:
            tag = nfc.tag.activate(clf, target)
        except Exception:  # best effort: only used to name the tag on screen
            tag = None
        if tag is None:
            return "an unknown tag"
        return f"{tag.product}"


# -- blocking helpers for the CLI ------------------------------------------------------------
@contextlib.contextmanager
def card_session(path: str, timeout: float) -> Iterator[CardEvent | None]:
    """Wait up to `timeout` s for one card; yield its event with a live handle, then stop.

    Yields None if no card came. Raises `ReaderUnavailableError` if the reader is absent or
    failing when the wait starts.
    """
    events: queue.Queue[ReaderEvent] = queue.Queue()
    reader = Reader(path, events.put)
    reader.start()
    try:
        yield _first_card_event(events, timeout)
    finally:
        reader.stop()


def _first_card_event(events: queue.Queue[ReaderEvent], timeout: float) -> CardEvent | None:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            return None
        if isinstance(event, ReaderStatusEvent) and event.state is not ReaderState.READY:
            raise ReaderUnavailableError(event.message)
        if isinstance(event, TapEvent | NotPaymentCardEvent | HoldStillEvent):
            return event


def read_one_tap(path: str, timeout: float) -> CardEvent | None:
    """Wait for one tap and return its event (the handle is closed by then); None on timeout."""
    with card_session(path, timeout) as event:
        return event


class NfcpyTransport:
    """Adapter for `nfc.tag.tt4.Type4ATag`: raw ISO-DEP exchange through `tag.transceive`.

    nfcpy's `send_apdu` raises on the native `91xx` status words, so the raw path is used and
    status handling stays in this package.
    """

    def __init__(self, tag: nfc.tag.tt4.Type4ATag, timeout: float | None = None) -> None:
        self._tag = tag
        self._timeout = timeout

    def transceive(self, apdu: bytes) -> bytes:
        try:
            response = self._tag.transceive(bytearray(apdu), timeout=self._timeout)
        except nfc.tag.TagCommandError as error:
            if error.errno == nfc.tag.TIMEOUT_ERROR:
                raise CardRemovedError() from error
            raise TransportError() from error
        except (nfc.clf.TimeoutError, nfc.clf.BrokenLinkError) as error:
            raise CardRemovedError() from error
        except nfc.clf.CommunicationError as error:
            raise TransportError() from error
        if response is None:
            raise CardRemovedError()
        return bytes(response)
