"""What a human does: ``kill``, ``resume``, ``approve``, ``reject``, ``topup``.

Each calls the application layer's action (``app.actions``; on Temporal, ``temporal.commands``
first) and says in words what it did.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .group import BACKEND_CHOICE, Ctx, cli, emit_json, pass_ctx


@cli.command()
@click.argument("pattern", required=False)
@click.option("--reason", default="", help="Recorded in the kill-switch file.")
@pass_ctx
def kill(c: Ctx, pattern: str | None, reason: str) -> None:
    """Pause every loop (or one): writes loop-pause-all (or loop-pause-<pattern>) at the root.

    PATTERN: the loop to pause (default: all loops).
    """
    from ..app.actions import kill as do_kill

    name = do_kill(c.project, pattern, reason=reason)
    click.echo(f"Kill switch set: {name} — {'all loops' if pattern is None else pattern} paused; "
               "running ticks stop within 5 seconds.")
    from ..temporal.commands import kill_switch_on_temporal

    note = kill_switch_on_temporal(c.project, pattern, reason, engaged=True)
    if note:
        click.echo(note)


@cli.command()
@click.argument("pattern", required=False)
@pass_ctx
def resume(c: Ctx, pattern: str | None) -> None:
    """Clear the kill switch written by `kill` (flags written by hand are reported).

    PATTERN: the loop to resume (default: the all-loops switch).
    """
    from ..app.actions import resume as do_resume

    cleared, remaining = do_resume(c.project, pattern)
    click.echo(f"Cleared: {', '.join(cleared)}" if cleared else "No kill-switch file to clear.")
    from ..temporal.commands import kill_switch_on_temporal

    note = kill_switch_on_temporal(c.project, pattern, "", engaged=False)
    if note:
        click.echo(note)
    for r in remaining:
        click.echo(f"Still paused by {r}")
    if remaining:
        sys.exit(1)


@cli.command()
@click.argument("escalation_id")
@click.option("--merge", is_flag=True, help="Also merge into the base branch (L3 decision by a human); on an "
              "escalation approved earlier, merge its branch now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@pass_ctx
def approve(c: Ctx, escalation_id: str, merge: bool, as_json: bool) -> None:
    """Apply a held change exactly as reviewed (no agent is called).

    ESCALATION_ID: the id `loop-runtime escalations` shows.
    """
    from ..temporal.commands import decide_on_temporal

    r = decide_on_temporal(c.project, escalation_id, "approved", merge=merge)
    if r is not None:
        emit_json(r) if as_json else click.echo(temporal_decision_text(r))
        return
    from ..app.actions import approve as do_approve

    r = do_approve(c.project, escalation_id, merge=merge)
    if as_json:
        emit_json(r)
        return
    click.echo(approve_text(r))


def approve_text(r: dict[str, Any]) -> str:
    """What ``approve`` did, in words: the commit, the merge, and what happened to the runtime's own files."""
    esc = r["id"]
    if r.get("later"):
        lines = [f"Merged {esc} (approved earlier): {r['branch']} into {r['into']} at {r['merge'][:12]}."]
    elif not r.get("branch"):  # an escalation without a held diff (breaker, max attempts): nothing to apply
        lines = [f"Approved {esc}: it held no change, so nothing was committed or merged; the decision is recorded."]
    else:
        where = f" on {r['branch']}" + (f" ({r['commit'][:12]})" if r.get("commit") else "")
        lines = [f"Approved {esc}: committed{where}."]
        if r.get("merge"):
            lines.append(f"Merged {r['branch']} into {r['into']} at {r['merge'][:12]}.")
        elif r.get("branch"):
            lines.append(f"Not merged: `loop-runtime approve {esc} --merge` merges it later.")
    if r.get("committed"):
        lines.append(f"Committed loop-runtime's own files first ({r['stateCommit'][:12]}), since the branch "
                     f"changes them too: {', '.join(r['committed'])}.")
    if r.get("carried"):
        lines.append(f"Carried over loop-runtime's own uncommitted files (still uncommitted): "
                     f"{', '.join(r['carried'])}.")
    removed = r.get("removed") or {}
    if removed.get("worktree"):
        lines.append(f"Removed worktree {removed['worktree']}; kept branch {r['branch']}.")
    return "\n".join(lines)


@cli.command()
@click.argument("escalation_id")
@click.option("--reason", required=True, help="Why — recorded in the state file.")
@click.option("--keep-branch", is_flag=True, help="Keep the branch loop/<run-id> (with the held change committed "
              "on it) instead of deleting it.")
