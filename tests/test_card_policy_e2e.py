"""The card policy end to end, through the command line, against the sandbox (real HTTP on
loopback, the simulated NTAG 424 DNA, the books on disk): blocks from `card block`, honoured online
and offline; per-card limits and velocity; unknown cards per issuer host; `card list`."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest

from terminal.adapters import simcards
from terminal.app.cli import main
from terminal.protocols.boltcard.provisioning import BoltcardKeys
from terminal.sandbox import SandboxThread

ROW_KEYS = {"card_id", "uid", "blocked", "reason", "last_counter", "last_seen", "sales",
            "total_msat", "limits"}


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def _json(*argv: str) -> tuple[int, object]:
    code, out, err = _cli(*argv, "--json")
    assert out, err
    return code, json.loads(out)


def _sim_card(sb: SandboxThread, path, balance_sats: int = 5_000) -> tuple[str, bytes]:
    uid = simcards.new_uid()
    issued = sb.register_card(uid, balance_sats)
    keys = BoltcardKeys(*(bytes.fromhex(issued[f"k{n}"]) for n in range(5)),
                        version=int(issued["version"]))
    simcards.create_programmed(path, f"http://127.0.0.1:{sb.port}/ln", keys, uid)
    return issued["card_id"], uid


def _config(sb: SandboxThread, extra: str = "") -> str:
    path = sb.write_terminal_config()
    if extra:
        with path.open("a") as fh:
            fh.write(extra)
    return str(path)


def _charge(config: str, card_file, sats: int = 150) -> tuple[int, dict]:
    code, result = _json("charge", str(sats), "--currency", "SAT", "--config", config,
                         "--card-file", str(card_file))
    return code, result  # type: ignore[return-value]


def test_a_blocked_card_is_refused_online_before_its_issuer_hears_of_it(tmp_path):
    with SandboxThread(tmp_path / "sb") as sb:
        config = _config(sb)
        card_file = tmp_path / "card.json"
        card_id, uid = _sim_card(sb, card_file)
        code, rows = _json("card", "block", "--card-file", str(card_file), "--reason",
                           "reported lost.", "--config", config)
        assert code == 0
        assert rows == [{"card_id": card_id, "uid": uid.hex(), "blocked": True,
                         "reason": "reported lost.", "last_counter": None, "last_seen": None,
                         "sales": 0, "total_msat": 0,
                         "limits": {"per_tap_sats": None, "per_day_sats": None,
                                    "taps_per_hour": None}}]
        before = sb.card_state(card_id)
        code, result = _charge(config, card_file)
        assert code == 4 and result["status"] == "failed" and result["reason"] == "card-blocked"
        assert "reported lost. Ask" in result["message"] and ".." not in result["message"]
        after = sb.card_state(card_id)
        assert after["counter"] == before["counter"]  # no scan reached the issuer
        assert after["balance_msat"] == before["balance_msat"]

        code, rows = _json("card", "unblock", "--card-id", card_id.upper(), "--config", config)
        assert code == 0 and rows[0]["blocked"] is False and rows[0]["uid"] is None
        code, result = _charge(config, card_file)
        assert code == 0 and result["status"] == "paid", result

        code, rows = _json("card", "list", "--config", config)
        [row] = [r for r in rows if r["card_id"] == card_id]
        assert set(row) == ROW_KEYS
        assert row["sales"] == 1 and row["total_msat"] == result["amount_msat"]
        assert not row["blocked"]
        assert row["last_counter"] >= 1 and row["last_seen"] > 0
        assert row["uid"] is None  # the terminal stores no UID: unknown unless configured
        code, rows = _json("card", "list", "--blocked", "--config", config)
        assert code == 0 and rows == []


def test_a_card_blocked_while_offline_is_refused_offline(tmp_path):
    data = tmp_path / "sb"
    sb = SandboxThread(data).start()
    config = _config(sb)
    card_file, other_file = tmp_path / "card.json", tmp_path / "other.json"
    card_id, _uid = _sim_card(sb, card_file)
    _sim_card(sb, other_file)
    sb.stop()  # offline from here: the block needs no network
    code, rows = _json("card", "block", "--card-id", card_id, "--reason", "stolen",
                       "--config", config)
    assert code == 0 and rows[0]["blocked"]
    code, result = _charge(config, card_file)
    assert code == 4 and result["reason"] == "card-blocked" and "stolen" in result["message"]
    # Another card is still accepted offline under the offline policy.
    code, result = _charge(config, other_file)
    assert code == 0 and result["status"] == "queued"
    # The refusal left no payout behind, and the books say why the sale ended.
    code, out, _ = _cli("history", "--config", config, "--export", "json")
    sales = json.loads(out)
    assert sorted(s["reason"] or s["state"] for s in sales) == ["card-blocked", "queued"]


def test_per_card_limits_and_velocity_hold_online_and_offline_and_name_their_numbers(tmp_path):
    data = tmp_path / "sb"
    sb = SandboxThread(data).start()
    card_file, trusted_file = tmp_path / "card.json", tmp_path / "trusted.json"
    card_id, _ = _sim_card(sb, card_file)
    trusted_id, _ = _sim_card(sb, trusted_file)
    config = _config(sb, f"""
