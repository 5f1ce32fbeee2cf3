"""Property tests: every format parser either returns a value or raises ConfigError, never anything else."""

from __future__ import annotations

import contextlib
import json
import string
from datetime import date, datetime, timedelta, UTC
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.formats.budget_table import BudgetTable, parse_budget, parse_token_amount
from loop_runtime.formats.lastrun import update_last_run
from loop_runtime.formats.loopmd import LEVEL_RE, LoopMd, parse_loop_md
from loop_runtime.formats.project_config import ProjectConfig, parse_project_config
from loop_runtime.formats.registry import CADENCE_RE, Registry, parse_registry
from loop_runtime.formats.runlog import MARKER, RunLog, RunLogEntry, append_entry, parse_run_log, tokens_on_day
from loop_runtime.formats.state import (
    add_high_priority,
    high_priority_ids,
    parse_state,
    render_state,
    replace_section_items,
    set_human_decision,
    with_last_run,
)
from loop_runtime.formats.triage import MAX_CHARS, MAX_ITEMS, parse_triage
from loop_runtime.formats.verdict import parse_verdict

FIXTURES = Path(__file__).parent / "fixtures"
REGISTRY_ENTRIES = yaml.safe_load((FIXTURES / "patterns__registry.yaml").read_text(encoding="utf-8"))["patterns"]
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# Markdown-shaped text: lines built from the fragments these formats care about, so the
# generated documents reach the interesting branches instead of being pure noise.
FRAGMENTS = [
    "# Loop State — p", "## Active Loops", "## High Priority (loop is acting or waiting on human)", "## Watch List",
    "## Recent Noise (ignored this run)", "## Daily limits", "### Daily Triage (L1 — report)", "- Cadence: 1d",
    "- Cadence: 10–15m", "| Pattern | Cadence | Status | Command |", "| Loop | Max runs/day | Max tokens/day |",
    "|---|---|---|", "| Daily Triage | 1d | L2 | x |", "| Daily Triage | 2 | 100k |", "---", "Run log: x",
    "Last run: never", "Last updated: y", "- [ ] E1 — thing", "  Loop action: a", "  Human decision: pending",
    "- [x] E2 — done", "<!--", "-->", "```", "```json", "", "   ", "\t", "- item", "1. reason", "### Reasons",
    "## Verdict: APPROVE", "## Verdict: REJECT | x", "**Verdict:** escalate", MARKER,
    '{"run_id":"2026-09-15T08:00:00Z","pattern":"daily-triage","tokens_estimate":5}', '{"decision":"act"}', "{",
]
md_lines = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=30)), max_size=30)
line_ending = st.sampled_from(["\n", "\r\n"])


@st.composite
def markdown(draw: st.DrawFn) -> str:
    lines = draw(md_lines)
    ending = draw(line_ending)
    final = draw(st.sampled_from(["", ending]))
    return ending.join(lines) + final


any_text = st.one_of(st.text(), markdown())
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


# Invariant: any text either parses to a Registry or raises ConfigError — never anything else.
@SETTINGS
@given(any_text)
def test_registry_parser_only_raises_config_error(text: str) -> None:
    """Random text: Registry or ConfigError."""
    try:
        assert isinstance(parse_registry(text), Registry)
    except ConfigError as exc:
        assert "\n" not in str(exc)


# Invariant: any YAML document (random nested data) gives a Registry or a one-line ConfigError.
@SETTINGS
@given(json_values)
def test_registry_parser_on_random_yaml_data(data: object) -> None:
    """Random YAML structures: Registry or one-line ConfigError."""
    for doc in (data, {"patterns": data}, {"patterns": [data]}):
        try:
            parse_registry(yaml.safe_dump(doc))
        except ConfigError as exc:
            assert "\n" not in str(exc)


