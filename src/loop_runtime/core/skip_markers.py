"""The fast first check against weakened tests: skip/focus markers and test-config edits in a diff.

Why a scan when the base-vs-attempt comparison (``core.test_weakening``) is the general
check: it costs nothing, runs before any test, and names the exact line. It can never
be complete — that is what the comparison is for — so it looks only for the common
forms, in ADDED lines only: a marker that was already there, or one that was moved
(removed and added with the same text), is not new.

Forms recognised: pytest (``@mark.skip``/``skipif``/``xfail`` under any alias of
``pytest``, ``pytestmark``, ``pytest.skip(`` / ``xfail(`` / ``importorskip(`` /
``exit(``, ``allow_module_level``, ``collect_ignore``, ``__test__ = False``, imports of
the skip helpers), unittest (``@skip*``, ``expectedFailure``, ``raise SkipTest``,
``self.skipTest``), Jest/Vitest/Mocha (``.skip``, ``.only``, ``.todo``, ``skipIf``,
``xit``/``xdescribe``/``fit``, ``this.skip()``), Go (``t.Skip``, ``testing.Short()``
guards, build tags in test files), Rust (``#[ignore]``, ``#[cfg(...)]`` put on tests,
``cfg_attr(…, ignore)``), JUnit (``@Disabled``/``@Ignore``). Test configuration —
``pytest.ini``, ``tox.ini``, Jest/Vitest/Mocha config, and the test options of
``pyproject.toml``/``setup.cfg``/``package.json`` — is escalated whenever it changes.

Pure: a ``FileChange`` and the patch in, ``Finding`` values out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..ports import FileChange

__all__ = ["SKIP_MARKERS", "Finding", "TEST_CONFIG_FILES", "removed_lines_by_path", "scan_change"]


@dataclass(frozen=True)
class Finding:
    code: str  # test-skipped | test-config
    path: str
    detail: str


_PY = (
    ("pytest skip mark", re.compile(r"\bmark\s*\.\s*(?:skip|skipif|xfail)\b")),
    ("pytestmark", re.compile(r"^\s*pytestmark\b.*\b(?:skip|skipif|xfail)\b")),
    ("pytest.skip()", re.compile(r"\bpytest\s*\.\s*(?:skip|xfail|importorskip|exit)\b")),
    ("allow_module_level", re.compile(r"\ballow_module_level\b")),
    ("collect_ignore", re.compile(r"\bcollect_ignore(?:_glob)?\b")),
    ("__test__ = False", re.compile(r"\b__test__\s*(?::[^=]*)?=")),
    ("skip import", re.compile(r"^\s*from\s+(?:pytest|_pytest[\w.]*|unittest[\w.]*)\s+import\s+.*\b(?:skip\w*|xfail|"
                               r"importorskip|SkipTest|Skipped|expectedFailure|exit)\b")),
    ("aliased pytest", re.compile(r"\bimport\s+(?:pytest|_pytest[\w.]*)\s+as\b|\bmark\s+as\s+\w+|"
                                  r"\bmark\s*\.\s*__getattr__|getattr\s*\(\s*[\w.]*mark\b")),
    ("unittest skip", re.compile(r"@\s*(?:[\w.]+\.)?(?:skip|skipIf|skipUnless|expectedFailure)\b")),
    ("raise SkipTest", re.compile(r"\b(?:SkipTest|Skipped|SkipException)\b")),
    ("self.skipTest()", re.compile(r"\.\s*skipTest\s*\(")),
)
_JS = (
    ("JS skip/focus", re.compile(r"\b(?:it|describe|test|context|suite|bench|specify)(?:\s*\.\s*\w+)*\s*\.\s*"
                                 r"(?:skip|only|todo|skipIf|runIf|fails)\b")),
    ("JS xit/fit", re.compile(r"(?<![\w.$])[xf](?:it|describe|test|context|specify)\s*[(.]")),
    ("mocha this.skip()", re.compile(r"\bthis\s*\.\s*skip\s*\(")),
)
_GO = (
    ("go t.Skip", re.compile(r"\.\s*Skip(?:Now|f)?\s*\(")),
    ("go testing.Short()", re.compile(r"\btesting\s*\.\s*Short\s*\(")),
    ("go build tag", re.compile(r"^\s*//\s*(?:go:build\b|\+build\b)")),
)
_RUST_ALWAYS = (
    ("rust #[ignore]", re.compile(r"#\s*\[\s*ignore\b")),
    ("rust cfg_attr ignore", re.compile(r"#\s*\[\s*cfg_attr\s*\(.*\bignore\b")),
)
_RUST_CFG = re.compile(r"#\s*\[\s*cfg\s*\((?!\s*test\s*\)\s*\])")
_RUST_TEST = re.compile(r"#\s*\[\s*(?:\w+::)*test\b|\bmod\s+tests?\b|\bfn\s+test_")
_JVM = (("JUnit @Disabled/@Ignore", re.compile(r"@(?:Disabled|Ignore)\b")),)

SKIP_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (*_PY, *_JS, *_GO, *_RUST_ALWAYS, *_JVM)
"""Every (label, pattern) the scan knows, for documentation and tests."""

TEST_CONFIG_FILES = frozenset({
    "pytest.ini", ".pytest.ini", "tox.ini", "noxfile.py", ".mocharc", ".mocharc.js", ".mocharc.cjs", ".mocharc.json",
    ".mocharc.yaml", ".mocharc.yml", ".mocharc.jsonc", "karma.conf.js", "ava.config.js", ".nycrc",
})
"""Files whose only job is to say which tests run and how: any change escalates."""
_CONFIG_PREFIXES = ("jest.config.", "vitest.config.", "vitest.workspace.", "playwright.config.", "cypress.config.")
_PYTEST_OPTIONS = (r"pytest|addopts|testpaths|python_(?:files|classes|functions)|norecursedirs|collect_ignore|"
                   r"xfail_strict|empty_parameter_set_mark|confcutdir|pythonpath|--deselect|--ignore|"
                   r"(?:^|[\s'\"])-[km]\b|\btox\b")
_SHARED_CONFIG: Mapping[str, re.Pattern[str]] = {
    # files with other content too: only lines that touch the test runner's options escalate
    "pyproject.toml": re.compile(_PYTEST_OPTIONS + r"|\b(?:unittest|nose2?)\b"),
    "setup.cfg": re.compile(_PYTEST_OPTIONS + r"|\bnosetests\b"),
    "package.json": re.compile(r"\"(?:test|jest|vitest|mocha|ava|testMatch|testRegex|testPathIgnorePatterns|"
                               r"modulePathIgnorePatterns|testNamePattern|testPathPattern|roots|spec|grep)\"|"
                               r"--(?:grep|testNamePattern|testPathPattern|passWithNoTests|bail|exclude|"
                               r"testPathIgnorePatterns)|(?:^|\s)-t\s"),
    **dict.fromkeys(("Makefile", "makefile", "GNUmakefile", "justfile", "Justfile"),
                    re.compile(r"(?i)\btests?\b|pytest|jest|vitest|mocha|\bgo\s+test\b|\bcargo\s+test\b")),
    "Cargo.toml": re.compile(r"^\s*\[\[test\]\]|\bharness\b|\btest\s*=|\bautotests\b"),
    "go.mod": re.compile(r"^\s*go\s+\d"),  # the go directive changes which build constraints apply
}

_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testing"})
_TEST_NAME = re.compile(
    r"""(?x)^(?:
        test_.+\.py | .+_test\.py | conftest\.py | .+_test\.go
      | .+\.(?:test|spec)\.[A-Za-z0-9]+ | .+_spec\.rb | .+Test\.(?:java|kt|cs|php) | .+Tests\.(?:java|kt|cs|swift)
    )$"""
)


def _is_test_path(path: str) -> bool:
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        return False
    return bool(_TEST_NAME.match(parts[-1])) or any(p.lower() in _TEST_DIRS for p in parts[:-1])


def _header_path(line: str) -> str | None:
    name = line[4:].rstrip("\t")
    if name == "/dev/null":
        return None
    if name.startswith('"') and name.endswith('"'):  # C-quoted: good enough for matching a plain path
        name = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    return name[2:] if name.startswith(("a/", "b/")) else name


def removed_lines_by_path(patch: str) -> dict[str, list[str]]:
    """The ``-`` lines of every text hunk, keyed by the file's new path (old path for deletions)."""
    result: dict[str, list[str]] = {}
    old: str | None = None
    path: str | None = None
    in_hunk = False
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            old, path, in_hunk = None, None, False
        elif not in_hunk and line.startswith("--- "):
            old = _header_path(line)
        elif not in_hunk and line.startswith("+++ "):
            path = _header_path(line) or old
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and path is not None and line.startswith("-"):
            result.setdefault(path, []).append(line[1:].rstrip("\r"))
    return result


