"""A fast, exact BOLT11 decoder and writer (BOLT #11, bech32 per BIP-173 without the 90-character
limit).

Pure core, no I/O. The `bolt11` package reads the data part through `bitstring` one bit-field at a
time (~16 ms an invoice on a Pi-class CPU); this module maps the bech32 characters to 5-bit
values with one `bytes.translate`, reads fields as integers, and leaves only the secp256k1 work
(signature recovery or verification, via `coincurve`) as real cost.

Reader rules followed (BOLT #11 "Requirements" for a reader):
- the string is all lower or all upper case; the bech32 checksum is valid (not bech32m);
- hrp = "ln" + currency (`bc`, `tb`, `tbs`, `bcrt`) + optional amount: digits, then an optional
  multiplier `m`/`u`/`n`/`p`; a `p` amount whose last digit is not 0 (sub-millisatoshi) fails;
- timestamp: 35 bits; then tagged fields: 5-bit type, 10-bit data length (in 5-bit groups);
- `p`, `h`, `s` with a length other than 52, and `n` with a length other than 53, are skipped;
  unknown fields are skipped; of a repeated field the first counts (`r` may repeat);
- the signature is 64 bytes plus a recovery id 0..3, over sha256(hrp as ASCII + the data part
  without the signature, zero-padded to whole bytes). With `n` present the signature is verified
  against it (BOLT #11: "MUST use the `n` field to validate the signature instead of performing
  signature recovery"); otherwise the payee is recovered from it.
- like the `bolt11` package (and BOLT #11 writers' MUSTs), `p` and `s` are required, and `d` or
  `h` (whichever comes first; the other is then ignored).

`encode` writes invoices directly in integers too (the package's writer goes through `bitstring`,
~11 ms an invoice); its only real cost is the secp256k1 signature. Writer rules followed:
- the amount uses the shortest exact multiplier (so 10^14 msat is `1000`, not a `p` amount);
- `x`, `c` and `9` use the minimum data length; `p`, `s`, `h` are 52 groups, `n` 53;
- the signature is recoverable (64 bytes + recovery id), RFC 6979 deterministic via libsecp256k1.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
SEPARATOR = "1"
BECH32_CONST = 1  # bech32 (BIP-173); bech32m's 0x2BC830A3 is not valid for BOLT11
CHECKSUM_LEN = 6  # 5-bit groups
TIMESTAMP_LEN = 7  # 5-bit groups = 35 bits
SIGNATURE_LEN = 104  # 5-bit groups = 520 bits = 64-byte signature + 1-byte recovery id
DEFAULT_EXPIRY_S = 3600  # BOLT #11: `x` absent -> 3600 seconds
DEFAULT_MIN_FINAL_CLTV = 18  # BOLT #11: `c` absent -> 18 blocks
CURRENCIES = ("bc", "tb", "tbs", "bcrt")

# Tagged field types (the bech32 character of the 5-bit type).
TAG_PAYMENT_HASH = CHARSET.index("p")
TAG_PAYMENT_SECRET = CHARSET.index("s")
TAG_DESCRIPTION = CHARSET.index("d")
TAG_DESCRIPTION_HASH = CHARSET.index("h")
TAG_EXPIRY = CHARSET.index("x")
TAG_MIN_FINAL_CLTV = CHARSET.index("c")
TAG_PAYEE = CHARSET.index("n")
TAG_FALLBACK = CHARSET.index("f")
TAG_ROUTE = CHARSET.index("r")
TAG_FEATURES = CHARSET.index("9")
TAG_METADATA = CHARSET.index("m")
# Required data lengths in 5-bit groups: 256 bits -> 52, a 33-byte pubkey -> 53.
LEN_HASH_256 = 52
LEN_PUBKEY = 53
ROUTE_HOP_BYTES = 51  # pubkey 33, short_channel_id 8, fee_base 4, fee_ppm 4, cltv_delta 2
MAX_FALLBACK_VERSION = 18  # 0..16 witness versions, 17 P2PKH, 18 P2SH

_HRP_RE = re.compile(r"ln(bcrt|bc|tbs|tb)(\d+)?([munp])?")
# msat per unit of each multiplier as (numerator, denominator): 1 BTC = 10^11 msat.
_MULTIPLIER_MSAT = {
    None: (10**11, 1),
    "m": (10**8, 1),
    "u": (10**5, 1),
    "n": (10**2, 1),
    "p": (1, 10),
}
_INVALID = 0xFF
# Lower-case bech32 character (as a byte) -> its 5-bit value; anything else -> _INVALID.
_TO_U5 = bytes(
    CHARSET.index(chr(b)) if chr(b) in CHARSET else _INVALID for b in range(256)
)
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# The generator XOR for each value of the top 5 bits of the checksum state.
_POLYMOD_TABLE = tuple(
    _GENERATOR[0] * (top & 1) ^ _GENERATOR[1] * (top >> 1 & 1) ^ _GENERATOR[2] * (top >> 2 & 1)
    ^ _GENERATOR[3] * (top >> 3 & 1) ^ _GENERATOR[4] * (top >> 4 & 1)
    for top in range(32)
)
# 5-bit value -> base-32 digit, so `int(..., 32)` reads a run of 5-bit groups in C.
_U5_TO_DIGIT = bytes.maketrans(bytes(range(32)), b"0123456789abcdefghijklmnopqrstuv")
# 5-bit value -> its bech32 character (as a byte), for the writer.
_U5_TO_CHAR = bytes.maketrans(bytes(range(32)), CHARSET.encode("ascii"))
# Writer: multipliers from the biggest unit down, as msat per unit; the first that divides the
# amount exactly gives the fewest digits. `p` (0.1 msat) always fits: amount * 10 of them.
_WRITER_UNITS = (("", 10**11), ("m", 10**8), ("u", 10**5), ("n", 10**2))
MAX_FIELD_LEN = 1023  # 10-bit data_length, in 5-bit groups
MAX_TIMESTAMP = 2**35 - 1
DEFAULT_FIELD_ORDER = "psdhmxc9n"  # the order `encode` writes the fields it has


class Bolt11ErrorReason(enum.StrEnum):
    BAD_CHARACTER = "bad_character"
    MIXED_CASE = "mixed_case"
    NO_SEPARATOR = "no_separator"
    BAD_CHECKSUM = "bad_checksum"
    BAD_PREFIX = "bad_prefix"
    BAD_AMOUNT = "bad_amount"
    SUB_MSAT_AMOUNT = "sub_msat_amount"
    TOO_SHORT = "too_short"
    TRUNCATED_FIELD = "truncated_field"
    NO_PAYMENT_HASH = "no_payment_hash"
    NO_PAYMENT_SECRET = "no_payment_secret"  # noqa: S105 (a reason code, not a secret)
    NO_DESCRIPTION = "no_description"
    BAD_DESCRIPTION = "bad_description"
    BAD_RECOVERY_ID = "bad_recovery_id"
    BAD_SIGNATURE = "bad_signature"


class Bolt11Error(ValueError):
    """The string is not a valid BOLT11 invoice; `reason` says which rule it broke."""

    def __init__(self, reason: Bolt11ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class RouteHop:
    pubkey: str  # compressed pubkey hex
    short_channel_id: int
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


@dataclass(frozen=True, slots=True)
class Fallback:
    version: int  # 0..16 segwit version, 17 P2PKH, 18 P2SH
    data: bytes


@dataclass(frozen=True, slots=True)
class Bolt11Invoice:
    hrp: str
    currency: str  # "bc" | "tb" | "tbs" | "bcrt"
    amount_msat: int | None
    timestamp: int
    payment_hash: str  # lower-case hex
    payment_secret: str | None
    description: str | None
    description_hash: str | None
    expiry: int
    min_final_cltv: int
    payee: str  # compressed pubkey hex: the `n` field (verified) or recovered from the signature
    payee_from_n: bool  # True when the invoice carried `n`
    features: int  # the `9` field as an integer bit field (bit 0 = least significant); 0 if absent
    metadata: str | None  # the `m` field, hex
    fallback: Fallback | None
    route_hints: tuple[tuple[RouteHop, ...], ...]
    signature: bytes  # 64 bytes (r || s)
    recovery_id: int

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry


def _fail(reason: Bolt11ErrorReason, message: str) -> Bolt11Error:
    return Bolt11Error(reason, message)


# ------------------------------------------------------------------------------ bech32


def _polymod(values: bytes | list[int]) -> int:
    """BIP-173 checksum polymod; one table lookup per value instead of five conditional XORs."""
    chk = 1
    table = _POLYMOD_TABLE
    for v in values:
        chk = (chk & 0x1FFFFFF) << 5 ^ v ^ table[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    raw = hrp.encode("ascii")
    return [b >> 5 for b in raw] + [0] + [b & 31 for b in raw]


def bech32_split(text: str) -> tuple[str, bytes]:
    """Check case, characters and the bech32 checksum; return (lower-case hrp, 5-bit values
    without the checksum). No length limit: invoices are longer than BIP-173's 90."""
    if not text.isascii():
        raise _fail(Bolt11ErrorReason.BAD_CHARACTER, "invoice contains a non-ASCII character")
    lower = text.lower()
    if text != lower and text != text.upper():
        raise _fail(Bolt11ErrorReason.MIXED_CASE, "invoice mixes upper and lower case")
    sep = lower.rfind(SEPARATOR)
    if sep < 1:
        raise _fail(Bolt11ErrorReason.NO_SEPARATOR, "not a Lightning invoice (no separator)")
    hrp = lower[:sep]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise _fail(Bolt11ErrorReason.BAD_CHARACTER, "invoice prefix has an invalid character")
    values = lower[sep + 1 :].encode("ascii").translate(_TO_U5)
    if _INVALID in values:
        raise _fail(Bolt11ErrorReason.BAD_CHARACTER, "invoice contains a non-bech32 character")
    if len(values) < CHECKSUM_LEN:
        raise _fail(Bolt11ErrorReason.TOO_SHORT, "invoice is too short")
    if _polymod(_hrp_expand(hrp) + list(values)) != BECH32_CONST:
        raise _fail(Bolt11ErrorReason.BAD_CHECKSUM, "invoice checksum is wrong (mistyped?)")
    return hrp, values[:-CHECKSUM_LEN]


