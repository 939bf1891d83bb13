"""Flash Terminal: a Lightning point-of-sale terminal for Boltcard taps and BOLT11 QR payments."""

__version__ = "0.1.0"
