"""A PN532 (firmware V1.6) on its host serial link (HSU), as the PN532 User Manual UM0701-02
describes it, with `hw.sim.pn532_rf.Antenna` as its RF side.

Bytes from the host go in with `receive`, bytes for the host come out of `take_output`; `tick`
lets time pass (RF timeouts, a card arriving for a waiting InListPassiveTarget). No I/O and no
threads here: `hw.sim.pn532_pty` puts the chip on a pseudo-terminal.

Host link (§6.2): every correct information frame is acknowledged with an ACK frame before the
command runs; a frame with a wrong LCS or DCS is dropped without ACK (the host times out and
sends it again); a command the firmware cannot parse is answered with the syntax error frame;
an ACK from the host aborts the command in progress; a NACK asks for the last response again;
a new command aborts the one in progress.

Power: the chip starts asleep (the C106 starts in LowVbat mode) and PowerDown puts it back to
sleep. Asleep, activity on HSU wakes it when HSU is a wake-up source, and the bytes that arrive
while the oscillator starts are lost: the first `WAKE_UP_LOST_BYTES` bytes. That is why hosts
send a long preamble first (nfcpy: ten 00h; libnfc: 55h 55h 00h …).

Commands nfcpy's `pn532` driver sends are emulated with their exact parameter checks and
answers: Diagnose (line, ROM, RAM tests), GetFirmwareVersion, GetGeneralStatus, ReadRegister,
WriteRegister, SetSerialBaudRate, SetParameters, SAMConfiguration, PowerDown,
RFConfiguration, InListPassiveTarget, InDataExchange, InCommunicateThru, InDeselect,
InRelease, InSelect. Target-mode and peer-to-peer commands (TgInitAsTarget, InJumpForDEP, …)
and InAutoPoll are not emulated: they get the syntax error frame. Of the CIU registers the ones
the driver relies on behave: TxMode/RxMode (speed, framing, CRC), TxControl (the field),
FIFOData (the REQA left in the FIFO when no card answered).

Only Type A cards can be on the antenna; sensing Type B, FeliCa or Jewel finds nothing.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from hw.sim.pn532_frame import (
    ACK,
    FIRMWARE_MAX_LEN,
    TFI_HOST,
    TFI_PN532,
    Ack,
    FrameDecoder,
    FrameError,
    Information,
    Nack,
    encode,
)
from hw.sim.pn532_rf import Antenna, Picc, PiccState, RxStatus, crc_a

# GetFirmwareVersion: IC 32h (PN532), version 1.6, supports ISO 14443 A and B and ISO 18092.
FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])
WAKE_UP_LOST_BYTES = 2
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)
INITIAL_BAUD = 115200
MAX_TARGETS = 2


class Cmd(enum.IntEnum):
    """Command codes (UM0701-02 §7, Table "Command set"); the response code is one more."""

    DIAGNOSE = 0x00
    GET_FIRMWARE_VERSION = 0x02
    GET_GENERAL_STATUS = 0x04
    READ_REGISTER = 0x06
    WRITE_REGISTER = 0x08
    READ_GPIO = 0x0C
    WRITE_GPIO = 0x0E
    SET_SERIAL_BAUD_RATE = 0x10
    SET_PARAMETERS = 0x12
    SAM_CONFIGURATION = 0x14
    POWER_DOWN = 0x16
    RF_CONFIGURATION = 0x32
    RF_REGULATION_TEST = 0x58
    IN_JUMP_FOR_DEP = 0x56
    IN_JUMP_FOR_PSL = 0x46
    IN_LIST_PASSIVE_TARGET = 0x4A
    IN_ATR = 0x50
    IN_PSL = 0x4E
    IN_DATA_EXCHANGE = 0x40
    IN_COMMUNICATE_THRU = 0x42
    IN_DESELECT = 0x44
    IN_RELEASE = 0x52
    IN_SELECT = 0x54
    IN_AUTO_POLL = 0x60
    TG_INIT_AS_TARGET = 0x8C
    TG_SET_GENERAL_BYTES = 0x92
    TG_GET_DATA = 0x86
    TG_SET_DATA = 0x8E
    TG_SET_META_DATA = 0x94
    TG_GET_INITIATOR_COMMAND = 0x88
    TG_RESPONSE_TO_INITIATOR = 0x90
    TG_GET_TARGET_STATUS = 0x8A


class Status(enum.IntEnum):
    """Error codes of the status byte (UM0701-02 §7.1, Table "Error code list")."""

    OK = 0x00
    TIMEOUT = 0x01  # the target has not answered
    CRC = 0x02
    PARITY = 0x03
    BIT_COUNT = 0x04  # erroneous bit count in anticollision
    FRAMING = 0x05
    COLLISION = 0x06  # abnormal bit collision in 106 kbps anticollision
    BUFFER_SIZE = 0x07
    RF_BUFFER_OVERFLOW = 0x09
    RF_FIELD = 0x0A
    RF_PROTOCOL = 0x0B
    OVERHEAT = 0x0D
    INTERNAL_OVERFLOW = 0x0E
    INVALID_PARAMETER = 0x10
    NOT_ACCEPTABLE = 0x27  # unknown target number, wrong state


STATUS_MORE_INFORMATION = 0x40  # MI bit of InDataExchange's Tg and status bytes
TG_MASK = 0x3F


class BrTy(enum.IntEnum):
    """InListPassiveTarget baud rate and modulation."""

    TYPE_A_106 = 0
    FELICA_212 = 1
    FELICA_424 = 2
    TYPE_B_106 = 3
    JEWEL_106 = 4


class RfItem(enum.IntEnum):
    """RFConfiguration CfgItem and the length of its ConfigurationData."""

    FIELD = 0x01
    TIMINGS = 0x02
    MAX_RETRY_COM = 0x04
    MAX_RETRIES = 0x05
    ANALOG_106A = 0x0A
    ANALOG_212_424 = 0x0B
    ANALOG_TYPE_B = 0x0C
    ANALOG_ISO_DEP = 0x0D


RF_ITEM_LENGTHS = {RfItem.FIELD: 1, RfItem.TIMINGS: 3, RfItem.MAX_RETRY_COM: 1,
                   RfItem.MAX_RETRIES: 3, RfItem.ANALOG_106A: 11, RfItem.ANALOG_212_424: 8,
                   RfItem.ANALOG_TYPE_B: 3, RfItem.ANALOG_ISO_DEP: 9}
RF_FIELD_ON = 0x01
INFINITE_RETRIES = 0xFF

# SetParameters flags
PARAM_AUTOMATIC_RATS = 0x10
PARAM_REMOVE_PRE_POST_AMBLE = 0x40
DEFAULT_PARAMETERS = 0x14  # fAutomaticATR_RES and fAutomaticRATS after reset

# PowerDown WakeUpEnable bits
WAKE_UP_HSU = 0x10

# CIU registers (PN532 data sheet §8.6, addresses as ReadRegister takes them)
CIU_TX_MODE = 0x6302
CIU_RX_MODE = 0x6303
CIU_TX_CONTROL = 0x6304
CIU_TX_AUTO = 0x6305
CIU_FIFO_DATA = 0x6339
CRC_ENABLE = 0x80  # TxMode/RxMode bit 7
SPEED_FRAMING = 0x73  # TxMode/RxMode bits 6-4 speed (000 = 106 kbit/s), 1-0 framing (00 = A)
TX_RF_ENABLE = 0x03  # TxControl Tx1RFEn, Tx2RFEn
FORCE_100_ASK = 0x40  # TxAuto bit 6
REQA = 0x26
RATS_FSD256_CID0 = bytes.fromhex("e080")
S_DESELECT = bytes.fromhex("c2")
CIU_RESET_VALUES = {0x6301: 0x3F, CIU_TX_CONTROL: 0x80, 0x6306: 0x10, 0x6307: 0x84,
                    0x6308: 0x84, 0x6309: 0x4D, 0x6316: 0x48, 0x6317: 0x88, 0x6318: 0x20,
                    0x6319: 0x20}


class SyntaxErrorFrame(Exception):
    """The command cannot be parsed: the firmware answers the syntax error frame."""


@dataclass
class Target:
    tg: int
    picc: Picc
    iso_dep: bool  # activated by the firmware's automatic RATS


@dataclass
class _Pending:
    """A command that has been acknowledged and has not answered yet."""

    code: int
    deadline: float | None  # answer `late_answer` at this time; None: waiting for a card
    late_answer: bytes = b""
    retry: Callable[[], bytes | None] | None = None  # re-run when the field changes


@dataclass(frozen=True)
class _Deferred:
    """A command handler's answer that leaves the antenna after an RF timeout."""

    after_s: float | None  # None: no timeout configured, wait for the host to abort
    answer: bytes


