"""The act path of a tick: attempts in worktrees, checked by the diff, the tests and a verifier.

Why the diff and not the agent's word: an agent's account of what it changed is
untrusted output. Every attempt is judged on ``git diff`` against the base commit —
each touched path, old and new names alike — then on the project's own tests, then by
a verifier agent in a fresh session. The implementer is never its own verifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GithubRefused, LoopError
from ..formats.ledger import Attempt, Ledger, append_attempt, new_ledger, parse_ledger, render_ledger
from ..formats.triage import TriageDecision, TriageItem
from ..formats.verdict import parse_verdict
from ..ports import READ_ONLY_WRITE, Diff, Permission, TestRun, WorkspaceHandle
from . import breaker, gate
from .control_files import ControlSet, control_set
from .diff_policy import check_diff
from .engine import worktree_run_id
from .files import update_file
from .prompts import implementer_prompt, verifier_prompt
from .redact import clip, redact
from .secrets import added_secrets, describe
from .result import TickResult, VERDICT_WORDS
from .test_weakening import compare_runs

if TYPE_CHECKING:  # an annotation only: tick.py imports this module (lazily) to act
    from .tick import Tick

LEDGER = "loop-ledger.json"


class Escalate(Exception):
    def __init__(self, reason: str, detail: str, handle: WorkspaceHandle | None = None, diff: Diff | None = None,
                 verdict: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.handle, self.diff, self.verdict = reason, detail, handle, diff, verdict


def prune_error(text: str, *, lines: int = 8, chars: int = 600) -> str:
    """A short, redacted error summary fed to the next attempt and to the escalation."""
    kept = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()][:lines]
    out = "\n".join(kept)
    return redact(out[:chars] + ("…" if len(out) > chars else ""))


async def act(t: Tick, decision: TriageDecision) -> TickResult:
    item = decision.items[0]
    ledger = _load_ledger(t)
    start = _failures_in_a_row(ledger, item.id) + 1
    prev_error: str | None = _last_error(ledger, item.id)
    extra = [f"- {i.id} — {i.title}" for i in decision.items[1:]]
    if extra:
        t.lines.append(f"{len(extra)} more item(s) left for later ticks")
    release = _take_lease(t, item)
    try:
        return await _act_on(t, decision, item, ledger, start, prev_error)
    finally:
        if release is not None:
            try:
                release()
            except LoopError as e:
                why = clip(str(e), 200, extra_secrets=t.deps.secrets)
                t.lines.append(f"lock label not removed from {item.id}: {why}")


def _take_lease(t: Tick, item: TriageItem) -> Any:
    if t.deps.lease is None:
        return None
    try:
        release = t.deps.lease(item.id)
    except LoopError as e:
        t.lines.append(f"lock label not taken on {item.id}: {clip(str(e), 200, extra_secrets=t.deps.secrets)}")
        return None
    if release is not None:
        t.lines.append(f"lock label taken on {item.id} for this tick")
    return release


async def _act_on(t: Tick, decision: TriageDecision, item: TriageItem, ledger: Ledger, start: int,
                  prev_error: str | None) -> TickResult:
    try:
        if start > t.plan.max_attempts:
            raise Escalate("max-attempts", f"{start - 1} failed attempt(s) already recorded for {item.id}")
        for n in range(start, t.plan.max_attempts + 1):
            outcome = await _attempt(t, item, n, prev_error)
            if isinstance(outcome, TickResult):
                return outcome
            prev_error = outcome
            ledger = _append_attempt(t, clip(f"fix {item.id}: {item.title}", 200), "failure", prev_error)
            verdict = breaker.check(ledger, breaker.BreakerConfig())
            if verdict.escalate:
                raise Escalate(f"breaker:{verdict.trigger}", verdict.reason)
        raise Escalate("max-attempts", f"{t.plan.max_attempts} attempts failed; last error: {prev_error}")
    except Escalate as esc:
        return _escalate(t, item, esc, len(decision.items), prev_error)


async def _attempt(t: Tick, item: TriageItem, n: int, prev_error: str | None) -> TickResult | str:
    """One attempt. Returns a TickResult when the tick is decided, else the pruned error of a reject."""
    ws = t.deps.workspace
    assert ws is not None
    t.enter("implementing", attempt=n, item=item.id)
    t.attempt = n
    handle = None
    held = t.deps.replay.get(f"workspace:{n}")
    attach = getattr(ws, "attach", None)
    if held is not None and attach is not None:  # resuming: the halted attempt's worktree, as it was left
        handle = attach(str(held.get("run_id")))
    if handle is None:
        handle = ws.prepare(worktree_run_id(t.plan.pattern_id, t.run_id, n, t.tick_id), t.plan.pattern_id)
    t.record("workspace", {"attempt": n, "run_id": handle.run_id, "path": handle.path, "branch": handle.branch})
    p = t.plan.pattern
    prompt = implementer_prompt(
        ctx=t.deps.context, level=t.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
        item_id=item.id, item_title=item.title, item_detail=item.detail, attempt=n,
        max_attempts=t.plan.max_attempts, previous_error=prev_error,
    )
    before = _outside_snapshot(t)
    ires = await t.call_agent("implementer", f"implementer:{n}", prompt, handle.path, Permission.EDIT_WORKTREE)
    _check_outside(t, before, handle, "agent")
    _check_worktree(t, handle)
    diff = ws.diff(handle)
    paths = diff.touched_paths
    t.record("diff", {"attempt": n, "paths": list(paths)[:200], "changes": len(diff.changes)})
    if n == 1 or paths:
        t.lines.append(f"proposed change touching {', '.join(paths) if paths else '(nothing)'}")
    _check_sandbox(t, "implementer", ires.sandbox_denials, handle, diff)
    violations = check_diff(diff, controls=_controls(t))
    if violations:
        v = violations[0]
        raise Escalate(f"policy:{v.code}", f"{v.code}: {v.path} — {v.detail}", handle, diff)
    decision = gate.check(_policy(t), list(paths), "commit")
    if not decision.allowed:
        raise Escalate(f"gate:{decision.trigger}", decision.reason, handle, diff)
    leaked = added_secrets(diff.changes, t.deps.secrets)
    if leaked:  # the held diff keeps it verbatim for the human; nothing else ever does
        raise Escalate("secret-in-diff", f"secret-in-diff: the change adds {describe(leaked)}", handle, diff)
    if not diff.changes:
        return _reject(t, handle, n, "the implementer made no change")
    t.enter("verifying", attempt=n)
    before = _outside_snapshot(t)
    tests = _run_tests(t, handle)
    _check_outside(t, before, handle, "test run")
    if tests.sandbox_denials:  # reported; a failing run goes back to the implementer with the note in its output
        t.record(f"sandbox-denied:tests:{n}", {"denials": list(tests.sandbox_denials[:50])})
        t.lines.extend(f"sandbox denied (test run): {d}" for d in tests.sandbox_denials[:20])
    _check_worktree(t, handle)
    tidy = getattr(ws, "discard_side_effects", None)
    if tidy is not None:
        tidy(handle)  # test artefacts are not part of the reviewed change
    t.record("tests", {"attempt": n, "command": tests.command, "passed": tests.passed,
                       "exit_code": tests.exit_code, "output": tests.output[-4000:]})
    if tests.command:
        t.lines.append(f"tests: {'passed' if tests.passed else 'FAILED'} ({tests.command})")
    weakened = _weakened_tests(t, handle, tests)
    if weakened:
        raise Escalate("tests-weakened", weakened, handle, diff)
    vprompt = verifier_prompt(
        ctx=t.deps.context, level=t.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
        item_id=item.id, item_title=item.title, patch=diff.patch, test_summary=_test_summary(tests),
    )
    before = _outside_snapshot(t)
    vres = await t.call_agent("verifier", f"verifier:{n}", vprompt, handle.path, Permission.READ_ONLY)
    _check_outside(t, before, handle, "verifier")
    _check_worktree(t, handle)
    _check_sandbox(t, "verifier", vres.sandbox_denials, handle, diff)
    verdict = parse_verdict(redact(vres.text))  # redacted before its reasons are capped
    kind = verdict.kind
    reasons = list(verdict.reasons)
    if not verdict.found:
        reasons.insert(0, "verifier gave no '## Verdict:' line (counted as REJECT)")
    if kind == "APPROVE" and not tests.passed:
        kind, reasons = "REJECT", [f"tests failed: {tests.command}", *reasons]
    t.record("verdict", {"attempt": n, "verdict": kind, "reasons": reasons[:10]})
    word = VERDICT_WORDS[kind]
    t.lines.append(f"verifier verdict: {word}" + (f" (attempt {n}/{t.plan.max_attempts})" if n > 1 or
                                                    kind == "REJECT" else ""))
    if kind == "ESCALATE_HUMAN":
        raise Escalate("verifier", "; ".join(reasons) or "verifier asked for a human", handle, diff, kind)
    if kind == "REJECT":
        error = "; ".join(reasons) or "rejected"
        if not tests.passed:
            error += "\n" + tests.output[-1500:]
        return _reject(t, handle, n, error)
    return _accept(t, item, handle, diff, n, tests=tests, reasons=tuple(reasons))


def _accept(t: Tick, item: TriageItem, handle: WorkspaceHandle, diff: Diff, n: int, *, tests: TestRun | None = None,
            reasons: tuple[str, ...] = ()) -> TickResult:
    ws = t.deps.workspace
    assert ws is not None
    t.enter("gated", attempt=n)
    paths = list(diff.touched_paths)
    merge_ok = False
    why = "L2: a human merges"
    if t.effective == "L3":
        auto = gate.check(_policy(t), paths, "auto-merge")
        promo = t.deps.promotion_ready(diff) if t.deps.promotion_ready is not None else True
        merge_ok = auto.allowed and promo
        why = "auto-merge allowlisted + APPROVE" if merge_ok else (
            auto.reason if not auto.allowed else "promotion.yaml: not merge-ready")
    message = clip(f"loop({t.plan.pattern_id}): {item.title}", 72) + redact(f"\n\n{item.detail}").rstrip()
    sha = ws.finish(handle, "active", commit_message=message)
    t.enter("committed", attempt=n, commit=sha or "")
    t.lines.append("committed: safe + allowlisted")
    merged = False
    pr = None
    if t.deps.publisher is not None and sha:
        from .github_publish import publish

        try:
            pr = publish(t, item, handle, sha, tests, reasons, merge_ok=merge_ok)
        except GithubRefused as e:  # branch protection (or a conflict) refused the merge: a human decides
            raise Escalate("merge-refused", redact(str(e), extra_secrets=t.deps.secrets), handle, diff) from None
        merged = pr is not None and pr.merged
        merge_ok = False  # GitHub merges (or not); never a local merge behind the PR's back
    if merge_ok:
        merge = getattr(ws, "merge", None)
        if merge is not None:
            try:
                merge_sha = merge(handle)
                merged = True
                t.record("merged", {"attempt": n, "sha": sha, "merge": merge_sha, "branch": handle.branch,
                                    "into": handle.base_branch})
                t.lines.append(f"merged into {handle.base_branch}: {why}")
            except LoopError as e:  # the fix stays proposed on its branch; a human merges
                t.lines.append(f"not merged: {e}")
    elif t.effective == "L3":
        t.lines.append(f"not merged: {why}")
    t.record("commit", {"attempt": n, "sha": sha, "branch": handle.branch, "merged": merged})
    _record_success(t, item, n)
    note = f"{item.id}: fix on {handle.branch}" + (f" ({pr.url})" if pr else "") + (" (merged)" if merged else "")
    return t._finish("act", "fix-proposed", note=note, items=1, actions=1, verdict="APPROVE", branch=handle.branch,
                     commit=sha, merged=merged, attempts=n,
                     state_update=_fix_entry(t, item, handle, sha, merged, pr.url if pr else None),
                     extras={"branch": handle.branch, **({"commit": sha} if sha else {}),
                             **({"pr": pr.url} if pr else {})})


def _fix_entry(t: Tick, item: TriageItem, handle: WorkspaceHandle, sha: str | None, merged: bool,
               pr_url: str | None = None) -> Any:
    """The fixed item in the pattern's own report section (ci-sweeper: Active Failures), as its starter
    lists items, with what happened to it: a human reading the state file sees the proposed fix."""
    from ..formats.state_layout import layout_for, write_report
    from .sanitize import inert

    where = f"merged into {handle.base_branch}" if merged else f"fix proposed on `{handle.branch}`"
    line = f"- {inert(item.id, 40)} — {inert(item.title)}: {where}" + (f" ({sha[:12]})" if sha else "")
    if pr_url:
        line += f" — PR {inert(pr_url, 200)}"
    layout = layout_for(t.plan.pattern_id, t.plan.state_file)
    return lambda doc: write_report(doc, layout, [line])


def _reject(t: Tick, handle: WorkspaceHandle, n: int, error: str) -> str:
    ws = t.deps.workspace
    assert ws is not None
    t.enter("rejected", attempt=n)
    ws.finish(handle, "rejected")
    pruned = prune_error(error)
    t.record("rejected", {"attempt": n, "error": pruned})
    return pruned


def _adds_secret(t: Tick, esc: Escalate) -> bool:
    """Does the held change add a secret — whatever the escalation's first reason (a control-file
    edit or a ``.git`` entry is found before the secret)?"""
    if esc.reason == "secret-in-diff":
        return True
    diff = getattr(esc, "diff", None)
    changes = getattr(diff, "changes", None)
    return bool(changes) and bool(added_secrets(changes, t.deps.secrets))


def _escalate(t: Tick, item: TriageItem, esc: Escalate, found: int, prev_error: str | None) -> TickResult:
    if t.phase != "escalated":
        t.phase = "escalated"
    ws = t.deps.workspace
    if esc.handle is not None and ws is not None:
        withhold = getattr(ws, "withhold", None)
        if withhold is not None and _adds_secret(t, esc):
            withhold(esc.handle)  # the store's held diff is then the only verbatim record
        ws.finish(esc.handle, "escalated")
    summary = {
        "goal": t.plan.pattern.goal,
        "item": item.id,
        "title": item.title,
        "attempts": max(getattr(t, "attempt", 0), _attempts_made(t, item.id)),
        "reason": esc.reason,
        "detail": redact(esc.detail),
        "lastError": prev_error,
        "breaker": esc.reason.split(":", 1)[1] if esc.reason.startswith("breaker:") else None,
        "branch": esc.handle.branch if esc.handle else None,
        "worktreeRunId": esc.handle.run_id if esc.handle else None,
        "baseCommit": esc.handle.base_commit if esc.handle else None,
        "level": t.effective,
        "verdict": esc.verdict,
    }
    esc_id = None
    j = t.deps.journal
    if j is not None:
        esc_id = j.escalate(tick_id=t.tick_id, run_id=t.run_id, pattern=t.plan.pattern_id, item_id=item.id,
                            title=item.title, diff=esc.diff.patch if esc.diff else "", context=summary,
                            at=t.deps.clock.now())
    t.record("escalation", {"id": esc_id, **{k: v for k, v in summary.items() if k != "goal"}})
    ref = f" [{esc_id}]" if esc_id else ""
    t.lines.append(f"escalated{ref}: {esc.reason} — {clip(esc.detail, 160)}")
    action = f"escalated ({esc.reason}){ref}; attempts {summary['attempts']}/{t.plan.max_attempts}"
    if esc.handle is not None:
        action += f"; held on {esc.handle.branch}"
    t.notify("escalation", f"{t.plan.pattern.name}: escalation{ref}", f"{item.id}: {esc.reason}")
    if t.deps.publisher is not None:
        from .github_publish import mirror_escalation

        mirror_escalation(t, item, esc.reason, redact(esc.detail))
    return t._finish("act", "escalated", note=f"{item.id}: {esc.reason}", items=found, escalations=1,
                     state_update=t.escalation_state(item.id, item.title, action), verdict=esc.verdict,
                     escalation_id=esc_id, branch=esc.handle.branch if esc.handle else None,
                     attempts=summary["attempts"], extras={"reason": esc.reason, **({"escalation": esc_id}
                                                                                     if esc_id else {})})


# -- helpers


def _controls(t: Tick) -> ControlSet:
    """The project's control set (built by the composition root), else this loop's minimum."""
    given = getattr(t.deps, "controls", None)
    base = given if isinstance(given, ControlSet) else control_set()
    return base.with_paths((t.plan.state_file,))


def _outside_snapshot(t: Tick) -> Any:
    guard = t.deps.guard
    return guard.snapshot() if guard is not None else None


def _check_outside(t: Tick, before: Any, handle: WorkspaceHandle, who: str) -> None:
    """After every agent run and every test run: nothing outside the worktree changed, or
    it is restored where git can and the attempt escalates."""
    guard = t.deps.guard
    if guard is None or before is None:
        return
    outside = guard.changes(before)
    if not outside:
        return
    restored = guard.restore(before)
    t.lines.append(f"{who} changed files outside its worktree: {', '.join(outside[:5])}")
    t.notify("escalation", f"{t.plan.pattern.name}: {who} wrote outside its worktree", "; ".join(outside[:5]))
    raise Escalate("outside-change", f"{who} changed outside the worktree: " + "; ".join(outside[:10])
                   + (f" (restored: {'; '.join(restored[:10])})" if restored else ""), handle)


def escapes(denials: Sequence[str]) -> tuple[str, ...]:
    """The denials that are escape attempts: all but a read-only agent's writes in its own worktree."""
    return tuple(d for d in denials if not d.startswith(READ_ONLY_WRITE))


