"""Values that cross Temporal: workflow and activity inputs and outputs (frozen dataclasses, JSON-able).

Pure data, no I/O and no ``temporalio`` import: the workflow sandbox passes this module
through, so workflow code and activities share one definition of every payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Workflow type names (stable: schedules and running workflows refer to them by name).
TICK_WORKFLOW = "LoopTick"
BUDGET_WORKFLOW = "LoopBudget"
ESCALATION_WORKFLOW = "LoopEscalation"

DEFAULT_TASK_QUEUE = "loop-runtime"
DEFAULT_NAMESPACE = "default"
DEFAULT_ADDRESS = "localhost:7233"
#: an escalated tick waits this long for approve/reject before the change is set aside (kept on its branch)
DEFAULT_ESCALATION_EXPIRY_S = 7 * 86_400


def schedule_id(project_key: str, pattern: str) -> str:
    return f"loop-{project_key}-{pattern}"


def schedule_prefix(project_key: str) -> str:
    return f"loop-{project_key}-"


def tick_workflow_prefix(project_key: str, pattern: str) -> str:
    return f"loop-tick-{project_key}-{pattern}"


def escalation_workflow_id(escalation_id: str) -> str:
    return f"loop-escalation-{escalation_id}"


def budget_workflow_id(scope: str, day: str) -> str:
    return f"loop-budget-{scope}-{day}"


@dataclass(frozen=True)
class FleetLink:
    """What a worker must know of the fleet file, which it never reads (it reads only the repository's own
    files): this loop's ``[repos.patterns.<id>]`` overrides, the repository's ``daily_cap`` and the
    portfolio's caps. ``schedule sync --fleet`` puts it in the schedule's input; the worker applies it with
    the very function the embedded fleet daemon uses (``app.fleet.apply_fleet``)."""

    portfolio: str  # the portfolio's budget scope (one per fleet: ``fleet:<name>``)
    repo: str  # the repository's name in the fleet file
    overrides: dict[str, Any] = field(default_factory=dict)  # JSON form of the loop's override table
    repo_daily_cap: int | None = None
    portfolio_cap: int | None = None
    portfolio_usd: float | None = None


@dataclass(frozen=True)
class TickCarry:
    """What a tick's next run needs after continue-as-new: its ids (the run log's entry and every
    idempotency key stay the same) and the phases already done, whose activities are not run again."""

    tick_id: str
    run_id: str
    out: RunTickOutput | None = None  # the engine's tick is done
    push: PushOutput | None = None
    pushed: bool = False  # the spine push is done (or was not needed)
    runs: int = 1  # how many workflow runs this tick has taken


@dataclass(frozen=True)
class TickInput:
    """One scheduled (or started by hand) tick of one loop of one repository."""

    repo_url: str  # what a worker clones: a git URL or a path (a bare repository in tests)
    project_key: str  # stable short name of the repository (schedule and workflow ids)
    pattern: str
    branch: str = "main"  # the base branch the spine files are pushed to
    level: str | None = None
    backend: str | None = None
    scenario: str | None = None  # mock backend scenario (a bundled name or a file the workers can read)
    force: bool = False
    escalation_expiry_s: float = DEFAULT_ESCALATION_EXPIRY_S
    agent_timeout_s: float = 900.0
    heartbeat_timeout_s: float = 30.0
    fleet: FleetLink | None = None  # the loop runs as part of a fleet (``schedule sync --fleet``)
    #: continue-as-new once the history has this many events (Temporal's own suggestion also counts)
    max_history_events: int = 10_000
    resume: TickCarry | None = None  # set only by continue-as-new: what the earlier runs of this tick did
    #: drive the core's tick in the workflow, its effects as activities (``port_workflow``, ``port_batch``):
    #: the default;
    #: False runs the whole tick as one ``run_tick`` activity (the earlier path, kept as a fallback)
    per_port: bool = True


@dataclass(frozen=True)
class RunTickInput:
    tick: TickInput
    tick_id: str  # one per tick workflow: every retry of the activity reuses it (idempotency keys)
    run_id: str  # the run log's run_id, decided by the workflow so a retry writes the same entry


@dataclass(frozen=True)
class SpineFile:
    """One spine file (state file, run log, ledger, badge) as the tick found and left it."""

    path: str
    base: str | None  # at the commit the tick started from (None: absent)
    ours: str | None  # after the tick (None: absent)


@dataclass(frozen=True)
class EscalationInfo:
    escalation_id: str  # ``esc-<hash of tick id and item>``: unique across workers (``approve <id>``)
    local_id: str  # the id in the worker clone's store
    pattern: str
    item: str
    title: str
    reason: str
    worker_queue: str  # the worker holding the change (its clone has the worktree and the held diff)


@dataclass(frozen=True)
class RunTickOutput:
    result: dict[str, Any]  # TickResult.as_json()
    base_commit: str
    spine: list[SpineFile] = field(default_factory=list)
    escalation: EscalationInfo | None = None
    worker: str = ""
    attempt: int = 1
    replayed: list[str] = field(default_factory=list)  # agent calls taken from an earlier attempt (not re-billed)
    pushed_branches: list[str] = field(default_factory=list)
    worker_queue: str = ""  # the worker's own queue: its push goes there first


@dataclass(frozen=True)
class PushInput:
    repo_url: str
    project_key: str
    branch: str
    run_id: str
    pattern: str
    message: str
    files: list[SpineFile] = field(default_factory=list)


@dataclass(frozen=True)
class PushOutput:
    commit: str | None
    attempts: int
    already: bool = False  # a previous attempt had pushed it (the commit carries the run id)
    merged: list[str] = field(default_factory=list)  # files merged with a concurrent change


@dataclass(frozen=True)
class EscalationWaitInput:
    info: EscalationInfo
    tick: TickInput
    expiry_s: float
    expires_at: str | None = None  # set by continue-as-new: the deadline stays where the first run put it


@dataclass(frozen=True)
class Decision:
    """A human's answer to an escalation, sent as the ``approve`` or ``reject`` signal."""

    by: str = "a human"
    reason: str = ""
    merge: bool = False
    keep_branch: bool = False


