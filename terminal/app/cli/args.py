"""Argument types shared by the command groups (argparse turns their errors into exit 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from terminal.app.config import Config


EXIT_USAGE = 2


def hex_bytes(size: int | None = None) -> Callable[[str], bytes]:
    def parse(text: str) -> bytes:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not hex") from None
        if size is not None and len(value) != size:
            raise argparse.ArgumentTypeError(f"must be {size} bytes ({2 * size} hex characters)")
        return value

    parse.__name__ = f"{size}-byte hex" if size else "hex"
    return parse


def load_config_or_exit(args: argparse.Namespace) -> Config:
    """The configuration named by `--config` (or FLASH_TERMINAL_CONFIG); an unusable one is a
    usage error: exit 2 after one paragraph on stderr, one line per problem naming the key."""
    from terminal.app.config import ConfigError, load_config  # pydantic: only when needed

    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(exc.report(args.parser.prog), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
