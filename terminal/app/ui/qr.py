"""The invoice as a QR matrix (no Kivy): uppercase BOLT11 in alphanumeric mode, quiet zone 4."""

from __future__ import annotations

import qrcode
from qrcode.constants import ERROR_CORRECT_M

QUIET_ZONE = 4


def qr_matrix(data: str) -> list[list[bool]]:
    """Rows of modules (True = dark), quiet zone included. Alphanumeric mode needs uppercase, so
    BOLT11 is uppercased (wallets accept either case): a smaller code, easier to scan."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE)
    qr.add_data(qrcode.util.QRData(data.upper(), mode=qrcode.util.MODE_ALPHA_NUM))
    qr.make(fit=True)
    return [list(row) for row in qr.get_matrix()]


def luminance_bytes(matrix: list[list[bool]]) -> bytes:
    """One byte per module, bottom row first (OpenGL texture order): 0 dark, 255 light."""
    return b"".join(bytes(0 if dark else 255 for dark in row) for row in reversed(matrix))
