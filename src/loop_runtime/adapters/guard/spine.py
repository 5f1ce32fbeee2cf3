"""The spine: files the runtime itself writes while agents run (state files, run log, ledger, kill
switches, runtime data). They are watched by content against the runtime's own write records, so
another loop's write is not an outside change and an agent's forged one is.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

from .files import KEEP_TOTAL, FileState, OutsideSnapshot, _Quarantine, _read_state, _write_back

RUNTIME_DATA = (".loop-runtime/test-baselines/*.json", ".loop-runtime/promotion-evidence.json",
                ".loop-worktrees/manifest.json")
"""Runtime data in the main checkout that decides what the runtime does next: a forged base-test
baseline, promotion evidence or worktree manifest is an outside change like an edited state file."""


def spine_patterns(ignore: Iterable[str]) -> tuple[str, ...]:
    """The ignored paths that are *files the runtime writes* (not another process's temp files or
    loop-context's folder): still watched, by content against the runtime's write records."""
    from ..locked_files import TEMP_MARK

    keep = [p for p in ignore if TEMP_MARK not in p and not p.startswith(".loop-context")]
    return (*keep, *RUNTIME_DATA)


def _spine(root: Path, patterns: Iterable[str]) -> dict[str, tuple[FileState, frozenset[str]]]:
    """Each file with the digests the runtime's write record allowed while it was read (another
    process's runtime write in flight must not look like an agent's)."""
    from ..locked_files import written_digests

    paths: set[str] = set()
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            paths.update(p.relative_to(root).as_posix() for p in root.glob(pat))
        else:
            paths.add(pat)
    budget = [KEEP_TOTAL]
    out: dict[str, tuple[FileState, frozenset[str]]] = {}
    for p in sorted(paths):
        out[p] = written_digests(root, root / p, lambda p=p: _read_state(root / p, budget))
    return out


def _spine_changes(before: OutsideSnapshot, after: OutsideSnapshot) -> list[str]:
    """A watched runtime file whose content is neither what it was nor what the runtime last wrote."""
    return [line for _, line in _spine_changed(before, after)]


def _spine_changed(before: OutsideSnapshot, after: OutsideSnapshot) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted(set(before.spine) | set(after.spine)):
        b_state = before.spine.get(path, (FileState("missing"), frozenset()))[0]
        a_state, recorded = after.spine.get(path, (FileState("missing"), frozenset()))
        if b_state.same_as(a_state) or (b_state.kind == a_state.kind == "missing"):
            continue
        if a_state.kind == "missing" and "deleted" in recorded:
            continue
        if a_state.kind == "file" and a_state.digest is not None and a_state.digest in recorded:
            continue
        what = ("deleted" if a_state.kind == "missing" else "created" if b_state.kind == "missing"
                else "rewritten")
        out.append((path, f"runtime file {path} {what} outside the runtime"))
    return out


def _restore_spine(root: Path, before: OutsideSnapshot, after: OutsideSnapshot, q: _Quarantine) -> list[str]:
    """Back to the runtime's last recorded write, else to the content before the run. A kill switch
    that appeared stays (pausing is the safe direction); it was reported."""
    from ...core.control_files import KILL_SWITCH_GLOB
    from ..locked_files import written_copy

    done: list[str] = []
    flagged = {path for path, _ in _spine_changed(before, after)}
    for path in sorted(flagged):
        target = root / path
        b_state = before.spine.get(path, (FileState("missing"), frozenset()))[0]
        try:
            if b_state.kind == "missing" and fnmatch.fnmatchcase(path, KILL_SWITCH_GLOB):
                done.append(f"kept the new kill switch {path}")
                continue
            if target.is_symlink() or target.is_file():
                q.copy(target, path)
            last = written_copy(root, target)
            if last is not None:
                state = FileState("file", (len(last), 0, 0, 0, b_state.sig[-1] if b_state.sig else 0o644), None, last)
                _write_back(target, state)
                done.append(f"restored {path} to the runtime's last write")
            elif b_state.kind == "missing":
                if target.is_symlink() or target.exists():
                    q.move(target, path)
                done.append(f"quarantined {path}")
            elif _write_back(target, b_state):
                done.append(f"restored {path}")
            else:
                done.append(f"NOT restored {path}")
        except OSError as exc:
            done.append(f"NOT restored {path}: {exc}")
    return done
