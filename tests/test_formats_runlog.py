"""loop-run-log.md reading and appending (R22, R23) and the docs/last-run.json badge (R24)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import FrozenInstanceError, fields
from datetime import date, datetime, timedelta, timezone, UTC
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.formats.lastrun import update_last_run
from loop_runtime.formats.runlog import (
    _JS_SPACE,
    _number,
    _text,
    MARKER,
    RunLogEntry,
    append_entry,
    parse_run_log,
    parse_run_time,
    runs_on_day,
    tokens_on_day,
)

FIXTURES = Path(__file__).parent / "fixtures"
LOG = (FIXTURES / "loop-run-log.md").read_text(encoding="utf-8")
TABLE_LOG = (FIXTURES / "starters__quant-research-loop__loop-run-log.md").read_text(encoding="utf-8")
BADGE = (FIXTURES / "docs__last-run.json").read_text(encoding="utf-8")
ENTRY = RunLogEntry(
    run_id="2026-09-16T08:00:41Z", pattern="daily-triage", duration_s=12, items_found=3,
    actions_taken=1, escalations=0, tokens_estimate=48000, outcome="report-only",
)


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_fixture_log_has_22_entries() -> None:
    """The reference log parses to 22 JSON entries with their extras kept."""
    log = parse_run_log(LOG)
    assert (len(log.entries), log.has_marker, log.format, log.skipped_lines) == (22, True, "json", 0)
    first = log.entries[0]
    assert first.run_id == "2026-08-17T08:10:11Z" and first.tokens_estimate == 52000
    assert dict(first.extras) == {"readiness_score": 100, "workflow_run": "32009058989"}


def test_append_within_window_keeps_all_22_plus_new() -> None:
    """now=2026-09-16: every entry is within 30 days, so 22 + 1 lines follow the marker."""
    out = append_entry(LOG, ENTRY, now=_utc(2026, 9, 16))
    before, after = out.split(MARKER)
    assert before == LOG.split(MARKER)[0]
    lines = after.split("\n")
    assert lines[:2] == ["", ""] and lines[-1] == ""
    body = lines[2:-1]
    assert len(body) == 23
    assert body[:22] == [line for line in LOG.split(MARKER)[1].split("\n") if line.startswith("{")]
    assert body[22] == ENTRY.to_json()


def test_append_prunes_entries_older_than_30_days() -> None:
    """now=2026-09-18: the two oldest (08-17, 08-18) are dropped, the rest kept byte for byte."""
    out = append_entry(LOG, ENTRY, now=_utc(2026, 9, 18))
    log = parse_run_log(out)
    assert len(log.entries) == 21
    assert log.entries[0].run_id == "2026-08-19T08:19:20Z"
    old_lines = [line for line in LOG.split(MARKER)[1].splitlines() if line.startswith("{")]
    assert out.endswith("\n".join(old_lines[2:]) + "\n" + ENTRY.to_json() + "\n")


def test_append_matches_the_upstream_script(tmp_path: Path) -> None:
    """Our output equals scripts/append-run-log.mjs's algorithm run by node on the same input."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is required under CI=true")
        pytest.skip("node not installed")
    script = tmp_path / "append.mjs"
    script.write_text(
        "import { readFileSync } from 'node:fs';\n"
        "const MARKER = '<!-- Loop appends below this line -->';\n"
        "const MAX_AGE_MS = 30 * 24 * 60 * 60 * 1000;\n"
        "const [, , logPath, entryJson, nowIso] = process.argv;\n"
        "const content = readFileSync(logPath, 'utf8');\n"
        "const at = content.indexOf(MARKER);\n"
        "const before = content.slice(0, at + MARKER.length);\n"
        "const after = content.slice(at + MARKER.length);\n"
        "const now = new Date(nowIso).getTime();\n"
        "const kept = [];\n"
        "for (const line of after.split('\\n')) { const t = line.trim(); if (!t.startsWith('{')) continue;\n"
        "  try { const o = JSON.parse(t); const d = new Date(o.run_id).getTime();\n"
        "    if (!Number.isNaN(d) && now - d <= MAX_AGE_MS) kept.push(t); } catch {} }\n"
        "kept.push(JSON.stringify(JSON.parse(entryJson)));\n"
        "process.stdout.write(`${before}\\n\\n${kept.join('\\n')}\\n`);\n",
        encoding="utf-8",
    )
    log_path = tmp_path / "loop-run-log.md"
    log_path.write_text(LOG, encoding="utf-8")
    for now in ("2026-09-16T00:00:00Z", "2026-09-18T00:00:00Z", "2026-10-20T00:00:00Z"):
        expected = subprocess.run(
            [node, str(script), str(log_path), ENTRY.to_json(), now], capture_output=True, text=True, check=True,
        ).stdout
        ours = append_entry(LOG, ENTRY, now=datetime.fromisoformat(now.replace("Z", "+00:00")))
        assert ours == expected


