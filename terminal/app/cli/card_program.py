"""`flash-terminal card program` and `flash-terminal card wipe`.

    card program (--keys-url URL | --keys-file F | --issuer-key HEX [--version N]) [--url URL]
                 [--reader PATH | --card-file SIM] [--random-uid --yes] [--journal F] [--json]
    card wipe    (--keys-url URL | --keys-file F | --issuer-key HEX [--version N])
                 [--reader PATH | --card-file SIM] [--journal F] [--json]

JSON (one object): {"ok": bool, "steps": [str], "card_id": hex|null, "url": str|null,
"error": str|null}. Exit 0 done, 1 failed (the card can be tapped again to resume: the journal
holds its keys), 2 usage. Both commands resume an interrupted attempt on the same card.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hw.ntag424 import CardRemovedError, Ntag424, Ntag424Error
from terminal.adapters.keyexchange import (
    Action,
    FileKeySource,
    IssuerKeySource,
    KeyExchangeError,
    UrlKeySource,
    load_keys_file,
)
from terminal.adapters.provisioning_journal import (
    JOURNAL_NAME,
    JournalError,
    ProvisioningJournal,
    journal_for_card_file,
)
from terminal.app.cli.args import hex_bytes, load_config_or_exit
from terminal.app.config import Config, ConfigError, load_config
from terminal.protocols.boltcard.provisioning import (
    KeySource,
    Outcome,
    ProvisioningError,
    program_card,
    wipe_card,
)
from terminal.protocols.lnurl import UrlPolicy

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_READER_TIMEOUT_S = 30.0


def register(card_sub: argparse._SubParsersAction) -> None:
    program = card_sub.add_parser(
        "program", help="program a blank card as a Boltcard (resumes an interrupted attempt)")
    _common(program)
    program.add_argument("--url", help="lnurlw://HOST/PATH the card will emit (default: the "
                         "URL that comes with the keys)")
    program.add_argument("--random-uid", action="store_true",
                         help="make the card send a random UID (IRREVERSIBLE; needs --yes)")
    program.add_argument("--yes", action="store_true", help="confirm --random-uid")
    program.set_defaults(handler=_run, action=Action.PROGRAM, parser=program)

    wipe = card_sub.add_parser(
        "wipe", help="return a Boltcard to factory keys (resumes an interrupted attempt)")
    _common(wipe)
    wipe.set_defaults(handler=_run, action=Action.WIPE, parser=wipe, url=None, random_uid=False)


def _common(parser: argparse.ArgumentParser) -> None:
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--keys-url", metavar="URL",
                      help="issuer key exchange: boltcard://program?url=… / reset?url=… or https")
    keys.add_argument("--keys-file", type=Path, metavar="F",
                      help="JSON keys (boltcard service, LNbits, BTCPay or wipe JSON)")
    keys.add_argument("--issuer-key", type=hex_bytes(16), metavar="HEX",
                      help="deterministic issuer key (32 hex characters)")
    parser.add_argument("--version", type=int, metavar="N",
                        help="key version for --issuer-key (program: 1; wipe: the card's)")
    card = parser.add_mutually_exclusive_group()
    card.add_argument("--reader", metavar="PATH", help="nfcpy reader path (usb, tty:AMA0:pn532)")
    card.add_argument("--card-file", type=Path, metavar="SIM", help="a simulated card file")
    parser.add_argument("--timeout", type=float, default=DEFAULT_READER_TIMEOUT_S,
                        help="seconds to wait for a card on the reader")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="the terminal's configuration (default: FLASH_TERMINAL_CONFIG or "
                        "/etc/flash-terminal; optional on a technician's laptop)")
    parser.add_argument("--journal", type=Path, metavar="F",
                        help="provisioning journal (default: next to the card file, or in the "
                        "terminal's data directory)")
    parser.add_argument("--allow-insecure-host", action="append", default=[], metavar="HOST",
                        help="allow plain http to HOST for --keys-url (development only)")
    parser.add_argument("--allow-private-host", action="append", default=[], metavar="HOST",
                        help="allow a private/loopback address for HOST (development only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _source(args: argparse.Namespace) -> KeySource:
    if args.issuer_key is not None:
        return IssuerKeySource(args.issuer_key, args.version, args.url)
    if args.keys_file is not None:
        return FileKeySource(load_keys_file(args.keys_file))
    policy = _policy(args)
    return UrlKeySource(args.keys_url, policy, action=args.action)


def _policy(args: argparse.Namespace) -> UrlPolicy:
    insecure, private = list(args.allow_insecure_host), list(args.allow_private_host)
    config = _config(args)
    if config is not None:
        insecure += config.lnurl.allow_insecure_hosts
        private += config.lnurl.allow_private_hosts
    return UrlPolicy(allow_insecure_hosts=frozenset(insecure),
                     allow_private_hosts=frozenset(private))


def _journal_path(args: argparse.Namespace) -> Path:
    if args.journal is not None:
        return args.journal
    if args.card_file is not None:
        return journal_for_card_file(args.card_file)
    config = _config(args)
    if config is not None:
        return config.data_dir / JOURNAL_NAME
    return Path.home() / ".local" / "share" / "flash-terminal" / JOURNAL_NAME


def _config(args: argparse.Namespace) -> Config | None:
    """The terminal's configuration, or None where there is none (a technician's laptop); one
    named with --config must be usable (exit 2 otherwise, as everywhere)."""
    if getattr(args, "config", None) is not None:
        return load_config_or_exit(args)
    try:
        return load_config()
    except (ConfigError, OSError):
        return None


@contextmanager
def _card(args: argparse.Namespace) -> Iterator[Ntag424]:
    if args.card_file is not None:
        from hw.sim.card import SimulatedNtag424

        if not args.card_file.exists():
            raise ProvisioningError(f"no simulated card at {args.card_file}")
        from hw.sim.errors import CardStateError

        try:
            card = SimulatedNtag424.load(args.card_file)  # saved after every command, like a chip
        except CardStateError as error:  # unreadable, or not a simulated card's state
            raise ProvisioningError(str(error)) from None
        card.power_on()
        try:
            yield Ntag424(card)
        finally:
            card.deactivate()
            card.save()
        return
    from hw.nfc import HoldStillEvent, card_session

    with card_session(args.reader or "usb", args.timeout) as event:
        if event is None:
            raise ProvisioningError("no card was placed on the reader")
        handle = getattr(event, "handle", None)
        if isinstance(event, HoldStillEvent) or handle is None:
            raise ProvisioningError("the card moved away or does not speak ISO-DEP: hold an "
                                    "NTAG 424 DNA still on the reader and try again")
        yield Ntag424(handle)


def _run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.random_uid and not args.yes:
        parser.error("--random-uid cannot be undone: add --yes to confirm")
    if args.version is not None and (args.issuer_key is None or not 0 <= args.version <= 255):
        parser.error("--version goes with --issuer-key and is 0..255")
    if args.action is Action.PROGRAM and args.issuer_key is not None and not args.url:
        parser.error("--issuer-key needs --url lnurlw://…")
    if args.config is not None:
        load_config_or_exit(args)  # named: it must be usable before the card is touched
    steps: list[str] = []
    report: dict[str, object] = {"ok": False, "steps": steps, "card_id": None, "url": None,
                                 "error": None}
    on_step: Callable[[str], None] = steps.append
    if not args.json:
        def on_step(text: str) -> None:
            steps.append(text)
            print(f"  {text}")
    try:
        source = _source(args)
        journal = ProvisioningJournal(_journal_path(args))
        with _card(args) as tag:
            outcome: Outcome
            if args.action is Action.PROGRAM:
                outcome = program_card(tag, source, journal, url=args.url,
                                       random_uid=args.random_uid, on_step=on_step)
            else:
                outcome = wipe_card(tag, source, journal, on_step=on_step)
        # The first tap's p/c stay spendable until the card is tapped again: report the URL
        # the card carries, never that tap.
        report.update(ok=True, card_id=outcome.card_id, url=_without_query(outcome.url))
    except (ProvisioningError, KeyExchangeError, JournalError, Ntag424Error) as error:
        report["error"] = _with_hint(error)
    if args.json:
        print(json.dumps(report))
    elif report["ok"]:
        verb = "programmed" if args.action is Action.PROGRAM else "wiped"
        print(f"card {verb}" + (f" (card id {report['card_id']})" if report["card_id"] else ""))
        if report["url"]:
            print(f"card URL: {report['url']} (first tap verified)")
    else:
        print(f"failed: {report['error']}", file=sys.stderr)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _without_query(url: str | None) -> str | None:
    """The URL the card emits, without the tap's one-time `p`/`c` (and any other query)."""
    return url.split("?", 1)[0] if url else url


def _with_hint(error: Exception) -> str:
    """The error, plus "tap again" only where tapping again helps: the card left the field
    mid-way (the journal resumes it). Not for a missing reader or refused keys."""
    text = str(error).rstrip()
    if isinstance(error, CardRemovedError):
        return f"{text.rstrip('.')}. Tap the card again with the same command to resume."
    return text
