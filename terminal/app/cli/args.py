"""Argument types shared by the command groups (argparse turns their errors into exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from terminal.app.config import Config, load_config


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
    """The configuration named by `--config` (or FLASH_TERMINAL_CONFIG). An unusable one raises
    `ConfigError`, which `terminal.app.cli.main` turns into exit 2 and its message (one line
    per problem, naming the key or the file), without the command's usage text."""
    return load_config(args.config)
