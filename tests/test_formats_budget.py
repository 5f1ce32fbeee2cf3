"""loop-budget.md: the Daily limits table and token amounts (R17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop_runtime.errors import ConfigError
from loop_runtime.formats.budget_table import (
    BudgetRow,
    find_budget_row,
    parse_budget,
    parse_token_amount,
)
from loop_runtime.formats.registry import find_pattern, parse_registry
from tests.support.npm_tools import run_tool

FIXTURES = Path(__file__).parent / "fixtures"
REGISTRY = parse_registry((FIXTURES / "patterns__registry.yaml").read_text(encoding="utf-8"))

# loop-init's PATTERN_BUDGET (reference §1.6), rendered the way loop-init renders one row.
DEFAULTS = {
    "daily-triage": ("Daily Triage", 2, "100k", 100_000, "0 (L1) / 2 (L2)"),
    "pr-babysitter": ("PR Babysitter", 288, "2M", 2_000_000, "0 (L1) / 3 (L2)"),
    "ci-sweeper": ("CI Sweeper", 96, "1M", 1_000_000, "0 (L1) / 3 (L2)"),
    "dependency-sweeper": ("Dependency Sweeper", 4, "500k", 500_000, "0 (L1) / 3 (L2)"),
    "post-merge-cleanup": ("Post-Merge Cleanup", 1, "200k", 200_000, "0 (L1) / 2 (L2)"),
    "changelog-drafter": ("Changelog Drafter", 1, "100k", 100_000, "0 (L1) / 2 (L2)"),
    "issue-triage": ("Issue Triage", 12, "80k", 80_000, "0 (L1) / 1 (L2)"),
}


def _budget_md(rows: list[str]) -> str:
    return (
        "# Loop Budget — YOUR_PROJECT\n\n## Daily limits\n\n"
        "| Loop | Max runs/day | Max tokens/day | Max sub-agent spawns/run |\n"
        "|------|--------------|----------------|--------------------------|\n"
        + "".join(f"{row}\n" for row in rows)
        + "\n## On budget exceed\n\n1. Pause schedulers\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100k", 100_000), ("2M", 2_000_000), ("1.5M", 1_500_000), ("750000", 750_000),
        ("1,000,000", 1_000_000), ("80K", 80_000), (" 500 k ", 500_000), ("2.5k", 2_500), ("0", 0),
        ("100k tokens", 100_000),
    ],
)
def test_parse_token_amount(text: str, expected: int) -> None:
    """Token cells accept k/M suffixes, thousands separators and plain integers."""
    assert parse_token_amount(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "1.5", "-5k", "1e6", "k", "1.2345k", "2G", "1.5.0M"])
def test_parse_token_amount_rejects_garbage(text: str) -> None:
    """Anything else (including fractional token counts) is a ValueError."""
    with pytest.raises(ValueError):
        parse_token_amount(text)


def test_every_loop_init_default_row_parses() -> None:
    """Each per-pattern default row of loop-init parses to its runs/tokens and matches its pattern."""
    rows = [f"| {name} | {runs} | {cell} | {spawns} |" for name, runs, cell, _, spawns in DEFAULTS.values()]
    table = parse_budget(_budget_md(rows))
    assert len(table.rows) == 7
    for pattern_id, (name, runs, _, tokens, spawns) in DEFAULTS.items():
        row = find_budget_row(table, find_pattern(REGISTRY, pattern_id))
        assert row == BudgetRow(loop=name, max_runs_per_day=runs, max_tokens_per_day=tokens, spawns=spawns)


def test_default_caps_mirror_registry_suggested_daily_cap() -> None:
    """loop-init's tokens/day defaults equal the registry's suggested_daily_cap for each pattern."""
    for pattern_id, (_, _, _, tokens, _) in DEFAULTS.items():
        cost = find_pattern(REGISTRY, pattern_id).cost
        assert cost is not None and cost.suggested_daily_cap == tokens


@pytest.mark.parity
def test_real_loop_init_scaffold_parses(tmp_path: Path) -> None:
    """The loop-budget.md written by the real loop-init parses to the Daily Triage defaults."""
    result = run_tool("loop-init", str(tmp_path), "--pattern", "daily-triage", "--tool", "claude")
    assert result.returncode == 0, result.stderr
    table = parse_budget((tmp_path / "loop-budget.md").read_text(encoding="utf-8"))
    row = find_budget_row(table, find_pattern(REGISTRY, "daily-triage"))
    assert row == BudgetRow("Daily Triage", 2, 100_000, "0 (L1) / 2 (L2)")
    assert find_budget_row(table, find_pattern(REGISTRY, "ci-sweeper")) is None


@pytest.mark.parity
@pytest.mark.parametrize("pattern_id", sorted(DEFAULTS))
def test_real_loop_init_defaults_for_every_pattern(tmp_path: Path, pattern_id: str) -> None:
    """For every pattern, the real loop-init's budget row parses to the documented defaults."""
    result = run_tool("loop-init", str(tmp_path), "--pattern", pattern_id, "--tool", "claude")
    assert result.returncode == 0, result.stderr
    table = parse_budget((tmp_path / "loop-budget.md").read_text(encoding="utf-8"))
    name, runs, _, tokens, spawns = DEFAULTS[pattern_id]
    assert find_budget_row(table, find_pattern(REGISTRY, pattern_id)) == BudgetRow(name, runs, tokens, spawns)


