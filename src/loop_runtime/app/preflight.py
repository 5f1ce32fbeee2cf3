"""Preflight: the one check every driver runs before its first side effect.

``run`` (real and dry), ``start``, ``topup [--resume]``, ``approve`` and ``reject`` call
``preflight`` after the project is loaded (registry, LOOP.md, loop-budget.md and
``loop-runtime.toml`` + environment are parsed by ``load_project``) and *before* the
store is opened, a token reserved, a lock taken, a worktree or branch created. It:

1. reads every file the tick will read or rewrite and validates it (``core.preflight``);
2. loads the mock scenario (a malformed one used to surface mid-tick);
3. unless it is a dry run, proves every write target writable (``adapters.preflight``).

A failure is one ``ConfigError`` line naming file, field and value; nothing was written.
"""

from __future__ import annotations

from typing import Any

LAST_RUN = "docs/last-run.json"


def preflight(project: Any, plan: Any, *, level: str | None = None, backend: str | None = None,
              scenario: str | None = None, dry_run: bool = False, check_scenario: bool = True) -> None:
    """Raise ``ConfigError`` for the first file that would make this tick fail or write badly.

    ``check_scenario=False``: the mock scenario was already loaded by this runner (per-tick re-checks).
    """
    from ..adapters.locked_files import lock_timeout_s
    from ..adapters.preflight import check_writable, read_texts
    from ..core.levels import rank
    from ..core.preflight import PreflightInput, check_texts, reads_for, writes_for

    lvl = level or plan.level
    root = project.root
    texts = read_texts(root, (*reads_for(lvl, plan.state_file), LAST_RUN))
    check_texts(PreflightInput(level=lvl, state_file=plan.state_file, texts=texts))
    if check_scenario and (backend or "mock") == "mock":
        from ..adapters.mock import load_scenario

        load_scenario(scenario)
    if dry_run:
        return
    lock_timeout_s()  # a bad LOOP_RUNTIME_LOCK_TIMEOUT_S is named now, not at the first locked write
    badge = texts.get(LAST_RUN) is not None and "triage" in plan.pattern_id
    dirs = [".loop-runtime"]
    if rank(lvl) >= 2 and project.is_git:
        dirs.append(".loop-worktrees")
    check_writable(root, writes_for(lvl, plan.state_file, badge=badge), dirs)


def preflight_state_write(project: Any, pattern: str) -> None:
    """For the human actions (approve, reject, top-up): the pattern's state file can be rewritten."""
    from ..adapters.locked_files import lock_timeout_s
    from ..adapters.preflight import check_writable, read_texts
    from ..core.preflight import PreflightInput, check_texts

    p = project.pattern(pattern)
    texts = read_texts(project.root, (p.state, "gate.yaml"))
    check_texts(PreflightInput(level="L1", state_file=p.state, texts=texts))
    lock_timeout_s()
    check_writable(project.root, (p.state,), (".loop-runtime",))