def test_non_date_run_ids_are_kept() -> None:
    """Entries whose run_id is not a date survive pruning (fix for upstream #610); malformed lines go."""
    text = (
        f"# Log\n\n{MARKER}\n\n"
        '{"run_id":"manual-7","pattern":"daily-triage","tokens_estimate":1}\n'
        '{"run_id":"2020-01-01T00:00:00Z","pattern":"daily-triage"}\n'
        "{not json\n"
        '  {"pattern":"no-id"}  \n'
    )
    out = append_entry(text, ENTRY, now=_utc(2026, 9, 16))
    assert out == (
        f"# Log\n\n{MARKER}\n\n"
        '{"run_id":"manual-7","pattern":"daily-triage","tokens_estimate":1}\n'
        '{"pattern":"no-id"}\n'
        f"{ENTRY.to_json()}\n"
    )


def test_missing_file_creates_the_template() -> None:
    """With no log the ecosystem template (H1, Format example, Recent Runs, marker) is created."""
    out = append_entry(None, ENTRY, now=_utc(2026, 9, 16), project="demo")
    assert out.startswith("# Loop Run Log — demo\n\nAppend one entry per run. Prune entries older than 30 days.\n")
    assert "## Format\n\n```json\n{\n  \"run_id\": \"2026-06-09T08:15:00Z\"," in out
    assert out.endswith(f"## Recent Runs\n\n{MARKER}\n\n{ENTRY.to_json()}\n")
    assert parse_run_log(out).entries == (ENTRY,)


def test_log_without_marker_is_refused() -> None:
    """An existing log without the marker is a ConfigError naming the marker, never rewritten."""
    with pytest.raises(ConfigError) as info:
        append_entry(TABLE_LOG, ENTRY, now=_utc(2026, 9, 16))
    assert info.value.field == "marker"
    message = str(info.value)
    assert message.startswith("loop-run-log.md: marker line '<!-- Loop appends below this line -->' not found")
    assert "\n" not in message


def test_non_canonical_outcome_is_not_written() -> None:
    """Only report-only|fix-proposed|escalated|no-op are written (any outcome is read)."""
    bad = RunLogEntry("2026-09-16T00:00:00Z", "daily-triage", 1, 0, 0, 0, 0, "success")
    with pytest.raises(ValueError):
        append_entry(None, bad, now=_utc(2026, 9, 16))


def test_to_json_is_compact_with_canonical_order_then_extras() -> None:
    """to_json puts the 8 canonical fields first, extras after, compactly like JSON.stringify."""
    extras = {"worktree": "loop/r1", "é": "ü"}
    entry = RunLogEntry("r1", "ci-sweeper", 4.0, 1, 2, 3, 4000, "fix-proposed", extras=extras)
    assert entry.to_json() == (
        '{"run_id":"r1","pattern":"ci-sweeper","duration_s":4,"items_found":1,"actions_taken":2,'
        '"escalations":3,"tokens_estimate":4000,"outcome":"fix-proposed","worktree":"loop/r1","é":"ü"}'
    )
    assert RunLogEntry.from_dict(json.loads(entry.to_json())) == entry


def test_from_dict_is_tolerant() -> None:
    """Missing or non-numeric counts read as 0 and any outcome is accepted."""
    entry = RunLogEntry.from_dict({"run_id": "x", "outcome": "success", "tokens_estimate": "lots", "items_found": 2.9})
    assert (entry.pattern, entry.tokens_estimate, entry.items_found, entry.outcome) == ("", 0, 2, "success")
    assert entry.duration_s == 0 and entry.escalations == 0


def test_table_log_reads_as_table_with_no_entries() -> None:
    """The quant starter's Markdown table log: format 'table', no entries, no crash (R23)."""
    log = parse_run_log(TABLE_LOG)
    assert (log.entries, log.has_marker, log.format) == ((), False, "table")
    assert tokens_on_day(log, "daily-triage", date(2026, 5, 23)) == 0


