"""``LoopEngine.tick()``: one tick of a loop, written once and driven many ways.

    kill switch + budget ─▶ discover ─▶ triage ─┬─ noop / report ─▶ state + run log
                                                └─ act ─▶ worktree ─▶ implementer ─▶ diff gates
      ─▶ tests + verifier ─┬─ reject ─▶ discard (retry ≤ max attempts, breaker) ─▶ escalate
                           └─ accept ─▶ human gate ─┬─ safe ─▶ commit (L2) / merge (L3 allowlisted)
                                                    └─ risky ─▶ escalate (held, approvable)

The engine does no I/O of its own: the tick (``core.tick.Tick``) *yields* every effect as a
``core.effects.PortCall`` and a driver performs it on the ports in ``TickDeps`` (agent backend,
workspace, state files, budget ledger, journal, clock, guard, test runner, notifier, and the
hooks). The CLI, the scheduler, a test and a Temporal workflow drive the same code with
different drivers and adapters — a whole tick runs in a test with ``MockBackend``,
``MemoryStateWriter`` and zero tokens.

This module holds what the tick is given (``TickDeps``, in four groups: ``ports``, ``hooks``,
``policy``, ``options``), how it stops early (``Halt``) and its ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any

from . import killswitch
from .hooks import as_hook
from .prompts import ProjectContext

if TYPE_CHECKING:  # annotations only: building TickDeps imports no port module
    from ..ports import (
        AgentBackend,
        BudgetLedger,
        ChangePublisher,
        Clock,
        EventStream,
        IssueLease,
        Notifier,
        Observer,
        OutsideGuard,
        PromotionCheck,
        RemotePause,
        StateWriter,
        StopSignal,
        TestRunner,
        TickJournal,
        Workspace,
    )
    from ..formats.gate_config import GatePolicy
    from .control_files import ControlSet

RUN_LOG = "loop-run-log.md"
LAST_RUN_JSON = "docs/last-run.json"


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class TickPorts:
    """The adapters: every effect of a tick on the world goes through one of these."""

    backend: AgentBackend
    state: StateWriter
    budget: BudgetLedger
    clock: Clock = field(default_factory=_SystemClock)
    workspace: Workspace | None = None
    tests: TestRunner | None = None
    guard: OutsideGuard | None = None
    journal: TickJournal | None = None
    notifier: Notifier | None = None
    #: pushes an accepted change and opens its PR (``adapters.github.publish``); None: local branch only
    publisher: ChangePublisher | None = None


@dataclass(frozen=True)
class TickHooks:
    """What the composition root plugs in around the tick (once bare callables; see ``core.hooks``)."""

    observer: Observer | None = None  # discovery
    stop: StopSignal | None = None  # kill switch / shutdown, polled before and during agent calls
    #: issue-tracker kill input (R12): ``(label, source)`` of open issues/PRs with the pause label
    remote_pause: RemotePause | None = None
    #: issue-pr-repair (R32): the lock label on the item's issue
    lease: IssueLease | None = None
    promotion: PromotionCheck | None = None  # L3: promotion.yaml merge-readiness, when present
    events: EventStream | None = None  # progress events for live views

    def __post_init__(self) -> None:
        for f in fields(self):  # a bare callable becomes the port it stands for (``core.hooks``)
            object.__setattr__(self, f.name, as_hook(f.name, getattr(self, f.name)))


@dataclass(frozen=True)
class TickPolicy:
    """The project's rules the tick applies (values, not adapters)."""

    controls: ControlSet | None = None  # the project's control set; None → the fixed default
    gate_policy: GatePolicy | None = None  # gate.yaml; None → the safety.md default
    #: exact secret values (.env, secret-named env vars): a diff adding one escalates
    secrets: tuple[str, ...] = ()
    #: level → MCP servers an agent at that (effective) level may use (``[mcp]`` in loop-runtime.toml)
    mcp_servers: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    pause_label: str = killswitch.ALL


