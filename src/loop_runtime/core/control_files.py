"""The one definition of what controls a loop, and of what is git's own.

Why one module: an agent that can edit what the runtime reads as configuration or prompt
(its registry entry, its budget, its gate, its verifier, its skills, its state file, the
kill switch) can raise its own limits or rewrite its reviewer. Such a change escalates at
every autonomy level. The diff policy, the outside-change guard and the runtime's own
writers all ask this module, so a new control file is added in exactly one place.

The set is derived from the project (every registry pattern's state file, the kill-switch
files) by a composition root and handed in as plain data; :func:`control_set` builds it.

Paths are compared the way the most permissive filesystem would see them: case-folded
(macOS and Windows are case-insensitive), Unicode NFC (macOS stores NFD), without the
characters HFS+ ignores, with Windows' trailing dots and spaces and ``::$DATA`` stream
suffixes removed, ``\\`` as ``/``, and ``./`` / ``//`` collapsed. A spelling that the
user's filesystem would resolve to a control file is a control file.

Pure: strings in, strings out.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CONTROL_NAMES",
    "ControlSet",
    "KILL_SWITCH_GLOB",
    "RUNTIME_DIRS",
    "SPINE_FILES",
    "control_set",
    "git_component",
    "normalise",
    "normalise_segment",
]

# Characters HFS+/APFS ignore in names (git's own is_hfs_dotgit list) and other zero-width ones.
_IGNORABLE = dict.fromkeys([0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
                            0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF, 0x200B, 0x00AD, 0x2060])
_STREAM = re.compile(r":(?:[^/]*)$")  # NTFS alternate data stream: name::$DATA, name:stream
_DRIVE = re.compile(r"^[A-Za-z]:")

SPINE_FILES: tuple[str, ...] = ("loop-run-log.md", "loop-ledger.json", "docs/last-run.json")
"""Files the runtime itself rewrites in the main checkout every tick (besides the state files)."""

KILL_SWITCH_GLOB = "loop-pause-*"
"""The kill-switch files (``loop-pause-all``, ``loop-pause-<pattern>``)."""

RUNTIME_DIRS: tuple[str, ...] = (".loop-worktrees", ".loop-runtime", ".loop-context", ".loop-sandbox")
"""Runtime bookkeeping folders at the root: nothing inside them is ever part of a change."""

# File names that are control files wherever they sit (a monorepo keeps one loop per package;
# git reads a nested .gitattributes, and its filters run code).
CONTROL_NAMES: tuple[str, ...] = (
    "LOOP.md", "STATE.md", "loop-budget.md", "gate.yaml", "promotion.yaml", "repair.yaml", "loop-runtime.toml",
    "loop-ledger.json", "loop-run-log.md", "loop-constraints.md", "AGENTS.md", "CLAUDE.md", ".mcp.json",
    ".gitattributes", ".gitmodules", ".lfsconfig",
)
# Paths (sequences of segments) that are control files or folders wherever they sit.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("patterns/registry.yaml", "the pattern registry"),
    ("docs/last-run.json", "the last-run record"),
)
# Folders whose whole content is control: agent host configuration (settings, hooks,
# agents/verifiers, skills, commands) and CI workflows — at any depth.
_DIRS: tuple[tuple[str, str], ...] = (
    (".claude", "agent configuration (.claude: settings, agents, skills, hooks)"),
    (".codex", "agent configuration (.codex: config, agents, skills)"),
    (".grok", "agent configuration (.grok: skills)"),
    (".github/workflows", "a CI workflow"),
)
# Folders that are control only at the project root (``skills/`` deeper down is ordinary code).
_ROOT_DIRS: tuple[tuple[str, str], ...] = (
    ("skills", "a skill (skills/)"),
    *((d, f"inside the runtime's {d}/ folder") for d in RUNTIME_DIRS),
)


def normalise_segment(seg: str) -> str:
    """One path segment as a case-insensitive, Windows- and HFS-forgiving filesystem would see it."""
    s = unicodedata.normalize("NFC", seg).translate(_IGNORABLE)
    s = _STREAM.sub("", s) if ":" in s else s
    s = s.rstrip(" .") if s not in (".", "..") else s
    return s.casefold()


def normalise(path: str) -> str:
    """``path`` relative to the project root, normalised; ``..`` segments are kept (and never match)."""
    p = path.replace("\\", "/")
    p = _DRIVE.sub("", p)
    segs = [normalise_segment(s) for s in p.split("/")]
    return "/".join(s for s in segs if s not in ("", "."))


def git_component(path: str) -> str | None:
    """The segment of ``path`` that a filesystem could resolve to ``.git`` (``.GIT``, ``.git.``,
    ``.git ``, the 8.3 name ``GIT~1``, with HFS-ignorable characters), or None."""
    for raw in path.replace("\\", "/").split("/"):
        seg = normalise_segment(raw)
        if seg == ".git" or re.fullmatch(r"git~\d+", seg):
            return raw
    return None


def _is_under(segs: list[str], prefix: list[str]) -> bool:
    n = len(prefix)
    return any(segs[i:i + n] == prefix for i in range(len(segs) - n + 1))


@dataclass(frozen=True)
class ControlSet:
    """Everything the runtime reads as configuration or prompt, matched case-insensitively.

    ``exact`` holds root-relative paths given by the project (every registry pattern's
    state file, configured kill switches); their file names match at any depth too.
    """

    exact: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()

    def matches(self, path: str) -> str | None:
        """Why ``path`` (root-relative, any spelling) is a control file, or None."""
        norm = normalise(path)
        if not norm:
            return None
        segs = norm.split("/")
        name = segs[-1]
        if norm in self.exact:
            return f"the loop's control file {norm}"
        if name in self.names:
            return f"the loop's control file {name}"
        if fnmatch.fnmatchcase(name, KILL_SWITCH_GLOB):
            return "a kill-switch file"
        for suffix, why in _SUFFIXES:
            parts = suffix.split("/")
            if segs[-len(parts):] == parts:
                return why
            if segs[-1:] == parts[:1]:  # the folder itself (replaced by a symlink, say)
                return f"the folder holding {why}"
        for folder, why in _DIRS:  # the folder itself or anything inside it
            if _is_under(segs, folder.split("/")):
                return why
        for folder, why in _ROOT_DIRS:
            if segs[0] == folder:
                return why
        return None

    def with_paths(self, paths: Iterable[str]) -> ControlSet:
        """This set plus more root-relative control paths."""
        more = control_set(extra=paths)
        return ControlSet(exact=self.exact | more.exact, names=self.names | more.names)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.matches(path) is not None


def control_set(*, state_files: Iterable[str] = (), kill_switches: Iterable[str] = (),
                extra: Iterable[str] = ()) -> ControlSet:
    """The control set of one project: the fixed names plus its registry's state files and
    kill switches (and any ``extra`` paths a caller knows the runtime reads)."""
    exact = {normalise(p) for p in (*state_files, *kill_switches, *extra) if p and normalise(p)}
    names = {normalise_segment(n) for n in CONTROL_NAMES}
    names |= {p.rsplit("/", 1)[-1] for p in exact}
    return ControlSet(exact=frozenset(exact), names=frozenset(names))


DEFAULT = control_set()
"""The fixed part, for callers that know no project (tests, ``check_diff`` without a set)."""
