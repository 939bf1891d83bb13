"""What every screen shares: a reference to the controller and a `refresh()` hook."""

from __future__ import annotations

from kivy.properties import ObjectProperty
from kivy.uix.screenmanager import Screen


class BaseScreen(Screen):
    controller = ObjectProperty(None)

    def attach(self, controller) -> None:
        self.controller = controller
        self.refresh()

    def refresh(self, *_args) -> None:  # overridden: copy view-model state into widgets
        pass
