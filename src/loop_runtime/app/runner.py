"""Runs ticks of one loop for real or as a dry run: adapters, lease, recovery, budget, journal.

The engine (``core``) decides; this module wires the real adapters around it:
the file state writer with the level's write allowlist, git worktrees, the test runner,
the outside-change guard, the SQLite store as journal and budget ledger (shared by
every process of the project), the kill switch polled while an agent runs, and the
lease that keeps two processes from ticking the same pattern at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..core import killswitch
from ..core.budget import BudgetBreaker, utc_day
from ..core.engine import TickDeps
from ..core.loop_engine import LoopEngine
from ..adapters.store.budget import StoreBudget
from ..core.plan import Plan
from ..core.result import TickResult
from ..errors import ConfigError, LeaseHeld
from ..ports import Clock, EventSink, Notifier
from .runtime import Project, gate_policy, owner_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import EventStore, Store

LEASE_TTL_S = 120.0
BACKENDS = ("mock", "claude", "codex", "openai", "grok", "opencode", "gemini")


# ---------------------------------------------------------------------------- store-backed ports


class StoreJournal:
    """``ports.TickJournal`` over the SQLite store."""

    def __init__(self, store: Store, owner: str) -> None:
        self.store, self.owner = store, owner

    def begin(self, *, tick_id: str, run_id: str, pattern: str, level: str, backend: str, at: datetime) -> None:
        self.store.begin_tick(tick_id=tick_id, run_id=run_id, pattern=pattern, level=level, backend=backend,
                              started_at=at, owner=self.owner)

    def record(self, tick_id: str, phase: str, data: Mapping[str, Any], at: datetime) -> None:
        self.store.record_phase(tick_id, phase, data, at)
        fault = os.environ.get("LOOP_RUNTIME_FAULT_AT")
        if fault and fault == phase:  # fault injection for crash-safety tests: die like `kill -9`
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    def finish(self, tick_id: str, *, status: str, outcome: str, tokens: int, summary: Mapping[str, Any],
               at: datetime) -> None:
        self.store.finish_tick(tick_id, outcome=outcome, tokens=tokens, summary=summary, finished_at=at)
        self.store.set_tick_status(tick_id, status)

    def escalate(self, *, tick_id: str, run_id: str, pattern: str, item_id: str, title: str, diff: str,
                 context: Mapping[str, Any], at: datetime) -> str:
        return str(self.store.add_escalation(pattern=pattern, tick_id=tick_id, run_id=run_id, item_id=item_id,
                                             title=title, diff=diff, context=context, created_at=at))

    def event(self, kind: str, payload: Mapping[str, Any], at: datetime, *, pattern: str | None = None,
              tick_id: str | None = None) -> None:
        self.store.add_event(kind, payload, at, pattern=pattern, tick_id=tick_id)


class OncePerDayNotifier:
    """Budget notifications go out once per loop per UTC day, not on every tick past the threshold.

    Every other kind (escalation, kill, daemon error) is a distinct event a human must see.
    """

    DAILY = ("budget-80", "budget-100")

    def __init__(self, inner: Notifier, store: EventStore, clock: Clock) -> None:
        self.inner, self.store, self.clock = inner, store, clock

    def notify(self, note: Any) -> None:
        if note.kind in self.DAILY:
            now = self.clock.now()
            midnight = datetime.combine(utc_day(now), datetime.min.time(), tzinfo=now.tzinfo)
            kind = f"notify.{note.kind}"
            if self.store.count_events(kind, pattern=note.pattern, since=midnight):
                return
            self.store.add_event(kind, {"title": note.title}, now, pattern=note.pattern)
        self.inner.notify(note)


# ---------------------------------------------------------------------------- options


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


def backend_name(project: Project, plan: Plan, opts: RunOptions) -> str:
    name = opts.backend or project.config.for_pattern(plan.pattern_id).backend or project.config.backend or "mock"
    if name not in BACKENDS:
        raise ConfigError("--backend", "backend", name, valid=BACKENDS)
    return name


def make_backend(name: str, project: Project, plan: Plan, opts: RunOptions, memory: Any = None,
                 sandbox: Any = None) -> Any:
    if name == "mock":
        from ..adapters.mock import MockBackend, load_scenario

        return MockBackend(load_scenario(opts.scenario), memory=memory, root=str(project.root))
    from ..adapters.agents import make_backend as real_backend

    cfg = project.config
    table = cfg.for_backend(name)
    model = opts.model or cfg.for_pattern(plan.pattern_id).model or table.model or cfg.model
    # openai_base_url is the openai backend's endpoint only; [backends.<name>] base_url is the real API
    # behind the metering proxy (the CLI's own variable, e.g. ANTHROPIC_BASE_URL, still wins).
    base_url = table.base_url or (cfg.openai_base_url if name == "openai" else None)
    return real_backend(name, model=model, base_url=base_url, api_key_env=table.api_key_env,
                        sandboxed=table.sandboxed, sandbox=sandbox)


def project_sandbox(project: Project, level: str) -> Any:
    """The project's ``ports.Sandbox`` (``sandbox`` in loop-runtime.toml); srt missing under "srt" is an error."""
    from ..adapters.sandbox import SandboxLimits, make_sandbox

    cfg = project.config
    limits = SandboxLimits(cpu_s=cfg.sandbox_cpu_s, memory_mb=cfg.sandbox_memory_mb, processes=cfg.sandbox_processes)
    return make_sandbox(cfg.sandbox, root=project.root, level=level, allow_domains=cfg.sandbox_allow_domains,
                        limits=limits)


