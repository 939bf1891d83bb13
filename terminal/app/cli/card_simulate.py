"""`flash-terminal card simulate new|tap|info`: simulated NTAG 424 DNA cards in files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hw.ntag424.ndef import NdefFormatError
from terminal.adapters import simcards
from terminal.app.cli.args import hex_bytes
from terminal.protocols.boltcard.provisioning import BoltcardKeys

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INVALID = 3  # as `card decode`: the card gave no valid tap


def register(card_sub: argparse._SubParsersAction) -> None:
    parser = card_sub.add_parser("simulate", help="simulated cards for demos, training and tests")
    sub = parser.add_subparsers(dest="simulate_command", metavar="ACTION", required=True)

    new = sub.add_parser("new", help="create a simulated card file")
    new.add_argument("path", type=Path)
    new.add_argument("--url", help="lnurlw://HOST/PATH the card will emit (with p and c added)")
    new.add_argument("--uid", type=hex_bytes(7), help="7-byte UID in hex (default: random 04…)")
    new.add_argument("--blank", action="store_true", help="a factory-fresh card (all-zero keys)")
    new.add_argument("--issuer-key", type=hex_bytes(16), help="deterministic issuer key (hex)")
    new.add_argument("--version", type=int, default=1, help="key version (default 1)")
    for n in range(5):
        new.add_argument(f"--k{n}", type=hex_bytes(16), help=f"explicit K{n} (hex)")
    new.add_argument("--json", action="store_true", help="print the result as JSON")
    new.set_defaults(handler=_new, parser=new)

    tap = sub.add_parser("tap", help="read the card once; the URL is the last line")
    tap.add_argument("path", type=Path)
    tap.set_defaults(handler=_tap)

    info = sub.add_parser("info", help="uid, counter and key versions")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_info)


def _new(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    explicit = [getattr(args, f"k{n}") for n in range(5)]
    if args.blank:
        if args.url or args.issuer_key or any(explicit):
            parser.error("--blank takes no --url or keys")
        card = simcards.create_blank(args.path, args.uid)
        result = {"path": str(args.path), "uid": card.real_uid.hex(), "blank": True}
    else:
        if not args.url:
            parser.error("--url is required (or --blank for a factory-fresh card)")
        if args.issuer_key and any(explicit):
            parser.error("give either --issuer-key or --k0 … --k4, not both")
        if not 0 <= args.version <= 255:
            parser.error("--version must be 0..255")
        uid = args.uid or simcards.new_uid()
        if args.issuer_key:
            keys = simcards.deterministic_keys(args.issuer_key, uid, args.version)
        elif all(explicit):
            keys = BoltcardKeys.of(explicit, version=args.version)
        else:
            parser.error("give --issuer-key HEX or all of --k0 … --k4")
        card, url = simcards.create_programmed(args.path, args.url, keys, uid)
        result = {"path": str(args.path), "uid": uid.hex(), "blank": False, "url": url}
    if args.json:
        print(json.dumps(result))
    else:
        kind = "blank card" if result["blank"] else "Boltcard"
        print(f"created simulated {kind} {result['path']} (uid {result['uid']})")
        if "url" in result:
            print(f"first tap: {result['url']}")
    return EXIT_OK


def _tap(args: argparse.Namespace) -> int:
    try:
        url = simcards.tap(args.path)
    except FileNotFoundError:
        print(f"no simulated card at {args.path}", file=sys.stderr)
        return EXIT_USAGE
    except NdefFormatError:
        url = ""
    if not url:
        print("the card carries no URL (a blank or wiped card): nothing to tap",
              file=sys.stderr)
        return EXIT_INVALID
    print(url)
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    try:
        card = simcards.info(args.path)
    except FileNotFoundError:
        print(f"no simulated card at {args.path}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(card.to_json()))
    else:
        print(f"uid {card.uid}  counter {card.counter}  key versions {card.key_versions}")
    return EXIT_OK
