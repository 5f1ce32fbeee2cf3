"""Runs ticks of one loop for real or as a dry run: the engine with the project's services around it.

The engine (``core``) decides; this module puts the real adapters around one tick — the state
writer with the level's write allowlist, a git worktree, the test runner, the outside-change
guard, the store as journal and budget ledger (``services.Services`` builds each of them), the
kill switch polled while an agent runs — and holds the loop's lease (``leases``) while it ticks.
The backend (``backends``), the lease and the resumable-tick journal (``resume``) live in
modules of their own; the names below are re-exported for the drivers and tests that import them
from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..core import killswitch
from ..core.budget import BudgetBreaker, utc_day
from ..core.engine import TickDeps
from ..core.loop_engine import LoopEngine
from ..core.plan import Plan
from ..core.result import TickResult
from ..ports import Clock, EventSink, Notifier
from .backends import BACKENDS, backend_name, github_session, make_backend, mcp_by_level, project_sandbox, sandbox_note
from .rules import external_spent, kill_stop, read_log
from .runtime import Project, gate_policy
from .services import Services, runtime_written

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store

__all__ = ["BACKENDS", "LoopRunner", "RunOptions", "backend_name", "dry_run", "kill_stop", "make_backend",
           "project_sandbox", "resume_halted", "runtime_written", "sandbox_note"]


@dataclass
class RunOptions:
    level: str | None = None
    backend: str | None = None
    dry_run: bool = False
    scenario: str | None = None
    model: str | None = None
    clock: Clock | None = None
    on_event: EventSink | None = None
    notifier: Notifier | None = None
    replay: Mapping[str, Mapping[str, Any]] | None = None
    run_id: str | None = None
    extra_stop: Callable[[], str | None] | None = None
    force: bool = False  # `run --force`: bypass the early-exit fingerprint and runs/day (never budget or kill)
    budget: int | None = None  # `run --budget`: today's token cap for this loop (the smaller cap wins)
    portfolio: Any = None  # adapters.fleet.PortfolioLedger: the fleet's shared budget scope (`--fleet`)


# ---------------------------------------------------------------------------- dry run


async def dry_run(project: Project, plan: Plan, opts: RunOptions, ticks: int = 1) -> list[TickResult]:
    """Everything in memory: the real files are read, nothing is written to the project."""
    from ..adapters.mock import MemoryStateWriter, MemoryWorkspace
    from ..adapters.project import load_context
    from ..adapters.state_files import FileStateWriter, project_secrets

    from .preflight import preflight

    clock = opts.clock or _system_clock()
    name = backend_name(project, plan, opts)
    preflight(project, plan, level=opts.level or plan.level, backend=name, scenario=opts.scenario, dry_run=True)
    secrets = project_secrets(project.root)
    state = MemoryStateWriter(seed=FileStateWriter(project.root, writable=()), secrets=secrets)
    ws = MemoryWorkspace()
    level = opts.level or plan.level
    if name != "mock" and level in ("L2", "L3"):
        level = "L1"  # a real agent in a dry run may only read
    sandbox = project_sandbox(project, level) if name != "mock" else None
    backend = make_backend(name, project, plan, opts, memory=ws, sandbox=sandbox)
    today = utc_day(clock.now())
    budget = BudgetBreaker(plan.daily_token_cap, spent=external_spent(read_log(project), None, plan.pattern_id, today),
                           day=today)
    deps = TickDeps(backend=backend, state=state, budget=budget, clock=clock, workspace=ws,
                    context=load_context(project.root), gate_policy=gate_policy(project), root=str(project.root),
                    on_event=opts.on_event, env={}, force=opts.force, secrets=secrets,
                    sandbox_note=sandbox_note(sandbox, name) if sandbox is not None else None,
                    mcp_servers=mcp_by_level(project))
    engine = LoopEngine(plan, deps=deps)
    return [await engine.tick(level=level) for _ in range(ticks)]


def _system_clock() -> Clock:
    from ..adapters.clock import SystemClock

    return SystemClock()


# ---------------------------------------------------------------------------- real run


class LoopRunner:
    """Runs real ticks of one pattern in a project, holding the pattern's lease while it does.

    ``source`` is the project's ``Services`` (the daemon shares one among its loops), or the project
    itself (then ``store``/``owner`` are handed to services built here, closed by ``close``).
    """

    def __init__(self, source: Project | Services, plan: Plan, opts: RunOptions, *, store: Store | None = None,
                 owner: str | None = None) -> None:
        self._own = not isinstance(source, Services)
        project = source.project if isinstance(source, Services) else source
        self.project, self.plan, self.opts = project, plan, opts
        self.backend_name = backend_name(project, plan, opts)
        self._preflight()  # before the store exists: a bad file leaves the tree untouched
        self.services = source if isinstance(source, Services) else Services.open(
            project, clock=opts.clock, notifier=opts.notifier, store=store, owner=owner)
        self.clock = opts.clock or self.services.clock
        self.owner = self.services.owner
        self.store  # noqa: B018 — opened now, as before: a store that cannot open fails the runner, not a tick

    @property
    def store(self) -> Store:
        return self.services.store

    def close(self) -> None:
        """Close the services this runner built (shared ones belong to whoever built them)."""
        if self._own:
            self.services.close()

    def _preflight(self, *, scenario: bool = True) -> None:
        from .preflight import preflight

        preflight(self.project, self.plan, level=self.opts.level or self.plan.level, backend=self.backend_name,
                  scenario=self.opts.scenario, check_scenario=scenario)

    async def tick(self) -> TickResult:
        from .leases import held
        from .recovery import recover

        pattern = self.plan.pattern_id
        self._preflight(scenario=False)  # files may have changed since the last tick (the daemon runs for days)
        async with held(self.store, pattern, self.owner, self.clock):
            recover(self.project, self.store, pattern, self.clock.now())
            deps = self._deps()
            return await LoopEngine(self.plan, deps=deps).tick(level=self.opts.level or self.plan.level)

    def _deps(self) -> TickDeps:
        """The engine's ports for one tick of this loop, from the project's services."""
        from ..adapters.project import load_context

        project, plan, services, cfg = self.project, self.plan, self.services, self.project.config
        level = self.opts.level or plan.level
        tick_id, run_id = self._ids()
        self._sync_external_spend()
        secrets, github = self._secrets()
        env = _agent_env()
        sandbox = project_sandbox(project, level)
        boxed = sandbox if sandbox.active else None
        workspace = self._workspace(level, secrets)
        return TickDeps(
            backend=services.backend(self.backend_name, plan, self.opts, sandbox=boxed),
            state=services.state_writer(level, plan.state_file, secrets),
            budget=services.ledger(plan, tick_id, portfolio=self.opts.portfolio.scope(tick_id, self.backend_name)
                                   if self.opts.portfolio else None),
            clock=self.clock,
            workspace=workspace,
            **self._checks(workspace, env, secrets, boxed),
            controls=services.controls(plan),
            journal=services.journal(),
            notifier=services.budget_notifier(self.opts.notifier),
            context=load_context(project.root),
            observe=self._observer(env, secrets, github),
            gate_policy=gate_policy(project),
            promotion_ready=_promotion_check(project),
            env=env,
            transcript_dir=str(project.root / ".loop-runtime" / "transcripts" / tick_id),
            stop=self._stop(),
            on_event=self._on_event,
            root=str(project.root),
            model=self.opts.model or cfg.for_pattern(plan.pattern_id).model or cfg.model,
            max_turns=cfg.max_turns,
            agent_timeout_s=cfg.agent_timeout_s,
            replay=dict(self.opts.replay or {}),
            secrets=tuple(secrets),
            tick_id=tick_id,
            run_id=run_id,
            force=self.opts.force,
            sandbox_note=sandbox_note(sandbox, self.backend_name),
            mcp_servers=mcp_by_level(project),
            **_github_deps(github, workspace),
        )

    def _ids(self) -> tuple[str, str]:
        """A fresh tick id, and the run id: a resumed tick keeps its run's; else unique across processes."""
        tick_id = f"{self.plan.pattern_id}-{os.urandom(6).hex()}"
        if self.opts.run_id:
            return tick_id, self.opts.run_id
        from ..adapters.run_ids import allocate_run_id

        return tick_id, allocate_run_id(self.project.root, self.clock.now())

    def _sync_external_spend(self) -> None:
        """Today's spend by other tools (the run log's runs the store did not begin) joins the ledger."""
        pattern, day = self.plan.pattern_id, utc_day(self.clock.now())
        self.store.set_external_spent(pattern, day, external_spent(read_log(self.project), self.store, pattern, day))

    def _secrets(self) -> tuple[list[str], Any]:
        """Every value the tick redacts, and the GitHub session (whose token, from `gh auth token` too, joins)."""
        from ..adapters.environment import secret_values

        secrets = secret_values(self.project.root, os.environ)
        github = github_session(self.project, self.plan)
        if github is not None:
            secrets = [*secrets, *(s for s in github.secrets if s not in secrets)]
        return secrets, github

    def _workspace(self, level: str, secrets: list[str]) -> Any:
        """Git worktrees for an acting level in a git repository; None otherwise (the engine then caps at L1)."""
        if not (self.project.is_git and level in ("L2", "L3")):
            return None
        from ..adapters.git_workspace import GitWorkspace
        from ..core.control_files import SPINE_FILES

        return GitWorkspace(self.project.root, own_files=(self.plan.state_file, *SPINE_FILES), secrets=secrets)

    def _checks(self, workspace: Any, env: Mapping[str, str], secrets: list[str], sandbox: Any) -> dict[str, Any]:
        """The test runner and the outside-change guard, for a tick that works in a worktree."""
        if workspace is None:
            return {"tests": None, "guard": None}
        from ..adapters.test_runner import BASELINE_DIR, ProjectTestRunner

        cfg = self.project.config
        tests = ProjectTestRunner(cfg.test_command, timeout_s=cfg.test_timeout_s, env=env, secrets=secrets,
                                  checkout=workspace.base_checkout, cache_dir=self.project.root / BASELINE_DIR,
                                  sandbox=sandbox)
        return {"tests": tests, "guard": self.services.guard()}

    def _observer(self, env: Mapping[str, str], secrets: list[str], github: Any) -> Callable[[], str]:
        """Discovery: the loop's probe commands, then the GitHub connector's view when it is on."""
        project, plan = self.project, self.plan
        probes = tuple(project.config.for_pattern(plan.pattern_id).discovery) or tuple(project.config.discovery)

        def observe() -> str:
            from ..adapters.discovery import observe as run_probes

            text = run_probes(project.root, state_file=plan.state_file, commands=probes, env=env, secrets=secrets)
            if github is not None:  # raises DiscoveryUnavailable: the tick is then report-only
                from ..core.redact import redact

                text += "\n\n" + redact(github.observe(), extra_secrets=secrets)
            return text

        return observe

    def _stop(self) -> Callable[[], str | None]:
        """The kill switch (``rules.kill_stop``), then the driver's own stop (a Temporal cancel)."""
        stop, extra = kill_stop(self.project, self.plan), self.opts.extra_stop

        def stop_all() -> str | None:
            return stop() or (extra() if extra is not None else None)

        return stop_all

    def _on_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        if self.opts.on_event is not None:
            self.opts.on_event(kind, payload)