def test_malformed_lines_are_counted_not_fatal() -> None:
    """Garbage after the marker is skipped and counted."""
    good = '{"run_id":"2026-09-15T01:00:00Z","pattern":"p","tokens_estimate":5}'
    text = f"{MARKER}\n{good}\n{{oops\n[1,2]\ntext\n"
    log = parse_run_log(text)
    assert len(log.entries) == 1 and log.skipped_lines == 3


def test_json_lines_without_marker_are_still_read() -> None:
    """A log whose marker was deleted still yields its JSON lines (but is refused for appending)."""
    text = '# Log\n\n```json\n{\n  "run_id": "example"\n}\n```\n{"run_id":"2026-09-15T01:00:00Z","pattern":"p"}\n'
    log = parse_run_log(text)
    assert (len(log.entries), log.has_marker, log.format, log.skipped_lines) == (1, False, "json", 0)


def test_empty_text_is_format_none() -> None:
    """An empty file is format 'none'."""
    assert parse_run_log("").format == "none"


def test_tokens_and_runs_on_day_use_utc_dates() -> None:
    """Spend for a day sums tokens_estimate of that pattern's runs whose run_id falls on that UTC day."""
    text = (
        f"{MARKER}\n"
        '{"run_id":"2026-09-15T23:30:00Z","pattern":"ci-sweeper","tokens_estimate":1000}\n'
        '{"run_id":"2026-09-16T01:30:00+02:00","pattern":"ci-sweeper","tokens_estimate":2000}\n'
        '{"run_id":"2026-09-16T00:10:00Z","pattern":"ci-sweeper","tokens_estimate":4000}\n'
        '{"run_id":"2026-09-16T00:20:00Z","pattern":"daily-triage","tokens_estimate":8000}\n'
        '{"run_id":"not-a-date","pattern":"ci-sweeper","tokens_estimate":16000}\n'
    )
    log = parse_run_log(text)
    assert tokens_on_day(log, "ci-sweeper", date(2026, 9, 15)) == 3000
    assert tokens_on_day(log, "ci-sweeper", date(2026, 9, 16)) == 4000
    assert runs_on_day(log, "ci-sweeper", date(2026, 9, 15)) == 2
    assert runs_on_day(log, "daily-triage", date(2026, 9, 16)) == 1
    assert tokens_on_day(parse_run_log(LOG), "daily-triage", date(2026, 9, 15)) == 52000


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("2026-09-15T08:00:39Z", _utc(2026, 9, 15, 8, 0, 39)),
        ("2026-09-15T08:00:39.250Z", datetime(2026, 9, 15, 8, 0, 39, 250000, tzinfo=UTC)),
        ("2026-09-15", _utc(2026, 9, 15)),
        ("2026-09-15T10:00:00+02:00", _utc(2026, 9, 15, 8)),
        ("2026-09-15T08:00", _utc(2026, 9, 15, 8)),
        ("2026-02-30T00:00:00Z", None),
        ("run-42", None),
        (12345, None),
        (None, None),
    ],
)
def test_parse_run_time(run_id: object, expected: datetime | None) -> None:
    """ISO-8601 run ids map to UTC datetimes; anything else is not a date."""
    assert parse_run_time(run_id) == expected


def test_last_run_badge_updates_only_the_date() -> None:
    """The badge keeps label, colour and 2-space style; only message changes (R24)."""
    out = update_last_run(BADGE, _utc(2026, 9, 16, 23, 59))
    assert out == BADGE.replace("2026-09-15", "2026-09-16")
    assert json.loads(out) == {"schemaVersion": 1, "label": "last triage", "message": "2026-09-16", "color": "3ee8c5"}


def test_last_run_badge_absent_is_not_created() -> None:
    """No badge file, no badge: None means 'do not write'."""
    assert update_last_run(None, _utc(2026, 9, 16)) is None


