"""The Admin screen: the PIN pad (with lock-out) and, once unlocked, the settings overview."""

from __future__ import annotations

from pathlib import Path

from kivy.lang import Builder

from terminal.ui.screens.base import BaseScreen
from terminal.ui.viewmodels.admin import admin_sections
from terminal.ui.viewmodels.controller import Screen

Builder.load_file(str(Path(__file__).with_suffix(".kv")))


class AdminScreen(BaseScreen):
    config = None  # terminal.config.Config, for the settings overview
    hint = ""  # demo mode tells the visitor the PIN

    def attach(self, controller) -> None:
        controller.admin.subscribe(self.refresh)
        super().attach(controller)

    def key(self, key: str) -> None:
        self.controller.admin.press(key)

    def submit(self) -> None:
        self.controller.admin.submit()

    def history(self) -> None:
        self.controller.go(Screen.HISTORY)

    def leave(self) -> None:
        self.controller.go(Screen.SALE)

    def refresh(self, *_args) -> None:
        lock = self.controller.admin
        ids = self.ids
        unlocked = lock.unlocked
        ids.pad.opacity, ids.pad.disabled = (0, True) if unlocked else (1, False)
        ids.settings.opacity, ids.settings.disabled = (1, False) if unlocked else (0, True)
        ids.message.text = lock.message
        ids.message.color = (1, 0.45, 0.4, 1) if lock.locked or lock.last.value == "wrong" \
            else (1, 1, 1, 1)
        ids.digits.text = lock.masked
        ids.hint.text = self.hint
        ids.pad_keys.disabled = lock.locked
        if unlocked and self.config is not None:
            ids.sections.text = "\n".join(
                f"[b]{s.title}[/b]\n" + "\n".join(f"   {line}" for line in s.lines)
                for s in admin_sections(self.config)
            )