def sandbox_note(sandbox: Any, backend: str) -> str | None:
    """The line every tick of a real agent logs while its agents and tests run unconfined."""
    if backend == "mock" or sandbox.active:
        return None
    return f"sandbox off: {sandbox.reason} — agents get no shell; tests run unconfined"


def kill_stop(project: Project, plan: Plan) -> Callable[[], str | None]:
    """Polled while an agent runs: the kill switch appearing stops it within one poll."""

    def stop() -> str | None:
        names = {plan.state_file, "STATE.md", "LOOP.md"}
        texts = {n: project.read(n) for n in names}
        files = {f for f in (killswitch.ALL, killswitch.pattern_switch(plan.pattern_id))
                 if (project.root / f).exists()}
        state = killswitch.evaluate(plan.pattern_id, state_file=plan.state_file, texts=texts, root_files=files)
        return "kill" if state.engaged else None

    return stop


def runlog_spent(project: Project, pattern: str, day: date, exclude_run_ids: Collection[str] = ()) -> int:
    from ..formats.runlog import parse_run_log, tokens_on_day

    log = parse_run_log(project.read("loop-run-log.md") or "")
    return tokens_on_day(log, pattern, day, exclude_run_ids=exclude_run_ids)


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
    budget = BudgetBreaker(plan.daily_token_cap, spent=runlog_spent(project, plan.pattern_id, today), day=today)
    deps = TickDeps(backend=backend, state=state, budget=budget, clock=clock, workspace=ws,
                    context=load_context(project.root), gate_policy=gate_policy(project), root=str(project.root),
                    on_event=opts.on_event, env={}, force=opts.force, secrets=secrets,
                    sandbox_note=sandbox_note(sandbox, name) if sandbox is not None else None,
                    mcp_servers=mcp_by_level(project))
    engine = LoopEngine(plan, deps=deps)
    return [await engine.tick(level=level) for _ in range(ticks)]


def mcp_by_level(project: Project) -> dict[str, Mapping[str, Any]]:
    """Level → the MCP servers ``[mcp]`` lists for it (none unless listed)."""
    return {level: project.config.mcp_for(level) for level in ("L0", "L1", "L2", "L3")}


def _system_clock() -> Clock:
    from ..adapters.clock import SystemClock

    return SystemClock()


# ---------------------------------------------------------------------------- real run


