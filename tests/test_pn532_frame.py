"""The PN532 host link (UM0701-02 §6.2): frame codec properties and the emulated chip's side of
the dialogue (ACK, NACK, checksum errors, abort, wake-up, syntax errors), byte for byte.

The expected frames here are written out from the user manual, not built with the codec.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.sim.pn532 import WAKE_UP_LOST_BYTES, Pn532
from hw.sim.pn532_frame import (
    ACK,
    ERROR_FRAME,
    NACK,
    Ack,
    FrameDecoder,
    FrameError,
    Information,
    Nack,
    checksum,
    encode,
)
from hw.sim.pn532_rf import Antenna, crc_a

# UM0701-02 §6.2.1 and §7.2.2: GetFirmwareVersion and the PN532 V1.6 answer.
GET_FIRMWARE_VERSION = bytes.fromhex("0000ff02fed4022a00")
FIRMWARE_ANSWER = bytes.fromhex("0000ff06fad50332010607e800")
WAKE_UP = bytes(10)  # nfcpy's long preamble on HSU
SYNTAX_ERROR = bytes.fromhex("0000ff01ff7f8100")

payloads = st.binary(min_size=1, max_size=300)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


# -- the codec -------------------------------------------------------------------------------
def test_frames_from_the_manual():
    assert bytes.fromhex("0000ff00ff00") == ACK
    assert bytes.fromhex("0000ffff0000") == NACK
    assert ERROR_FRAME == SYNTAX_ERROR
    assert encode(bytes.fromhex("d402")) == GET_FIRMWARE_VERSION
    assert encode(bytes.fromhex("d50332010607")) == FIRMWARE_ANSWER
    # Extended frame: LEN and LCS FFh, then LENM LENL and their checksum (§6.2.1.2).
    assert encode(bytes.fromhex("d402"), extended=True) == bytes.fromhex(
        "0000ffffff0002fed4022a00")
    assert checksum(bytes([0x01, 0x06])) == 0xF9


@given(payloads, st.sampled_from([None, True]), st.lists(st.integers(0, 400), max_size=6),
       st.binary(max_size=8).filter(lambda b: b"\x00\xff" not in b and not b.endswith(b"\x00")))
def test_encode_decode_round_trip_in_any_pieces(payload, extended, cuts, noise):
    """Whatever precedes it and however the line splits it, a frame decodes to its payload."""
    stream = noise + encode(payload, extended=extended) + encode(b"\xd5\x01")
    decoder = FrameDecoder()
    frames = [f for piece in chunked(stream, cuts) for f in decoder.feed(piece)]
    assert frames == [Information(payload, extended=bool(extended) or len(payload) > 255),
                      Information(b"\xd5\x01")]


@given(payloads.filter(lambda p: b"\x00\xff" not in p), st.data())
def test_any_corrupted_length_or_data_byte_is_detected(payload, data):
    """One wrong byte anywhere from LEN to DCS: the frame is never delivered.

    (Payloads carrying 00 FF are left out: the format has no byte stuffing, so a payload can
    itself look like a frame once the real one is rejected, on the real line as here.)
    """
    frame = bytearray(encode(payload))
    head = 8 if len(payload) > 255 else 5  # preamble, start code, LEN(s), LCS
    position = data.draw(st.integers(3, head + len(payload)), label="position")
    frame[position] ^= data.draw(st.integers(1, 255), label="flip")
    decoded = FrameDecoder().feed(bytes(frame) + bytes(300))  # enough bytes for any LEN
    assert not any(isinstance(f, Information) for f in decoded)


def test_ack_nack_and_errors_are_told_apart():
    decoder = FrameDecoder()
    assert decoder.feed(ACK + NACK) == [Ack(), Nack()]
    assert decoder.feed(bytes.fromhex("0000ff02fdd4022a00")) == [FrameError("length checksum")]
    assert decoder.feed(bytes.fromhex("0000ff02fed4022b00")) == [FrameError("data checksum")]
    assert decoder.feed(SYNTAX_ERROR) == [Information(b"\x7f")]


# -- the chip on the link ----------------------------------------------------------------------
class Link:
    """The host's end of the serial line to an emulated chip, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.antenna = Antenna()
        self.chip = Pn532(self.antenna, clock=lambda: self.now)

    def send(self, data: bytes) -> bytes:
        self.chip.receive(data)
        self.chip.tick()
        return self.chip.take_output()

    def command(self, payload: bytes) -> bytes:
        return self.send(encode(payload))

    def later(self, seconds: float) -> bytes:
        self.now += seconds
        self.chip.tick()
        return self.chip.take_output()


