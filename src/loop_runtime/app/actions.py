"""What a human does to a running project: kill, resume, approve, reject, top up.

The CLI and the dashboard call these same functions, so a button and a command have
the same effect. None of them calls an agent backend: approving an escalation applies
exactly the diff a human reviewed.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..adapters import locked_files
from ..adapters.state_files import at_rest, project_secrets
from ..core import killswitch
from ..core.redact import clip
from ..core.budget import utc_day
from ..errors import ConfigError, GitError, LoopError
from .runtime import Project, now_utc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import EscalationStore, Store


def _write(project: Project, rel: str, text: str) -> None:
    """Atomically write a project file, redacted like every file the runtime writes."""
    locked_files.write(project.root, project.root / rel, at_rest(rel, text, project_secrets(project.root)))


def _switch_file(pattern: str | None) -> str:
    return killswitch.ALL if pattern is None else killswitch.pattern_switch(pattern)


def kill(project: Project, pattern: str | None, *, reason: str = "", now: datetime | None = None) -> str:
    """Write the kill switch: ``loop-pause-all`` (all loops) or ``loop-pause-<id>`` at the root."""
    if pattern is not None:
        project.pattern(pattern)  # unknown ids fail with the valid list
    name = _switch_file(pattern)
    when = (now or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
    _write(project, name, f"paused by {getpass.getuser()} at {when}" + (f": {reason}" if reason else "")
                 + "\nDelete this file (or run `loop-runtime resume`) to resume.\n")
    _event(project, "kill", {"scope": pattern or "all", "file": name, "reason": reason}, pattern)
    return name


def resume(project: Project, pattern: str | None) -> tuple[list[str], list[str]]:
    """Clear the root kill-switch file(s). Returns (cleared, still-set-by-hand) descriptions.

    Flags written by hand inside LOOP.md or a state file are human-owned: they are
    reported, not edited.
    """
    cleared: list[str] = []
    names = [_switch_file(pattern)] if pattern else [killswitch.ALL] + [
        killswitch.pattern_switch(p.id) for p in project.registry.patterns
    ]
    for name in names:
        path = project.root / name
        if path.exists() and locked_files.remove(project.root, path):  # recorded: the guard knows it was us
            cleared.append(name)
    remaining: list[str] = []
    ids = [pattern] if pattern else [p.id for p in project.registry.patterns]
    for pid in ids:
        p = project.pattern(pid)
        texts = {n: project.read(n) for n in {p.state, "STATE.md", "LOOP.md"}}
        st = killswitch.evaluate(pid, state_file=p.state, texts=texts, root_files=set())
        if st.engaged and st.source and f"{st.source}" not in remaining:
            remaining.append(f"{st.source} (a flag line: edit the file to clear it)")
    _event(project, "resume", {"scope": pattern or "all", "cleared": cleared}, pattern)
    return cleared, remaining


def _event(project: Project, kind: str, payload: dict[str, Any], pattern: str | None) -> None:
    if not (project.root / ".loop-runtime" / "runtime.db").exists():
        return
    from ..adapters.store.sqlite import RunStore

    store = RunStore.open(project.root)
    try:
        store.add_event(kind, payload, now_utc(), pattern=pattern)
    finally:
        store.close()


def open_store(project: Project) -> Any:
    from ..adapters.store.sqlite import RunStore

    return RunStore.open(project.root)


def _existing_store(project: Project) -> Any:
    """The store of a project that has one; escalations cannot exist without it (and we create none)."""
    if not (project.root / ".loop-runtime" / "runtime.db").is_file():
        raise ConfigError(".loop-runtime/runtime.db", "escalation", None,
                          message="no loop-runtime store in this project: there is no escalation to decide")
    return open_store(project)


def _escalation(store: EscalationStore, esc_id: str, *, allow: tuple[str, ...] = ("open",)) -> Any:
    esc = store.get_escalation(esc_id)
    if esc is None:
        valid = [e.id for e in store.list_escalations("open")]
        raise ConfigError(".loop-runtime/runtime.db", "escalation", esc_id, valid=valid or "(none open)")
    if esc.status not in allow:
        hint = ""
        if esc.status == "approved":
            hint = f"; `loop-runtime approve {esc_id} --merge` merges its branch if it is not merged yet"
        raise LoopError(f"escalation {esc_id} is already {esc.status}{hint}")
    return esc


def spine_files(project: Project) -> tuple[str, ...]:
    """The runtime's own files in the main checkout (state files, run log, ledger, kill switch …).

    A merge may carry them over (or commit them) — they are not the human's work in progress.
    """
    from .runner import runtime_written

    return runtime_written(project)


def _is_spine(path: str, patterns: tuple[str, ...]) -> bool:
    """``path`` is one of the runtime's files; a pattern's ``*`` never crosses a ``/`` (so a user's
    ``loop-pause-notes/todo.py`` is not mistaken for the kill-switch file ``loop-pause-*``)."""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(path, p) and path.count("/") == p.count("/") for p in patterns)


def _dirty_paths(root: Path) -> list[str]:
    """Tracked files with uncommitted changes in the main checkout (staged or not)."""
    from ..adapters.git import decode, run_git_bytes

    out = run_git_bytes(["status", "--porcelain", "-z", "--untracked-files=no"], root,
                        env={"GIT_OPTIONAL_LOCKS": "0"})
    paths: list[str] = []
    parts = out.split(b"\0")
    i = 0
    while i < len(parts):
        e = parts[i]
        if len(e) > 3:
            paths.append(decode(e)[3:])
            if e[:1] in (b"R", b"C"):  # a rename/copy is followed by its source path
                i += 1
                if i < len(parts) and parts[i]:
                    paths.append(decode(parts[i]))
        i += 1
    return paths


def merge_preflight(project: Project, esc_id: str, run_id: str | None = None) -> list[str]:
    """Refuse a merge (before anything changes) when the main checkout is not on the attempt's base
    branch or holds someone's uncommitted work.

    Returns the dirty spine files that the merge will carry over or commit.
    """
    from ..adapters.git import run_git
    from ..adapters.git_workspace import GitWorkspace

    handle = GitWorkspace(project.root).handle_for(run_id) if run_id else None
    if handle is not None and handle.base_branch:
        head = run_git(["symbolic-ref", "-q", "--short", "HEAD"], project.root) if _on_branch(project.root) else ""
        if head != handle.base_branch:
            raise LoopError(f"not merging {esc_id}: the main checkout is on {head or 'a detached HEAD'}, not "
                            f"{handle.base_branch}; `git switch {handle.base_branch}`, then run "
                            f"`loop-runtime approve {esc_id} --merge`")
    dirty = _dirty_paths(project.root)
    spine = spine_files(project)
    foreign = [p for p in dirty if not _is_spine(p, spine)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise LoopError(f"not merging {esc_id}: the main checkout has uncommitted changes to {shown} "
                        f"(not loop-runtime's own files); commit or stash them, then run "
                        f"`loop-runtime approve {esc_id} --merge`")
    return [p for p in dirty if _is_spine(p, spine)]


def _on_branch(root: Path) -> bool:
    from ..adapters.git import git_ok

    return git_ok(["symbolic-ref", "-q", "HEAD"], root)


def _merge(project: Project, ws: Any, handle: Any, spine_dirty: list[str]) -> dict[str, Any]:
    """Merge an approved branch; the runtime's dirty files are carried over, or committed when the branch
    touches them (git would refuse to overwrite them), and the result says which."""
    from ..adapters.git import run_git

    touched = set(run_git(["diff", "--name-only", "-z", f"HEAD...{handle.branch}"], project.root).split("\0"))
    to_commit = [p for p in spine_dirty if p in touched]
    carried = [p for p in spine_dirty if p not in touched]
    info: dict[str, Any] = {"carried": carried, "committed": to_commit, "stateCommit": None}
    if to_commit:
        run_git(["add", "--", *to_commit], project.root)
        run_git(["commit", "-q", "-m", f"loop-runtime: record loop state before merging {handle.branch}", "--",
                 *to_commit], project.root, env=ws._identity())
        info["stateCommit"] = run_git(["rev-parse", "HEAD"], project.root)
    merge_ws = type(ws)(project.root, own_files=carried)
    try:
        info["merge"] = merge_ws.merge(handle)
    except GitError as e:
        conflicts = _conflicts(project.root, handle.branch)
        if info["stateCommit"] and run_git(["rev-parse", "HEAD"], project.root) == info["stateCommit"]:
            run_git(["reset", "-q", "HEAD~1"], project.root)  # undo our own commit: the files stay as they were
        if not conflicts:
            raise
        raise LoopError(f"not merging {handle.branch} into {handle.base_branch}: it conflicts in "
                        f"{', '.join(conflicts[:5])}; nothing was merged (the reviewed change is committed on "
                        f"{handle.branch}) — merge it by hand with `git merge {handle.branch}`") from e
    info["into"] = handle.base_branch
    return info


def _conflicts(root: Path, branch: str) -> list[str]:
    """Paths where merging ``branch`` into HEAD conflicts (``git merge-tree``; empty if it cannot tell)."""
    import subprocess

    proc = subprocess.run(["git", "merge-tree", "--write-tree", "--name-only", "--no-messages", "HEAD", branch],
                          cwd=root, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 1:
        return []
    return [line for line in proc.stdout.splitlines()[1:] if line.strip()]


def _already_merged(root: Path, branch: str) -> bool:
    from ..adapters.git import git_ok

    return git_ok(["merge-base", "--is-ancestor", f"refs/heads/{branch}", "HEAD"], root)


def approve(project: Project, esc_id: str, *, merge: bool = False, by: str | None = None,
            store: Store | None = None) -> dict[str, Any]:
    """Apply the held change exactly as reviewed: commit on its branch (merge too with ``merge``).

    An escalation approved earlier without ``merge`` can be merged later the same way.
    """
    from ..adapters.git_workspace import GitWorkspace
    from ..formats.state import parse_state, render_state, set_human_decision
    from .preflight import preflight_state_write

    own = store is None
    store = store or _existing_store(project)
    try:
        esc = _escalation(store, esc_id, allow=("open", "approved") if merge else ("open",))
        if esc.status == "approved":
            return _merge_later(project, store, esc)
        preflight_state_write(project, esc.pattern)  # before the branch, the commit, the decision
        ctx = esc.context
        who = by or getpass.getuser()
        result: dict[str, Any] = {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id}
        spine_dirty = merge_preflight(project, esc_id, ctx.get("worktreeRunId")) if merge and esc.diff.strip() else []
        if esc.diff.strip():
            ws = GitWorkspace(project.root)
            run_id = ctx.get("worktreeRunId") or f"{esc.pattern}-approved-{esc_id}"
            message = clip(f"loop({esc.pattern}): {esc.title}", 72) + f"\n\nApproved-by: {who} ({esc_id})"
            handle = ws.apply_held(run_id, esc.diff, esc.pattern, message)
            result["branch"] = handle.branch
            result["commit"] = _head(project.root, handle.branch)
            result["worktreeRunId"] = run_id
            if merge:
                result.update(_merge(project, ws, handle, spine_dirty))
                result["removed"] = ws.remove(run_id, keep_branch=True, status="merged")
        now = now_utc()
        store.resolve_escalation(esc_id, status="approved", decided_by=who, reason="approved", at=now, result=result)
        merged = " (merged)" if result.get("merge") else ""
        _state_decision(project, esc, f"approved by {who} on {now:%Y-%m-%d}{merged}",
                        parse_state, render_state, set_human_decision)
        store.add_event("escalation.approved", result, now, pattern=esc.pattern)
        return result
    finally:
        if own:
            store.close()


def _merge_later(project: Project, store: Store | None, esc: Any) -> dict[str, Any]:
    """``approve <id> --merge`` on an escalation approved earlier: merge its branch now (once)."""
    from ..adapters.git_workspace import GitWorkspace

    prior = dict(esc.result or {})
    branch = prior.get("branch")
    if not branch:
        raise LoopError(f"escalation {esc.id} was approved without a change to merge (no branch)")
    run_id = prior.get("worktreeRunId") or esc.context.get("worktreeRunId") or branch.removeprefix("loop/")
    ws = GitWorkspace(project.root)
    handle = ws.handle_for(run_id)
    if handle is None or handle.branch != branch:
        raise LoopError(f"escalation {esc.id}: no record of {branch} in .loop-worktrees/manifest.json; "
                        f"merge it by hand with `git merge {branch}`")
    if not ws._branch_exists(branch):
        raise LoopError(f"escalation {esc.id}: branch {branch} no longer exists; nothing to merge")
    if _already_merged(project.root, branch):
        raise LoopError(f"escalation {esc.id} is already approved and {branch} is already merged into HEAD")
    spine_dirty = merge_preflight(project, esc.id, run_id)
    result: dict[str, Any] = {"id": esc.id, "pattern": esc.pattern, "item": esc.item_id, "branch": branch,
                              "commit": _head(project.root, branch), "worktreeRunId": run_id, "later": True}
    result.update(_merge(project, ws, handle, spine_dirty))
    result["removed"] = ws.remove(run_id, keep_branch=True, status="merged")
    now = now_utc()
    from ..formats.state import parse_state, render_state, set_human_decision

    approved = f"{esc.decided_at:%Y-%m-%d}" if hasattr(esc.decided_at, "strftime") else "earlier"
    _state_decision(project, esc, f"approved by {esc.decided_by or 'a human'} on {approved}; merged on {now:%Y-%m-%d}",
                    parse_state, render_state, set_human_decision)
    store.add_event("escalation.merged", result, now, pattern=esc.pattern)
    return result


def reject(project: Project, esc_id: str, *, reason: str, by: str | None = None, store: Store | None = None,
           keep_branch: bool = False) -> dict[str, Any]:
    """Discard the held change: its worktree and patch are removed, its branch deleted unless ``keep_branch``
    (then the held change is committed on it first, so the kept branch holds what was reviewed)."""
    from ..formats.state import parse_state, render_state, set_human_decision
    from .preflight import preflight_state_write

    own = store is None
    store = store or _existing_store(project)
    try:
        esc = _escalation(store, esc_id)
        preflight_state_write(project, esc.pattern)
        who = by or getpass.getuser()
        run_id = esc.context.get("worktreeRunId")
        removed: dict[str, Any] = {}
        if run_id and project.is_git:
            from ..adapters.git_workspace import GitWorkspace

            ws = GitWorkspace(project.root)
            if keep_branch and esc.diff.strip():
                message = clip(f"loop({esc.pattern}): {esc.title}", 72) + f"\n\nRejected-by: {who} ({esc_id})"
                ws.apply_held(run_id, esc.diff, esc.pattern, message)
            removed = ws.remove(run_id, keep_branch=keep_branch)
        now = now_utc()
        store.resolve_escalation(esc_id, status="rejected", decided_by=who, reason=reason, at=now,
                                 result={"removed": removed})
        _state_decision(project, esc, f"rejected by {who} on {now:%Y-%m-%d}: {reason}", parse_state, render_state,
                        set_human_decision)
        store.add_event("escalation.rejected", {"id": esc_id, "reason": reason, "removed": removed}, now,
                        pattern=esc.pattern)
        return {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id, "reason": reason, "removed": removed}
    finally:
        if own:
            store.close()


def _state_decision(project: Project, esc: Any, decision: str, parse_state: Any, render_state: Any,
                    set_human_decision: Any) -> None:
    from ..core.sanitize import clean

    state_file = project.pattern(esc.pattern).state

    def decide(text: str | None) -> str | None:
        if text is None:
            return None
        doc = set_human_decision(parse_state(text, file=state_file), esc.item_id, clean(decision, 200), ref=esc.id)
        return at_rest(state_file, render_state(doc), project_secrets(project.root))

    locked_files.update(project.root, project.root / state_file, decide)


def _head(root: Path, branch: str) -> str | None:
    import subprocess

    proc = subprocess.run(["git", "rev-parse", branch], cwd=root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    return proc.stdout.strip() or None


def topup(project: Project, pattern: str, tokens: int, *, reason: str, store: Store | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """Raise today's cap of one pattern; recorded in the store and the state file."""
    from ..formats.state import append_section_line, parse_state, render_state

    if tokens <= 0:
        raise ConfigError("topup", "tokens", tokens, message=f"tokens must be positive: {tokens}")
    from .preflight import preflight_state_write

    p = project.pattern(pattern)
    preflight_state_write(project, pattern)  # before the store records a top-up the state file cannot
    now = now or now_utc()
    own = store is None
    store = store or open_store(project)
    try:
        store.add_topup(pattern, utc_day(now), tokens, reason, now)
        store.add_event("budget.topup", {"tokens": tokens, "reason": reason}, now, pattern=pattern)
    finally:
        if own:
            store.close()
    from ..core.sanitize import clean

    line = f"- {now:%Y-%m-%dT%H:%M:%SZ} +{tokens:,} tokens for {pattern}: {clean(reason, 120)}"

    def add(text: str | None) -> str | None:
        if text is None:
            return None
        return at_rest(p.state, render_state(append_section_line(parse_state(text, file=p.state), "Budget top-ups", line)),
                       project_secrets(project.root))

    locked_files.update(project.root, project.root / p.state, add)
    return {"pattern": pattern, "tokens": tokens, "reason": reason, "day": str(utc_day(now))}
