"""`flash-terminal card block|unblock|list`: the terminal's hotlist from the command line.

Contract:
    card block (--card-id ID | --uid HEX | --card-file PATH) [--reason TEXT] [--config FILE] --json
    card unblock (--card-id ID | --uid HEX | --card-file PATH) [--config FILE] --json
    card list [--blocked] [--config FILE] --json
Each prints a JSON list of `{"card_id", "uid", "blocked", "reason", "last_counter", "last_seen",
"sales", "total_msat", "limits"}` (block/unblock: the cards they touched). `--uid` and
`--card-file` (a simulated card's UID, read without tapping it) name the card by UID, which maps to
one card id per configured issuer that could have issued it; each is blocked.

`uid` shows the raw UID only when it is known without storing it: the configuration lists the card
by UID (a key-table issuer), or the command itself was given it. The terminal never stores UIDs.
`reason` of a card blocked by a fetched hotlist names the list. `sales` and `total_msat` count the
card's sales that were taken (paid, or accepted offline); `last_seen` is the creation time (unix
seconds) of its newest sale; `limits` are the card's limits in force (sats, null: none).

Exit codes: 0 done; 1 (unblock) the card is still blocked by a fetched hotlist (only its source can
lift that); 2 usage (a bad id or UID, a UID no configured issuer's keys map, an unusable
configuration, block/unblock while the running app holds the ledger: use its Admin > Cards);
6 the books are damaged. `list` only reads, so it works beside the running app.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from terminal.app.cli.args import hex_bytes, load_config_or_exit

if TYPE_CHECKING:
    from terminal.adapters.books.ledger import Ledger
    from terminal.services.card_policy import CardPolicy, CardRow

EXIT_OK = 0
EXIT_STILL_BLOCKED = 1
EXIT_USAGE = 2


def register(card_sub: argparse._SubParsersAction) -> None:
    block = card_sub.add_parser("block", help="block a card on this terminal (online and offline)")
    _card_args(block)
    block.add_argument("--reason", default="", help="why (shown to the cashier)")
    block.set_defaults(handler=_block, parser=block)

    unblock = card_sub.add_parser("unblock", help="lift this terminal's block of a card")
    _card_args(unblock)
    unblock.set_defaults(handler=_unblock, parser=unblock)

    listing = card_sub.add_parser("list", help="the cards this terminal knows, blocked or not")
    listing.add_argument("--blocked", action="store_true", help="only the blocked cards")
    listing.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    listing.add_argument("--json", action="store_true", help="print the result as JSON")
    listing.set_defaults(handler=_list, parser=listing)


def _card_args(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--card-id", metavar="ID", help="the card id (32 hex, as `card list` "
                       "and history show it)")
    which.add_argument("--uid", type=hex_bytes(7), metavar="HEX",
                       help="the card's 7-byte UID (mapped to card ids with the issuers' keys)")
    which.add_argument("--card-file", type=Path, metavar="PATH",
                       help="a simulated card file (its UID; the card is not tapped)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


# -- the commands ------------------------------------------------------------------------------
def _block(args: argparse.Namespace) -> int:
    with _Policy(args) as policy:
        ids, uid = _card_ids(args, policy)
        for card_id in ids:
            policy.block(card_id, args.reason)
        rows = _rows(policy, ids, uid)
    _print(args, rows)
    return EXIT_OK


def _unblock(args: argparse.Namespace) -> int:
    with _Policy(args) as policy:
        ids, uid = _card_ids(args, policy)
        for card_id in ids:
            policy.unblock(card_id)
        rows = _rows(policy, ids, uid)
    _print(args, rows)
    still = [r for r in rows if r.blocked]
    for row in still:
        print(f"card {row.card_id[:12]} is still blocked: {row.reason}. Only that list's source "
              "can lift it.", file=sys.stderr)
    return EXIT_STILL_BLOCKED if still else EXIT_OK


def _list(args: argparse.Namespace) -> int:
    with _Policy(args, read_only=True) as policy:
        rows = policy.rows(blocked_only=args.blocked)
    _print(args, rows)
    return EXIT_OK


# -- helpers -----------------------------------------------------------------------------------
class _Policy:
    """The card policy over the books, without a backend (nothing here needs the network)."""

    def __init__(self, args: argparse.Namespace, *, read_only: bool = False) -> None:
        self.args = args
        self.read_only = read_only  # `list` reads beside the running app
        self.ledger: Ledger | None = None

    def __enter__(self) -> CardPolicy:
        from terminal.adapters.books.layout import journal_path
        from terminal.adapters.books.ledger import Ledger
        from terminal.adapters.books.storage import StorageLockedError
        from terminal.app.root import build_card_policy, build_keyring, open_ledger

        config = load_config_or_exit(self.args)
        try:
            ledger = Ledger(journal_path(config.data_dir), read_only=True) if self.read_only \
                else open_ledger(config)
        except StorageLockedError:
            self.args.parser.error(
                "the terminal app is running and has the ledger open: block or unblock from its "
                "Admin > Cards screen, or stop the service (systemctl stop flash-terminal) first")
        self.ledger = ledger
        return build_card_policy(config, ledger, build_keyring(config))

    def __exit__(self, *exc: object) -> None:
        if self.ledger is not None:
            self.ledger.close()


def _card_ids(args: argparse.Namespace, policy: CardPolicy) -> tuple[list[str], bytes | None]:
    from terminal.services.card_policy import UnknownCard, check_card_id

    parser: argparse.ArgumentParser = args.parser
    if args.card_id is not None:
        try:
            return [check_card_id(args.card_id)], None
        except UnknownCard as exc:
            parser.error(f"--card-id: {exc}")
    uid = args.uid if args.uid is not None else _uid_of_file(parser, args.card_file)
    ids = policy.card_ids_for_uid(uid)
    if not ids:
        parser.error("no configured issuer's keys map this UID to a card: configure the card's "
                     "issuer ([[issuers]]), or name the card with --card-id")
    return ids, uid


def _uid_of_file(parser: argparse.ArgumentParser, path: Path) -> bytes:
    from hw.sim.errors import CardStateError
    from terminal.adapters import simcards

    if not path.is_file():
        parser.error(f"--card-file: {path} does not exist")
    try:
        return bytes.fromhex(simcards.info(path).uid)
    except (CardStateError, OSError, ValueError, KeyError) as exc:
        parser.error(f"--card-file: {path} is not a simulated card ({exc})")


def _rows(policy: CardPolicy, ids: list[str], uid: bytes | None) -> list[CardRow]:
    from dataclasses import replace

    wanted = set(ids)
    rows = {r.card_id: r for r in policy.rows() if r.card_id in wanted}
    out = []
    for card_id in ids:
        row = rows.get(card_id)
        if row is None:  # never seen, not blocked, nothing configured
            from terminal.services.card_policy import CardRow

            row = CardRow(card_id, None, False, None, None, None, 0, 0,
                          policy.limits_for(card_id))
        out.append(replace(row, uid=uid.hex()) if uid is not None else row)
    return out


def _print(args: argparse.Namespace, rows: list[CardRow]) -> None:
    if args.json:
        print(json.dumps([r.to_json() for r in rows]))
        return
    if not rows:
        print("no cards")
        return
    for row in rows:
        seen = dt.datetime.fromtimestamp(row.last_seen).strftime("%Y-%m-%d %H:%M") \
            if row.last_seen else "never"
        state = f"BLOCKED ({row.reason})" if row.blocked else "ok"
        print(f"{row.card_id}  {state}  sales {row.sales}, {row.total_msat // 1000:,} sats, "
              f"last seen {seen}")
