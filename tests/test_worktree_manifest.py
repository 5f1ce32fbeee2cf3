"""The loop-worktree manifest and lock formats, as text."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone, UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.formats.worktree_manifest import (
    LockFile,
    Manifest,
    WorktreeEntry,
    format_timestamp,
    is_expired,
    parse_lock,
    parse_manifest,
    paths_overlap,
    render_lock,
    render_manifest,
    set_status,
    upsert,
)

# What loop-worktree 1.2.0 writes after `create --run-id ci-1 --pattern ci-sweeper` (JSON.stringify(m, null, 2) + "\n").
TOOL_TEXT = """{
  "version": 1,
  "worktrees": [
    {
      "id": "ci-1",
      "path": ".loop-worktrees/ci-1",
      "branch": "loop/ci-1",
      "baseBranch": "main",
      "pattern": "ci-sweeper",
      "createdAt": "2026-07-07T12:00:00.123Z",
      "status": "active"
    }
  ]
}
"""


def _entry(i: str = "r1", status: str = "active", **kw: object) -> WorktreeEntry:
    return WorktreeEntry(id=i, path=f".loop-worktrees/{i}", branch=f"loop/{i}", base_branch="main",
                         pattern="ci-sweeper", created_at="2026-07-07T12:00:00.000Z", status=status, **kw)  # type: ignore[arg-type]


def test_parses_what_loop_worktree_writes() -> None:
    """The tool's manifest parses into entries with its camelCase keys mapped."""
    m = parse_manifest(TOOL_TEXT)
    assert m.version == 1
    (e,) = m.worktrees
    assert (e.id, e.path, e.branch, e.base_branch, e.pattern, e.status) == (
        "ci-1", ".loop-worktrees/ci-1", "loop/ci-1", "main", "ci-sweeper", "active")
    assert e.created_at == "2026-07-07T12:00:00.123Z" and e.base_commit is None


def test_render_is_byte_identical_to_the_tool() -> None:
    """Rendering a parsed manifest reproduces the tool's bytes exactly."""
    assert render_manifest(parse_manifest(TOOL_TEXT)) == TOOL_TEXT


def test_empty_manifest_renders_like_the_tool() -> None:
    """An empty manifest is `{ version: 1, worktrees: [] }` in JSON.stringify's layout."""
    assert render_manifest(Manifest()) == '{\n  "version": 1,\n  "worktrees": []\n}\n'
    assert parse_manifest("") == Manifest()


def test_base_commit_and_unknown_keys_survive_a_round_trip() -> None:
    """Our baseCommit and anyone else's keys are kept, after the tool's keys, in order."""
    raw = json.loads(TOOL_TEXT)
    raw["worktrees"][0]["baseCommit"] = "a" * 40
    raw["worktrees"][0]["note"] = {"by": "human"}
    raw["owner"] = "ops"
    text = json.dumps(raw, indent=2) + "\n"
    m = parse_manifest(text)
    assert m.worktrees[0].base_commit == "a" * 40
    assert m.worktrees[0].extra == {"note": {"by": "human"}}
    assert render_manifest(m) == text


def test_non_ascii_is_written_as_is() -> None:
    """JSON.stringify does not escape non-ASCII characters, so neither do we."""
    m = Manifest(worktrees=(replace(_entry("r1"), pattern="déjà-vu"),))
    assert '"pattern": "déjà-vu"' in render_manifest(m)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "not valid JSON"),
        ('{"version": 2, "worktrees": []}', "version: 1"),
        ('{"version": 1, "worktrees": {}}', "version: 1"),
        ('{"version": 1, "worktrees": [3]}', "worktrees[0]"),
        (TOOL_TEXT.replace('"active"', '"done"'), "worktrees[0].status invalid: 'done'"),
        (TOOL_TEXT.replace('"branch": "loop/ci-1"', '"branch": 7'), "worktrees[0].branch invalid: 7"),
    ],
)
def test_bad_manifests_raise_config_error_naming_the_field(text: str, needle: str) -> None:
    """Every malformed manifest is a one-line ConfigError naming the file and field."""
    with pytest.raises(ConfigError) as err:
        parse_manifest(text, file=".loop-worktrees/manifest.json")
    assert needle in str(err.value)
    assert str(err.value).startswith(".loop-worktrees/manifest.json: ")
    assert "\n" not in str(err.value)


def test_duplicate_ids_are_rejected() -> None:
    """Two entries with one id would make `mark` ambiguous."""
    raw = json.loads(TOOL_TEXT)
    raw["worktrees"].append(raw["worktrees"][0])
    with pytest.raises(ConfigError, match="duplicate"):
        parse_manifest(json.dumps(raw))


def test_upsert_replaces_in_place_and_appends_new_ids() -> None:
    """Like the tool's create: same id replaced, new id appended."""
    m = upsert(upsert(Manifest(), _entry("a")), _entry("b"))
    m = upsert(m, _entry("a", status="rejected"))
    assert [(e.id, e.status) for e in m.worktrees] == [("a", "rejected"), ("b", "active")]


