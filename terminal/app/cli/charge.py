"""`flash-terminal charge`: one complete sale without the UI, as a technician tests an install.

Contract: prints `{"status", "reason", "sale_id", "payment_hash", "amount_msat"}` (plus a
human `message`) with `--json`; exit 0 when paid or queued, 4 when the payment failed, expired or
was declined, 2 for usage errors (including an unusable configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from terminal.adapters.books.storage import StorageLockedError
from terminal.app.cli.args import load_config_or_exit
from terminal.app.config import CURRENCIES
from terminal.core.money import (
    AmountError,
    AmountTooLarge,
    Money,
    currency,
    format_money,
    parse_amount,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PAYMENT_FAILED = 4
PIN_ENV = "FLASH_TERMINAL_PIN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("charge", help="run one complete sale without the UI")
    parser.add_argument("amount", help="amount in the currency's major unit (e.g. 5 or 12.50)")
    parser.add_argument("--currency", default=None, type=str.upper, choices=CURRENCIES,
                        help="USD, JMD or SAT (default: the configured display currency)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--memo", default="", help="memo on the invoice")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tap", metavar="URL", help="a card's tap URL (lnurlw://…?p=…&c=…)")
    source.add_argument("--card-file", type=Path, metavar="PATH", help="tap a simulated card")
    source.add_argument("--qr", action="store_true", help="show the invoice and wait for a wallet")
    parser.add_argument(
        "--pin-stdin", action="store_true",
        help=f"read the card PIN from standard input (or set {PIN_ENV}) when the issuer asks",
    )
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for settlement (default: the invoice's expiry); "
                        "if it passes first the status is \"pending\" (exit 4)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_charge, parser=parser)


def _charge(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    config = load_config_or_exit(args)
    # Parsed and held to the per-sale limit before any rate or invoice work.
    cur = currency(args.currency or config.display_currency)
    try:
        amount = parse_amount(args.amount, cur, max_minor=config.max_sale_minor(cur.code))
    except AmountTooLarge as exc:
        parser.error(f"amount: {exc.message} (terminal.max_sale.{cur.code} in the configuration)")
    except AmountError as exc:
        parser.error(f"amount: {exc.message}")
    pin = _read_pin(args)
    try:
        outcome = asyncio.run(_run(config, amount, args, pin))
    except StorageLockedError:
        parser.error("the terminal app is running and has the ledger open: charge from its "
                     "screen, or stop the service (systemctl stop flash-terminal) first")
    if args.json:
        print(json.dumps(outcome.to_json()))
    else:
        print(f"{outcome.status.upper()}: {format_money(amount)} — {outcome.message}")
        if outcome.reason:
            print(f"reason: {outcome.reason}")
        print(f"sale {outcome.sale_id}")
    return EXIT_OK if outcome.status in ("paid", "queued") else EXIT_PAYMENT_FAILED


def _read_pin(args: argparse.Namespace) -> str | None:
    if args.pin_stdin:
        return sys.stdin.readline().strip() or None
    return os.environ.get(PIN_ENV) or None


async def _run(config, amount: Money, args: argparse.Namespace, pin: str | None):
    from terminal.app.root import build_terminal

    terminal = build_terminal(config)
    try:
        checkout = terminal.checkout
        await checkout.refresh_rate(amount.currency.code)
        session = await checkout.open_sale(amount.minor, amount.currency.code, args.memo)
        if session.sale.is_final:
            return session.outcome()
        if args.qr:
            _show_invoice(session)
        else:
            url = args.tap if args.tap else _tap_card_file(args.card_file)
            result = await session.tap(url)
            if result.kind == "pin-required":
                if pin is None:
                    session.fail("pin-required")
                    return _with_message(session.outcome(), result.message +
                                         f" (pass it with --pin-stdin or {PIN_ENV})")
                result = await session.submit(pin)
            if result.kind in ("refused", "late", "pin-required"):
                session.fail(result.code or "refused")
                return _with_message(session.outcome(), result.message)
            if result.kind in ("queued", "declined"):
                return session.outcome()
        outcome = await session.wait_settled(_timeout(args, session))
        if outcome.status == "pending":  # only with a --timeout shorter than the invoice's life
            return _with_message(outcome, "Not settled yet: do NOT charge again. The sale "
                                 f"{outcome.sale_id[:8]} is resolved by its invoice; see "
                                 "`flash-terminal history`.")
        return outcome
    finally:
        await terminal.aclose()


def _tap_card_file(path: Path) -> str:
    from terminal.adapters import simcards

    return simcards.tap(path)


def _timeout(args: argparse.Namespace, session) -> float:
    if args.timeout is not None:
        return args.timeout
    expires_at = session.invoice.expires_at if session.invoice else time.time() + 60
    return max(1.0, expires_at - time.time() + 5)


def _show_invoice(session) -> None:
    invoice = session.invoice
    if invoice is None:
        return
    print(f"Invoice for {invoice.amount_msat // 1000} sats:", file=sys.stderr)
    print(invoice.bolt11, file=sys.stderr)


def _with_message(outcome, message: str):
    from dataclasses import replace

    return replace(outcome, message=message)
