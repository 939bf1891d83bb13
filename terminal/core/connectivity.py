"""Online/offline as observed from real calls, never assumed (core, no I/O).

Every backend call reports its outcome here; a failure makes the terminal offline until a later
success (a real call or the health probe). The probe backs off exponentially while offline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Link(enum.Enum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass
class Connectivity:
    state: Link = Link.UNKNOWN
    since: float = 0.0
    last_error: str | None = None
    consecutive_failures: int = 0
    probe_base_s: float = 2.0
    probe_max_s: float = 60.0

    def success(self, now: float) -> None:
        if self.state is not Link.ONLINE:
            self.state, self.since = Link.ONLINE, now
        self.consecutive_failures = 0
        self.last_error = None

    def failure(self, now: float, error: str) -> None:
        if self.state is not Link.OFFLINE:
            self.state, self.since = Link.OFFLINE, now
        self.consecutive_failures += 1
        self.last_error = error

    @property
    def online(self) -> bool:
        return self.state is Link.ONLINE

    def next_probe_in_s(self) -> float:
        """Delay before the next health probe: backs off while failures continue."""
        if self.state is not Link.OFFLINE:
            return self.probe_max_s
        return float(min(self.probe_max_s,
                         self.probe_base_s * 2 ** min(self.consecutive_failures, 8)))
