"""The diff policy: what no diff may contain, whatever the gate says."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.core.diff_policy import Violation, check_diff, is_test_path, symlink_escapes
from loop_runtime.ports import Diff, FileChange


def _diff(*changes: FileChange) -> Diff:
    return Diff(base_commit="0" * 40, changes=changes, patch="")


def _codes(diff: Diff, **kw: object) -> list[tuple[str, str]]:
    return [(v.code, v.path) for v in check_diff(diff, **kw)]  # type: ignore[arg-type]


def test_an_ordinary_change_passes() -> None:
    """Editing source, adding a test and a relative in-tree symlink is fine."""
    diff = _diff(
        FileChange("src/app.py", "modified", added_lines=("x = 1",)),
        FileChange("tests/test_app.py", "added", added_lines=("def test_x(): assert True",)),
        FileChange("docs/latest", "added", is_symlink=True, symlink_target="../README.md"),
        FileChange("src/new.py", "renamed", old_path="src/old.py"),
    )
    assert check_diff(diff) == ()


@pytest.mark.parametrize("path", ["../outside.txt", "a/../../b", "/etc/passwd", "C:/x"])
def test_dotdot_and_absolute_paths(path: str) -> None:
    """A path that leaves the tree is a `dotdot` violation."""
    assert ("dotdot", path) in _codes(_diff(FileChange(path, "added")))


@pytest.mark.parametrize("path", [".git/config", "sub/.git/hooks/pre-commit", ".GIT/HEAD"])
def test_git_dir_paths(path: str) -> None:
    """Anything under a .git segment (any case) is `git-dir`."""
    assert ("git-dir", path) in _codes(_diff(FileChange(path, "added")))


def test_gitlink_is_a_git_dir_violation() -> None:
    """An embedded repository (mode 160000) is refused too."""
    assert _codes(_diff(FileChange("vendor/x", "added", new_mode="160000"))) == [("git-dir", "vendor/x")]


@pytest.mark.parametrize(
    ("link", "target", "escapes"),
    [
        ("a/link", "../b.txt", False),
        ("link", "sub/../x", False),
        ("link", "../x", True),
        ("a/b/link", "../../../x", True),
        ("link", "/etc/passwd", True),
        ("link", "~/secrets", True),
        ("a/link", "../.git/config", True),
        ("link", "", True),
    ],
)
def test_symlink_targets_are_resolved_lexically_from_the_links_folder(link: str, target: str, escapes: bool) -> None:
    """A link escapes when its target is absolute, climbs above the root, or points into .git."""
    assert (symlink_escapes(link, target) is not None) is escapes
    diff = _diff(FileChange(link, "added", is_symlink=True, symlink_target=target))
    assert (("symlink-escape", link) in _codes(diff)) is escapes


def test_deleted_symlinks_are_harmless() -> None:
    """Removing a link that pointed outside is not an escape."""
    assert check_diff(_diff(FileChange("l", "deleted", is_symlink=True))) == ()


@pytest.mark.parametrize("path", ["gate.yaml", "LOOP.md", "loop-budget.md", "loop-pause-all", "loop-runtime.toml",
                                  "promotion.yaml", "repair.yaml", "loop-ledger.json", "pkg/gate.yaml",
                                  ".loop-runtime/runtime.db", ".loop-worktrees/manifest.json",
                                  ".claude/settings.json"])
def test_control_files(path: str) -> None:
    """The loop's own control files and folders are never part of a change."""
    assert ("control-file", path) in _codes(_diff(FileChange(path, "modified")))


def test_state_files_passed_in_are_control_files_old_and_new_names_alike() -> None:
    """The pattern's state file is protected, also when renamed away or onto."""
    diff = _diff(FileChange("notes.md", "renamed", old_path="STATE.md"))
    assert _codes(diff, control_files=["STATE.md"]) == [("control-file", "STATE.md")]
    diff = _diff(FileChange("./triage-state.md", "added"))
    assert _codes(diff, control_files=["triage-state.md"]) == [("control-file", "./triage-state.md")]


