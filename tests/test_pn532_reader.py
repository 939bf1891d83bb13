"""nfcpy's real `pn532` driver and `tty` transport, over a real pseudo-terminal, against the
emulated PN532 (hw.sim.pn532_pty, in a process of its own: hw.sim.pn532_process) with
simulated NTAG 424 DNA card files on its antenna.

Nothing of nfcpy is replaced: `ContactlessFrontend("tty:NAME:pn532")` finds /dev/NAME, opens
it with pyserial, wakes the chip, switches the baud rate and talks PN532 frames to it. The
link must live in /dev for nfcpy to find it, so these tests need write access there (root).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import select
import subprocess
import sys
import time
from pathlib import Path

import nfc
import nfc.clf.pn532
import pytest

from hw.nfc import (
    CardRemovedEvent,
    HoldStillEvent,
    NotPaymentCardEvent,
    NotPaymentReason,
    Reader,
    ReaderState,
    ReaderStatusEvent,
    TapEvent,
    card_session,
)
from hw.ntag424 import crypto
from hw.ntag424.tag import Ntag424
from hw.sim.card import SimulatedNtag424
from hw.sim.pn532_process import Pn532Process
from hw.sim.pn532_pty import LinkError, nfcpy_device_string
from hw.sim.state import load_state
from terminal.app.config import load_config
from terminal.app.doctor import Status as CheckStatus
from terminal.app.doctor import System, check_reader
from terminal.protocols.boltcard.provisioning import BoltcardKeys, program_boltcard

ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0
RECOVERY_S = 3.0  # issue 14: a reader plugged back in is working again within 3 s
UID = bytes.fromhex("04A1B2C3D4E5F6")
OTHER_UID = bytes.fromhex("04B7C8D9E0F1A2")
BASE_URL = "lnurlw://pay.example.com/ln"
KEYS = BoltcardKeys(*(bytes([n]) * 16 for n in range(0x10, 0x15)), version=1)
READ_SEQUENCE_APDUS = 5  # select app, select CC, read CC, select NDEF, read NDEF

pytestmark = pytest.mark.skipif(not os.access("/dev", os.W_OK),
                                reason="nfcpy opens tty readers only in /dev: needs root")
_names = itertools.count()


def link_path() -> Path:
    return Path(f"/dev/ttyFTSIM-{os.getpid()}-{next(_names)}")


def boltcard(directory: Path, uid: bytes = UID) -> Path:
    """A Boltcard in a card file (its read-back after programming used counter 1)."""
    card = SimulatedNtag424.factory(uid=uid)
    card.power_on()
    program_boltcard(Ntag424(card), KEYS, BASE_URL)
    card.deactivate()
    path = directory / f"card-{uid.hex()}.json"
    card.save(path)
    return path


def read_counter(card_file: Path) -> int:
    return load_state(card_file).files[2].sdm_read_ctr


def sun_counter(uri: str, uid: bytes = UID) -> int:
    """Decrypt `p` with K1, check `c` with K2; the SDM read counter of this tap."""
    query = dict(part.split("=") for part in uri.split("?", 1)[1].split("&"))
    picc = crypto.aes_ecb_decrypt(KEYS.k1, bytes.fromhex(query["p"]))
    assert picc[0] == 0xC7 and picc[1:8] == uid
    counter_le = picc[8:11]
    assert crypto.sdm_mac(KEYS.k2, uid, counter_le) == bytes.fromhex(query["c"])
    return int.from_bytes(counter_le, "little")


class Events:
    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()

    def __call__(self, event: object) -> None:
        self.queue.put((time.monotonic(), event))

    def expect(self, kind: type, timeout: float = WAIT):
        _, event = self.queue.get(timeout=timeout)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    def expect_at(self, kind: type, timeout: float = WAIT) -> tuple[float, object]:
        at, event = self.queue.get(timeout=timeout)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return at, event

    def pending(self) -> list[object]:
        items = []
        while True:
            try:
                items.append(self.queue.get_nowait()[1])
            except queue.Empty:
                return items


@pytest.fixture
def emulator():
    with Pn532Process(link_path()) as emu:
        yield emu
    assert not os.path.lexists(emu.link)  # the link goes with the reader


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def reader(emulator, events):
    """The kiosk's reader thread on the emulated PN532 (real backoff, fast polling)."""
    r = Reader(emulator.nfcpy_path, events, poll_interval=0.005, presence_interval=0.005)
    r.start()
    assert events.expect(ReaderStatusEvent).state is ReaderState.READY
    yield r
    r.stop()
    assert not r.running


