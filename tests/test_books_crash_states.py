"""Every crash state a POSIX file system allows, replayed: the books open, and no acknowledged
record is lost (tests/crashstates.py explains the model; ALICE / SQLite crash-study method).

A fixed workload runs against the books through a recording file layer: sales through their
states (so settled ones move to the archive in batches), a transaction with a payout and a card,
card counters, settings, events, and a journal small enough to be compacted several times. Then,
for every point in the log of file-system changes, every crash state allowed there is rebuilt in
a fresh directory and the books are opened: read-only first, then for writing (which cuts an
unacknowledged tail and finishes interrupted moves). Each must open (a power cut is not damage)
and hold exactly the acknowledged writes, plus possibly the one in flight.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from terminal.adapters.books import archive as archive_module
from terminal.adapters.books import ledger as ledger_module
from terminal.adapters.books.ledger import Ledger
from terminal.core.records import CardState, PayoutStatus, QueuedPayout, SaleRecord
from tests.crashstates import CallMark, Op, RecordingFileOps, crash_states, materialise

OPTIONS = {"compact_min_bytes": 3000, "compact_ratio": 1.5, "move_batch": 2, "max_events": 3}
META_KEYS = ("rate:USD", "note")
Model = dict[str, dict[str, Any]]


def sale(n: int, state: str, **fields: Any) -> SaleRecord:
    return SaleRecord(id=f"{n:032x}", created_at=1_767_225_600.0 + n, amount_minor=500 + n,
                      currency="USD", state=state, payment_hash=f"{n:064x}",
                      bolt11="lnbc5u1p" + "x" * 300, **fields)


def payout(n: int, status: str = PayoutStatus.QUEUED) -> QueuedPayout:
    return QueuedPayout(f"p{n}", f"{n:032x}", None, 500, "card-1", "iss", n,
                        tap_url="lnurlw://issuer.example/ln?p=00&c=00", status=status,
                        created_at=float(n))


def workload() -> list[tuple[str, Callable[[Ledger], None], Callable[[Model], None]]]:
    """(name, what the books are asked, what the model expects once it returned)."""
    steps: list[tuple[str, Callable[[Ledger], None], Callable[[Model], None]]] = []

    def sale_step(n: int, state: str, **fields: Any) -> None:
        def model(m: Model) -> None:
            m["sales"][f"{n:032x}"] = state

        steps.append((f"sale {n} {state}", lambda led: led.save_sale(sale(n, state, **fields)),
                      model))

    for n in range(1, 4):
        sale_step(n, "created")
        sale_step(n, "invoiced")
    steps.append(("counter", lambda led: led.advance_counter("card-1", "iss", 5),
                  lambda m: m["cards"].__setitem__("card-1", 5)))
    sale_step(1, "paid")
    sale_step(2, "cancelled")

    def offline(led: Ledger) -> None:
        with led.transaction():
            led.add_payout(payout(3))
            led.save_card(CardState("card-1", issuer="iss", last_counter=6,
                                    queued_msat=500_000))
            led.save_sale(sale(3, "queued"))

    def offline_model(m: Model) -> None:
        m["payouts"]["p3"] = PayoutStatus.QUEUED
        m["cards"]["card-1"] = 6
        m["sales"][f"{3:032x}"] = "queued"

    steps.append(("offline tap", offline, offline_model))
    steps.append(("meta", lambda led: led.set_meta("rate:USD", {"v": "0.001"}),
                  lambda m: m["meta"].__setitem__("rate:USD", {"v": "0.001"})))
    for n in range(3):
        steps.append((f"event {n}", lambda led, n=n: led.log_event("offline", f"e{n}"),
                      lambda m: None))

    def synced(led: Ledger) -> None:
        with led.transaction():
            done = led.get_payout("p3")
            done.status = PayoutStatus.PAID
            led.save_payout(done)
            led.save_sale(sale(3, "paid"))
            led.save_card(CardState("card-1", issuer="iss", last_counter=6))

    def synced_model(m: Model) -> None:
        m["payouts"]["p3"] = PayoutStatus.PAID
        m["sales"][f"{3:032x}"] = "paid"

    steps.append(("payout paid", synced, synced_model))
    sale_step(2, "paid")  # paid late: the archived cancelled sale is updated
    for n in range(4, 8):
        sale_step(n, "invoiced")
        sale_step(n, "paid" if n % 2 else "expired")
    steps.append(("note", lambda led: led.set_meta("note", "x" * 200),
                  lambda m: m["meta"].__setitem__("note", "x" * 200)))
    return steps


def snapshot(led: Ledger) -> Model:
    return {
        "sales": {r.id: r.state for r in led.sales()},
        "payouts": {p.id: p.status for p in led.payouts()},
        "cards": {c.card_id: c.last_counter for c in led.cards()},
        "meta": {k: led.get_meta(k) for k in META_KEYS if led.get_meta(k) is not None},
    }


def copy(model: Model) -> Model:
    return {k: dict(v) for k, v in model.items()}


class RecordingArchive(archive_module.SaleArchive):
    """The archive, logging each committed write as one atomic step (SQLite's guarantee)."""

    files: RecordingFileOps

    def _open_for_writing(self) -> None:
        super()._open_for_writing()
        self._log_commit()

    def _write(self, work: Any) -> Any:
        result = super()._write(work)
        self._log_commit()
        return result

    def _log_commit(self) -> None:
        assert self._db is not None
        self.files.archive_commit(self.path, self._db.serialize())


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    files = RecordingFileOps()
    RecordingArchive.files = files
    monkeypatch.setattr(ledger_module, "SaleArchive", RecordingArchive)
    path = tmp_path / "ledger.jsonl"
    marks: list[CallMark] = []
    models: list[Model] = []
    model: Model = {"sales": {}, "payouts": {}, "cards": {}, "meta": {}}
    marks.append(CallMark("open", len(files.log)))
    led = Ledger(path, files=files, **OPTIONS)
    marks[-1].end = len(files.log)
    models.append(copy(model))
    for name, ask, expect in workload():
        marks.append(CallMark(name, len(files.log)))
        ask(led)
        marks[-1].end = len(files.log)
        expect(model)
        models.append(copy(model))
    marks.append(CallMark("close", len(files.log)))
    led.close()
    marks[-1].end = len(files.log)
    models.append(copy(model))
    monkeypatch.undo()
    return files.log, marks, models, path


def allowed(marks: list[CallMark], models: list[Model], k: int) -> list[Model]:
    """Acknowledged: every call that returned by log position k; plus the one in flight."""
    done = [i for i, m in enumerate(marks) if m.end is not None and m.end <= k]
    if not done:
        return [{"sales": {}, "payouts": {}, "cards": {}, "meta": {}}]
    last = done[-1]
    out = [models[last]]
    if last + 1 < len(models):
        out.append(models[last + 1])
    return out


def replay(log: list, marks: list[CallMark], models: list[Model], path: Path,
           limit: int, reopen: bool = True) -> tuple[int, list[str]]:
    """Open the books in every crash state of `log`; (states tried, what went wrong)."""
    states, problems = 0, []
    for k in range(len(log) + 1):
        expected = allowed(marks, models, k)
        for state in crash_states(log, k, limit=limit):
            states += 1
            where = f"{state.label}, during {_call_at(marks, k)}"
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp)
                materialise(state, directory, path.with_name("ledger.archive.sqlite"))
                journal = directory / path.name
                try:
                    with Ledger(journal, read_only=True, **OPTIONS) as reader:
                        seen = snapshot(reader)
                    after = final = seen
                    if reopen:  # the writer cuts a torn tail, finishes moves, compacts
                        with Ledger(journal, fsync=False, **OPTIONS) as writer:
                            after = snapshot(writer)
                        with Ledger(journal, read_only=True, **OPTIONS) as again:
                            final = snapshot(again)
                except ledger_module.BooksDamaged as exc:
                    problems.append(f"reported as damage ({where}): {exc}")
                    continue
                if seen not in expected:
                    problems.append(f"not the acknowledged writes ({where}): {seen}")
                elif not after == seen == final:
                    problems.append(f"changed by reopening ({where})")
    return states, problems


