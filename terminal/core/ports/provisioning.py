"""What the card tools need from the provisioning journal
(`terminal.adapters.provisioning_journal.ProvisioningJournal`), which records the keys and each
step before the card changes."""

from __future__ import annotations

from typing import Any, Protocol


class Journal(Protocol):
    def pending(self, op: str | None = None) -> list[Any]: ...
