"""`flash-terminal charge`: one complete sale without the UI, as a technician tests an install.

Contract: prints `{"status", "reason", "sale_id", "payment_hash", "amount_msat"}` (plus a
human `message`) with `--json`. Exit 0 when paid or queued; 4 when not paid: failed, expired,
cancelled, declined, or NOT FINAL ("unconfirmed": the issuer refused after the payment was sent
and the invoice is still open; "pending": not settled within `--timeout`) — never charge again
after a not-final answer, the sale is settled by its invoice (`flash-terminal sync`, the running
terminal); 2 usage errors (including an unusable configuration or an amount over the limit);
5 the ledger is held by the running terminal; 6 the books are damaged; 7 the disk is full or a
file cannot be written; 70 an internal error (see `terminal.app.cli.exits`).

`--timeout S` bounds the whole sale: invoice creation, the tap, the issuer's callback and the
settlement wait all fit in S seconds.
With `--reader` the tap comes from the NFC reader (terminal.app.cli.reader_tap); no tap before
the invoice expires or `--timeout` ends fails the sale with reason `no-tap` (a card that cannot
pay, e.g. a blank one, is named in the message), an absent reader with `reader-unavailable`
(exit 4): nothing was sent to any issuer, so the sale is final.

Also in the JSON: `tip_msat` (`--tip 15%` or `--tip 2.50`), `cashier` (`--cashier ID`, needed
when cashiers are enrolled and sign-in is required) and `card_balance_msat`: the paying card's
balance after the sale when its issuer sends LUD-14 `currentBalance`, else null.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import EXIT_NOT_PAID, EXIT_OK, EXIT_USAGE, paragraph
from terminal.core.money import (
    SALE_CURRENCIES,
    AmountError,
    AmountTooLarge,
    Money,
    currency,
    format_money,
    parse_amount,
)

EXIT_PAYMENT_FAILED = EXIT_NOT_PAID  # kept: the name other modules import
PIN_ENV = "FLASH_TERMINAL_PIN"
READER_END_S = 0.5  # of --timeout, kept to end a sale no card paid (fail it, let the reader go)
NO_INVOICE_TEXT = ("No invoice was created (the backend could not be used), so nothing can be "
                   "paid or charged. Try again.")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("charge", help="run one complete sale without the UI")
    parser.add_argument("amount", help="amount in the currency's major unit (e.g. 5 or 12.50)")
    parser.add_argument("--currency", default=None, type=str.upper, choices=SALE_CURRENCIES,
                        help="USD, JMD or SAT (default: the configured display currency)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--memo", default="", help="memo on the invoice")
    parser.add_argument("--tip", type=_tip_arg, metavar="PERCENT%|AMOUNT",
                        help="a tip on top of the amount: a percentage (15%%) of it, or an "
                        "amount in the sale's currency (2.50)")
    parser.add_argument("--cashier", metavar="ID",
                        help="who rings the sale up: a cashier id of this terminal (needed when "
                        "cashiers are enrolled and sign-in is required)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tap", metavar="URL", help="a card's tap URL (lnurlw://…?p=…&c=…)")
    source.add_argument("--card-file", type=Path, metavar="PATH", help="tap a simulated card")
    source.add_argument("--qr", action="store_true", help="show the invoice and wait for a wallet")
    source.add_argument("--reader", metavar="DEVICE",
                        help="take the tap from an NFC reader, as the kiosk does (nfcpy device: "
                        "usb, tty:AMA0:pn532, …); waits until the invoice expires or --timeout")
    parser.add_argument(
        "--pin-stdin", action="store_true",
        help=f"read the card PIN from standard input (or set {PIN_ENV}) when the issuer asks",
    )
    parser.add_argument("--timeout", type=_timeout_arg, default=None,
                        help="seconds the whole sale may take (default: until the invoice "
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


def _tip_arg(text: str) -> tuple[str, str]:
    """("percent", "15") or ("amount", "2.50"); the amount is checked against the sale's
    currency once that is known."""
    value = text.strip()
    if value.endswith("%"):
        number = value[:-1].strip()
        if not (number.isascii() and number.isdigit() and 0 <= int(number) <= 100):
            raise argparse.ArgumentTypeError("a percentage tip is a whole number from 0 to 100 "
                                             f"followed by %, got {text!r}")
        return ("percent", str(int(number)))
    return ("amount", value)


class _CashierUnknown(Exception):
    pass


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
    args.tip_choice = _tip_choice(parser, args.tip, amount, config)
    pin = _read_pin(args)
    # A held ledger (the running app), damaged books or a full disk propagate to
    # `terminal.app.cli.main`, which answers with their exit code and one paragraph.
    try:
        outcome, extra = asyncio.run(_run(config, amount, args, pin))
    except _CashierUnknown as exc:
        parser.error(str(exc))
    if args.json:
        print(json.dumps({**outcome.to_json(), **extra}))
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


async def _run(config, amount: Money, args: argparse.Namespace, pin: str | None):
    """The sale through the till, as a cashier would ring it up; `--timeout` bounds it all."""
    from terminal.app.root import build_terminal, build_till

    terminal = build_terminal(config)
    till = build_till(config, terminal)
    till.auto_print = False  # a technician's test sale prints nothing by itself
    try:
        _name_cashier(till, args.cashier)
        deadline = time.monotonic() + args.timeout if args.timeout is not None else None
        try:
            async with asyncio.timeout(args.timeout):
                outcome = await _sell(till, amount, args, pin, deadline)
        except TimeoutError:
            outcome = _pending(till)
        return outcome, _extra(till, outcome)
    finally:
        await till.aclose()
        await terminal.aclose()


def _tip_choice(parser: argparse.ArgumentParser, tip: tuple[str, str] | None, amount: Money,
                config):
    """`--tip` as the till's `TipChoice` (None: no --tip given), checked like the sale."""
    from terminal.core.tips import TipChoice

    if tip is None:
        return None
    kind, value = tip
    if kind == "percent":
        return TipChoice(percent=int(value))
    room = config.max_sale_minor(amount.currency.code) - amount.minor
    try:
        minor = parse_amount(value, amount.currency, max_minor=max(0, room)).minor
    except AmountTooLarge:
        parser.error(f"--tip: {value} on top of {format_money(amount)} is more than one sale "
                     f"can be (terminal.max_sale.{amount.currency.code})")
    except AmountError as exc:
        if _is_zero(value):
            return TipChoice(custom_minor=0)
        parser.error(f"--tip: {exc.message} (a percentage like 15%, or an amount like 2.50)")
    return TipChoice(custom_minor=minor)


