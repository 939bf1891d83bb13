"""`flash-terminal card …`: decode taps, derive keys, program and wipe, simulated cards, and the
terminal's hotlist (block, unblock, list).

Like the top level, only the module of the subcommand being run is imported."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module registering it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "decode": ("terminal.app.cli.card_decode", "verify a tap's SUN (p, c) with K1/K2"),
    "keys": ("terminal.app.cli.card_decode", "deterministic Boltcard keys for a UID"),
    "simulate": ("terminal.app.cli.card_simulate",
                 "simulated cards for demos, training and tests"),
    "program": ("terminal.app.cli.card_program", "program a blank card (resumable)"),
    "wipe": ("terminal.app.cli.card_program", "wipe a card back to factory keys"),
    "block": ("terminal.app.cli.card_hotlist", "block a card on this terminal"),
    "unblock": ("terminal.app.cli.card_hotlist", "lift this terminal's block of a card"),
    "list": ("terminal.app.cli.card_hotlist", "the cards this terminal knows, blocked or not"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "card", help="card tools: decode, keys, program, wipe, simulate, block, unblock, list")
    card_sub = parser.add_subparsers(dest="card_command", metavar="CARD_COMMAND", required=True)
    wanted = _subcommand()
    # The wanted subcommand's module registers every subcommand it holds (decode and keys,
    # program and wipe, block/unblock/list): none of those may get a placeholder first.
    wanted_module = SUBCOMMANDS[wanted][0] if wanted is not None else None
    registered: set[str] = set()
    for name, (module, summary) in SUBCOMMANDS.items():
        if name in registered:
            continue
        if wanted is None or module == wanted_module:
            importlib.import_module(module).register(card_sub)
            registered.update(n for n, (m, _s) in SUBCOMMANDS.items() if m == module)
        else:
            card_sub.add_parser(name, help=summary, add_help=False)


def _subcommand() -> str | None:
    """The word after `card` on this process's command line (None: load them all)."""
    argv = sys.argv[1:]
    words = [a for a in argv if not a.startswith("-")]
    if len(words) >= 2 and words[0] == "card" and words[1] in SUBCOMMANDS:
        return words[1]
    return None
