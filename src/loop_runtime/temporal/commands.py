"""The CLI's Temporal commands: ``worker``, ``schedule sync``, ``status --temporal``, and the hooks that
make ``approve``/``reject``/``kill``/``resume`` reach Temporal when the project runs there.

A project "runs on Temporal" when its ``loop-runtime.toml`` has a ``[temporal]`` table; for
any other project the hooks return at once, without importing ``temporalio``.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LoopError
from .connect import TemporalSettings, settings


def _settings(project: Any, address: str | None, namespace: str | None, task_queue: str | None = None
              ) -> TemporalSettings:
    return settings(project, address=address, namespace=namespace, task_queue=task_queue)


def _project_or_none(c: Any) -> Any:
    """The project at the root when there is one (a worker can run from any folder)."""
    try:
        return c.project
    except LoopError:
        return None


def run_worker_command(c: Any, address: str | None, namespace: str | None, task_queue: str | None,
                       work_dir: str | None, concurrency: int) -> None:
    from ..optional import require

    require("temporalio", extra="temporal", feature="`loop-runtime worker`")
    from .worker import default_work_dir, serve

    s = _settings(_project_or_none(c), address, namespace, task_queue)
    serve(s, work_dir=Path(work_dir).resolve() if work_dir else default_work_dir(), concurrency=concurrency,
          log=lambda m: print(m, file=sys.stderr, flush=True))


def schedule_sync_command(c: Any, address: str | None, namespace: str | None, task_queue: str | None,
                          fleet: str | None) -> list[dict[str, Any]]:
    from .client import sync_schedules

    if not fleet:
        return [sync_schedules(c.project, _settings(c.project, address, namespace, task_queue))]
    return [sync_schedules(p, _settings(p, address, namespace, task_queue), links=links)
            for p, links in fleet_projects(Path(fleet))]


def fleet_projects(path: Path) -> list[tuple[Any, Any]]:
    """Every repository of a fleet file (``--fleet``), with the fleet's overrides applied, and for each the
    ``FleetLink`` of each of its loops (what the workers are told of the fleet: overrides, caps, portfolio).

    A ``url`` repository is cloned (or fetched) into the fleet's work folder first, as
    ``start --fleet`` does, so its loops can be read; its ``origin`` is the URL workers clone.
    """
    from ..adapters.fleet import load_fleet, sync_repo
    from ..app.fleet import fleet_project
    from .fleet import fleet_link

    loaded = load_fleet(path)
    out = []
    for place in loaded.places:
        place = sync_repo(place)
        if not (place.root / ".git").exists() and not place.root.is_dir():
            raise ConfigError(str(path), f"repos[{place.repo.index}]", place.name,
                              message=f"repos[{place.repo.index}] ({place.name}): {place.problem or 'not found'}")
        out.append((fleet_project(place), lambda pid, place=place: fleet_link(loaded, place, pid)))
    return out


def show_temporal_status(project: Any, address: str | None, namespace: str | None, as_json: bool) -> None:
    from .client import status_doc, status_text

    doc = status_doc(project, _settings(project, address, namespace))
    if as_json:
        import json

        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(status_text(doc))


def decide_on_temporal(project: Any, esc_id: str, decision: str, *, reason: str = "", merge: bool = False,
                       keep_branch: bool = False) -> dict[str, Any] | None:
    """Send ``approve``/``reject`` to the escalation's workflow; None when the project is not on Temporal
    or Temporal has no such escalation (then the local store is asked, as before)."""
    s = settings(project)
    if not s.configured:
        return None
    from .client import EscalationNotOnTemporal, decide
    from .types import Decision

    answer = Decision(by=getpass.getuser(), reason=reason, merge=merge, keep_branch=keep_branch)
    try:
        return decide(s, esc_id, decision, answer)
    except EscalationNotOnTemporal:
        if _local_escalation(project, esc_id):
            return None
        raise LoopError(f"unknown escalation {esc_id!r}: not waiting on Temporal ({s.address}) and not in "
                        "this checkout's store (`loop-runtime status --temporal` lists the waiting ones)") from None


def _local_escalation(project: Any, esc_id: str) -> bool:
    from ..app.commands import store_if_exists

    store = store_if_exists(project)
    if store is None:
        return False
    try:
        return store.get_escalation(esc_id) is not None
    finally:
        store.close()


def topup_on_temporal(project: Any, pattern: str, tokens: int, reason: str) -> str | None:
    """``topup`` on a project on Temporal also raises the cap its workers reserve against."""
    s = settings(project)
    if not s.configured:
        return None
    from .client import topup

    r = topup(project, s, pattern, tokens, reason)
    cap = f"{r['cap']:,}" if r["cap"] else "no cap"
    return f"Temporal: today's cap of {pattern} is now {cap} tokens (budget workflow)."


def topup_scope_command(project: Any, scope: str, tokens: int, *, reason: str, fleet: str | None,
                        resume: bool = False) -> tuple[dict[str, Any], str | None]:
    """``topup @repo N`` / ``topup @portfolio N --fleet FILE``: the local ledger (``app.fleet.topup_scope``),
    and — when the repository (for ``@portfolio``: any repository of the fleet) runs on Temporal — the
    budget workflow its workers reserve from, so a top-up reaches both paths."""
    from ..app.fleet import topup_scope

    r = topup_scope(project, scope, tokens, reason=reason, fleet=fleet, resume=resume)
    if scope == "@repo":
        s = settings(project)
        if not s.configured:
            return r, None
        from .client import topup_budget
        from .schedules import repo_of

        t = topup_budget(s, f"{repo_of(project).key}/*", project.config.global_daily_cap, tokens)
        return r, f"Temporal: today's repository cap is now {t['cap']:,} tokens (budget workflow)."
    return r, _portfolio_topup_on_temporal(Path(fleet or ""), tokens)


def _portfolio_topup_on_temporal(fleet: Path, tokens: int) -> str | None:
    from ..adapters.fleet import load_fleet
    from ..app.fleet import fleet_project
    from .client import topup_budget

    loaded = load_fleet(fleet)
    for place in loaded.places:
        if place.problem:
            continue
        s = settings(fleet_project(place))
        if s.configured:  # the fleet's repositories share one Temporal: the first configured one names it
            t = topup_budget(s, loaded.portfolio_scope, loaded.fleet.portfolio_daily_cap, tokens)
            return f"Temporal: today's portfolio cap is now {t['cap']:,} tokens (budget workflow {t['scope']})."
    return None


def kill_switch_on_temporal(project: Any, pattern: str | None, reason: str, *, engaged: bool) -> str | None:
    """Schedules follow the switch; ``kill`` also signals the running ticks (they stop within 5 s)."""
    s = settings(project)
    if not s.configured:
        return None
    from .client import kill_switch_changed

    r = kill_switch_changed(project, s, pattern, reason, engaged)
    if engaged:
        return (f"Temporal: {len(r['paused'])} schedule(s) paused, {len(r['stopped'])} running tick(s) "
                "signalled to stop.")
    return f"Temporal: schedules synced ({len(r['paused'])} still paused)."