# -- the driver ---------------------------------------------------------------------------------
def test_nfcpy_opens_it_with_its_own_pn532_driver_and_closes_it_to_sleep(emulator):
    clf = nfc.ContactlessFrontend(emulator.nfcpy_path)
    try:
        assert isinstance(clf.device, nfc.clf.pn532.Device)
        assert clf.device.chipset_name == "PN532v1.6"
        assert clf.device.path == str(emulator.link)
        # nfcpy's HSU start-up: wake-up preamble + GetFirmwareVersion, SAMConfiguration, a
        # faster baud rate (stty succeeds on a pty), the 262-byte line test in extended
        # frames, then its parameters and RF settings and the field off.
        opened = emulator.stats()
        assert opened.history == [
            "GET_FIRMWARE_VERSION", "SAM_CONFIGURATION", "SET_SERIAL_BAUD_RATE", "DIAGNOSE",
            "GET_FIRMWARE_VERSION", "SET_PARAMETERS", *["RF_CONFIGURATION"] * 8]
        assert opened.baud_requests == [921600]  # the fastest rate stty accepted on the pty
        assert opened.parameters == 0x00  # no automatic RATS: nfcpy does ISO-DEP itself
        assert opened.frame_errors == 0
        assert clf.sense(nfc.clf.RemoteTarget("106A"), nfc.clf.RemoteTarget("106B"),
                         nfc.clf.RemoteTarget("212F")) is None
    finally:
        clf.close()
    assert emulator.wait_for(lambda s: s.baudrate == 115200 and s.asleep)
    assert emulator.stats().history[-2:] == ["SET_SERIAL_BAUD_RATE", "POWER_DOWN"]


def test_link_must_be_a_dev_name_nfcpy_can_spell(tmp_path):
    assert nfcpy_device_string("/dev/ttyFLASHSIM0") == "tty:ttyFLASHSIM0:pn532"
    for bad in (tmp_path / "reader", "/dev/USB0", "/dev/S1", "/dev/pts/3", "/dev/a_b"):
        with pytest.raises(LinkError):
            nfcpy_device_string(bad)


# -- taps ---------------------------------------------------------------------------------------
def test_tap_through_the_pn532_yields_the_sun_url(emulator, reader, events, tmp_path):
    card = boltcard(tmp_path)
    emulator.place(card)
    tap = events.expect(TapEvent)
    assert tap.uri.startswith(BASE_URL + "?p=")
    assert sun_counter(tap.uri) == 2
    assert tap.uid == UID
    assert emulator.stats().commands["IN_COMMUNICATE_THRU"] >= 1 + READ_SEQUENCE_APDUS
    emulator.remove()
    events.expect(CardRemovedEvent)
    emulator.place(card)
    assert sun_counter(events.expect(TapEvent).uri) == 3  # one tap, one read
    assert events.pending() == []


def test_blank_card_is_programmed_over_the_serial_link(emulator, tmp_path):
    """Long APDUs (ChangeKey, the NDEF write) chained through InCommunicateThru frames."""
    card = tmp_path / "blank.json"
    SimulatedNtag424.factory(uid=UID).save(card)
    emulator.place(card)
    with card_session(emulator.nfcpy_path, WAIT) as event:
        assert isinstance(event, NotPaymentCardEvent) and event.reason is NotPaymentReason.BLANK
        read_back = program_boltcard(Ntag424(event.handle), KEYS, BASE_URL)
    assert sun_counter(read_back) == 1
    emulator.remove()
    assert [key.version for key in load_state(card).keys] == [1] * 5


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from terminal.sandbox.server import SandboxThread

    with SandboxThread(tmp_path_factory.mktemp("sandbox")) as sb:
        sb.write_terminal_config()
        yield sb


def terminal_config(sandbox, tmp_path: Path, reader_path: str):
    """The sandbox terminal's configuration with the reader at `reader_path`."""
    path = sandbox.write_terminal_config(tmp_path / "terminal.toml")
    with path.open("a") as fh:
        fh.write(f'\n[reader]\npath = "{reader_path}"\n')
    return load_config(str(path))


# -- the reader unplugged -----------------------------------------------------------------------
def test_reader_unplugged_is_shown_by_doctor_and_back_within_3_s(emulator, reader, events,
                                                                  sandbox, tmp_path):
    config = terminal_config(sandbox, tmp_path, emulator.nfcpy_path)
    system = System(path=str(tmp_path), systemd_dir=tmp_path / "no-systemd")

    emulator.unplug()
    status = events.expect(ReaderStatusEvent)
    assert status.state is ReaderState.ABSENT and "disconnected" in status.message
    outage = check_reader(config, system)
    assert outage.status is CheckStatus.FAIL
    assert emulator.nfcpy_path in outage.detail

    plugged_at = time.monotonic()
    emulator.plug()
    ready_at, status = events.expect_at(ReaderStatusEvent, timeout=RECOVERY_S)
    assert status.state is ReaderState.READY
    assert ready_at - plugged_at < RECOVERY_S
    emulator.place(boltcard(tmp_path))
    assert sun_counter(events.expect(TapEvent).uri) == 2


