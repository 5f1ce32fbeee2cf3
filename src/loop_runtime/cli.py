"""``loop-runtime``: the command line.

Exit codes (R27): 0 completed (including no-op and paused), 2 a human is needed
(escalation, gate hold, budget or runs/day halt), 1 configuration or runtime error — always one
line on stderr naming the file, field and value, never a traceback. Every read command
takes ``--json``. The project root is ``--root`` > ``LOOP_PROJECT_ROOT`` > cwd (R33).

Start-up matters (a scheduler or CI job calls this often): only click is imported at
module level; everything else is imported inside the command that needs it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .errors import LoopError


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class _Ctx:
    def __init__(self, root: str | None) -> None:
        self._root_flag = root
        self._project: Any = None

    @property
    def root(self) -> Any:
        from .app.runtime import resolve_root

        return resolve_root(self._root_flag)

    @property
    def project(self) -> Any:
        if self._project is None:
            from .app.runtime import load_project

            self._project = load_project(self.root)
        return self._project


pass_ctx = click.make_pass_decorator(_Ctx)
ROOT_HELP = "Project root (default: $LOOP_PROJECT_ROOT, else the current directory)."

LEVEL_HELP = "Autonomy level: L0 observe, L1 report, L2 propose fixes, L3 merge (default: LOOP.md, else the registry)."


def pattern_param(*, default: str | None = None) -> Any:
    """The pattern as a positional argument or as loop-cost/loop-init's ``-p/--pattern`` (either, not both).

    A wrapper, so the command keeps one ``pattern`` parameter whichever spelling was used.
    """
    import functools

    def deco(f: Any) -> Any:
        @functools.wraps(f)
        def wrapper(*args: Any, pattern: str | None = None, pattern_opt: str | None = None, **kw: Any) -> Any:
            if pattern and pattern_opt and pattern != pattern_opt:
                raise click.UsageError(f"two patterns given: {pattern!r} and --pattern {pattern_opt!r}")
            chosen = pattern or pattern_opt or default
            if chosen is None:
                raise click.UsageError("missing pattern: give it as an argument or with -p/--pattern")
            return f(*args, pattern=chosen, **kw)

        wrapper = click.option("-p", "--pattern", "pattern_opt", metavar="ID",
                               help="Pattern id (same as the PATTERN argument; loop-cost/loop-init spelling).")(wrapper)
        return click.argument("pattern", required=False)(wrapper)

    return deco


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False), default=None, help=ROOT_HELP)
@click.version_option(package_name="loop-runtime")
@click.pass_context
def cli(ctx: click.Context, root: str | None) -> None:
    """Run loop-engineering loops: scheduler, worktrees, verifier, budget breaker, human gates."""
    ctx.obj = _Ctx(root)


# ---------------------------------------------------------------------------- read commands


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_cmd(c: _Ctx, as_json: bool) -> None:
    """List the registry's patterns (the project's registry, else the bundled one)."""
    from .app.readouts import show_list

    show_list(c._root_flag, as_json)


@cli.command()
@pattern_param()
@click.option("-l", "--level", type=click.Choice(["L0", "L1", "L2", "L3"], case_sensitive=False), default=None,
              help=LEVEL_HELP)
@click.option("-c", "--cadence", default=None, help="Override the cadence (e.g. 15m, 6h-1d).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def plan(c: _Ctx, pattern: str, level: str | None, cadence: str | None, as_json: bool) -> None:
    """Show how a loop would run: level, cadence, caps, attempts, and where each came from.

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from .app.commands import plan_doc
    from .render import plan_text

    doc = plan_doc(c.project, pattern, level, cadence)
    if as_json:
        _emit_json(doc)
    else:
        click.echo(plan_text(doc))
        click.echo(f"  registry:    {doc['registry']['source']} ({doc['registry']['path']})")


@cli.command()
@pattern_param(default="daily-triage")
@click.option("-l", "--level", type=click.Choice(["L1", "L2", "L3"]), default="L1", show_default=True,
              help="Readiness level the estimate assumes (its blend of no-op, report and action runs).")
@click.option("-c", "--cadence", default=None, help="Override the cadence (e.g. 15m, 1d, 5m-15m).")
@click.option("-o", "--orchestration", default="single", show_default=True, metavar="MODE",
              help="Multi-agent action cost: single, maker-checker, parallel:N (N>=2), debate:R (R>=1).")