@pytest.fixture
def link() -> Link:
    link = Link()
    assert link.send(WAKE_UP + GET_FIRMWARE_VERSION) == ACK + FIRMWARE_ANSWER
    return link


def test_asleep_chip_loses_the_first_bytes_so_hosts_send_a_preamble():
    bare = Link()
    assert bare.send(GET_FIRMWARE_VERSION[1:]) == b""  # 00 FF … with nothing before: lost
    assert bare.send(GET_FIRMWARE_VERSION) == ACK + FIRMWARE_ANSWER  # awake now
    woken = Link()
    assert woken.send(bytes(WAKE_UP_LOST_BYTES) + GET_FIRMWARE_VERSION) == ACK + FIRMWARE_ANSWER


def test_power_down_sleeps_until_the_next_preamble(link):
    # PowerDown(WakeUpEnable = HSU | SPI | I2C), as nfcpy closes the reader: status 00.
    assert link.command(bytes.fromhex("d416b0")) == ACK + bytes.fromhex("0000ff03fdd517001400")
    assert link.send(GET_FIRMWARE_VERSION[1:]) == b""
    assert link.send(WAKE_UP + GET_FIRMWARE_VERSION) == ACK + FIRMWARE_ANSWER


def test_checksum_error_gets_no_ack_and_the_resent_frame_is_answered(link):
    bad = bytearray(GET_FIRMWARE_VERSION)
    bad[7] ^= 0x01
    assert link.send(bytes(bad)) == b""
    assert link.chip.frame_errors == 1
    assert link.send(GET_FIRMWARE_VERSION) == ACK + FIRMWARE_ANSWER


@settings(max_examples=60)
@given(st.lists(st.one_of(
    st.just(bytes.fromhex("d402")),
    st.binary(min_size=1, max_size=250).map(lambda d: b"\xd4\x00\x00" + d),  # line test
    st.lists(st.integers(0x6301, 0x633f), min_size=1, max_size=8).map(
        lambda regs: b"\xd4\x06" + b"".join(r.to_bytes(2, "big") for r in regs)),
), min_size=1, max_size=6))
def test_nack_gets_the_last_answer_again(commands):
    link = Link()
    link.send(WAKE_UP)
    for payload in commands:
        out = link.command(payload)
        assert out.startswith(ACK)
        answer = out[len(ACK):]
        assert FrameDecoder().feed(answer)[0].payload[1] == payload[1] + 1
        assert link.send(NACK) == answer
        assert link.send(NACK) == answer
    assert link.chip.nacks == 2 * len(commands)


@settings(max_examples=60)
@given(st.binary(min_size=1, max_size=200).map(lambda d: b"\xd4\x00\x00" + d).filter(
    lambda payload: b"\x00\xff" not in payload), st.data())
def test_a_corrupted_command_is_ignored_and_its_retransmission_answered(payload, data):
    """The host's side of recovery: no ACK for a damaged frame, the resent one is answered."""
    clean, damaged = Link(), Link()
    clean.send(WAKE_UP)
    damaged.send(WAKE_UP)
    frame = encode(payload)
    broken = bytearray(frame)
    position = data.draw(st.integers(3, len(frame) - 2), label="position")  # LEN … DCS
    broken[position] ^= data.draw(st.integers(1, 255), label="flip")
    assert damaged.send(bytes(broken) + bytes(300)) == b""  # flushed through: still silent
    assert damaged.send(frame) == clean.send(frame) == ACK + encode(b"\xd5\x01" + payload[2:])


def test_line_test_of_the_longest_frame_uses_extended_frames(link):
    # nfcpy's communication line test: 262 bytes after NumTst, answered in an extended frame.
    data = b"\x00" + bytes(x & 0xFF for x in range(262))
    out = link.command(b"\xd4\x00" + data)
    assert out[:6] == ACK
    # 265 bytes (D5 01 + 263): LEN LCS FF FF, LENM LENL 01 09, LCS F6.
    assert out[6:16] == bytes.fromhex("0000ffffff0109f6d501")
    frames = FrameDecoder().feed(out[6:])
    assert frames == [Information(b"\xd5\x01" + data, extended=True)]


def test_unknown_command_and_bad_parameters_get_the_syntax_error_frame(link):
    assert link.command(bytes.fromhex("d4fe")) == ACK + SYNTAX_ERROR  # no such command
    assert link.command(bytes.fromhex("d43205")) == ACK + SYNTAX_ERROR  # item 5 needs 3 bytes
    assert link.command(bytes.fromhex("d44a0300")) == ACK + SYNTAX_ERROR  # MaxTg 3
    assert link.command(bytes.fromhex("d48c")) == ACK + SYNTAX_ERROR  # target mode: absent


