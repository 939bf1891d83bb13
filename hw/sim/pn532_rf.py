"""The PN532 emulator's antenna: cards in the RF field and their ISO/IEC 14443-3 Type A states.

A card here is what `hw.sim.nfcpy_device` puts under nfcpy: an ISO-DEP card at APDU level
(`uid`, `transceive(apdu)`, optionally `sens_res`, `sel_res`, `ats`, `power_on()`,
`deactivate()`), e.g. `hw.sim.card.SimulatedNtag424`, or a frame-level card with
`exchange_frame(frame)` (a Type 2 tag). The ISO/IEC 14443-4 block protocol of an ISO-DEP card
is `hw.sim.nfcpy_device.IsoDepCardSide`.

States (ISO/IEC 14443-3 §6.3): POWER-OFF without field, IDLE after power-up, READY during
anticollision, ACTIVE once selected, PROTOCOL after RATS (ISO-DEP), HALT after HLTA or
S(DESELECT). REQA wakes IDLE cards only; WUPA also HALT ones.

Anticollision: several IDLE cards answer SDD_REQ at once; at the first bit where their UIDs
differ the PCD sees a collision and continues with the cards that sent 1 there (the choice
NXP reader code makes; the standard leaves it to the PCD). Two cards therefore always resolve
to the same winner, and a reader that asks for one target gets one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from hw.sim.nfcpy_device import (
    NTAG424_ATS,
    NTAG424_SEL_RES,
    NTAG424_SENS_RES,
    ApduCard,
    IsoDepCardSide,
)

CASCADE_TAG = 0x88
HLTA = bytes.fromhex("5000")
SAK_UID_NOT_COMPLETE = 0x04
SAK_ISO14443_4 = 0x20


class PiccState(enum.Enum):
    POWER_OFF = "power-off"
    IDLE = "idle"
    READY = "ready"
    ACTIVE = "active"
    PROTOCOL = "protocol"  # ISO/IEC 14443-4 activated (RATS answered)
    HALT = "halt"


class RxStatus(enum.Enum):
    """What the reader's receiver made of the air after a transmission."""

    OK = "ok"
    TIMEOUT = "timeout"  # nobody answered
    CRC_ERROR = "crc-error"  # an answer cut short (card pulled while answering)
    COLLISION = "collision"  # more than one card answered at once


@dataclass(frozen=True)
class RfAnswer:
    status: RxStatus
    data: bytes = b""


def crc_a(data: bytes) -> bytes:
    """ISO/IEC 14443-3 CRC_A (initial 6363h, reflected polynomial 8408h), LSB first."""
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return bytes([crc & 0xFF, crc >> 8])


def cascade_levels(uid: bytes) -> list[bytes]:
    """UID CLn fields as sent in anticollision (cascade tag 88h before an incomplete part)."""
    if len(uid) == 4:
        return [uid]
    if len(uid) == 7:
        return [bytes([CASCADE_TAG]) + uid[:3], uid[3:]]
    if len(uid) == 10:
        return [bytes([CASCADE_TAG]) + uid[:3], bytes([CASCADE_TAG]) + uid[3:6], uid[6:]]
    raise ValueError(f"a Type A UID has 4, 7 or 10 bytes, not {len(uid)}")


def _bits(data: bytes) -> list[int]:
    """Bits in air order: each byte least significant bit first."""
    return [(byte >> i) & 1 for byte in data for i in range(8)]


@dataclass(eq=False)
class Picc:
    """One card on the antenna and its protocol state."""

    card: ApduCard
    state: PiccState = PiccState.POWER_OFF
    iso_dep: IsoDepCardSide | None = None

    @property
    def uid(self) -> bytes:
        return bytes(self.card.uid)

    @property
    def sens_res(self) -> bytes:
        """ATQA as nfcpy keeps it: in air order (least significant byte first)."""
        return bytes(getattr(self.card, "sens_res", NTAG424_SENS_RES))

    @property
    def sel_res(self) -> bytes:
        return bytes(getattr(self.card, "sel_res", NTAG424_SEL_RES))

    @property
    def frame_level(self) -> bool:
        return hasattr(self.card, "exchange_frame")


@dataclass
class _Interruption:
    apdus: int
    answer_last: bool


