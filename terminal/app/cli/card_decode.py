"""`flash-terminal card decode` and `flash-terminal card keys`.

decode: check one tap URL against a K1/K2 pair and print what the card said.
    {"valid": bool, "uid": hex|null, "counter": int|null, "reason": null|"malformed"|
     "not-picc-data"|"cmac-mismatch"}; exit 0 when valid, 3 when not, 2 for usage errors.
keys: derive a card's deterministic keys and card ID from an issuer key.
    {"k0": hex, "k1": hex, "k2": hex, "k3": hex, "k4": hex, "card_id": hex}.
Both output shapes are a contract other tools parse: do not add or rename keys.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from terminal.protocols.boltcard import SunResult, derive_card_keys, verify_tap_url
from terminal.protocols.boltcard.keys import VERSION_MAX

EXIT_OK = 0
EXIT_INVALID_CARD = 3

_HEX = re.compile(r"[0-9A-Fa-f]+")


def _hex_arg(length_bytes: int, what: str):
    def parse(text: str) -> bytes:
        # The message never repeats the value: it may be a key.
        if not _HEX.fullmatch(text) or len(text) != 2 * length_bytes:
            raise argparse.ArgumentTypeError(
                f"expected {what} as exactly {2 * length_bytes} hex characters"
            )
        return bytes.fromhex(text)

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _version_arg(text: str) -> int:
    try:
        version = int(text, 10)
    except ValueError:
        version = -1
    if not 0 <= version <= VERSION_MAX:
        raise argparse.ArgumentTypeError(f"expected a key version from 0 to {VERSION_MAX}")
    return version


def _param_name_arg(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.~-]+", text):
        raise argparse.ArgumentTypeError("a parameter name is letters, digits or _.~-")
    return text


def register(card_subparsers: argparse._SubParsersAction) -> None:
    decode = card_subparsers.add_parser(
        "decode",
        help="verify a tap URL's p/c with K1/K2 and show UID and counter",
        description="Verify the SUN parameters of a Boltcard tap URL against K1 and K2. "
        "Exit status 0 when the tap is valid, 3 when it is not.",
    )
    decode.add_argument("url", metavar="URL", help="the tap URL, e.g. 'lnurlw://host/ln?p=…&c=…'")
    decode.add_argument("--k1", required=True, metavar="HEX", type=_hex_arg(16, "K1"),
                        help="K1 (SDMMetaReadKey) that decrypts p, 32 hex characters")
    decode.add_argument("--k2", required=True, metavar="HEX", type=_hex_arg(16, "K2"),
                        help="K2 (SDMFileReadKey) that keys the c MAC, 32 hex characters")
    decode.add_argument("--p-param", default="p", metavar="NAME", type=_param_name_arg,
                        help="query parameter holding the encrypted PICCData (default: p)")
    decode.add_argument("--c-param", default="c", metavar="NAME", type=_param_name_arg,
                        help="query parameter holding the MAC (default: c)")
    decode.add_argument("--json", action="store_true", help="print one JSON object")
    decode.set_defaults(handler=run_decode)

    keys = card_subparsers.add_parser(
        "keys",
        help="derive a card's deterministic keys (boltcard DETERMINISTIC.md)",
        description="Derive K0..K4 and the card ID of a card from the issuer key, the card's "
        "UID and the key version. The output contains secret keys.",
    )
    keys.add_argument("--issuer-key", required=True, metavar="HEX",
                      type=_hex_arg(16, "the issuer key"), help="issuer key, 32 hex characters")
    keys.add_argument("--uid", required=True, metavar="HEX", type=_hex_arg(7, "the UID"),
                      help="card UID, 14 hex characters")
    keys.add_argument("--version", required=True, metavar="N", type=_version_arg,
                      help="key version of this programming (1 for a first programming)")
    keys.add_argument("--pull-payment-id", default=None, metavar="ID",
                      help="BTCPay Server variant: the pull payment the card is bound to")
    keys.add_argument("--json", action="store_true", help="print one JSON object")
    keys.set_defaults(handler=run_keys)


def decode_json(result: SunResult) -> dict[str, object]:
    return {
        "valid": result.valid,
        "uid": None if result.uid is None else result.uid.hex(),
        "counter": result.counter,
        "reason": None if result.reason is None else result.reason.value,
    }


def run_decode(args: argparse.Namespace) -> int:
    result = verify_tap_url(args.url, args.k1, args.k2, p_param=args.p_param, c_param=args.c_param)
    if args.json:
        print(json.dumps(decode_json(result)))
        if result.detail:
            print(result.detail, file=sys.stderr)
    else:
        print(f"valid:   {'yes' if result.valid else 'no'}")
        print(f"uid:     {result.uid.hex() if result.uid is not None else '-'}")
        print(f"counter: {result.counter if result.counter is not None else '-'}")
        if not result.valid:
            print(f"reason:  {result.reason.value if result.reason else '-'} ({result.detail})")
    return EXIT_OK if result.valid else EXIT_INVALID_CARD


def run_keys(args: argparse.Namespace) -> int:
    keys = derive_card_keys(
        args.issuer_key, args.uid, args.version, pull_payment_id=args.pull_payment_id
    )
    values = keys.hex_dict()
    if args.json:
        print(json.dumps(values))
        return EXIT_OK
    labels = {
        "k0": "K0 (AppMasterKey)",
        "k1": "K1 (SDMMetaReadKey, decrypts p)",
        "k2": "K2 (SDMFileReadKey, MAC c)",
        "k3": "K3",
        "k4": "K4",
        "card_id": "card ID",
    }
    width = max(len(label) for label in labels.values())
    for name, label in labels.items():
        print(f"{label:<{width}}  {values[name]}")
    return EXIT_OK
