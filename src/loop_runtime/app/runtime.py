"""The composition root: reads a project once and builds the adapters a tick needs.

Every driver (the CLI's ``run``, the scheduler, the dashboard's actions) goes through
here, so "the same project" means the same registry, overrides, budget and policy
wherever a tick starts. Root resolution is ``--root`` > ``LOOP_PROJECT_ROOT`` > cwd (R33).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from ..core.plan import Plan
    from ..formats.registry_types import Pattern, Registry


def resolve_root(flag: str | None, env: Mapping[str, str] = os.environ) -> Path:
    raw = flag or env.get("LOOP_PROJECT_ROOT") or os.getcwd()
    root = Path(raw).expanduser()
    if not root.is_dir():
        source = "--root" if flag else "LOOP_PROJECT_ROOT" if env.get("LOOP_PROJECT_ROOT") else "cwd"
        raise ConfigError(source, "root", str(raw), message=f"project root is not a directory: {raw!r}")
    return root.resolve()


@dataclass
class Project:
    """Everything read from a project's files, parsed once."""

    root: Path
    registry: Registry
    config: Any  # formats.project_config.ProjectConfig
    loop_md: Any = None
    budget: Any = None
    gate_policy: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_git(self) -> bool:
        return (self.root / ".git").exists()

    def pattern(self, pattern_id: str) -> Pattern:
        from ..formats.registry import find_pattern

        return find_pattern(self.registry, pattern_id)

    def plan(self, pattern_id: str, level: str | None = None, cadence: str | None = None) -> Plan:
        from ..core.plan import build_plan

        return build_plan(self.pattern(pattern_id), level, cadence=cadence, loop_md=self.loop_md,
                          budget=self.budget, config=self.config)

    def enabled_patterns(self) -> list[str]:
        """Loops to schedule: see ``loops.project_loops`` (the one rule start/status/dashboard share)."""
        from .loops import project_loops

        return list(project_loops(self).enabled)

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text("utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None
        except UnicodeDecodeError as e:
            from ..errors import not_utf8

            raise not_utf8(rel, e) from None


def load_project(root: Path) -> Project:
    from ..adapters.project_files import load_project_config, load_registry

    registry = load_registry(root)
    config = load_project_config(root)
    project = Project(root=root, registry=registry, config=config, warnings=list(registry.warnings))
    text = project.read("LOOP.md")
    if text is not None:  # each parser imported only when its file is there (start-up of `status`)
        from ..formats.loopmd import parse_loop_md

        project.loop_md = parse_loop_md(text)
    text = project.read("loop-budget.md")
    if text is not None:
        from ..formats.budget_table import parse_budget

        project.budget = parse_budget(text, file="loop-budget.md")
    return project


def gate_policy(project: Project) -> Any:
    from ..adapters.project_files import load_gate_policy

    if project.gate_policy is None:
        policy, warning = load_gate_policy(project.root)
        project.gate_policy = policy
        if warning:
            project.warnings.append(warning)
    return project.gate_policy


def owner_id() -> str:
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def now_utc() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)
