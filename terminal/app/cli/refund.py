"""`flash-terminal refund`: all or part of a paid sale back to the customer.

    flash-terminal refund SALE_ID [--amount X [--currency USD|JMD|SAT]]
                          (--to ADDRESS|LNURL|BOLT11 | --card-file PATH | --tap URL)
                          [--cashier ID] [--config FILE] --json

Contract: prints `{"status": "sent"|"pending"|"failed", "refund_id", "sale_id", "amount_msat",
"reason"}` with `--json`, exactly those keys; the words for a person (what happened, and for
BTCPay the claim link: the LNURL-withdraw the customer scans) go to stderr beside it. Exit 0
sent, 4 failed or pending, 2 usage (an unknown sale, a sale with nothing to refund, an amount
above what is left to refund, a destination that does not parse, a cashier who is not a
manager). Without `--amount`, all that is left is refunded (a
BOLT11's own amount, for an invoice). `--amount` is in the sale's currency unless `--currency`
says otherwise; the sale's own currency refunds at the rate the sale was made at.

The card that paid is tapped again (`--tap URL`, or `--card-file` for a simulated card): its
withdrawRequest is read without calling back and the refund is paid to its LUD-19 payLink. With
cashiers enrolled, refunds are a manager's: `--cashier` must name one. Refunds left unresolved by
a crash are resolved first (by the wallet's transactions), never sent again. Like every command
that opens the books: 5 when the running terminal app holds them (refund from its History
screen), 6 damaged books, 7 storage (`terminal.app.cli.exits`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from terminal.app.cli.args import load_config_or_exit
from terminal.app.cli.exits import paragraph
from terminal.core.money import (
    SALE_CURRENCIES,
    AmountError,
    Money,
    currency,
    parse_amount,
    sale_ceiling_minor,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refund", help="refund all or part of a paid sale",
        description="Refund all or part of a paid sale: to the card that paid (tapped again), a "
        "Lightning Address, an LNURL-pay or a BOLT11 invoice. Sent from the merchant's wallet "
        "(Flash) or as BTCPay's own refund.")
    parser.add_argument("sale_id", metavar="SALE_ID", help="the sale to refund (see history)")
    parser.add_argument("--amount", metavar="X",
                        help="how much (in the sale's currency, or --currency); default: all "
                        "that is left")
    parser.add_argument("--currency", type=str.upper, choices=SALE_CURRENCIES,
                        help="the currency of --amount (USD, JMD or SAT)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="ADDRESS|LNURL|BOLT11",
                       help="a Lightning Address, an LNURL-pay or an invoice of the customer's")
    where.add_argument("--card-file", type=Path, metavar="PATH",
                       help="tap a simulated card: the card that paid")
    where.add_argument("--tap", metavar="URL", help="the tap URL of the card that paid")
    parser.add_argument("--cashier", metavar="ID",
                        help="who refunds (a manager, when cashiers are enrolled)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_refund, parser=parser)


class _Usage(Exception):
    pass


def _refund(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.currency and args.amount is None:
        parser.error("--currency goes with --amount")
    config = load_config_or_exit(args)
    try:
        outcome = asyncio.run(_run(config, args))
    except _Usage as exc:
        parser.error(paragraph(exc))
    if args.json:
        print(json.dumps(outcome.to_json()))
        if outcome.message:
            print(f"flash-terminal refund: {outcome.message}", file=sys.stderr)
        if outcome.claim_link:
            print(f"claim link (the customer scans it): {outcome.claim_link}", file=sys.stderr)
    else:
        # Server text (an issuer's or a wallet's reason, BTCPay's link) is printed cleaned.
        print(f"{outcome.status.upper()}: {outcome.amount_msat / 1000:,.3f} sats — "
              f"{paragraph(outcome.message)}")
        if outcome.claim_link:
            print(f"claim link (the customer scans it): {paragraph(outcome.claim_link)}")
        if outcome.refund_id:
            print(f"refund {outcome.refund_id} of sale {outcome.sale_id}")
    return EXIT_OK if outcome.status == "sent" else EXIT_FAILED


async def _run(config, args: argparse.Namespace):
    from terminal.app.root import build_refunds, build_staff, build_terminal
    from terminal.services.refunds import RefundOutcome, RefundRefused, RefundRequest

    terminal = build_terminal(config)
    try:
        cashier = _manager(build_staff(config, terminal), args.cashier)
        service = build_refunds(config, terminal)
        await service.resolve_open()  # a crash's leftovers first: they hold their amounts
        try:
            quote = service.quote(args.sale_id)
        except RefundRefused as exc:
            raise _Usage(exc.message) from None
        amount = await _amount(terminal, quote.sale, args)
        tap = args.tap
        if args.card_file is not None:
            from terminal.adapters import simcards

            tap = simcards.tap(args.card_file)
        request = RefundRequest(quote.sale.id, amount, to=args.to, tap_url=tap, cashier=cashier)
        try:
            return await service.refund(request)
        except RefundRefused as exc:
            if exc.usage:
                raise _Usage(exc.message) from None
            return RefundOutcome("failed", None, quote.sale.id, 0, exc.code, exc.message)
    finally:
        await terminal.aclose()


def _manager(staff, cashier_id: str | None) -> str | None:
    """Refunds are a manager's: with cashiers enrolled, `--cashier` names one."""
    if not staff.enabled:
        if cashier_id is not None:
            raise _Usage("--cashier: this terminal has no cashiers enrolled")
        return None
    if cashier_id is None:
        raise _Usage("refunds are a manager's: pass --cashier ID (a manager of this terminal)")
    cashier = staff.roster.get(cashier_id)
    if cashier is None:
        known = ", ".join(c.id for c in staff.roster)
        raise _Usage(f"--cashier: no cashier {cashier_id!r} on this terminal (cashiers: {known})")
    if not cashier.is_manager:
        raise _Usage(f"--cashier: {cashier.name} is not a manager; refunds need a manager")
    return cashier.id


async def _amount(terminal, sale, args: argparse.Namespace) -> Money | None:
    if args.amount is None:
        return None
    cur = currency(args.currency or sale.currency)
    try:
        amount = parse_amount(args.amount, cur, max_minor=sale_ceiling_minor(cur))
    except AmountError as exc:
        raise _Usage(f"--amount: {exc.message}") from None
    if not cur.is_sat and cur.code != sale.currency:
        await terminal.checkout.refresh_rate(cur.code)  # another currency: today's rate
    return amount

