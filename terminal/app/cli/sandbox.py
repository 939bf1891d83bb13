"""`flash-terminal sandbox serve|card new|wallet|fill-history`: the local stand-in for Flash and a
Boltcard issuer, its customers' wallets, and a realistic history of settled sales for demos and
benchmarks.

    flash-terminal sandbox wallet NAME --data DIR [--json]
        the balance of the customer wallet behind the Lightning Address NAME@<sandbox> (where a
        refund to that address lands), made on first use: `{"name", "balance_msat"}`. Asks the
        sandbox serving DIR, or reads DIR at rest. Exit 0, 2 usage (a name the address cannot
        have).

    flash-terminal sandbox fill-history --config FILE --sales N [--days D] [--cards K] [--json]
        writes N settled sales (card and QR; paid, failed, expired, cancelled, declined and
        offline-paid; JMD, USD and sats; K cards) spread over the D days before today into the
        books of FILE's data_dir, through the books' normal write path. Exit 0 written, 2 usage,
        5 the books are in use (stop the terminal first), 6 damaged books, 7 a disk error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tomllib
from pathlib import Path

from terminal.adapters import simcards
from terminal.adapters.backends.json_endpoint import HttpAnswer, one_request
from terminal.app.cli.exits import paragraph
from terminal.protocols.boltcard.provisioning import BoltcardKeys

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_BALANCE_SATS = 100_000
FILL_MAX_SALES = 10_000_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="local Flash API + Boltcard issuer stand-in")
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)

    serve = sub.add_parser("serve", help="serve until stopped; writes DIR/terminal.toml")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    serve.add_argument("--data", type=Path, required=True, metavar="DIR",
                       help="state directory (cards, counters, balances, invoices)")
    serve.add_argument("--with-api-key", action="store_true",
                       help="terminal.toml carries the sandbox's API key: the terminal can also "
                       "send (refunds); default: receive-only by username")
    serve.set_defaults(handler=_serve)

    card = sub.add_parser("card", help="cards issued by the sandbox")
    card_sub = card.add_subparsers(dest="sandbox_card_command", metavar="ACTION", required=True)
    new = card_sub.add_parser("new", help="issue a funded simulated card")
    new.add_argument("path", type=Path, help="where to write the simulated card file")
    new.add_argument("--data", type=Path, required=True, metavar="DIR")
    new.add_argument("--balance", type=int, default=DEFAULT_BALANCE_SATS, metavar="SATS")
    new.add_argument("--pin", help="card PIN (4-8 digits) required above --pin-limit")
    new.add_argument("--pin-limit", type=int, metavar="SATS")
    new.add_argument("--json", action="store_true")
    new.set_defaults(handler=_card_new, parser=new)

    wallet = sub.add_parser("wallet", help="a customer's Lightning Address wallet: its balance")
    wallet.add_argument("name", help="the address's name (NAME@host:port)")
    wallet.add_argument("--data", type=Path, required=True, metavar="DIR")
    wallet.add_argument("--json", action="store_true")
    wallet.set_defaults(handler=_wallet, parser=wallet)

    fill = sub.add_parser(
        "fill-history", help="write a realistic history of settled sales into the books",
        description="Write N settled sales spread over the D days before today (a realistic "
        "mix of card and QR, outcomes, currencies and K cards) through the books' normal write "
        "path: how a demo shows a year of sales, and how the benchmarks fill the books.")
    fill.add_argument("--config", metavar="FILE", required=True,
                      help="terminal configuration (its data_dir holds the books)")
    fill.add_argument("--sales", type=int, required=True, metavar="N", help="how many sales")
    fill.add_argument("--days", type=int, default=365, metavar="D",
                      help="spread over the D days before today (default 365)")
    fill.add_argument("--cards", type=int, default=20, metavar="K",
                      help="how many regular cards pay by tap (default 20)")
    fill.add_argument("--seed", type=int, help="repeatable output (the same mix and times)")
    fill.add_argument("--json", action="store_true", help="print the summary as JSON")
    fill.set_defaults(handler=_fill_history, parser=fill)


def _serve(args: argparse.Namespace) -> int:
    from terminal.sandbox.server import Sandbox

    async def run() -> None:
        sandbox = Sandbox(args.data, port=args.port)
        await sandbox.start()
        config = sandbox.write_terminal_config(with_api_key=args.with_api_key)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"sandbox serving on {sandbox.url}", flush=True)
        print(f"  Flash GraphQL  {sandbox.http_url}  (WebSocket {sandbox.ws_url})", flush=True)
        print(f"  issuer         {sandbox.lnurlw_base}", flush=True)
        print(f"  configuration  {config}", flush=True)
        try:
            await stop.wait()
        finally:
            await sandbox.stop()

    asyncio.run(run())
    return EXIT_OK


def _card_new(args: argparse.Namespace) -> int:
    uid = simcards.new_uid()
    options: dict[str, object] = {}
    if args.pin:
        options["pin"] = args.pin
    if args.pin_limit is not None:
        options["pin_limit_sats"] = args.pin_limit
    if args.balance < 0:
        args.parser.error("--balance must not be negative")
    from terminal.sandbox.core import SandboxError

    try:
        issued = _register_with_running(args.data, uid, args.balance, options)
        if issued is None:
            issued = _register_at_rest(args, uid, options)
    except SandboxError as exc:  # the sandbox refused the card (a bad PIN, limit…): usage
        parser: argparse.ArgumentParser = args.parser
        parser.error(paragraph(exc))
    keys = BoltcardKeys.of([bytes.fromhex(issued[f"k{n}"]) for n in range(5)],
                           version=int(issued["version"]))
    _card, url = simcards.create_programmed(args.path, issued["lnurlw_base"], keys, uid)
    result = {
        "path": str(args.path),
        "card_id": issued["card_id"],
        "balance_sats": args.balance,
        "lnurlw_base": issued["lnurlw_base"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"issued simulated card {args.path} (card id {issued['card_id'][:12]}…, "
              f"{args.balance:,} sats)")
    return EXIT_OK


def _wallet(args: argparse.Namespace) -> int:
    answer = _wallet_from_running(args.data, args.name)
    if answer is None:
        from terminal.sandbox.core import WithdrawRefused
        from terminal.sandbox.server import Sandbox

        try:
            wallet = Sandbox(args.data).core.customer_wallet(args.name)
        except WithdrawRefused as exc:
            args.parser.error(f"NAME: {exc.reason}")
        answer = {"name": wallet.name, "balance_msat": wallet.balance_msat}
    elif "error" in answer:
        args.parser.error(f"NAME: {answer['error']}")
    if args.json:
        print(json.dumps({"name": answer["name"], "balance_msat": answer["balance_msat"]}))
    else:
        print(f"{answer['name']}: {answer['balance_msat'] / 1000:,.3f} sats")
    return EXIT_OK


def _wallet_from_running(data: Path, name: str) -> dict | None:
    """Ask the sandbox serving DIR (its state lives in that process); None when none serves."""
    from urllib.parse import quote

    base = _running_base(data)
    if base is None:
        return None
    response = _ask("GET", f"{base}/sandbox/wallets/{quote(name, safe='')}")
    if response is None:
        return None
    if response.status_code == 400:
        return {"error": json.loads(response.content).get("error", "bad name")}
    return _answer(response)


def _answer(response: HttpAnswer) -> dict:
    """The running sandbox's JSON answer; a refusal raised with its reason, as at rest."""
    if response.status_code >= 400:
        from terminal.sandbox.core import SandboxError

        try:
            said = json.loads(response.content).get("error")
        except (ValueError, AttributeError):
            said = None
        raise SandboxError(said if isinstance(said, str) and said
                           else f"the sandbox answered HTTP {response.status_code}")
    return json.loads(response.content)


