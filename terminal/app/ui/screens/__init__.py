"""Kivy screens: layout in the `.kv` beside each module, behaviour only as calls on the
controller and view models (no business logic here)."""