def test_no_card_with_one_retry_answers_nbtg_0_and_leaves_reqa_in_the_fifo(link):
    assert link.command(bytes.fromhex("d43205ff0101")) == ACK + encode(b"\xd5\x33")
    assert link.command(bytes.fromhex("d44a0100")) == ACK + encode(b"\xd5\x4b\x00")
    # ReadRegister CIU_FIFOData: still the SENS_REQ (REQA, 26h) - nfcpy's "no card" test.
    assert link.command(bytes.fromhex("d4066339")) == ACK + encode(b"\xd5\x07\x26")


def test_infinite_retries_wait_for_a_card_and_an_ack_aborts(link):
    # After reset MxRtyPassiveActivation is FFh: InListPassiveTarget waits for a card.
    assert link.command(bytes.fromhex("d44a0100")) == ACK
    assert link.later(5.0) == b""
    assert link.send(ACK) == b""  # the host gives up: command aborted, nothing more comes
    assert not link.chip.busy
    assert link.command(bytes.fromhex("d44a0100")) == ACK

    class Card:
        uid = bytes.fromhex("04a1b2c3d4e5f6")

        def transceive(self, apdu: bytes) -> bytes:
            return b"\x90\x00"

    link.antenna.add(Card())
    out = link.later(0.001)
    # NbTg 1, Tg 1, SENS_RES 0344 (MSB first), SEL_RES 20, NFCIDLength 7, NFCID1 and, as
    # fAutomaticRATS is set after reset, the ATS (TL included).
    assert out == encode(bytes.fromhex("d54b0101034420") + b"\x07" + Card.uid
                         + bytes.fromhex("067777710280"))


def test_rf_timeout_answers_status_01_after_the_configured_time(link):
    link.command(bytes.fromhex("d432020a0b0a"))  # timeout index 0Ah: 51.2 ms
    assert link.command(bytes.fromhex("d442e080")) == ACK  # RATS into an empty field
    assert link.later(0.05) == b""
    assert link.later(0.002) == encode(b"\xd5\x43\x01")


def test_crc_a_vectors():
    # ISO/IEC 14443-3 Annex B: CRC_A of 00 00 is A0 1E; of 12 34 is 26 CF.
    assert crc_a(b"\x00\x00") == bytes.fromhex("a01e")
    assert crc_a(b"\x12\x34") == bytes.fromhex("26cf")


def test_firmware_iso_dep_in_data_exchange_and_release(link):
    """What other hosts (libnfc) use: automatic RATS, InDataExchange, status, InRelease."""

    class Card:
        uid = bytes.fromhex("04a1b2c3d4e5f6")
        apdus: list[bytes] = []

        def transceive(self, apdu: bytes) -> bytes:
            self.apdus.append(apdu)
            return b"\x6a\x82" if apdu[1] == 0xA4 else bytes(300) + b"\x90\x00"

    card = Card()
    link.antenna.add(card)
    out = link.command(bytes.fromhex("d44a0100"))  # fAutomaticRATS is set after reset
    assert FrameDecoder().feed(out[6:])[0].payload.endswith(bytes.fromhex("067777710280"))
    select = bytes.fromhex("00a4040007d2760000850101")
    assert link.command(b"\xd4\x40\x01" + select) == ACK + encode(bytes.fromhex("d541006a82"))
    # A 302-byte answer arrives in chained I-blocks and leaves in one extended frame.
    out = link.command(b"\xd4\x40\x01" + bytes.fromhex("00b0000000"))
    assert FrameDecoder().feed(out[6:]) == [
        Information(b"\xd5\x41\x00" + bytes(300) + b"\x90\x00", extended=True)]
    assert card.apdus == [select, bytes.fromhex("00b0000000")]
    # GetGeneralStatus: last error 00, no external field, one target (Tg 1, 106 kbit/s, A).
    status = bytes.fromhex("d505" "00" "00" "01" "01000000" "00")  # … SAM status 00
    assert link.command(b"\xd4\x04") == ACK + encode(status)
    assert link.command(b"\xd4\x52\x01") == ACK + encode(b"\xd5\x53\x00")  # InRelease
    assert link.command(b"\xd4\x40\x01" + select) == ACK + encode(b"\xd5\x41\x27")  # no Tg 1