# ------------------------------------------------------------------------------ hrp


def parse_hrp(hrp: str) -> tuple[str, int | None]:
    """Currency and exact amount in msat from the human-readable part, in integers only."""
    match = _HRP_RE.fullmatch(hrp)
    if match is None:
        if re.fullmatch(r"ln(bcrt|bc|tbs|tb)\d*[a-z]", hrp):
            raise _fail(Bolt11ErrorReason.BAD_AMOUNT, "invoice amount has an invalid multiplier")
        raise _fail(Bolt11ErrorReason.BAD_PREFIX, "not a Lightning invoice prefix")
    currency, digits, multiplier = match.groups()
    if digits is None:
        if multiplier is not None:
            raise _fail(Bolt11ErrorReason.BAD_AMOUNT, "invoice amount has no digits")
        return currency, None
    num, den = _MULTIPLIER_MSAT[multiplier]
    scaled = int(digits) * num
    if scaled % den:
        # BOLT #11: with `p`, "if the last decimal of amount is not 0" -> MUST fail.
        raise _fail(Bolt11ErrorReason.SUB_MSAT_AMOUNT,
                    "invoice amount is a fraction of a millisatoshi")
    if scaled == 0:
        raise _fail(Bolt11ErrorReason.BAD_AMOUNT, "invoice amount is zero")
    return currency, scaled // den


