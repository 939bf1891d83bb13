"""Cashiers and roles: sign-in with a short PIN (through the till, no Kivy), the lock-out that a
restart does not reset (the books on disk), who rang up each sale, the manager's rights at the
Admin pad, the roster kept in Admin, and enrollment storing only hashes."""

from __future__ import annotations

import asyncio
import io
import json
import math
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.adapters.books.ledger import Ledger
from terminal.app import enroll
from terminal.app.config import ConfigError, load_config, parse_config
from terminal.app.demo import DemoEnvironment
from terminal.app.demo_script import ScriptError, parse_script, run_script
from terminal.app.ui.viewmodels import Screen
from terminal.app.ui.viewmodels.admin import AdminLock
from terminal.core.cashiers import (
    Attempt,
    Cashier,
    GuardState,
    PinGuard,
    Role,
    check_cashier_id,
)
from terminal.core.pins import hash_pin, verify_pin
from terminal.services.till import Staff, StaffError

FAST = 1_000  # PBKDF2 iterations for test hashes: the PINs here guard nothing


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cashier(cid: str, pin: str, role: Role = Role.CASHIER) -> Cashier:
    return Cashier(cid, cid.title(), role, hash_pin(pin, iterations=FAST))


ANA = cashier("ana", "1111")
MAX = cashier("max", "2222", Role.MANAGER)


# --------------------------------------------------------------------------- the guard


def test_an_attempt_is_counted_before_the_pin_is_checked() -> None:
    kept: list[dict] = []
    guard = PinGuard(save=lambda s: kept.append(s.to_doc()), clock=Clock())

    def power_cut() -> bool:
        raise KeyboardInterrupt  # the plug pulled while PBKDF2 runs

    with pytest.raises(KeyboardInterrupt):
        guard.check(power_cut)
    assert kept[-1]["failures"] == 1  # on disk before the answer could be known
    assert guard.check(lambda: True) is Attempt.OK
    assert kept[-1]["failures"] == 0


def test_lock_out_doubles_and_is_capped() -> None:
    clock = Clock()
    guard = PinGuard(max_attempts=3, lockout_s=30, max_lockout_s=100, clock=clock)
    for round_, expected in enumerate((30, 60, 100, 100)):
        results = [guard.check(lambda: False) for _ in range(3)]
        assert results == [Attempt.WRONG, Attempt.WRONG, Attempt.LOCKED], round_
        assert guard.locked_for_s == expected
        assert guard.check(lambda: True) is Attempt.LOCKED  # even the right PIN, unchecked
        clock.now += expected


@given(st.one_of(st.none(), st.dictionaries(st.text(max_size=12), st.one_of(
    st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none()), max_size=4),
    st.lists(st.integers(), max_size=3), st.text(max_size=10)))
@settings(max_examples=200)
def test_a_kept_guard_state_never_hands_out_fresh_guesses_when_damaged(doc: Any) -> None:
    state = GuardState.from_doc(doc)
    assert state.failures >= 0 and state.lockouts >= 0
    if doc is not None and state == GuardState():
        # Only a readable, all-clear record may read as all clear.
        assert isinstance(doc, dict) and doc.get("failures") in (0, False) \
            and doc.get("lockouts") in (0, False)
    guard = PinGuard(state, clock=Clock())
    assert math.isfinite(guard.state.locked_until)  # capped at the longest lock-out


def test_a_damaged_record_locks_for_the_longest_lock_out() -> None:
    clock = Clock()
    guard = PinGuard(GuardState.from_doc({"failures": "x"}), clock=clock)
    assert guard.locked and guard.locked_for_s == 3600


def test_cashier_ids() -> None:
    assert check_cashier_id(" Ana ") == "ana"
    for bad in ("", "none", "-ana", "a" * 33, "an a", "ana!"):
        with pytest.raises(ValueError):
            check_cashier_id(bad)


# --------------------------------------------------------------------------- the staff