[cards]
max_per_tap_sats = 400
max_per_day_sats = 300
max_taps_per_hour = 2

[[cards.limits]]
card_id = "{trusted_id}"
max_per_day_sats = 0
""")
    try:
        # Online the invoice's amount counts (a USD wallet's invoice for 500 sats asks a few
        # sats more or less): the message shows the numbers that decided.
        code, result = _charge(config, card_file, 500)
        assert code == 4 and result["reason"] == "card-limit-per-tap"
        assert re.fullmatch(r"This card may spend at most 400 sats a tap; this sale is "
                            r"[45]\d\d sats\.", result["message"]), result["message"]
        paid = _charge(config, card_file, 200)[1]
        assert paid["status"] == "paid"
        code, result = _charge(config, card_file, 150)
        assert code == 4 and result["reason"] == "card-limit-per-day"
        assert result["message"] == ("This card may spend at most 300 sats a day; "
                                     f"{paid['amount_msat'] // 1000:,} already today.")
        # The trusted card has no daily limit of its own, but keeps the others.
        assert _charge(config, trusted_file, 250)[1]["status"] == "paid"
        assert _charge(config, trusted_file, 250)[1]["status"] == "paid"
        code, result = _charge(config, trusted_file, 100)
        assert code == 4 and result["reason"] == "card-limit-per-hour"
        assert "at most 2 times an hour; 2 already" in result["message"]
        code, rows = _json("card", "list", "--config", config)
        limits = {r["card_id"]: r["limits"] for r in rows}
        assert limits[card_id] == {"per_tap_sats": 400, "per_day_sats": 300, "taps_per_hour": 2}
        assert limits[trusted_id] == {"per_tap_sats": 400, "per_day_sats": None,
                                      "taps_per_hour": 2}
    finally:
        sb.stop()
    # Offline: the same books count, the same rule refuses (before the offline policy).
    code, result = _charge(config, card_file, 150)
    assert code == 4 and result["reason"] == "card-limit-per-day"
    assert _charge(config, card_file, 90)[1]["status"] == "queued"  # still within the day


def _unknown_card(sb: SandboxThread, path, config: str, looks: str = "unknown-issuer") -> str:
    """A card on the sandbox's host whose keys no configured issuer has, and one tap read from
    it (the URL, given to `charge --tap`).

    A tap's PICCData carries random padding, so under another issuer's K1 a foreign card's `p`
    decrypts to a well-formed header about one tap in 256, and its CMAC then fails. `looks`
    picks which this tap is under the sandbox issuer's keys: "unknown-issuer" (the usual) or
    "cmac-mismatch" (that 1 in 256), so the test does not depend on the draw."""
    from terminal.app.config import load_config
    from terminal.app.root import build_keyring

    keys = BoltcardKeys(*(bytes([n + 1]) * 16 for n in range(5)), version=1)
    keyring = build_keyring(load_config(config))
    simcards.create_programmed(path, f"http://127.0.0.1:{sb.port}/ln", keys)
    for _ in range(5000):
        url = simcards.tap(path)
        verdict = keyring.verify_tap(url)
        if verdict.reason is not None and verdict.reason.value == looks:
            return url
    raise AssertionError(f"no tap that looks {looks}")


def _charge_tap(config: str, url: str, sats: int = 150) -> tuple[int, dict]:
    code, result = _json("charge", str(sats), "--currency", "SAT", "--config", config,
                         "--tap", url)
    return code, result  # type: ignore[return-value]


def test_an_unknown_card_on_a_host_that_requires_verification_is_refused_unsent(tmp_path):
    with SandboxThread(tmp_path / "sb") as sb:
        config = _config(sb)  # the sandbox issuer lists 127.0.0.1: require-verification
        card_file = tmp_path / "stranger.json"
        url = _unknown_card(sb, card_file, config)
        scans = len(sb.core.state.withdrawals)
        code, result = _charge_tap(config, url)
        assert code == 4 and result["reason"] == "unknown-card-refused"
        assert "127.0.0.1 must be verified on this terminal" in result["message"]
        assert len(sb.core.state.withdrawals) == scans


@pytest.mark.parametrize("looks", ["unknown-issuer", "cmac-mismatch"])
def test_an_unknown_card_on_an_online_only_host_goes_to_its_issuer_online_never_offline(
        tmp_path, looks):
    """Also the 1 tap in 256 whose `p` happens to decrypt under the host's issuer key and then
    fails its CMAC: unverifiable here, not proven forged, so its issuer decides."""
    data = tmp_path / "sb"
    sb = SandboxThread(data).start()
    path = sb.write_terminal_config()
    text = path.read_text().replace('lnurlw_base = ', 'unknown_cards = "online-only"\n'
                                    'lnurlw_base = ')
    path.write_text(text)
    config = str(path)
    card_file = tmp_path / "stranger.json"
    url = _unknown_card(sb, card_file, config, looks)
    try:
        code, result = _charge_tap(config, url)
        # It went online: the issuer itself refused it (its keys do not fit this card).
        assert code == 4 and result["reason"] not in ("unknown-card-refused",
                                                      "unknown-card-offline", "cmac-mismatch")
        assert result["reason"] == "issuer-error"
        assert "issuer declined" in result["message"]  # the issuer's own refusal
    finally:
        sb.stop()
    code, result = _charge_tap(config, _unknown_card(sb, card_file, config, looks))  # offline
    assert code == 4 and result["reason"] == "unknown-card-offline"
    assert "accepted only online" in result["message"]


@pytest.mark.parametrize("argv, words", [
    (["--card-id", "abc"], "32 hex"),
    (["--uid", "04aabb"], "7 bytes"),
    (["--card-file", "missing.json"], "does not exist"),
])
def test_card_block_usage_errors_exit_2_with_a_plain_message(tmp_path, argv, words):
    with SandboxThread(tmp_path / "sb") as sb:
        config = _config(sb)
        code, out, err = _cli("card", "block", *argv, "--config", config, "--json")
    assert code == 2 and words in err and "Traceback" not in err and out == ""


def test_a_uid_no_configured_issuer_maps_is_a_usage_error(tmp_path):
    config = tmp_path / "terminal.toml"
    config.write_text(f"""
