"""LOOP.md: lenient per-loop level and cadence overrides (R30)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop_runtime.formats.loopmd import find_override, parse_cadence_override, parse_loop_md
from loop_runtime.formats.registry import find_pattern, parse_registry

FIXTURES = Path(__file__).parent / "fixtures"
REGISTRY = parse_registry((FIXTURES / "patterns__registry.yaml").read_text(encoding="utf-8"))


def _override(text: str, pattern_id: str):
    return find_override(parse_loop_md(text), find_pattern(REGISTRY, pattern_id))


def test_reference_loop_md_gives_the_expected_overrides() -> None:
    """The repo's LOOP.md: Daily Triage L1 1d, PR Babysitter L2, Dependency Sweeper L2, Changelog Drafter L1."""
    loop_md = parse_loop_md((FIXTURES / "LOOP.md").read_text(encoding="utf-8"))
    triage = find_override(loop_md, find_pattern(REGISTRY, "daily-triage"))
    assert triage is not None and (triage.level, triage.cadence) == ("L1", "1d")
    assert triage.status == "L1 — automated + report"
    babysitter = find_override(loop_md, find_pattern(REGISTRY, "pr-babysitter"))
    assert babysitter is not None and babysitter.level == "L2"
    sweeper = find_override(loop_md, find_pattern(REGISTRY, "dependency-sweeper"))
    assert sweeper is not None and sweeper.level == "L2"
    drafter = find_override(loop_md, find_pattern(REGISTRY, "changelog-drafter"))
    assert drafter is not None and (drafter.level, drafter.cadence) == ("L1", "1d")


def test_reference_loop_md_leaves_unlisted_loops_alone() -> None:
    """Loops LOOP.md does not configure (the 'Automation status' table is history) get no override."""
    loop_md = parse_loop_md((FIXTURES / "LOOP.md").read_text(encoding="utf-8"))
    for pattern_id in ("ci-sweeper", "post-merge-cleanup", "issue-triage", "issue-pr-repair"):
        assert find_override(loop_md, find_pattern(REGISTRY, pattern_id)) is None


def test_unreadable_cadence_is_a_warning_naming_the_loop() -> None:
    """'10–15m during active hours' is not a cadence: None plus a warning naming PR Babysitter."""
    loop_md = parse_loop_md((FIXTURES / "LOOP.md").read_text(encoding="utf-8"))
    babysitter = find_override(loop_md, find_pattern(REGISTRY, "pr-babysitter"))
    assert babysitter is not None and babysitter.cadence is None
    assert any("PR Babysitter" in w and "cadence" in w for w in loop_md.warnings)


def test_en_dash_range_reads_as_a_registry_range() -> None:
    """'6h–1d' (en dash) in LOOP.md is the registry cadence 6h-1d."""
    loop_md = parse_loop_md((FIXTURES / "LOOP.md").read_text(encoding="utf-8"))
    sweeper = find_override(loop_md, find_pattern(REGISTRY, "dependency-sweeper"))
    assert sweeper is not None and sweeper.cadence == "6h-1d"


def test_repair_starter_table_without_active_loops_heading() -> None:
    """The issue-pr-repair starter's table under the H1 gives L2 and 6h."""
    text = (FIXTURES / "starters__issue-pr-repair__LOOP.md").read_text(encoding="utf-8")
    override = _override(text, "issue-pr-repair")
    assert override is not None
    assert (override.level, override.cadence, override.status) == ("L2", "6h", "L2 assisted")


def test_loop_init_table_shape() -> None:
    """The loop-init starter table | Pattern | Cadence | Status | Command | is read."""
    text = (
        "# Loop Configuration — Minimal Triage\n\n## Active Loops\n\n"
        "| Pattern | Cadence | Status | Command |\n|---------|---------|--------|---------|\n"
        "| Daily Triage | 1d | L1 report-only | `/loop 1d Run $loop-triage` |\n\n## Human Gates\n\n- none\n"
    )
    override = _override(text, "daily-triage")
    assert override is not None
    assert (override.name, override.level, override.cadence, override.status) == (
        "Daily Triage", "L1", "1d", "L1 report-only",
    )


