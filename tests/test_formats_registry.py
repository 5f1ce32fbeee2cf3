"""patterns/registry.yaml: parsing, validation messages, fallback and lookup (R1–R5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from loop_runtime.adapters.project_files import load_registry
from loop_runtime.errors import ConfigError
from loop_runtime.formats.registry import (
    find_pattern,
    name_matches,
    normalise_name,
    parse_registry,
)

FIXTURES = Path(__file__).parent / "fixtures"
NEWEST = (FIXTURES / "patterns__registry.yaml").read_text(encoding="utf-8")
OLDER = (FIXTURES / "patterns__registry.f361c148.yaml").read_text(encoding="utf-8")


def _entries() -> list[dict]:
    return yaml.safe_load(NEWEST)["patterns"]


def _dump(entries: list[dict]) -> str:
    return yaml.safe_dump({"patterns": entries}, sort_keys=False)


def _error(entries: list[dict]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_registry(_dump(entries))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_newest_registry_parses_all_eight_patterns() -> None:
    """The newest known registry (with stable_fraction) loads with no error or warning."""
    registry = parse_registry(NEWEST)
    assert registry.ids() == [
        "issue-pr-repair", "pr-babysitter", "daily-triage", "ci-sweeper",
        "post-merge-cleanup", "dependency-sweeper", "changelog-drafter", "issue-triage",
    ]
    assert registry.warnings == ()
    assert registry.source == "project"
    assert registry.path == "patterns/registry.yaml"


def test_older_registry_parses_all_seven_patterns() -> None:
    """The f361c148 registry (no stable_fraction) loads too."""
    registry = parse_registry(OLDER)
    assert len(registry.patterns) == 7
    assert all(p.cost is not None and p.cost.stable_fraction is None for p in registry.patterns)


def test_field_values_match_the_reference_table() -> None:
    """Every field of one entry is read exactly, including the cost block."""
    triage = find_pattern(parse_registry(NEWEST), "daily-triage")
    assert triage.name == "Daily Triage"
    assert triage.cadence == "1d-2h"
    assert triage.risk == "low"
    assert triage.state == "STATE.md"
    assert triage.phases == ("report", "act-small-wins", "escalate")
    assert triage.skills == ("loop-triage", "minimal-fix")
    assert triage.week_one_mode == "L1"
    assert triage.token_cost == "low"
    assert triage.starter == "starters/minimal-loop"
    assert triage.cost is not None
    assert (triage.cost.tokens_noop, triage.cost.tokens_report, triage.cost.tokens_action) == (5000, 50000, 200000)
    assert triage.cost.suggested_daily_cap == 100000
    assert triage.cost.early_exit_required is False
    assert triage.cost.stable_fraction == 0.35


def test_reference_table_values_for_every_pattern() -> None:
    """State file, cadence, week-one level and daily cap of all 8 entries match reference §1.1."""
    expected = {
        "issue-pr-repair": ("6h", "L2", 750000, True, "repair-loop-state.md"),
        "pr-babysitter": ("5m-15m", "L1", 2000000, True, "pr-babysitter-state.md"),
        "daily-triage": ("1d-2h", "L1", 100000, False, "STATE.md"),
        "ci-sweeper": ("5m-15m", "L2", 1000000, True, "ci-sweeper-state.md"),
        "post-merge-cleanup": ("1d-6h", "L1", 200000, False, "post-merge-state.md"),
        "dependency-sweeper": ("6h-1d", "L2", 500000, True, "dependency-sweeper-state.md"),
        "changelog-drafter": ("1d", "L1", 100000, False, "changelog-drafter-state.md"),
        "issue-triage": ("2h-1d", "L1", 80000, False, "issue-triage-state.md"),
    }
    for p in parse_registry(NEWEST).patterns:
        assert p.cost is not None
        got = (p.cadence, p.week_one_mode, p.cost.suggested_daily_cap, p.cost.early_exit_required, p.state)
        assert got == expected[p.id]


def test_bad_cadence_names_index_and_value() -> None:
    """A '15s' cadence is rejected as patterns[2].cadence invalid: '15s'."""
    entries = _entries()
    entries[2]["cadence"] = "15s"
    assert _error(entries) == "patterns/registry.yaml: patterns[2].cadence invalid: '15s'"


@pytest.mark.parametrize("cadence", ["1w", "5m-", "-5m", "5", "m", "5m-15m-1h", "5 m", ""])
def test_other_bad_cadences_are_rejected(cadence: str) -> None:
    """Cadences outside ^[0-9]+[mhd](-[0-9]+[mhd])?$ are rejected."""
    entries = _entries()
    entries[0]["cadence"] = cadence
    assert "patterns[0].cadence invalid" in _error(entries)


def test_bad_risk_is_rejected_with_valid_values() -> None:
    """A risk outside low|medium|high names the field and the valid values."""
    entries = _entries()
    entries[1]["risk"] = "extreme"
    assert _error(entries) == (
        "patterns/registry.yaml: patterns[1].risk invalid: 'extreme' (valid: low, medium, high)"
    )


def test_duplicate_id_is_rejected() -> None:
    """A repeated id fails with 'duplicate pattern id: <id>' on the second entry."""
    entries = _entries()
    entries[3]["id"] = "daily-triage"
    with pytest.raises(ConfigError) as info:
        parse_registry(_dump(entries))
    assert str(info.value) == "patterns/registry.yaml: duplicate pattern id: daily-triage"
    assert info.value.field == "patterns[3].id"


def test_tokens_below_1000_are_rejected() -> None:
    """A cost token count under 1000 is rejected naming the cost field."""
    entries = _entries()
    entries[0]["cost"]["tokens_noop"] = 999
    assert _error(entries) == "patterns/registry.yaml: patterns[0].cost.tokens_noop invalid: 999"


@pytest.mark.parametrize("value", [1500.5, "5000", True, None])
def test_non_integer_tokens_are_rejected(value: object) -> None:
    """Cost tokens must be integers (not floats, strings or booleans)."""
    entries = _entries()
    entries[4]["cost"]["tokens_action"] = value
    assert "patterns[4].cost.tokens_action invalid" in _error(entries)


def test_non_bool_early_exit_is_rejected() -> None:
    """early_exit_required must be a real boolean."""
    entries = _entries()
    entries[2]["cost"]["early_exit_required"] = "yes"
    assert _error(entries) == "patterns/registry.yaml: patterns[2].cost.early_exit_required invalid: 'yes'"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "Daily-Triage"),
        ("id", "1triage"),
        ("week_one_mode", "L0"),
        ("token_cost", "huge"),
        ("phases", ["only-one"]),
        ("skills", []),
        ("human_gates", []),
        ("state", "state.txt"),
        ("state", "../STATE.md"),
        ("tools", []),
        ("name", "ab"),
        ("goal", "short"),
    ],
)
def test_each_r3_rule_names_the_field(field: str, value: object) -> None:
    """Every R3 rule rejects the entry with patterns[i].<field> in the message."""
    entries = _entries()
    entries[5][field] = value
    assert f"patterns[5].{field} invalid" in _error(entries)


def test_missing_required_field_is_named() -> None:
    """A missing required key is reported like the validator: 'missing required field'."""
    entries = _entries()
    del entries[6]["goal"]
    assert _error(entries) == "patterns/registry.yaml: patterns[6] missing required field: goal"


def test_stable_fraction_out_of_range_is_rejected() -> None:
    """stable_fraction is optional but must be a number in [0, 1]."""
    entries = _entries()
    entries[0]["cost"]["stable_fraction"] = 1.5
    assert "patterns[0].cost.stable_fraction invalid: 1.5" in _error(entries)


def test_missing_cost_is_none_not_an_error() -> None:
    """Without a cost block the pattern loads with cost=None (R4)."""
    entries = _entries()
    del entries[2]["cost"]
    registry = parse_registry(_dump(entries))
    assert find_pattern(registry, "daily-triage").cost is None


@pytest.mark.parametrize("cost", ["cheap", [], {"tokens_noop": 5000}])
def test_malformed_cost_is_an_error(cost: object) -> None:
    """A cost block that is present but malformed is rejected (kept apart from a missing one)."""
    entries = _entries()
    entries[2]["cost"] = cost
    assert "patterns[2].cost" in _error(entries)


def test_unknown_keys_and_tools_are_warnings() -> None:
    """Future keys and unknown tools load with warnings instead of failing (R2)."""
    entries = _entries()
    entries[0]["priority"] = 3
    entries[0]["cost"]["tokens_cached"] = 2000
    entries[1]["tools"].append("zed")
    text = "version: 2\n" + _dump(entries)
    registry = parse_registry(text)
    assert len(registry.patterns) == 8
    assert registry.warnings == (
        "unknown top-level key 'version' ignored",
        "patterns[0]: unknown key 'priority' ignored",
        "patterns[0].cost: unknown key 'tokens_cached' ignored",
        "patterns[1].tools: unknown tool 'zed'",
    )


def test_yaml_syntax_error_names_the_line() -> None:
    """A YAML syntax error is one ConfigError line naming the line number."""
    text = "patterns:\n  - id: a\n    name: [unclosed\n    goal: x\n"
    with pytest.raises(ConfigError) as info:
        parse_registry(text)
    message = str(info.value)
    assert message.startswith("patterns/registry.yaml: YAML syntax error at line ")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "patterns: []", "- a\n- b\n", "patterns: 3", "patterns:\n  - just a string\n"])
def test_wrong_shapes_are_config_errors(text: str) -> None:
    """Empty files, empty lists and non-mapping entries are ConfigErrors, not crashes."""
    with pytest.raises(ConfigError):
        parse_registry(text)


def test_pattern_doc_and_starter_need_not_exist(tmp_path: Path) -> None:
    """Adopter projects have no pattern docs or starters; the registry still loads."""
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "registry.yaml").write_text(NEWEST, encoding="utf-8")
    registry = load_registry(tmp_path)
    assert registry.source == "project"
    assert registry.path == str(tmp_path / "patterns" / "registry.yaml")
    assert len(registry.patterns) == 8


def test_load_falls_back_to_the_bundled_copy(tmp_path: Path) -> None:
    """Without patterns/registry.yaml the bundled copy (identical to the fixture) is used (R1)."""
    registry = load_registry(tmp_path)
    assert registry.source == "bundled"
    assert Path(registry.path).read_text(encoding="utf-8") == NEWEST
    assert registry.patterns == parse_registry(NEWEST).patterns


def test_project_registry_errors_name_its_path(tmp_path: Path) -> None:
    """A broken project registry is reported with its own path."""
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "registry.yaml").write_text(NEWEST.replace("cadence: 6h\n", "cadence: 6s\n"))
    with pytest.raises(ConfigError) as info:
        load_registry(tmp_path)
    assert str(info.value) == f"{tmp_path / 'patterns' / 'registry.yaml'}: patterns[0].cadence invalid: '6s'"


def test_find_pattern_is_by_id_only() -> None:
    """--pattern resolves ids; a human name is not an id: it fails, suggesting the id and listing the valid ids (R5)."""
    registry = parse_registry(NEWEST)
    assert find_pattern(registry, "ci-sweeper").name == "CI Sweeper"
    with pytest.raises(ConfigError) as info:
        find_pattern(registry, "CI Sweeper")
    message = str(info.value)
    assert message.startswith("patterns/registry.yaml: pattern invalid: 'CI Sweeper' — did you mean 'ci-sweeper'? ")
    assert "valid: issue-pr-repair, " in message
    assert info.value.valid == registry.ids()


def test_normalise_name_folds_case_and_punctuation() -> None:
    """'Daily Triage', 'daily-triage' and '**Daily triage**' fold to one key."""
    assert normalise_name("Daily Triage") == normalise_name("daily-triage") == normalise_name("**Daily triage**")
    assert normalise_name("Issue + PR Repair") == normalise_name("issue-pr-repair")


def test_name_matches_by_id_name_and_ignores_parenthetical() -> None:
    """A loop name matches its pattern by id or human name, not another pattern."""
    triage = find_pattern(parse_registry(NEWEST), "daily-triage")
    assert name_matches("Daily Triage", triage)
    assert name_matches("daily-triage", triage)
    assert name_matches("Daily Triage (L1)", triage)
    assert not name_matches("Issue Triage", triage)
    assert not name_matches("", triage)
