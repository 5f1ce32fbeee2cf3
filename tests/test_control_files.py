"""The one definition of what controls a loop (core/control_files.py), and of git's own paths.

Whatever the spelling a filesystem would accept for a control file — another case, ``./``,
``//``, backslashes, Windows' trailing dots and spaces, an NTFS stream suffix, HFS-ignorable
characters — it is a control file; ordinary source paths never are.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.control_files import ControlSet, control_set, git_component, normalise

PROJECT = control_set(state_files=("ci-sweeper-state.md", "loops/nightly-state.md"),
                      kill_switches=("loop-pause-all", "loop-pause-ci-sweeper"))

CONTROL_PATHS = [
    "patterns/registry.yaml", "LOOP.md", "STATE.md", "loop-budget.md", "gate.yaml", "promotion.yaml", "repair.yaml",
    "loop-runtime.toml", "loop-ledger.json", "loop-run-log.md", "docs/last-run.json", "AGENTS.md",
    "loop-constraints.md", ".claude/skills/fix/SKILL.md", ".codex/skills/fix/SKILL.md", ".grok/skills/a/SKILL.md",
    "skills/loop-verifier/SKILL.md", ".claude/agents/loop-verifier.md", ".codex/agents/v.toml",
    ".claude/settings.json", ".claude/settings.local.json", ".mcp.json", "loop-pause-all", "loop-pause-ci-sweeper",
    "loop-pause-other", ".gitattributes", "src/deep/.gitattributes", ".gitmodules", ".github/workflows/ci.yml",
    ".github/workflows/sub/x.yaml", "ci-sweeper-state.md", "loops/nightly-state.md", "packages/a/gate.yaml",
    "packages/a/patterns/registry.yaml", ".loop-runtime/runtime.db", ".loop-worktrees/manifest.json",
    ".claude/hooks/pre.sh", ".codex/config.toml",
]

ORDINARY_PATHS = [
    "calc.py", "src/app.py", "tests/test_calc.py", "README.md", "docs/guide.md", "src/skills/parser.py",
    "src/state.py", "gate.py", "registry.yaml", "docs/last-run.md", "github/workflows/ci.yml", ".github/CODEOWNERS",
    "src/agents.py", "loop.py", "package.json", "src/gitattributes.py", "state.md.bak/x.py",
]


@pytest.mark.parametrize("path", CONTROL_PATHS)
def test_every_control_file_kind_matches(path: str) -> None:
    assert PROJECT.matches(path), path


@pytest.mark.parametrize("path", ORDINARY_PATHS)
def test_ordinary_source_paths_never_match(path: str) -> None:
    assert PROJECT.matches(path) is None, (path, PROJECT.matches(path))


@pytest.mark.parametrize("spelling", [
    "./gate.yaml", ".//gate.yaml", "GATE.YAML", "Gate.Yaml", "gate.yaml.", "gate.yaml ", "gate.yaml::$DATA",
    "patterns\\registry.yaml", "Patterns/Registry.YAML", ".CLAUDE/agents/x.md", ".claude//skills/a/SKILL.md",
    "./.github/Workflows/ci.yml", "st\u200bate.md", "STATE\u200c.md", "LOOP.MD",
    "docs\\last-run.json", "sub/.GITATTRIBUTES",
])
def test_spellings_a_filesystem_resolves_match(spelling: str) -> None:
    assert PROJECT.matches(spelling), spelling


def test_the_project_state_files_match_by_name_at_any_depth_but_not_other_names() -> None:
    assert PROJECT.matches("pkg/ci-sweeper-state.md")
    assert control_set().matches("ci-sweeper-state.md") is None
    assert "ci-sweeper-state.md" in PROJECT and "calc.py" not in PROJECT


def test_with_paths_adds_without_losing() -> None:
    more = control_set().with_paths(["config/loop.yaml"])
    assert isinstance(more, ControlSet) and more.matches("config/loop.yaml") and more.matches("gate.yaml")


@pytest.mark.parametrize("path", [
    ".git", "sub/.git", "sub/.git/config", ".GIT/HEAD", "a/.Git", "a/.git./x", "a/.git /x", "a/.git::$DATA",
    "a\\.git\\hooks\\pre-commit", "GIT~1/config", "a/.g\u200cit/config", "x/\ufeff.git",
])
def test_git_component_catches_every_spelling_of_dot_git(path: str) -> None:
    assert git_component(path) is not None, path


@pytest.mark.parametrize("path", [".gitignore", ".gitattributes", ".github/workflows/x.yml", "git/x", "src/.gitkeep",
                                  "digit/x.py", ".git-blame-ignore-revs"])
def test_git_component_ignores_ordinary_dot_git_prefixed_names(path: str) -> None:
    assert git_component(path) is None, path


# --------------------------------------------------------------------------- properties

_segment_char = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-")
_plain_segment = st.text(_segment_char, min_size=1, max_size=10)


def _respell(draw: st.DrawFn, path: str) -> str:
    """A random spelling of ``path`` that a case-insensitive / Windows / HFS filesystem resolves to it."""
    segs = path.split("/")
    out = []
    for seg in segs:
        seg = "".join(c.upper() if draw(st.booleans()) else c for c in seg)
        if draw(st.integers(0, 4)) == 0:
            seg += draw(st.sampled_from([".", " ", "..", " .", "::$DATA"]))
        if draw(st.integers(0, 6)) == 0 and len(seg) > 1:
            i = draw(st.integers(1, len(seg) - 1))
            seg = seg[:i] + draw(st.sampled_from(["\u200c", "\u200d", "\ufeff"])) + seg[i:]
        out.append(seg)
        if draw(st.integers(0, 5)) == 0:
            out.append(".")
    sep = draw(st.sampled_from(["/", "\\", "//"]))
    lead = draw(st.sampled_from(["", "./", ".\\"]))
    return lead + sep.join(out)


@st.composite
def control_spellings(draw: st.DrawFn) -> str:
    return _respell(draw, draw(st.sampled_from(CONTROL_PATHS)))


@given(control_spellings())
def test_any_spelling_of_a_control_file_matches(path: str) -> None:
    assert PROJECT.matches(path), path


@st.composite
def dot_git_spellings(draw: st.DrawFn) -> str:
    head = draw(st.lists(_plain_segment, max_size=3))
    tail = draw(st.lists(_plain_segment, max_size=2))
    return _respell(draw, "/".join([*head, ".git", *tail]))


@given(dot_git_spellings())
def test_any_spelling_of_a_dot_git_component_is_caught(path: str) -> None:
    assert git_component(path) is not None, path


@st.composite
def ordinary_paths(draw: st.DrawFn) -> str:
    folder = draw(st.lists(st.sampled_from(["src", "lib", "app", "pkg", "internal", "tests", "docs", "web"]),
                           max_size=3))
    name = draw(_plain_segment) + draw(st.sampled_from([".py", ".ts", ".go", ".rs", ".txt", ".json", ".md"]))
    return "/".join([*folder, name])


@given(ordinary_paths())
def test_ordinary_source_paths_are_never_control_files(path: str) -> None:
    name = path.rsplit("/", 1)[-1].casefold()
    if name.startswith("loop-pause-") or name in {"state.md", "agents.md", "claude.md", "loop.md"}:
        return  # generated names that happen to be control files
    assert PROJECT.matches(path) is None, path
    assert git_component(path) is None, path


@given(st.text(max_size=40))
def test_normalise_never_fails_and_is_idempotent(path: str) -> None:
    once = normalise(path)
    assert normalise(once) == once


@pytest.mark.parametrize("path", [".claude", ".github/workflows", "skills", "patterns", "pkg/.codex", "docs",
                                  ".loop-runtime"])
def test_a_control_folder_itself_matches_so_a_symlink_cannot_replace_it(path: str) -> None:
    if path == "docs":
        assert PROJECT.matches(path)  # holds docs/last-run.json
    else:
        assert PROJECT.matches(path), path