def test_columns_are_found_by_header_not_position() -> None:
    """Reordered columns and a Level column are understood."""
    text = "## Active loops\n\n| Cadence | Loop | Level |\n|:--|:--:|--:|\n| 2h | CI Sweeper | L3 |\n"
    override = _override(text, "ci-sweeper")
    assert override is not None and (override.level, override.cadence) == ("L3", "2h")


def test_match_by_id_in_table_and_by_pattern_flag() -> None:
    """A row named by id, or carrying --pattern <id> in its command, matches that pattern."""
    by_id = "## Active Loops\n| Pattern | Cadence | Status |\n|---|---|---|\n| ci-sweeper | 15m | L2 |\n"
    assert _override(by_id, "ci-sweeper").pattern_id == "ci-sweeper"
    by_flag = (
        "## Active Loops\n| Loop | Cadence | Status | Command |\n|---|---|---|---|\n"
        "| Nightly fixes | 1d | L2 | `loop-runtime run --pattern post-merge-cleanup` |\n"
    )
    override = _override(by_flag, "post-merge-cleanup")
    assert override is not None and override.name == "Nightly fixes" and override.cadence == "1d"


def test_heading_entries_read_bullets_and_pattern_field() -> None:
    """### entries take cadence from '- Cadence:' and the id from '- Pattern:' bullets."""
    text = (
        "## Active Loops\n\n### Morning scan (L2 — assisted)\n- **Cadence:** `2h` then daily\n"
        "- Pattern: issue-triage\n\n### Other\n- Cadence: whenever\n"
    )
    loop_md = parse_loop_md(text)
    override = find_override(loop_md, find_pattern(REGISTRY, "issue-triage"))
    assert override is not None and (override.level, override.cadence) == ("L2", "2h")
    assert any("'Other'" in w for w in loop_md.warnings)


def test_level_from_level_bullet_when_heading_has_none() -> None:
    """A heading without (Lx) takes its level from a '- Level:' bullet."""
    text = "## Active Loops\n### Daily Triage\n- Level: L2\n- Cadence: 1d\n"
    override = _override(text, "daily-triage")
    assert override is not None and (override.level, override.cadence) == ("L2", "1d")


def test_content_outside_loop_sections_and_fences_is_ignored() -> None:
    """Tables under other headings and inside code fences never change a loop."""
    text = (
        "# X\n\n## Links\n| Pattern | Cadence | Status |\n|---|---|---|\n| Daily Triage | 5m | L3 |\n\n"
        "## Active Loops\n```\n| Pattern | Cadence | Status |\n|---|---|---|\n| Daily Triage | 5m | L3 |\n```\n"
    )
    assert parse_loop_md(text).overrides == ()


def test_first_entry_wins_and_duplicates_warn() -> None:
    """Two entries for the same loop: the first is used and a warning names the loop."""
    text = "## Active Loops\n### Daily Triage (L1)\n- Cadence: 1d\n### Daily Triage (L3)\n- Cadence: 5m\n"
    loop_md = parse_loop_md(text)
    assert len(loop_md.overrides) == 1 and loop_md.overrides[0].level == "L1"
    assert any("duplicate" in w and "Daily Triage" in w for w in loop_md.warnings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d weekdays", "1d"),
        ("6h + webhook reconciliation", "6h"),
        ("every `15m`", "15m"),
        ("5m-15m", "5m-15m"),
        ("6h – 1d", "6h-1d"),
        ("10–15m during active hours", None),
        ("15s", None),
        ("weekly", None),
        ("(1h),", "1h"),
    ],
)
def test_cadence_override_is_first_registry_token(text: str, expected: str | None) -> None:
    """The cadence override is the first token matching the registry cadence regex."""
    assert parse_cadence_override(text) == expected


@pytest.mark.parametrize("text", ["", "no headings at all", "## Active Loops\n|", "### (L1)\n", "| a |\n|---|\n| b |"])
def test_odd_documents_never_fail(text: str) -> None:
    """Unparseable LOOP.md content is ignored, never an error."""
    parse_loop_md(text)