@dataclass
class Antenna:
    """The RF field and the cards in it. Not thread-safe by itself: the emulator holds its lock."""

    piccs: list[Picc] = field(default_factory=list)
    field_on: bool = False
    apdus: int = 0  # command APDUs the cards processed
    _interruption: _Interruption | None = None
    _truncated: bool = False

    # -- the hands of whoever holds the cards ---------------------------------------------
    def place(self, *cards: ApduCard) -> None:
        """Take every card away, then put `cards` on the antenna."""
        self.remove()
        for card in cards:
            self.add(card)

    def add(self, card: ApduCard) -> None:
        """Put `card` on the antenna beside those already there."""
        picc = Picc(card)
        self.piccs.append(picc)
        if self.field_on:
            self._power_up(picc)

    def remove(self, card: ApduCard | None = None) -> None:
        """Take `card` (default: every card) off the antenna."""
        for picc in [p for p in self.piccs if card is None or p.card is card]:
            self._power_down(picc)
            self.piccs.remove(picc)
        self._interruption = None

    def remove_after(self, apdus: int, *, answer_last: bool = True) -> None:
        """Pull the cards once they have processed `apdus` more command APDUs.

        `answer_last=False`: the last of them is executed but the card leaves while answering.
        """
        self._interruption = _Interruption(apdus, answer_last)

    @property
    def cards(self) -> list[object]:
        return [p.card for p in self.piccs]

    # -- power --------------------------------------------------------------------------------
    def set_field(self, on: bool) -> None:
        if on == self.field_on:
            return
        self.field_on = on
        for picc in self.piccs:
            (self._power_up if on else self._power_down)(picc)

    @staticmethod
    def _power_up(picc: Picc) -> None:
        power_on = getattr(picc.card, "power_on", None)
        if power_on is not None:
            power_on()
        picc.state = PiccState.IDLE
        picc.iso_dep = None

    @staticmethod
    def _power_down(picc: Picc) -> None:
        if picc.state is not PiccState.POWER_OFF:
            deactivate = getattr(picc.card, "deactivate", None)
            if deactivate is not None:
                deactivate()
        picc.state = PiccState.POWER_OFF
        picc.iso_dep = None

    # -- ISO/IEC 14443-3 activation (what the PN532 firmware does in InListPassiveTarget) ----
    def activate(self, uid: bytes | None = None, *, wake_halted: bool = False) -> Picc | None:
        """REQA (WUPA with `wake_halted`), anticollision and select; the selected card or None.

        `uid` given: select exactly that card (InListPassiveTarget with initiator data).
        """
        if not self.field_on:
            return None
        woken = {PiccState.IDLE, PiccState.HALT} if wake_halted else {PiccState.IDLE}
        candidates = [p for p in self.piccs if p.state in woken]
        if uid is not None:
            candidates = [p for p in candidates if p.uid == uid]
        if not candidates:
            return None
        for picc in candidates:
            picc.state = PiccState.READY
        winners = self._resolve(candidates)
        for picc in candidates:
            if picc in winners:
                picc.state = PiccState.ACTIVE
                picc.iso_dep = None if picc.frame_level else IsoDepCardSide(
                    self._apdu_runner(picc), getattr(picc.card, "ats", NTAG424_ATS))
            else:
                picc.state = PiccState.IDLE  # a SELECT for another UID sends it back to IDLE
        return winners[0]

    @staticmethod
    def _resolve(candidates: list[Picc]) -> list[Picc]:
        """Bit-wise anticollision over every cascade level; cards with equal UIDs both win."""
        remaining = list(candidates)
        level = 0
        while len(remaining) > 1:
            levels = [cascade_levels(p.uid) for p in remaining]
            if any(len(cl) <= level for cl in levels):
                break  # equal UIDs so far and one is complete: indistinguishable
            fields = [_bits(cl[level]) for cl in levels]
            for position in range(len(fields[0])):
                if len({f[position] for f in fields}) > 1:
                    # A collision at this bit: carry on with the cards that sent 1.
                    keep = [i for i, f in enumerate(fields) if f[position] == 1]
                    remaining = [remaining[i] for i in keep]
                    fields = [fields[i] for i in keep]
            level += 1
        return remaining

    def halt(self, picc: Picc) -> None:
        """HLTA (or S(DESELECT) answered): the card sleeps until WUPA or field off."""
        if picc.state in (PiccState.ACTIVE, PiccState.PROTOCOL):
            picc.state = PiccState.HALT
            picc.iso_dep = None

    # -- frames over the air -----------------------------------------------------------------
    def transmit(self, frame: bytes) -> RfAnswer:
        """One frame to every selected card (CRC handled by the reader); what came back."""
        if not self.field_on or not frame:
            return RfAnswer(RxStatus.TIMEOUT)
        answers: list[bytes] = []
        self._truncated = False
        for picc in [p for p in self.piccs if p.state in (PiccState.ACTIVE, PiccState.PROTOCOL)]:
            answer = self._card_answer(picc, frame)
            if answer is not None:
                answers.append(answer)
        if self._truncated:
            return RfAnswer(RxStatus.CRC_ERROR)
        if not answers:
            return RfAnswer(RxStatus.TIMEOUT)
        if len(answers) > 1:
            return RfAnswer(RxStatus.COLLISION)
        return RfAnswer(RxStatus.OK, answers[0])

    def _card_answer(self, picc: Picc, frame: bytes) -> bytes | None:
        if picc.state is PiccState.ACTIVE and frame == HLTA:
            self.halt(picc)
            return None
        if picc.iso_dep is None:
            exchange = getattr(picc.card, "exchange_frame", None)
            return exchange(frame) if exchange is not None else None
        was_active = picc.iso_dep.activated
        answer = picc.iso_dep.handle(frame)
        if picc not in self.piccs:
            return None  # pulled while processing
        if picc.iso_dep.activated:
            picc.state = PiccState.PROTOCOL
        elif was_active:
            self.halt(picc)  # S(DESELECT): answered, then HALT
        return answer

    def _apdu_runner(self, picc: Picc) -> Callable[[bytes], bytes | None]:
        def run(apdu: bytes) -> bytes | None:
            interruption = self._interruption
            if interruption is not None and interruption.apdus <= 0:
                self.remove()
                return None
            response = bytes(picc.card.transceive(apdu))
            self.apdus += 1
            if interruption is not None:
                interruption.apdus -= 1
                if interruption.apdus == 0 and not interruption.answer_last:
                    self.remove()
                    self._truncated = True
                    return None
            return response

        return run
