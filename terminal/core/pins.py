"""PIN hashing: a PIN is stored only as a salted PBKDF2-SHA256 hash,
`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`, and compared in constant time.

Used by enrollment (which writes `[admin] pin_hash`), the demo, and the till's sign-in; never by a
screen directly.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000
PIN_MIN, PIN_MAX = 4, 8


class PinHashError(ValueError):
    """A stored PIN hash is not in the expected format."""


def hash_pin(pin: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        raise ValueError(f"a PIN is {PIN_MIN} to {PIN_MAX} digits")
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, encoded: str) -> bool:
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != SCHEME:
            raise ValueError
        expected = bytes.fromhex(digest)
        got = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        raise PinHashError(f"a PIN hash must look like {SCHEME}$ITER$SALT$HASH") from None
    return hmac.compare_digest(got, expected)