# ------------------------------------------------------------------------------ data part


def _u5_int(values: bytes) -> int:
    """Big-endian integer of 5-bit groups."""
    return int(values.translate(_U5_TO_DIGIT), 32) if values else 0


def _u5_bytes(values: bytes) -> bytes:
    """5-bit groups to bytes, dropping a trailing partial byte (BOLT #11 field data)."""
    bits = len(values) * 5
    nbytes = bits // 8
    return (_u5_int(values) >> (bits - nbytes * 8)).to_bytes(nbytes, "big")


def _u5_bytes_padded(values: bytes) -> bytes:
    """5-bit groups to bytes, zero-padding the last byte (the signed data)."""
    bits = len(values) * 5
    nbytes = -(-bits // 8)
    return (_u5_int(values) << (nbytes * 8 - bits)).to_bytes(nbytes, "big")


def _route(data: bytes) -> tuple[RouteHop, ...] | None:
    if not data or len(data) % ROUTE_HOP_BYTES:
        return None  # malformed hint: skipped like an unknown field
    hops = []
    for at in range(0, len(data), ROUTE_HOP_BYTES):
        hop = data[at : at + ROUTE_HOP_BYTES]
        hops.append(RouteHop(
            pubkey=hop[:33].hex(),
            short_channel_id=int.from_bytes(hop[33:41], "big"),
            fee_base_msat=int.from_bytes(hop[41:45], "big"),
            fee_proportional_millionths=int.from_bytes(hop[45:49], "big"),
            cltv_expiry_delta=int.from_bytes(hop[49:51], "big"),
        ))
    return tuple(hops)


def decode(text: str) -> Bolt11Invoice:
    """Decode and verify a BOLT11 string (no "lightning:" prefix, no surrounding spaces).

    Raises `Bolt11Error` and nothing else."""
    hrp, data = bech32_split(text)
    currency, amount_msat = parse_hrp(hrp)
    if len(data) < TIMESTAMP_LEN + SIGNATURE_LEN:
        raise _fail(Bolt11ErrorReason.TOO_SHORT, "invoice is too short")
    signed = data[:-SIGNATURE_LEN]
    sig = _u5_bytes(data[-SIGNATURE_LEN:])
    signature, recovery_id = sig[:64], sig[64]
    if recovery_id > 3:
        raise _fail(Bolt11ErrorReason.BAD_RECOVERY_ID, "invoice signature is malformed")

    fields: dict[int, bytes] = {}
    routes: list[tuple[RouteHop, ...]] = []
    pos, end = TIMESTAMP_LEN, len(signed)
    while pos < end:
        if end - pos < 3:
            raise _fail(Bolt11ErrorReason.TRUNCATED_FIELD, "invoice field is cut short")
        tag = signed[pos]
        length = signed[pos + 1] << 5 | signed[pos + 2]
        pos += 3
        if pos + length > end:
            raise _fail(Bolt11ErrorReason.TRUNCATED_FIELD, "invoice field is cut short")
        value = signed[pos : pos + length]
        pos += length
        if tag == TAG_ROUTE:
            route = _route(_u5_bytes(value))
            if route is not None:
                routes.append(route)
            continue
        if tag in fields:
            continue  # first one counts
        if tag in (TAG_PAYMENT_HASH, TAG_PAYMENT_SECRET, TAG_DESCRIPTION_HASH):
            if length != LEN_HASH_256:
                continue  # BOLT #11: skip p, h, s of the wrong length
        elif tag == TAG_PAYEE:
            if length != LEN_PUBKEY:
                continue
        elif tag == TAG_DESCRIPTION:
            if TAG_DESCRIPTION_HASH in fields:
                continue
        elif tag == TAG_FALLBACK:
            if not length or value[0] > MAX_FALLBACK_VERSION:
                continue  # BOLT #11: skip `f` with an unknown version
        elif tag not in (TAG_EXPIRY, TAG_MIN_FINAL_CLTV, TAG_FEATURES, TAG_METADATA):
            continue  # unknown field
        if tag == TAG_DESCRIPTION_HASH and TAG_DESCRIPTION in fields:
            continue
        fields[tag] = value

    if TAG_PAYMENT_HASH not in fields:
        raise _fail(Bolt11ErrorReason.NO_PAYMENT_HASH, "invoice has no payment hash")
    if TAG_PAYMENT_SECRET not in fields:
        raise _fail(Bolt11ErrorReason.NO_PAYMENT_SECRET, "invoice has no payment secret")
    description: str | None = None
    description_hash: str | None = None
    if TAG_DESCRIPTION in fields:
        try:
            description = _u5_bytes(fields[TAG_DESCRIPTION]).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(Bolt11ErrorReason.BAD_DESCRIPTION,
                        "invoice description is not valid UTF-8") from None
    elif TAG_DESCRIPTION_HASH in fields:
        description_hash = _u5_bytes(fields[TAG_DESCRIPTION_HASH]).hex()
    else:
        raise _fail(Bolt11ErrorReason.NO_DESCRIPTION, "invoice has no description")

    message = hrp.encode("ascii") + _u5_bytes_padded(signed)
    payee_field = fields.get(TAG_PAYEE)
    payee = _check_signature(signature, recovery_id, message, payee_field)
    fallback = None
    if TAG_FALLBACK in fields:
        f = fields[TAG_FALLBACK]
        fallback = Fallback(version=f[0], data=_u5_bytes(f[1:]))
    metadata = _u5_bytes(fields[TAG_METADATA]).hex() if TAG_METADATA in fields else None
    return Bolt11Invoice(
        hrp=hrp,
        currency=currency,
        amount_msat=amount_msat,
        timestamp=_u5_int(signed[:TIMESTAMP_LEN]),
        payment_hash=_u5_bytes(fields[TAG_PAYMENT_HASH]).hex(),
        payment_secret=_u5_bytes(fields[TAG_PAYMENT_SECRET]).hex(),
        description=description,
        description_hash=description_hash,
        expiry=_u5_int(fields[TAG_EXPIRY]) if TAG_EXPIRY in fields else DEFAULT_EXPIRY_S,
        min_final_cltv=(_u5_int(fields[TAG_MIN_FINAL_CLTV]) if TAG_MIN_FINAL_CLTV in fields
                        else DEFAULT_MIN_FINAL_CLTV),
        payee=payee,
        payee_from_n=payee_field is not None,
        features=_u5_int(fields.get(TAG_FEATURES, b"")),
        metadata=metadata,
        fallback=fallback,
        route_hints=tuple(routes),
        signature=signature,
        recovery_id=recovery_id,
    )


def _check_signature(
    signature: bytes, recovery_id: int, message: bytes, payee_field: bytes | None
) -> str:
    """The payee's compressed pubkey (hex) whose key made `signature` over sha256(message)."""
    try:
        if payee_field is not None:
            pubkey = _u5_bytes(payee_field)
            der = cdata_to_der(deserialize_compact(signature))
            if not PublicKey(pubkey).verify(der, message):
                raise ValueError("signature does not match n")
            return pubkey.hex()
        key = PublicKey.from_signature_and_message(signature + bytes([recovery_id]), message)
        return key.format(compressed=True).hex()
    except Exception:  # coincurve raises ValueError/TypeError for unusable keys and signatures
        raise _fail(Bolt11ErrorReason.BAD_SIGNATURE,
                    "invoice signature is not valid (tampered or corrupted)") from None


# ------------------------------------------------------------------------------ writer


class Bolt11EncodeError(ValueError):
    """The values cannot be written as a BOLT11 invoice (e.g. a description over 639 bytes)."""


def _bytes_u5(data: bytes) -> bytes:
    """Bytes to 5-bit groups, zero-padding the last group (BOLT #11 field data)."""
    groups = -(-len(data) * 8 // 5)
    value = int.from_bytes(data, "big") << (groups * 5 - len(data) * 8)
    return _int_u5(value, groups)


def _int_u5(value: int, groups: int) -> bytes:
    """`value` as exactly `groups` big-endian 5-bit groups."""
    return bytes(value >> shift & 31 for shift in range(groups * 5 - 5, -5, -5))


def _minimal_int_u5(value: int) -> bytes:
    """The fewest 5-bit groups holding `value`: BOLT #11 `x`, `c` and `9`. Zero is one group,
    not none: readers such as the `bolt11` package cannot read an empty integer."""
    return _int_u5(value, max(1, -(-value.bit_length() // 5)))


def _tagged(char: str, values: bytes) -> bytes:
    if len(values) > MAX_FIELD_LEN:
        raise Bolt11EncodeError(
            f"invoice field {char!r} is too long ({len(values)} of at most {MAX_FIELD_LEN} "
            "5-bit groups; a description holds at most 639 bytes, use a description hash)")
    return bytes((CHARSET.index(char), len(values) >> 5, len(values) & 31)) + values


def _hash_field(name: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise Bolt11EncodeError(f"{name} must be 32 bytes, not {len(value)}")
    return _bytes_u5(value)


def hrp_for(currency: str, amount_msat: int | None) -> str:
    """`ln` + currency + the amount in the shortest exact multiplier (no amount: none)."""
    if currency not in CURRENCIES:
        raise Bolt11EncodeError(f"unknown currency {currency!r}; expected one of {CURRENCIES}")
    if amount_msat is None:
        return f"ln{currency}"
    if amount_msat <= 0:
        raise Bolt11EncodeError("invoice amount must be positive (or absent)")
    for unit, msat in _WRITER_UNITS:
        if amount_msat % msat == 0:
            return f"ln{currency}{amount_msat // msat}{unit}"
    return f"ln{currency}{amount_msat * 10}p"


def _bech32_checksum(hrp: str, values: bytes) -> bytes:
    chk = _polymod(_hrp_expand(hrp) + list(values) + [0] * CHECKSUM_LEN) ^ BECH32_CONST
    return _int_u5(chk, CHECKSUM_LEN)


def encode(
    *,
    private_key: bytes,
    currency: str,
    amount_msat: int | None,
    timestamp: int,
    payment_hash: bytes,
    payment_secret: bytes,
    description: str | None = None,
    description_hash: bytes | None = None,
    expiry: int | None = None,
    min_final_cltv: int | None = None,
    features: int = 0,
    metadata: bytes | None = None,
    include_payee: bool = False,
    field_order: str = DEFAULT_FIELD_ORDER,
) -> str:
    """Write and sign a BOLT11 invoice (lower case). Exactly one of `description` and
    `description_hash`; `expiry`/`min_final_cltv` None leave the field out (the reader's
    defaults then apply); `features` 0 leaves out `9`; `include_payee` writes `n`.
    `field_order` is the order of the fields written (tests reproduce the spec vectors with it).

    Raises `Bolt11EncodeError` for values BOLT #11 cannot carry."""
    if (description is None) == (description_hash is None):
        raise Bolt11EncodeError("give exactly one of description and description_hash")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise Bolt11EncodeError("invoice timestamp must fit in 35 bits")
    for name, value in (("expiry", expiry), ("min_final_cltv", min_final_cltv),
                        ("features", features)):
        if value is not None and value < 0:
            raise Bolt11EncodeError(f"{name} must not be negative")
    try:
        key = PrivateKey(private_key)
    except Exception:  # coincurve: ValueError/TypeError for a key outside 1..n-1
        raise Bolt11EncodeError("node key is not a valid secp256k1 secret") from None
    hrp = hrp_for(currency, amount_msat)

    fields: dict[str, bytes] = {
        "p": _hash_field("payment hash", payment_hash),
        "s": _hash_field("payment secret", payment_secret),
    }
    if description is not None:
        fields["d"] = _bytes_u5(description.encode("utf-8"))
    else:
        assert description_hash is not None
        fields["h"] = _hash_field("description hash", description_hash)
    if metadata is not None:
        fields["m"] = _bytes_u5(metadata)
    if expiry is not None:
        fields["x"] = _minimal_int_u5(expiry)
    if min_final_cltv is not None:
        fields["c"] = _minimal_int_u5(min_final_cltv)
    if features:
        fields["9"] = _minimal_int_u5(features)
    if include_payee:
        fields["n"] = _bytes_u5(key.public_key.format(compressed=True))
    missing = set(fields) - set(field_order)
    if missing:
        raise Bolt11EncodeError(f"field_order leaves out {''.join(sorted(missing))!r}")

    data = _int_u5(timestamp, TIMESTAMP_LEN) + b"".join(
        _tagged(char, fields[char]) for char in field_order if char in fields)
    # BOLT #11: sign sha256(hrp as ASCII + the data part zero-padded to whole bytes).
    signature = key.sign_recoverable(hrp.encode("ascii") + _u5_bytes_padded(data))
    data += _bytes_u5(signature)  # 65 bytes = 520 bits = exactly 104 groups
    data += _bech32_checksum(hrp, data)
    return hrp + SEPARATOR + data.translate(_U5_TO_CHAR).decode("ascii")


__all__ = [
    "DEFAULT_EXPIRY_S",
    "DEFAULT_FIELD_ORDER",
    "DEFAULT_MIN_FINAL_CLTV",
    "Bolt11EncodeError",
    "Bolt11Error",
    "Bolt11ErrorReason",
    "Bolt11Invoice",
    "Fallback",
    "RouteHop",
    "bech32_split",
    "decode",
    "encode",
    "hrp_for",
    "parse_hrp",
]