def test_unplugged_with_a_card_held_recovers_and_reads_it_again(emulator, reader, events,
                                                                 tmp_path):
    card = boltcard(tmp_path)
    emulator.place(card)
    handle = events.expect(TapEvent).handle
    emulator.unplug()
    assert events.expect(ReaderStatusEvent).state is ReaderState.ABSENT
    assert not handle.present
    emulator.plug()
    assert events.expect(ReaderStatusEvent, timeout=RECOVERY_S).state is ReaderState.READY
    emulator.place(card)  # still in the hand: placed on the replugged reader
    assert sun_counter(events.expect(TapEvent).uri) == 3


def test_doctor_sees_the_reader_when_it_is_there(emulator, sandbox, tmp_path):
    config = terminal_config(sandbox, tmp_path, emulator.nfcpy_path)
    check = check_reader(config, System(path=str(tmp_path), systemd_dir=tmp_path / "none"))
    assert check.status is CheckStatus.OK
    assert "PN532" in check.detail


# -- cards pulled too soon, several cards --------------------------------------------------------
@pytest.mark.parametrize("answered", range(READ_SEQUENCE_APDUS))
@pytest.mark.parametrize("last_answer_lost", [False, True])
def test_card_pulled_mid_read_is_read_again_once(emulator, reader, events, answered,
                                                 last_answer_lost, tmp_path):
    """Pulled at any point of the read: HoldStill, never a tap; the next placement is one tap."""
    card = boltcard(tmp_path)
    executed = answered + 1 if last_answer_lost else answered
    emulator.place(card, pull_after=executed, answer_last=not last_answer_lost)
    assert "hold" in events.expect(HoldStillEvent).message.lower()
    # What real hardware reports: a CRC error for an answer cut short, then nothing but
    # timeouts to nfcpy's R(NAK) retries.
    seen = emulator.stats()
    assert seen.rf_errors.get("CRC", 0) == (1 if last_answer_lost else 0)
    assert seen.rf_errors["TIMEOUT"] >= 1
    assert seen.apdus == executed
    emulator.place(card)
    lost_read = last_answer_lost and executed == READ_SEQUENCE_APDUS  # that read used a count
    assert sun_counter(events.expect(TapEvent).uri) == (3 if lost_read else 2)
    emulator.remove()
    events.expect(CardRemovedEvent)
    assert events.pending() == []  # one placement, one tap: never counted twice


def test_two_cards_at_once_are_refused_one_card_at_a_time(emulator, reader, events, tmp_path):
    """Two cards in the field: nothing is read until one is taken away."""
    first, second = boltcard(tmp_path), boltcard(tmp_path, OTHER_UID)
    emulator.place(first, second)
    event = events.expect(NotPaymentCardEvent)
    assert event.reason is NotPaymentReason.SEVERAL_CARDS
    assert event.message.startswith("One card at a time")
    assert event.handle is None
    looks = emulator.stats().commands["IN_LIST_PASSIVE_TARGET"]
    assert emulator.wait_for(lambda s: s.commands["IN_LIST_PASSIVE_TARGET"] > looks + 10)
    assert emulator.stats().apdus == 0  # neither card was read: no SUN counter used
    assert read_counter(first) == read_counter(second) == 1
    emulator.remove(first)
    events.expect(CardRemovedEvent)
    tap = events.expect(TapEvent)
    assert tap.uid == OTHER_UID
    assert sun_counter(tap.uri, OTHER_UID) == 2
    assert events.pending() == []


def test_a_second_card_joining_a_held_one_is_read_after_the_first_leaves(emulator, reader,
                                                                       events, tmp_path):
    first, second = boltcard(tmp_path), boltcard(tmp_path, OTHER_UID)
    emulator.place(first)
    assert events.expect(TapEvent).uid == UID
    emulator.add(second)  # not selected, so it stays quiet while the first is held
    checks = emulator.stats().commands["IN_COMMUNICATE_THRU"]
    assert emulator.wait_for(lambda s: s.commands["IN_COMMUNICATE_THRU"] > checks + 5)
    assert events.pending() == []
    emulator.remove(first)
    events.expect(CardRemovedEvent)
    assert events.expect(TapEvent).uid == OTHER_UID


# -- the command line: card simulate reader + charge --reader ------------------------------------
def readline(stream, timeout: float = WAIT) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output in time"
    return stream.readline().strip()


