"""The loop-cost estimator port (R31, §4.1 vectors)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from loop_runtime.core.cost import (
    estimate,
    format_estimate,
    format_tokens,
    js_round,
    list_patterns,
    parse_orchestration,
)
from loop_runtime.errors import ConfigError
from loop_runtime.formats.registry import find_pattern, parse_registry
from loop_runtime.formats.registry_types import Pattern, Registry

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return parse_registry((FIXTURES / "patterns__registry.yaml").read_text(), file="patterns__registry.yaml")


def _p(registry: Registry, pattern_id: str) -> Pattern:
    return find_pattern(registry, pattern_id)


@pytest.mark.parametrize(("pid", "level", "cadence", "conservative", "runs", "per_run", "per_day", "cap"), [
    ("daily-triage", "L1", "1d", False, 1, 23000, 23000, 100000),
    ("daily-triage", "L1", None, False, 12, 23000, 276000, 100000),
    ("daily-triage", "L1", None, True, 1, 23000, 23000, 100000),
    ("ci-sweeper", "L2", "15m", False, 96, 19250, 1848000, 1000000),
    ("pr-babysitter", "L1", None, False, 288, 10700, 3081600, 2000000),
    ("dependency-sweeper", "L2", None, False, 4, 25250, 101000, 500000),
    ("changelog-drafter", "L3", "1d", False, 1, 34250, 34250, 100000),
])
def test_section_4_1_vectors(registry: Registry, pid: str, level: str, cadence: str | None, conservative: bool,
                             runs: int, per_run: int, per_day: int, cap: int) -> None:
    """The §4.1 test vectors on the newest registry."""
    est = estimate(_p(registry, pid), level, cadence, conservative)
    assert est["runsPerDay"] == runs
    assert est["scenarios"]["realistic"]["tokensPerRun"] == per_run
    assert est["scenarios"]["realistic"]["tokensPerDay"] == per_day
    assert est["suggestedDailyCap"] == cap


def test_ci_sweeper_l2_15m_full_shape(registry: Registry) -> None:
    """R31: the whole JSON for ci-sweeper L2 15m, key order and the three warnings included."""
    est = estimate(_p(registry, "ci-sweeper"), "L2", "15m")
    assert list(est) == ["patternId", "patternName", "cadence", "level", "runsPerDay", "tokenCostTier",
                         "suggestedDailyCap", "earlyExitRequired", "orchestration", "scenarios", "warnings"]
    assert est["orchestration"] == {"mode": "single", "multiplier": 1}
    assert list(est["scenarios"]) == ["noop", "report", "action", "realistic"]
    assert est["scenarios"]["action"] == {"tokensPerRun": 200000, "tokensPerDay": 19200000}
    assert est["warnings"] == [
        "Early-exit triage is required — empty watchlist should exit in <5k tokens.",
        "Worst case (action every run) exceeds suggested cap (1.0M/day).",
        "Realistic estimate exceeds suggested daily cap — slow cadence or tighten scope.",
        "High cadence (96 runs/day) — verify early-exit is working.",
    ]


def test_caching_scenario_uses_stable_fraction(registry: Registry) -> None:
    """With stable_fraction, --with-caching bills the stable share at 10%."""
    p = _p(registry, "daily-triage")
    assert p.cost is not None and p.cost.stable_fraction == 0.35
    est = estimate(p, "L1", "1d", with_caching=True)
    assert p.cost.early_exit_required is False
    realistic = 5000 * 0.6 + 50000 * 0.4  # L1 without early exit: 60% no-op, 40% triage
    cached = js_round(realistic * 0.65 + realistic * 0.35 * 0.1)
    assert est["scenarios"]["caching"] == {"tokensPerRun": cached, "tokensPerDay": cached,
                                           "savingsPercent": js_round((1 - cached / realistic) * 100)}
    assert "caching" not in estimate(p, "L1", "1d")["scenarios"]


def test_no_caching_without_stable_fraction(registry: Registry) -> None:
    """A cost block without stable_fraction gets no caching scenario even when asked."""
    p = _p(registry, "daily-triage")
    assert p.cost is not None
    bare = replace(p, cost=replace(p.cost, stable_fraction=None))
    assert "caching" not in estimate(bare, "L1", with_caching=True)["scenarios"]


def test_orchestration_multiplies_the_action_path_only(registry: Registry) -> None:
    """parallel:3 makes the action path 4x and warns; no-op and report are unchanged."""
    p = _p(registry, "ci-sweeper")
    single, fan = estimate(p, "L3", "1h"), estimate(p, "L3", "1h", orchestration="Parallel:3 ")
    assert fan["orchestration"] == {"mode": "parallel:3", "multiplier": 4}
    assert fan["scenarios"]["action"]["tokensPerRun"] == 4 * single["scenarios"]["action"]["tokensPerRun"]
    assert fan["scenarios"]["noop"] == single["scenarios"]["noop"]
    assert fan["warnings"][-1].startswith("Orchestration parallel:3 multiplies action cost 4x")


@pytest.mark.parametrize(("spec", "expected"), [
    (None, {"mode": "single", "multiplier": 1}), ("", {"mode": "single", "multiplier": 1}),
    ("maker-checker", {"mode": "maker-checker", "multiplier": 2}),
    ("debate:02", {"mode": "debate:2", "multiplier": 3}),
])
def test_parse_orchestration(spec: str | None, expected: dict[str, object]) -> None:
    """Orchestration specs map to loop-cost's {mode, multiplier}."""
    assert parse_orchestration(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("parallel:1", "Invalid orchestration: parallel:N needs N>=2 (got 1)."),
    ("debate:0", "Invalid orchestration: debate:R needs R>=1 (got 0)."),
    ("swarm", "Invalid orchestration: swarm. Valid: single, maker-checker, parallel:N, debate:R"),
])
def test_bad_orchestration_uses_loop_costs_wording(spec: str, message: str) -> None:
    """A bad --orchestration is a ConfigError with loop-cost's message."""
    with pytest.raises(ConfigError) as err:
        parse_orchestration(spec)
    assert str(err.value) == message


