"""Online/offline is observed from real calls: unknown until the first one, then it follows."""

from __future__ import annotations

from terminal.core.connectivity import Connectivity, Link


def test_state_follows_observed_calls_and_probe_backs_off():
    link = Connectivity(probe_base_s=2.0, probe_max_s=60.0)
    assert link.state is Link.UNKNOWN and not link.online  # never assumed
    link.failure(1.0, "connect refused")
    assert link.state is Link.OFFLINE and link.since == 1.0 and link.last_error
    delays = []
    for n in range(2, 10):
        delays.append(link.next_probe_in_s())
        link.failure(float(n), "still down")
    assert delays == sorted(delays) and delays[-1] == 60.0  # grows, capped
    assert link.since == 1.0  # offline since the first failure
    link.success(20.0)
    assert link.online and link.since == 20.0 and link.last_error is None
    assert link.consecutive_failures == 0