@pytest.mark.parametrize("path", ["tests/test_a.py", "pkg/a_test.py", "x_test.go", "src/a.test.ts", "a.spec.js",
                                  "src/__tests__/a.tsx", "spec/models/user_spec.rb", "test/util.js", "conftest.py"])
def test_recognised_test_paths(path: str) -> None:
    """Test files by name or by folder."""
    assert is_test_path(path)


@pytest.mark.parametrize("path", ["src/app.py", "testing.md", "src/contest.py", "latest/x.py", "tests"])
def test_not_test_paths(path: str) -> None:
    """Names that merely contain 'test' are not tests."""
    assert not is_test_path(path)


def test_deleting_or_renaming_away_a_test_escalates() -> None:
    """A deleted test, or one renamed out of test naming or its folder, is `test-deleted`."""
    assert _codes(_diff(FileChange("tests/test_a.py", "deleted"))) == [("test-deleted", "tests/test_a.py")]
    assert _codes(_diff(FileChange("src/a_helper.py", "renamed", old_path="src/a_test.py"))) == [
        ("test-deleted", "src/a_test.py")]
    assert _codes(_diff(FileChange("tests/test_b.py", "renamed", old_path="tests/test_a.py"))) == []
    assert _codes(_diff(FileChange("src/a_test.py", "renamed", old_path="tests/test_a.py"))) == [
        ("test-deleted", "tests/test_a.py")]  # moved where the runner may not look
    assert _codes(_diff(FileChange("tests/test_a.py", "typechange", is_symlink=True, symlink_target="x.py"))) == [
        ("test-deleted", "tests/test_a.py")]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("tests/test_a.py", "@pytest.mark.skip(reason='flaky')"),
        ("tests/test_a.py", "    pytest.skip('later')"),
        ("src/helpers.py", "@unittest.skip('x')"),
        ("conftest.py", "pytest.importorskip('numpy')"),
        ("tests/test_a.py", "@pytest.mark.xfail"),
        ("src/a.test.ts", "it.skip('works', () => {})"),
        ("src/a.test.ts", "describe.skip('suite', () => {})"),
        ("src/a.spec.js", "test.skip('x', fn)"),
        ("src/a.spec.js", "xit('x', fn)"),
        ("src/a.spec.js", "xdescribe('x', fn)"),
        ("src/a.spec.js", "it.only('x', fn)"),
        ("pkg/a_test.go", "\tt.Skip(\"later\")"),
        ("src/lib.rs", "#[ignore]"),
    ],
)
def test_skip_and_focus_markers_added_escalate(path: str, line: str) -> None:
    """Adding a skip, xfail or focus marker is `test-skipped`."""
    assert _codes(_diff(FileChange(path, "modified", added_lines=(line,)))) == [("test-skipped", path)]


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("src/app.js", "items.only(x)"),
        ("tests/test_views.py", "qs = Model.objects.only('id')"),
        ("README.md", "use @pytest.mark.skip to skip"),
        ("src/a.test.ts", "const skipped = 3"),
    ],
)
def test_lookalikes_are_not_skip_markers(path: str, line: str) -> None:
    """Django's .only(), prose in docs and plain identifiers do not escalate."""
    assert check_diff(_diff(FileChange(path, "modified", added_lines=(line,)))) == ()


def test_binary_and_deleted_files_have_no_marker_check() -> None:
    """Removed lines and binary content are never scanned as added markers."""
    assert check_diff(_diff(FileChange("tests/test_a.bin", "added", is_binary=True))) == ()


def test_violations_are_deduplicated_and_ordered() -> None:
    """One violation per (code, path, detail), in diff order."""
    diff = _diff(FileChange("../gate.yaml", "added"), FileChange("../gate.yaml", "modified"))
    assert [v.code for v in check_diff(diff)] == ["dotdot", "control-file"]
    assert all(isinstance(v, Violation) for v in check_diff(diff))


