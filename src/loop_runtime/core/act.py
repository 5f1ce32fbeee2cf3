"""The act path of a tick: attempts in worktrees, checked by the diff, the tests and a verifier.

Why the diff and not the agent's word: an agent's account of what it changed is
untrusted output. Every attempt is judged on ``git diff`` against the base commit —
each touched path, old and new names alike — then on the project's own tests, then by
a verifier agent in a fresh session. The implementer is never its own verifier.

The guards around each run and the ledger of attempts live in ``core.act_checks``; every
effect (workspace, tests, guard, journal, publisher …) is a PortCall of the tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import GithubRefused, LoopError
from ..formats.triage import TriageDecision, TriageItem
from ..formats.verdict import parse_verdict
from ..ports import AgentResult, Diff, Permission, TestRun, WorkspaceHandle
from . import breaker, gate
from .act_checks import (
    LEDGER,
    Escalate,
    after_run,
    append_to_ledger,
    check_outside,
    check_sandbox,
    check_worktree,
    controls,
    escapes,
    failures_in_a_row,
    last_error,
    load_ledger,
    outside_snapshot,
    policy,
    run_tests,
    summarise_tests,
    weakened_tests,
)
from .diff_policy import check_diff
from .effects import ABSENT
from .engine import worktree_run_id
from .prompts import implementer_prompt, verifier_prompt
from .redact import clip, redact
from .result import TickResult, VERDICT_WORDS
from .secrets import added_secrets, describe

if TYPE_CHECKING:  # an annotation only: tick.py imports this module (lazily) to act
    from .tick import Tick

__all__ = ["LEDGER", "Escalate", "act", "escapes", "prune_error"]

_test_summary = summarise_tests  # its name before core.act_checks


def prune_error(text: str, *, lines: int = 8, chars: int = 600) -> str:
    """A short, redacted error summary fed to the next attempt and to the escalation."""
    kept = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()][:lines]
    out = "\n".join(kept)
    return redact(out[:chars] + ("…" if len(out) > chars else ""))


async def act(t: Tick, decision: TriageDecision) -> TickResult:
    item = decision.items[0]
    ledger = await load_ledger(t)
    start = failures_in_a_row(ledger, item.id) + 1
    prev_error: str | None = last_error(ledger, item.id)
    extra = [f"- {i.id} — {i.title}" for i in decision.items[1:]]
    if extra:
        t.lines.append(f"{len(extra)} more item(s) left for later ticks")
    leased = await _take_lease(t, item)
    try:
        return await _act_on(t, decision, item, start, prev_error)
    finally:
        if leased:
            try:
                await t.ports.lease.release(item.id)
            except LoopError as e:
                why = clip(str(e), 200, extra_secrets=t.deps.policy.secrets)
                t.lines.append(f"lock label not removed from {item.id}: {why}")


async def _take_lease(t: Tick, item: TriageItem) -> bool:
    if "lease" not in t.wired:
        return False
    try:
        taken = bool(await t.ports.lease.take(item.id))
    except LoopError as e:
        t.lines.append(f"lock label not taken on {item.id}: {clip(str(e), 200, extra_secrets=t.deps.policy.secrets)}")
        return False
    if taken:
        t.lines.append(f"lock label taken on {item.id} for this tick")
    return taken


async def _act_on(t: Tick, decision: TriageDecision, item: TriageItem, start: int,
                  prev_error: str | None) -> TickResult:
    try:
        if start > t.plan.max_attempts:
            raise Escalate("max-attempts", f"{start - 1} failed attempt(s) already recorded for {item.id}")
        for n in range(start, t.plan.max_attempts + 1):
            outcome = await _attempt(t, item, n, prev_error)
            if isinstance(outcome, TickResult):
                return outcome
            prev_error = outcome
            ledger = await append_to_ledger(t, clip(f"fix {item.id}: {item.title}", 200), "failure", prev_error)
            verdict = breaker.check(ledger, breaker.BreakerConfig())
            if verdict.escalate:
                raise Escalate(f"breaker:{verdict.trigger}", verdict.reason)
        raise Escalate("max-attempts", f"{t.plan.max_attempts} attempts failed; last error: {prev_error}")
    except Escalate as esc:
        return await _escalate(t, item, esc, len(decision.items), prev_error)


async def _attempt(t: Tick, item: TriageItem, n: int, prev_error: str | None) -> TickResult | str:
    """One attempt. Returns a TickResult when the tick is decided, else the pruned error of a reject."""
    await t.enter("implementing", attempt=n, item=item.id)
    t.attempt = n
    handle = await _workspace(t, n)
    diff = await _implement(t, item, n, prev_error, handle)
    if not diff.changes:
        return await _reject(t, handle, n, "the implementer made no change")
    await t.enter("verifying", attempt=n)
    tests = await _test(t, handle, diff)
    kind, reasons = await _verify(t, item, n, handle, diff, tests)
    if kind == "ESCALATE_HUMAN":
        raise Escalate("verifier", "; ".join(reasons) or "verifier asked for a human", handle, diff, kind)
    if kind == "REJECT":
        error = "; ".join(reasons) or "rejected"
        if not tests.passed:
            error += "\n" + tests.output[-1500:]
        return await _reject(t, handle, n, error)
    return await _accept(t, item, handle, diff, n, tests=tests, reasons=tuple(reasons))


async def _workspace(t: Tick, n: int) -> WorkspaceHandle:
    """The attempt's worktree: made fresh, or — resuming — the halted attempt's, as it was left."""
    handle = None
    held = t.deps.options.replay.get(f"workspace:{n}")
    if held is not None:  # ``workspace.attach`` is optional: without it a fresh worktree is made
        handle = await t.ports.workspace.attach(str(held.get("run_id")), default=None)
    if handle is None:
        handle = await t.ports.workspace.prepare(worktree_run_id(t.plan.pattern_id, t.run_id, n, t.tick_id),
                                                 t.plan.pattern_id)
    await t.record("workspace", {"attempt": n, "run_id": handle.run_id, "path": handle.path,
                                 "branch": handle.branch})
    return handle


async def _implement(t: Tick, item: TriageItem, n: int, prev_error: str | None, handle: WorkspaceHandle) -> Diff:
    """The implementer's run and the checks of its diff (policy, gate, secrets); escalates on a breach."""
    p = t.plan.pattern
    prompt = implementer_prompt(
        ctx=t.deps.options.context, level=t.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
        item_id=item.id, item_title=item.title, item_detail=item.detail, attempt=n,
        max_attempts=t.plan.max_attempts, previous_error=prev_error,
    )
    ires = await _agent(t, "implementer", n, prompt, handle, Permission.EDIT_WORKTREE, "agent")
    diff: Diff = await t.ports.workspace.diff(handle)
    paths = diff.touched_paths
    await t.record("diff", {"attempt": n, "paths": list(paths)[:200], "changes": len(diff.changes)})
    if n == 1 or paths:
        t.lines.append(f"proposed change touching {', '.join(paths) if paths else '(nothing)'}")
    await check_sandbox(t, "implementer", ires.sandbox_denials, handle, diff)
    violations = check_diff(diff, controls=controls(t))
    if violations:
        v = violations[0]
        raise Escalate(f"policy:{v.code}", f"{v.code}: {v.path} — {v.detail}", handle, diff)
    decision = gate.check(policy(t), list(paths), "commit")
    if not decision.allowed:
        raise Escalate(f"gate:{decision.trigger}", decision.reason, handle, diff)
    leaked = added_secrets(diff.changes, t.deps.policy.secrets)
    if leaked:  # the held diff keeps it verbatim for the human; nothing else ever does
        raise Escalate("secret-in-diff", f"secret-in-diff: the change adds {describe(leaked)}", handle, diff)
    return diff