@dataclass(frozen=True)
class TickOptions:
    """This tick's settings."""

    context: ProjectContext = field(default_factory=ProjectContext)
    env: Mapping[str, str] = field(default_factory=dict)
    transcript_dir: str | None = None
    root: str = "."
    model: str | None = None
    max_turns: int = 30
    agent_timeout_s: float = 900.0
    replay: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # resume: recorded agent results
    tick_id: str | None = None
    run_id: str | None = None
    force: bool = False  # a human's `run --force`: no early exit on an unchanged fingerprint, no runs/day cap
    sandbox_note: str | None = None  # "sandbox off: <why>": every tick that could run an agent says so


_GROUPS: dict[str, type] = {"ports": TickPorts, "hooks": TickHooks, "policy": TickPolicy, "options": TickOptions}
#: flat keyword → (group, field): ``TickDeps(backend=…, observe=…)`` as before the groups
_FLAT: dict[str, tuple[str, str]] = {f.name: (g, f.name) for g, cls in _GROUPS.items() for f in fields(cls)}
_FLAT.update({"observe": ("hooks", "observer"), "promotion_ready": ("hooks", "promotion"),
              "on_event": ("hooks", "events")})
#: the PortCall port names, each an attribute of ``ports`` or ``hooks``
PORT_NAMES = tuple(f.name for f in fields(TickPorts)) + tuple(f.name for f in fields(TickHooks))


@dataclass(init=False)
class TickDeps:
    """The adapters and settings of one tick, built once by a composition root (CLI, scheduler, worker).

    Grouped (``ports``, ``hooks``, ``policy``, ``options``), and still built and read flat as before
    the groups: ``TickDeps(backend=…, state=…, budget=…, observe=lambda: …)``, ``deps.journal``,
    ``dataclasses.replace(deps, budget=…)``. A bare callable given for a hook is wrapped
    (``core.hooks``); the flat name of a hook reads the wrapper, which is still callable.
    """

    ports: TickPorts
    hooks: TickHooks
    policy: TickPolicy
    options: TickOptions

    def __init__(self, ports: TickPorts | None = None, hooks: TickHooks | None = None,
                 policy: TickPolicy | None = None, options: TickOptions | None = None, **flat: Any) -> None:
        given: dict[str, Any] = {"ports": ports, "hooks": hooks, "policy": policy, "options": options}
        changes: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        for name, value in flat.items():
            if name not in _FLAT:
                raise TypeError(f"TickDeps() got an unexpected keyword argument {name!r}")
            group, attr = _FLAT[name]
            changes[group][attr] = value
        for group, cls in _GROUPS.items():
            base = given[group]
            value = cls(**changes[group]) if base is None else replace(base, **changes[group])
            object.__setattr__(self, group, value)
        if self.policy.secrets and not isinstance(self.policy.secrets, tuple):
            object.__setattr__(self, "policy", replace(self.policy, secrets=tuple(self.policy.secrets)))

    def port(self, name: str) -> Any:
        """The adapter behind the PortCall port ``name`` (None when not wired)."""
        group = self.ports if name in _PORT_FIELDS else self.hooks
        return getattr(group, name, None)

    def wired(self) -> frozenset[str]:
        """The port names with an adapter: what a tick may call (it asks nothing of a missing port)."""
        return frozenset(n for n in PORT_NAMES if self.port(n) is not None)

    def spec(self) -> TickSpec:
        """What the tick is told without its adapters (``Tick(plan, deps.spec(), level)`` runs the same)."""
        return TickSpec(policy=self.policy, options=self.options, ports=self.wired())


@dataclass(frozen=True)
class TickSpec:
    """All a ``Tick`` reads of what it is given: its policy, its options and which ports are wired.

    A driver that performs the effects elsewhere (a Temporal workflow, whose activities hold the
    adapters) builds the tick from this; ``TickDeps`` offers the same three for the embedded runtime.
    """

    policy: TickPolicy
    options: TickOptions
    ports: frozenset[str]

    def wired(self) -> frozenset[str]:
        return self.ports


_PORT_FIELDS = frozenset(f.name for f in fields(TickPorts))


def _flat_property(group: str, attr: str) -> property:
    def get(self: TickDeps) -> Any:
        return getattr(getattr(self, group), attr)

    get.__doc__ = f"``deps.{group}.{attr}`` (the flat name, as before the groups)"
    return property(get)


for _name, (_group, _attr) in _FLAT.items():
    setattr(TickDeps, _name, _flat_property(_group, _attr))
del _name, _group, _attr


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
