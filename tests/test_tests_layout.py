"""The test suite's own rule: a test module never imports another test module (what tests share
lives in tests/helpers/ or tests/fakes/, one module per job), so running one file never runs or
re-collects another's tests and a test file can be renamed or deleted alone."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _is_test_module(name: str) -> bool:
    parts = name.split(".")
    if parts[0] == "tests":
        parts = parts[1:]
    return bool(parts) and (parts[0].startswith("test_") or parts[0] == "conftest")


def imported_test_modules(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            if _is_test_module(node.module):
                found.append(node.module)
            elif node.module == "tests":  # from tests import test_x
                found += [alias.name for alias in node.names if _is_test_module(alias.name)]
    return found


def test_the_rule_sees_every_spelling_of_a_test_module_import():
    source = ("import test_a\nimport tests.test_b\nfrom test_c import x\n"
              "from tests.test_d import y\nfrom tests import test_e\nfrom conftest import z\n"
              "def f():\n    from test_f import w\n")
    assert imported_test_modules(source) == ["test_a", "tests.test_b", "test_c", "tests.test_d",
                                             "test_e", "conftest", "test_f"]
    allowed = ("from helpers.sync_rig import Rig\nfrom tests.fakes.lnurl_issuer import Issuer\n"
               "import testing\nfrom tests.helpers import loopback\n")
    assert imported_test_modules(allowed) == []


def test_no_test_module_or_helper_imports_a_test_module():
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if "vectors" not in path.parts
        and (found := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, ("move what they share into tests/helpers/ (a module per job): "
                             f"{offenders}")


def test_no_benchmark_or_script_imports_a_test_module():
    """Benchmarks reuse the test rigs; they take them from tests/helpers/ like the tests do, so
    a test file can move without breaking a benchmark nobody runs in CI."""
    root = TESTS.parent
    offenders = {
        str(path.relative_to(root)): found
        for folder in ("benchmarks", "scripts")
        for path in sorted((root / folder).rglob("*.py"))
        if (found := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"import from tests/helpers/ instead: {offenders}"