async def _agent(t: Tick, role: str, n: int, prompt: Any, handle: WorkspaceHandle, permission: Permission,
                 who: str) -> AgentResult:
    """One agent run in the worktree, watched: nothing may change outside it, nor its git metadata."""
    before = await outside_snapshot(t)
    result: AgentResult = await t.call_agent(role, f"{role}:{n}", prompt, handle.path, permission)
    await after_run(t, before, handle, who)
    return result


async def _test(t: Tick, handle: WorkspaceHandle, diff: Diff) -> TestRun:
    """The project's tests in the worktree, watched like an agent; a weakened suite escalates."""
    n = t.attempt
    before = await outside_snapshot(t)
    tests = await run_tests(t, handle)
    await check_outside(t, before, handle, "test run")
    if tests.sandbox_denials:  # reported; a failing run goes back to the implementer with the note in its output
        await t.record(f"sandbox-denied:tests:{n}", {"denials": list(tests.sandbox_denials[:50])})
        t.lines.extend(f"sandbox denied (test run): {d}" for d in tests.sandbox_denials[:20])
    await check_worktree(t, handle)
    await t.ports.workspace.discard_side_effects(handle, default=None)  # test artefacts are not the change
    await t.record("tests", {"attempt": n, "command": tests.command, "passed": tests.passed,
                             "exit_code": tests.exit_code, "output": tests.output[-4000:]})
    if tests.command:
        t.lines.append(f"tests: {'passed' if tests.passed else 'FAILED'} ({tests.command})")
    weakened = await weakened_tests(t, handle, tests)
    if weakened:
        raise Escalate("tests-weakened", weakened, handle, diff)
    return tests


