"""The fast marker scan (core.skip_markers, via core.diff_policy): each common form of skipping,
deselecting or focusing tests, and of changing test configuration, in ADDED lines only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.diff_policy import check_diff
from loop_runtime.core.skip_markers import removed_lines_by_path, scan_change
from loop_runtime.ports import Diff, FileChange

FORMS = [
    # pytest
    ("tests/test_a.py", "pytestmark = pytest.mark.skip"),
    ("tests/test_a.py", "pytestmark = [pytest.mark.skipif(True, reason='x')]"),
    ("tests/test_a.py", "@mark.skip"),
    ("tests/test_a.py", "@pytest.mark.skipif(True, reason='later')"),
    ("tests/test_a.py", "@pytest.mark.xfail(run=False)"),
    ("tests/test_a.py", "    pytest.mark.skip,"),
    ("tests/test_a.py", "pytest.skip('not now', allow_module_level=True)"),
    ("tests/test_a.py", "    pytest.skip('x')"),
    ("tests/test_a.py", "pytest.importorskip('nonexistent')"),
    ("tests/test_a.py", "    pytest.xfail('x')"),
    ("conftest.py", "    pytest.exit('done', returncode=0)"),
    ("tests/test_a.py", "skip('x', allow_module_level = True)"),
    ("conftest.py", "collect_ignore = ['tests/test_a.py']"),
    ("conftest.py", "collect_ignore_glob = ['*']"),
    ("tests/test_a.py", "__test__ = False"),
    ("tests/test_a.py", "from pytest import skip"),
    ("tests/test_a.py", "from _pytest.outcomes import Skipped"),
    ("tests/test_a.py", "from pytest import mark as m"),
    ("tests/test_a.py", "import pytest as pt"),
    ("tests/test_a.py", "    raise Skipped('x')"),
    # unittest
    ("tests/test_a.py", "@unittest.skip('flaky')"),
    ("tests/test_a.py", "@unittest.skipIf(True, 'x')"),
    ("tests/test_a.py", "@unittest.skipUnless(False, 'x')"),
    ("tests/test_a.py", "@unittest.expectedFailure"),
    ("tests/test_a.py", "@skip('x')"),
    ("tests/test_a.py", "        raise unittest.SkipTest('x')"),
    ("tests/test_a.py", "        raise SkipTest"),
    ("tests/test_a.py", "        self.skipTest('later')"),
    ("tests/test_a.py", "from unittest import skipIf"),
    ("src/helpers.py", "@unittest.skip('x')"),  # a skip helper outside the test folder still skips
    # Jest / Vitest / Mocha
    ("src/a.test.ts", "it.skip('adds', () => {})"),
    ("src/a.test.ts", "test.skip('adds', () => {})"),
    ("src/a.test.ts", "describe.skip('calc', () => {})"),
    ("src/a.test.ts", "xit('adds', () => {})"),
    ("src/a.test.ts", "xdescribe('calc', () => {})"),
    ("src/a.test.ts", "xtest('adds', () => {})"),
    ("src/a.test.ts", "it.only('adds', () => {})"),
    ("src/a.test.ts", "describe.only('calc', () => {})"),
    ("src/a.test.ts", "fit('adds', () => {})"),
    ("src/a.test.ts", "fdescribe('calc', () => {})"),
    ("src/a.test.ts", "test.todo('adds')"),
    ("src/a.test.ts", "test.skipIf(true)('adds', () => {})"),
    ("src/a.test.ts", "it.skip.each([1])('x', () => {})"),
    ("src/a.test.ts", "test.concurrent.skip('x', async () => {})"),
    ("test/calc.spec.js", "    this.skip();"),
    ("test/calc.js", "context.skip('x', function () {})"),
    # Go
    ("calc_test.go", "\tt.Skip(\"later\")"),
    ("calc_test.go", "\tt.Skipf(\"%d\", 1)"),
    ("calc_test.go", "\tt.SkipNow()"),
    ("calc_test.go", "\tif testing.Short() {"),
    ("calc_test.go", "//go:build integration"),
    ("calc_test.go", "// +build ignore"),
    # Rust
    ("src/lib.rs", "#[ignore]"),
    ("tests/it.rs", "#[ignore = \"slow\"]"),
    ("src/lib.rs", "#[cfg_attr(not(feature = \"x\"), ignore)]"),
    # JVM
    ("src/test/java/CalcTest.java", "@Disabled"),
    ("src/test/java/CalcTest.java", "@Ignore(\"later\")"),
]


def _change(path: str, added: tuple[str, ...], kind: str = "modified") -> FileChange:
    return FileChange(path=path, kind=kind, added_lines=added)  # type: ignore[arg-type]


@pytest.mark.parametrize(("path", "line"), FORMS)
def test_each_added_form_is_a_violation(path: str, line: str) -> None:
    """A marker in an added line escalates as test-skipped, naming the line."""
    found = check_diff(Diff("b" * 40, (_change(path, (line,)),), ""))
    assert [v.code for v in found] == ["test-skipped"], found
    assert line.strip()[:40] in found[0].detail


@pytest.mark.parametrize(("path", "line"), FORMS)
def test_a_moved_marker_is_not_new(path: str, line: str) -> None:
    """The same text removed and added (moved, re-indented) is not a new marker."""
    patch = (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n"
             f"-  {line.strip()}\n+{line}\n")
    assert check_diff(Diff("b" * 40, (_change(path, (line,)),), patch)) == ()


@pytest.mark.parametrize(("path", "line"), FORMS)
def test_an_existing_marker_is_not_blamed_on_an_unrelated_edit(path: str, line: str) -> None:
    """A file that already had the marker, with an unrelated line added: no violation."""
    assert check_diff(Diff("b" * 40, (_change(path, ("x = 1", "// fine", "assert add(1, 2) == 3")),), "")) == ()


def test_a_removed_marker_is_not_a_violation() -> None:
    patch = ("diff --git a/tests/test_a.py b/tests/test_a.py\n--- a/tests/test_a.py\n+++ b/tests/test_a.py\n"
             "@@ -1,2 +1,1 @@\n-@pytest.mark.skip\n def test_a():\n")
    assert check_diff(Diff("b" * 40, (_change("tests/test_a.py", ()),), patch)) == ()


@pytest.mark.parametrize(("path", "line"), [
    ("src/app.py", "sys.exit(main())"),
    ("src/app.py", "parser.skip(3)"),
    ("src/app.js", "it.skip('x')"),  # JS focus/skip only counts in test files
    ("src/lib.rs", "#[cfg(feature = \"x\")]"),
    ("src/lib.rs", "#[cfg(test)]"),
    ("tests/test_a.py", "@pytest.mark.parametrize('x', [1, 2])"),
    ("tests/test_a.py", "def test_skip_is_handled():"),
    ("src/a.test.ts", "const skip = items.filter(Boolean)"),
    ("src/a.test.ts", "profit(1)"),
    ("README.md", "Use `@pytest.mark.skip` to skip a test."),
])
def test_ordinary_code_is_not_a_marker(path: str, line: str) -> None:
    assert check_diff(Diff("b" * 40, (_change(path, (line,)),), "")) == ()


def test_rust_cfg_put_on_a_test_is_a_violation() -> None:
    c = _change("src/lib.rs", ("#[cfg(any())]", "#[test]", "fn adds() {}"))
    assert [v.code for v in check_diff(Diff("b" * 40, (c,), ""))] == ["test-skipped"]
    c = _change("src/lib.rs", ("#[cfg(not(test))]", "mod tests {"))
    assert [v.code for v in check_diff(Diff("b" * 40, (c,), ""))] == ["test-skipped"]


@pytest.mark.parametrize(("path", "kind", "added", "removed"), [
    ("pytest.ini", "added", ("[pytest]", "addopts = -k 'not add'"), ()),
    ("pytest.ini", "modified", ("testpaths = other",), ("testpaths = tests",)),
    ("pytest.ini", "deleted", (), ("[pytest]",)),
    ("tox.ini", "modified", ("commands = pytest --deselect tests/test_a.py::test_add",), ()),
    ("pyproject.toml", "modified", ('addopts = "--ignore=tests/test_a.py"',), ()),
    ("pyproject.toml", "modified", ("[tool.pytest.ini_options]",), ()),
    ("pyproject.toml", "modified", (), ('testpaths = ["tests"]',)),
    ("setup.cfg", "modified", ("addopts = -m 'not slow'",), ()),
    ("package.json", "modified", ('    "test": "jest --testNamePattern=sub",',), ('    "test": "jest",',)),
    ("package.json", "modified", ('  "jest": {"testPathIgnorePatterns": ["calc"]},',), ()),
    ("jest.config.js", "modified", ("module.exports = {}",), ()),
    ("vitest.config.ts", "added", ("export default {}",), ()),
    (".mocharc.yml", "modified", ("grep: sub",), ()),
    ("Cargo.toml", "modified", ("[[test]]", "harness = false"), ()),
    ("Makefile", "modified", ("\tpytest -k 'not add'",), ("\tpytest",)),
    ("pyproject.toml", "modified", ("xfail_strict = false",), ()),
])
def test_test_configuration_changes_escalate(path: str, kind: str, added: tuple[str, ...],
                                             removed: tuple[str, ...]) -> None:
    """pytest.ini/tox.ini/runner configs escalate on any change; shared files when a test option changes."""
    patch = (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n"
             + "".join(f"-{r}\n" for r in removed) + "".join(f"+{a}\n" for a in added))
    found = check_diff(Diff("b" * 40, (_change(path, added, kind),), patch))
    assert "test-config" in [v.code for v in found], found


@pytest.mark.parametrize(("path", "added"), [
    ("pyproject.toml", ('version = "1.2.0"',)),
    ("package.json", ('  "version": "1.2.0",',)),
    ("setup.cfg", ("[metadata]", "name = calc")),
    ("pyproject.toml", ('description = "a toxic-waste diagnose tool"',)),
    ("Makefile", ("build:", "\tcc -o calc calc.c")),
])
def test_unrelated_edits_to_shared_config_files_pass(path: str, added: tuple[str, ...]) -> None:
    assert check_diff(Diff("b" * 40, (_change(path, added),), "")) == ()


def test_removed_lines_follow_the_new_path_of_each_file() -> None:
    patch = ("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,1 @@\n-gone\n kept\n+added\n"
             "diff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n"
             "-bye\n")
    assert removed_lines_by_path(patch) == {"x.py": ["gone"], "old.py": ["bye"]}


@given(st.sampled_from(FORMS), st.lists(st.text(max_size=40).filter(lambda s: "\n" not in s), max_size=5),
       st.integers(0, 5))
def test_a_marker_among_any_other_added_lines_is_found(form: tuple[str, str], other: list[str], at: int) -> None:
    """Wherever the marker sits among other added lines, the change escalates."""
    path, line = form
    lines = [*other]
    lines.insert(min(at, len(lines)), line)
    codes = [f.code for f in scan_change(_change(path, tuple(lines)))]
    assert "test-skipped" in codes
