"""The checks `doctor` and `enroll` share: one row type, one look at the reader, one way to ask
the backend whether its credentials work, Flash's scopes and invoice budget, the printer.

Each report applies its own policy to what is found (an absent reader fails the doctor but only
warns at enrollment, when a technician may plug it in later); the finding itself is made here,
once. The reader probe itself lives with the reader (`hw.nfc.probe_reader`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hw.nfc import ReaderProbe, probe_reader
from terminal.app.config import Config

__all__ = ["Check", "ReaderFinding", "ReaderKind", "ReaderProbe", "Status", "backend_health",
           "check_printer", "find_reader", "flash_budget_check", "flash_scope_check",
           "probe_reader"]


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        doc = asdict(self)
        doc["status"] = self.status.value
        return doc


# -- the reader -----------------------------------------------------------------------------
class ReaderKind(enum.Enum):
    SIMULATED = "simulated"  # reader.card_file names a simulated card that exists
    SIMULATED_MISSING = "simulated-missing"  # … that does not exist
    FOUND = "found"  # the NFC reader answered
    ABSENT = "absent"  # no reader answered on reader.path


@dataclass(frozen=True)
class ReaderFinding:
    kind: ReaderKind
    detail: str  # the card file's path, or the probe's own words
    path: Path | None = None  # the simulated card file (resolved against the config's folder)


def find_reader(config: Config,
                probe: Callable[[str], ReaderProbe] = probe_reader) -> ReaderFinding:
    """What answers taps: the simulated card named by reader.card_file, or the NFC reader on
    reader.path (probed once with `probe(path) -> ReaderProbe`)."""
    card_file = config.reader.card_file
    if card_file:
        path = Path(card_file)
        if not path.is_absolute() and config.source is not None:
            path = config.source.parent / path
        kind = ReaderKind.SIMULATED if path.is_file() else ReaderKind.SIMULATED_MISSING
        return ReaderFinding(kind, str(path), path)
    found = probe(config.reader.path)
    if found.found:
        return ReaderFinding(ReaderKind.FOUND, f"{found.detail} on {config.reader.path}")
    return ReaderFinding(ReaderKind.ABSENT, found.detail)


# -- the backend ----------------------------------------------------------------------------
async def backend_health(backend: Any) -> Any:
    """Whether the backend takes these credentials: BTCPay's own diagnosis (its version, a
    missing permission named, a wrong store id told from a missing permission, with the fix),
    otherwise the backend's `health()`. Both answer `.ok` and `.detail`."""
    from terminal.adapters.backends.btcpay import BTCPayBackend

    if isinstance(backend, BTCPayBackend):
        return await backend.diagnose()
    return await backend.health()


# Flash API-key scopes: what each is for, and whether the terminal cannot work without it.
FLASH_SCOPES_REQUIRED = ("read_user", "read_wallet", "write_wallet")
FLASH_SCOPE_FIX = ("In the Flash app, create an API key with the scopes read_user, read_wallet, "
                   "write_wallet and read_transactions, and enrol it (`flash-terminal enroll`)")


async def flash_scope_check(backend: Any) -> Check:
    """Which of the scopes the terminal needs the Flash API key has; the missing one named.
    read_user (for `me`; no write scope implies it), read_wallet and write_wallet are needed
    for every sale; read_transactions for recovery and for payouts whose invoice Flash purged."""
    checks = await backend.check_scopes()
    missing = [c.scope for c in checks if c.state == "missing"]
    unknown = [c.scope for c in checks if c.state == "unknown"]
    fatal = [s for s in missing if s in FLASH_SCOPES_REQUIRED]
    if fatal:
        return Check("scopes", Status.FAIL, "the Flash API key lacks " + ", ".join(missing)
                     + ("" if not unknown else f" (not checked: {', '.join(unknown)})"),
                     FLASH_SCOPE_FIX + ".")
    if missing:
        return Check("scopes", Status.WARN,
                     "the Flash API key lacks " + ", ".join(missing) + ": sales work, but paid "
                     "sales missing from the books and payouts whose invoice Flash has purged "
                     "cannot be looked up", FLASH_SCOPE_FIX + ".")
    if unknown:
        return Check("scopes", Status.WARN, "could not check " + ", ".join(unknown),
                     "Re-run `flash-terminal doctor` once the backend answers.")
    return Check("scopes", Status.OK, "the Flash API key has " + ", ".join(c.scope
                                                                          for c in checks))


def flash_budget_check(backend: Any) -> Check:
    """What is left of Flash's invoice limit (20 every 2 minutes per merchant account, then a
    5-minute block) as this terminal has spent it; the API key's too."""
    lines = backend.budget.describe(api_key=backend.mode == "api-key")
    blocked = any("blocked" in line for line in lines)
    return Check("budget", Status.WARN if blocked else Status.OK, "; ".join(lines),
                 "Another terminal of this merchant may be creating many invoices; sales wait "
                 "for the block to end (offline taps are queued meanwhile)." if blocked else "")


def check_printer(config: Config) -> Check:
    from hw.printer import PrinterStatus
    from terminal.app.root import build_printer

    settings = config.printer
    if not settings.enabled:
        return Check("printer", Status.OK, "receipt printing is switched off")
    if not settings.port:
        return Check("printer", Status.FAIL, "printer.enabled is set but printer.port is not",
                     "Set printer.port (e.g. /dev/ttyUSB0 or /dev/serial0).")
    try:
        printer = build_printer(settings)
    except ValueError as exc:
        return Check("printer", Status.FAIL, str(exc), "Set printer.width_mm to 58 or 80.")
    assert printer is not None
    result = printer.status()
    if result.status is PrinterStatus.OK:
        if result.paper_low:
            return Check("printer", Status.WARN, f"{settings.port}: {result.message}",
                         "Load a new paper roll soon.")
        return Check("printer", Status.OK, f"{settings.port}: {result.message}")
    fixes = {
        PrinterStatus.PAPER_OUT: "Load a paper roll and close the cover.",
        PrinterStatus.OFFLINE: "Switch the printer on, close its cover and check the cable; "
                               "sales continue without receipts meanwhile.",
    }
    return Check("printer", Status.FAIL, result.message, fixes.get(
        result.status, "Check printer.baudrate matches the printer's self-test page and that "
                       "the service user is in the dialout group."))