def test_loop_init_multi_row_template() -> None:
    """The template's multi-row table (bare spawn counts) parses every row."""
    rows = ["| Daily Triage | 2 | 100k | 0 (L1) / 2 (L2) |", "| PR Babysitter | 288 | 2M | 3 |",
            "| CI Sweeper | 96 | 1M | 3 |"]
    table = parse_budget(_budget_md(rows))
    assert [r.max_tokens_per_day for r in table.rows] == [100_000, 2_000_000, 1_000_000]
    assert table.rows[1].spawns == "3"


def test_bad_token_cell_names_loop_and_column() -> None:
    """A present but unreadable cell is a one-line ConfigError: Daily limits[<loop>].Max tokens/day."""
    with pytest.raises(ConfigError) as info:
        parse_budget(_budget_md(["| Daily Triage | 2 | lots | 0 |"]))
    assert str(info.value) == "loop-budget.md: Daily limits[Daily Triage].Max tokens/day invalid: 'lots'"


def test_bad_runs_cell_is_an_error_too() -> None:
    """An unreadable runs/day cell is named the same way."""
    with pytest.raises(ConfigError) as info:
        parse_budget(_budget_md(["| CI Sweeper | often | 1M | 3 |"]), file="/p/loop-budget.md")
    assert str(info.value) == "/p/loop-budget.md: Daily limits[CI Sweeper].Max runs/day invalid: 'often'"


@pytest.mark.parametrize("cell", ["", "-", "—", "n/a"])
def test_empty_cells_mean_no_limit(cell: str) -> None:
    """Empty or dash cells are None (no limit stated), not errors."""
    table = parse_budget(_budget_md([f"| Daily Triage | {cell} | {cell} | |"]))
    assert table.rows == (BudgetRow("Daily Triage", None, None, ""),)


def test_columns_found_by_header_and_markup_ignored() -> None:
    """Reordered columns, odd case/spacing and bold or code cells are understood."""
    text = (
        "## daily LIMITS\n\n|  max TOKENS / day | Pattern | max runs/day |\n| :-: | --- | ---: |\n"
        "| **1.5M** | `ci-sweeper` | 1,000 |\n"
    )
    row = find_budget_row(parse_budget(text), find_pattern(REGISTRY, "ci-sweeper"))
    assert row == BudgetRow("ci-sweeper", 1000, 1_500_000, "")


def test_daily_limits_table_preferred_over_others() -> None:
    """A tokens table under another heading is ignored when a Daily limits table exists."""
    text = (
        "## History\n\n| Loop | Max tokens/day |\n|---|---|\n| Daily Triage | 9M |\n\n"
        + _budget_md(["| Daily Triage | 2 | 100k | 0 |"])
    )
    assert parse_budget(text).rows[0].max_tokens_per_day == 100_000


def test_no_table_gives_no_rows() -> None:
    """A budget file without a limits table yields an empty table, not an error."""
    assert parse_budget("# Loop Budget\n\nJust prose, no table.\n").rows == ()
    assert parse_budget("```\n| Loop | Max tokens/day |\n|---|---|\n| X | 1k |\n```\n").rows == ()


def test_find_budget_row_ignores_parenthetical_and_case() -> None:
    """'daily triage (L1)' in the Loop column still matches daily-triage."""
    table = parse_budget(_budget_md(["| daily triage (L1) | 2 | 50k | 0 |"]))
    assert find_budget_row(table, find_pattern(REGISTRY, "daily-triage")) is not None
    assert find_budget_row(table, find_pattern(REGISTRY, "issue-triage")) is None
