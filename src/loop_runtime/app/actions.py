"""What a human does to a running project: kill, resume, approve, reject, top up.

The CLI and the dashboard call these same functions, so a button and a command have
the same effect. None of them calls an agent backend: approving an escalation applies
exactly the diff a human reviewed.

Each takes the project's ``Services`` (or the project, for callers that have no services yet):
the store is the services' one, project files are written through a state writer that may
change exactly the file the action is about (``Services.file_writer``), and git is asked
through ``adapters.git``.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..adapters import locked_files
from ..core import killswitch
from ..core.redact import clip
from ..core.budget import utc_day
from ..errors import ConfigError, GitError, LoopError
from .runtime import Project, now_utc
from .services import Services, using

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..ports.store import EscalationStore, Store


def _project(source: Project | Services) -> Project:
    return source.project if isinstance(source, Services) else source


def _update(services: Services, rel: str, fn: Callable[[str | None], str | None]) -> None:
    """Read-modify-write one project file through a state writer allowed that file alone (locked, atomic,
    redacted like every file the runtime writes)."""
    services.file_writer(rel).update(rel, fn)


def _switch_file(pattern: str | None) -> str:
    return killswitch.ALL if pattern is None else killswitch.pattern_switch(pattern)


def kill(source: Project | Services, pattern: str | None, *, reason: str = "", now: datetime | None = None) -> str:
    """Write the kill switch: ``loop-pause-all`` (all loops) or ``loop-pause-<id>`` at the root."""
    project = _project(source)
    if pattern is not None:
        project.pattern(pattern)  # unknown ids fail with the valid list
    name = _switch_file(pattern)
    when = (now or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (f"paused by {getpass.getuser()} at {when}" + (f": {reason}" if reason else "")
            + "\nDelete this file (or run `loop-runtime resume`) to resume.\n")
    with using(source) as services:
        _update(services, name, lambda _old: text)
        _event(services, "kill", {"scope": pattern or "all", "file": name, "reason": reason}, pattern)
    return name


def resume(source: Project | Services, pattern: str | None) -> tuple[list[str], list[str]]:
    """Clear the root kill-switch file(s). Returns (cleared, still-set-by-hand) descriptions.

    Flags written by hand inside LOOP.md or a state file are human-owned: they are
    reported, not edited.
    """
    from .rules import hand_flag

    project = _project(source)
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
        st = hand_flag(project, pid, project.pattern(pid).state)
        if st.engaged and st.source and f"{st.source}" not in remaining:
            remaining.append(f"{st.source} (a flag line: edit the file to clear it)")
    with using(source) as services:
        _event(services, "resume", {"scope": pattern or "all", "cleared": cleared}, pattern)
    return cleared, remaining


def _event(services: Services, kind: str, payload: dict[str, Any], pattern: str | None) -> None:
    """Record a human's action in the store's feed, when the project has a store (kill creates none)."""
    store = services.existing_store()
    if store is not None:
        store.add_event(kind, payload, now_utc(), pattern=pattern)


def _existing_store(services: Services) -> Store:
    """The store of a project that has one; escalations cannot exist without it (and we create none)."""
    store = services.existing_store()
    if store is None:
        raise ConfigError(".loop-runtime/runtime.db", "escalation", None,
                          message="no loop-runtime store in this project: there is no escalation to decide")
    return store


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
    from .services import runtime_written

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
    from ..adapters.git import merge_conflicts, run_git

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
        conflicts = merge_conflicts(project.root, handle.branch)
        if info["stateCommit"] and run_git(["rev-parse", "HEAD"], project.root) == info["stateCommit"]:
            run_git(["reset", "-q", "HEAD~1"], project.root)  # undo our own commit: the files stay as they were
        if not conflicts:
            raise
        raise LoopError(f"not merging {handle.branch} into {handle.base_branch}: it conflicts in "
                        f"{', '.join(conflicts[:5])}; nothing was merged (the reviewed change is committed on "
                        f"{handle.branch}) — merge it by hand with `git merge {handle.branch}`") from e
    info["into"] = handle.base_branch
    return info


def _already_merged(root: Path, branch: str) -> bool:
    from ..adapters.git import git_ok

    return git_ok(["merge-base", "--is-ancestor", f"refs/heads/{branch}", "HEAD"], root)


def approve(source: Project | Services, esc_id: str, *, merge: bool = False, by: str | None = None,
            store: Store | None = None) -> dict[str, Any]:
    """Apply the held change exactly as reviewed: commit on its branch (merge too with ``merge``).

    An escalation approved earlier without ``merge`` can be merged later the same way.
    """
    with using(source, store) as services:
        store = _existing_store(services)
        esc = _escalation(store, esc_id, allow=("open", "approved") if merge else ("open",))
        if esc.status == "approved":
            return _merge_later(services, store, esc)
        return _approve_open(services, store, esc, merge=merge, who=by or getpass.getuser())


def _approve_open(services: Services, store: Store, esc: Any, *, merge: bool, who: str) -> dict[str, Any]:
    from ..adapters.git import rev_parse
    from ..adapters.git_workspace import GitWorkspace
    from .preflight import preflight_state_write

    project, esc_id, ctx = services.project, esc.id, esc.context
    preflight_state_write(project, esc.pattern)  # before the branch, the commit, the decision
    result: dict[str, Any] = {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id}
    spine_dirty = merge_preflight(project, esc_id, ctx.get("worktreeRunId")) if merge and esc.diff.strip() else []
    if esc.diff.strip():
        ws = GitWorkspace(project.root)
        run_id = ctx.get("worktreeRunId") or f"{esc.pattern}-approved-{esc_id}"
        message = clip(f"loop({esc.pattern}): {esc.title}", 72) + f"\n\nApproved-by: {who} ({esc_id})"
        handle = ws.apply_held(run_id, esc.diff, esc.pattern, message)
        result["branch"] = handle.branch
        result["commit"] = rev_parse(project.root, handle.branch)
        result["worktreeRunId"] = run_id
        if merge:
            result.update(_merge(project, ws, handle, spine_dirty))
            result["removed"] = ws.remove(run_id, keep_branch=True, status="merged")
    now = now_utc()
    store.resolve_escalation(esc_id, status="approved", decided_by=who, reason="approved", at=now, result=result)
    merged = " (merged)" if result.get("merge") else ""
    _state_decision(services, esc, f"approved by {who} on {now:%Y-%m-%d}{merged}")
    store.add_event("escalation.approved", result, now, pattern=esc.pattern)
    return result


def _merge_later(services: Services, store: Store, esc: Any) -> dict[str, Any]:
    """``approve <id> --merge`` on an escalation approved earlier: merge its branch now (once)."""
    from ..adapters.git import rev_parse
    from ..adapters.git_workspace import GitWorkspace

    project = services.project
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
                              "commit": rev_parse(project.root, branch), "worktreeRunId": run_id, "later": True}
    result.update(_merge(project, ws, handle, spine_dirty))
    result["removed"] = ws.remove(run_id, keep_branch=True, status="merged")
    now = now_utc()
    approved = f"{esc.decided_at:%Y-%m-%d}" if hasattr(esc.decided_at, "strftime") else "earlier"
    _state_decision(services, esc, f"approved by {esc.decided_by or 'a human'} on {approved}; "
                                   f"merged on {now:%Y-%m-%d}")
    store.add_event("escalation.merged", result, now, pattern=esc.pattern)
    return result


def reject(source: Project | Services, esc_id: str, *, reason: str, by: str | None = None,
           store: Store | None = None, keep_branch: bool = False) -> dict[str, Any]:
    """Discard the held change: its worktree and patch are removed, its branch deleted unless ``keep_branch``
    (then the held change is committed on it first, so the kept branch holds what was reviewed)."""
    from .preflight import preflight_state_write

    with using(source, store) as services:
        project, store = services.project, _existing_store(services)
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
        _state_decision(services, esc, f"rejected by {who} on {now:%Y-%m-%d}: {reason}")
        store.add_event("escalation.rejected", {"id": esc_id, "reason": reason, "removed": removed}, now,
                        pattern=esc.pattern)
        return {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id, "reason": reason, "removed": removed}


def _state_decision(services: Services, esc: Any, decision: str) -> None:
    """The human's decision on the escalated item, in the loop's state file (through its state writer)."""
    from ..core.sanitize import clean
    from ..formats.state import parse_state, render_state, set_human_decision

    state_file = services.project.pattern(esc.pattern).state

    def decide(text: str | None) -> str | None:
        if text is None:
            return None
        doc = set_human_decision(parse_state(text, file=state_file), esc.item_id, clean(decision, 200), ref=esc.id)
        return render_state(doc)

    _update(services, state_file, decide)


def topup(source: Project | Services, pattern: str, tokens: int, *, reason: str, store: Store | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """Raise today's cap of one pattern; recorded in the store and the state file."""
    from ..core.sanitize import clean
    from ..formats.state import append_section_line, parse_state, render_state
    from .preflight import preflight_state_write

    if tokens <= 0:
        raise ConfigError("topup", "tokens", tokens, message=f"tokens must be positive: {tokens}")
    project = _project(source)
    p = project.pattern(pattern)
    preflight_state_write(project, pattern)  # before the store records a top-up the state file cannot
    now = now or now_utc()
    line = f"- {now:%Y-%m-%dT%H:%M:%SZ} +{tokens:,} tokens for {pattern}: {clean(reason, 120)}"

    def add(text: str | None) -> str | None:
        if text is None:
            return None
        return render_state(append_section_line(parse_state(text, file=p.state), "Budget top-ups", line))

    with using(source, store) as services:
        services.store.add_topup(pattern, utc_day(now), tokens, reason, now)
        services.store.add_event("budget.topup", {"tokens": tokens, "reason": reason}, now, pattern=pattern)
        _update(services, p.state, add)
    return {"pattern": pattern, "tokens": tokens, "reason": reason, "day": str(utc_day(now))}
