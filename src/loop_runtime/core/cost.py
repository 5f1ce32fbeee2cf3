"""Daily token estimates for a pattern: a faithful port of loop-cost 1.2.0's estimator (R31).

Teams size budgets with ``npx @cobusgreyling/loop-cost``; if our numbers differed by a
token, the budget a human wrote in ``loop-budget.md`` and the cap the runtime enforces
would quietly disagree. So this module reproduces the tool exactly: the same blend of
no-op / report / action runs per level, the same orchestration multiplier, the same
caching discount, JavaScript's ``Math.round`` (halves up), the same warning sentences
and the same JSON key order. ``format_estimate`` reproduces the human output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..errors import ConfigError
from ..formats.registry_types import CostModel, Pattern, Registry
from .cadence import loop_cost_runs, parse_cadence

VALID_LEVELS = ("L1", "L2", "L3")
CACHE_READ_DISCOUNT = 0.1
REGISTRY_FILE = "patterns/registry.yaml"


@dataclass(frozen=True)
class _Mix:
    noop: float
    report: float
    action: float
    assumptions: str


def js_round(x: float) -> int:
    """JavaScript ``Math.round``: nearest integer, halves toward +infinity (not banker's)."""
    floor = math.floor(x)
    return int(floor + 1 if x - floor >= 0.5 else floor)


def _realistic_mix(level: str, early_exit: bool) -> _Mix:
    if level == "L1":
        if early_exit:
            return _Mix(0.9, 0.1, 0, "L1: 90% early-exit, 10% full triage")
        return _Mix(0.6, 0.4, 0, "L1: 60% no-op, 40% full triage")
    if level == "L2":
        if early_exit:
            return _Mix(0.85, 0.1, 0.05, "L2: 85% early-exit, 10% triage, 5% implementer+verifier")
        return _Mix(0.5, 0.3, 0.2, "L2: 50% no-op, 30% triage, 20% action")
    return _Mix(0.4, 0.35, 0.25, "L3: 40% no-op, 35% triage, 25% action (unattended — monitor closely)")


def parse_orchestration(spec: str | None) -> dict[str, Any]:
    """``single`` / ``maker-checker`` / ``parallel:N`` / ``debate:R`` → ``{mode, multiplier}``.

    The multiplier lands on the action path only: the no-op scan and the single triage
    pass do not fan out.
    """
    s = (spec if spec is not None else "single").strip().lower()
    if s in ("", "single"):
        return {"mode": "single", "multiplier": 1}
    if s == "maker-checker":
        return {"mode": "maker-checker", "multiplier": 2}
    parallel = re.fullmatch(r"parallel:([0-9]+)", s)
    if parallel:
        n = int(parallel.group(1))
        if n < 2:
            raise ConfigError("", "orchestration", spec,
                              message=f"Invalid orchestration: parallel:N needs N>=2 (got {n}).")
        return {"mode": f"parallel:{n}", "multiplier": n + 1}
    debate = re.fullmatch(r"debate:([0-9]+)", s)
    if debate:
        r = int(debate.group(1))
        if r < 1:
            raise ConfigError("", "orchestration", spec,
                              message=f"Invalid orchestration: debate:R needs R>=1 (got {r}).")
        return {"mode": f"debate:{r}", "multiplier": 1 + r}
    raise ConfigError("", "orchestration", spec,
                      message=f"Invalid orchestration: {spec}. Valid: single, maker-checker, parallel:N, debate:R")


def format_tokens(n: float) -> str:
    """loop-cost's ``formatTokens``: ``1.2M`` / ``23k`` / ``950`` (``toFixed`` rounds halves up)."""
    if n >= 1_000_000:
        exact = Decimal(n / 1_000_000)  # the double JS would format, converted exactly
        return f"{exact.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}M"
    if n >= 1_000:
        return f"{js_round(n / 1_000)}k"
    return str(n)


def _cost_of(pattern: Pattern) -> CostModel:
    if pattern.cost is None:
        raise ConfigError(REGISTRY_FILE, f"{pattern.id}.cost", "missing",
                          message=f"cost unknown: pattern {pattern.id} has no cost block")
    return pattern.cost


def _check_level(level: str) -> None:
    if level not in VALID_LEVELS:
        raise ConfigError("", "level", level, valid=VALID_LEVELS,
                          message=f"Invalid level: {level}. Valid: {', '.join(VALID_LEVELS)}")


def _caching(realistic_per_run: float, runs: int, stable_fraction: float) -> dict[str, Any]:
    stable = realistic_per_run * stable_fraction
    variable = realistic_per_run - stable
    cached_per_run = js_round(variable + stable * CACHE_READ_DISCOUNT)
    savings: int | None = None
    if realistic_per_run != 0:  # JS would print null (NaN) here; the registry forbids 0 anyway
        savings = js_round((1 - cached_per_run / realistic_per_run) * 100)
    return {"tokensPerRun": cached_per_run, "tokensPerDay": js_round(cached_per_run * runs),
            "savingsPercent": savings}


def _warnings(cost: CostModel, runs: int, action_day: int, realistic_day: int,
              orchestration: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    if cost.early_exit_required:
        warnings.append("Early-exit triage is required — empty watchlist should exit in <5k tokens.")
    if action_day > cost.suggested_daily_cap:
        warnings.append(f"Worst case (action every run) exceeds suggested cap "
                        f"({format_tokens(cost.suggested_daily_cap)}/day).")
    if realistic_day > cost.suggested_daily_cap:
        warnings.append("Realistic estimate exceeds suggested daily cap — slow cadence or tighten scope.")
    if runs >= 96:
        warnings.append(f"High cadence ({runs} runs/day) — verify early-exit is working.")
    if orchestration["multiplier"] > 2:
        warnings.append(f"Orchestration {orchestration['mode']} multiplies action cost "
                        f"{orchestration['multiplier']}x — confirm the fan-out or debate depth is justified.")
    return warnings


def estimate(pattern: Pattern, level: str = "L1", cadence: str | None = None, conservative: bool = False,
             with_caching: bool = False, orchestration: str | None = None) -> dict[str, Any]:
    """Exactly what ``loop-cost --pattern <id> --level <L> ... --json`` prints, as a dict.

    Raises ``ConfigError`` for a bad level, cadence or orchestration, and for a pattern
    without a ``cost`` block ("cost unknown", R4).
    """
    _check_level(level)
    orch = parse_orchestration(orchestration)
    cost = _cost_of(pattern)
    text = cadence if cadence is not None else pattern.cadence
    parsed = parse_cadence(text, file="" if cadence is not None else REGISTRY_FILE,
                           field="cadence" if cadence is not None else f"{pattern.id}.cadence")
    runs = loop_cost_runs(parsed.slow_s if conservative else parsed.fast_s)
    mix = _realistic_mix(level, cost.early_exit_required)
    action_per_run = js_round(cost.tokens_action * orch["multiplier"])
    noop_day = cost.tokens_noop * runs
    report_day = cost.tokens_report * runs
    action_day = action_per_run * runs
    # Same operand order as the JS expression, so the float result is bit-identical.
    realistic_per_run = cost.tokens_noop * mix.noop + cost.tokens_report * mix.report + action_per_run * mix.action
    realistic_day = js_round(realistic_per_run * runs)
    scenarios: dict[str, Any] = {
        "noop": {"tokensPerRun": cost.tokens_noop, "tokensPerDay": noop_day},
        "report": {"tokensPerRun": cost.tokens_report, "tokensPerDay": report_day},
        "action": {"tokensPerRun": action_per_run, "tokensPerDay": action_day},
        "realistic": {"tokensPerRun": js_round(realistic_per_run), "tokensPerDay": realistic_day,
                      "assumptions": mix.assumptions},
    }
    if with_caching and cost.stable_fraction:
        scenarios["caching"] = _caching(realistic_per_run, runs, cost.stable_fraction)
    result: dict[str, Any] = {"patternId": pattern.id, "patternName": pattern.name, "cadence": text,
                              "level": level, "runsPerDay": runs}
    if pattern.token_cost is not None:  # JSON.stringify drops an undefined tier
        result["tokenCostTier"] = pattern.token_cost
    result.update({
        "suggestedDailyCap": cost.suggested_daily_cap,
        "earlyExitRequired": cost.early_exit_required,
        "orchestration": orch,
        "scenarios": scenarios,
        "warnings": _warnings(cost, runs, action_day, realistic_day, orch),
    })
    return result


def format_estimate(est: dict[str, Any]) -> str:
    """loop-cost's human output for an ``estimate`` result (what it prints without ``--json``)."""
    sc = est["scenarios"]
    orch = est["orchestration"]
    lines = ["", f"Loop Cost Estimate — {est['patternName']} ({est['patternId']})", "═" * 50,
             f"Cadence: {est['cadence']}  →  {est['runsPerDay']} runs/day",
             f"Level: {est['level']}  ·  Registry tier: {est.get('tokenCostTier', 'undefined')}"]
    if orch["multiplier"] > 1:
        lines.append(f"Orchestration: {orch['mode']}  ·  action x{orch['multiplier']}")
    lines += [f"Suggested daily cap: {format_tokens(est['suggestedDailyCap'])} tokens", "",
              "Daily token estimates:"]
    for label, key in (("Early-exit / no-op:  ", "noop"), ("Full triage:         ", "report"),
                       ("Action every run:    ", "action")):
        per_day, per_run = format_tokens(sc[key]["tokensPerDay"]), format_tokens(sc[key]["tokensPerRun"])
        lines.append(f"  {label}{per_day}  ({per_run}/run)")
    lines.append(f"  Realistic blend:     {format_tokens(sc['realistic']['tokensPerDay'])}  "
                 f"({sc['realistic']['assumptions']})")
    if "caching" in sc:
        savings = sc["caching"]["savingsPercent"]
        lines.append(f"  With prompt caching: {format_tokens(sc['caching']['tokensPerDay'])}  "
                     f"({'NaN' if savings is None else savings}% reduction vs. realistic blend)")
    if est["warnings"]:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in est["warnings"]]
    lines += ["", "Docs: docs/operating-loops.md · Scaffold: npx @cobusgreyling/loop-init", ""]
    return "\n".join(lines)


def list_patterns(registry: Registry) -> list[str]:
    """``loop-cost --list``: one ``id<TAB>token_cost<TAB>cadence`` line per pattern."""
    return [f"{p.id}\t{p.token_cost if p.token_cost is not None else 'undefined'}\t{p.cadence}"
            for p in registry.patterns]