@dataclass(frozen=True)
class _WaitForCard:
    retry: Callable[[], bytes | None]


Outcome = bytes | _Deferred | _WaitForCard


class Pn532:
    """The chip. Not thread-safe: the caller serialises `receive`, `tick` and the antenna."""

    def __init__(self, antenna: Antenna, clock: Callable[[], float] = time.monotonic):
        self.antenna = antenna
        self.clock = clock
        self.commands: collections.Counter[str] = collections.Counter()
        self.history: collections.deque[str] = collections.deque(maxlen=256)
        self.frame_errors = 0
        self.rf_errors: collections.Counter[Status] = collections.Counter()  # status bytes sent
        self.nacks = 0
        self.aborted = 0
        self._decoder = FrameDecoder(max_length=FIRMWARE_MAX_LEN)
        self._out = bytearray()
        self.power_on_reset()

    # -- power ------------------------------------------------------------------------------
    def power_on_reset(self) -> None:
        """Power applied (or re-applied): asleep in LowVbat mode, every setting at reset."""
        self.asleep = True
        self.wake_sources = WAKE_UP_HSU
        self._wake_loss = WAKE_UP_LOST_BYTES
        self.baudrate = INITIAL_BAUD
        self.baud_requests: list[int] = []  # SetSerialBaudRate rates asked for since reset
        self._baud_after_ack: int | None = None
        self.parameters = DEFAULT_PARAMETERS
        self.sam_mode = 0x01
        self.registers: dict[int, int] = dict(CIU_RESET_VALUES)
        self._fifo_last = 0x00
        self.auto_rfca = True
        self.rf_timeout_index = 0x0A  # 51.2 ms
        self.max_retry_com = 0
        self.max_retries_passive = INFINITE_RETRIES
        self.targets: list[Target] = []
        self.last_error = Status.OK
        self._pending: _Pending | None = None
        self._block_number = 0  # ISO-DEP block number of the firmware's own exchange
        self._last_response: bytes | None = None
        self._decoder.clear()
        self._out.clear()
        self.antenna.set_field(False)

    def power_off(self) -> None:
        """Power gone (reader unplugged): nothing in progress, the field off, deaf until reset."""
        self.asleep = True
        self.wake_sources = 0
        self._pending = None
        self._decoder.clear()
        self._out.clear()
        self.targets.clear()
        self.antenna.set_field(False)

    # -- the host link ----------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Bytes from the host, in whatever pieces the line delivered them."""
        if self.asleep:
            if not self.wake_sources & WAKE_UP_HSU:
                return  # only a reset wakes it
            lost = min(self._wake_loss, len(data))
            self._wake_loss -= lost
            data = data[lost:]
            if self._wake_loss:
                return
            self.asleep = False
        for frame in self._decoder.feed(data):
            self._on_frame(frame)
            if self.asleep:  # PowerDown: the rest of the line is noise to a sleeping chip
                self._decoder.clear()
                return

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def next_deadline(self) -> float | None:
        return self._pending.deadline if self._pending is not None else None

    def tick(self) -> None:
        """Let time pass: answer an RF timeout that is due, or a card that has arrived."""
        pending = self._pending
        if pending is None:
            return
        if pending.deadline is not None and self.clock() >= pending.deadline:
            self._pending = None
            self._respond(pending.code, pending.late_answer)
        elif pending.retry is not None:
            answer = pending.retry()
            if answer is not None:
                self._pending = None
                self._respond(pending.code, answer)

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, FrameError):
            self.frame_errors += 1  # dropped: no ACK, the host will send it again
            return
        if isinstance(frame, Ack):
            self._on_host_ack()
            return
        if isinstance(frame, Nack):
            self.nacks += 1
            if self._last_response is not None:
                self._out += self._last_response
            return
        assert isinstance(frame, Information)
        if self._pending is not None:  # a new command aborts the one in progress
            self._pending = None
            self.aborted += 1
        self._send(ACK)
        self._command(frame)

    def _on_host_ack(self) -> None:
        if self._baud_after_ack is not None:
            self.baudrate, self._baud_after_ack = self._baud_after_ack, None
        if self._pending is not None:
            self._pending = None
            self.aborted += 1

    def _send(self, frame: bytes) -> None:
        if self.parameters & PARAM_REMOVE_PRE_POST_AMBLE:
            frame = frame[1:-1]
        self._out += frame

    def _respond(self, code: int, data: bytes) -> None:
        frame = encode(bytes([TFI_PN532, code + 1]) + data)
        self._send(frame)
        self._last_response = frame[1:-1] if self.parameters & PARAM_REMOVE_PRE_POST_AMBLE \
            else frame

    def _syntax_error(self) -> None:
        frame = encode(bytes([0x7F]))
        self._send(frame)
        self._last_response = frame

    def _command(self, frame: Information) -> None:
        if frame.tfi != TFI_HOST or len(frame.payload) < 2:
            self._syntax_error()
            return
        code, data = frame.payload[1], frame.payload[2:]
        handler = self._handlers().get(code)
        name = Cmd(code).name if code in Cmd._value2member_map_ else f"0x{code:02X}"
        self.commands[name] += 1
        self.history.append(name)
        if handler is None:
            self._syntax_error()  # not a command, or not emulated
            return
        try:
            outcome = handler(data)
        except SyntaxErrorFrame:
            self._syntax_error()
            return
        if isinstance(outcome, bytes):
            self._respond(code, outcome)
        elif isinstance(outcome, _Deferred):
            deadline = None if outcome.after_s is None else self.clock() + outcome.after_s
            self._pending = _Pending(code, deadline, outcome.answer)
        else:
            self._pending = _Pending(code, None, retry=outcome.retry)
        if code == Cmd.POWER_DOWN:
            self._sleep()

    def _handlers(self) -> dict[int, Callable[[bytes], Outcome]]:
        return {
            Cmd.DIAGNOSE: self._diagnose,
            Cmd.GET_FIRMWARE_VERSION: self._get_firmware_version,
            Cmd.GET_GENERAL_STATUS: self._get_general_status,
            Cmd.READ_REGISTER: self._read_register,
            Cmd.WRITE_REGISTER: self._write_register,
            Cmd.SET_SERIAL_BAUD_RATE: self._set_serial_baud_rate,
            Cmd.SET_PARAMETERS: self._set_parameters,
            Cmd.SAM_CONFIGURATION: self._sam_configuration,
            Cmd.POWER_DOWN: self._power_down,
            Cmd.RF_CONFIGURATION: self._rf_configuration,
            Cmd.IN_LIST_PASSIVE_TARGET: self._in_list_passive_target,
            Cmd.IN_DATA_EXCHANGE: self._in_data_exchange,
            Cmd.IN_COMMUNICATE_THRU: self._in_communicate_thru,
            Cmd.IN_DESELECT: self._in_deselect,
            Cmd.IN_RELEASE: self._in_release,
            Cmd.IN_SELECT: self._in_select,
        }

    # -- miscellaneous commands (§7.2) ------------------------------------------------------
    def _diagnose(self, data: bytes) -> Outcome:
        if not data:
            raise SyntaxErrorFrame
        test = data[0]
        if test == 0x00:  # communication line test: the parameters come back as they went
            return data
        if test in (0x01, 0x02):  # ROM and RAM self tests
            if len(data) != 1:
                raise SyntaxErrorFrame
            return b"\x00"
        raise SyntaxErrorFrame  # polling, echo-back, attention and antenna tests: not emulated

    def _get_firmware_version(self, data: bytes) -> Outcome:
        if data:
            raise SyntaxErrorFrame
        return FIRMWARE

    def _get_general_status(self, data: bytes) -> Outcome:
        if data:
            raise SyntaxErrorFrame
        out = bytearray([self.last_error, 0x00, len(self.targets)])
        for target in self.targets:
            out += bytes([target.tg, 0x00, 0x00, 0x00])  # 106 kbit/s both ways, Type A
        out.append(0x00)  # SAM status
        return bytes(out)

    def _read_register(self, data: bytes) -> Outcome:
        if not data or len(data) % 2:
            raise SyntaxErrorFrame
        return bytes(self._register(int.from_bytes(data[i:i + 2], "big"))
                     for i in range(0, len(data), 2))

    def _write_register(self, data: bytes) -> Outcome:
        if not data or len(data) % 3:
            raise SyntaxErrorFrame
        for i in range(0, len(data), 3):
            self._set_register(int.from_bytes(data[i:i + 2], "big"), data[i + 2])
        return b""

    def _register(self, address: int) -> int:
        if address == CIU_FIFO_DATA:
            return self._fifo_last
        if address == CIU_TX_CONTROL:
            value = self.registers[CIU_TX_CONTROL] & ~TX_RF_ENABLE
            return value | (TX_RF_ENABLE if self.antenna.field_on else 0)
        return self.registers.get(address, 0x00)

    def _set_register(self, address: int, value: int) -> None:
        self.registers[address] = value
        if address == CIU_TX_CONTROL:
            self.antenna.set_field(bool(value & TX_RF_ENABLE))

    def _set_serial_baud_rate(self, data: bytes) -> Outcome:
        if len(data) != 1 or data[0] >= len(BAUD_RATES):
            raise SyntaxErrorFrame
        # The new rate applies once the host has acknowledged the answer (§7.2.8).
        self._baud_after_ack = BAUD_RATES[data[0]]
        self.baud_requests.append(BAUD_RATES[data[0]])
        return b""

    def _set_parameters(self, data: bytes) -> Outcome:
        if len(data) != 1:
            raise SyntaxErrorFrame
        self.parameters = data[0]
        return b""

    def _sam_configuration(self, data: bytes) -> Outcome:
        if not 1 <= len(data) <= 3 or not 1 <= data[0] <= 4:
            raise SyntaxErrorFrame
        if data[0] == 0x02 and len(data) < 2:  # virtual card mode needs its timeout
            raise SyntaxErrorFrame
        self.sam_mode = data[0]
        return b""

    def _power_down(self, data: bytes) -> Outcome:
        if not 1 <= len(data) <= 2:
            raise SyntaxErrorFrame
        self.wake_sources = data[0]
        return b"\x00"

    def _sleep(self) -> None:
        self.asleep = True
        self._wake_loss = WAKE_UP_LOST_BYTES
        self.antenna.set_field(False)
        self.targets.clear()

    # -- RF ---------------------------------------------------------------------------------
    def _rf_configuration(self, data: bytes) -> Outcome:
        if not data or data[0] not in RfItem._value2member_map_:
            raise SyntaxErrorFrame
        item, config = RfItem(data[0]), data[1:]
        if len(config) != RF_ITEM_LENGTHS[item]:
            raise SyntaxErrorFrame
        if item is RfItem.FIELD:
            self.auto_rfca = bool(config[0] & 0x02)
            self.antenna.set_field(bool(config[0] & RF_FIELD_ON))
            if not self.antenna.field_on:
                self.targets.clear()
        elif item is RfItem.TIMINGS:
            self.rf_timeout_index = config[2]
        elif item is RfItem.MAX_RETRY_COM:
            self.max_retry_com = config[0]
        elif item is RfItem.MAX_RETRIES:
            self.max_retries_passive = config[2]
        return b""

    def rf_timeout_s(self) -> float | None:
        """InCommunicateThru/InDataExchange timeout: 100 µs × 2^(n-1); n = 0 is no timeout."""
        index = self.rf_timeout_index
        if index == 0:
            return None
        return 100e-6 * 2 ** (min(index, 16) - 1) * (self.max_retry_com + 1)

    def _field_on_for_command(self) -> None:
        if not self.antenna.field_on:
            self.antenna.set_field(True)  # the firmware switches the field on by itself

    def _in_list_passive_target(self, data: bytes) -> Outcome:
        if len(data) < 2 or data[0] not in (1, 2) or data[1] not in BrTy._value2member_map_:
            raise SyntaxErrorFrame
        max_tg, brty, initiator = data[0], BrTy(data[1]), data[2:]
        if brty is BrTy.JEWEL_106 and max_tg != 1:
            raise SyntaxErrorFrame
        felica = brty in (BrTy.FELICA_212, BrTy.FELICA_424)
        if felica and len(initiator) != 5:  # the polling request payload
            raise SyntaxErrorFrame
        if brty is BrTy.TYPE_B_106 and len(initiator) not in (1, 2):  # AFI [polling method]
            raise SyntaxErrorFrame
        uid = _uid_from_initiator_data(initiator) if brty is BrTy.TYPE_A_106 else None
        self.targets.clear()
        self._field_on_for_command()

        def attempt() -> bytes | None:
            found = self._activate_type_a(max_tg, uid) if brty is BrTy.TYPE_A_106 else []
            if found:
                return bytes([len(found)]) + b"".join(found)
            return None

        answer = attempt()
        if answer is not None:
            return answer
        if self.max_retries_passive == INFINITE_RETRIES:
            return _WaitForCard(attempt)  # the firmware polls until a card comes or an ACK
        return b"\x00"  # NbTg 0 after MxRtyPassiveActivation + 1 attempts

    def _activate_type_a(self, max_tg: int, uid: bytes | None) -> list[bytes]:
        listed: list[bytes] = []
        while len(self.targets) < max_tg:
            picc = self.antenna.activate(uid)
            if picc is None:
                if not self.targets:
                    self._fifo_last = REQA  # nobody answered: the REQA is still in the FIFO
                break
            iso_dep, ats = False, b""
            if self.parameters & PARAM_AUTOMATIC_RATS and picc.sel_res[0] & 0x20:
                answer = self.antenna.transmit(RATS_FSD256_CID0)
                if answer.status is RxStatus.OK:
                    iso_dep, ats = True, answer.data
                    self._block_number = 0
            target = Target(len(self.targets) + 1, picc, iso_dep)
            self.targets.append(target)
            sens_res = picc.sens_res[::-1]  # the firmware reports ATQA most significant first
            listed.append(bytes([target.tg]) + sens_res + picc.sel_res
                          + bytes([len(picc.uid)]) + picc.uid + ats)
            if len(self.targets) < max_tg:
                self._put_to_sleep(target)
        for address in (CIU_TX_MODE, CIU_RX_MODE):
            self.registers[address] = CRC_ENABLE  # 106 kbit/s, Type A framing, CRC on
        self.registers[CIU_TX_AUTO] = self.registers.get(CIU_TX_AUTO, 0) | FORCE_100_ASK
        return listed

    def _put_to_sleep(self, target: Target) -> None:
        if target.iso_dep or target.picc.state is PiccState.PROTOCOL:
            self.antenna.transmit(S_DESELECT)
        else:
            self.antenna.transmit(bytes.fromhex("5000"))  # HLTA

    def _in_communicate_thru(self, data: bytes) -> Outcome:
        if not data:
            raise SyntaxErrorFrame
        tx_mode, rx_mode = self._register(CIU_TX_MODE), self._register(CIU_RX_MODE)
        frame = bytes(data)
        if tx_mode & SPEED_FRAMING or rx_mode & SPEED_FRAMING:
            return self._rf_result(RxStatus.TIMEOUT)  # not 106 kbit/s Type A: no card hears it
        if not tx_mode & CRC_ENABLE:
            # The host sends the CRC itself: a card only takes the frame if it is right.
            if len(frame) < 3 or crc_a(frame[:-2]) != frame[-2:]:
                return self._rf_result(RxStatus.TIMEOUT)
            frame = frame[:-2]
        answer = self.antenna.transmit(frame)
        data_in = answer.data
        if answer.status is RxStatus.OK and not rx_mode & CRC_ENABLE:
            data_in += crc_a(data_in)  # CRC not checked: the host gets it with the data
        return self._rf_result(answer.status, data_in)

    def _rf_result(self, status: RxStatus, data: bytes = b"") -> Outcome:
        code = {RxStatus.OK: Status.OK, RxStatus.TIMEOUT: Status.TIMEOUT,
                RxStatus.CRC_ERROR: Status.CRC, RxStatus.COLLISION: Status.CRC}[status]
        self.last_error = code
        if code is not Status.OK:
            self.rf_errors[code] += 1
        if code is Status.TIMEOUT:
            return _Deferred(self.rf_timeout_s(), bytes([code]))
        return bytes([code]) + (data if code is Status.OK else b"")

    def _target(self, tg: int) -> Target | None:
        return next((t for t in self.targets if t.tg == tg), None)

    def _in_data_exchange(self, data: bytes) -> Outcome:
        if not data:
            raise SyntaxErrorFrame
        if data[0] & STATUS_MORE_INFORMATION:
            raise SyntaxErrorFrame  # host-side chaining (MI) is not emulated
        target = self._target(data[0] & TG_MASK)
        if target is None:
            self.last_error = Status.NOT_ACCEPTABLE
            return bytes([Status.NOT_ACCEPTABLE])
        if target.picc.state not in (PiccState.ACTIVE, PiccState.PROTOCOL):
            selected = self._in_select(bytes([target.tg]))  # the firmware switches targets
            if selected != bytes([Status.OK]):
                return self._rf_result(RxStatus.TIMEOUT)
        if not target.iso_dep:
            answer = self.antenna.transmit(bytes(data[1:]))
            return self._rf_result(answer.status, answer.data)
        return self._iso_dep_exchange(bytes(data[1:]))

    def _iso_dep_exchange(self, apdu: bytes) -> Outcome:
        """The firmware's own ISO-DEP (after automatic RATS): I-blocks, chaining, R(ACK)."""
        block_number = self._block_number
        chunk_size = 64 - 3  # FSC of the card assumed 64 (the firmware's buffer)
        chunks = [apdu[i:i + chunk_size] for i in range(0, len(apdu), chunk_size)] or [b""]
        answer = None
        for index, chunk in enumerate(chunks):
            more = index < len(chunks) - 1
            pcb = 0x02 | (0x10 if more else 0) | block_number
            answer = self.antenna.transmit(bytes([pcb]) + chunk)
            if answer.status is not RxStatus.OK:
                return self._rf_result(answer.status)
            block_number ^= 1
        assert answer is not None
        response = bytearray(answer.data[1:])
        while answer.data and answer.data[0] & 0x10:  # the card chains its answer
            answer = self.antenna.transmit(bytes([0xA2 | block_number]))
            if answer.status is not RxStatus.OK:
                return self._rf_result(answer.status)
            block_number ^= 1
            response += answer.data[1:]
        self._block_number = block_number
        self.last_error = Status.OK
        return bytes([Status.OK]) + bytes(response)

    def _tg_argument(self, data: bytes) -> list[Target] | None:
        if len(data) != 1:
            raise SyntaxErrorFrame
        if data[0] == 0:
            return list(self.targets)
        target = self._target(data[0])
        return [target] if target is not None else None

    def _in_deselect(self, data: bytes) -> Outcome:
        targets = self._tg_argument(data)
        if targets is None:
            return bytes([Status.NOT_ACCEPTABLE])
        for target in targets:
            self._put_to_sleep(target)
        return bytes([Status.OK])

    def _in_release(self, data: bytes) -> Outcome:
        targets = self._tg_argument(data)
        if targets is None:
            return bytes([Status.NOT_ACCEPTABLE])
        for target in targets:
            self._put_to_sleep(target)
            self.targets.remove(target)
        return bytes([Status.OK])

    def _in_select(self, data: bytes) -> Outcome:
        targets = self._tg_argument(data)
        if targets is None or len(targets) != 1:
            return bytes([Status.NOT_ACCEPTABLE])
        (target,) = targets
        for other in self.targets:
            if other is not target and other.picc.state in (PiccState.ACTIVE,
                                                             PiccState.PROTOCOL):
                self._put_to_sleep(other)
        if target.picc.state not in (PiccState.ACTIVE, PiccState.PROTOCOL):
            picc = self.antenna.activate(target.picc.uid, wake_halted=True)
            if picc is None:
                return bytes([Status.TIMEOUT])
            if target.iso_dep and self.antenna.transmit(RATS_FSD256_CID0).status is not \
                    RxStatus.OK:
                return bytes([Status.TIMEOUT])
            self._block_number = 0
        return bytes([Status.OK])


def _uid_from_initiator_data(data: bytes) -> bytes | None:
    """InListPassiveTarget 106A InitiatorData: the UID with its cascade tags (or nothing)."""
    if not data:
        return None
    if len(data) == 4:
        return bytes(data)
    if len(data) == 8 and data[0] == 0x88:
        return bytes(data[1:])
    if len(data) == 12 and data[0] == 0x88 and data[4] == 0x88:
        return bytes(data[1:4] + data[5:])
    raise SyntaxErrorFrame
