"""`flash-terminal run`: the touchscreen app on this terminal's reader, screen and printer."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from terminal.config import ConfigError, load_config

EXIT_OK, EXIT_USAGE = 0, 2
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the touchscreen app (reader, screen, printer)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    parser.add_argument("--windowed", action="store_true",
                        help="an 800x480 window instead of full screen (development)")
    parser.set_defaults(handler=_run, parser=parser)


def _run(args: argparse.Namespace) -> int:
    from terminal.cli.demo import has_display

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        args.parser.error(str(exc))
    if not has_display():
        print("flash-terminal run needs a display ($DISPLAY or $WAYLAND_DISPLAY); "
              "for a console check use `flash-terminal charge` or `flash-terminal doctor`.",
              file=sys.stderr)
        return EXIT_USAGE
    asyncio.run(_main(config, fullscreen=not args.windowed))
    return EXIT_OK


async def _main(config, *, fullscreen: bool) -> None:
    from hw.nfc import (
        HoldStillEvent,
        NotPaymentCardEvent,
        Reader,
        ReaderState,
        ReaderStatusEvent,
        TapEvent,
    )
    from terminal.app import build_terminal
    from terminal.receipts import build_printer
    from terminal.ui.app import WINDOW_SIZE, FlashTerminalApp, run_app
    from terminal.ui.viewmodels import TerminalController, UiSettings

    terminal = build_terminal(config)
    controller = TerminalController(
        terminal.checkout,
        terminal.ledger,  # type: ignore[arg-type]
        admin_pin_hash=config.admin_pin_hash,
        settings=UiSettings(
            currencies=config.currencies or (config.display_currency,),
            merchant=config.name,
            terminal_id=terminal.checkout.terminal_id,
        ),
        printer=build_printer(config.printer),
    )
    loop = asyncio.get_running_loop()

    def on_event(event) -> None:  # the reader thread: hand everything to the loop
        if isinstance(event, TapEvent):
            controller.tap_threadsafe(loop, event.uri)
        elif isinstance(event, ReaderStatusEvent):
            ready = event.state is ReaderState.READY
            loop.call_soon_threadsafe(lambda: controller.status.update(
                reader="ready" if ready else "absent"))
        elif isinstance(event, NotPaymentCardEvent | HoldStillEvent):
            loop.call_soon_threadsafe(controller.say, event.message)

    reader = Reader(config.reader.path, on_event)
    try:
        await terminal.checkout.recover()  # settle sales left open by a restart
        reader.start()
        from kivy.core.window import Window

        if fullscreen:
            Window.fullscreen = "auto"
        else:
            Window.size = WINDOW_SIZE
        app = FlashTerminalApp(controller, config=config, data_dir=config.data_dir)
        await run_app(app)
    finally:
        reader.stop()
        await terminal.aclose()
