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

from .adapters import locked_files
from .core import killswitch
from .core.budget import utc_day
from .errors import ConfigError, LoopError
from .runtime import Project, now_utc


def _switch_file(pattern: str | None) -> str:
    return killswitch.ALL if pattern is None else killswitch.pattern_switch(pattern)


def kill(project: Project, pattern: str | None, *, reason: str = "", now: datetime | None = None) -> str:
    """Write the kill switch: ``loop-pause-all`` (all loops) or ``loop-pause-<id>`` at the root."""
    if pattern is not None:
        project.pattern(pattern)  # unknown ids fail with the valid list
    name = _switch_file(pattern)
    when = (now or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = f"paused by {getpass.getuser()} at {when}" + (f": {reason}" if reason else "")
    locked_files.atomic_write(project.root / name, text + "\nDelete this file (or run `loop-runtime resume`) to resume.\n")
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
        if path.exists():
            path.unlink()
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
    from .adapters.sqlite_store import RunStore

    store = RunStore.open(project.root)
    try:
        store.add_event(kind, payload, now_utc(), pattern=pattern)
    finally:
        store.close()


def open_store(project: Project) -> Any:
    from .adapters.sqlite_store import RunStore

    return RunStore.open(project.root)


def _existing_store(project: Project) -> Any:
    """The store of a project that has one; escalations cannot exist without it (and we create none)."""
    if not (project.root / ".loop-runtime" / "runtime.db").is_file():
        raise ConfigError(".loop-runtime/runtime.db", "escalation", None,
                          message="no loop-runtime store in this project: there is no escalation to decide")
    return open_store(project)


def _escalation(store: Any, esc_id: str) -> Any:
    esc = store.get_escalation(esc_id)
    if esc is None:
        valid = [e.id for e in store.list_escalations("open")]
        raise ConfigError(".loop-runtime/runtime.db", "escalation", esc_id, valid=valid or "(none open)")
    if esc.status != "open":
        raise LoopError(f"escalation {esc_id} is already {esc.status}")
    return esc


def approve(project: Project, esc_id: str, *, merge: bool = False, by: str | None = None,
            store: Any = None) -> dict[str, Any]:
    """Apply the held change exactly as reviewed: commit on its branch (merge too with ``merge``)."""
    from .adapters.git_workspace import GitWorkspace
    from .formats.state import parse_state, render_state, set_human_decision
    from .preflight import preflight_state_write

    own = store is None
    store = store or _existing_store(project)
    try:
        esc = _escalation(store, esc_id)
        preflight_state_write(project, esc.pattern)  # before the branch, the commit, the decision
        ctx = esc.context
        who = by or getpass.getuser()
        result: dict[str, Any] = {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id}
        if esc.diff.strip():
            ws = GitWorkspace(project.root)
            run_id = ctx.get("worktreeRunId") or f"{esc.pattern}-approved-{esc_id}"
            message = f"loop({esc.pattern}): {esc.title}"[:72] + f"\n\nApproved-by: {who} ({esc_id})"
            handle = ws.apply_held(run_id, esc.diff, esc.pattern, message)
            result["branch"] = handle.branch
            result["commit"] = _head(project.root, handle.branch)
            if merge:
                result["merge"] = ws.merge(handle)
        now = now_utc()
        store.resolve_escalation(esc_id, status="approved", decided_by=who, reason="approved", at=now, result=result)
        _state_decision(project, esc, f"approved by {who} on {now:%Y-%m-%d}" + (" (merged)" if merge else ""),
                        parse_state, render_state, set_human_decision)
        store.add_event("escalation.approved", result, now, pattern=esc.pattern)
        return result
    finally:
        if own:
            store.close()


def reject(project: Project, esc_id: str, *, reason: str, by: str | None = None, store: Any = None) -> dict[str, Any]:
    """Discard the held change and record the human decision in the state file."""
    from .formats.state import parse_state, render_state, set_human_decision
    from .preflight import preflight_state_write

    own = store is None
    store = store or _existing_store(project)
    try:
        esc = _escalation(store, esc_id)
        preflight_state_write(project, esc.pattern)
        who = by or getpass.getuser()
        run_id = esc.context.get("worktreeRunId")
        if run_id and project.is_git:
            from .adapters.git_workspace import GitWorkspace

            GitWorkspace(project.root).mark(run_id, "rejected")
        now = now_utc()
        store.resolve_escalation(esc_id, status="rejected", decided_by=who, reason=reason, at=now)
        _state_decision(project, esc, f"rejected by {who} on {now:%Y-%m-%d}: {reason}", parse_state, render_state,
                        set_human_decision)
        store.add_event("escalation.rejected", {"id": esc_id, "reason": reason}, now, pattern=esc.pattern)
        return {"id": esc_id, "pattern": esc.pattern, "item": esc.item_id, "reason": reason}
    finally:
        if own:
            store.close()


def _state_decision(project: Project, esc: Any, decision: str, parse_state: Any, render_state: Any,
                    set_human_decision: Any) -> None:
    from .core.sanitize import clean

    state_file = project.pattern(esc.pattern).state

    def decide(text: str | None) -> str | None:
        if text is None:
            return None
        doc = set_human_decision(parse_state(text, file=state_file), esc.item_id, clean(decision, 200))
        return render_state(doc)

    locked_files.update(project.root, project.root / state_file, decide)


def _head(root: Path, branch: str) -> str | None:
    import subprocess

    proc = subprocess.run(["git", "rev-parse", branch], cwd=root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    return proc.stdout.strip() or None


def topup(project: Project, pattern: str, tokens: int, *, reason: str, store: Any = None,
          now: datetime | None = None) -> dict[str, Any]:
    """Raise today's cap of one pattern; recorded in the store and the state file."""
    from .formats.state import append_section_line, parse_state, render_state

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
    from .core.sanitize import clean

    line = f"- {now:%Y-%m-%dT%H:%M:%SZ} +{tokens:,} tokens for {pattern}: {clean(reason, 120)}"

    def add(text: str | None) -> str | None:
        if text is None:
            return None
        return render_state(append_section_line(parse_state(text, file=p.state), "Budget top-ups", line))

    locked_files.update(project.root, project.root / p.state, add)
    return {"pattern": pattern, "tokens": tokens, "reason": reason, "day": str(utc_day(now))}