[terminal]
data_dir = "{tmp_path / 'data'}"
[backend.flash]
http_url = "https://api.example.com/graphql"
username = "shop"
""")
    code, out, err = _cli("card", "block", "--uid", "04a1b2c3d4e5f6", "--config", str(config),
                          "--json")
    assert code == 2 and "no configured issuer's keys map this UID" in err


@pytest.mark.parametrize("sub", ["block", "unblock", "list", "keys", "decode", "wipe", "program"])
def test_each_card_subcommand_parses_in_its_own_process(sub):
    """A real process loads only the module of the subcommand it runs; a module holding several
    subcommands (decode/keys, program/wipe, block/unblock/list) must register them once."""
    import subprocess
    import sys

    code = ("import sys; from terminal.app.cli import main; "
            f"sys.argv = ['flash-terminal', 'card', {sub!r}, '--help']; sys.exit(main())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"card {sub}" in done.stdout and "Traceback" not in done.stderr


def test_card_list_shows_a_uid_only_where_the_configuration_names_it(tmp_path):
    from terminal.protocols.boltcard import key_table_card_id

    k2 = "22" * 16
    uid = "04a1b2c3d4e5f6"
    listed = key_table_card_id(bytes.fromhex(k2), bytes.fromhex(uid))
    config = tmp_path / "terminal.toml"
    config.write_text(f"""
[terminal]
data_dir = "{tmp_path / 'data'}"
[backend.flash]
http_url = "https://api.example.com/graphql"
username = "shop"
[[issuers]]
name = "lnbits"
kind = "table"
hosts = ["lnbits.example.com"]
cards = [{{ uid = "{uid}", k1 = "{'11' * 16}", k2 = "{k2}" }}]
""")
    config.chmod(0o600)
    code, rows = _json("card", "block", "--uid", uid, "--config", str(config))
    assert code == 0 and [r["card_id"] for r in rows] == [listed]
    code, rows = _json("card", "block", "--card-id", "ab" * 16, "--config", str(config))
    assert code == 0
    code, rows = _json("card", "list", "--blocked", "--config", str(config))
    assert {r["card_id"]: r["uid"] for r in rows} == {listed: uid, "ab" * 16: None}
    assert uid not in (tmp_path / "data" / "ledger.jsonl").read_text()
