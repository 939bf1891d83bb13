"""Argument types shared by the command groups (argparse turns their errors into exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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
