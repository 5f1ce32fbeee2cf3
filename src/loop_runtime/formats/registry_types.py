"""Value types of ``patterns/registry.yaml`` (see formats/registry.py for parsing)."""

from __future__ import annotations

from dataclasses import dataclass, field
TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Literal


@dataclass(frozen=True)
class CostModel:
    """A pattern's ``cost`` block: tokens per outcome and the daily cap loop-cost suggests (the budget's defaults)."""

    tokens_noop: int
    tokens_report: int
    tokens_action: int
    suggested_daily_cap: int
    early_exit_required: bool
    stable_fraction: float | None = None


@dataclass(frozen=True)
class Pattern:
    """One entry of ``patterns/registry.yaml``: what a loop is for and how often and how riskily it may run."""

    id: str
    name: str
    file: str
    goal: str
    cadence: str
    risk: str
    tools: tuple[str, ...]
    skills: tuple[str, ...]
    state: str
    phases: tuple[str, ...]
    human_gates: tuple[str, ...]
    starter: str | None = None
    week_one_mode: str | None = None
    token_cost: str | None = None
    cost: CostModel | None = None  # None = no cost block (R4): cost/budget features say "unknown"


@dataclass(frozen=True)
class Registry:
    """The patterns a project may run: its own registry, else the bundled one (``source`` says which)."""

    patterns: tuple[Pattern, ...]
    source: Literal["project", "bundled"]
    path: str  # file it was read from (the bundled file's path for "bundled")
    warnings: tuple[str, ...] = field(default=())

    def ids(self) -> list[str]:
        return [p.id for p in self.patterns]
