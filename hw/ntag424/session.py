"""EV2 secure messaging (NT4H2421Gx §9.1): CommMode.Plain / MAC / Full for commands and responses.

A `SecureSession` is the state after AuthenticateEV2First: the two session keys, the transaction
identifier TI and the 16-bit command counter CmdCtr. Command MAC and IV use the current counter;
the response uses counter + 1, after which the counter stays incremented (one step per command,
plain ones included).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from hw.ntag424.constants import MAC_LENGTH, CommMode
from hw.ntag424.crypto import (
    BLOCK,
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    command_iv,
    mact,
    pad_m2,
    response_iv,
    unpad_m2,
)
from hw.ntag424.errors import ProtocolError, ResponseMacError

CMD_CTR_MODULUS = 0x10000


@dataclass
class SecureSession:
    ses_enc_key: bytes = field(repr=False)
    ses_mac_key: bytes = field(repr=False)
    ti: bytes
    cmd_ctr: int = 0

    def __post_init__(self) -> None:
        if len(self.ses_enc_key) != 16 or len(self.ses_mac_key) != 16:
            raise ValueError("session keys are 16 bytes")
        if len(self.ti) != 4:
            raise ValueError("TI is 4 bytes")

    # --- commands -------------------------------------------------------------------------------

    def _ctr(self, value: int) -> bytes:
        return (value % CMD_CTR_MODULUS).to_bytes(2, "little")

    def command_mac(self, ins: int, header: bytes, data: bytes) -> bytes:
        """MACt(SesAuthMACKey, Cmd ‖ CmdCtr ‖ TI ‖ CmdHeader ‖ CmdData)."""
        message = bytes([ins]) + self._ctr(self.cmd_ctr) + self.ti + header + data
        return mact(self.ses_mac_key, message)

    def encrypt_command_data(self, data: bytes) -> bytes:
        """E(SesAuthENCKey, IVc, data ‖ 80 00…); the padding is always added."""
        iv = command_iv(self.ses_enc_key, self.ti, self.cmd_ctr)
        return aes_cbc_encrypt(self.ses_enc_key, iv, pad_m2(data))

    def wrap_command(self, ins: int, header: bytes, data: bytes, mode: CommMode) -> bytes:
        """The command's data field: header ‖ (data, or its ciphertext) ‖ (MACt)."""
        if mode is CommMode.PLAIN:
            return header + data
        if mode is CommMode.FULL and data:
            data = self.encrypt_command_data(data)
        return header + data + self.command_mac(ins, header, data)

    # --- responses ------------------------------------------------------------------------------

    def response_mac(self, sw2: int, data: bytes) -> bytes:
        """MACt(SesAuthMACKey, SW2 ‖ (CmdCtr + 1) ‖ TI ‖ RespData), before the counter moves."""
        message = bytes([sw2]) + self._ctr(self.cmd_ctr + 1) + self.ti + data
        return mact(self.ses_mac_key, message)

    def decrypt_response_data(self, ciphertext: bytes) -> bytes:
        """D(SesAuthENCKey, IVr, ciphertext) without padding, before the counter moves."""
        if not ciphertext or len(ciphertext) % BLOCK:
            raise ProtocolError("encrypted answer is not a whole number of AES blocks")
        iv = response_iv(self.ses_enc_key, self.ti, (self.cmd_ctr + 1) % CMD_CTR_MODULUS)
        try:
            return unpad_m2(aes_cbc_decrypt(self.ses_enc_key, iv, ciphertext))
        except ValueError as error:
            raise ProtocolError("encrypted answer has bad padding") from error

    def unwrap_response(self, sw2: int, data: bytes, mode: CommMode) -> bytes:
        """Verify and decrypt a successful response, then advance the counter.

        A response MAC that does not verify raises `ResponseMacError`; the counter still moves,
        because the card's counter did.
        """
        try:
            if mode is CommMode.PLAIN:
                return data
            if len(data) < MAC_LENGTH:
                raise ResponseMacError("card's answer is missing its MAC")
            body, mac = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
            if not hmac.compare_digest(mac, self.response_mac(sw2, body)):
                raise ResponseMacError()
            if mode is CommMode.FULL and body:
                return self.decrypt_response_data(body)
            return body
        finally:
            self.advance()

    def advance(self) -> None:
        """Count one command (used directly when a response carries no MAC to check)."""
        self.cmd_ctr = (self.cmd_ctr + 1) % CMD_CTR_MODULUS
