"""`flash-terminal card …`: decode taps, derive keys, simulated cards (and later program/wipe)."""

from __future__ import annotations

import argparse

from terminal.app.cli import card_decode, card_program, card_simulate

SUBCOMMANDS = [card_decode, card_simulate, card_program]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("card", help="card tools: decode, keys, program, wipe, simulate")
    card_sub = parser.add_subparsers(dest="card_command", metavar="CARD_COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(card_sub)