class LoopRunner:
    """Runs real ticks of one pattern in a project, holding the pattern's lease while it does."""

    def __init__(self, project: Project, plan: Plan, opts: RunOptions, *, store: Store | None = None,
                 owner: str | None = None) -> None:
        self.project, self.plan, self.opts = project, plan, opts
        self.clock = opts.clock or _system_clock()
        self.owner = owner or owner_id()
        self.backend_name = backend_name(project, plan, opts)
        self._preflight()  # before the store exists: a bad file leaves the tree untouched
        if store is None:
            from ..adapters.store.sqlite import RunStore

            store = RunStore.open(project.root)
        self.store = store

    def _preflight(self, *, scenario: bool = True) -> None:
        from .preflight import preflight

        preflight(self.project, self.plan, level=self.opts.level or self.plan.level, backend=self.backend_name,
                  scenario=self.opts.scenario, check_scenario=scenario)

    async def tick(self) -> TickResult:
        pattern = self.plan.pattern_id
        self._preflight(scenario=False)  # files may have changed since the last tick (the daemon runs for days)
        now = self.clock.now()
        if not self.store.acquire_lease(pattern, self.owner, LEASE_TTL_S, now):
            holder = self.store.lease_holder(pattern, now)
            if holder is not None and _dead_local_owner(holder):
                self.store.release_lease(pattern, holder)  # its process is gone: the lease is void
            if not self.store.acquire_lease(pattern, self.owner, LEASE_TTL_S, now):
                raise LeaseHeld(f"pattern {pattern!r} is being ticked by another process ({holder}); try again later")
        renew = asyncio.ensure_future(self._renew())
        try:
            from .recovery import recover

            recover(self.project, self.store, pattern, self.clock.now())
            deps = self._deps()
            return await LoopEngine(self.plan, deps=deps).tick(level=self.opts.level or self.plan.level)
        finally:
            renew.cancel()
            self.store.release_lease(pattern, self.owner)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_S / 4)
            self.store.renew_lease(self.plan.pattern_id, self.owner, LEASE_TTL_S, self.clock.now())

    def _deps(self) -> TickDeps:
        from ..adapters.environment import scrubbed_env, secret_values
        from ..adapters.project import load_context
        from ..adapters.state_files import FileStateWriter, writable_for
        project, plan, cfg = self.project, self.plan, self.project.config
        level = self.opts.level or plan.level
        now = self.clock.now()
        tick_id = f"{plan.pattern_id}-{os.urandom(6).hex()}"
        if self.opts.run_id:
            run_id = self.opts.run_id  # a resumed tick keeps its run's id
        else:
            from ..adapters.run_ids import allocate_run_id

            run_id = allocate_run_id(project.root, now)  # unique across processes on this project
        day = utc_day(now)
        ours = self.store.tick_run_ids(plan.pattern_id, day)
        self.store.set_external_spent(plan.pattern_id, day, runlog_spent(project, plan.pattern_id, day, ours))
        secrets = secret_values(project.root, os.environ)
        github = github_session(project, plan)
        if github is not None:  # the token (from `gh auth token` too) joins everything the run redacts
            secrets = [*secrets, *(s for s in github.secrets if s not in secrets)]
        passthrough = [v.strip() for v in os.environ.get("LOOP_RUNTIME_AGENT_ENV", "").split(",") if v.strip()]
        env = scrubbed_env(os.environ, extra_allowed=passthrough)
        from ..adapters.guard import GitGuard
        from ..adapters.test_runner import BASELINE_DIR, ProjectTestRunner

        workspace = None
        if project.is_git and level in ("L2", "L3"):
            from ..adapters.git_workspace import GitWorkspace

            from ..core.control_files import SPINE_FILES

            workspace = GitWorkspace(project.root, own_files=(plan.state_file, *SPINE_FILES), secrets=secrets)
        transcripts = project.root / ".loop-runtime" / "transcripts" / tick_id
        stop = kill_stop(project, plan)
        extra = self.opts.extra_stop

        def stop_all() -> str | None:
            return stop() or (extra() if extra is not None else None)

        pcfg = cfg.for_pattern(plan.pattern_id)
        probes = tuple(pcfg.discovery) or tuple(cfg.discovery)
        sandbox = project_sandbox(project, level)
        boxed = sandbox if sandbox.active else None

        def observe() -> str:
            from ..adapters.discovery import observe as run_probes

            text = run_probes(project.root, state_file=plan.state_file, commands=probes, env=env, secrets=secrets)
            if github is not None:  # raises DiscoveryUnavailable: the tick is then report-only
                from ..core.redact import redact

                text += "\n\n" + redact(github.observe(), extra_secrets=secrets)
            return text

        def on_event(kind: str, payload: Mapping[str, Any]) -> None:
            if self.opts.on_event is not None:
                self.opts.on_event(kind, payload)

        return TickDeps(
            backend=make_backend(self.backend_name, project, plan, self.opts, sandbox=boxed),
            state=FileStateWriter(project.root, writable=writable_for(level, plan.state_file), secrets=secrets),
            budget=StoreBudget(self.store, plan.pattern_id, plan.daily_token_cap, tick_id, cfg.global_daily_cap,
                               portfolio=self.opts.portfolio.scope(tick_id, self.backend_name)
                               if self.opts.portfolio else None),
            clock=self.clock,
            workspace=workspace,
            tests=ProjectTestRunner(cfg.test_command, timeout_s=cfg.test_timeout_s, env=env, secrets=secrets,
                                    checkout=workspace.base_checkout, cache_dir=project.root / BASELINE_DIR,
                                    sandbox=boxed) if workspace else None,
            guard=GitGuard(project.root, ignore=runtime_written(project)) if workspace else None,
            controls=project_controls(project, plan),
            journal=StoreJournal(self.store, self.owner),
            notifier=OncePerDayNotifier(self.opts.notifier, self.store, self.clock) if self.opts.notifier else None,
            context=load_context(project.root),
            observe=observe,
            gate_policy=gate_policy(project),
            promotion_ready=_promotion_check(project),
            env=env,
            transcript_dir=str(transcripts),
            stop=stop_all,
            on_event=on_event,
            root=str(project.root),
            model=self.opts.model or pcfg.model or cfg.model,
            max_turns=cfg.max_turns,
            agent_timeout_s=cfg.agent_timeout_s,
            replay=dict(self.opts.replay or {}),
            secrets=tuple(secrets),
            tick_id=tick_id,
            run_id=run_id,
            force=self.opts.force,
            sandbox_note=sandbox_note(sandbox, self.backend_name),
            mcp_servers=mcp_by_level(project),
            remote_pause=github.pause_labels if github is not None else None,
            pause_label=github.pause_label if github is not None else killswitch.ALL,
            publisher=github.publisher() if github is not None and workspace is not None else None,
            lease=github.lease if github is not None and workspace is not None else None,
        )


