"""A local stand-in for Flash's GraphQL API and a Boltcard issuer, on 127.0.0.1.

Real HTTP and WebSocket servers (uvicorn + Starlette) built on Flash's real public schema, with
signed regtest BOLT11 invoices, deterministic Boltcard keys, persistence and fault injection.
Used by the tests, the demo and for training.
"""

from .config import render_terminal_config, write_terminal_config
from .core import InvoiceStatus, SandboxCore, SandboxError, WithdrawRefused
from .faults import Faults, FaultsError
from .flash_schema import flash_schema, schema_sdl
from .issuer_keys import CardKeys, TapRejected, derive_card_keys
from .lightning import Rates
from .limits import UNLIMITED, FlashLimits
from .server import Sandbox, SandboxThread, build_app
from .store import SandboxStateError

__all__ = [
    "CardKeys",
    "Faults",
    "FaultsError",
    "FlashLimits",
    "InvoiceStatus",
    "Rates",
    "Sandbox",
    "SandboxCore",
    "SandboxError",
    "SandboxStateError",
    "SandboxThread",
    "TapRejected",
    "UNLIMITED",
    "WithdrawRefused",
    "build_app",
    "derive_card_keys",
    "flash_schema",
    "render_terminal_config",
    "schema_sdl",
    "write_terminal_config",
]