def test_sign_in_and_the_lock_out_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as ledger:
        staff = Staff([ANA, MAX], store=ledger, clock=clock)
        assert staff.required and staff.current is None
        assert staff.sign_in("ana", "9999") is Attempt.WRONG
        assert staff.sign_in("nobody", "1111") is Attempt.WRONG  # unknown ids count too
        assert staff.guard.attempts_left == 3
    with Ledger(path) as ledger:  # a restart: the two guesses are still counted
        staff = Staff([ANA, MAX], store=ledger, clock=clock)
        assert staff.guard.attempts_left == 3
        for _ in range(2):
            assert staff.sign_in("ana", "0000") is Attempt.WRONG
        assert staff.sign_in("ana", "0000") is Attempt.LOCKED
    with Ledger(path) as ledger:  # pulling the plug does not unlock the pad
        staff = Staff([ANA, MAX], store=ledger, clock=clock)
        assert staff.guard.locked and staff.guard.locked_for_s == 60
        assert staff.sign_in("ana", "1111") is Attempt.LOCKED and staff.current is None
        clock.now += 60
        assert staff.sign_in("ana", "1111") is Attempt.OK
        assert staff.cashier_id == "ana" and not staff.required and not staff.is_manager
    with Ledger(path) as ledger:
        assert Staff([ANA], store=ledger, clock=clock).guard.attempts_left == 5


def test_manager_rights_take_the_admin_pin_or_a_managers_pin_never_a_cashiers() -> None:
    admin = hash_pin("4321", iterations=FAST)
    staff = Staff([ANA, MAX], admin_pin_hash=admin, clock=Clock())
    assert staff.manager_pin("1111") is Attempt.WRONG  # Ana is no manager
    assert staff.manager_pin("2222") is Attempt.OK
    assert staff.manager_pin("4321") is Attempt.OK
    assert Staff([ANA], clock=Clock()).manager_pin("1111") is Attempt.NOT_CONFIGURED
    staff.sign_in("max", "2222")
    assert staff.is_manager


def test_no_cashiers_means_nobody_signs_in() -> None:
    staff = Staff()
    assert not staff.enabled and not staff.required and staff.cashier_id is None