def _new_lines(added: Sequence[str], removed: Sequence[str]) -> list[tuple[int, str]]:
    """Added lines minus those that only moved (same text, ignoring indentation, removed elsewhere)."""
    pool = Counter(r.strip() for r in removed)
    out: list[tuple[int, str]] = []
    for i, line in enumerate(added):
        key = line.strip()
        if pool[key] > 0:
            pool[key] -= 1
            continue
        out.append((i, line))
    return out


def _families(path: str, test: bool) -> tuple[tuple[tuple[str, re.Pattern[str]], ...], bool]:
    """The marker families that apply to ``path``, and whether Rust's cfg-on-test rule applies."""
    p = PurePosixPath(path)
    if p.suffix == ".py":
        return _PY, False
    if p.suffix == ".rs":
        return _RUST_ALWAYS, True
    if p.name.endswith("_test.go"):
        return _GO, False
    if p.suffix == ".go":
        return _GO[:2], False  # a skip helper in a non-test file still skips the tests that call it
    if test:
        return (*_JS, *_JVM), False
    return (), False


def _config_finding(c: FileChange, added: Sequence[str], removed: Sequence[str]) -> Finding | None:
    name = PurePosixPath(c.old_path if c.kind == "deleted" and c.old_path else c.path).name
    names = {PurePosixPath(p).name for p in c.paths}
    if names & TEST_CONFIG_FILES or any(n.startswith(_CONFIG_PREFIXES) for n in names):
        return Finding("test-config", c.path, f"test configuration {c.kind}: it decides which tests run")
    pattern = _SHARED_CONFIG.get(name)
    if pattern is None:
        return None
    for line in (*added, *removed):
        if pattern.search(line):
            return Finding("test-config", c.path, f"test options changed: {line.strip()[:120]}")
    if c.kind in ("deleted", "renamed") and name in ("pyproject.toml", "setup.cfg", "package.json"):
        return Finding("test-config", c.path, f"{name} {c.kind}")
    return None


def scan_change(c: FileChange, removed: Sequence[str] = (), *,
                is_test_path: Callable[[str], bool] = _is_test_path) -> list[Finding]:
    """Why this change weakens tests by its text: the first new marker, and a test-config edit."""
    out: list[Finding] = []
    added = () if c.kind == "deleted" else c.added_lines
    cfg = _config_finding(c, added, removed)
    if cfg is not None:
        out.append(cfg)
    if not added:
        return out
    families, rust_cfg = _families(c.path, is_test_path(c.path))
    new = _new_lines(added, removed)
    for i, line in new:
        for label, pattern in families:
            if pattern.search(line):
                out.append(Finding("test-skipped", c.path, f"{label} added: {line.strip()[:120]}"))
                return out
        if rust_cfg and _RUST_CFG.search(line) and any(_RUST_TEST.search(nxt) for nxt in added[i + 1:i + 4]):
            out.append(Finding("test-skipped", c.path, f"rust #[cfg] on a test added: {line.strip()[:120]}"))
            return out
    return out
