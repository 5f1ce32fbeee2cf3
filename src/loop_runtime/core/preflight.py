"""Preflight, the pure half: is every file a tick will read or write usable, before anything happens?

Why before anything: a run log without its marker or a malformed ledger used to be found
after the tick had created ``.loop-runtime/runtime.db``, a worktree and a branch, or
spent tokens. The adapter (``adapters.preflight``) reads the texts and checks that the
write targets are writable; this module decides over those texts, with no I/O, and
raises the one-line ``ConfigError`` (file, field, value) of the first problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from .levels import rank

RUN_LOG = "loop-run-log.md"
LEDGER = "loop-ledger.json"
GATE = "gate.yaml"
PROMOTION = "promotion.yaml"


@dataclass(frozen=True)
class PreflightInput:
    """What a tick of one pattern is about to touch.

    ``texts`` maps a project-relative path to its text (``None`` when it does not exist);
    ``writes`` lists the project-relative paths the tick may write at ``level``.
    """

    level: str
    state_file: str
    texts: Mapping[str, str | None] = field(default_factory=dict)
    writes: tuple[str, ...] = ()


def reads_for(level: str, state_file: str) -> tuple[str, ...]:
    """Every project file a tick at ``level`` parses (beyond the registry/LOOP.md/budget/toml)."""
    files = [state_file, RUN_LOG, GATE]
    if rank(level) >= 2:
        files.append(LEDGER)
    if rank(level) >= 3:
        files.append(PROMOTION)
    return tuple(dict.fromkeys(files))


def writes_for(level: str, state_file: str, *, badge: bool) -> tuple[str, ...]:
    """Every project file a tick at ``level`` may rewrite (the badge only when it exists)."""
    files = [state_file, RUN_LOG]
    if badge:
        files.append("docs/last-run.json")
    if rank(level) >= 2:
        files.append(LEDGER)
    return tuple(dict.fromkeys(files))


def check_texts(inp: PreflightInput) -> None:
    """Raise the first problem in the texts a tick will read or rewrite."""
    from ..formats.runlog import MARKER

    t = inp.texts
    log = t.get(RUN_LOG)
    if log is not None and MARKER not in log:
        raise ConfigError(RUN_LOG, "marker", MARKER, message=f"run log has no marker line {MARKER!r}; add it "
                          "under '## Recent Runs' (loop-runtime never rewrites a log it cannot append to safely)")
    state = t.get(inp.state_file)
    if state is not None:
        from ..formats.state import parse_state

        parse_state(state, file=inp.state_file)
    gate = t.get(GATE)
    if gate is not None:
        from ..formats.gate_config import parse_gate_yaml

        parse_gate_yaml(gate, file=GATE)
    ledger = t.get(LEDGER)
    if ledger is not None and ledger.strip() and rank(inp.level) >= 2:
        from ..formats.ledger import parse_ledger

        parse_ledger(ledger, file=LEDGER)
    promotion = t.get(PROMOTION)
    if promotion is not None and rank(inp.level) >= 3:
        from ..formats.promotion import parse_promotion_contract

        parse_promotion_contract(promotion, file=PROMOTION)
