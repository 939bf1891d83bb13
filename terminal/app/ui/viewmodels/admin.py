"""The Admin pad (a manager's rights: the admin PIN or a manager's PIN, with lock-out) and what
the Admin screen shows.

PINs are stored only as salted PBKDF2 hashes (`terminal.core.pins`; `[admin] pin_hash` and each
manager's `[[cashiers]] pin_hash` in the secrets file). The pad's guesses go through the till's
`Staff` and its one `PinGuard` (shared with cashier sign-in, kept in the books so a restart does
not reset it): after `max_attempts` wrong PINs the pad locks for `lockout_s`, doubling at each
further lock-out (capped), so guessing a 4-digit PIN takes days, not minutes. A manager who is
signed in at the till opens Admin without the pad.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from terminal import __version__
from terminal.app.config import Config
from terminal.app.ui.strings import t
from terminal.app.ui.viewmodels.observable import Observable
from terminal.app.ui.viewmodels.pay import PIN_MAX
from terminal.core.cashiers import MAX_LOCKOUT_S, Attempt, PinGuard
from terminal.core.money import Msat, format_msat
from terminal.services.till.staff import Staff

__all__ = ["MAX_LOCKOUT_S", "AdminLock", "AdminSection", "Attempt", "admin_sections", "mask_key"]


class AdminLock(Observable):
    def __init__(
        self,
        pin_hash: str | None,
        *,
        max_attempts: int = 5,
        lockout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        staff: Staff | None = None,
    ) -> None:
        super().__init__()
        if staff is None:
            staff = Staff(admin_pin_hash=pin_hash, clock=clock)
            staff.guard = PinGuard(max_attempts=max_attempts, lockout_s=lockout_s, clock=clock)
        elif pin_hash is not None:
            staff.admin_pin_hash = pin_hash
        self.staff = staff
        self.unlocked = False
        self.digits = ""
        self.last = Attempt.OK

    def __repr__(self) -> str:
        return f"AdminLock(unlocked={self.unlocked}, failures={self.failures})"

    # the guard's state, as the pad shows it
    @property
    def guard(self) -> PinGuard:
        return self.staff.guard

    @property
    def max_attempts(self) -> int:
        return self.guard.max_attempts

    @property
    def failures(self) -> int:
        return self.guard.state.failures

    @property
    def lockouts(self) -> int:
        return self.guard.state.lockouts

    @property
    def locked_until(self) -> float:
        return self.guard.state.locked_until

    @locked_until.setter
    def locked_until(self, value: float) -> None:
        self.guard.state.locked_until = value

    def press(self, key: str) -> bool:
        if self.locked:
            return False
        if key == "back":
            self.digits = self.digits[:-1]
        elif key.isdigit() and len(key) == 1 and len(self.digits) < PIN_MAX:
            self.digits += key
        else:
            return False
        self.changed()
        return True

    def submit(self) -> Attempt:
        pin, self.digits = self.digits, ""
        self.last = self.staff.manager_pin(pin)
        if self.last is Attempt.OK:
            self.unlocked = True
        self.changed()
        return self.last

    def open_for_manager(self) -> bool:
        """A manager signed in at the till: Admin opens without the pad."""
        if self.staff.is_manager:
            self.unlocked, self.digits = True, ""
            self.changed()
        return self.unlocked

    def lock(self) -> None:
        self.unlocked, self.digits = False, ""
        self.staff.vouching = None  # the manager who opened it has left
        self.changed()

    @property
    def locked(self) -> bool:
        return self.guard.locked

    @property
    def locked_for_s(self) -> int:
        return self.guard.locked_for_s

    @property
    def masked(self) -> str:
        return "•" * len(self.digits)

    @property
    def configured(self) -> bool:
        return bool(self.staff.admin_pin_hash or self.staff.roster.managers)

    @property
    def message(self) -> str:
        if not self.configured:
            return t("admin.no_pin")
        if self.locked:
            return t("admin.locked", seconds=self.locked_for_s)
        if self.unlocked:
            return t("admin.unlocked")
        if self.last is Attempt.WRONG:
            return t("admin.wrong_pin", left=self.max_attempts - self.failures)
        return t("admin.enter_pin")


@dataclass(frozen=True)
class AdminSection:
    title: str
    lines: tuple[str, ...]


def mask_key(key: bytes | None) -> str:
    """Never the key itself: its length and a 4-hex SHA-256 fingerprint to tell keys apart."""
    if not key:
        return "not set"
    return f"set ({len(key) * 8}-bit, fingerprint {hashlib.sha256(key).hexdigest()[:4]})"


def _host(url: str | None) -> str:
    return urlsplit(url).netloc or url or "?" if url else "not set"


def admin_sections(config: Config, *, reader_state: str = "", printer_state: str = ""
                   ) -> list[AdminSection]:
    """The settings overview: everything enrollment set, secrets masked."""
    b = config.backend
    if b.kind == "flash" and b.flash is not None:
        mode = (f"receive-only as {b.flash.username}" if b.flash.username and not b.flash.api_key
                else "api key " + ("set" if b.flash.api_key else "not set"))
        backend = (f"Flash · {_host(b.flash.http_url)}", mode,
                   f"wallet currency {b.flash.wallet_currency}")
    elif b.btcpay is not None:
        backend = (f"BTCPay · {_host(b.btcpay.url)}", f"store {b.btcpay.store_id}",
                   "api key " + ("set" if b.btcpay.api_key else "not set"))
    else:
        backend = (b.kind, "", "")
    merchant = (
        config.name,
        f"display {config.display_currency} · currencies "
        f"{', '.join(config.currencies or (config.display_currency,))}",
        f"network {config.network}",
        f"terminal id {config.terminal_id or 'not set'}",
    )
    o = config.offline
    offline = (
        "enabled" if o.enabled else "disabled",
        f"per tap {format_msat(Msat(o.floor_limit_msat))} · "
        f"per card {format_msat(Msat(o.per_card_cap_msat))}",
        f"total {format_msat(Msat(o.total_cap_msat))}, at most {o.max_queued} queued, "
        f"{o.max_age_s // 3600} h",
    )
    issuers = tuple(
        f"{i.name} ({i.kind}) hosts {', '.join(i.hosts) or 'any'} · "
        + (f"key {mask_key(i.issuer_key)}" if i.kind == "deterministic"
           else f"{len(i.cards)} cards")
        + (f" · unknown cards {i.unknown_cards}" if i.hosts else "")
        for i in config.issuers
    ) or ("none configured",)
    cards = _card_lines(config)
    reader = (f"simulated card {config.reader.card_file}" if config.reader.card_file
              else config.reader.path)
    p = config.printer
    printer = f"{p.port} · {p.width_mm} mm · {p.baudrate} baud" if p.enabled and p.port \
        else "none"
    devices = (
        f"reader {reader}" + (f" · {t('status.reader.' + reader_state)}" if reader_state else ""),
        f"printer {printer}"
        + (f" · {t('status.printer.' + printer_state)}" if printer_state else ""),
    )
    about = (f"Flash Terminal {__version__}",
             f"configuration {config.source}" if config.source else "configuration (built in)")
    return [
        AdminSection(t("admin.section.backend"), backend),
        AdminSection(t("admin.section.merchant"), merchant),
        AdminSection(t("admin.section.offline"), offline),
        AdminSection(t("admin.section.issuers"), issuers),
        AdminSection(t("admin.section.cards"), cards),
        AdminSection(t("admin.section.devices"), devices),
        AdminSection(t("admin.section.about"), about),
    ]


def _card_lines(config: Config) -> tuple[str, ...]:
    """[cards]: limits per card, unknown cards elsewhere, the hotlists fetched (never a key)."""
    c = config.cards

    def limit(sats: int, what: str) -> str:
        return f"{what} {format_msat(Msat(sats * 1000))}" if sats else f"{what} no limit"

    per_hour = f"{c.max_taps_per_hour} payments an hour" if c.max_taps_per_hour \
        else "payments an hour no limit"
    lines = [f"{limit(c.max_per_tap_sats, 'per tap')} · {limit(c.max_per_day_sats, 'per day')} · "
             f"{per_hour}"]
    if c.limits:
        lines.append(f"{len(c.limits)} card(s) with their own limits")
    lines.append(f"unknown cards on other hosts: {c.unknown_cards}")
    for h in c.hotlists:
        lines.append(f"hotlist {h.name} ({h.kind}) · {_host(h.url)} · every "
                     f"{c.hotlist_refresh_s / 60:g} min")
    return tuple(lines)
