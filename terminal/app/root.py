"""The composition root: builds the terminal's object graph from its configuration.

Nothing else constructs backends, clients or the ledger; the CLI, the app and the demo all ask
here, so a new backend or reader is one new branch in one place.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from terminal.app.config import Config, IssuerSettings, PrinterSettings
from terminal.core.connectivity import Connectivity
from terminal.core.money import RatePolicy
from terminal.core.ports.backend import Backend
from terminal.core.risk import OfflineLimits
from terminal.protocols.boltcard import (
    DeterministicIssuer,
    Issuer,
    Keyring,
    KeyTableCard,
    KeyTableIssuer,
)
from terminal.protocols.lnurl import UrlPolicy
from terminal.services.checkout import Checkout

if TYPE_CHECKING:
    from hw.printer import SerialPrinter
    from terminal.adapters.books.ledger import Ledger
    from terminal.adapters.hotlist_http import HotlistClient
    from terminal.adapters.lnurl_pay import PayLinkClient
    from terminal.adapters.receipts import Receipts
    from terminal.adapters.withdraw import WithdrawClient
    from terminal.services.card_policy import CardPolicy, CardPolicySettings
    from terminal.services.hotlists import HotlistRefresher
    from terminal.services.kiosk import Kiosk
    from terminal.services.refunds import RefundService
    from terminal.services.sync import SyncWorker
    from terminal.services.till import Till, TillSettings
    from terminal.services.till.staff import Staff

LEDGER_FILE = "ledger.jsonl"
FLASH_BUDGET_FILE = "flash-budget.json"
TERMINAL_ID_FILE = "terminal-id"


def ensure_data_dir(config: Config) -> Path:
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return config.data_dir


def terminal_id(config: Config) -> str:
    """The configured id, or one generated once and kept in the data directory."""
    if config.terminal_id:
        return config.terminal_id
    path = ensure_data_dir(config) / TERMINAL_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    new_id = f"ft-{uuid.uuid4().hex[:12]}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(new_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return new_id


def build_backend(config: Config) -> Backend:
    settings = config.backend
    if settings.kind == "flash":
        from terminal.adapters.backends.flash import FlashBackend

        flash = settings.flash
        assert flash is not None
        return FlashBackend(
            flash.http_url,
            flash.ws_url,
            username=flash.username,
            api_key=flash.api_key,
            wallet_currency=flash.wallet_currency,
            network=config.network,
            # Resolved when first needed: building the backend writes nothing.
            terminal_id=lambda: terminal_id(config),
            # Flash's invoice limit is per merchant account: every process of this terminal
            # (kiosk, `sync`, `doctor`) shares one view of it (the file is made on first use).
            budget_path=config.data_dir / FLASH_BUDGET_FILE,
        )
    from terminal.adapters.backends.btcpay import BTCPayBackend

    btcpay = settings.btcpay
    assert btcpay is not None
    return BTCPayBackend(
        btcpay.url,
        btcpay.store_id,
        btcpay.api_key,
        network=config.network,
        terminal_id=terminal_id(config),
    )


def build_issuer(settings: IssuerSettings) -> Issuer:
    if settings.kind == "deterministic":
        assert settings.issuer_key is not None
        return DeterministicIssuer(
            settings.name,
            settings.issuer_key,
            versions=dict(settings.versions),
            p_param=settings.p_param,
            c_param=settings.c_param,
            hosts=settings.hosts,
            version_window=settings.version_window,
            default_version=settings.default_version,
            pull_payment_id=settings.pull_payment_id,
        )
    cards = [
        KeyTableCard(
            k1=bytes.fromhex(card["k1"]),
            k2=bytes.fromhex(card["k2"]),
            uid=bytes.fromhex(card["uid"]) if card.get("uid") else None,
            card_id=card.get("card_id"),
        )
        for card in settings.cards
    ]
    return KeyTableIssuer(
        settings.name, cards, p_param=settings.p_param, c_param=settings.c_param,
        hosts=settings.hosts,
    )


def build_keyring(config: Config) -> Keyring:
    return Keyring([build_issuer(i) for i in config.issuers])


def url_policy(config: Config) -> UrlPolicy:
    lnurl = config.lnurl
    return UrlPolicy(
        allow_insecure_hosts=frozenset(lnurl.allow_insecure_hosts),
        allow_private_hosts=frozenset(lnurl.allow_private_hosts),
        issuer_hosts=frozenset(lnurl.issuer_allowlist) if lnurl.issuer_allowlist else None,
        max_response_bytes=lnurl.max_body_bytes,
    )


def build_withdraw_client(config: Config) -> WithdrawClient:
    from terminal.adapters.withdraw import Timeouts, WithdrawClient

    lnurl = config.lnurl
    return WithdrawClient(
        url_policy(config),
        timeouts=Timeouts(
            connect=lnurl.connect_timeout_s,
            read=lnurl.read_timeout_s,
            fetch_deadline=lnurl.read_timeout_s + lnurl.connect_timeout_s,
            callback_read=lnurl.callback_timeout_s,
            callback_deadline=lnurl.callback_timeout_s + lnurl.connect_timeout_s,
        ),
    )


def open_ledger(config: Config) -> Ledger:
    from terminal.adapters.books.ledger import Ledger

    return Ledger(ensure_data_dir(config) / LEDGER_FILE)


def offline_limits(config: Config) -> OfflineLimits:
    o = config.offline
    return OfflineLimits(
        enabled=o.enabled,
        floor_limit_msat=o.floor_limit_msat,
        per_card_cap_msat=o.per_card_cap_msat,
        total_cap_msat=o.total_cap_msat,
        max_queued=o.max_queued,
        max_age_s=o.max_age_s,
    )


def _limit(value: int | None, default: int | None, scale: int) -> int | None:
    """A configured limit: unset keeps the default, 0 means none."""
    if value is None:
        return default
    return value * scale if value else None


def card_policy_settings(config: Config) -> CardPolicySettings:
    from terminal.core.card_limits import CardLimits
    from terminal.core.card_policy import UnknownCardPolicy
    from terminal.services.card_policy import CardPolicySettings

    cards = config.cards
    defaults = CardLimits(_limit(cards.max_per_tap_sats, None, 1000),
                          _limit(cards.max_per_day_sats, None, 1000),
                          _limit(cards.max_taps_per_hour, None, 1))
    per_card = {
        c.card_id: CardLimits(_limit(c.max_per_tap_sats, defaults.per_tap_msat, 1000),
                              _limit(c.max_per_day_sats, defaults.per_day_msat, 1000),
                              _limit(c.max_taps_per_hour, defaults.taps_per_hour, 1))
        for c in cards.limits
    }
    by_host = {host.lower(): UnknownCardPolicy(issuer.unknown_cards)
               for issuer in config.issuers for host in issuer.hosts}
    return CardPolicySettings(
        defaults=defaults, per_card=per_card, unknown_by_host=by_host,
        unknown_default=UnknownCardPolicy(cards.unknown_cards),
        known_uids=_known_uids(config), sources=tuple(h.name for h in cards.hotlists))


def _known_uids(config: Config) -> dict[str, str]:
    """Card id -> UID of the key-table cards the configuration lists by UID (the only UIDs
    `card list` can show: the terminal stores none)."""
    from terminal.protocols.boltcard import key_table_card_id

    out = {}
    for issuer in config.issuers:
        for card in issuer.cards:
            if card.get("uid"):
                uid = bytes.fromhex(card["uid"])
                out[key_table_card_id(bytes.fromhex(card["k2"]), uid)] = uid.hex()
    return out


def build_card_policy(config: Config, ledger: Ledger, keyring: Keyring) -> CardPolicy:
    from terminal.services.card_policy import CardPolicy

    return CardPolicy(ledger, card_policy_settings(config), card_ids=keyring.card_ids)


def build_hotlist_client(config: Config) -> HotlistClient:
    from terminal.adapters.hotlist_http import HotlistClient
    from terminal.adapters.withdraw import Timeouts

    lnurl = config.lnurl
    return HotlistClient(
        url_policy(config), tuple(h.url for h in config.cards.hotlists),
        max_bytes=config.cards.hotlist_max_bytes,
        timeouts=Timeouts(connect=lnurl.connect_timeout_s, read=lnurl.read_timeout_s,
                          fetch_deadline=lnurl.read_timeout_s + lnurl.connect_timeout_s))


@dataclass
class Terminal:
    """Everything a running terminal (or one CLI command) needs, built once."""

    config: Config
    backend: Backend
    withdraw: WithdrawClient
    keyring: Keyring
    ledger: Ledger
    checkout: Checkout
    cards: CardPolicy | None = None
    hotlist_client: HotlistClient | None = None
    pay_links: PayLinkClient | None = None  # refunds' LNURL-pay client (made when needed)

    async def aclose(self) -> None:
        await self.backend.aclose()
        await self.withdraw.aclose()
        if self.hotlist_client is not None:
            await self.hotlist_client.aclose()
        if self.pay_links is not None:
            await self.pay_links.aclose()
        self.ledger.close()


def build_terminal(config: Config) -> Terminal:
    backend = build_backend(config)
    withdraw = build_withdraw_client(config)
    keyring = build_keyring(config)
    ledger = open_ledger(config)
    cards = build_card_policy(config, ledger, keyring)
    checkout = Checkout(
        backend=backend,
        withdraw=withdraw,
        keyring=keyring,
        ledger=ledger,
        terminal_id=terminal_id(config),
        network=config.network,
        offline_limits=offline_limits(config),
        rates=RatePolicy(max_age_s=config.max_rate_age_s),
        connectivity=Connectivity(),
        invoice_expiry_s=config.invoice_expiry_s,
        confirm_timeout_s=config.lnurl.confirm_timeout_s,
        card_policy=cards,
    )
    checkout.restore_rates({config.display_currency, *config.currencies} - {"SAT"})
    return Terminal(config, backend, withdraw, keyring, ledger, checkout, cards)


def build_hotlists(config: Config, terminal: Terminal) -> HotlistRefresher | None:
    """The fetcher of the configured hotlists (None when none is configured)."""
    if not config.cards.hotlists or terminal.cards is None:
        return None
    from terminal.services.hotlists import HotlistRefresher, HotlistSource

    if terminal.hotlist_client is None:
        terminal.hotlist_client = build_hotlist_client(config)
    sources = tuple(HotlistSource(h.name, h.url, h.kind, h.api_key)
                    for h in config.cards.hotlists)
    return HotlistRefresher(terminal.cards, terminal.hotlist_client, sources,
                            refresh_s=config.cards.hotlist_refresh_s,
                            retry_s=config.cards.hotlist_retry_s,
                            connectivity=terminal.checkout.connectivity)


def build_pay_links(config: Config) -> PayLinkClient:
    """The LNURL-pay client refunds resolve destinations with: the configured URL policy
    without the card-issuer allowlist (`terminal.adapters.lnurl_pay.pay_policy`)."""
    from terminal.adapters.lnurl_pay import PayLinkClient, pay_policy
    from terminal.adapters.withdraw import Timeouts, WithdrawClient

    lnurl = config.lnurl
    transport = WithdrawClient(
        pay_policy(url_policy(config)),
        timeouts=Timeouts(connect=lnurl.connect_timeout_s, read=lnurl.read_timeout_s,
                          fetch_deadline=lnurl.read_timeout_s + lnurl.connect_timeout_s))
    return PayLinkClient(transport, network=config.network, clock=time.time)


def build_refunds(config: Config, terminal: Terminal) -> RefundService:
    """Refunds through this terminal's backend: Flash sends from the merchant's wallet, BTCPay
    issues its own refund (a pull payment)."""
    from terminal.core.ports.refunds import InvoicePayer, PullPaymentRefunder
    from terminal.services.refunds import RefundService

    if terminal.pay_links is None:
        terminal.pay_links = build_pay_links(config)
    backend = terminal.backend
    payer = backend if isinstance(backend, InvoicePayer) else None
    pull = backend if payer is None and isinstance(backend, PullPaymentRefunder) else None
    if payer is None and pull is None:
        raise ValueError(f"the {backend.name} backend cannot refund")
    return RefundService(terminal.ledger, payer=payer, pull_payments=pull,
                         pay_links=terminal.pay_links, cards=terminal.withdraw,
                         keyring=terminal.keyring, rates=terminal.checkout.rates,
                         terminal_id=terminal.checkout.terminal_id)


def build_printer(settings: PrinterSettings) -> SerialPrinter | None:
    """The configured receipt printer, or None when printing is off."""
    if not settings.enabled or not settings.port:
        return None
    from hw.printer import SerialPrinter

    return SerialPrinter(settings.port, baudrate=settings.baudrate, width_mm=settings.width_mm,
                         query_status=settings.query_status)


def till_settings(config: Config) -> TillSettings:
    from terminal.core.tips import TipSettings
    from terminal.services.till import TillSettings

    currencies = tuple(config.currencies or (config.display_currency,))
    return TillSettings(
        currencies=currencies,
        tips=TipSettings(enabled=config.ui.tips, presets=tuple(config.ui.tip_presets),
                         allow_custom=config.ui.tip_custom),
        result_seconds=float(config.ui.result_seconds),
        max_sale_minor={code: config.max_sale_minor(code) for code in currencies},
        show_card_balance=config.ui.show_card_balance,
    )


def build_staff(config: Config, terminal: Terminal) -> Staff:
    """Who may sign in at this terminal: the enrolled cashiers and those added in Admin (kept
    in the books, as is the PIN guard's lock-out)."""
    from terminal.core.cashiers import Cashier, Role
    from terminal.services.till.staff import Staff

    enrolled = [Cashier(c.id, c.name, Role(c.role), c.pin_hash) for c in config.cashiers]
    return Staff(enrolled, store=terminal.ledger, admin_pin_hash=config.admin_pin_hash,
                 require_sign_in=config.ui.require_sign_in)


def build_receipts(config: Config, terminal: Terminal,
                   sink: Callable[[str], None] | None = None) -> Receipts:
    from terminal.adapters.receipts import Receipts

    return Receipts(build_printer(config.printer), merchant=config.name,
                    terminal_id=terminal.checkout.terminal_id,
                    width=48 if config.printer.width_mm == 80 else 32, sink=sink)


def build_till(config: Config, terminal: Terminal, *,
               receipt_sink: Callable[[str], None] | None = None) -> Till:
    """The cashier's till over this terminal's checkout, receipts and settings."""
    from terminal.services.reports import Reports
    from terminal.services.till import Till

    return Till(terminal.checkout, till_settings(config),
                receipts=build_receipts(config, terminal, receipt_sink),
                auto_print=config.printer.auto_print, staff=build_staff(config, terminal),
                reports=Reports(terminal.ledger), refunds=build_refunds(config, terminal))


def build_sync(config: Config, terminal: Terminal) -> SyncWorker:
    from terminal.services.sync import SyncWorker

    return SyncWorker(terminal.ledger, terminal.backend, terminal.withdraw,
                      terminal.checkout.connectivity, terminal_id=terminal.checkout.terminal_id,
                      invoice_expiry_s=config.invoice_expiry_s)


def build_kiosk(config: Config, terminal: Terminal, till: Till) -> Kiosk:
    """The background work of a running terminal (rates, reconcile, offline queue)."""
    from terminal.services.kiosk import Kiosk

    return Kiosk(till, build_sync(config, terminal), hotlists=build_hotlists(config, terminal))