async def _verify(t: Tick, item: TriageItem, n: int, handle: WorkspaceHandle, diff: Diff,
                  tests: TestRun) -> tuple[str, list[str]]:
    """The verifier's verdict (fresh read-only session); APPROVE with failing tests is a REJECT."""
    p = t.plan.pattern
    vprompt = verifier_prompt(
        ctx=t.deps.options.context, level=t.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
        item_id=item.id, item_title=item.title, patch=diff.patch, test_summary=summarise_tests(tests),
    )
    vres = await _agent(t, "verifier", n, vprompt, handle, Permission.READ_ONLY, "verifier")
    await check_sandbox(t, "verifier", vres.sandbox_denials, handle, diff)
    verdict = parse_verdict(redact(vres.text))  # redacted before its reasons are capped
    kind = verdict.kind
    reasons = list(verdict.reasons)
    if not verdict.found:
        reasons.insert(0, "verifier gave no '## Verdict:' line (counted as REJECT)")
    if kind == "APPROVE" and not tests.passed:
        kind, reasons = "REJECT", [f"tests failed: {tests.command}", *reasons]
    await t.record("verdict", {"attempt": n, "verdict": kind, "reasons": reasons[:10]})
    word = VERDICT_WORDS[kind]
    t.lines.append(f"verifier verdict: {word}" + (f" (attempt {n}/{t.plan.max_attempts})" if n > 1 or
                                                    kind == "REJECT" else ""))
    return kind, reasons


async def _merge_rule(t: Tick, diff: Diff) -> tuple[bool, str]:
    """May this change merge by itself (L3: allowlisted paths and promotion.yaml ready), and why."""
    if t.effective != "L3":
        return False, "L2: a human merges"
    auto = gate.check(policy(t), list(diff.touched_paths), "auto-merge")
    promo = await t.ports.promotion.ready(diff) if "promotion" in t.wired else True
    merge_ok = auto.allowed and promo
    why = "auto-merge allowlisted + APPROVE" if merge_ok else (
        auto.reason if not auto.allowed else "promotion.yaml: not merge-ready")
    return merge_ok, why


async def _accept(t: Tick, item: TriageItem, handle: WorkspaceHandle, diff: Diff, n: int, *,
                  tests: TestRun | None = None, reasons: tuple[str, ...] = ()) -> TickResult:
    await t.enter("gated", attempt=n)
    merge_ok, why = await _merge_rule(t, diff)
    message = clip(f"loop({t.plan.pattern_id}): {item.title}", 72) + redact(f"\n\n{item.detail}").rstrip()
    sha = await t.ports.workspace.finish(handle, "active", commit_message=message)
    await t.enter("committed", attempt=n, commit=sha or "")
    t.lines.append("committed: safe + allowlisted")
    merged = False
    pr = None
    if "publisher" in t.wired and sha:
        from .github_publish import publish

        try:
            pr = await publish(t, item, handle, sha, tests, reasons, merge_ok=merge_ok)
        except GithubRefused as e:  # branch protection (or a conflict) refused the merge: a human decides
            raise Escalate("merge-refused", redact(str(e), extra_secrets=t.deps.policy.secrets), handle,
                           diff) from None
        merged = pr is not None and pr.merged
        merge_ok = False  # GitHub merges (or not); never a local merge behind the PR's back
    if merge_ok:
        merged = await _merge(t, handle, sha, n, why)
    elif t.effective == "L3":
        t.lines.append(f"not merged: {why}")
    await t.record("commit", {"attempt": n, "sha": sha, "branch": handle.branch, "merged": merged})
    await append_to_ledger(t, clip(f"fix {item.id}: {item.title}", 200), "success", None)
    note = f"{item.id}: fix on {handle.branch}" + (f" ({pr.url})" if pr else "") + (" (merged)" if merged else "")
    return await t.finish("act", "fix-proposed", note=note, items=1, actions=1, verdict="APPROVE",
                          branch=handle.branch, commit=sha, merged=merged, attempts=n,
                          state_update=_fix_entry(t, item, handle, sha, merged, pr.url if pr else None),
                          extras={"branch": handle.branch, **({"commit": sha} if sha else {}),
                                  **({"pr": pr.url} if pr else {})})


