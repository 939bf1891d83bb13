"""Damage done to the books on purpose, as a disk would: a flipped bit in an archived sale."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def flip_a_bit_in_an_archived_sale(archive: Path, sale_id: str) -> None:
    db = sqlite3.connect(archive)
    n, blob = db.execute("SELECT d.n, d.doc FROM docs d JOIN sales s ON s.n = d.n "
                         "WHERE s.id = ?", (sale_id,)).fetchone()
    spoiled = bytearray(blob)
    spoiled[len(spoiled) // 2] ^= 0x04
    db.execute("UPDATE docs SET doc = ? WHERE n = ?", (bytes(spoiled), n))
    db.commit()
    db.close()
