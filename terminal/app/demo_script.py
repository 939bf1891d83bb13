"""Scripted cashier journeys: `flash-terminal demo --headless --script FILE --json` (a contract).

One step per line (`#` starts a comment): `amount N`, `key K` (digit, `.`, `back`, `clear`),
`currency USD|JMD|SAT`, `charge`, `tip none|10|15|20|custom N`, `back`, `tap A|B|blank`,
`pay-qr`, `pin DIGITS`, `cancel`, `new-sale`, `network off|on`, `wait S`, `sync`,
`sign-in CASHIER PIN` (the demo's cashiers: ana 1111, manager max 2222), `sign-out`,
`report [shift|day|close]` (the Reports screen: the shift so far (X), today, or the Z that closes
the shift, a manager's; the message is the report's main line), `refund [AMOUNT] card A|B` or
`refund [AMOUNT] to NAME` (History > the last sale > Refund, a manager's: sign in as max first;
all that is left, or AMOUNT in the sale's currency, back onto the card that paid (tapped again)
or to the sandbox's Lightning Address NAME@host:port; the message is the refund's outcome).
Each step runs through the demo's till exactly as a touch or a card would, then waits until
nothing is in progress, and one JSON object per step is printed:

    {"step", "screen", "sale": null | {"id", "state", "amount_msat", "tip_msat", "reason"},
     "online", "queue": {"count", "msat"}, "message"}

`sale` is the sale on screen or, on the Sale screen, the last one finished; `message` is the main
text on screen. Exit 0 when every step ran, 2 on a malformed script (its line named).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TextIO

from terminal.app.demo import CARD_LABELS, DemoEnvironment
from terminal.app.ui.viewmodels.controller import Screen, TerminalController
from terminal.core.money import Money, currency
from terminal.core.tips import NO_TIP, TipChoice
from terminal.services.till import PayPhase, Step, Till

SETTLE_TIMEOUT_S = 20.0  # the longest a step waits for the till to be quiet
TICK_S = 1.0  # the app's clock: countdowns and the auto-return after a success
MAX_WAIT_S = 3600.0
KEYS = {*"0123456789", ".", "back", "clear"}
REPORT_KINDS = ("shift", "day", "close")  # X, today, Z
_DIGITS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")


class ScriptError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class ScriptStep:
    line: int
    text: str  # the line as written (comment stripped)
    verb: str
    args: tuple[str, ...]


def _amount_text(value: str, line: int) -> str:
    if not _DIGITS.fullmatch(value):
        raise ScriptError(line, f"{value!r} is not an amount (digits, optionally . and decimals)")
    return value


def _check(verb: str, args: tuple[str, ...], line: int) -> None:
    def need(count: int) -> None:
        if len(args) != count:
            raise ScriptError(line, f"`{verb}` takes {count} argument(s), got {len(args)}")

    if verb in ("charge", "back", "pay-qr", "cancel", "new-sale", "sync", "sign-out"):
        need(0)
    elif verb == "refund":
        rest = args[1:] if args and _DIGITS.fullmatch(args[0]) else args
        if len(rest) != 2 or rest[0] not in ("card", "to") or (
                rest[0] == "card" and rest[1] not in ("A", "B")):
            raise ScriptError(line, "`refund` takes [AMOUNT] card A|B, or [AMOUNT] to NAME")
    elif verb == "report":
        if len(args) > 1 or (args and args[0] not in REPORT_KINDS):
            raise ScriptError(line, f"`report` takes nothing or one of {', '.join(REPORT_KINDS)}")
    elif verb == "sign-in":
        need(2)
        if not (args[1].isascii() and args[1].isdigit() and 4 <= len(args[1]) <= 8):
            raise ScriptError(line, "`sign-in` takes a cashier id and a PIN of 4 to 8 digits")
    elif verb == "amount":
        need(1)
        _amount_text(args[0], line)
    elif verb == "key":
        need(1)
        if args[0] not in KEYS:
            raise ScriptError(line, f"`key` takes a digit, '.', 'back' or 'clear', not {args[0]!r}")
    elif verb == "currency":
        need(1)
        if args[0].upper() not in ("USD", "JMD", "SAT"):
            raise ScriptError(line, "`currency` takes USD, JMD or SAT")
    elif verb == "tip":
        if not args:
            raise ScriptError(line, "`tip` takes none, a percentage, or custom N")
        if args[0] == "custom":
            need(2)
            _amount_text(args[1], line)
        else:
            need(1)
            if args[0] != "none" and not (args[0].isascii() and args[0].isdigit()
                                          and 0 < int(args[0]) <= 100):
                raise ScriptError(line, "`tip` takes none, a percentage 1–100, or custom N")
    elif verb == "tap":
        need(1)
        if args[0] not in CARD_LABELS:
            raise ScriptError(line, f"`tap` takes one of {', '.join(CARD_LABELS)}")
    elif verb == "pin":
        need(1)
        if not (args[0].isascii() and args[0].isdigit() and 4 <= len(args[0]) <= 8):
            raise ScriptError(line, "`pin` takes 4 to 8 digits")
    elif verb == "network":
        need(1)
        if args[0] not in ("on", "off"):
            raise ScriptError(line, "`network` takes on or off")
    elif verb == "wait":
        need(1)
        try:
            seconds = float(args[0])
        except ValueError:
            raise ScriptError(line, "`wait` takes a number of seconds") from None
        if not 0 <= seconds <= MAX_WAIT_S:
            raise ScriptError(line, f"`wait` takes 0 to {MAX_WAIT_S:g} seconds")
    else:
        raise ScriptError(line, f"unknown step {verb!r}")


def parse_script(text: str) -> list[ScriptStep]:
    """The steps of a script; raises `ScriptError` naming the first bad line."""
    steps = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        verb, *args = line.split()
        _check(verb, tuple(args), number)
        steps.append(ScriptStep(number, line, verb, tuple(args)))
    return steps


# --------------------------------------------------------------------------- what is shown


def screen_name(controller: TerminalController) -> str:
    till = controller.till
    screen = controller.screen
    if screen is Screen.SALE and till.step is Step.TIP:
        return "tip"
    if screen is Screen.PAY and till.phase is PayPhase.PIN:
        return "pin"
    return screen.value


def main_text(controller: TerminalController) -> str:
    """The text a cashier reads first on the current screen."""
    screen = screen_name(controller)
    notice = controller.notice
    if screen == "result":
        result = controller.result
        detail = result.detail_text
        return f"{result.title}: {detail}" if detail else result.title
    if screen == "refund":  # the refund's words, not the till's notice under it
        from terminal.app.ui.strings import t
        from terminal.app.ui.viewmodels.refund import RefundPhase

        refund = controller.refund
        if refund.phase is RefundPhase.PIN:
            return refund.message or t("refund.pin")
        return ": ".join(p for p in (refund.outcome_title, refund.message) if p) or screen
    if screen == "report":  # the report's words, not a notice left from before (e.g. a sign-in)
        reports = controller.reports
        return " · ".join(p for p in (reports.main_line, reports.message) if p)
    if notice:
        return notice
    if screen == "sale":
        return controller.sale.amount_text
    if screen == "tip":
        sale = controller.sale
        return sale.amount_text if sale.custom_tip_mode else sale.tip_title
    if screen in ("pay", "pin"):
        pay = controller.pay
        return pay.prompt or pay.status_text
    return screen


def snapshot(step: str, controller: TerminalController) -> dict[str, Any]:
    till = controller.till
    record = till.record
    exposure = till.exposure()
    return {
        "step": step,
        "screen": screen_name(controller),
        "sale": None if record is None else {
            "id": record.id,
            "state": record.state,
            "amount_msat": record.amount_msat,
            "tip_msat": record.tip_msat if record.amount_msat is not None else None,
            "reason": record.reason,
        },
        "online": bool(till.online),
        "queue": {"count": exposure.count, "msat": exposure.queued_msat},
        "message": main_text(controller),
    }


# --------------------------------------------------------------------------- running


def _minor(value: str, code: str) -> int:
    try:
        return Money.from_major(value, currency(code)).minor
    except (ValueError, InvalidOperation, ArithmeticError):
        return int(Decimal(0))


async def run_step(env: DemoEnvironment, controller: TerminalController, step: ScriptStep) -> None:
    till: Till = controller.till
    verb, args = step.verb, step.args
    if controller.back_office in (Screen.REPORT, Screen.REFUND) and verb not in (
            "report", "refund", "wait", "sync", "network"):
        controller.go(Screen.SALE)  # the cashier leaves the back office for the counter
    if verb == "amount":
        if till.step is Step.RESULT:
            till.new_sale()
        if till.step is Step.AMOUNT:
            till.entry.clear()
        for key in args[0]:
            till.key(key)
    elif verb == "key":
        till.key(args[0])
    elif verb == "currency":
        if not till.set_currency(args[0].upper()):
            till.say(_notice("currency-locked"))
    elif verb == "charge":
        if controller.sale.custom_tip_mode:
            await till.custom_tip_done()
        else:
            await till.charge()
    elif verb == "tip":
        if args[0] == "none":
            await till.choose_tip(NO_TIP)
        elif args[0] == "custom":
            await till.choose_tip(TipChoice(custom_minor=_minor(args[1], till.currency_code)))
        else:
            await till.choose_tip(TipChoice(percent=int(args[0])))
    elif verb == "back":
        till.back()
    elif verb == "tap":
        await env.present(args[0])
    elif verb == "pay-qr":
        invoice = till.session.invoice if till.session is not None else None
        if invoice is None or not till.session_open:
            till.say(_notice("no-invoice"))
        else:
            env.pay_qr(invoice.bolt11)
            # a wallet's payment reaches the terminal by the backend's push: wait for it
            await till.wait_until(lambda: till.step is not Step.PAY, SETTLE_TIMEOUT_S)
    elif verb == "pin":
        for digit in args[0]:
            till.key(digit)
        await till.submit_pin()
    elif verb == "cancel":
        await till.cancel()
    elif verb == "new-sale":
        if not till.new_sale():
            till.say(_notice("finish-first"))
    elif verb == "network":
        await env.set_network(args[0] == "on")
    elif verb == "wait":
        await asyncio.sleep(float(args[0]))
    elif verb == "sync":
        await env.sync_once()
    elif verb == "report":
        kind = args[0] if args else "shift"
        controller.go(Screen.REPORT)
        if controller.screen is not Screen.REPORT:
            till.say(_notice("finish-first"))
        elif kind == "day":
            controller.reports.show_day(till.today())
        else:
            controller.reports.show_shift()
            if kind == "close":
                await controller.reports.close_shift()
    elif verb == "refund":
        await _refund(env, controller, step.args)
    elif verb == "sign-in":
        controller.go(Screen.SIGN_IN)
        controller.signin.choose(args[0].lower())
        for digit in args[1]:
            controller.signin.press(digit)
        controller.sign_in_pressed()
    elif verb == "sign-out":
        if not till.sign_out():
            till.say(_notice("finish-first"))
        controller.go(Screen.SALE)
    await till.settled(SETTLE_TIMEOUT_S)


async def _refund(env: DemoEnvironment, controller: TerminalController,
                  args: tuple[str, ...]) -> None:
    """History > the last sale > Refund, as the manager does it by touch."""
    till = controller.till
    amount, (how, where) = (args[0], args[1:]) if len(args) == 3 else (None, args)
    record = till.record
    if record is None:
        till.say(_notice("no-sale-to-refund"))
        return
    if till.step is Step.RESULT:
        till.new_sale()
    if not controller.open_refund(record.id):
        till.say(_notice("finish-first"))
        return
    vm = controller.refund
    if amount is not None:
        vm.set_partial()
        for key in amount:
            vm.key(key)
    if how == "card":
        vm.choose_card()
        if vm.waiting_for_card:
            await env.present(where)
    else:
        vm.set_address(env.sandbox.address(where.lower()))
        await vm.send_to_address()


def _notice(code: str) -> Any:
    from terminal.services.till import Notice

    return Notice(code)


async def _ticker(controller: TerminalController) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        controller.tick()


async def run_script(steps: list[ScriptStep], out: TextIO, *, as_json: bool = True,
                     work_dir: Any = None,
                     on_env: Callable[[DemoEnvironment], None] | None = None) -> int:
    """Run the steps against a fresh demo (sandbox, cards A, B and blank); one line per step."""
    env = await DemoEnvironment.start(work_dir, receipt_sink=None if as_json else
                                      lambda text: print(text, file=out, flush=True))
    controller = env.controller()
    if on_env is not None:
        on_env(env)
    ticker = asyncio.create_task(_ticker(controller))
    try:
        for step in steps:
            await run_step(env, controller, step)
            shot = snapshot(step.text, controller)
            if as_json:
                print(json.dumps(shot, ensure_ascii=False), file=out, flush=True)
            else:
                sale = shot["sale"]
                state = f" [{sale['state']}]" if sale else ""
                print(f"{step.text:<16} {shot['screen']:<7} {shot['message']}{state}", file=out,
                      flush=True)
        return 0
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await env.stop()


# --------------------------------------------------------------------------- the console demo


DEFAULT_STEPS = "amount {amount}\ncharge\ntip none\ntap {card}\n"
EXIT_OK, EXIT_PAYMENT_FAILED = 0, 4


async def run_headless(amount: str, card: str, out: TextIO, *, work_dir: Any = None) -> int:
    """`flash-terminal demo --headless`: one sale in the console, told as a cashier lives it;
    exit 0 when it was paid (4 otherwise)."""
    from terminal.core.money import Msat, format_msat

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    steps = parse_script(DEFAULT_STEPS.format(amount=amount, card=card))
    env = await DemoEnvironment.start(work_dir, receipt_sink=say)
    controller = env.controller()
    try:
        say("Flash Terminal demo (headless): sandbox at " + env.sandbox.url)
        for c in env.cards.values():
            say(f"  card {c.label}: {format_msat(Msat.from_sat(c.balance_sats))} "
                f"(card id {c.card_id[:8]})")
        for number, step in enumerate(steps, start=1):
            await run_step(env, controller, step)
            say(f"{number}. {step.text}: {main_text(controller)}")
        result = controller.result
        if controller.till.step is not Step.RESULT:
            say("the sale did not end (see above)")
            return EXIT_PAYMENT_FAILED
        say(f"{result.title.upper()}: {result.amount_text} — {result.detail_text}")
        if not result.paid:
            say(f"   {result.next_text}")
            return EXIT_PAYMENT_FAILED
        say("receipt:")
        await controller.till.print_receipt()
        return EXIT_OK
    finally:
        await env.stop()