# Invariant: replacing any one field of a valid entry with any value never crashes the parser,
# and an error always names that entry's index.
@SETTINGS
@given(st.integers(0, len(REGISTRY_ENTRIES) - 1), st.data())
def test_registry_mutated_field_is_valid_or_named(index: int, data: st.DataObject) -> None:
    """One mutated field: Registry, or a ConfigError naming patterns[index]."""
    entries = [dict(e, cost=dict(e["cost"])) for e in REGISTRY_ENTRIES]
    entry = entries[index]
    target = data.draw(st.sampled_from(sorted(entry) + [f"cost.{k}" for k in sorted(entry["cost"])]))
    value = data.draw(json_values)
    if target.startswith("cost."):
        entry["cost"][target[5:]] = value
    else:
        entry[target] = value
    try:
        registry = parse_registry(yaml.safe_dump({"patterns": entries}))
    except ConfigError as exc:
        assert f"patterns[{index}]" in str(exc) or "duplicate pattern id" in str(exc)
    else:
        assert all(CADENCE_RE.fullmatch(p.cadence) for p in registry.patterns)


# Invariant: LOOP.md parsing never fails, and every override level it reports is L0–L3
# and every cadence matches the registry regex.
@SETTINGS
@given(any_text)
def test_loop_md_never_fails(text: str) -> None:
    """Random LOOP.md: always a LoopMd with well-formed levels and cadences."""
    result = parse_loop_md(text)
    assert isinstance(result, LoopMd)
    for o in result.overrides:
        assert o.level is None or LEVEL_RE.fullmatch(o.level)
        assert o.cadence is None or CADENCE_RE.fullmatch(o.cadence)
        assert o.name


# Invariant: render(parse(t)) == t for every text.
@SETTINGS
@given(any_text)
def test_state_round_trip_is_lossless(text: str) -> None:
    """Any text round-trips through StateDoc byte for byte."""
    assert render_state(parse_state(text)) == text


# Invariant: with_last_run changes only the Last run line (or inserts it plus at most a blank line),
# and re-parsing finds the new value.
@SETTINGS
@given(markdown(), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)), st.text(max_size=20))
def test_with_last_run_touches_one_line(text: str, when: datetime, note: str) -> None:
    """Only the Last run line differs after with_last_run."""
    doc = parse_state(text)
    updated = with_last_run(doc, when, note)
    assert updated.last_run is not None and updated.last_run.startswith(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    old = [line.rstrip("\r\n") for line in doc.lines()]
    new = [line.rstrip("\r\n") for line in updated.lines()]
    removed = [line for line in old if line not in new]
    added = [line for line in new if line not in old]
    assert all(line.lower().lstrip(" *").startswith("last run") for line in removed)
    assert [line for line in added if line.strip()] == [f"Last run: {updated.last_run}"]
    assert len(added) <= 2


# Invariant: after add_high_priority the id is listed once more than before (a second escalation of
# an item is a second entry) — exactly once when it was not listed — or, when the very same entry was
# already there, as often as before; adding it again changes nothing; setting a decision keeps it listed.
@SETTINGS
@given(markdown(), st.one_of(st.sampled_from(["E1", "E2", "ID"]),
                             st.text(alphabet=string.ascii_letters + string.digits + "-#", min_size=1, max_size=10)),
       st.text(max_size=30), st.text(max_size=30))
def test_high_priority_entries_are_idempotent(text: str, item_id: str, line: str, action: str) -> None:
    """add → listed once; add again → same doc; decision → still listed, round-trips."""
    before = high_priority_ids(parse_state(text)).count(item_id)
    once = add_high_priority(parse_state(text), item_id, line, action)
    after = high_priority_ids(once).count(item_id)
    assert after == 1 if before == 0 else after in (before, before + 1)
    assert add_high_priority(once, item_id, line, action) == once
    decided = set_human_decision(once, item_id, "approved")
    assert item_id in high_priority_ids(decided)
    assert render_state(parse_state(render_state(decided))) == render_state(decided)


# Invariant: replacing a section's items twice with the same items is the same as once.
@SETTINGS
@given(markdown(), st.lists(st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=15), max_size=4))
def test_replace_section_items_is_idempotent(text: str, items: list[str]) -> None:
    """replace_section_items(replace_section_items(d)) == replace_section_items(d)."""
    once = replace_section_items(parse_state(text), "Watch List", items)
    again = replace_section_items(parse_state(render_state(once)), "Watch List", items)
    assert render_state(again) == render_state(once)