def test_set_status_checks_status_and_id() -> None:
    """`mark` semantics: a valid status for an existing id, anything else is a ConfigError."""
    m = set_status(Manifest(worktrees=(_entry("a"),)), "a", "escalated")
    assert m.worktrees[0].status == "escalated"
    with pytest.raises(ConfigError, match="valid: active, rejected, escalated, merged, stale"):
        set_status(m, "a", "fix-proposed")
    with pytest.raises(ConfigError, match="no worktree"):
        set_status(m, "zzz", "stale")


def test_timestamps_look_like_javascript_to_iso_string() -> None:
    """createdAt uses Date.toISOString(): UTC, milliseconds, Z."""
    dt = datetime(2026, 7, 7, 14, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(dt) == "2026-07-07T12:00:00.987Z"


def test_lock_files_parse_and_expire() -> None:
    """A lock expires only at a parseable expiresAt; no TTL means it never expires."""
    now = datetime(2026, 7, 7, 12, tzinfo=UTC)
    text = ('{\n  "owner": "dependency-sweeper",\n  "paths": [\n    "package.json"\n  ],\n'
            '  "lockedAt": "2026-07-07T06:00:00.000Z",\n  "expiresAt": "2026-07-07T12:00:00.000Z"\n}\n')
    lock = parse_lock(text, file="locks/dependency-sweeper.json")
    assert lock == LockFile("dependency-sweeper", ("package.json",), "2026-07-07T06:00:00.000Z",
                            "2026-07-07T12:00:00.000Z")
    assert render_lock(lock) == text
    assert is_expired(lock, now)
    assert not is_expired(lock, now - timedelta(seconds=1))
    assert not is_expired(LockFile("x", ("a",), "t"), now)
    assert not is_expired(LockFile("x", ("a",), "t", "not a date"), now)


@pytest.mark.parametrize("text", ["[]", '{"owner": "a/b", "paths": [], "lockedAt": ""}',
                                  '{"owner": "a", "paths": "x", "lockedAt": ""}', "nope"])
def test_corrupt_locks_are_errors(text: str) -> None:
    """A corrupt lock is never silently ignored (that would drop someone's claim)."""
    with pytest.raises(ConfigError):
        parse_lock(text, file="locks/a.json")


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/**", "src/foo.ts", True),
        ("docs/api", "docs/apidocs.md", False),
        ("package.json", "package.json", True),
        ("package.json", "package-lock.json", False),
        ("src/*/x.ts", "src/a/x.ts", True),
        ("src/a", "src/a/b.ts", False),
        ("**", "anything/at/all.py", True),
        ("", "x", False),
        ("a//b", "a/b", True),
    ],
)
def test_paths_overlap_follows_loop_worktree(a: str, b: str, overlap: bool) -> None:
    """Segment rule from lock.js, including its README examples."""
    assert paths_overlap(a, b) is overlap


_seg = st.sampled_from(["src", "a", "b", "*", "**", "x.ts", "docs"])
_glob = st.lists(_seg, min_size=0, max_size=4).map("/".join)


# Invariant: overlap is symmetric, and every path overlaps itself.
@given(_glob, _glob)
def test_paths_overlap_is_symmetric(a: str, b: str) -> None:
    """pathsOverlap(a, b) == pathsOverlap(b, a), and a path always overlaps itself."""
    assert paths_overlap(a, b) == paths_overlap(b, a)
    assert paths_overlap(a, a)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_entries = st.lists(
    st.builds(lambda i, p, s, c: replace(_entry(f"r{i}", status=s, base_commit=c), pattern=p or "p"),
        st.integers(0, 50), _text, st.sampled_from(["active", "rejected", "escalated", "merged", "stale"]),
        st.one_of(st.none(), st.text("0123456789abcdef", min_size=40, max_size=40))),
    max_size=5, unique_by=lambda e: e.id,
)


# Invariant: render then parse gives back the same manifest.
@settings(max_examples=60)
@given(_entries)
def test_render_parse_round_trip(entries: list[WorktreeEntry]) -> None:
    """parse(render(m)) == m for any manifest we can build."""
    m = Manifest(worktrees=tuple(entries))
    assert parse_manifest(render_manifest(m)) == m


# Invariant: any text either parses or raises ConfigError, never anything else.
@settings(max_examples=150)
@given(st.one_of(st.text(max_size=80), st.builds(lambda v: json.dumps({"version": 1, "worktrees": v}),
                                                 st.lists(st.dictionaries(st.text(max_size=8),
                                                                          st.one_of(st.text(max_size=5),
                                                                                    st.integers())),
                                                          max_size=3))))
def test_parse_never_crashes(text: str) -> None:
    """parse_manifest returns a Manifest or raises ConfigError."""
    with contextlib.suppress(ConfigError):
        assert isinstance(parse_manifest(text), Manifest)
