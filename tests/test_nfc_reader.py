"""The NFC reader through nfcpy's real ContactlessFrontend, ISO-DEP and Type 4 code.

Only nfcpy's driver lookup is replaced (hw.sim.nfcpy_device); the card under it is a simulated
NTAG 424 DNA or, for cases it cannot play, a small stand-in card defined here.
"""

from __future__ import annotations

import queue
import threading

import ndef
import nfc
import nfc.tag.tt4
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.nfc import (
    CardRemovedError,
    CardRemovedEvent,
    HoldStillEvent,
    NotPaymentCardEvent,
    NotPaymentReason,
    Reader,
    ReaderState,
    ReaderStatusEvent,
    ReaderUnavailableError,
    TapEvent,
    card_session,
    first_uri,
    read_one_tap,
)
from hw.ntag424 import crypto
from hw.ntag424.tag import Ntag424
from hw.sim.card import SimulatedNtag424
from hw.sim.nfcpy_device import IsoDepCardSide, SimReader, installed
from terminal.protocols.boltcard.provisioning import BoltcardKeys, program_boltcard

WAIT = 5.0  # generous upper bound for any single event; tests finish far sooner
UID = bytes.fromhex("04A1B2C3D4E5F6")
BASE_URL = "lnurlw://pay.example.com/ln"
KEYS = BoltcardKeys(*(bytes([n]) * 16 for n in range(0x10, 0x15)), version=1)
NDEF_AID = bytes.fromhex("D2760000850101")
SELECT_APP = bytes.fromhex("00A4040C07") + NDEF_AID
SELECT_NDEF_FILE = bytes.fromhex("00A4000C02E104")


# -- cards --------------------------------------------------------------------------------------
def blank_card() -> SimulatedNtag424:
    return SimulatedNtag424.factory(uid=UID)


def boltcard() -> SimulatedNtag424:
    """A simulated NTAG 424 DNA programmed as a Boltcard (its read-back used counter 1)."""
    card = blank_card()
    card.power_on()
    program_boltcard(Ntag424(card), KEYS, BASE_URL)
    card.deactivate()
    return card


def card_with_ndef(records: list[ndef.Record]) -> SimulatedNtag424:
    """A factory card whose (still freely writable) NDEF file holds `records`."""
    card = blank_card()
    message = b"".join(ndef.message_encoder(records))
    content = len(message).to_bytes(2, "big") + message
    card.power_on()
    writes = [bytes([0x00, 0xD6, 0x00, at, len(chunk)]) + chunk
              for at, chunk in ((at, content[at:at + 128]) for at in range(0, len(content), 128))]
    for apdu in (SELECT_APP, SELECT_NDEF_FILE, *writes):
        assert card.transceive(apdu) == b"\x90\x00"
    card.deactivate()
    return card


def sun_counter(uri: str) -> int:
    """Decrypt `p` with K1, check `c` with K2; the SDM read counter of this tap."""
    query = dict(part.split("=") for part in uri.split("?", 1)[1].split("&"))
    picc = crypto.aes_ecb_decrypt(KEYS.k1, bytes.fromhex(query["p"]))
    assert picc[0] == 0xC7 and picc[1:8] == UID
    counter_le = picc[8:11]
    assert crypto.sdm_mac(KEYS.k2, UID, counter_le) == bytes.fromhex(query["c"])
    return int.from_bytes(counter_le, "little")


class BankCard:
    """An ISO-DEP card without the NFC Forum application: every select is 'not found'."""

    uid = bytes.fromhex("08123456")
    sens_res = bytes.fromhex("0400")

    def transceive(self, apdu: bytes) -> bytes:
        return b"\x6a\x82"


class Type2Tag:
    """A Type 2 tag (SAK 00, non-NXP UID so nfcpy sends no GET_VERSION): raw frames only."""

    uid = bytes.fromhex("05112233445566")
    sens_res = bytes.fromhex("4400")
    sel_res = bytes.fromhex("00")

    def exchange_frame(self, frame: bytes) -> bytes | None:
        if frame[0] == 0x30:  # READ: 4 pages
            page = frame[1]
            return bytes(range(page * 4, page * 4 + 16))
        return None  # anything else: the tag goes mute


