"""``LoopEngine.tick()``: one tick of a loop, written once and driven many ways.

    kill switch + budget ─▶ discover ─▶ triage ─┬─ noop / report ─▶ state + run log
                                                └─ act ─▶ worktree ─▶ implementer ─▶ diff gates
      ─▶ tests + verifier ─┬─ reject ─▶ discard (retry ≤ max attempts, breaker) ─▶ escalate
                           └─ accept ─▶ human gate ─┬─ safe ─▶ commit (L2) / merge (L3 allowlisted)
                                                    └─ risky ─▶ escalate (held, approvable)

The engine does no I/O of its own: every effect goes through a port in ``TickDeps``
(agent backend, workspace, state files, budget ledger, journal, clock, guard, test
runner, notifier). The CLI, the scheduler and a test drive the same code with
different adapters — a whole tick runs in a test with ``MockBackend``,
``MemoryStateWriter`` and zero tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import Any

from ..errors import AgentNotStarted, BackendError, ConfigError
from ..ports import (
    AgentBackend,
    AgentRequest,
    AgentResult,
    BudgetLedger,
    Clock,
    EventSink,
    Notification,
    Notifier,
    OutsideGuard,
    Permission,
    StateWriter,
    StopCheck,
    TestRunner,
    TickJournal,
    Usage,
    Workspace,
)
from . import killswitch
from .budget import assess, settle_call
from .fingerprint import fingerprint
from .levels import lowest, rank
from .lifecycle import advance
from .plan import Plan
from .prompts import ProjectContext, triage_prompt
from .redact import clip
from .result import TickResult

RUN_LOG = "loop-run-log.md"
LAST_RUN_JSON = "docs/last-run.json"


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class TickDeps:
    """The adapters one tick uses, built once by a composition root (CLI, scheduler, worker)."""

    backend: AgentBackend
    state: StateWriter
    budget: BudgetLedger
    clock: Clock = field(default_factory=_SystemClock)
    workspace: Workspace | None = None
    tests: TestRunner | None = None
    guard: OutsideGuard | None = None
    controls: Any = None  # core.control_files.ControlSet of the project; None → the fixed default
    journal: TickJournal | None = None
    notifier: Notifier | None = None
    context: ProjectContext = field(default_factory=ProjectContext)
    observe: Callable[[], str] | None = None
    gate_policy: Any = None  # formats.gate_config.GatePolicy; None → safety.md default
    promotion_ready: Callable[[Any], bool] | None = None  # L3: promotion.yaml check, when present
    env: Mapping[str, str] = field(default_factory=dict)
    transcript_dir: str | None = None
    stop: StopCheck | None = None
    on_event: EventSink | None = None
    root: str = "."
    model: str | None = None
    max_turns: int = 30
    agent_timeout_s: float = 900.0
    replay: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # resume: recorded agent results
    secrets: tuple[str, ...] = ()  # exact secret values (.env, secret-named env vars): a diff adding one escalates
    tick_id: str | None = None
    run_id: str | None = None
    force: bool = False  # a human's `run --force`: no early exit on an unchanged fingerprint, no runs/day cap
    sandbox_note: str | None = None  # "sandbox off: <why>": every tick that could run an agent says so
    #: level → MCP servers an agent at that (effective) level may use (``[mcp]`` in loop-runtime.toml)
    mcp_servers: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: issue-tracker kill input (R12): ``(label, source)`` of open issues/PRs, and the pause label
    remote_pause: Callable[[], Sequence[tuple[str, str]]] | None = None
    pause_label: str = killswitch.ALL
    #: pushes an accepted change and opens its PR (``adapters.github.publish``); None: local branch only
    publisher: Any = None
    #: issue-pr-repair (R32): takes the lock label on the item's issue; returns its release, or None
    lease: Callable[[str], Callable[[], None] | None] | None = None


class Halt(Exception):
    """Stops a tick early: kill switch, budget, timeout or an outside change."""

    def __init__(self, reason: str, note: str = "") -> None:
        super().__init__(reason)
        self.reason, self.note = reason, note or reason


def new_run_id(now: datetime) -> str:
    """The run log's ``run_id``: an ISO-8601 UTC timestamp with milliseconds, unique in this process.

    See ``core.run_ids``: ids are allocated (strictly increasing), not just formatted, so two
    ticks in one millisecond — or one second — never share an id.
    """
    from .run_ids import PROCESS_SEQUENCE

    return PROCESS_SEQUENCE.next(now)


def worktree_run_id(pattern: str, run_id: str, attempt: int, tick_id: str) -> str:
    """A git-ref-safe, unique id for one attempt's worktree and branch (``loop/<id>``)."""
    compact = run_id.replace(":", "").replace("-", "").replace(".", "")
    return f"{pattern}-{compact}-{tick_id[-6:]}-a{attempt}"