def _is_zero(text: str) -> bool:
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(text) == 0
    except InvalidOperation:
        return False


def _name_cashier(till, cashier_id: str | None) -> None:
    """Who rings the sale up: `--cashier`, checked against this terminal's cashiers."""
    from terminal.services.till import StaffError

    staff = till.staff
    if cashier_id is not None:
        try:
            staff.act_as(cashier_id)
        except StaffError as exc:
            raise _CashierUnknown(f"--cashier: {exc}") from None
    elif staff.required:
        known = ", ".join(c.id for c in staff.roster)
        raise _CashierUnknown(f"this terminal's sales name who rang them up: pass --cashier ID "
                              f"(one of {known})")


def _extra(till, outcome) -> dict[str, object]:
    """The JSON keys beyond the contract's: the tip, the cashier, the card's balance."""
    record = till.checkout.ledger.get_sale(outcome.sale_id) if outcome.sale_id else None
    result = till.result
    balance = result.card_balance_msat if result is not None and \
        result.sale_id == outcome.sale_id else None
    return {
        "tip_msat": record.tip_msat if record is not None else None,
        "cashier": record.cashier if record is not None else till.cashier,
        "card_balance_msat": balance,
    }


async def _sell(till, amount: Money, args: argparse.Namespace, pin: str | None,
                deadline: float | None = None):
    from terminal.core.tips import NO_TIP
    from terminal.services.checkout import SaleOutcome
    from terminal.services.till import PayPhase, Step
    from terminal.services.till.model import ResultKind

    await till.refresh_rates()
    till.ring_up(amount, args.memo)
    await till.charge(tip=getattr(args, "tip_choice", None))
    if till.step is Step.TIP:  # no --tip: the command line charges none
        await till.choose_tip(NO_TIP)
    if till.step is Step.AMOUNT:  # refused before any sale existed (no rate, too small …)
        notice = till.notice
        return SaleOutcome("failed", "", notice.code if notice else "not-charged",
                           (notice.text if notice and notice.text else _notice_words(till)),
                           None, None)
    if till.step is Step.PAY:
        if args.qr and till.session is not None and till.session.invoice is None:
            # No invoice (the backend could not be used): a wallet has nothing to pay, and a
            # command line has no card to accept offline. Nothing can arrive: it fails.
            till.session.fail("backend-unavailable")
            await till.cancel()
            return _with_message(till.outcome(), NO_INVOICE_TEXT)
        if args.qr:
            _show_invoice(till.session)
        else:
            if args.reader:
                from terminal.app.cli.reader_tap import take_tap_async

                wait = _settle_timeout(till)
                if deadline is not None:  # the wait ends first: no tap is then a plain failure
                    wait = min(wait, deadline - time.monotonic() - READER_END_S)
                taken = await take_tap_async(args.reader, max(0.0, wait))
                if taken.url is None:
                    if till.session is not None:
                        till.session.fail(taken.reason)
                    await till.cancel()
                    return _with_message(till.outcome(), taken.message)
                url = taken.url
            else:
                url = args.tap if args.tap else _tap_card_file(args.card_file)
            await till.tap(url)
            if till.phase is PayPhase.PIN:
                if pin is None:
                    await till.cancel()
                    return _with_message(till.outcome(), "The card's issuer asks for its PIN "
                                         f"(pass it with --pin-stdin or {PIN_ENV}).")
                for digit in pin:
                    till.key(digit)
                await till.submit_pin()
    await till.wait_until(lambda: till.step is Step.RESULT, _settle_timeout(till))
    if till.step is not Step.RESULT:
        return _pending(till)
    result = till.result
    if result is not None and result.sale_open and result.kind is not ResultKind.UNCONFIRMED:
        await till.cancel()  # a refused card: this sale ends here
    # An unconfirmed sale is left open: a payment may still arrive (sync settles it).
    outcome = till.outcome()
    if outcome.status == "pending":
        return _pending(till)
    message = result.message if result is not None and result.message else outcome.message
    return _with_message(outcome, message)