# -- harness ----------------------------------------------------------------------------------
class Events:
    """Collects reader events from the reader thread; `next()` waits without sleeping."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()

    def __call__(self, event: object) -> None:
        self.queue.put(event)

    def next(self, timeout: float = WAIT) -> object:
        return self.queue.get(timeout=timeout)

    def expect(self, kind: type, timeout: float = WAIT):
        event = self.next(timeout)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    def pending(self) -> list[object]:
        items = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items


@pytest.fixture
def sim():
    reader = SimReader()
    with installed(reader, "sim:test"):
        yield reader


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def reader(sim, events):
    r = Reader("sim:test", events, poll_interval=0.005, presence_interval=0.005,
               backoff=(0.005, 0.02))
    r.start()
    assert events.expect(ReaderStatusEvent).state is ReaderState.READY
    yield r
    r.stop()
    assert not r.running


# -- taps ---------------------------------------------------------------------------------------
def test_tap_yields_the_boltcard_sun_url(sim, reader, events):
    """A Boltcard tap gives one TapEvent: the SUN URL as on the card, valid under K1/K2."""
    sim.place(boltcard())
    tap = events.expect(TapEvent)
    assert tap.uri.startswith(BASE_URL + "?p=") and "&c=" in tap.uri
    assert sun_counter(tap.uri) == 2  # programming's read-back used 1
    assert tap.uid == UID
    assert UID.hex() not in repr(tap).lower()


def test_usb_path_opens_the_simulated_reader():
    """With the sim installed on "usb", ContactlessFrontend('usb') itself finds it."""
    sim = SimReader()
    with installed(sim, "usb"):
        clf = nfc.ContactlessFrontend("usb")
        try:
            sim.place(boltcard())
            target = clf.sense(nfc.clf.RemoteTarget("106A"))
            tag = nfc.tag.activate(clf, target)
            assert isinstance(tag, nfc.tag.tt4.Type4ATag)
            assert tag.ndef is not None
            assert sun_counter(tag.ndef.records[0].iri) == 2
        finally:
            clf.close()


def test_one_tap_advances_the_counter_by_one(sim, reader, events):
    """However long the card stays, one tap is one read sequence: the counter goes up by 1."""
    card = boltcard()
    counters = []
    for _ in range(3):
        sim.place(card)
        counters.append(sun_counter(events.expect(TapEvent).uri))
        checks = sim.presence_checks
        assert sim.wait_for(lambda c=checks: sim.presence_checks >= c + 5)  # card still held
        sim.remove()
        events.expect(CardRemovedEvent)
    assert counters == [2, 3, 4]
    assert card.state.files[2].sdm_read_ctr == 4
    assert events.pending() == []


def test_blank_card_is_programmed_through_the_tap_handle(sim, reader, events):
    """A blank card taps as NotPaymentCard(BLANK) with a handle; programming over nfcpy works."""
    card = blank_card()
    sim.place(card)
    event = events.expect(NotPaymentCardEvent)
    assert event.reason is NotPaymentReason.BLANK
    read_back = program_boltcard(Ntag424(event.handle), KEYS, BASE_URL)
    assert sun_counter(read_back) == 1
    sim.remove()
    events.expect(CardRemovedEvent)
    sim.place(card)
    assert sun_counter(events.expect(TapEvent).uri) == 2


def test_removed_card_handle_raises(sim, reader, events):
    """The handle works while the card is held, and raises CardRemovedError after it left."""
    sim.place(boltcard())
    handle = events.expect(TapEvent).handle
    assert handle.transceive(SELECT_APP) == b"\x90\x00"
    sim.remove()
    events.expect(CardRemovedEvent)
    with pytest.raises(CardRemovedError):
        handle.transceive(SELECT_APP)


def test_long_commands_and_answers_are_chained(sim, reader, events):
    """APDUs longer than the card's frame (FSC 128) and answers longer than FSD are chained."""
    long_uri = "lnurlw://h.example/" + "x" * 200
    card = card_with_ndef([ndef.UriRecord(long_uri)])
    sim.place(card)
    tap = events.expect(TapEvent)
    assert tap.uri == long_uri
    handle = tap.handle
    assert handle.transceive(SELECT_NDEF_FILE) == b"\x90\x00"
    payload = bytes(range(200))
    assert handle.transceive(bytes.fromhex("00D60010C8") + payload) == b"\x90\x00"
    answer = handle.transceive(bytes.fromhex("00B0000000"))
    assert len(answer) == 258 and answer[16:216] == payload and answer[-2:] == b"\x90\x00"