# ``LoopEngine`` (the facade that builds a ``Tick``) lives in ``core/loop_engine.py``: here it
# made the import circle engine → tick → engine (``Tick`` extends ``TickBase``, below).


# ---------------------------------------------------------------------------- helpers used by tick


class TickBase:
    """State and small effects shared by the phases of one tick (see ``core.tick``)."""

    def __init__(self, plan: Plan, deps: TickDeps, level: str) -> None:
        self.plan, self.deps, self.level = plan, deps, level
        self.started = deps.clock.now()
        self.run_id = deps.run_id or new_run_id(self.started)
        self.tick_id = deps.tick_id or f"{plan.pattern_id}-{uuid.uuid4().hex[:12]}"
        self.phase = "idle"
        self.usage: dict[str, Usage] = {}
        self.lines: list[str] = []
        self.effective = level
        self.level_reason = "configured"

    # -- lifecycle + journal
    def enter(self, phase: str, **data: Any) -> None:
        self.phase = advance(self.phase, phase)
        self.record(f"phase:{phase}", data)

    def record(self, phase: str, data: Mapping[str, Any]) -> None:
        j = self.deps.journal
        if j is not None:
            j.record(self.tick_id, phase, dict(data), self.deps.clock.now())
        kind = "tick.phase" if phase.startswith("phase:") else "tick.record"
        self.emit(kind, {"phase": phase, **{k: v for k, v in data.items() if _small(v) and k != "phase"}})

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        if self.deps.on_event is not None:
            self.deps.on_event(kind, {"pattern": self.plan.pattern_id, "tick": self.tick_id, **payload})
        j = self.deps.journal
        if j is not None and kind.startswith("tick."):
            j.event(kind, dict(payload), self.deps.clock.now(), pattern=self.plan.pattern_id, tick_id=self.tick_id)

    def notify(self, kind: str, title: str, body: str) -> None:
        n = self.deps.notifier
        if n is None:
            return
        try:
            n.notify(Notification(kind=kind, title=title, body=body, pattern=self.plan.pattern_id))
        except Exception:  # a failing notifier never fails a tick
            pass

    @property
    def tokens(self) -> int:
        return sum(u.total for u in self.usage.values())

    # -- preflight
    def kill_state(self) -> killswitch.KillState:
        st = self.deps.state
        names = {self.plan.state_file, "STATE.md", "LOOP.md"}
        texts = {n: st.read(n) for n in names}
        root_files = {
            f for f in (killswitch.ALL, killswitch.pattern_switch(self.plan.pattern_id)) if st.read(f) is not None
        }
        state = killswitch.evaluate(self.plan.pattern_id, state_file=self.plan.state_file, texts=texts,
                                    root_files=root_files)
        if state.engaged or self.deps.remote_pause is None:
            return state
        return killswitch.evaluate(self.plan.pattern_id, state_file=self.plan.state_file, texts={},
                                   root_files=set(), labels=tuple(self.deps.remote_pause()),
                                   pause_label=self.deps.pause_label)

    def decide_level(self) -> None:
        caps: list[tuple[str, str]] = []
        verdict = assess(self.deps.budget.status(self.deps.clock.now()))
        if verdict.halt:
            raise Halt("budget", verdict.reason)
        if verdict.level_cap:
            caps.append((verdict.level_cap, verdict.reason))
            if rank(self.level) > rank(verdict.level_cap):
                self.notify("budget-80", f"{self.plan.pattern.name}: budget ≥80%", f"{verdict.reason}; report-only")
        if rank(self.level) >= 2 and self.deps.workspace is None:
            caps.append(("L1", "no workspace (not a git repository): acting needs a worktree"))
        decision = lowest(self.level, caps)
        self.effective, self.level_reason = decision.effective, decision.reason
        self.record("level", {"configured": self.level, "effective": self.effective, "reason": self.level_reason})

    def observe(self) -> tuple[str, str]:
        text = self.deps.observe() if self.deps.observe is not None else ""
        return text, fingerprint(text)

    # -- agents
    async def call_agent(self, role: str, key: str, prompt: Any, cwd: str, permission: Permission) -> AgentResult:
        """Reserve → run → settle one agent call; replay a recorded result when resuming."""
        recorded = self.deps.replay.get(key)
        if recorded is not None:
            res = _result_from(recorded)
            self._add_usage(role, res.usage)
            return res
        reason = self._stop()
        if reason:
            raise Halt(reason, f"stopped before the {role} call: {reason}")
        now = self.deps.clock.now()
        want = self.plan.call_tokens.get(role, 50_000)
        reservation = self.deps.budget.reserve(want, now)
        if reservation is None:
            raise Halt("budget", f"budget exhausted before {role} call")
        self.record(f"reserve:{key}", {"reservation": reservation.id, "amount": reservation.amount})
        request = AgentRequest(
            role=role,  # type: ignore[arg-type]
            prompt=prompt.user,
            system_prompt=prompt.system,
            cwd=cwd,
            permission=permission,
            token_limit=reservation.amount,
            max_turns=self.deps.max_turns,
            timeout_s=self.deps.agent_timeout_s,
            model=self.deps.model,
            transcript_dir=self.deps.transcript_dir,
            env=dict(self.deps.env),
            mcp_servers=dict(self.deps.mcp_servers.get(self.effective, {})),
            level=self.effective,
        )
        self.emit("tick.agent", {"role": role, "key": key, "reservation": reservation.amount})
        try:
            result = await self.deps.backend.run(request, stop=self._stop, on_event=self.deps.on_event)
        except (AgentNotStarted, ConfigError) as exc:  # no agent ran (configuration, spawn): nothing was spent
            self.deps.budget.settle(reservation, 0, self.deps.clock.now())
            self.record(f"agent-not-started:{key}", {"reservation_id": reservation.id, "actual": 0,
                                                     "error": clip(str(exc), 300)})
            raise
        except BackendError:
            self.deps.budget.settle(reservation, reservation.amount, self.deps.clock.now())  # fail closed
            self._add_usage(role, Usage(input=reservation.amount))
            raise
        except BaseException:
            # cancelled (shutdown) or crashed mid-call: we cannot know the usage → charge the reservation
            self.deps.budget.settle(reservation, reservation.amount, self.deps.clock.now())
            raise
        settle_call(self.deps.budget, reservation, result.usage.total, self.deps.clock.now(), result.usage.cost_usd)
        self._add_usage(role, result.usage)
        self.record(f"agent:{key}", _result_to(result))
        if result.sandbox_denials:
            self.record(f"sandbox-denied:{key}", {"denials": list(result.sandbox_denials[:50])})
            self.lines.extend(f"sandbox denied ({role}): {d}" for d in result.sandbox_denials[:20])
        if result.status == "halted":
            raise Halt(result.stop_reason or "halted", f"{role} stopped: {result.stop_reason}")
        return result

    def _stop(self) -> str | None:
        if self.deps.stop is not None:
            reason = self.deps.stop()
            if reason:
                return reason
        return None

    def _add_usage(self, role: str, usage: Usage) -> None:
        self.usage[role] = self.usage.get(role, Usage()) + usage
        self.emit("tick.usage", {"role": role, "tokens": self.tokens})

    def triage_prompt(self, observation: str) -> Any:
        p = self.plan.pattern
        return triage_prompt(
            ctx=self.deps.context, level=self.effective, pattern_name=p.name, goal=p.goal, skills=p.skills,
            state_file=self.plan.state_file, state_text=self.deps.state.read(self.plan.state_file),
            observation=observation,
        )

    def result(self, decision: str, outcome: str, **kw: Any) -> TickResult:
        return TickResult(
            tick_id=self.tick_id, run_id=self.run_id, pattern=self.plan.pattern_id,
            pattern_name=self.plan.pattern.name, level=self.level, effective_level=self.effective,
            level_reason=self.level_reason, decision=decision, outcome=outcome, tokens=self.tokens,
            usage=dict(self.usage), lines=tuple(self.lines),
            duration_s=(self.deps.clock.now() - self.started).total_seconds(), **kw,
        )


