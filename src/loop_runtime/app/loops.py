"""Which loops a project has: the one answer ``start``, ``status``, the daemon and the dashboard share.

A loop is *enabled* when the project has set it up — ``loop-runtime.toml`` has a
``[patterns.<id>]`` table for it, ``LOOP.md`` names it (by id or by name), or its own
state file exists (what ``loop-init --pattern <id>`` scaffolds). A table with
``enabled = false`` turns it off whatever else says so. ``STATE.md`` is the shared,
generic state file, so it only counts when nothing more specific names a loop.

Before this module each driver had its own rule: ``status`` showed a scaffold's loop
while ``start`` refused with "no loops enabled" — the same project, two answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:  # annotations only: runtime.py imports this module (Project.enabled_patterns)
    from typing import Any
    from .runtime import Project

SHARED_STATE = "STATE.md"

#: What "set up" means, in the words the "no loops enabled" message uses.
LOOKED_FOR = ("loop-runtime.toml [patterns.<id>] tables", "LOOP.md loop names",
              "a pattern's state file (e.g. ci-sweeper-state.md, STATE.md)")


@dataclass(frozen=True)
class ProjectLoops:
    """The project's loops: enabled ones (with why), ones only seen in history, and what was looked for."""

    enabled: tuple[str, ...]
    reasons: Mapping[str, str]  # pattern id -> what enabled it ("LOOP.md", "state file ci-sweeper-state.md" …)
    disabled: tuple[str, ...]
    history_only: tuple[str, ...]
    registry_size: int
    #: loop-init patterns set up here as GitHub workflows (thin-loop): real loops, but not the runtime's to tick
    workflows: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def workflow_note(self) -> str:
        """One sentence per workflow loop, so a thin-loop scaffold is not just "no loops"."""
        return "; ".join(f"{pid} is set up here as a GitHub workflow ({path}): it runs in GitHub Actions, "
                         "not in loop-runtime" for pid, path in self.workflows.items())

    @property
    def shown(self) -> list[str]:
        """What ``status`` and the dashboard list: enabled loops, then any that ran but are not enabled."""
        return [*self.enabled, *self.history_only]

    @property
    def others(self) -> int:
        """How many registry patterns the project does not use (``status`` says so instead of listing them)."""
        return self.registry_size - len(self.shown)

    def none_message(self, project: Project) -> str:
        names = ", ".join(LOOKED_FOR)
        extra = f"; disabled in loop-runtime.toml: {', '.join(self.disabled)}" if self.disabled else ""
        return (f"no loops enabled in {project.root}: looked for {names} — found none{extra}. "
                "Name patterns on the command line (`loop-runtime start ci-sweeper`), or run "
                "`loop-init . --pattern <id>`, or add [patterns.<id>] to loop-runtime.toml"
                + (f" ({self.workflow_note()})" if self.workflows else ""))


def project_loops(project: Project, store: Store | None = None, *, log: Any = None) -> ProjectLoops:
    """The one definition of "which loops are enabled" (plus history, for display).

    ``log``: the parsed run log when the caller has it already (``status`` reads it once).
    """
    from ..formats.loopmd import find_override

    enabled: list[str] = []
    reasons: dict[str, str] = {}
    disabled: list[str] = []
    shared: list[str] = []
    for p in project.registry.patterns:
        why = None
        if p.id in project.config.patterns:
            why = "loop-runtime.toml"
        elif project.loop_md is not None and find_override(project.loop_md, p) is not None:
            why = "LOOP.md"
        elif p.state != SHARED_STATE and (project.root / p.state).is_file():
            why = f"state file {p.state}"
        elif p.state == SHARED_STATE and (project.root / p.state).is_file():
            shared.append(p.id)
        if why is None:
            continue
        if not project.config.for_pattern(p.id).enabled:
            disabled.append(p.id)
            continue
        enabled.append(p.id)
        reasons[p.id] = why
    if not enabled and not disabled:  # nothing more specific names a loop (not even to turn it off)
        for pid in shared:
            if project.config.for_pattern(pid).enabled:
                enabled.append(pid)
                reasons[pid] = f"state file {SHARED_STATE}"
    history: list[str] = []
    ran = _ran(project, store, log)
    for p in project.registry.patterns:
        if p.id in ran and p.id not in enabled:
            history.append(p.id)
    from ..formats.pattern_names import WORKFLOW_ONLY

    workflows = {pid: path for pid, path in WORKFLOW_ONLY.items() if (project.root / path).is_file()}
    return ProjectLoops(tuple(enabled), MappingProxyType(reasons), tuple(disabled), tuple(history),
                        len(project.registry.patterns), MappingProxyType(workflows))


def _ran(project: Project, store: Store | None, log: Any = None) -> set[str]:
    """Patterns with ticks in the run log or the store: part of the project's story even if not enabled now."""
    if log is None:
        from ..formats.runlog import parse_run_log

        log = parse_run_log(project.read("loop-run-log.md") or "")
    active = {e.pattern for e in log.entries}
    if store is not None:
        active |= store.recent_patterns(200)
    return active