@click.option("--conservative", is_flag=True, help="Use the slower end of a cadence range.")
@click.option("--with-caching", is_flag=True, help="Also estimate the prompt-caching scenario.")
@click.option("--list", "list_ids", is_flag=True, help="List pattern ids (id, token cost, cadence) and exit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (loop-cost's JSON).")
@pass_ctx
def cost(c: _Ctx, pattern: str, level: str, cadence: str | None, orchestration: str, conservative: bool,
         with_caching: bool, list_ids: bool, as_json: bool) -> None:
    """Estimate daily tokens exactly as @cobusgreyling/loop-cost does (default pattern: daily-triage).

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from .app.commands import cost_doc
    from .core.cost import format_estimate, list_patterns

    if list_ids:
        from .adapters.project_files import load_registry

        for line in list_patterns(load_registry(c.root)):
            click.echo(line)
        return
    est = cost_doc(c.root, pattern, level, cadence, orchestration, conservative, with_caching)
    if as_json:
        _emit_json(est)
    else:
        click.echo(format_estimate(est))


@cli.group()
def gate() -> None:
    """Path policy (gate.yaml), exactly as @cobusgreyling/loop-gate."""


@gate.command("check")
@click.argument("paths", nargs=-1, required=False)
@click.option("--paths", "paths_opt", multiple=True, metavar="P1,P2,...",
              help="Changed paths, comma-separated (loop-gate's spelling); more may follow as arguments.")
@click.option("--action", type=click.Choice(["commit", "merge", "auto-merge"]), default="commit", show_default=True,
              help="What the loop wants to do with the paths.")
@click.option("--gate-file", default=None, help="Policy file (default: <root>/gate.yaml, else the safety.md default).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (loop-gate's JSON).")
@pass_ctx
def gate_check(c: _Ctx, paths: tuple[str, ...], paths_opt: tuple[str, ...], action: str, gate_file: str | None,
               as_json: bool) -> None:
    """Check paths against the gate policy; exit 0 allowed, 2 escalate.

    PATHS: changed file paths (each may be comma-separated), e.g. `gate check --paths a.py b.py`.
    """
    paths = (*paths_opt, *paths)
    if not paths:
        raise click.UsageError("no paths: give them as arguments or with --paths a,b")
    from pathlib import Path

    from .core.gate import check, format_decision, split_paths_arg
    from .adapters.project_files import load_gate_policy
    from .formats.gate_config import parse_gate_yaml

    if gate_file:
        try:
            text = Path(gate_file).read_text("utf-8")
        except OSError as e:
            raise LoopError(f"{gate_file}: cannot read gate file: {e.strerror}") from None
        policy, warning = parse_gate_yaml(text, file=gate_file), None
    else:
        policy, warning = load_gate_policy(c.root)
    split = [p for arg in paths for p in split_paths_arg(arg)]
    if not split:  # `--paths ""` or `--paths ,,`: nothing to check is not "allowed"
        raise click.UsageError("--paths must contain at least one non-empty path.")
    decision = check(policy, split, action)
    if warning and not as_json:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _emit_json(decision.as_json())
    else:
        click.echo(format_decision(decision))
    sys.exit(0 if decision.allowed else 2)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def doctor(c: _Ctx, as_json: bool) -> None:
    """Check the project: files, git, tests, backends, GitHub, Temporal — each with its fix.

    Exit 0 ready, 2 a human must act, 1 broken.
    """
    from .core.doctor import as_json as doctor_json, exit_code, render
    from .app.doctor import run_checks

    checks = run_checks(c.root)
    if as_json:
        _emit_json(doctor_json(checks))
    else:
        click.echo(render(checks))
    sys.exit(exit_code(checks))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--fleet", "fleet", default=None, metavar="FILE",
              help="A fleet file (loop-fleet.toml): every repository's loops, one portfolio budget.")
@click.option("--temporal", "temporal", is_flag=False, flag_value="", default=None, metavar="[HOST:PORT]",
              help="The project on Temporal: schedules, running ticks, waiting escalations (address: "
              "[temporal] in loop-runtime.toml, else localhost:7233).")
@click.option("--namespace", default=None, help="Temporal namespace (with --temporal).")
@pass_ctx
def status(c: _Ctx, as_json: bool, fleet: str | None, temporal: str | None, namespace: str | None) -> None:
    """Every loop: level (configured/effective), cadence, next run, last outcome, spend, escalations."""
    if temporal is not None:
        from .temporal.commands import show_temporal_status

        show_temporal_status(c.project, temporal or None, namespace, as_json)
        return
    from .app.readouts import show_status

    if fleet:
        from .adapters.fleet import load_fleet
        from .app.fleet import fleet_status, print_fleet_status
        from .app.runtime import now_utc

        doc = fleet_status(load_fleet(fleet), now_utc())
        _emit_json(doc) if as_json else print_fleet_status(doc)
        return

    show_status(c._root_flag, as_json, c.project)


def _store_if_exists(project: Any) -> Any:
    from .app.commands import store_if_exists

    return store_if_exists(project)


# ---------------------------------------------------------------------------- run


@cli.command()
@pattern_param()
@click.option("-l", "--level", type=click.Choice(["L0", "L1", "L2", "L3"], case_sensitive=False), default=None,
              help=LEVEL_HELP)
@click.option("--dry-run", is_flag=True, help="Run in memory: read the project, write nothing.")
@click.option("--ticks", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="How many ticks to run, one after another.")
@click.option("--backend", type=click.Choice(["mock", "claude", "codex", "openai", "grok", "opencode", "gemini"], case_sensitive=False), default=None,
              help="Agent backend (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario: a bundled name or a YAML file.")
@click.option("--model", default=None, help="Model for the agent backend (default: the backend's own).")
@click.option("--log-format", type=click.Choice(["auto", "plain", "json", "none"]), default="auto",
              help="Progress on stderr: live on a TTY, plain lines otherwise; json for structured events.")
@click.option("--force", is_flag=True, help="Tick even if nothing changed since the last no-op or the runs/day cap "
              "is reached (the token budget and the kill switch still apply).")
@click.option("--budget", type=click.IntRange(1, None), default=None, metavar="TOKENS",
              help="Today's token cap for this loop (the smaller of this and the configured cap wins).")
@click.option("--json", "as_json", is_flag=True, help="Print the tick results as JSON.")
@click.option("--fleet", "fleet", default=None, metavar="FILE",
              help="A fleet file (loop-fleet.toml): every repository's loops, one portfolio budget.")
@pass_ctx
def run(c: _Ctx, pattern: str, level: str | None, dry_run: bool, ticks: int, backend: str | None,
        scenario: str | None, model: str | None, log_format: str, force: bool, budget: int | None,
        as_json: bool, fleet: str | None) -> None:
    """Run tick(s) of one loop now.

    PATTERN: a pattern id from the registry (`loop-runtime list`).
    """
    from .app.commands import notifier_for, run_ticks
    from .progress import make_progress
    from .app.runner import RunOptions

    project, portfolio = (c.project, None) if not fleet else _fleet_member(c, fleet, dry_run)
    progress = make_progress(log_format, total=ticks)
    opts = RunOptions(level=level, backend=backend, dry_run=dry_run, scenario=scenario, model=model,
                      on_event=progress.event if progress else None,
                      notifier=notifier_for(project, lambda msg: click.echo(f"notify: {msg}", err=True)),
                      force=force, budget=budget, portfolio=portfolio)
    try:
        report = run_ticks(project, pattern, opts, ticks)
    finally:
        if progress:
            progress.close()
        if portfolio is not None:
            portfolio.store.close()
    if as_json:
        _emit_json(report.as_json())
    else:
        from .render import tick_report

        click.echo(tick_report(report.results, pattern_name=report.plan.pattern.name,
                               level=level or report.plan.level, backend=report.backend, dry_run=dry_run,
                               spent=report.spent, cap=report.cap))
    sys.exit(report.exit_code)


def _fleet_member(c: _Ctx, fleet: str, dry_run: bool) -> tuple[Any, Any]:
    """``--fleet FILE`` inside one of its repositories: that repository as the fleet sees it, and the
    portfolio ledger it spends from (not opened for a dry run, which writes nothing)."""
    from .adapters.fleet import load_fleet, open_portfolio
    from .errors import ConfigError
    from .app.fleet import fleet_project

    loaded = load_fleet(fleet)
    place = loaded.place_of(c.root)
    if place is None:
        raise ConfigError("--fleet", "root", str(c.root), message=f"{c.root} is not a repository of the fleet "
                          f"{fleet} (repositories: {', '.join(p.name for p in loaded.places)})")
    project = fleet_project(place)
    return project, None if dry_run else open_portfolio(loaded).for_repo(place.name)


# ---------------------------------------------------------------------------- human actions


@cli.command()
@click.argument("pattern", required=False)
@click.option("--reason", default="", help="Recorded in the kill-switch file.")
@pass_ctx
def kill(c: _Ctx, pattern: str | None, reason: str) -> None:
    """Pause every loop (or one): writes loop-pause-all (or loop-pause-<pattern>) at the root.

    PATTERN: the loop to pause (default: all loops).
    """
    from .app.actions import kill as do_kill

    name = do_kill(c.project, pattern, reason=reason)
    click.echo(f"Kill switch set: {name} — {'all loops' if pattern is None else pattern} paused; "
               "running ticks stop within 5 seconds.")
    from .temporal.commands import kill_switch_on_temporal

    note = kill_switch_on_temporal(c.project, pattern, reason, engaged=True)
    if note:
        click.echo(note)


@cli.command()
@click.argument("pattern", required=False)
@pass_ctx
def resume(c: _Ctx, pattern: str | None) -> None:
    """Clear the kill switch written by `kill` (flags written by hand are reported).

    PATTERN: the loop to resume (default: the all-loops switch).
    """
    from .app.actions import resume as do_resume

    cleared, remaining = do_resume(c.project, pattern)
    click.echo(f"Cleared: {', '.join(cleared)}" if cleared else "No kill-switch file to clear.")
    from .temporal.commands import kill_switch_on_temporal

    note = kill_switch_on_temporal(c.project, pattern, "", engaged=False)
    if note:
        click.echo(note)
    for r in remaining:
        click.echo(f"Still paused by {r}")
    if remaining:
        sys.exit(1)


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include approved and rejected ones.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def escalations(c: _Ctx, show_all: bool, as_json: bool) -> None:
    """List escalations held for a human."""
    from .app.commands import escalations_doc

    doc = escalations_doc(c.project, show_all)
    docs = doc["escalations"]
    if as_json:
        _emit_json(doc)
        return
    if not docs:
        click.echo("No open escalations.")
        return
    from .render import table

    click.echo(table([[d["id"], d["status"], d["pattern"], d["item"], d["reason"], d["createdAt"], d["title"][:60]]
                      for d in docs], ["ID", "STATUS", "LOOP", "ITEM", "REASON", "CREATED", "TITLE"]))


@cli.command()
@click.argument("escalation_id")
@click.option("--merge", is_flag=True, help="Also merge into the base branch (L3 decision by a human); on an "
              "escalation approved earlier, merge its branch now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@pass_ctx
def approve(c: _Ctx, escalation_id: str, merge: bool, as_json: bool) -> None:
    """Apply a held change exactly as reviewed (no agent is called).

    ESCALATION_ID: the id `loop-runtime escalations` shows.
    """
    from .temporal.commands import decide_on_temporal

    r = decide_on_temporal(c.project, escalation_id, "approved", merge=merge)
    if r is not None:
        _emit_json(r) if as_json else click.echo(_temporal_decision_text(r))
        return
    from .app.actions import approve as do_approve

    r = do_approve(c.project, escalation_id, merge=merge)
    if as_json:
        _emit_json(r)
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
def reject(c: _Ctx, escalation_id: str, reason: str, keep_branch: bool) -> None:
    """Discard a held change: remove its worktree and branch, and record the decision.

    ESCALATION_ID: the id `loop-runtime escalations` shows.
    """
    from .temporal.commands import decide_on_temporal

    t = decide_on_temporal(c.project, escalation_id, "rejected", reason=reason, keep_branch=keep_branch)
    if t is not None:
        click.echo(_temporal_decision_text(t))
        return
    from .app.actions import reject as do_reject

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


@cli.command()
@click.argument("pattern")
@click.argument("tokens", type=int)
@click.option("--reason", default="manual top-up", show_default=True, help="Recorded with the top-up.")
@click.option("--resume", "resume_tick", is_flag=True, help="Resume the last budget-halted tick from its last phase.")
@click.option("--backend", type=click.Choice(["mock", "claude", "codex", "openai", "grok", "opencode", "gemini"], case_sensitive=False), default=None,
              help="Backend for the resumed tick (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario for the resumed tick (a bundled name or a file).")
@click.option("--fleet", "fleet", default=None, metavar="FILE", help="The fleet file (for @portfolio).")
@pass_ctx
def topup(c: _Ctx, pattern: str, tokens: int, reason: str, resume_tick: bool, backend: str | None,
          scenario: str | None, fleet: str | None) -> None:
    """Raise today's cap for one loop (or @repo: the repository's, @portfolio: the fleet's); optionally resume.

    PATTERN: the loop's id, @repo or @portfolio; TOKENS: how many tokens to add to today's cap.
    """
    from .app.actions import topup as do_topup

    if pattern.startswith("@"):
        from .app.fleet import topup_scope

        r = topup_scope(c.project, pattern, tokens, reason=reason, fleet=fleet, resume=resume_tick)
        click.echo(f"Top-up: +{r['tokens']:,} tokens for {r['scope']} today ({r['day']}): {reason}")
        return

    if resume_tick:  # the resumed tick's files too, before the top-up is recorded
        from .app.preflight import preflight
        from .app.runner import RunOptions, backend_name

        plan_ = c.project.plan(pattern)
        preflight(c.project, plan_, backend=backend_name(c.project, plan_, RunOptions(backend=backend)),
                  scenario=scenario)
    r = do_topup(c.project, pattern, tokens, reason=reason)
    click.echo(f"Top-up: +{r['tokens']:,} tokens for {pattern} today ({r['day']}): {reason}")
    from .temporal.commands import topup_on_temporal

    note = topup_on_temporal(c.project, pattern, tokens, reason)
    if note:
        click.echo(note)
    if resume_tick:
        import asyncio

        from .app.runner import RunOptions, resume_halted

        result = asyncio.run(resume_halted(c.project, pattern, RunOptions(backend=backend, scenario=scenario)))
        if result is None:
            click.echo("No budget-halted tick to resume.")
            return
        click.echo(f"resumed tick: {result.headline}")
        for line in result.lines:
            click.echo(f"· {line}")
        sys.exit(result.exit_code)


# ---------------------------------------------------------------------------- always-on


@cli.command()
@click.argument("patterns", nargs=-1)
@click.option("--dashboard", is_flag=True, help="Also serve the dashboard.")
@click.option("--port", type=int, default=8765, show_default=True, help="Dashboard port (with --dashboard).")
@click.option("--backend", type=click.Choice(["mock", "claude", "codex", "openai", "grok", "opencode", "gemini"], case_sensitive=False), default=None,
              help="Agent backend (default: loop-runtime.toml, else mock).")
@click.option("--scenario", default=None, help="Mock backend scenario: a bundled name or a YAML file.")
@click.option("--log-format", type=click.Choice(["auto", "plain", "json", "none"]), default="auto",
              help="Log lines on stderr: plain for people, json for machines, none for quiet.")
@click.option("--fleet", "fleet", default=None, metavar="FILE",
              help="A fleet file (loop-fleet.toml): every repository's loops, one portfolio budget.")
@pass_ctx
def start(c: _Ctx, patterns: tuple[str, ...], dashboard: bool, port: int, backend: str | None,
          scenario: str | None, log_format: str, fleet: str | None) -> None:
    """Run every enabled loop (or the named ones) on its cadence until SIGTERM/SIGINT.

    PATTERNS: pattern ids to run (default: every enabled loop).
    """
    from .daemon import run_daemon

    if fleet:
        from .errors import ConfigError
        from .fleet_daemon import run_fleet_daemon

        if patterns:
            raise ConfigError("start", "patterns", " ".join(patterns),
                              message="start --fleet runs every enabled loop of every repository: name no patterns "
                                      "(disable loops with [repos.patterns.<id>] enabled = false)")
        sys.exit(run_fleet_daemon(fleet, backend=backend, scenario=scenario, log_format=log_format,
                                  dashboard_port=port if dashboard else None))

    sys.exit(run_daemon(c.project, list(patterns), dashboard=dashboard, port=port, backend=backend,
                        scenario=scenario, log_format=log_format))


@cli.command()
@click.option("--port", type=int, default=8765, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (anything but loopback requires a token).")
@click.option("--token", default=None, help="Required for mutating requests (default: random, printed).")
@click.option("--fleet", "fleet", default=None, metavar="FILE",
              help="Serve the fleet overview (every repository's loops, the portfolio) instead of one project.")
@pass_ctx
def dashboard(c: _Ctx, port: int, host: str, token: str | None, fleet: str | None) -> None:
    """Serve the local dashboard (cost burn-down, live loops, kill button, escalations)."""
    from .dashboard.server import serve

    if fleet:
        from .adapters.fleet import load_fleet
        from .dashboard.fleet import make_fleet_server
        from .dashboard.server import dashboard_url

        server, tok = make_fleet_server(load_fleet(fleet), host=host, port=port, token=token)
        click.echo(f"dashboard: {dashboard_url(host, port, tok)}", err=True)
        server.run()
        return

    serve(c.project, host=host, port=port, token=token)


@cli.command()
@pass_ctx
def mcp(c: _Ctx) -> None:
    """Serve this project over MCP on stdin/stdout (needs the [mcp] extra).

    Tools: list_patterns, plan, status, cost, run_tick (a dry run unless confirm is true), kill, resume,
    escalations, approve, reject; resources: each state file and the run log (redacted).
    """
    root = c.root
    from .optional import check

    check("mcp", extra="mcp", feature="the MCP server (`loop-runtime mcp`)")
    from .mcp_server import serve

    serve(root)


# ---------------------------------------------------------------------------- Temporal


def _temporal_decision_text(r: dict[str, Any]) -> str:
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


def _temporal_options(f: Any) -> Any:
    f = click.option("--task-queue", default=None, help="Task queue (default: [temporal] task_queue, else "
                     "loop-runtime).")(f)
    f = click.option("--namespace", default=None, help="Temporal namespace (default: [temporal] namespace, "
                     "else default).")(f)
    return click.option("--temporal", "address", default=None, metavar="HOST:PORT",
                        help="Temporal frontend (default: [temporal] address, else localhost:7233).")(f)


@cli.command()
@_temporal_options
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Where this worker keeps its clones (default: $LOOP_RUNTIME_WORKER_DIR, else "
              "~/.cache/loop-runtime/worker).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Ticks this worker runs at once (one at a time per repository).")
@pass_ctx
def worker(c: _Ctx, address: str | None, namespace: str | None, task_queue: str | None, work_dir: str | None,
           concurrency: int) -> None:
    """Run a Temporal worker: ticks, budgets and escalations of every repository scheduled on the queue."""
    from .temporal.commands import run_worker_command

    run_worker_command(c, address, namespace, task_queue, work_dir, concurrency)


@cli.group()
def schedule() -> None:
    """Temporal Schedules of the project's loops."""