def test_every_posix_crash_state_opens_with_every_acknowledged_write(recorded):
    log, marks, models, path = recorded
    kinds = {op.kind for op in log}
    assert {"create", "write", "fsync", "rename", "fsync_dir", "archive"} <= kinds
    assert sum(1 for op in log if op.kind == "rename") >= 2  # several compactions
    assert sum(1 for op in log if op.kind == "archive") >= 4  # several moves
    states, problems = replay(log, marks, models, path, limit=24)
    assert problems == []
    assert states > 800  # the space was really explored (1,050 states at 181 crash points)


def _call_at(marks: list[CallMark], k: int) -> str:
    for mark in marks:
        if mark.start <= k <= (mark.end or k):
            return mark.name
    return "?"


def test_the_harness_catches_a_protocol_without_fsyncs(recorded):
    """A check of the checker: the same writes without their fsyncs lose acknowledged writes
    in some crash states, and the replay says so (so a pass above means something)."""
    log, marks, models, path = recorded
    # Same positions (the calls' marks stay valid): each fsync becomes a no-op.
    unsynced = [Op("noop") if op.kind == "fsync" else op for op in log]
    _states, problems = replay(unsynced, marks, models, path, limit=4, reopen=False)
    assert any(p.startswith("not the acknowledged writes") for p in problems)