def test_last_run_badge_keeps_custom_style() -> None:
    """A compact badge with a custom label stays compact and keeps the label; the date is UTC."""
    compact = '{"schemaVersion":1,"label":"loop","message":"old","color":"blue","style":"flat"}'
    berlin = datetime(2026, 9, 17, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    out = update_last_run(compact, berlin)
    assert out == '{"schemaVersion":1,"label":"loop","message":"2026-09-16","color":"blue","style":"flat"}'


def test_last_run_badge_malformed_is_a_config_error() -> None:
    """A corrupt badge file is reported, not silently replaced."""
    with pytest.raises(ConfigError):
        update_last_run("{oops", _utc(2026, 9, 16))
    with pytest.raises(ConfigError):
        update_last_run("[1]", _utc(2026, 9, 16))


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
                          st.text(max_size=8))
_RUN_IDS = st.one_of(st.text(max_size=12), st.datetimes(min_value=datetime(2026, 9, 1), max_value=datetime(2026, 9, 4),
                                                         timezones=st.just(UTC)).map(lambda d: d.isoformat()))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["run_id", "pattern", "duration_s", "items_found", "actions_taken",
                                         "escalations", "tokens_estimate", "outcome", "note", "x"]), _JSON_SCALARS))
def test_from_dict_builds_the_same_frozen_value_as_the_constructor(raw: dict[str, object]) -> None:
    """from_dict fills the entry in directly (speed); it must be the very value the constructor builds:
    equal, same hash, same repr, and as frozen."""
    entry = RunLogEntry.from_dict(raw)
    built = RunLogEntry(**{f.name: getattr(entry, f.name) for f in fields(RunLogEntry)})
    assert entry == built and hash(entry) == hash(built) and repr(entry) == repr(built)
    # the common shapes' shortcut reads what the tolerant readers read, type for type
    tolerant = (_text(raw.get("run_id")), _text(raw.get("pattern")), _number(raw.get("duration_s")),
                *(int(_number(raw.get(k))) for k in ("items_found", "actions_taken", "escalations", "tokens_estimate")),
                _text(raw.get("outcome")))
    got = (entry.run_id, entry.pattern, entry.duration_s, entry.items_found, entry.actions_taken, entry.escalations,
           entry.tokens_estimate, entry.outcome)
    assert got == tolerant and [type(v) for v in got] == [type(v) for v in tolerant]
    with pytest.raises(FrozenInstanceError):
        entry.tokens_estimate = 1  # type: ignore[misc]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", ""]), _RUN_IDS, st.integers(0, 1000)), max_size=30))
def test_entries_by_day_are_what_a_scan_of_the_log_finds(rows: list[tuple[str, str, int]]) -> None:
    """``by_day`` (one pass, kept) answers exactly what scanning every entry would, in log order."""
    lines = [json.dumps({"run_id": run_id, "pattern": p, "tokens_estimate": t}) for p, run_id, t in rows]
    log = parse_run_log(MARKER + "\n" + "\n".join(lines) + "\n")
    for pattern in ("a", "b", ""):
        for day in (date(2026, 9, d) for d in range(1, 6)):
            scan = [e for e in log.entries
                    if e.pattern == pattern and (w := parse_run_time(e.run_id)) is not None and w.date() == day]
            assert list(log.by_day.get((pattern, day), ())) == scan
            assert tokens_on_day(log, pattern, day) == sum(e.tokens_estimate for e in scan)


def _reference_object(line: str) -> object:
    """What one run-log line holds, read the plain way: ``json.loads`` of the whole line (NaN refused)."""
    def refuse(name: str) -> object:
        raise ValueError(name)
    try:
        obj = json.loads(line, parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


_LINE_BITS = st.sampled_from(['{"run_id":"2026-09-15T01:00:00Z","pattern":"p"}', "{}", '{"a":[1,', "2]}", "[1]", "x",
                              " ", "\t", "\u00a0", "\ufeff", ",", '{"n":NaN}', '"s"', "}", "{", '{"k":1} {"k":2}', "1e999"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE_BITS, min_size=1, max_size=4).map("".join))
def test_each_line_reads_as_json_loads_of_the_trimmed_line_would(line: str) -> None:
    """The log reader's fast per-line decode finds exactly the objects ``json.loads`` finds, line by line."""
    log = parse_run_log(f"{MARKER}\n{line}\n")
    trimmed = line.strip(_JS_SPACE)
    expected = _reference_object(trimmed) if trimmed and not trimmed.startswith("\ufeff") else None
    if expected is None:
        assert log.entries == () and log.skipped_lines == (1 if trimmed else 0)
    else:
        assert log.entries == (RunLogEntry.from_dict(expected),) and log.skipped_lines == 0