# Invariant: reading a run log never raises, and token sums are non-negative for real entries.
@SETTINGS
@given(any_text)
def test_run_log_reader_never_fails(text: str) -> None:
    """Random run-log text: always a RunLog."""
    log = parse_run_log(text)
    assert isinstance(log, RunLog) and log.format in ("json", "table", "none")
    tokens_on_day(log, "daily-triage", date(2026, 9, 15))


entries = st.builds(
    RunLogEntry,
    run_id=st.one_of(st.datetimes(min_value=datetime(2026, 8, 1), max_value=datetime(2026, 9, 30)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")), st.text(max_size=12)),
    pattern=st.text(max_size=12),
    duration_s=st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
    items_found=st.integers(0, 1000),
    actions_taken=st.integers(0, 1000),
    escalations=st.integers(0, 1000),
    tokens_estimate=st.integers(0, 10**9),
    outcome=st.sampled_from(["report-only", "fix-proposed", "escalated", "no-op"]),
    extras=st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in RunLogEntry.__dataclass_fields__),
                           json_scalars, max_size=3),
)


# Invariant: appending to any text either raises ConfigError (no marker) or yields a log whose
# last entry is the new one and whose text before the marker is unchanged.
@SETTINGS
@given(st.one_of(any_text, markdown().map(lambda t: t + "\n" + MARKER + "\n" + t)), entries)
def test_append_entry_keeps_header_and_ends_with_entry(text: str, entry: RunLogEntry) -> None:
    """append_entry: ConfigError, or header intact and the new entry last."""
    now = datetime(2026, 9, 16, tzinfo=UTC)
    try:
        out = append_entry(text, entry, now=now)
    except ConfigError:
        assert MARKER not in text
        return
    head = text[: text.index(MARKER) + len(MARKER)]
    assert out.startswith(head + "\n\n") and out.endswith("\n")
    assert out.split("\n")[-2] == entry.to_json()
    log = parse_run_log(out)
    assert log.entries[-1] == RunLogEntry.from_dict(json.loads(entry.to_json()))


# Invariant: an entry is kept by pruning exactly when its date is within 30 days of now
# (or it is not a date).
@SETTINGS
@given(st.lists(entries, max_size=8), st.integers(0, 60))
def test_pruning_window(old: list[RunLogEntry], days_later: int) -> None:
    """Kept entries are those with a non-date run_id or run_id within 30×24h of now."""
    text = MARKER + "\n" + "".join(e.to_json() + "\n" for e in old)
    now = datetime(2026, 8, 1, tzinfo=UTC) + timedelta(days=days_later)
    new = RunLogEntry("manual", "p", 0, 0, 0, 0, 0, "no-op")
    kept = parse_run_log(append_entry(text, new, now=now)).entries[:-1]
    from loop_runtime.formats.runlog import parse_run_time

    expected = [
        e.run_id for e in old
        if (t := parse_run_time(e.run_id)) is None or now - t <= timedelta(days=30)
    ]
    assert [e.run_id for e in kept] == expected


# Invariant: the budget parser returns a table or raises ConfigError.
@SETTINGS
@given(any_text)
def test_budget_parser_only_raises_config_error(text: str) -> None:
    """Random loop-budget.md: BudgetTable or ConfigError."""
    try:
        assert isinstance(parse_budget(text), BudgetTable)
    except ConfigError as exc:
        assert "\n" not in str(exc) and exc.field.startswith("Daily limits[")