_segment = st.sampled_from(["src", "a", "..", ".", "", ".git", "tests", "x.py", "gate.yaml", "b"])
_path = st.lists(_segment, min_size=1, max_size=5).map("/".join)
_kind = st.sampled_from(["added", "modified", "deleted", "renamed", "mode", "typechange"])


# Invariant: any path with a '..' segment is flagged, and any path with a '.git' segment is flagged.
@settings(max_examples=200)
@given(_path, _kind)
def test_escape_segments_are_always_caught(path: str, kind: str) -> None:
    """No '..' or '.git' segment slips through check_diff."""
    codes = {v.code for v in check_diff(_diff(FileChange(path, kind)))}  # type: ignore[arg-type]
    if ".." in path.split("/"):
        assert "dotdot" in codes
    if ".git" in path.split("/"):
        assert "git-dir" in codes


# Invariant: a symlink whose lexically resolved target leaves the root is always flagged.
@settings(max_examples=200)
@given(st.lists(st.sampled_from(["a", "b"]), max_size=3), st.lists(st.sampled_from(["..", "x", "."]), min_size=1,
                                                                     max_size=6))
def test_symlink_escape_matches_a_depth_count(folders: list[str], target_parts: list[str]) -> None:
    """The link escapes exactly when some prefix of its target climbs above the root."""
    depth, escaped = len(folders), False
    for part in target_parts:
        depth += {"..": -1, ".": 0}.get(part, 1)
        escaped = escaped or depth < 0
    link = "/".join([*folders, "link"])
    assert (symlink_escapes(link, "/".join(target_parts)) is not None) is escaped


# --------------------------------------------------------------------------- issue 10: .git and control files


@pytest.mark.parametrize("path", [".git", "sub/.git", "a/.git./config", "a/.git /HEAD", "vendor/GIT~1/config",
                                  "x/.g\u200cit/config", "a\\.git\\hooks\\post-merge"])
def test_every_spelling_of_a_dot_git_component_is_git_dir(path: str) -> None:
    assert ("git-dir", path) in _codes(_diff(FileChange(path, "added")))


@pytest.mark.parametrize("old,new", [(None, "160000"), ("160000", None), ("160000", "100644")])
def test_a_gitlink_added_or_removed_is_git_dir(old: str | None, new: str | None) -> None:
    kind = "added" if old is None else ("deleted" if new is None else "typechange")
    assert ("git-dir", "lib") in _codes(_diff(FileChange("lib", kind, old_mode=old, new_mode=new)))  # type: ignore[arg-type]


@pytest.mark.parametrize("path,target", [("docs/g.yaml", "../gate.yaml"), ("x", ".claude/agents/v.md"),
                                         ("a/b/link", "../../patterns/registry.yaml"), ("hooks", ".git/hooks")])
def test_a_symlink_to_a_control_file_or_into_git_escalates(path: str, target: str) -> None:
    codes = {c for c, _ in _codes(_diff(FileChange(path, "added", is_symlink=True, symlink_target=target)))}
    assert codes & {"control-file", "git-dir", "symlink-escape"}


@pytest.mark.parametrize("kind,path,old", [
    ("modified", "STATE.md", None), ("deleted", "LOOP.md", None), ("added", ".claude/skills/x/SKILL.md", None),
    ("renamed", "docs/loop.md", "LOOP.md"), ("renamed", "gate.yaml", "notes.md"),
    ("added", "pkg/.gitattributes", None), ("added", ".github/workflows/ci.yml", None),
    ("modified", "nightly-state.md", None),
])
def test_control_file_changes_of_every_kind(kind: str, path: str, old: str | None) -> None:
    from loop_runtime.core.control_files import control_set

    controls = control_set(state_files=("nightly-state.md",))
    codes = _codes(_diff(FileChange(path, kind, old_path=old)), controls=controls)  # type: ignore[arg-type]
    assert any(c == "control-file" for c, _ in codes), codes