def _agent_env() -> dict[str, str]:
    """The environment agents and tests get: scrubbed of secrets, plus ``LOOP_RUNTIME_AGENT_ENV``'s names."""
    from ..adapters.environment import scrubbed_env

    passthrough = [v.strip() for v in os.environ.get("LOOP_RUNTIME_AGENT_ENV", "").split(",") if v.strip()]
    return scrubbed_env(os.environ, extra_allowed=passthrough)


def _github_deps(github: Any, workspace: Any) -> dict[str, Any]:
    """The GitHub connector's part of a tick: pause labels, and (acting in a worktree) publishing and leases."""
    acting = github is not None and workspace is not None
    return {"remote_pause": github.pause_labels if github is not None else None,
            "pause_label": github.pause_label if github is not None else killswitch.ALL,
            "publisher": github.publisher() if acting else None,
            "lease": github.lease if acting else None}


def _promotion_check(project: Project) -> Callable[[Any], bool] | None:
    """L3 merges also need promotion to be merge-ready when ``promotion.yaml`` exists (R11).

    Evidence comes from ``.loop-runtime/promotion-evidence.json`` (written by the team's CI
    bridge); without evidence the check holds the merge.
    """
    if not (project.root / "promotion.yaml").exists():
        return None

    def ready(_diff: Any) -> bool:
        from ..core.promotion import promote
        from ..formats.promotion import parse_contract, parse_evidence

        evidence = project.read(".loop-runtime/promotion-evidence.json")
        if evidence is None:
            return False
        contract = parse_contract(project.read("promotion.yaml") or "", file="promotion.yaml")
        decision = promote(contract, parse_evidence(evidence), gate_policy(project))
        return bool(decision.allowed)

    return ready


