"""``build_plan``: everything a tick needs to know about one loop, decided up front (R6–R8, R17).

A plan is pure data computed from the registry entry, the project's LOOP.md overrides,
its ``loop-budget.md`` row, the optional ``loop-runtime.toml`` and the CLI flags, with
each value's source recorded — so ``loop-runtime plan`` can show a human exactly why a
loop runs at L1 every 2h with a 100k cap. Precedence: flag > loop-runtime.toml >
LOOP.md > registry defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..formats.registry_types import Pattern
from .cadence import Cadence, parse_cadence, runs_per_day, schedule_interval_s
from .levels import LEVELS, RULES

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

#: Per-call reservations when a pattern has no cost block (R4): generous but bounded.
FALLBACK_CALL_TOKENS = {"triage": 50_000, "implementer": 200_000, "verifier": 50_000}


@dataclass(frozen=True)
class Plan:
    """How one loop will run (level, cadence, cap, backend) and where each setting came from (``*_source``)."""

    pattern: Pattern
    level: str
    level_source: str
    cadence: Cadence
    cadence_source: str
    interval_s: int
    daily_token_cap: int | None
    cap_source: str
    max_runs_per_day: int | None
    max_attempts: int
    early_exit_required: bool
    state_file: str
    call_tokens: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def pattern_id(self) -> str:
        return self.pattern.id

    def as_json(self) -> dict[str, Any]:
        cost = self.pattern.cost
        return {
            "pattern": self.pattern.id,
            "name": self.pattern.name,
            "goal": self.pattern.goal,
            "level": self.level,
            "levelSource": self.level_source,
            "levelRule": RULES[self.level],
            "cadence": self.cadence.text,
            "cadenceSource": self.cadence_source,
            "intervalSeconds": self.interval_s,
            "runsPerDay": {
                "default": runs_per_day(self.cadence),
                "conservative": runs_per_day(self.cadence, conservative=True),
                "scheduled": max(1, 86_400 // self.interval_s),
            },
            "dailyTokenCap": self.daily_token_cap,
            "capSource": self.cap_source,
            "maxRunsPerDay": self.max_runs_per_day,
            "maxAttempts": self.max_attempts,
            "earlyExitRequired": self.early_exit_required,
            "stateFile": self.state_file,
            "phases": list(self.pattern.phases),
            "skills": list(self.pattern.skills),
            "humanGates": list(self.pattern.human_gates),
            "callTokens": dict(self.call_tokens),
            "costKnown": cost is not None,
            "warnings": list(self.warnings),
        }


def _check_level(level: str, source: str) -> str:
    if level not in LEVELS:
        raise ConfigError(source, "level", level, valid=LEVELS)
    return level


def build_plan(
    pattern: Pattern,
    level: str | None = None,
    *,
    cadence: str | None = None,
    loop_md: Any = None,
    budget: Any = None,
    config: Any = None,
    max_attempts: int | None = None,
) -> Plan:
    """Decide level, cadence, caps and attempts for ``pattern``.

    ``loop_md`` is a ``formats.loopmd.LoopMd``, ``budget`` a ``formats.budget_table.BudgetTable``
    and ``config`` a ``formats.project_config.ProjectConfig``; each may be None.
    """
    warnings: list[str] = []
    pcfg = config.for_pattern(pattern.id) if config is not None else None
    override = None
    if loop_md is not None:
        from ..formats.loopmd import find_override

        override = find_override(loop_md, pattern)
    lvl, lsrc = _level(pattern, level, pcfg, override)
    cad, csrc = _cadence(pattern, cadence, pcfg, override)
    row = None
    if budget is not None:
        from ..formats.budget_table import find_budget_row

        row = find_budget_row(budget, pattern)
    cap, cap_src = _daily_cap(pattern, row, pcfg, warnings)
    early = pattern.cost.early_exit_required if pattern.cost is not None else False
    if pcfg is not None and pcfg.early_exit is not None:
        early = pcfg.early_exit
    if override is not None and loop_md is not None:
        warnings.extend(w for w in loop_md.warnings if override.name in w)
    return Plan(
        pattern=pattern,
        level=lvl,
        level_source=lsrc,
        cadence=cad,
        cadence_source=csrc,
        interval_s=schedule_interval_s(cad),
        daily_token_cap=cap,
        cap_source=cap_src,
        max_runs_per_day=row.max_runs_per_day if row is not None else None,
        max_attempts=max_attempts or (config.max_attempts if config is not None else 3),
        early_exit_required=early,
        state_file=pattern.state,
        call_tokens=_call_tokens(pattern),
        warnings=tuple(warnings),
    )


def _level(pattern: Pattern, level: str | None, pcfg: Any, override: Any) -> tuple[str, str]:
    """Level and its source: flag > toml > LOOP.md > week_one_mode > L1."""
    if level is not None:
        return _check_level(level, "--level"), "flag --level"
    if pcfg is not None and pcfg.level:
        return _check_level(pcfg.level, f"loop-runtime.toml patterns.{pattern.id}.level"), "loop-runtime.toml"
    if override is not None and override.level:
        return override.level, "LOOP.md"
    if pattern.week_one_mode:
        return pattern.week_one_mode, "registry week_one_mode"
    return "L1", "default (no week_one_mode)"


def _cadence(pattern: Pattern, cadence: str | None, pcfg: Any, override: Any) -> tuple[Cadence, str]:
    """Cadence and its source: flag > toml > LOOP.md > registry."""
    if cadence is not None:
        return parse_cadence(cadence, file="--cadence", field="cadence"), "flag --cadence"
    if pcfg is not None and pcfg.cadence:
        cad = parse_cadence(pcfg.cadence, file="loop-runtime.toml", field=f"patterns.{pattern.id}.cadence")
        return cad, "loop-runtime.toml"
    if override is not None and override.cadence:
        return parse_cadence(override.cadence, file="LOOP.md", field=f"{override.name}.cadence"), "LOOP.md"
    return parse_cadence(pattern.cadence, file="patterns/registry.yaml", field=f"{pattern.id}.cadence"), "registry"


def _daily_cap(pattern: Pattern, row: Any, pcfg: Any, warnings: list[str]) -> tuple[int | None, str]:
    """The smaller of registry suggested_daily_cap, loop-budget.md, toml (unknown: a warning)."""
    caps: list[tuple[int, str]] = []
    if pattern.cost is not None:
        caps.append((pattern.cost.suggested_daily_cap, "registry suggested_daily_cap"))
    if row is not None and row.max_tokens_per_day is not None:
        caps.append((row.max_tokens_per_day, "loop-budget.md Max tokens/day"))
    if pcfg is not None and pcfg.daily_cap:
        caps.append((pcfg.daily_cap, "loop-runtime.toml daily_cap"))
    if caps:
        return min(caps, key=lambda c: c[0])
    warnings.append(f"{pattern.id}: no cost block and no budget row — daily cap unknown")
    return None, "unknown (no cost block, no loop-budget.md row)"


def _call_tokens(pattern: Pattern) -> dict[str, int]:
    """Per-call reservations: the registry's cost block, else the fallback."""
    if pattern.cost is None:
        return dict(FALLBACK_CALL_TOKENS)
    return {
        "triage": pattern.cost.tokens_report,
        "implementer": pattern.cost.tokens_action,
        "verifier": pattern.cost.tokens_report,
    }
