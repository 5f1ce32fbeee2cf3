"""Worktree-confined file tools: no path, symlink or `..` trick leads outside the root."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.agents import file_tools
from loop_runtime.adapters.agents.file_tools import FileToolError, resolve_inside
from loop_runtime.errors import GateDenied


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A worktree with nested files, a .git folder and symlinks pointing in and out."""
    wt = tmp_path / "wt"
    (wt / "src" / "pkg").mkdir(parents=True)
    (wt / ".git").mkdir()
    (wt / ".git" / "config").write_text("[remote] url = https://token@example.com\n")
    (wt / "src" / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (wt / "README.md").write_text("hello\nworld\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (wt / "link_out").symlink_to(outside)
    (wt / "file_out").symlink_to(outside / "secret.txt")
    (wt / "dangling_out").symlink_to(outside / "new.txt")
    (wt / "link_in").symlink_to(wt / "src")
    return wt.resolve()


# --------------------------------------------------------------------------- resolve_inside


@pytest.mark.parametrize("rel", ["../outside/secret.txt", "src/../../outside", "/etc/passwd", "..", "",
                                 "link_out/secret.txt", "file_out", "dangling_out", ".git/config",
                                 "src/.git/hooks/pre-commit", "a\x00b"])
def test_resolve_inside_refuses_escapes(root: Path, rel: str) -> None:
    """Absolute paths, `..`, symlinks leading out, .git and NUL bytes are refused with GateDenied."""
    with pytest.raises(GateDenied):
        resolve_inside(root, rel)


@pytest.mark.parametrize(("rel", "expected"), [("src/pkg/mod.py", "src/pkg/mod.py"), (".", ""),
                                               ("./README.md", "README.md"), ("new/dir/file.txt", "new/dir/file.txt"),
                                               ("link_in/pkg/mod.py", "src/pkg/mod.py")])
def test_resolve_inside_accepts_paths_in_the_root(root: Path, rel: str, expected: str) -> None:
    """Relative paths, new paths and symlinks that stay inside resolve to their real location."""
    assert resolve_inside(root, rel) == (root / expected if expected else root)


SEGMENTS = st.sampled_from(["..", ".", "src", "pkg", "link_out", "link_in", "file_out", "dangling_out", "x",
                            ".git", "", "/", "mod.py", "secret.txt"])


# invariant: any path an agent can send either raises GateDenied or resolves inside the root
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(parts=st.lists(SEGMENTS, min_size=1, max_size=6), absolute=st.booleans())
def test_resolve_inside_never_returns_a_path_outside(root: Path, parts: list[str], absolute: bool) -> None:
    """resolve_inside returns a path under the real root, or raises GateDenied — nothing else."""
    rel = ("/" if absolute else "") + "/".join(parts)
    try:
        full = resolve_inside(root, rel)
    except GateDenied:
        return
    assert full == root or root in full.parents
    assert ".git" not in full.relative_to(root).parts


# --------------------------------------------------------------------------- read, list, search


def test_read_file_returns_text_and_refuses_binaries(root: Path) -> None:
    """Text comes back as is; a binary file or a folder is a FileToolError for the model."""
    assert file_tools.read_file(root, "README.md") == "hello\nworld\n"
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(FileToolError, match="binary"):
        file_tools.read_file(root, "blob.bin")
    with pytest.raises(FileToolError, match="directory"):
        file_tools.read_file(root, "src")
    with pytest.raises(FileToolError):
        file_tools.read_file(root, "missing.txt")


def test_read_file_truncates_huge_files(root: Path) -> None:
    """Files past the read limit are cut, with a note telling the model so."""
    (root / "big.txt").write_text("a" * (file_tools.MAX_READ_BYTES + 10))
    text = file_tools.read_file(root, "big.txt")
    assert text.endswith("bytes]") and len(text) < file_tools.MAX_READ_BYTES + 100


def test_list_files_skips_git_and_does_not_follow_symlinked_dirs(root: Path) -> None:
    """The listing holds the worktree's files only: no .git content, nothing reached through link_out."""
    listing = file_tools.list_files(root).splitlines()
    assert "src/pkg/mod.py" in listing and "README.md" in listing
    assert not any(line.startswith(".git") or "secret" in line for line in listing)
    assert file_tools.list_files(root, "src") == "src/pkg/mod.py"


def test_search_finds_lines_and_rejects_bad_regex(root: Path) -> None:
    """Matches come back as path:line: text; an invalid pattern is a FileToolError."""
    assert file_tools.search(root, r"return \d") == "src/pkg/mod.py:2:     return 1"
    assert file_tools.search(root, "secret") == "(no matches)"
    with pytest.raises(FileToolError, match="regular expression"):
        file_tools.search(root, "(")


# --------------------------------------------------------------------------- write, edit


def test_write_file_creates_parents_atomically_and_keeps_mode(root: Path) -> None:
    """New files get their folders; an existing executable keeps its mode; no temp file remains."""
    assert file_tools.write_file(root, "new/deep/x.txt", "data") == "wrote 4 bytes to new/deep/x.txt"
    assert (root / "new" / "deep" / "x.txt").read_text() == "data"
    script = root / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    file_tools.write_file(root, "run.sh", "#!/bin/sh\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755 and script.read_text() == "#!/bin/sh\n"
    assert not [p for p in root.rglob("*.tmp")]


def test_write_through_escaping_symlinks_is_refused(root: Path, tmp_path: Path) -> None:
    """Writing via a symlink (file, folder or dangling) that points outside changes nothing outside."""
    for rel in ("file_out", "link_out/secret.txt", "dangling_out", "../outside/x.txt"):
        with pytest.raises(GateDenied):
            file_tools.write_file(root, rel, "pwned")
    assert (tmp_path / "outside" / "secret.txt").read_text() == "top secret\n"
    assert not (tmp_path / "outside" / "new.txt").exists()


def test_edit_file_replaces_one_exact_occurrence(root: Path) -> None:
    """old→new must match exactly once; zero or several matches leave the file untouched."""
    assert file_tools.edit_file(root, "src/pkg/mod.py", "return 1", "return 2") == "edited src/pkg/mod.py"
    assert (root / "src/pkg/mod.py").read_text() == "def f():\n    return 2\n"
    (root / "dup.txt").write_text("x x")
    with pytest.raises(FileToolError, match="2 times"):
        file_tools.edit_file(root, "dup.txt", "x", "y")
    with pytest.raises(FileToolError, match="not found"):
        file_tools.edit_file(root, "dup.txt", "zzz", "y")
    with pytest.raises(FileToolError, match="empty"):
        file_tools.edit_file(root, "dup.txt", "", "y")
    assert (root / "dup.txt").read_text() == "x x"


def test_edit_file_refuses_non_utf8_rather_than_corrupting(root: Path) -> None:
    """A latin-1 file is not rewritten through a lossy decode."""
    (root / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(FileToolError, match="UTF-8"):
        file_tools.edit_file(root, "latin.txt", "caf", "tea")
    assert (root / "latin.txt").read_bytes() == "café".encode("latin-1")


def test_edit_keeps_crlf_line_endings(root: Path) -> None:
    """Bytes outside the replaced text are preserved exactly (no newline translation)."""
    (root / "win.txt").write_bytes(b"a\r\nb\r\n")
    file_tools.edit_file(root, "win.txt", "b", "c")
    assert (root / "win.txt").read_bytes() == b"a\r\nc\r\n"


def test_root_itself_must_exist(tmp_path: Path) -> None:
    """A missing root is an OSError from resolve (the caller checked the worktree first)."""
    with pytest.raises(OSError):
        resolve_inside(tmp_path / "missing", "a.txt")