def _check_sandbox(t: Tick, role: str, denials: Sequence[str], handle: WorkspaceHandle, diff: Diff) -> None:
    """An agent the sandbox (or a git/gh shim) refused something escalates: its result may rest on what
    did not happen — a write outside that failed, a push or commit that was denied, a host it could not
    reach — and the attempt itself is for a human to see. The change is held, approvable."""
    blocked = escapes(denials)
    if not blocked:
        return
    t.notify("escalation", f"{t.plan.pattern.name}: the sandbox blocked the {role}", "; ".join(blocked[:3]))
    raise Escalate("sandbox-violation", f"the sandbox blocked the {role} {len(blocked)} time(s): "
                   + "; ".join(blocked[:5]), handle, diff)


def _check_worktree(t: Tick, handle: WorkspaceHandle) -> None:
    """The worktree still is the worktree the runtime made: its ``.git`` link and git metadata
    are unchanged (repaired if not) and it holds no nested ``.git`` — before any runtime git
    command runs in it again."""
    check = getattr(t.deps.workspace, "integrity", None)
    problems = tuple(check(handle)) if check is not None else ()
    if problems:
        t.lines.append(f"worktree git metadata tampered with: {', '.join(problems[:3])}")
        raise Escalate("policy:git-dir", "git-dir: " + "; ".join(problems[:10]), handle)


