"""One project's services, built once from its files: the composition root of every driver.

The CLI (through the app functions), the daemon, the dashboard, and later the Temporal worker
and the MCP server each need the same things for a project: its parsed files, ONE run store
(opened lazily, shared by every loop of the process), budget ledgers, state writers with the
level's allowlist, agent backends, the notifier, the clock and the outside-change guard. Built
here, "the same project" means the same store connection, settings and policy wherever a tick
starts or a human acts — and a reader finds the wiring in one file.

``Services`` is a context manager: ``close()`` closes the store it opened (never one handed in).
"""

from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock; threading itself costs read commands' start-up
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .runtime import Project, load_project, owner_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from collections.abc import Sequence

    from ..adapters.guard import GitGuard
    from ..adapters.state_files import FileStateWriter
    from ..adapters.store.budget import BudgetScope, StoreBudget
    from ..adapters.store.journal import StoreJournal
    from ..core.control_files import ControlSet
    from ..core.plan import Plan
    from ..ports import AgentBackend, Clock, Notifier
    from ..ports.store import Store

STORE_FILE = Path(".loop-runtime") / "runtime.db"


class _Lazy:
    """What a ``Services`` makes at first use: the store (under a lock: the dashboard reads from threads), the
    lease owner id and the system clock — ``status`` pays for none of them unless it needs them."""

    def __init__(self, store: Store | None, owner: str | None = None, clock: Clock | None = None) -> None:
        self.store, self.owned, self.lock = store, False, _thread.allocate_lock()
        self.owner, self.clock = owner, clock


def _system_clock() -> Clock:
    from ..adapters.clock import SystemClock

    return SystemClock()


@dataclass(frozen=True)
class Services:
    """What every driver needs for one project; see the module docstring."""

    project: Project
    notifier: Notifier | None = None
    _slot: _Lazy = field(default_factory=lambda: _Lazy(None), repr=False, compare=False)

    @classmethod
    def open(cls, source: Project | Path | str, *, clock: Clock | None = None, notifier: Notifier | None = None,
             store: Store | None = None, owner: str | None = None) -> Services:
        """Services for a project (or its root, read now); ``store``: one the caller owns and closes."""
        project = source if isinstance(source, Project) else load_project(Path(source))
        return cls(project, notifier, _Lazy(store, owner, clock))

    # ------------------------------------------------------------------ the store

    @property
    def clock(self) -> Clock:
        """The clock every time of this project is read from (a test's manual one, else the system's)."""
        slot = self._slot
        if slot.clock is None:
            slot.clock = _system_clock()
        return slot.clock

    @property
    def owner(self) -> str:
        """Who this process is to the store's leases (``host:pid:nonce``), made at first use (start-up time)."""
        slot = self._slot
        if slot.owner is None:
            slot.owner = owner_id()
        return slot.owner

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def store(self) -> Store:
        """The project's run store, opened (and created) at first use, once."""
        slot = self._slot
        with slot.lock:
            if slot.store is None:
                from ..adapters.store.sqlite import RunStore

                slot.store, slot.owned = RunStore.open(self.project.root), True
            return slot.store

    def has_store(self) -> bool:
        """Has this project a run store (open here, or on disk)? Read commands never create one."""
        return self._slot.store is not None or (self.project.root / STORE_FILE).is_file()

    def existing_store(self) -> Store | None:
        """The run store when the project has one, else None (looking creates nothing)."""
        return self.store if self.has_store() else None

    def close(self) -> None:
        """Close the store if these services opened it; a store handed in stays open (its owner closes it)."""
        slot = self._slot
        with slot.lock:
            store, owned = slot.store, slot.owned
            if owned:
                slot.store, slot.owned = None, False
        if owned and store is not None:
            store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ what a tick is built from

    def ledger(self, plan: Plan, tick_id: str, *,
               portfolio: BudgetScope | Sequence[BudgetScope] | None = None) -> StoreBudget:
        """The loop's budget ledger: its cap, the repository's ``global_daily_cap`` and a fleet's portfolio."""
        from ..adapters.store.budget import StoreBudget

        return StoreBudget(self.store, plan.pattern_id, plan.daily_token_cap, tick_id,
                           self.project.config.global_daily_cap, portfolio=portfolio)

    def journal(self) -> StoreJournal:
        from ..adapters.store.journal import StoreJournal

        return StoreJournal(self.store, self.owner)

    def state_writer(self, level: str, state_file: str, secrets: Sequence[str] | None = None) -> FileStateWriter:
        """The writer a tick at ``level`` writes project files through (R9's per-level allowlist)."""
        from ..adapters.state_files import FileStateWriter, writable_for

        return FileStateWriter(self.project.root, writable=writable_for(level, state_file), secrets=secrets)

    def file_writer(self, *names: str) -> FileStateWriter:
        """A writer that may change exactly ``names``: what a human's action (kill, approve, topup) or
        crash recovery writes, through the same lock, path check and redaction as a tick's writes."""
        from ..adapters.state_files import FileStateWriter

        return FileStateWriter(self.project.root, writable=names)

    def backend(self, name: str, plan: Plan, opts: Any, *, memory: Any = None, sandbox: Any = None) -> AgentBackend:
        from .backends import make_backend

        return make_backend(name, self.project, plan, opts, memory=memory, sandbox=sandbox)

    def budget_notifier(self, inner: Notifier | None = None) -> Notifier | None:
        """The notifier (``inner``, else the project's), budget notes deduplicated to once a loop a UTC day
        (across processes: what was sent is an event in the store)."""
        inner = inner or self.notifier
        if inner is None:
            return None
        from ..adapters.notify import OncePerDayNotifier

        return OncePerDayNotifier(inner, self.store, self.clock)

    def guard(self) -> GitGuard:
        """The outside-change guard of the main checkout, blind to the runtime's own files."""
        from ..adapters.guard import GitGuard

        return GitGuard(self.project.root, ignore=runtime_written(self.project))

    def controls(self, plan: Plan) -> ControlSet:
        return project_controls(self.project, plan)


def runtime_written(project: Project) -> tuple[str, ...]:
    """Paths loop-runtime itself (any loop, or a human's `kill`) writes in the main checkout."""
    from ..adapters.locked_files import temp_pattern
    from ..core.control_files import KILL_SWITCH_GLOB, SPINE_FILES

    states = {p.state for p in project.registry.patterns}
    files = (*sorted(states), *SPINE_FILES)
    # another loop's atomic write of one of these leaves its temp file for a moment
    return (*files, *(temp_pattern(f) for f in (*files, KILL_SWITCH_GLOB)), ".loop-context", ".loop-context/*",
            KILL_SWITCH_GLOB)


def project_controls(project: Project, plan: Plan) -> ControlSet:
    """The project's control set (``core.control_files``): every registry pattern's state file and
    kill switch, on top of the fixed names."""
    from ..core import killswitch
    from ..core.control_files import control_set

    patterns = project.registry.patterns
    return control_set(state_files=sorted({p.state for p in patterns} | {plan.state_file}),
                       kill_switches=(killswitch.ALL, *(killswitch.pattern_switch(p.id) for p in patterns)))


@contextmanager
def using(source: Project | Services, store: Store | None = None) -> Iterator[Services]:
    """The services an app function works with: the caller's, or ones built for this call (closed after it;
    a ``store`` handed in stays the caller's)."""
    if isinstance(source, Services):
        yield source
        return
    with Services.open(source, store=store) as services:
        yield services