@dataclass(frozen=True)
class DecideInput:
    repo_url: str
    project_key: str
    branch: str
    local_id: str
    decision: str  # approved | rejected | expired
    by: str
    reason: str = ""
    merge: bool = False
    keep_branch: bool = False


@dataclass(frozen=True)
class EscalationOutcome:
    escalation_id: str
    decision: str  # approved | rejected | expired
    by: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class TickSummary:
    """What a tick workflow returns (and ``status --temporal`` shows for a finished one)."""

    tick_id: str
    run_id: str
    pattern: str
    outcome: str
    tokens: int
    exit_code: int
    push: PushOutput | None = None
    escalation: EscalationOutcome | None = None
    attempts: int = 1
    replayed: list[str] = field(default_factory=list)
    note: str = ""
    runs: int = 1  # workflow runs the tick took (continue-as-new)


# ---------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Reserve:
    """Reserve up to ``amount`` tokens under ``cap``; ``id`` makes a retried request idempotent."""

    id: str
    amount: int
    cap: int | None


@dataclass(frozen=True)
class Settle:
    id: str
    actual: int


@dataclass(frozen=True)
class TopUp:
    """Raise the day's cap by ``tokens``; ``id`` makes a retried request count once."""

    id: str
    tokens: int


@dataclass(frozen=True)
class SettleOpen:
    """Charge every still-open reservation whose id starts with ``prefix`` in full (fail closed)."""

    prefix: str


@dataclass
class BudgetState:
    """The budget of one (scope, UTC day): carried over continue-as-new."""

    scope: str
    day: str
    cap: int | None = None
    spent: int = 0
    open: dict[str, int] = field(default_factory=dict)  # reservation id → reserved amount
    settled: dict[str, int] = field(default_factory=dict)  # reservation id → charged amount
    granted: dict[str, int] = field(default_factory=dict)  # reservation id → amount granted (idempotent reserve)
    topups: dict[str, int] = field(default_factory=dict)  # top-up id → tokens added to the day's cap

    @property
    def effective_cap(self) -> int | None:
        return None if self.cap is None else self.cap + sum(self.topups.values())

    @property
    def reserved(self) -> int:
        return sum(self.open.values())