def github_session(project: Project, plan: Plan) -> Any:
    """The GitHub connector for one tick, or None when it is off (no repository/token, or disabled)."""
    from ..adapters.github import GithubSession, resolve

    found = resolve(project.root, project.config.github, os.environ)
    if found.settings is None:
        return None
    return GithubSession(project.root, found.settings, plan.pattern_id,
                         deadline_s=_env_seconds("LOOP_RUNTIME_GITHUB_DEADLINE_S", 120.0),
                         backoff_s=_env_seconds("LOOP_RUNTIME_GITHUB_BACKOFF_S", 1.0))


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (tests shorten GitHub retries with it)."""
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        raise ConfigError(name, name, os.environ.get(name), message=f"{name} must be a number of seconds") from None
    if not 0 < value < 86_400:
        raise ConfigError(name, name, value, message=f"{name} must be between 0 and 86400 seconds")
    return value


def runtime_written(project: Project) -> tuple[str, ...]:
    """Paths loop-runtime itself (any loop, or a human's `kill`) writes in the main checkout."""
    from ..adapters.locked_files import temp_pattern
    from ..core.control_files import KILL_SWITCH_GLOB, SPINE_FILES

    states = {p.state for p in project.registry.patterns}
    files = (*sorted(states), *SPINE_FILES)
    # another loop's atomic write of one of these leaves its temp file for a moment
    return (*files, *(temp_pattern(f) for f in (*files, KILL_SWITCH_GLOB)), ".loop-context", ".loop-context/*",
            KILL_SWITCH_GLOB)


def project_controls(project: Project, plan: Plan) -> Any:
    """The project's control set (``core.control_files``): every registry pattern's state file and
    kill switch, on top of the fixed names."""
    from ..core import killswitch
    from ..core.control_files import control_set

    patterns = project.registry.patterns
    return control_set(state_files=sorted({p.state for p in patterns} | {plan.state_file}),
                       kill_switches=(killswitch.ALL, *(killswitch.pattern_switch(p.id) for p in patterns)))


def _dead_local_owner(owner: str) -> bool:
    """A lease owner ``host:pid:nonce`` on this host whose process no longer exists."""
    import socket

    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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


async def resume_halted(project: Project, pattern: str, opts: RunOptions | None = None) -> TickResult | None:
    """Resume the last budget-halted tick of ``pattern`` from its last completed phase.

    Agent calls the halted tick completed are replayed from its journal (no backend
    call, no tokens); its worktree is reused as it was left; the tick continues with
    the first call that had not finished.
    """
    from ..adapters.store.sqlite import RunStore
    from .preflight import preflight

    base = opts or RunOptions()
    plan = project.plan(pattern)
    preflight(project, plan, level=base.level or plan.level, backend=backend_name(project, plan, base),
              scenario=base.scenario)
    store = RunStore.open(project.root)
    try:
        halted = [t for t in store.recent_ticks(pattern, 50) if t.status == "resumable"]
        if not halted:
            return None
        tick = halted[0]
        replay: dict[str, Any] = {}
        for p in store.phases(tick.tick_id):
            if p.phase.startswith("agent:") and p.data.get("status") == "ok":
                replay[p.phase.removeprefix("agent:")] = p.data
            elif p.phase == "workspace":
                replay[f"workspace:{p.data.get('attempt')}"] = p.data
        # a resumed tick continues one that already passed (or was forced past) the runs/day cap and the
        # early-exit check: a human asked for it, so only the budget and the kill switch still apply
        resumed = RunOptions(**{**base.__dict__, "replay": replay, "run_id": tick.run_id, "level": tick.level,
                                "force": True})
        store.set_tick_status(tick.tick_id, "resumed")
        runner = LoopRunner(project, project.plan(pattern), resumed, store=store)
        return await runner.tick()
    finally:
        store.close()