def _settle_timeout(till) -> float:
    session = till.session
    invoice = session.invoice if session is not None else None
    if invoice is None:
        return 60.0
    return max(1.0, invoice.expires_at - time.time() + till.settings.settle_grace_s)


def _pending(till):
    from terminal.services.checkout import SaleOutcome

    outcome = till.outcome()
    if outcome is None:
        return SaleOutcome("pending", "", "timeout", "Nothing was charged yet.", None, None)
    return _with_message(outcome, "Not settled yet: do NOT charge again. The sale "
                         f"{outcome.sale_id[:8]} is resolved by its invoice; see "
                         "`flash-terminal history`.")


def _notice_words(till) -> str:
    from terminal.app.ui.strings import notice_text

    return notice_text(till.notice) or "Nothing was charged."


def _tap_card_file(path: Path) -> str:
    from terminal.adapters import simcards

    return simcards.tap(path)


def _show_invoice(session) -> None:
    invoice = session.invoice
    if invoice is None:
        return
    print(f"Invoice for {invoice.amount_msat // 1000} sats:", file=sys.stderr)
    print(invoice.bolt11, file=sys.stderr)


def _with_message(outcome, message: str):
    from dataclasses import replace

    return replace(outcome, message=message)


__all__ = ["EXIT_USAGE", "register"]
