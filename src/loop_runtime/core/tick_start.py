"""The start of a tick: its files, the kill switch, runs/day, the effective level, and discovery.

Each rule here is the shared one (``core.killswitch.kill_state``, ``core.schedule.runs_today``,
``core.budget.judge``, ``core.levels.effective_level``): the tick only gathers their inputs
through its ports, so the engine, ``status``, the scheduler and the dashboard cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..formats.runlog import parse_run_log, run_ids_on_day
from . import killswitch
from .budget import judge
from .engine import RUN_LOG, Halt
from .fingerprint import fingerprint
from .levels import effective_level, rank
from .prompts import triage_prompt as build_triage_prompt
from .schedule import runs_today, utc_day

if TYPE_CHECKING:
    from .tick import Tick

#: How a human gets past an early exit or the runs/day cap (budget and kill switch still apply).
FORCE_HINT = "run with --force to tick anyway"


async def preflight(t: Tick) -> killswitch.KillState:
    """Malformed files, the kill switch and the runs/day cap, before anything is spent."""
    await validate_files(t)
    kill = await kill_state(t)
    if kill.engaged:
        raise Halt("paused", kill.note)
    if not t.deps.options.force:
        await check_runs_cap(t)
    return kill


async def validate_files(t: Tick) -> None:
    """Refuse to start (and spend tokens) when a file this tick reads or writes is malformed.

    The same check the drivers run before any side effect (``loop_runtime.app.preflight``),
    here over the engine's own state writer, so an embedded engine gets it too.
    """
    from .preflight import PreflightInput, check_texts, reads_for

    names = reads_for(t.level, t.plan.state_file)
    texts = {n: await t.ports.state.read(n) for n in names}
    check_texts(PreflightInput(level=t.level, state_file=t.plan.state_file, texts=texts))


async def kill_state(t: Tick) -> killswitch.KillState:
    """``killswitch.kill_state`` over the files it names; the issue tracker's labels only when no
    file engages the switch (they cost a network call)."""
    pid, state_file = t.plan.pattern_id, t.plan.state_file
    inputs = killswitch.kill_inputs(pid, state_file)
    texts = {n: await t.ports.state.read(n) for n in dict.fromkeys((*inputs.texts, *inputs.switches))}
    state = killswitch.kill_state(pid, state_file=state_file, read=texts.get)
    if state.engaged or "remote_pause" not in t.wired:
        return state
    labels = tuple(await t.ports.remote_pause.labels())
    return killswitch.kill_state(pid, state_file=state_file, read=texts.get, labels=labels,
                                 pause_label=t.deps.policy.pause_label)


async def check_runs_cap(t: Tick) -> None:
    """``runs/day`` from loop-budget.md: runs the run log shows today (``core.schedule.runs_today``),
    with the runs the journal says this runtime began when it can tell (``journal.run_ids_on_day``,
    optional: the store's journal offers none yet, so today the run log alone counts)."""
    cap = t.plan.max_runs_per_day
    if not cap:
        return
    day = utc_day(await t.now())
    logged = run_ids_on_day(parse_run_log(await t.ports.state.read(RUN_LOG) or ""), t.plan.pattern_id, day)
    begun: Any = ()
    if "journal" in t.wired:
        begun = await t.ports.journal.run_ids_on_day(t.plan.pattern_id, day, default=())
    done = runs_today(logged, (r for r in begun if r != t.run_id))  # this tick itself is not a run before it
    if done >= cap:
        raise Halt("runs-cap", f"runs/day cap reached ({done}/{cap} from loop-budget.md)")


async def decide_level(t: Tick, kill: killswitch.KillState) -> None:
    """The effective level (``core.levels.effective_level``): a spent budget halts; ≥80% or no worktree → L1."""
    now = await t.now()
    # a ledger with shared scopes (repository, portfolio) names them, so the reason reads as status's does
    scoped = await t.ports.budget.scoped_status(now, default=None)
    verdict = judge(*scoped) if scoped is not None else judge(await t.ports.budget.status(now))
    decision = effective_level(t.level, budget=verdict, kill=kill, can_act="workspace" in t.wired,
                               source=t.plan.level_source)
    if decision.effective == "halted":
        raise Halt("budget", verdict.reason)
    if verdict.level_cap and rank(t.level) > rank(verdict.level_cap):
        await t.notify("budget-80", f"{t.plan.pattern.name}: budget ≥80%", f"{verdict.reason}; report-only")
    t.effective, t.level_reason = decision.effective, decision.reason
    await t.record("level", {"configured": t.level, "effective": t.effective, "reason": t.level_reason})


async def observe(t: Tick) -> tuple[str, str]:
    """What discovery sees now, and its fingerprint (raises ``DiscoveryUnavailable``)."""
    text = await t.ports.observer.observe() if "observer" in t.wired else ""
    return text, fingerprint(text)


async def last_noop_fingerprint(t: Tick) -> str | None:
    log = parse_run_log(await t.ports.state.read(RUN_LOG) or "")
    for e in reversed(log.entries):
        if e.pattern == t.plan.pattern_id:
            if e.outcome != "no-op":
                return None
            fp = e.extras.get("fingerprint")
            if isinstance(fp, str):
                return fp
            note = e.extras.get("note")
            if isinstance(note, str) and (note == "paused" or note.startswith("halted")):
                continue  # a halted/paused tick says nothing about the observation
            return None
    return None


async def triage_prompt(t: Tick, observation: str) -> Any:
    p = t.plan.pattern
    return build_triage_prompt(
        ctx=t.deps.options.context, level=t.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
        state_file=t.plan.state_file, state_text=await t.ports.state.read(t.plan.state_file),
        observation=observation,
    )