# -- not a payment card -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make_card", "reason"),
    [
        (blank_card, NotPaymentReason.BLANK),
        (lambda: card_with_ndef([ndef.Record()]), NotPaymentReason.BLANK),
        (BankCard, NotPaymentReason.NO_NDEF),
        (lambda: card_with_ndef([ndef.TextRecord("hello")]), NotPaymentReason.NO_LINK),
    ],
    ids=["factory-card", "wiped-card", "bank-card", "text-record"],
)
def test_type4_card_without_link_is_not_a_payment_card(sim, reader, events, make_card, reason):
    """An ISO-DEP card without a URI gives NotPaymentCard with a handle (for programming)."""
    sim.place(make_card())
    event = events.expect(NotPaymentCardEvent)
    assert event.reason is reason
    assert event.message
    assert event.handle is not None and event.handle.present
    sim.remove()
    events.expect(CardRemovedEvent)


def test_type2_tag_is_not_a_payment_card(sim, reader, events):
    """A Type 2 sticker gives one NotPaymentCard event, then CardRemoved when taken away."""
    sim.place(Type2Tag())
    event = events.expect(NotPaymentCardEvent)
    assert event.reason is NotPaymentReason.NOT_TYPE4
    assert "not a payment card" in event.message
    assert event.handle is None
    senses = sim.senses
    assert sim.wait_for(lambda: sim.senses >= senses + 5)  # re-sensed while held, no new event
    sim.remove()
    events.expect(CardRemovedEvent)
    assert events.pending() == []


# -- interrupted taps ---------------------------------------------------------------------------
READ_SEQUENCE_APDUS = 5  # select app, select CC, read CC, select NDEF, read NDEF


@pytest.mark.parametrize("answered", range(READ_SEQUENCE_APDUS))
@pytest.mark.parametrize("last_answer_lost", [False, True])
def test_card_pulled_mid_read_asks_to_hold_still(sim, reader, events, answered, last_answer_lost):
    """Pulled at any point of the read sequence: HoldStill, never a tap; a retap works."""
    card = boltcard()
    sim.place(card)
    executed = answered + 1 if last_answer_lost else answered
    sim.remove_after(executed, answer_last=not last_answer_lost)
    event = events.expect(HoldStillEvent)
    assert "hold" in event.message.lower()
    assert sim.apdus == executed
    sim.place(card)  # a steadier second tap works; a read whose answer was lost used a count
    lost_read = last_answer_lost and executed == READ_SEQUENCE_APDUS
    assert sun_counter(events.expect(TapEvent).uri) == (3 if lost_read else 2)


def test_card_pulled_during_activation_asks_to_hold_still(sim, reader, events):
    """A card that answers the anticollision but not the RATS: HoldStill, no APDU sent."""
    card = boltcard()
    card.ats = None
    sim.place(card)
    events.expect(HoldStillEvent)
    assert sim.apdus == 0


def test_malformed_ats_is_reported_not_crashed_on(sim, reader, events):
    """nfcpy trips over a one-byte ATS; the reader names the card and keeps running."""
    card = boltcard()
    card.ats = b"\x01"
    sim.place(card)
    event = events.expect(NotPaymentCardEvent)
    assert event.reason is NotPaymentReason.NOT_TYPE4
    sim.remove()
    events.expect(CardRemovedEvent)
    sim.place(boltcard())
    assert sun_counter(events.expect(TapEvent).uri) == 2


# -- the reader itself --------------------------------------------------------------------------
def test_absent_reader_reported_then_found_when_plugged_in(events):
    """No reader: status absent and retries with backoff; plugging it in makes it ready."""
    sim = SimReader(plugged=False)
    with installed(sim, "sim:late"):
        reader = Reader("sim:late", events, poll_interval=0.005, backoff=(0.005, 0.02))
        reader.start()
        try:
            assert events.expect(ReaderStatusEvent).state is ReaderState.ABSENT
            sim.plug()
            assert events.expect(ReaderStatusEvent).state is ReaderState.READY
            sim.place(boltcard())
            assert sun_counter(events.expect(TapEvent).uri) == 2
        finally:
            reader.stop()
        assert not reader.running


def test_reader_unplugged_while_running_reconnects(sim, reader, events):
    """Unplugging reports absent (once), plugging back in reports ready again."""
    opened = sim.opened
    sim.unplug()
    status = events.expect(ReaderStatusEvent)
    assert status.state is ReaderState.ABSENT
    sim.plug()
    assert events.expect(ReaderStatusEvent).state is ReaderState.READY
    assert sim.opened > opened