def _small(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 200) or v is None


def _result_to(r: AgentResult) -> dict[str, Any]:
    return {
        "text": r.text, "status": r.status, "turns": r.turns, "duration_s": r.duration_s,
        "transcript": r.transcript, "stop_reason": r.stop_reason, "error": r.error,
        "sandbox_denials": list(r.sandbox_denials[:100]),
        "usage": {"input": r.usage.input, "output": r.usage.output, "cache_write": r.usage.cache_write,
                  "cache_read": r.usage.cache_read, "cost_usd": r.usage.cost_usd},
    }


def _result_from(d: Mapping[str, Any]) -> AgentResult:
    u = d.get("usage") or {}
    return AgentResult(
        text=str(d.get("text", "")), status=d.get("status", "ok"), turns=int(d.get("turns", 0)),
        duration_s=float(d.get("duration_s", 0.0)), transcript=d.get("transcript"),
        stop_reason=d.get("stop_reason"), error=d.get("error"),
        sandbox_denials=tuple(str(x) for x in d.get("sandbox_denials") or () if isinstance(x, str)),
        usage=Usage(int(u.get("input", 0)), int(u.get("output", 0)), int(u.get("cache_write", 0)),
                    int(u.get("cache_read", 0)), u.get("cost_usd")),
    )
