"""Crash recovery: finish what a killed process left, from its journal, without redoing work.

A tick killed with ``kill -9`` at any phase leaves a ``running`` tick in the store whose
owner no longer holds the lease. The next process to take the lease:

* settles the dead tick's open reservations at their full amount (fail closed — the
  tokens may have been spent before the crash);
* writes the tick's one run-log entry if the journal shows none was written, with the
  outcome derived from what durably happened (``recovered_outcome``): a recorded commit
  or L3 merge is ``fix-proposed`` with its commit (and merge commit), a recorded
  escalation is ``escalated``; only a tick that got no further is ``no-op`` ``crashed``.
  Tokens = what the journal recorded plus the orphan reservations charged; a fix or an
  escalation also sets the state file's ``Last run`` line (and the High Priority entry);
* marks orphan worktrees ``stale`` and removes them (branches with commits are kept);
* never redoes a commit: a journal that recorded ``commit`` keeps its sha.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.redact import clip
from ..formats.runlog import RunLogEntry, append_entry

RUN_LOG = "loop-run-log.md"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store


@dataclass(frozen=True)
class Recovered:
    """What a crashed tick durably did, read from its journal (and git, for a merge the journal missed)."""

    outcome: str  # fix-proposed | escalated | no-op
    note: str
    extras: dict[str, Any] = field(default_factory=dict)
    items: int = 0
    actions: int = 0
    escalations: int = 0
    item_id: str | None = None
    title: str | None = None


def _last(phases: Sequence[Any], name: str) -> Any:
    return next((p for p in reversed(phases) if p.phase == name), None)


def recovered_outcome(phases: Sequence[Any], merged_into: Any = None) -> Recovered:
    """The outcome a crashed tick's journal proves, most final first.

    ``merged_into(sha)`` (optional) answers, from git, which merge commit brought a
    committed ``sha`` into the base branch — for a kill between the merge and its journal
    entry. Without a commit or an escalation on record the tick did nothing durable: no-op.
    """
    merged, commit, committed = _last(phases, "merged"), _last(phases, "commit"), _last(phases, "phase:committed")
    escalation = _last(phases, "escalation")
    workspace = _last(phases, "workspace")
    branch = next((d.get("branch") for d in (getattr(merged, "data", None), getattr(commit, "data", None),
                                             getattr(workspace, "data", None)) if d and d.get("branch")), None)
    sha = next((d.get("sha") or d.get("commit") for d in (getattr(merged, "data", None), getattr(commit, "data", None),
                                                           getattr(committed, "data", None))
                if d and (d.get("sha") or d.get("commit"))), None)
    item = _last(phases, "phase:implementing")
    item_id = item.data.get("item") if item is not None else None
    if sha:
        merge = merged.data.get("merge") if merged is not None else None
        if merge is None and commit is not None and commit.data.get("merged"):
            merge = commit.data.get("merge") or sha
        if merge is None and merged_into is not None:
            merge = merged_into(str(sha))
        extras: dict[str, Any] = {"branch": branch, "commit": sha} if branch else {"commit": sha}
        note = f"{item_id or 'fix'}: fix on {branch or sha}"
        if merge:
            extras["merge"] = merge
            note += f" (merged {str(merge)[:12]})"
        extras["note"] = f"recovered after crash: {note}"
        return Recovered("fix-proposed", note, extras, items=1, actions=1, item_id=item_id)
    if escalation is not None:
        data = escalation.data
        reason = str(data.get("reason") or "escalated")
        esc_item = data.get("item") or item_id
        extras = {"reason": reason, "note": "recovered after crash"}
        if data.get("id"):
            extras["escalation"] = data["id"]
        return Recovered("escalated", f"{esc_item}: {reason}", extras, items=1, escalations=1,
                         item_id=esc_item, title=data.get("title"))
    return Recovered("no-op", "crashed", {"note": "crashed"})


def _journal_tokens(phases: list[Any]) -> int:
    total = 0
    for p in phases:
        if p.phase.startswith("agent:"):
            u = p.data.get("usage") or {}
            total += sum(int(u.get(k, 0) or 0) for k in ("input", "output", "cache_write", "cache_read"))
    return total


def recover(project: Any, store: Store, pattern: str, now: datetime) -> list[str]:
    """Finalise crashed ticks of ``pattern``; the caller holds the pattern's lease. Returns their ids."""
    recovered: list[str] = []
    for tick in store.open_ticks(pattern):
        phases = store.phases(tick.tick_id)
        store.set_tick_status(tick.tick_id, "crashed")
        settled = store.settle_orphans({t.tick_id for t in store.open_ticks(None)}, now)
        # what the journal recorded as settled, plus the orphan reservations just charged in full
        tokens = _journal_tokens(phases) + sum(r.amount for r in settled if r.tick_id == tick.tick_id)
        done = recovered_outcome(phases, merged_into=_merge_finder(project) if project.is_git else None)
        if not any(p.phase == "logged" for p in phases):
            entry = RunLogEntry(run_id=tick.run_id, pattern=pattern, duration_s=0, items_found=done.items,
                                actions_taken=done.actions, escalations=done.escalations, tokens_estimate=tokens,
                                outcome=done.outcome, extras={"level": tick.level, **done.extras, "tick": tick.tick_id})
            _writer(project, RUN_LOG).update(RUN_LOG, lambda text, e=entry: append_entry(
                text, e, now=now, project=project.root.name))
            if done.outcome != "no-op":
                _update_state(project, pattern, done, now)
            store.record_phase(tick.tick_id, "logged", {"outcome": done.outcome, "note": done.note}, now)
        store.finish_tick(tick.tick_id, outcome=done.outcome if done.outcome != "no-op" else "crashed", tokens=tokens,
                          summary={"note": "recovered after crash", "phases": [p.phase for p in phases][-20:]},
                          finished_at=now)
        store.set_tick_status(tick.tick_id, "crashed")
        store.add_event("tick.recovered", {"tick": tick.tick_id, "tokens": tokens}, now, pattern=pattern,
                        tick_id=tick.tick_id)
        recovered.append(tick.tick_id)
    if recovered and project.is_git and (project.root / ".loop-worktrees").exists():
        from ..adapters.git_workspace import GitWorkspace

        live: set[str] = set()  # worktrees of ticks still running in other processes
        for other in store.open_ticks(None):
            live |= {str(p.data.get("run_id")) for p in store.phases(other.tick_id) if p.phase == "workspace"}
        GitWorkspace(project.root).recover_stale(0, live)
    return recovered