@schedule.command("sync")
@_temporal_options
@click.option("--fleet", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A fleet file (loop-fleet.toml): sync every repository it lists (local paths).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@pass_ctx
def schedule_sync(c: _Ctx, address: str | None, namespace: str | None, task_queue: str | None, fleet: str | None,
                  as_json: bool) -> None:
    """Create or update one Schedule per enabled loop, delete those of removed loops, pause while killed."""
    from .temporal.commands import schedule_sync_command

    docs = schedule_sync_command(c, address, namespace, task_queue, fleet)
    if as_json:
        _emit_json(docs if fleet else docs[0])
        return
    for d in docs:
        click.echo(d["text"])


# ---------------------------------------------------------------------------- --root anywhere


def _root_after_subcommand(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``loop-runtime status --root X`` means the same as ``loop-runtime --root X status`` (the later one wins)."""
    if value is not None:
        ctx.ensure_object(_Ctx)._root_flag = value


def _accept_root_everywhere(group: click.Group) -> None:
    """Give every subcommand (and sub-subcommand) its own ``--root``, as gh/git users expect."""
    for command in group.commands.values():
        if not any(isinstance(p, click.Option) and "--root" in p.opts for p in command.params):
            command.params.append(click.Option(["--root"], type=click.Path(file_okay=False), default=None,
                                               expose_value=False, is_eager=True, callback=_root_after_subcommand,
                                               help=ROOT_HELP))
        if isinstance(command, click.Group):
            _accept_root_everywhere(command)


_accept_root_everywhere(cli)


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Map every error to one line and the documented exit code (click's own here, the rest in ``readouts``)."""
    from .app.readouts import echo, guarded, say_error

    def run() -> None:
        try:
            cli.main(args=argv, prog_name="loop-runtime", standalone_mode=False)
        except click.exceptions.Abort:
            echo("loop-runtime: aborted", err=True)
            sys.exit(1)
        except click.ClickException as e:
            say_error(f"loop-runtime: {e.format_message()}")
            sys.exit(1)

    guarded(run)


if __name__ == "__main__":  # pragma: no cover
    main()