# Invariant: token amounts written the way loop-init writes them parse back to the number;
# any other text is an int or a ValueError.
@SETTINGS
@given(st.integers(0, 10**12))
def test_token_amount_round_trip(n: int) -> None:
    """formatTokenCap(n) parses back to n (loop-init's k/M rendering)."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        cell = f"{n // 1_000_000}M"
    elif n >= 1_000 and n % 1_000 == 0:
        cell = f"{n // 1_000}k"
    else:
        cell = f"{n:,}"
    assert parse_token_amount(cell) == n


@SETTINGS
@given(st.text())
def test_token_amount_only_raises_value_error(text: str) -> None:
    """Random text: a non-negative int or ValueError."""
    with contextlib.suppress(ValueError):
        assert parse_token_amount(text) >= 0


# Invariant: verdict parsing never raises; without the word 'verdict' nothing is found and the
# result is REJECT; reasons respect their caps.
@SETTINGS
@given(any_text)
def test_verdict_parser_never_fails(text: str) -> None:
    """Random verifier output: a Verdict, REJECT when no verdict line."""
    verdict = parse_verdict(text)
    assert verdict.kind in ("APPROVE", "REJECT", "ESCALATE_HUMAN")
    assert len(verdict.reasons) <= 10 and all(len(r) <= 300 for r in verdict.reasons)
    if "verdict" not in text.lower():
        assert (verdict.kind, verdict.found) == ("REJECT", False)


# Invariant: triage parsing never raises and always respects its caps; an unparsed result is 'report'.
@SETTINGS
@given(st.one_of(any_text, json_values.map(json.dumps),
                 st.fixed_dictionaries({"decision": json_values, "items": json_values, "summary": json_values}).map(
                     lambda d: "prose ```json\n" + json.dumps(d) + "\n```")))
def test_triage_parser_never_fails(text: str) -> None:
    """Random agent output: a TriageDecision within caps."""
    result = parse_triage(text)
    assert result.decision in ("noop", "report", "act")
    assert result.parsed or result.decision == "report"
    assert len(result.items) <= MAX_ITEMS and len(result.summary) <= MAX_CHARS
    for item in result.items:
        assert item.id and not any(c.isspace() for c in item.id)
        assert len(item.title) <= MAX_CHARS and len(item.detail) <= MAX_CHARS


toml_keys = st.sampled_from(["backend", "model", "max_attempts", "notify", "test_timeout_s", "level", "cadence",
                             "enabled", "daily_cap", "bogus", "patterns"])
toml_values = st.sampled_from(['"mock"', '"claude"', '"L2"', '"1d"', '"15s"', "3", "0", "-1", "1.5", "true",
                               '["a"]', "[1]", '""', "{}", '{ x = 1 }'])


@st.composite
def toml_docs(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["[patterns.daily-triage]", "[patterns.X]", "[other]", "[patterns]"])))
        lines.append(f"{draw(toml_keys)} = {draw(toml_values)}")
    return "\n".join(lines)


# Invariant: any text or TOML document gives a ProjectConfig or a one-line ConfigError.
@SETTINGS
@given(st.one_of(st.text(), toml_docs()))
def test_project_config_only_raises_config_error(text: str) -> None:
    """Random loop-runtime.toml: ProjectConfig or one-line ConfigError."""
    try:
        assert isinstance(parse_project_config(text), ProjectConfig)
    except ConfigError as exc:
        assert "\n" not in str(exc)


# Invariant: the badge updater returns JSON with today's date or raises ConfigError.
@SETTINGS
@given(st.one_of(st.text(), json_values.map(json.dumps)))
def test_last_run_badge_only_raises_config_error(text: str) -> None:
    """Random badge text: updated JSON or ConfigError."""
    when = datetime(2026, 9, 16, tzinfo=UTC)
    try:
        out = update_last_run(text, when)
    except ConfigError:
        return
    assume(out is not None)
    assert json.loads(out)["message"] == "2026-09-16"
