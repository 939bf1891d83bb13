"""`flash-terminal run`: the touchscreen app on this terminal's reader, screen and printer."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from terminal.app.cli.args import load_config_or_exit

EXIT_OK, EXIT_USAGE = 0, 2
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the touchscreen app (reader, screen, printer)")
    parser.add_argument("--config", help="terminal configuration (or FLASH_TERMINAL_CONFIG)")
    screen = parser.add_mutually_exclusive_group()
    screen.add_argument("--fullscreen", action="store_true", default=True,
                        help="full screen (the default; what the kiosk service passes)")
    screen.add_argument("--windowed", action="store_true",
                        help="an 800x480 window instead of full screen (development)")
    parser.set_defaults(handler=_run, parser=parser)


def _run(args: argparse.Namespace) -> int:
    from terminal.app.display import has_display

    config = load_config_or_exit(args)
    if not has_display():
        print("flash-terminal run needs a display ($DISPLAY or $WAYLAND_DISPLAY); "
              "for a console check use `flash-terminal charge` or `flash-terminal doctor`.",
              file=sys.stderr)
        return EXIT_USAGE
    # Kivy's X clipboard providers need xclip/xsel and log CRITICAL without them; SDL's works.
    os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")
    # Kivy's own log mode makes the root logger log everything (DEBUG too: a failure's traceback,
    # meant for the log only, reached stderr) and rewrites stderr; Python's keeps our levels.
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    asyncio.run(_main(config, fullscreen=not args.windowed))
    return EXIT_OK


async def _main(config, *, fullscreen: bool) -> None:
    from hw.nfc import Reader
    from terminal.adapters.system.service_notify import ServiceNotifier, watchdog_loop
    from terminal.app.root import build_kiosk, build_terminal, build_till
    from terminal.app.ui.app import WINDOW_SIZE, FlashTerminalApp, run_app
    from terminal.app.ui.viewmodels import TerminalController, UiSettings

    terminal = build_terminal(config)
    till = build_till(config, terminal)
    kiosk = build_kiosk(config, terminal, till)
    controller = TerminalController(
        till,
        admin_pin_hash=config.admin_pin_hash,
        settings=UiSettings(merchant=config.name, terminal_id=terminal.checkout.terminal_id),
        config=config,
    )
    loop = asyncio.get_running_loop()

    def on_event(event) -> None:  # the reader thread: everything goes to the loop, as is
        controller.reader_event_threadsafe(loop, event)

    # `[reader] card_file` (training without a reader): no reader thread, so no nfcpy errors
    # every few seconds; QR payments work, and `flash-terminal demo` is the way to tap cards.
    reader = None if config.reader.card_file else Reader(config.reader.path, on_event)
    if reader is None:
        log.info("reader: simulated card %s (no NFC reader thread)", config.reader.card_file)
        controller.status.update(reader="demo")
    notifier = ServiceNotifier()
    watchdog: asyncio.Task | None = None
    try:
        if reader is not None:
            reader.start()
        kiosk.start()
        watchdog = asyncio.create_task(watchdog_loop(notifier), name="watchdog")
        from kivy.clock import Clock
        from kivy.core.window import Window

        if fullscreen:
            Window.fullscreen = "auto"
        else:
            Window.size = WINDOW_SIZE
        app = FlashTerminalApp(controller, config=config, data_dir=config.data_dir)
        # READY=1 once the first frame is drawn: systemd's start timeout covers a dead display.
        Clock.schedule_once(lambda _dt: notifier.ready("taking payments"), 0)
        # systemctl stop / restart: close the app cleanly (the ledger is safe either way).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, app.stop)
        await run_app(app)
    finally:
        notifier.stopping()
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        await kiosk.stop()
        if reader is not None:
            reader.stop()
        await terminal.aclose()
