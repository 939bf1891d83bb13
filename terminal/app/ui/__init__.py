"""The touchscreen app: view models in plain Python (`viewmodels`), Kivy screens (`screens`).

Only `terminal.app.ui.app` and `terminal.app.ui.screens` import Kivy; everything the screens show is
computed by the view models, which the tests drive without a window.
"""
