"""The act path's checks around every agent and test run, and the ledger of attempts.

Why apart from ``core.act``: these are the guards (nothing changed outside the worktree, the
sandbox refused nothing, the worktree's git metadata is intact, the tests were not weakened)
and the ledger arithmetic; ``core.act`` reads as the sequence of an attempt. Every effect goes
through the tick's ports (``core.effects``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..formats.ledger import Attempt, Ledger, append_attempt, new_ledger, parse_ledger, render_ledger
from ..ports import READ_ONLY_WRITE, Diff, TestRun, WorkspaceHandle
from .control_files import ControlSet, control_set
from .test_weakening import compare_runs

if TYPE_CHECKING:
    from datetime import datetime

    from ..formats.gate_config import GatePolicy
    from .tick import Tick

LEDGER = "loop-ledger.json"


class Escalate(Exception):
    def __init__(self, reason: str, detail: str, handle: WorkspaceHandle | None = None, diff: Diff | None = None,
                 verdict: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.handle, self.diff, self.verdict = reason, detail, handle, diff, verdict


def controls(t: Tick) -> ControlSet:
    """The project's control set (built by the composition root), else this loop's minimum."""
    given = t.deps.policy.controls
    base = given if isinstance(given, ControlSet) else control_set()
    return base.with_paths((t.plan.state_file,))


def policy(t: Tick) -> GatePolicy:
    if t.deps.policy.gate_policy is not None:
        return t.deps.policy.gate_policy
    from ..formats.gate_config import DEFAULT_POLICY

    return DEFAULT_POLICY


async def outside_snapshot(t: Tick) -> Any:
    return await t.ports.guard.snapshot() if "guard" in t.wired else None


async def check_outside(t: Tick, before: Any, handle: WorkspaceHandle, who: str) -> None:
    """After every agent run and every test run: nothing outside the worktree changed, or
    it is restored where git can and the attempt escalates."""
    if "guard" not in t.wired or before is None:
        return
    outside = await t.ports.guard.changes(before)
    if not outside:
        return
    restored = await t.ports.guard.restore(before)
    t.lines.append(f"{who} changed files outside its worktree: {', '.join(outside[:5])}")
    await t.notify("escalation", f"{t.plan.pattern.name}: {who} wrote outside its worktree", "; ".join(outside[:5]))
    raise Escalate("outside-change", f"{who} changed outside the worktree: " + "; ".join(outside[:10])
                   + (f" (restored: {'; '.join(restored[:10])})" if restored else ""), handle)


def escapes(denials: Sequence[str]) -> tuple[str, ...]:
    """The denials that are escape attempts: all but a read-only agent's writes in its own worktree."""
    return tuple(d for d in denials if not d.startswith(READ_ONLY_WRITE))


async def check_sandbox(t: Tick, role: str, denials: Sequence[str], handle: WorkspaceHandle, diff: Diff) -> None:
    """An agent the sandbox (or a git/gh shim) refused something escalates: its result may rest on what
    did not happen — a write outside that failed, a push or commit that was denied, a host it could not
    reach — and the attempt itself is for a human to see. The change is held, approvable."""
    blocked = escapes(denials)
    if not blocked:
        return
    await t.notify("escalation", f"{t.plan.pattern.name}: the sandbox blocked the {role}", "; ".join(blocked[:3]))
    raise Escalate("sandbox-violation", f"the sandbox blocked the {role} {len(blocked)} time(s): "
                   + "; ".join(blocked[:5]), handle, diff)


async def check_worktree(t: Tick, handle: WorkspaceHandle) -> None:
    """The worktree still is the worktree the runtime made: its ``.git`` link and git metadata
    are unchanged (repaired if not) and it holds no nested ``.git`` — before any runtime git
    command runs in it again. (``workspace.integrity`` is optional: a workspace without it has none.)"""
    problems = tuple(await t.ports.workspace.integrity(handle, default=()) or ())
    if problems:
        t.lines.append(f"worktree git metadata tampered with: {', '.join(problems[:3])}")
        raise Escalate("policy:git-dir", "git-dir: " + "; ".join(problems[:10]), handle)