def test_charge_takes_the_tap_from_the_emulated_reader_and_pays(sandbox, tmp_path, capsys):
    from terminal.app.cli import main

    config = sandbox.sandbox.data_dir / "terminal.toml"
    card = tmp_path / "card.json"
    assert main(["sandbox", "card", "new", str(card), "--data", str(config.parent),
                 "--balance", "100000", "--json"]) == 0
    capsys.readouterr()
    link = link_path()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    simulator = subprocess.Popen(
        [sys.executable, "-m", "terminal.app.cli", "card", "simulate", "reader", str(card),
         "--link", str(link)], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        device = readline(simulator.stdout)
        assert device == f"tty:{link.name}:pn532"
        simulator.stdin.write("place\n")
        simulator.stdin.flush()
        assert readline(simulator.stdout) == f"placed {card}"
        code = main(["charge", "2", "--currency", "USD", "--reader", device,
                     "--config", str(config), "--timeout", "30", "--json"])
        captured = capsys.readouterr()
        result = json.loads(captured.out.strip().splitlines()[-1])
        assert result["status"] == "paid", result
        assert code == 0
        assert f"Tap a card on the reader ({device})" in captured.err
        simulator.stdin.write("quit\n")
        simulator.stdin.flush()
        assert simulator.wait(WAIT) == 0
    finally:
        if simulator.poll() is None:
            simulator.kill()
            simulator.wait()
    assert not os.path.lexists(link)
    assert main(["card", "simulate", "info", str(card), "--json"]) == 0
    # Created with counter 1 (its read-back); one tap on the reader: 2, saved to the file.
    assert json.loads(capsys.readouterr().out)["counter"] == 2


def test_charge_with_no_reader_fails_the_sale_with_a_plain_reason(sandbox, capsys):
    from terminal.app.cli import main

    config = sandbox.sandbox.data_dir / "terminal.toml"
    code = main(["charge", "2", "--currency", "USD", "--reader", f"tty:{link_path().name}:pn532",
                 "--config", str(config), "--timeout", "5", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 4
    assert result["status"] == "failed" and result["reason"] == "reader-unavailable"
    assert "No NFC reader found" in result["message"]


def test_charge_whose_timeout_passes_before_a_tap_lets_the_reader_go(sandbox, emulator,
                                                                     capsys):
    """`--timeout` bounds the whole sale: no card came, nothing is charged, and the command
    returns at once instead of holding the reader until the invoice expires. Nothing reached
    an issuer, so the sale is final: failed, `no-tap` (never "pending: do not charge again")."""
    from terminal.app.cli import main

    config = sandbox.sandbox.data_dir / "terminal.toml"
    started = time.monotonic()
    code = main(["charge", "2", "--currency", "USD", "--reader", emulator.nfcpy_path,
                 "--config", str(config), "--timeout", "1", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 4
    assert result["status"] == "failed" and result["reason"] == "no-tap", result
    assert result["payment_hash"] and "No card was tapped" in result["message"]
    assert time.monotonic() - started < 1 + WAIT
    assert emulator.wait_for(lambda s: s.asleep)  # nfcpy closed the reader (PowerDown)


def test_take_tap_without_a_card_ends_with_no_tap(emulator, tmp_path):
    from terminal.app.cli.reader_tap import NO_TAP, take_tap

    notices: list[str] = []
    tap = take_tap(emulator.nfcpy_path, 0.5, notice=notices.append)
    assert (tap.url, tap.reason) == (None, NO_TAP)
    assert "No card was tapped on the reader within 0.5 s" in tap.message
    assert notices == [f"Tap a card on the reader ({emulator.nfcpy_path})."]
    emulator.place(boltcard(tmp_path))
    tap = take_tap(emulator.nfcpy_path, WAIT, notice=notices.append)
    assert tap.url is not None and sun_counter(tap.url) == 2


def test_simulate_reader_refuses_links_nfcpy_cannot_open(tmp_path, capsys):
    from terminal.app.cli import main

    card = tmp_path / "card.json"
    SimulatedNtag424.factory(uid=UID).save(card)
    assert main(["card", "simulate", "reader", str(card), "--link", str(tmp_path / "r")]) == 2
    assert "only in /dev" in capsys.readouterr().err
    assert main(["card", "simulate", "reader", str(tmp_path / "none.json"),
                 "--link", str(link_path())]) == 2
    assert "no simulated card" in capsys.readouterr().err


def test_emulator_that_cannot_make_its_link_says_why(tmp_path):
    from hw.sim.pn532_pty import Pn532Emulator

    with pytest.raises(FileNotFoundError):
        Pn532Emulator(tmp_path / "no-such-dir" / "ttyX").start()