async def _merge(t: Tick, handle: WorkspaceHandle, sha: str | None, n: int, why: str) -> bool:
    """A local merge into the base branch (``workspace.merge`` is optional); False when not merged."""
    try:
        merge_sha = await t.ports.workspace.merge(handle, default=ABSENT)
    except LoopError as e:  # the fix stays proposed on its branch; a human merges
        t.lines.append(f"not merged: {e}")
        return False
    if merge_sha is ABSENT:
        return False
    await t.record("merged", {"attempt": n, "sha": sha, "merge": merge_sha, "branch": handle.branch,
                              "into": handle.base_branch})
    t.lines.append(f"merged into {handle.base_branch}: {why}")
    return True


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


async def _reject(t: Tick, handle: WorkspaceHandle, n: int, error: str) -> str:
    await t.enter("rejected", attempt=n)
    await t.ports.workspace.finish(handle, "rejected")
    pruned = prune_error(error)
    await t.record("rejected", {"attempt": n, "error": pruned})
    return pruned


def _adds_secret(t: Tick, esc: Escalate) -> bool:
    """Does the held change add a secret — whatever the escalation's first reason (a control-file
    edit or a ``.git`` entry is found before the secret)?"""
    if esc.reason == "secret-in-diff":
        return True
    changes = getattr(esc.diff, "changes", None)
    return bool(changes) and bool(added_secrets(changes, t.deps.policy.secrets))


async def _escalate(t: Tick, item: TriageItem, esc: Escalate, found: int, prev_error: str | None) -> TickResult:
    if t.phase != "escalated":
        t._advance("escalated")
    if esc.handle is not None and "workspace" in t.wired:
        if _adds_secret(t, esc):  # ``workspace.withhold`` is optional
            await t.ports.workspace.withhold(esc.handle, default=None)  # the store's held diff: the only copy
        await t.ports.workspace.finish(esc.handle, "escalated")
    summary = await _escalation_summary(t, item, esc, prev_error)
    esc_id = None
    if "journal" in t.wired:
        esc_id = await t.ports.journal.escalate(
            tick_id=t.tick_id, run_id=t.run_id, pattern=t.plan.pattern_id, item_id=item.id, title=item.title,
            diff=esc.diff.patch if esc.diff else "", context=summary, at=await t.now())
    await t.record("escalation", {"id": esc_id, **{k: v for k, v in summary.items() if k != "goal"}})
    ref = f" [{esc_id}]" if esc_id else ""
    t.lines.append(f"escalated{ref}: {esc.reason} — {clip(esc.detail, 160)}")
    action = f"escalated ({esc.reason}){ref}; attempts {summary['attempts']}/{t.plan.max_attempts}"
    if esc.handle is not None:
        action += f"; held on {esc.handle.branch}"
    await t.notify("escalation", f"{t.plan.pattern.name}: escalation{ref}", f"{item.id}: {esc.reason}")
    if "publisher" in t.wired:
        from .github_publish import mirror_escalation

        await mirror_escalation(t, item, esc.reason, redact(esc.detail))
    return await t.finish("act", "escalated", note=f"{item.id}: {esc.reason}", items=found, escalations=1,
                          state_update=t.escalation_state(item.id, item.title, action), verdict=esc.verdict,
                          escalation_id=esc_id, branch=esc.handle.branch if esc.handle else None,
                          attempts=summary["attempts"],
                          extras={"reason": esc.reason, **({"escalation": esc_id} if esc_id else {})})


async def _escalation_summary(t: Tick, item: TriageItem, esc: Escalate, prev_error: str | None) -> dict[str, Any]:
    made = failures_in_a_row(await load_ledger(t), item.id)
    return {
        "goal": t.plan.pattern.goal,
        "item": item.id,
        "title": item.title,
        "attempts": max(t.attempt, made),
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