def _policy(t: Tick) -> Any:
    if t.deps.gate_policy is not None:
        return t.deps.gate_policy
    from ..formats.gate_config import DEFAULT_POLICY

    return DEFAULT_POLICY


def _run_tests(t: Tick, handle: WorkspaceHandle) -> TestRun:
    if t.deps.tests is None:
        return TestRun(command=None, exit_code=None, passed=True, output="no test runner configured")
    return t.deps.tests.run(handle.path)


def _weakened_tests(t: Tick, handle: WorkspaceHandle, tests: TestRun) -> str | None:
    """Why the attempt's run executed less than the base commit's (``core.test_weakening``), or None.

    Only a passing run is compared: a failing one is rejected anyway, so the base run
    (cached per base commit by the runner) is paid only when it can matter.
    """
    baseline = getattr(t.deps.tests, "baseline", None)
    if baseline is None or not tests.passed or tests.command is None:
        return None
    base = baseline(handle.base_commit)
    if base is None or base.command is None:
        return None
    found = compare_runs(base.report, tests.report)
    t.record("tests-baseline", {"attempt": getattr(t, "attempt", None), "base_commit": handle.base_commit,
                                "command": base.command, "collected": base.report.collected if base.report else None,
                                "weakened": found.detail[:2000] if found else None})
    return found.detail if found else None


