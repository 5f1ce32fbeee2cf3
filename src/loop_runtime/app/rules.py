"""The core's rules applied to one project as its files and store are now: one gathering for every reader.

``core`` decides (``levels.effective_level``, ``budget.judge``/``todays_cap``, ``killswitch.kill_state``,
``schedule.runs_today``); this module only collects their inputs — which files, which store rows,
which run-log lines — once, so ``status``, the dashboard, the scheduler, ``run``'s summary and the
kill-switch poll of a running agent cannot gather them differently. The engine gathers the same
inputs through its own ports (state writer, ledger, journal) and calls the same functions;
tests/test_rule_agreement.py drives random budgets, top-ups and kill switches through all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from ..core import killswitch
from ..core.budget import judge, todays_cap, utc_day
from ..core.levels import LevelDecision, effective_level
from ..core.schedule import runs_today
from ..ports import BudgetStatus
from .runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from ..core.plan import Plan
    from ..formats.runlog import RunLog
    from ..ports.store import LedgerStore, Store, TickStore

RUN_LOG = "loop-run-log.md"

# ---------------------------------------------------------------------------- kill switch


def kill_of(project: Project, pattern_id: str, state_file: str) -> killswitch.KillState:
    """Is the loop paused by a file? (``core.killswitch.kill_inputs`` names the files read.)"""
    root = project.root
    return killswitch.kill_state(pattern_id, state_file=state_file, read=project.read,
                                 exists=lambda name: (root / name).exists())


def hand_flag(project: Project, pattern_id: str, state_file: str) -> killswitch.KillState:
    """A kill-switch flag line a human wrote in a file (switch files left out: ``resume`` removes those)."""
    return killswitch.kill_state(pattern_id, state_file=state_file, read=project.read, exists=lambda _name: False)


def all_paused(project: Project) -> bool:
    """Is every loop paused (``loop-pause-all`` as a root file, or as a flag line in STATE.md or LOOP.md)?"""
    if (project.root / killswitch.ALL).exists():
        return True
    for name in ("STATE.md", "LOOP.md"):
        text = project.read(name)
        if text and killswitch.evaluate("*", state_file=name, texts={name: text}, root_files=set()).scope == "all":
            return True
    return False


def kill_stop(project: Project, plan: Plan) -> Callable[[], str | None]:
    """Polled while an agent runs: the kill switch appearing stops it within one poll."""

    def stop() -> str | None:
        return "kill" if kill_of(project, plan.pattern_id, plan.state_file).engaged else None

    return stop


# ---------------------------------------------------------------------------- budget


def read_log(project: Project) -> RunLog:
    from ..formats.runlog import parse_run_log

    return parse_run_log(project.read(RUN_LOG) or "")


def cap_on(cap: int | None, store: LedgerStore | None, pattern: str, day: date) -> int | None:
    """The loop's cap on ``day``: ``core.budget.todays_cap`` over the store's top-ups of that day."""
    return todays_cap(cap, store.topups(pattern, day) if store is not None and cap is not None else 0)


def external_spent(log: RunLog, store: TickStore | None, pattern: str, day: date) -> int:
    """Tokens the run log records on ``day`` for runs the store did not begin (other tools' runs)."""
    from ..formats.runlog import tokens_on_day

    return tokens_on_day(log, pattern, day, exclude_run_ids=store.tick_run_ids(pattern, day) if store else ())


def shared_scopes(project: Project, store: LedgerStore | None, now: datetime,
                  portfolio: Any = None) -> list[tuple[str, BudgetStatus]]:
    """The budget scopes above each loop: the repository's ``global_daily_cap`` and the fleet's portfolio."""
    out: list[tuple[str, BudgetStatus]] = []
    if store is not None and project.config.global_daily_cap is not None:
        from ..adapters.store.budget import GLOBAL, SCOPE_LABELS, scope_status

        out.append((SCOPE_LABELS[GLOBAL], scope_status(store, GLOBAL, project.config.global_daily_cap, now)))
    if portfolio is not None:
        labelled = getattr(portfolio, "labelled", None)
        out.extend(labelled(now) if labelled is not None else [("portfolio", portfolio.status(now))])
    return out


# ---------------------------------------------------------------------------- runs today


def runs_on(log: RunLog, store: TickStore | None, pattern: str, day: date) -> int:
    """``core.schedule.runs_today``: the run log's runs together with the ticks this runtime began
    (``adapters.store.journal.begun_run_ids``, what the engine's journal counts too). A tick the kill
    switch paused uses up no run, whichever of the two knows it."""
    from ..adapters.store.journal import begun_run_ids
    from ..formats.runlog import run_ids_on_day

    return runs_today(run_ids_on_day(log, pattern, day), begun_run_ids(store, pattern, day) if store else ())


def runs_counter(project: Project, store: TickStore) -> Callable[[str, date], int]:
    """``runs_on`` reading the run log afresh at every call (the scheduler asks once per due tick)."""
    return lambda pattern, day: runs_on(read_log(project), store, pattern, day)


# ---------------------------------------------------------------------------- the level


@dataclass(frozen=True)
class LoopRules:
    """Everything the rules say about one loop right now: kill switch, effective level, runs today, and the
    budget — settled spend (the store's plus other tools'), open reservations, today's top-ups and cap."""

    kill: killswitch.KillState
    level: LevelDecision
    runs: int
    day: date
    spent: int
    reserved: int
    topups: int
    cap: int | None

    @property
    def percent(self) -> float | None:
        return None if not self.cap else round(100 * (self.spent + self.reserved) / self.cap, 1)


def loop_rules(project: Project, plan: Plan, store: Store | None, now: datetime, *, log: RunLog | None = None,
               shared: Sequence[tuple[str, BudgetStatus]] = ()) -> LoopRules:
    """The kill switch, effective level (``core.levels.effective_level``), runs today and budget of one loop.

    The budget verdict (``core.budget.judge`` over the loop and the ``shared`` scopes above it) is on settled
    spend: a running call's reservation is not spent yet, and counting it would show every busy loop as halted.
    """
    log = log if log is not None else read_log(project)
    day, pattern = utc_day(now), plan.pattern_id
    spent = external_spent(log, store, pattern, day) + (store.spent(pattern, day) if store is not None else 0)
    topups = store.topups(pattern, day) if store is not None else 0
    cap = todays_cap(plan.daily_token_cap, topups)
    settled = [(label, BudgetStatus(st.day, st.cap, st.spent, 0)) for label, st in shared]
    kill = kill_of(project, pattern, plan.state_file)
    level = effective_level(plan.level, budget=judge(BudgetStatus(str(day), cap, spent, 0), settled), kill=kill,
                            can_act=project.is_git, source=plan.level_source)
    reserved = store.reserved(pattern, day) if store is not None else 0
    return LoopRules(kill, level, runs_on(log, store, pattern, day), day, spent, reserved, topups, cap)