@pass_ctx
def reject(c: Ctx, escalation_id: str, reason: str, keep_branch: bool) -> None:
    """Discard a held change: remove its worktree and branch, and record the decision.

    ESCALATION_ID: the id `loop-runtime escalations` shows.
    """
    from ..temporal.commands import decide_on_temporal

    t = decide_on_temporal(c.project, escalation_id, "rejected", reason=reason, keep_branch=keep_branch)
    if t is not None:
        click.echo(temporal_decision_text(t))
        return
    from ..app.actions import reject as do_reject

    r = do_reject(c.project, escalation_id, reason=reason, keep_branch=keep_branch)
    click.echo(f"Rejected {escalation_id}: {reason}")
    removed = r.get("removed") or {}
    gone = [f"worktree {removed['worktree']}" if removed.get("worktree") else "",
            f"branch {removed['branch']}" if removed.get("branch") else "",
            f"held patch {removed['patch']}" if removed.get("patch") else ""]
    if any(gone):
        click.echo("Removed " + ", ".join(g for g in gone if g) + ".")
    if removed.get("branchKept"):
        click.echo(f"Kept branch {removed['branchKept']} (the held change is committed on it); "
                   f"delete it with `git branch -D {removed['branchKept']}`.")
    elif not any(gone):
        click.echo("Nothing on disk to remove (no worktree or branch was left).")


def temporal_decision_text(r: dict[str, Any]) -> str:
    """What an approve/reject of an escalation waiting on Temporal did, in words."""
    verb = "Approved" if r["decision"] == "approved" else "Rejected"
    text = f"{verb} {r['id']} on Temporal (signal sent to its waiting tick)"
    if r.get("applied"):
        res = r.get("result") or {}
        where = res.get("pushedBranch") or res.get("branch")
        text += "; applied by the worker holding the change" + (f", pushed {where}" if where else "") + "."
    elif r.get("error"):
        text += f"; the worker could not apply it: {r['error']}"
    elif r.get("pending"):
        text += f"; {r['pending']}."
    return text


@cli.command()
@click.argument("pattern")
@click.argument("tokens", type=int)
@click.option("--reason", default="manual top-up", show_default=True, help="Recorded with the top-up.")
@click.option("--resume", "resume_tick", is_flag=True, help="Resume the last budget-halted tick from its last phase.")
@click.option("--backend", type=BACKEND_CHOICE, default=None,
              help="Backend for the resumed tick (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario for the resumed tick (a bundled name or a file).")
@click.option("--fleet", "fleet", default=None, metavar="FILE", help="The fleet file (for @portfolio).")
@pass_ctx
def topup(c: Ctx, pattern: str, tokens: int, reason: str, resume_tick: bool, backend: str | None,
          scenario: str | None, fleet: str | None) -> None:
    """Raise today's cap for one loop (or @repo: the repository's, @portfolio: the fleet's); optionally resume.

    PATTERN: the loop's id, @repo or @portfolio; TOKENS: how many tokens to add to today's cap.
    """
    from ..app.actions import topup as do_topup

    if pattern.startswith("@"):
        from ..temporal.commands import topup_scope_command

        r, note = topup_scope_command(c.project, pattern, tokens, reason=reason, fleet=fleet, resume=resume_tick)
        click.echo(f"Top-up: +{r['tokens']:,} tokens for {r['scope']} today ({r['day']}): {reason}")
        if note:  # the portfolio's (or repository's) budget workflow on Temporal
            click.echo(note)
        return

    if resume_tick:  # the resumed tick's files too, before the top-up is recorded
        from ..app.preflight import preflight
        from ..app.runner import RunOptions, backend_name

        plan_ = c.project.plan(pattern)
        preflight(c.project, plan_, backend=backend_name(c.project, plan_, RunOptions(backend=backend)),
                  scenario=scenario)
    r = do_topup(c.project, pattern, tokens, reason=reason)
    click.echo(f"Top-up: +{r['tokens']:,} tokens for {pattern} today ({r['day']}): {reason}")
    from ..temporal.commands import topup_on_temporal

    note = topup_on_temporal(c.project, pattern, tokens, reason)
    if note:
        click.echo(note)
    if resume_tick:
        _resume_halted(c, pattern, backend, scenario)


def _resume_halted(c: Ctx, pattern: str, backend: str | None, scenario: str | None) -> None:
    """``topup --resume``: the last budget-halted tick from its last phase (exit code: the tick's)."""
    import asyncio

    from ..app.runner import RunOptions, resume_halted

    result = asyncio.run(resume_halted(c.project, pattern, RunOptions(backend=backend, scenario=scenario)))
    if result is None:
        click.echo("No budget-halted tick to resume.")
        return
    click.echo(f"resumed tick: {result.headline}")
    for line in result.lines:
        click.echo(f"· {line}")
    sys.exit(result.exit_code)
