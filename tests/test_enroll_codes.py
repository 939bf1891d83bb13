"""`flash-terminal enroll CODE`: a code whose `FT1:` prefix was left off is still read; another
version's code or garbage is refused saying what was expected (never an OSError)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.app import enroll
from terminal.app.cli import main

RAW = {"terminal": {"name": "Shop"}, "backend": {"kind": "flash", "flash": {
    "http_url": "https://x.example/graphql", "username": "shop"}}}
SECRET = b"field-secret"


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_code_without_its_prefix_is_read(signed):
    code = enroll.make_code(RAW, secret=SECRET if signed else None)
    bare = code.removeprefix("FT1:")
    raw, row = enroll.read_enrollment(bare, secret=SECRET, allow_unsigned=not signed)
    assert raw == RAW
    assert row.status is (enroll.Status.OK if signed else enroll.Status.WARN)
    # With line breaks a chat app added, and lower-case prefix, too.
    wrapped = "\n".join(bare[i:i + 40] for i in range(0, len(bare), 40))
    assert enroll.read_enrollment(wrapped, secret=SECRET, allow_unsigned=True)[0] == RAW
    assert enroll.read_enrollment("ft1:" + bare, secret=SECRET, allow_unsigned=True)[0] == RAW


def test_a_bare_code_saved_in_a_file_is_read(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(enroll.make_code(RAW, secret=SECRET).removeprefix("FT1:") + "\n")
    assert enroll.read_enrollment(str(path), secret=SECRET)[0] == RAW


@pytest.mark.parametrize("source", ["FT2:eNotjFsKwjAQRH9lmG_xAl7AWwjrJG2w3Q3ZBKl4dxP","ft9:x"])
def test_another_versions_code_says_what_was_expected(source):
    with pytest.raises(enroll.CodeError) as info:
        enroll.read_enrollment(source, secret=SECRET)
    assert "this terminal reads FT1: codes" in info.value.message and info.value.fix


def test_another_versions_code_on_the_command_line_is_a_failed_row(tmp_path, capsys):
    rc = main(["enroll", "FT2:eNotjFsKwjAQRH9lmG", "--config-dir", str(tmp_path / "etc"),
               "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 1 and "FT2:" in result["checks"][0]["detail"]
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("source", ["x" * 5000, "A" * 300 + ".BBBBBBBB", "not a code", "a\x00b",
                                    "../" * 2000, "\x1b[2J" * 100])
def test_garbage_is_a_usage_error_naming_what_was_expected(tmp_path, capsys, source):
    with pytest.raises(SystemExit) as info:
        main(["enroll", source, "--config-dir", str(tmp_path / "etc")])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "is neither an enrollment file nor an FT1: code" in err
    assert "Traceback" not in err and "File name too long" not in err and "\x1b" not in err
    assert len(err) < 1000


@given(source=st.text(max_size=400))
def test_any_text_is_a_code_a_file_or_a_clear_refusal(source):
    try:
        enroll.read_enrollment(source, secret=SECRET, allow_unsigned=True)
    except enroll.EnrollError as exc:
        assert exc.message