async def after_run(t: Tick, before: Any, handle: WorkspaceHandle, who: str) -> None:
    """Nothing changed outside the worktree, and its git metadata is intact (after an agent or the tests)."""
    await check_outside(t, before, handle, who)
    await check_worktree(t, handle)


async def run_tests(t: Tick, handle: WorkspaceHandle) -> TestRun:
    if "tests" not in t.wired:
        return TestRun(command=None, exit_code=None, passed=True, output="no test runner configured")
    result: TestRun = await t.ports.tests.run(handle.path)
    return result


async def weakened_tests(t: Tick, handle: WorkspaceHandle, tests: TestRun) -> str | None:
    """Why the attempt's run executed less than the base commit's (``core.test_weakening``), or None.

    Only a passing run is compared: a failing one is rejected anyway, so the base run
    (cached per base commit by the runner) is paid only when it can matter.
    """
    if "tests" not in t.wired or not tests.passed or tests.command is None:
        return None
    base = await t.ports.tests.baseline(handle.base_commit, default=None)  # optional: runners without it
    if base is None or base.command is None:
        return None
    found = compare_runs(base.report, tests.report)
    await t.record("tests-baseline", {"attempt": t.attempt, "base_commit": handle.base_commit,
                                      "command": base.command,
                                      "collected": base.report.collected if base.report else None,
                                      "weakened": found.detail[:2000] if found else None})
    return found.detail if found else None


def summarise_tests(tests: TestRun) -> str:
    """What the verifier reads about the tests; "no tests" is said plainly, never as a pass."""
    if not tests.command:
        return ("NO TESTS RAN: no test command was found for this project, so nothing was checked "
                "(this is not a pass). Judge the diff on its own, and escalate if you are unsure.")
    head = f"$ {tests.command}\nexit code: {tests.exit_code}{' (timed out)' if tests.timed_out else ''}\n"
    return head + tests.output[-6000:]


# -- the ledger of attempts (loop-ledger.json)


def stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def ledger_from(t: Tick, text: str | None, now: datetime) -> Ledger:
    """The ledger in ``text``, or a new one for this loop (a pure function: ``now`` is given)."""
    if text:
        return parse_ledger(text, file=LEDGER)
    return new_ledger(t.plan.pattern.goal, t.plan.pattern_id, t.effective, stamp(now))


async def load_ledger(t: Tick) -> Ledger:
    text = await t.ports.state.read(LEDGER)
    if text:
        return parse_ledger(text, file=LEDGER)
    return ledger_from(t, None, await t.now())


def _mine(a: Attempt, item_id: str) -> bool:
    return a.action.startswith(f"fix {item_id}:")


def failures_in_a_row(ledger: Ledger, item_id: str) -> int:
    n = 0
    for a in reversed(ledger.attempts):
        if not _mine(a, item_id):
            continue
        if a.outcome != "failure":
            break
        n += 1
    return n


def last_error(ledger: Ledger, item_id: str) -> str | None:
    for a in reversed(ledger.attempts):
        if _mine(a, item_id):
            return a.error if a.outcome == "failure" else None
    return None


async def append_to_ledger(t: Tick, action: str, outcome: str, error: str | None) -> Ledger:
    """Append one attempt to the ledger *as it is on disk now* (under its lock); returns the new ledger.

    Other ticks append to the same ``loop-ledger.json``: rewriting a copy loaded earlier
    in the tick would drop their attempts.
    """
    now = await t.now()
    tokens = t.tokens

    def add(text: str | None) -> str:
        ledger = ledger_from(t, text, now)
        return render_ledger(append_attempt(ledger, Attempt(iteration=len(ledger.attempts) + 1, action=action,
                                                            outcome=outcome, error=error, tokens_used=tokens,
                                                            timestamp=stamp(now))))

    stored = await t.ports.state.update(LEDGER, add)
    return ledger_from(t, stored, now)
