"""Card side of EV2 secure messaging (NT4H2421Gx §9.1): the session and its MAC/Full framing.

The card checks a command MAC with the current CmdCtr, increments CmdCtr, and protects the
response with the incremented value: MACt(SesAuthMACKey, RC ‖ CmdCtr ‖ TI ‖ RespData) and, in
CommMode.Full, RespData = E(SesAuthENCKey, IV = E(5AA5 ‖ TI ‖ CmdCtr ‖ 0…), RespData ‖ 80 00…).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from hw.ntag424 import crypto
from hw.sim.constants import MAC_LEN, CommMode, Sw
from hw.sim.errors import CardStatus

CMD_CTR_LIMIT = 0xFFFF


@dataclass
class Session:
    """EV2 authenticated state: the key used, TI, CmdCtr and the two session keys."""

    key_no: int
    ti: bytes
    enc_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    cmd_ctr: int = 0

    def _ctr(self) -> bytes:
        return self.cmd_ctr.to_bytes(2, "little")

    def accept_command(self, ins: int, header: bytes, data: bytes, mode: CommMode) -> bytes:
        """Verify and strip the command's protection; return plain CmdData; count the command.

        `data` is the data field after `header`. Raises INTEGRITY_ERROR on a bad MAC or padding,
        LENGTH_ERROR when the field cannot hold a MAC or whole cipher blocks.
        """
        if self.cmd_ctr >= CMD_CTR_LIMIT:
            raise CardStatus(Sw.INTEGRITY_ERROR, "CmdCtr exhausted")  # §9.1.2: as a wrong MAC
        if mode is CommMode.PLAIN:
            self.cmd_ctr += 1
            return data
        if len(data) < MAC_LEN:
            raise CardStatus(Sw.LENGTH_ERROR, "no room for the command MAC")
        body, mac = data[:-MAC_LEN], data[-MAC_LEN:]
        expected = crypto.mact(self.mac_key, bytes([ins]) + self._ctr() + self.ti + header + body)
        if not hmac.compare_digest(mac, expected):
            raise CardStatus(Sw.INTEGRITY_ERROR, "command MAC does not verify")
        if mode is CommMode.FULL and body:
            if len(body) % crypto.BLOCK:
                raise CardStatus(Sw.LENGTH_ERROR, "cryptogram is not whole AES blocks")
            iv = crypto.command_iv(self.enc_key, self.ti, self.cmd_ctr)
            try:
                body = crypto.unpad_m2(crypto.aes_cbc_decrypt(self.enc_key, iv, body))
            except ValueError:
                raise CardStatus(Sw.INTEGRITY_ERROR, "bad padding in the cryptogram") from None
        self.cmd_ctr += 1
        return body

    def protect_response(self, data: bytes, mode: CommMode, rc: int = 0x00) -> bytes:
        """RespData as sent for a successful command (CmdCtr already incremented)."""
        if mode is CommMode.PLAIN:
            return data
        if mode is CommMode.FULL and data:
            iv = crypto.response_iv(self.enc_key, self.ti, self.cmd_ctr)
            data = crypto.aes_cbc_encrypt(self.enc_key, iv, crypto.pad_m2(data))
        return data + crypto.mact(self.mac_key, bytes([rc]) + self._ctr() + self.ti + data)