def _ask(method: str, url: str, body: dict | None = None) -> HttpAnswer | None:
    """One request to the sandbox serving DIR; None when none answers there."""
    from terminal.core.ports.backend import BackendError

    try:
        return asyncio.run(one_request(method, url, service="the sandbox", timeout_s=5.0,
                                       json_body=body))
    except BackendError:
        return None


def _running_base(data: Path) -> str | None:
    config = data / "terminal.toml"
    try:
        http_url = tomllib.loads(config.read_text())["backend"]["flash"]["http_url"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return http_url.rsplit("/graphql", 1)[0]


def _register_with_running(data: Path, uid: bytes, balance: int, options: dict) -> dict | None:
    """Register through a sandbox already serving DIR (its state lives in that process)."""
    base = _running_base(data)
    if base is None:
        return None
    response = _ask("POST", f"{base}/sandbox/cards",
                    {"uid": uid.hex(), "balance_sats": balance, **options})
    if response is None:
        return None
    return _answer(response)


def _register_at_rest(args: argparse.Namespace, uid: bytes, options: dict) -> dict:
    """No sandbox is serving DIR: register in its stored state directly. The card's URL is the
    issuer address the last `serve` wrote into DIR/terminal.toml (where it will serve again)."""
    from terminal.sandbox.server import Sandbox

    try:
        issuers = tomllib.loads((args.data / "terminal.toml").read_text())["issuers"]
        base = issuers[0]["lnurlw_base"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, LookupError, TypeError):
        base = None
    if not isinstance(base, str) or not base.startswith("lnurlw://"):
        parser: argparse.ArgumentParser = args.parser
        parser.error(f"no sandbox has been served from {args.data}: run `flash-terminal "
                     f"sandbox serve --data {args.data}` first (a card needs the address of "
                     "its issuer)")
    issued = Sandbox(args.data).register_card(uid, args.balance, **options)
    return {**issued, "lnurlw_base": base}


def _fill_history(args: argparse.Namespace) -> int:
    import datetime as dt
    import sys

    from terminal.adapters.books.errors import BooksDamaged, StorageError, StorageLockedError
    from terminal.adapters.books.fill import HistoryWriter
    from terminal.adapters.books.layout import journal_path
    from terminal.app.cli.args import load_config_or_exit
    from terminal.app.cli.exits import EXIT_BUSY, EXIT_STORAGE
    from terminal.app.root import ensure_data_dir, open_ledger, terminal_id

    if not 0 <= args.sales <= FILL_MAX_SALES:
        args.parser.error(f"--sales must be between 0 and {FILL_MAX_SALES:,}")
    if not 1 <= args.days <= 36_500:
        args.parser.error("--days must be between 1 and 36500")
    if not 1 <= args.cards <= 100_000:
        args.parser.error("--cards must be between 1 and 100000")
    config = load_config_or_exit(args)
    ensure_data_dir(config)
    writer = HistoryWriter(terminal_id=terminal_id(config), network=config.network,
                           cards=args.cards, seed=args.seed)
    try:
        with open_ledger(config) as ledger:
            report = writer.fill(ledger, args.sales, args.days, dt.date.today())
    except BooksDamaged:
        raise  # exit 6, with its paragraph (terminal.app.cli)
    except StorageError as exc:
        print(f"flash-terminal sandbox fill-history: {exc}", file=sys.stderr)
        return EXIT_BUSY if isinstance(exc, StorageLockedError) else EXIT_STORAGE
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        states = ", ".join(f"{n:,} {state}" for state, n in sorted(report.states.items()))
        print(f"wrote {report.sales:,} settled sale(s) from {report.first_day} to "
              f"{report.last_day} into {journal_path(config.data_dir).parent}: {states}")
    return EXIT_OK
