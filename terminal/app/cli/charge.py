"""`flash-terminal charge`: one complete sale without the UI, as a technician tests an install.

Contract: prints `{"status", "reason", "sale_id", "payment_hash", "amount_msat"}` (plus a
human `message`) with `--json`. Exit 0 when paid or queued; 4 when not paid: failed, expired,
cancelled, declined, or NOT FINAL ("unconfirmed": the issuer refused after the payment was sent
and the invoice is still open; "pending": not settled within `--timeout`) — never charge again
after a not-final answer, the sale is settled by its invoice (`flash-terminal sync`, the running
terminal); 2 usage errors (including an unusable configuration); 5 the ledger is held by the
running terminal; 6 the books are damaged; 7 the disk is full or a file cannot be written;
70 an internal error (see `terminal.app.cli.exits`).

`--timeout S` bounds the whole command: invoice creation, the tap, the issuer's callback and the
settlement wait all fit in S seconds (the ledger is closed after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_NOT_PAID, EXIT_OK, EXIT_USAGE, paragraph
from terminal.app.config import CURRENCIES
from terminal.core.money import Money, UnknownCurrency, currency, format_money

EXIT_PAYMENT_FAILED = EXIT_NOT_PAID  # kept: other modules import it by this name
PIN_ENV = "FLASH_TERMINAL_PIN"
# The part of --timeout kept back for closing connections and the ledger.
CLOSE_MARGIN_S = 0.25
NOT_SETTLED_TEXT = ("Not settled yet: do NOT charge again. The sale {sale} is resolved by its "
                    "invoice; see `flash-terminal history`.")
NO_INVOICE_TEXT = ("No invoice was created (the backend could not be used), so nothing can be "
                   "paid or charged. Try again.")
TIMED_OUT_TEXT = ("--timeout passed before the backend created the invoice: nothing can be paid "
                  "or charged. Try again.")


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
    parser.add_argument("--timeout", type=_timeout_arg, default=None,
                        help="seconds the whole command may take (default: until the invoice "
                        "expires); if it passes first the status is \"pending\" (exit 4)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_charge, parser=parser)


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds") from None
    if not 1.0 <= value <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError("expected 1 to 86400 seconds")
    return value


def _charge(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    started = time.monotonic()
    config = load_config_or_exit(args)
    try:
        cur = currency(args.currency or config.display_currency)
        amount = Money.from_major(args.amount, cur)
    except (UnknownCurrency, ValueError) as exc:
        parser.error(f"amount: {exc}")
    if amount.minor <= 0:
        parser.error("amount must be positive")
    pin = _read_pin(args)
    deadline = None if args.timeout is None else started + args.timeout
    outcome = asyncio.run(_run(config, amount, args, pin, deadline))
    if args.json:
        print(json.dumps(outcome.to_json()))
    else:
        print(f"{outcome.status.upper()}: {format_money(amount)} — {paragraph(outcome.message)}")
        if outcome.reason:
            print(f"reason: {outcome.reason}")
        print(f"sale {outcome.sale_id}")
    return EXIT_OK if outcome.status in ("paid", "queued") else EXIT_NOT_PAID


def _read_pin(args: argparse.Namespace) -> str | None:
    if args.pin_stdin:
        return sys.stdin.readline().strip() or None
    return os.environ.get(PIN_ENV) or None


async def _run(config, amount: Money, args: argparse.Namespace, pin: str | None,
               deadline: float | None):
    from terminal.app.root import build_terminal

    terminal = build_terminal(config)
    session = None
    try:
        budget = None if deadline is None else deadline - time.monotonic() - CLOSE_MARGIN_S
        try:
            async with asyncio.timeout(None if budget is None else max(0.0, budget)):
                checkout = terminal.checkout
                # Recorded first: whatever happens next, the ledger names this sale.
                session = checkout.start_sale(amount.minor, amount.currency.code, args.memo)
                await checkout.refresh_rate(amount.currency.code)
                await session.create_invoice()
                return await _sale(session, args, pin)
        except TimeoutError:
            return _timed_out(session)
    finally:
        await terminal.aclose()


async def _sale(session, args: argparse.Namespace, pin: str | None):
    if session.sale.is_final:
        return session.outcome()
    if args.qr:
        if session.invoice is None:  # no invoice: a wallet has nothing to pay
            session.fail("backend-unavailable")
            return _with_message(session.outcome(), NO_INVOICE_TEXT)
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
            # Refused before anything was sent: nothing can arrive. (A sale with a callback
            # out refuses `fail`: only its invoice ends it.)
            session.fail(result.code or "refused")
            return _with_message(session.outcome(), result.message)
        if result.kind in ("queued", "declined", "unconfirmed"):
            return session.outcome()
    outcome = await session.wait_settled(_settle_timeout(args, session))
    if outcome.status == "pending":  # only with a --timeout shorter than the invoice's life
        return _with_message(outcome, NOT_SETTLED_TEXT.format(sale=outcome.sale_id[:8]))
    return outcome


def _timed_out(session):
    """--timeout passed mid-way: what the ledger holds decides the answer."""
    from terminal.services.checkout import SaleOutcome

    if session is None:  # not even recorded: nothing exists that could be paid
        return SaleOutcome("failed", "", "timeout", TIMED_OUT_TEXT, None, None)
    if session.invoice is None and session.fail("timeout-before-invoice"):
        return _with_message(session.outcome(), TIMED_OUT_TEXT)
    outcome = session.outcome()
    if outcome.status == "pending":
        return _with_message(outcome, NOT_SETTLED_TEXT.format(sale=outcome.sale_id[:8]))
    return outcome


def _tap_card_file(path: Path) -> str:
    from terminal.adapters import simcards

    return simcards.tap(path)


def _settle_timeout(args: argparse.Namespace, session) -> float | None:
    if args.timeout is not None:
        return None  # the command's own deadline bounds the wait
    expires_at = session.invoice.expires_at if session.invoice else time.time() + 60
    return max(1.0, expires_at - time.time() + 5)


def _show_invoice(session) -> None:
    invoice = session.invoice
    if invoice is None:
        return
    print(f"Invoice for {invoice.amount_msat // 1000} sats:", file=sys.stderr)
    print(invoice.bolt11, file=sys.stderr)


def _with_message(outcome, message: str):
    return replace(outcome, message=message)


__all__ = ["EXIT_USAGE", "register"]
