"""`flash-terminal card simulate new|tap|info|reader`: simulated NTAG 424 DNA cards in files.

`reader CARD_FILE --link PATH` runs an emulated PN532 reader on a pseudo-terminal (see
`hw.sim.pn532_pty`): the first line it prints is the nfcpy device string to give the terminal
(`reader.path`, `charge --reader`, `card program --reader`); then it takes lines on standard
input: `place` (the card on the reader), `remove`, `place CARD_FILE` (another card),
`add CARD_FILE` (a second card beside the first), `unplug`, `plug`, `quit`. The card starts off
the reader; its state is saved to its file as it changes, as `card simulate tap` saves it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hw.ntag424.ndef import NdefFormatError
from hw.sim.errors import CardStateError
from terminal.adapters import simcards
from terminal.app.cli.args import hex_bytes
from terminal.app.cli.exits import paragraph
from terminal.protocols.boltcard.provisioning import BoltcardKeys

if TYPE_CHECKING:
    from hw.sim.card import SimulatedNtag424
    from hw.sim.pn532_pty import Pn532Emulator

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

    reader = sub.add_parser(
        "reader", help="an emulated PN532 reader on a pty with the card in reach (stdin: "
        "place, remove, place CARD_FILE, add CARD_FILE, unplug, plug, quit)")
    reader.add_argument("path", type=Path, metavar="CARD_FILE")
    reader.add_argument("--link", type=Path, required=True, metavar="PATH",
                        help="symlink to create for the pty; nfcpy only opens ports in /dev, "
                        "so e.g. /dev/ttyFLASHSIM0 (needs write access to /dev)")
    reader.set_defaults(handler=_reader)


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


def _no_card(path: Path, error: Exception) -> int:
    """A card file that is missing, unreadable or not a simulated card's state: exit 2."""
    if isinstance(error, FileNotFoundError) or not Path(path).exists():
        print(f"no simulated card at {path}", file=sys.stderr)
    else:
        print(paragraph(error), file=sys.stderr)
    return EXIT_USAGE


def _tap(args: argparse.Namespace) -> int:
    try:
        url = simcards.tap(args.path)
    except (FileNotFoundError, CardStateError) as error:  # missing, unreadable or not a card
        return _no_card(args.path, error)
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
    except (FileNotFoundError, CardStateError) as error:
        return _no_card(args.path, error)
    if args.json:
        print(json.dumps(card.to_json()))
    else:
        print(f"uid {card.uid}  counter {card.counter}  key versions {card.key_versions}")
    return EXIT_OK


# -- the emulated reader ----------------------------------------------------------------------
def _reader(args: argparse.Namespace) -> int:
    from hw.sim.card import SimulatedNtag424
    from hw.sim.errors import CardStateError
    from hw.sim.pn532_pty import LinkError, Pn532Emulator, nfcpy_device_string

    try:
        device = nfcpy_device_string(args.link)
    except LinkError as error:
        print(f"--link: {error}", file=sys.stderr)
        return EXIT_USAGE
    if os.path.lexists(args.link) and not args.link.is_symlink():
        print(f"--link: {args.link} exists and is not a link: not replacing it", file=sys.stderr)
        return EXIT_USAGE
    emulator = Pn532Emulator(args.link)
    cards: dict[Path, SimulatedNtag424] = {}

    def on_antenna() -> list[SimulatedNtag424]:
        with emulator.changed:
            return [c for c in cards.values() if any(c is a for a in emulator.antenna.cards)]

    def card(path: Path) -> SimulatedNtag424:
        # Off the reader the file is the card: `card simulate tap` or `card wipe --card-file`
        # may have used it meanwhile, so it is read again (a chip never goes back in time).
        if path not in cards or not any(cards[path] is c for c in on_antenna()):
            cards[path] = SimulatedNtag424.load(path)  # saved after every change, like a chip
        return cards[path]

    if not args.path.is_file():
        print(f"no simulated card at {args.path}", file=sys.stderr)
        return EXIT_USAGE
    try:
        current = card(args.path)
    except CardStateError as error:
        print(str(error), file=sys.stderr)
        return EXIT_USAGE
    try:
        emulator.start()
    except OSError as error:
        print(f"cannot create {args.link}: {error.strerror or error} (nfcpy needs the link in "
              "/dev, which takes root)", file=sys.stderr)
        return EXIT_USAGE
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(device, flush=True)
        print(f"emulated PN532 on {emulator.port}, linked as {args.link}; the card "
              f"{args.path} is off the reader: type place, remove, place CARD_FILE, "
              "add CARD_FILE, unplug, plug or quit", file=sys.stderr, flush=True)
        for line in sys.stdin:
            words = line.split(maxsplit=1)
            if not words:
                continue
            action, argument = words[0].lower(), words[1].strip() if len(words) > 1 else ""
            if action in ("quit", "exit"):
                break
            try:
                current = _reader_action(emulator, action, argument, current, card)
            except CardStateError as error:  # also a card file that does not exist
                print(f"{action}: {error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        held = on_antenna()  # only these: the others' files may have moved on
        emulator.remove()  # powers the cards down
        emulator.stop()
        for simulated in held:
            simulated.save()
    return EXIT_OK


def _reader_action(emulator: Pn532Emulator, action: str, argument: str,
                   current: SimulatedNtag424,
                   card: Callable[[Path], SimulatedNtag424]) -> SimulatedNtag424:
    """One line of the reader's standard input; returns the card now in hand."""
    if action == "place":
        path = Path(argument) if argument else current.autosave_path
        if path is not None:
            current = card(path)
        emulator.place(current)
        print(f"placed {current.autosave_path}", flush=True)
    elif action == "add" and argument:
        emulator.add(card(Path(argument)))
        print(f"added {argument}", flush=True)
    elif action == "remove":
        emulator.remove()
        print("removed", flush=True)
    elif action in ("unplug", "plug"):
        emulator.unplug() if action == "unplug" else emulator.plug()
        print(f"{action}ged", flush=True)
    else:
        print(f"unknown command {action!r}: place, remove, place CARD_FILE, add CARD_FILE, "
              "unplug, plug or quit", file=sys.stderr, flush=True)
    return current


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