def _test_summary(tests: TestRun) -> str:
    """What the verifier reads about the tests; "no tests" is said plainly, never as a pass."""
    if not tests.command:
        return ("NO TESTS RAN: no test command was found for this project, so nothing was checked "
                "(this is not a pass). Judge the diff on its own, and escalate if you are unsure.")
    head = f"$ {tests.command}\nexit code: {tests.exit_code}{' (timed out)' if tests.timed_out else ''}\n"
    return head + tests.output[-6000:]


def _load_ledger(t: Tick) -> Ledger:
    return _ledger_from(t, t.deps.state.read(LEDGER))


def _ledger_from(t: Tick, text: str | None) -> Ledger:
    if text:
        return parse_ledger(text, file=LEDGER)
    return new_ledger(t.plan.pattern.goal, t.plan.pattern_id, t.effective,
                      t.deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"))


def _mine(a: Attempt, item_id: str) -> bool:
    return a.action.startswith(f"fix {item_id}:")


def _failures_in_a_row(ledger: Ledger, item_id: str) -> int:
    n = 0
    for a in reversed(ledger.attempts):
        if not _mine(a, item_id):
            continue
        if a.outcome != "failure":
            break
        n += 1
    return n


def _last_error(ledger: Ledger, item_id: str) -> str | None:
    for a in reversed(ledger.attempts):
        if _mine(a, item_id):
            return a.error if a.outcome == "failure" else None
    return None


def _attempts_made(t: Tick, item_id: str) -> int:
    return _failures_in_a_row(_load_ledger(t), item_id)


def _record_success(t: Tick, item: TriageItem, n: int) -> None:
    _append_attempt(t, clip(f"fix {item.id}: {item.title}", 200), "success", None)


def _append_attempt(t: Tick, action: str, outcome: str, error: str | None) -> Ledger:
    """Append one attempt to the ledger *as it is on disk now* (under its lock); returns the new ledger.

    Other ticks append to the same ``loop-ledger.json``: rewriting a copy loaded earlier
    in the tick would drop their attempts.
    """
    stamp = t.deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def add(text: str | None) -> str:
        ledger = _ledger_from(t, text)
        return render_ledger(append_attempt(ledger, Attempt(iteration=len(ledger.attempts) + 1, action=action,
                                                            outcome=outcome, error=error, tokens_used=t.tokens,
                                                            timestamp=stamp)))

    stored = update_file(t.deps.state, LEDGER, add)
    return _ledger_from(t, stored)