def test_reader_unplugged_while_card_held(sim, reader, events):
    """The reader going away during a held card closes the handle and reports absent."""
    sim.place(boltcard())
    handle = events.expect(TapEvent).handle
    sim.unplug()
    assert events.expect(ReaderStatusEvent).state is ReaderState.ABSENT
    assert not handle.present


def test_stop_joins_promptly_even_with_a_card_held(sim, events):
    """stop() ends the thread while it waits for a card and while it holds one."""
    for hold_card in (False, True):
        if hold_card:
            sim.place(boltcard())
        reader = Reader("sim:test", events, poll_interval=10.0, presence_interval=10.0)
        reader.start()
        assert events.expect(ReaderStatusEvent).state is ReaderState.READY
        if hold_card:
            handle = events.expect(TapEvent).handle
        reader.stop(timeout=2.0)
        assert not reader.running
        if hold_card:
            assert not handle.present
        sim.remove()


def test_consumer_exception_does_not_kill_the_reader(sim):
    """A failing on_event callback is logged; the reader keeps serving taps."""
    seen = Events()
    fail_once = threading.Event()

    def consumer(event):
        seen(event)
        if isinstance(event, TapEvent) and not fail_once.is_set():
            fail_once.set()
            raise RuntimeError("consumer bug")

    reader = Reader("sim:test", consumer, poll_interval=0.005, presence_interval=0.005)
    with reader:
        seen.expect(ReaderStatusEvent)
        card = boltcard()
        sim.place(card)
        seen.expect(TapEvent)
        sim.remove()
        seen.expect(CardRemovedEvent)
        sim.place(card)
        seen.expect(TapEvent)
    assert not reader.running


# -- blocking helpers ---------------------------------------------------------------------------
def test_read_one_tap_returns_the_tap(sim):
    sim.place(boltcard())
    event = read_one_tap("sim:test", timeout=WAIT)
    assert isinstance(event, TapEvent) and sun_counter(event.uri) == 2
    assert not event.handle.present  # the reader stopped, the handle closed with it


def test_card_session_keeps_the_handle_alive(sim):
    sim.place(blank_card())
    with card_session("sim:test", timeout=WAIT) as event:
        assert isinstance(event, NotPaymentCardEvent)
        assert event.handle.transceive(SELECT_APP) == b"\x90\x00"


def test_read_one_tap_raises_when_no_reader():
    with installed(SimReader(plugged=False), "sim:none"), pytest.raises(ReaderUnavailableError):
        read_one_tap("sim:none", timeout=WAIT)


def test_read_one_tap_times_out_without_card(sim):
    assert read_one_tap("sim:test", timeout=0.05) is None


# -- properties ---------------------------------------------------------------------------------
class _DirectClf:
    """Just enough of a ContactlessFrontend for nfcpy's IsoDepInitiator: frames to a card side."""

    def __init__(self, side: IsoDepCardSide):
        self.side = side

    def exchange(self, data, timeout):
        answer = self.side.handle(bytes(data))
        if answer is None:
            raise nfc.clf.TimeoutError
        return bytearray(answer)


@settings(max_examples=60, deadline=None)
@given(command=st.binary(min_size=4, max_size=600), response=st.binary(max_size=600),
       fsdi=st.integers(0, 8), fsc=st.sampled_from([16, 32, 64, 128, 256]),
       presence_checks=st.integers(0, 3))
def test_iso_dep_round_trip_property(command, response, fsdi, fsc, presence_checks):
    """Any command/response size, frame size and presence checks between: both arrive intact."""
    received = []
    side = IsoDepCardSide(lambda apdu: received.append(apdu) or response + b"\x90\x00")
    assert side.handle(bytes([0xE0, fsdi << 4])) is not None  # RATS
    initiator = nfc.tag.tt4.IsoDepInitiator(_DirectClf(side), fsc, 0.04)
    for _ in range(2):
        for _ in range(presence_checks):
            initiator.exchange(None)
        assert bytes(initiator.exchange(bytearray(command))) == response + b"\x90\x00"
    assert received == [command, command]


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
               max_size=200))
def test_first_uri_returns_the_text_as_written(tail):
    """`first_uri` gives back exactly the URI text that was encoded (no percent-encoding)."""
    uri = "lnurlw://h.example/ln?" + tail
    message = b"".join(ndef.message_encoder([ndef.UriRecord(uri)]))
    assert first_uri(message) == ndef.UriRecord(uri).iri