def _writer(project: Any, name: str) -> Any:
    """A state writer allowed ``name`` alone: recovery writes what the crashed tick would have, nothing else,
    locked, atomic and redacted like every write of the runtime."""
    from ..adapters.state_files import FileStateWriter

    return FileStateWriter(project.root, writable=(name,))


def _merge_finder(project: Any) -> Any:
    """``sha → merge commit`` when ``sha`` is already in the checkout's current branch (else None)."""
    from ..adapters.git import git_ok, run_git
    from ..errors import GitError

    def find(sha: str) -> str | None:
        root = project.root
        try:
            if not git_ok(["merge-base", "--is-ancestor", sha, "HEAD"], root):
                return None
            first_parent = run_git(["rev-list", "--first-parent", "HEAD"], root).split()
            if sha in first_parent:
                return sha  # fast-forward: the commit itself is the merge
            later = run_git(["rev-list", "--first-parent", "--reverse", "--ancestry-path", f"{sha}..HEAD"], root)
            return later.split()[0] if later.split() else None
        except GitError:
            return None

    return find


def _update_state(project: Any, pattern: str, done: Recovered, now: datetime) -> None:
    """The state file's ``Last run`` (and High Priority for an escalation), as the tick would have."""
    from ..core.sanitize import inert
    from ..formats.state import (add_high_priority, ensure_canonical_sections, new_state_text, parse_state,
                                render_state, with_last_run)
    from ..errors import LoopError

    try:
        name = project.pattern(pattern).state
        def recovered(text: str | None) -> str:  # read-modify-write under the file's lock
            doc = parse_state(text if text is not None else new_state_text(project.root.name), file=name)
            doc = ensure_canonical_sections(with_last_run(doc, now, clip(f"{done.outcome}: {done.note} "
                                                                          "(recovered after crash)", 200)))
            if done.outcome == "escalated" and done.item_id:
                doc = add_high_priority(doc, str(done.item_id), inert(done.title or str(done.item_id)),
                                        f"escalated ({done.extras.get('reason')}); recovered after crash")
            return render_state(doc)

        _writer(project, name).update(name, recovered)
    except LoopError:  # the run log already tells the truth; a state file we cannot parse is left as is
        pass