def test_pattern_without_cost_block_is_cost_unknown(registry: Registry) -> None:
    """R4: no cost block → 'cost unknown', not a crash."""
    bare = replace(_p(registry, "daily-triage"), cost=None)
    with pytest.raises(ConfigError) as err:
        estimate(bare)
    assert err.value.field == "daily-triage.cost" and err.value.value == "missing"
    assert "cost unknown: pattern daily-triage has no cost block" in str(err.value)


def test_bad_level_and_cadence(registry: Registry) -> None:
    """Invalid level or cadence override → ConfigError naming the value."""
    p = _p(registry, "daily-triage")
    with pytest.raises(ConfigError, match="Invalid level: L4. Valid: L1, L2, L3"):
        estimate(p, "L4")
    with pytest.raises(ConfigError, match="'15s'"):
        estimate(p, "L1", "15s")


def test_js_round_rounds_halves_up() -> None:
    """Math.round semantics: 2.5 → 3, -2.5 → -2, and no banker's rounding."""
    assert [js_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, 0.49999999999999994)] == [1, 2, 3, 0, -2, 2, 0]


@pytest.mark.parametrize(("n", "text"), [
    (999, "999"), (1000, "1k"), (1499, "1k"), (1500, "2k"), (100000, "100k"), (1_000_000, "1.0M"),
    (1_250_000, "1.3M"), (1_350_000, "1.4M"), (3_081_600, "3.1M"),
])
def test_format_tokens(n: int, text: str) -> None:
    """formatTokens: k below a million, one decimal M above, toFixed rounding halves up."""
    assert format_tokens(n) == text


def test_format_estimate_human_output(registry: Registry) -> None:
    """The human output has loop-cost's layout (header rule, scenario rows, warnings, footer)."""
    out = format_estimate(estimate(_p(registry, "ci-sweeper"), "L2", "15m", with_caching=True,
                                   orchestration="maker-checker"))
    lines = out.split("\n")
    assert lines[0] == "" and lines[1] == "Loop Cost Estimate — CI Sweeper (ci-sweeper)"
    assert lines[2] == "═" * 50
    assert "Orchestration: maker-checker  ·  action x2" in lines
    assert any(line.startswith("  With prompt caching: ") for line in lines)
    assert lines[-2] == "Docs: docs/operating-loops.md · Scaffold: npx @cobusgreyling/loop-init"


def test_list_patterns(registry: Registry) -> None:
    """--list prints id, tier and cadence separated by tabs."""
    assert list_patterns(registry)[0].split("\t") == [registry.patterns[0].id, registry.patterns[0].token_cost,
                                                     registry.patterns[0].cadence]
