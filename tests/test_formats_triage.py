"""Triage agent output: the decision JSON found in prose, fences or bare text."""

from __future__ import annotations

import json

import pytest

from loop_runtime.formats.triage import TriageItem, parse_triage

DECISION = {
    "decision": "act",
    "items": [{"id": "ci-1", "title": "Fix flaky test", "detail": "test_x fails on CI", "files": ["tests/test_x.py"]}],
    "summary": "one CI failure",
}


def test_fenced_json_in_prose() -> None:
    """A ```json block inside prose is found and read."""
    text = f"I looked at CI.\n\n```json\n{json.dumps(DECISION, indent=2)}\n```\n\nDone."
    result = parse_triage(text)
    assert result.parsed and result.decision == "act" and result.warnings == ()
    assert result.items == (TriageItem("ci-1", "Fix flaky test", "test_x fails on CI", ("tests/test_x.py",)),)
    assert result.summary == "one CI failure"


def test_bare_json() -> None:
    """A bare object (the whole output) is read."""
    result = parse_triage(json.dumps({"decision": "noop", "items": [], "summary": "nothing to do"}))
    assert (result.decision, result.items, result.parsed) == ("noop", (), True)


def test_inline_object_in_a_sentence() -> None:
    """An object embedded in a sentence is found."""
    result = parse_triage('Result: {"decision": "report", "summary": "2 stale PRs"} — end')
    assert (result.decision, result.summary, result.parsed) == ("report", "2 stale PRs", True)


def test_last_valid_object_wins_over_echoed_schema() -> None:
    """An echoed schema ('noop|report|act') before the real answer does not hide it."""
    text = 'Schema: {"decision": "noop|report|act", "items": []}\nAnswer: {"decision": "noop", "summary": "quiet"}'
    result = parse_triage(text)
    assert (result.decision, result.parsed) == ("noop", True)


def test_no_json_falls_back_to_report() -> None:
    """No decision object gives decision 'report', parsed=False and a warning."""
    result = parse_triage("I could not decide.")
    assert (result.decision, result.parsed, result.items) == ("report", False, ())
    assert len(result.warnings) == 1


def test_unknown_decision_falls_back_to_report() -> None:
    """An unknown decision value is 'report' with a warning naming the value."""
    result = parse_triage('{"decision": "merge-everything", "items": [{"id": "a", "title": "t"}], "summary": "s"}')
    assert (result.decision, result.parsed) == ("report", False)
    assert "merge-everything" in result.warnings[0]
    assert result.items == (TriageItem("a", "t"),)


@pytest.mark.parametrize("value", ["NOOP", " no-op ", "Report", "ACT"])
def test_decision_spelling_is_tolerated(value: str) -> None:
    """Case, surrounding spaces and 'no-op' are accepted."""
    assert parse_triage(json.dumps({"decision": value})).parsed


def test_broken_json_falls_back() -> None:
    """Malformed JSON is not a crash."""
    result = parse_triage('```json\n{"decision": "act", "items": [\n```')
    assert (result.decision, result.parsed) == ("report", False)


def test_items_and_strings_are_capped() -> None:
    """At most 50 items; strings at most 500 characters; ids become single tokens."""
    items = [{"id": f"item {i}", "title": "t" * 900, "detail": "d" * 900} for i in range(80)]
    result = parse_triage(json.dumps({"decision": "act", "items": items, "summary": "s" * 900}))
    assert len(result.items) == 50
    assert result.items[0].id == "item-0"
    assert all(len(i.title) <= 500 and len(i.detail) <= 500 for i in result.items)
    assert len(result.summary) <= 500
    assert any("80" in w for w in result.warnings)


def test_malformed_items_are_skipped_with_warnings() -> None:
    """Non-object items are dropped, missing ids get a generated id, bad files are ignored."""
    raw = {"decision": "act", "items": ["oops", {"title": "no id", "files": "src/a.py"}, {"id": 7, "files": {"x": 1}}]}
    result = parse_triage(json.dumps(raw))
    assert result.items == (TriageItem("item-2", "no id", "", ("src/a.py",)), TriageItem("7", "7"))
    assert len(result.warnings) == 3


def test_invisible_characters_are_removed() -> None:
    """Zero-width and bidi control characters cannot hide text in titles."""
    raw = {"decision": "report", "items": [{"id": "a\u200b", "title": "ok\u202eevil\u2066", "detail": "x\u0007y"}]}
    item = parse_triage(json.dumps(raw)).items[0]
    assert (item.id, item.title, item.detail) == ("a", "okevil", "xy")


def test_act_without_items_warns() -> None:
    """'act' with no items is kept but flagged."""
    result = parse_triage('{"decision": "act"}')
    assert result.decision == "act" and result.parsed and result.warnings


def test_ids_are_safe_tokens() -> None:
    """Ids keep only [A-Za-z0-9#._:/-] (they become STATE.md ids and branch names), at most 100 chars."""
    raw = {"decision": "act", "items": [{"id": "owner/repo#12 <!-- x -->"}, {"id": "a" * 300}, {"id": "  !!  "}]}
    items = parse_triage(json.dumps(raw)).items
    assert [i.id for i in items] == ["owner/repo#12-x", "a" * 100, "item-3"]
