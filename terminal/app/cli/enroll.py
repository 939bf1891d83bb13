"""`flash-terminal enroll FILE|CODE`: configure this terminal from an enrollment file or code,
then check each item live and print what works and what does not.

`flash-terminal enroll --make-code FILE` turns an enrollment file into a code for a QR.
The enrollment secret that signs and verifies codes comes from `--secret` or, better (a command
line is visible to other users of the machine), `FLASH_TERMINAL_ENROLL_SECRET`.

Exit codes: 0 no check failed, 1 some check failed (the table says which, and the fix), 2 usage.
With `--json`: `{"ok", "terminal_id", "checks": [{"name", "status", "detail", "fix"}], "files"}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from terminal.app import enroll as core
from terminal.app.config import ConfigError, parse_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
_MARK = {core.Status.OK: "ok", core.Status.WARN: "WARN", core.Status.FAIL: "FAIL"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "enroll",
        help="configure this terminal from an enrollment file or code, and check it live",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="?", metavar="FILE|CODE",
                        help="an enrollment TOML file, or a code starting with FT1:")
    parser.add_argument("--config-dir", type=Path, default=core.DEFAULT_CONFIG_DIR,
                        help=f"where terminal.toml and secrets.toml go "
                             f"(default {core.DEFAULT_CONFIG_DIR})")
    parser.add_argument("--secret", default=None,
                        help=f"enrollment secret for signed codes (prefer ${core.ENV_SECRET})")
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="accept (or make) a code without a signature")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the enrollment live but write nothing")
    parser.add_argument("--make-code", type=Path, metavar="FILE",
                        help="print the enrollment code of FILE (for a QR) and exit")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_enroll, parser=parser)


def _enroll(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    secret = core.secret_from(args.secret)
    if args.make_code is not None:
        if args.source:
            parser.error("give either FILE|CODE or --make-code FILE, not both")
        return _make_code(args.make_code, secret, args.allow_unsigned, parser)
    if not args.source:
        parser.error("give an enrollment FILE or CODE (or --make-code FILE)")
    try:
        raw, source_check = core.read_enrollment(
            args.source, secret=secret, allow_unsigned=args.allow_unsigned)
    except core.EnrollUsageError as exc:
        parser.error(f"{exc.message} ({exc.fix})" if exc.fix else exc.message)
    except core.EnrollError as exc:
        result = core.EnrollResult(None, [
            core.Check("enrollment", core.Status.FAIL, exc.message,
                       exc.fix or "check the enrollment file (see config.example.toml)")])
    else:
        result = core.enroll(raw, args.config_dir, dry_run=args.dry_run,
                             source_check=source_check)
    _print(result, as_json=args.json)
    return EXIT_OK if result.ok else EXIT_FAILED


def _make_code(path: Path, secret: bytes | None, allow_unsigned: bool,
               parser: argparse.ArgumentParser) -> int:
    if secret is None and not allow_unsigned:
        parser.error(f"--make-code needs the enrollment secret (--secret or ${core.ENV_SECRET}), "
                     "or --allow-unsigned for an unsigned code")
    try:
        raw, _ = core.read_enrollment(str(path), secret=secret, allow_unsigned=allow_unsigned)
        # A code that would not even parse as a configuration helps nobody in the field.
        parse_config(core.prepare(raw))
        code = core.make_code(raw, secret=secret)
    except core.EnrollUsageError as exc:
        parser.error(exc.message)
    except (core.EnrollError, ConfigError) as exc:
        print(f"enroll: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if len(code) > core.QR_MAX_BYTES:
        print(f"enroll: the code is {len(code)} characters, more than a QR code holds "
              f"({core.QR_MAX_BYTES}); shorten the enrollment (key tables belong in a file)",
              file=sys.stderr)
    print(code)
    return EXIT_OK


def _print(result: core.EnrollResult, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json()))
        return
    width = max((len(c.name) for c in result.checks), default=5)
    print(f"{'CHECK':<{width}}  STATUS  DETAIL")
    for check in result.checks:
        print(f"{check.name:<{width}}  {_MARK[check.status]:<6}  {check.detail}")
        if check.fix and check.status is not core.Status.OK:
            print(f"{'':<{width}}  {'':<6}  fix: {check.fix}")
    verdict = "enrolled" if result.ok else "NOT ready: fix the FAIL rows and run enroll again"
    who = f"terminal {result.terminal_id}: " if result.terminal_id else ""
    print(f"\n{who}{verdict}")
