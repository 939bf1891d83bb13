"""AuthenticateEV2First / AuthenticateEV2NonFirst (NT4H2421Gx §9.1.5, §9.1.6), host side.

Pure steps; `tag.Ntag424` does the exchanges. During authentication the card uses AES-CBC with a
zero IV and no padding. The host proves it knows the key by returning rotl1(RndB); the card proves
it by returning rotl1(RndA), which the host must check (`AuthenticationProofError` otherwise).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from hw.ntag424.constants import KEY_COUNT, KEY_SIZE, LEN_CAP_NONE
from hw.ntag424.crypto import ZERO_IV, aes_cbc_decrypt, aes_cbc_encrypt, rotl1, session_keys
from hw.ntag424.errors import AuthenticationProofError, ProtocolError
from hw.ntag424.session import SecureSession

RND_SIZE = 16
TI_SIZE = 4
CAP2_SIZE = 6

RandomSource = Callable[[int], bytes]


@dataclass(frozen=True)
class Challenge:
    """The card's RndB (decrypted) and the host's part-2 answer E(K, RndA ‖ rotl1(RndB))."""

    rnd_a: bytes = field(repr=False)
    rnd_b: bytes = field(repr=False)
    answer: bytes = field(repr=False)


@dataclass(frozen=True)
class FirstAuthResult:
    session: SecureSession
    pd_cap2: bytes
    pcd_cap2: bytes


def check_key(key_no: int, key: bytes) -> None:
    if not 0 <= key_no < KEY_COUNT:
        raise ValueError(f"key number must be 0..{KEY_COUNT - 1}")
    if len(key) != KEY_SIZE:
        raise ValueError("AES keys are 16 bytes")


def first_command_data(key_no: int, pcd_cap2: bytes = b"") -> bytes:
    """AuthenticateEV2First part 1 data: KeyNo ‖ LenCap ‖ PCDcap2."""
    if len(pcd_cap2) > CAP2_SIZE:
        raise ValueError("PCDcap2 is at most 6 bytes")
    return bytes([key_no, len(pcd_cap2) or LEN_CAP_NONE]) + pcd_cap2


def non_first_command_data(key_no: int) -> bytes:
    """AuthenticateEV2NonFirst part 1 data: KeyNo."""
    return bytes([key_no])


def answer_challenge(
    key: bytes,
    encrypted_rnd_b: bytes,
    rnd_a: bytes | None = None,
    random: RandomSource = os.urandom,
) -> Challenge:
    """Decrypt RndB and build part 2: E(K, RndA ‖ rotl1(RndB))."""
    if len(encrypted_rnd_b) != RND_SIZE:
        raise ProtocolError("card's authentication challenge has the wrong length")
    rnd_a = random(RND_SIZE) if rnd_a is None else rnd_a
    if len(rnd_a) != RND_SIZE:
        raise ValueError("RndA is 16 bytes")
    rnd_b = aes_cbc_decrypt(key, ZERO_IV, encrypted_rnd_b)
    answer = aes_cbc_encrypt(key, ZERO_IV, rnd_a + rotl1(rnd_b))
    return Challenge(rnd_a=rnd_a, rnd_b=rnd_b, answer=answer)


def _check_rnd_a_prime(challenge: Challenge, rnd_a_prime: bytes) -> None:
    if not hmac.compare_digest(rnd_a_prime, rotl1(challenge.rnd_a)):
        raise AuthenticationProofError()


def finish_first(key: bytes, challenge: Challenge, encrypted_reply: bytes) -> FirstAuthResult:
    """Check E(K, TI ‖ rotl1(RndA) ‖ PDcap2 ‖ PCDcap2) and open a session with CmdCtr 0."""
    if len(encrypted_reply) != 2 * RND_SIZE:
        raise ProtocolError("card's authentication answer has the wrong length")
    plain = aes_cbc_decrypt(key, ZERO_IV, encrypted_reply)
    ti = plain[:TI_SIZE]
    _check_rnd_a_prime(challenge, plain[TI_SIZE : TI_SIZE + RND_SIZE])
    pd_cap2 = plain[TI_SIZE + RND_SIZE : TI_SIZE + RND_SIZE + CAP2_SIZE]
    pcd_cap2 = plain[TI_SIZE + RND_SIZE + CAP2_SIZE :]
    enc_key, mac_key = session_keys(key, challenge.rnd_a, challenge.rnd_b)
    session = SecureSession(ses_enc_key=enc_key, ses_mac_key=mac_key, ti=ti, cmd_ctr=0)
    return FirstAuthResult(session=session, pd_cap2=pd_cap2, pcd_cap2=pcd_cap2)


def finish_non_first(
    key: bytes, challenge: Challenge, encrypted_reply: bytes, previous: SecureSession
) -> SecureSession:
    """Check E(K, rotl1(RndA)); new session keys, but TI and CmdCtr carry over."""
    if len(encrypted_reply) != RND_SIZE:
        raise ProtocolError("card's authentication answer has the wrong length")
    _check_rnd_a_prime(challenge, aes_cbc_decrypt(key, ZERO_IV, encrypted_reply))
    enc_key, mac_key = session_keys(key, challenge.rnd_a, challenge.rnd_b)
    return SecureSession(
        ses_enc_key=enc_key, ses_mac_key=mac_key, ti=previous.ti, cmd_ctr=previous.cmd_ctr
    )