def test_the_roster_kept_in_admin(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    with Ledger(path) as ledger:
        staff = Staff([ANA], store=ledger, clock=Clock(), pin_iterations=FAST)
        added = staff.add("Bo", "Bo\x1b[31m Smith", "manager", "5555")
        assert added.id == "bo" and added.name == "Bo[31m Smith" and added.is_manager
        with pytest.raises(StaffError, match="already"):
            staff.add("ana", "Another Ana", "cashier", "1234")
        with pytest.raises(StaffError, match="4 to 8 digits"):
            staff.add("cy", "Cy", "cashier", "12")
        with pytest.raises(StaffError, match="enroll"):
            staff.remove("ana")  # enrolled: re-enrollment is the authority
        staff.add("cy", "Cy", "cashier", "7777")
        staff.set_pin("cy", "8888")
        staff.remove("bo")
    with Ledger(path) as ledger:
        kept = ledger.get_meta("cashiers")
        # Hashes only (a hash may contain "7777" by chance: compare values, not text).
        assert not {"7777", "8888"} & {v for doc in kept for v in doc.values()}
        assert all(doc["pin_hash"].startswith("pbkdf2_sha256$") for doc in kept)
        staff = Staff([ANA], store=ledger, clock=Clock())
        assert [c.id for c in staff.roster] == ["ana", "cy"]
        assert staff.sign_in("cy", "7777") is Attempt.WRONG
        assert staff.sign_in("cy", "8888") is Attempt.OK
        # A later enrollment of the same id wins over the one added in Admin.
        enrolled_cy = cashier("cy", "3333", Role.MANAGER)
        staff = Staff([ANA, enrolled_cy], store=ledger, clock=Clock())
        assert staff.roster.get("cy").enrolled and staff.roster.get("cy").is_manager


def test_admin_pad_with_a_signed_in_manager_and_with_a_cashier() -> None:
    staff = Staff([ANA, MAX], admin_pin_hash=hash_pin("4321", iterations=FAST), clock=Clock())
    lock = AdminLock(None, staff=staff)
    staff.sign_in("ana", "1111")
    assert not lock.open_for_manager()  # a cashier still needs the pad
    lock.digits = "1111"
    assert lock.submit() is Attempt.WRONG and not lock.unlocked
    assert staff.manager_id == "ana"  # nobody vouched yet: whoever is at the till
    lock.digits = "2222"  # Max, called over, unlocks it with his own PIN
    assert lock.submit() is Attempt.OK and lock.unlocked
    assert staff.manager_id == "max"  # what he does at the pad (a refund) is his
    lock.lock()
    assert staff.manager_id == "ana"
    lock.digits = "4321"  # the admin PIN names nobody: the act stays with the till's cashier
    assert lock.submit() is Attempt.OK and staff.manager_id == "ana"
    lock.lock()
    staff.sign_out()
    staff.sign_in("max", "2222")
    assert lock.open_for_manager() and lock.unlocked and staff.manager_id == "max"


# --------------------------------------------------------------------------- configuration


def _raw(tmp_path: Path) -> dict:
    return {"terminal": {"data_dir": str(tmp_path)},
            "backend": {"flash": {"http_url": "https://x.example/graphql", "username": "a"}}}


def _strings(value: object):
    """Every string inside a parsed TOML document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_enrollment_keeps_only_the_hashes_in_the_secrets_file(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["cashiers"] = [{"id": "ana", "name": "Ana", "pin": "1111"},
                       {"id": "max", "name": "Max", "role": "manager", "pin": "2222"}]
    prepared = enroll.prepare(raw)
    files = enroll.write_config(tmp_path / "etc", prepared)
    public, secret = (tmp_path / "etc" / "terminal.toml"), (tmp_path / "etc" / "secrets.toml")
    assert secret in files and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "cashiers" not in tomllib.loads(public.read_text())
    # No PIN survives as a value anywhere (a hash may contain "1111" by chance: compare values).
    values = list(_strings(tomllib.loads(public.read_text())))
    values += list(_strings(tomllib.loads(secret.read_text())))
    assert values and not {"1111", "2222"} & set(values)
    assert not any(v.endswith(("1111", "2222")) and "$" not in v for v in values)
    config = load_config(public)
    assert [(c.id, c.role) for c in config.cashiers] == [("ana", "cashier"), ("max", "manager")]
    assert verify_pin("2222", config.cashiers[1].pin_hash)
    with pytest.raises(enroll.EnrollError, match=r"cashiers\[0\]\.pin"):
        enroll.prepare({**raw, "cashiers": [{"id": "ana", "name": "Ana", "pin": "12ab"}]})


@pytest.mark.parametrize("cashiers, phrase", [
    ([{"id": "Ana!", "name": "A", "pin_hash": "not-a-hash-secretish"}], "cashiers[0].id"),
    ([{"id": "none", "name": "A", "pin_hash": hash_pin("1111", iterations=FAST)}],
     "cashiers[0].id"),
    ([{"id": "ana", "name": "A", "pin_hash": "plain-secretish"}], "cashiers[0].pin_hash"),
    ([{"id": "ana", "name": "A", "role": "owner",
       "pin_hash": hash_pin("1111", iterations=FAST)}], "cashiers[0].role"),
    ([{"id": "ana", "name": "A", "pin_hash": hash_pin("1111", iterations=FAST)}] * 2,
     "cashiers[1].id"),
])
def test_bad_cashier_tables_are_refused_naming_the_key(tmp_path, cashiers, phrase) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**_raw(tmp_path), "cashiers": cashiers})
    assert phrase in str(info.value)
    for table in cashiers:  # a hash is a secret: never echoed
        assert table["pin_hash"] not in str(info.value)


# --------------------------------------------------------------------------- journeys


def journey(tmp_path: Path, script: str, *, require: bool = False
            ) -> tuple[list[dict[str, Any]], DemoEnvironment]:
    out = io.StringIO()
    seen: list[DemoEnvironment] = []

    def setup(env: DemoEnvironment) -> None:
        env.till.staff.require_sign_in = require
        seen.append(env)

    code = asyncio.run(run_script(parse_script(script), out, work_dir=tmp_path, on_env=setup))
    assert code == 0
    return [json.loads(line) for line in out.getvalue().splitlines()], seen[0]


def test_with_sign_in_required_no_sale_until_a_cashier_signs_in(tmp_path: Path) -> None:
    shots, env = journey(tmp_path, """
        amount 5
        charge
        tap A
        sign-in ana 9999
        sign-in ana 1111
        amount 5
        charge
        tip none
        tap A
        sign-out
        sign-in max 2222
        amount 2
        charge
        tip 10
        pay-qr
    """, require=True)
    first = shots[1]
    assert first["screen"] == "signin" and first["sale"] is None
    assert first["message"] == "Sign in first: a sale names its cashier"
    assert shots[2]["sale"] is None  # a tap charges nothing either
    assert shots[3]["screen"] == "signin" and shots[3]["message"] == "Wrong PIN: 4 attempts left"
    assert shots[4]["message"] == "Signed in: Ana" and shots[4]["screen"] == "sale"
    paid = shots[8]
    assert paid["sale"]["state"] == "paid"
    assert env.terminal.ledger.get_sale(paid["sale"]["id"]).cashier == "ana"
    assert shots[9]["screen"] == "signin"  # signed out: the next cashier signs in
    by_max = env.terminal.ledger.get_sale(shots[-1]["sale"]["id"])
    assert by_max.state == "paid" and by_max.cashier == "max" and by_max.tip_minor == 20


def test_sign_in_is_refused_while_a_sale_is_open_and_optional_sign_in_sells_as_before(
        tmp_path: Path) -> None:
    shots, env = journey(tmp_path, """
        amount 3
        charge
        tip none
        sign-in ana 1111
        cancel
        sign-in ana 1111
        amount 4
        charge
        tip none
        tap A
    """)
    assert shots[3]["message"] == "Finish or cancel the sale on screen first"
    assert env.till.staff.cashier_id == "ana"
    cancelled = env.terminal.ledger.get_sale(shots[4]["sale"]["id"])
    assert cancelled.state == "cancelled" and cancelled.cashier is None  # rung up by nobody
    assert env.terminal.ledger.get_sale(shots[-1]["sale"]["id"]).cashier == "ana"


def test_script_sign_in_needs_an_id_and_a_pin() -> None:
    for bad in ("sign-in ana", "sign-in ana 12", "sign-in ana 12345678 9", "sign-out now"):
        with pytest.raises(ScriptError, match="line 1"):
            parse_script(bad)


def test_a_signed_in_manager_opens_admin_without_the_pin(tmp_path: Path) -> None:
    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        try:
            c = env.controller()
            c.go(Screen.ADMIN)
            assert c.screen is Screen.ADMIN and not c.admin.unlocked
            c.go(Screen.SALE)
            c.go(Screen.SIGN_IN)
            assert c.screen is Screen.SIGN_IN
            c.signin.choose("max")
            for d in "2222":
                c.signin.press(d)
            c.sign_in_pressed()
            assert c.screen is Screen.SALE and c.manager
            c.go(Screen.ADMIN)
            assert c.admin.unlocked
        finally:
            await env.stop()

    asyncio.run(scenario())


def test_admin_adds_a_cashier_who_then_signs_in_and_the_roster_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        env = await DemoEnvironment.start(tmp_path, background=False)
        try:
            c = env.controller()
            vm = c.cashiers
            assert [r.text for r in vm.rows()] == ["Ana [ana] (cashier, enrolled)",
                                                   "Max [max] (manager, enrolled)"]
            vm.select("ana")
            assert not vm.selected_editable and "enrolling again" in vm.message
            assert not vm.add("Zoe", "Zoe", "12")  # too short a PIN: said, nothing added
            assert "4 to 8 digits" in vm.message and not vm.ok
            assert vm.add("Zoe", "Zoe", "4455", manager=False) and vm.message == "Added Zoe"
            assert [b.text for b in c.signin.cashiers()] == ["Ana", "Max (manager)", "Zoe"]
            vm.select("zoe")
            assert vm.selected_editable and vm.set_pin("6677")
            assert env.till.sign_in("zoe", "4455") is Attempt.WRONG
            assert env.till.sign_in("zoe", "6677") is Attempt.OK
            assert vm.remove() and env.till.cashier is None  # removed: signed out too
            assert "zoe" not in env.till.staff.roster
            assert not vm.remove() and vm.message == "Tap a cashier first"
            vm.add("bo", "Bo", "1212")
        finally:
            await env.stop()
        # The books keep the Admin roster (hashes only) for the next start.
        with Ledger(env.config.data_dir / "ledger.jsonl") as ledger:
            kept = ledger.get_meta("cashiers")
        assert [k["id"] for k in kept] == ["bo"] and "1212" not in kept[0].values()
        assert kept[0]["pin_hash"].startswith("pbkdf2_sha256$")

    asyncio.run(scenario())