async def resume_halted(project: Project | Services, pattern: str, opts: RunOptions | None = None) -> TickResult | None:
    """Resume the last budget-halted tick of ``pattern`` from its last completed phase (``resume``).

    Agent calls the halted tick completed are replayed from its journal (no backend call, no
    tokens); its worktree is reused as it was left; the tick continues with the first call that
    had not finished.
    """
    from .preflight import preflight
    from .resume import halted_tick, replay_of

    services = project if isinstance(project, Services) else Services.open(project)
    base = opts or RunOptions()
    plan = services.project.plan(pattern)
    preflight(services.project, plan, level=base.level or plan.level,
              backend=backend_name(services.project, plan, base), scenario=base.scenario)
    try:
        tick = halted_tick(services.store, pattern)
        if tick is None:
            return None
        # a resumed tick continues one that already passed (or was forced past) the runs/day cap and the
        # early-exit check: a human asked for it, so only the budget and the kill switch still apply
        resumed = RunOptions(**{**base.__dict__, "replay": replay_of(services.store, tick), "run_id": tick.run_id,
                                "level": tick.level, "force": True})
        services.store.set_tick_status(tick.tick_id, "resumed")
        return await LoopRunner(services, plan, resumed).tick()
    finally:
        if services is not project:
            services.close()
