"""STATE.md and pattern state files: lossless round trip and targeted edits (R20, R21)."""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta, timezone, UTC
from pathlib import Path

import pytest

from loop_runtime.formats.state import (
    CANONICAL_SECTIONS,
    HIGH_PRIORITY,
    add_high_priority,
    append_section_line,
    ensure_canonical_sections,
    high_priority_ids,
    new_state_text,
    parse_state,
    render_state,
    replace_section_items,
    set_human_decision,
    with_last_run,
)

FIXTURES = Path(__file__).parent / "fixtures"
STATE_FIXTURES = [
    "STATE.md",
    "starters__changelog-drafter__changelog-drafter-state.md.example",
    "starters__issue-pr-repair__repair-loop-state.md.example",
    "starters__quant-research-loop__STATE.md",
]
WHEN = datetime(2026, 9, 16, 8, 0, 39, tzinfo=UTC)


def _read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.parametrize("name", STATE_FIXTURES)
def test_fixtures_round_trip_byte_for_byte(name: str) -> None:
    """parse then render reproduces every fixture exactly."""
    text = _read(name)
    assert render_state(parse_state(text)) == text


def test_reference_state_structure() -> None:
    """The live STATE.md splits into H1 preamble, the three canonical sections and the footer."""
    doc = parse_state(_read("STATE.md"))
    assert doc.preamble[0] == "# Loop State — loop-engineering reference\n"
    assert doc.titles() == list(CANONICAL_SECTIONS)
    assert doc.footer[0] == "---\n" and doc.footer[1].startswith("Run log: Updated by")
    assert doc.last_run == "2026-09-15T08:00:39Z (automated daily-triage workflow)"


def test_with_last_run_changes_only_that_line() -> None:
    """Setting Last run on the live STATE.md differs from the original on that one line (R20)."""
    text = _read("STATE.md")
    updated = render_state(with_last_run(parse_state(text), WHEN, "loop-runtime daily-triage"))
    assert _changed_lines(text, updated) == [
        "-Last run: 2026-09-15T08:00:39Z (automated daily-triage workflow)",
        "+Last run: 2026-09-16T08:00:39Z (loop-runtime daily-triage)",
    ]


def test_with_last_run_converts_to_utc() -> None:
    """Last run is always written in UTC with a Z suffix; naive times count as UTC."""
    doc = parse_state(new_state_text("p"))
    eastern = datetime(2026, 9, 16, 4, 0, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert with_last_run(doc, eastern, "n").last_run == "2026-09-16T08:00:00Z (n)"
    assert with_last_run(doc, datetime(2026, 1, 2, 3, 4, 5), "").last_run == "2026-01-02T03:04:05Z"


def test_with_last_run_replaces_never_in_repair_state() -> None:
    """'Last run: never' in the repair state is replaced in place."""
    text = _read("starters__issue-pr-repair__repair-loop-state.md.example")
    updated = render_state(with_last_run(parse_state(text), WHEN, "tick"))
    assert _changed_lines(text, updated) == ["-Last run: never", "+Last run: 2026-09-16T08:00:39Z (tick)"]


def test_last_updated_is_kept_and_last_run_added_after_it() -> None:
    """The quant starter's 'Last updated:' stays; a Last run line is inserted right after it."""
    text = _read("starters__quant-research-loop__STATE.md")
    updated = render_state(with_last_run(parse_state(text), WHEN, "tick"))
    assert _changed_lines(text, updated) == ["+Last run: 2026-09-16T08:00:39Z (tick)"]
    lines = updated.splitlines()
    assert lines[lines.index("Last run: 2026-09-16T08:00:39Z (tick)") - 1].startswith("Last updated:")


def test_last_run_added_after_h1_when_missing() -> None:
    """A file with no Last run line gets one after the H1, separated by blank lines."""
    updated = render_state(with_last_run(parse_state("# State\n\n## Watch List\n"), WHEN, "n"))
    assert updated == "# State\n\nLast run: 2026-09-16T08:00:39Z (n)\n\n## Watch List\n"


def test_note_is_kept_on_one_line() -> None:
    """A multi-line note cannot break the Last run line."""
    doc = with_last_run(parse_state(new_state_text("p")), WHEN, "a\nb\r\n  c")
    assert doc.last_run == "2026-09-16T08:00:39Z (a b c)"


def test_crlf_files_keep_crlf() -> None:
    """A CRLF file round-trips and new lines use CRLF too."""
    text = new_state_text("p").replace("\n", "\r\n")
    doc = parse_state(text)
    assert render_state(doc) == text
    out = render_state(add_high_priority(with_last_run(doc, WHEN, "n"), "E1", "x", "y"))
    assert "\n" not in out.replace("\r\n", "")


def test_ensure_canonical_sections_on_the_quant_starter() -> None:
    """Lenient titles count ('High priority (...)', 'Watch list'); only Recent Noise is added, before the footer."""
    text = _read("starters__quant-research-loop__STATE.md")
    doc = ensure_canonical_sections(parse_state(text))
    assert doc.titles() == [
        "Active loops", "High priority (loop acting / waiting on human)", "Watch list", "Recent",
        "Recent Noise (ignored this run)",
    ]
    out = render_state(doc)
    assert out.endswith("\n## Recent Noise (ignored this run)\n\n---\nRun log: `quant-forward-log.md` + "
                        "`loop-run-log.md` · budget: `loop-budget.md` · gates: `LOOP.md`\n")
    assert _changed_lines(text, out) == ["+## Recent Noise (ignored this run)", "+"]


def test_ensure_canonical_sections_adds_all_three_in_order() -> None:
    """A state file with only custom sections gets the three canonical ones appended in order."""
    text = _read("starters__changelog-drafter__changelog-drafter-state.md.example")
    doc = ensure_canonical_sections(parse_state(text))
    assert doc.titles()[-3:] == list(CANONICAL_SECTIONS)
    assert render_state(doc).startswith(text)
    assert ensure_canonical_sections(doc) == doc


def test_canonical_sections_already_present_is_a_no_op() -> None:
    """The live STATE.md already has all three; nothing changes."""
    doc = parse_state(_read("STATE.md"))
    assert ensure_canonical_sections(doc) == doc


def test_add_high_priority_appends_an_entry() -> None:
    """An escalation appends '- [ ] ID — line' with Loop action and Human decision lines."""
    doc = add_high_priority(parse_state(new_state_text("demo")), "esc-1", "fix CI", "proposed patch")
    assert render_state(doc) == (
        "# Loop State — demo\n\nLast run: never\n\n## High Priority (loop is acting or waiting on human)\n\n"
        "- [ ] esc-1 — fix CI\n  Loop action: proposed patch\n  Human decision: pending\n\n"
        "## Watch List\n\n## Recent Noise (ignored this run)\n\n---\nRun log: see loop-run-log.md\n"
    )
    assert high_priority_ids(doc) == ["esc-1"]


def test_a_second_escalation_of_the_same_item_is_a_second_entry() -> None:
    """Each escalation is its own entry (a human decides each); re-recording the very same one changes nothing."""
    doc = parse_state(_read("STATE.md"))
    once = add_high_priority(doc, "esc-1", "first", "a")
    twice = add_high_priority(add_high_priority(once, "esc-1", "updated", "c", "waiting"), "esc-2", "second", "b")
    assert high_priority_ids(twice) == ["esc-1", "esc-1", "esc-2"]
    out = render_state(twice)
    assert "- [ ] esc-1 — first\n  Loop action: a\n  Human decision: pending\n" in out
    assert "- [ ] esc-1 — updated\n  Loop action: c\n  Human decision: waiting\n" in out
    assert add_high_priority(twice, "esc-1", "updated", "c", "waiting") == twice


def test_a_decision_lands_on_its_own_escalations_entry() -> None:
    """With two entries for one item, `ref` (the escalation id) picks the entry; without it, the first open one."""
    doc = parse_state(_read("STATE.md"))
    doc = add_high_priority(doc, "CI-7", "flaky build", "escalated (max-attempts) [esc-aaaa]")
    doc = add_high_priority(doc, "CI-7", "flaky build", "escalated (breaker:stagnation) [esc-bbbb]")
    second = render_state(set_human_decision(doc, "CI-7", "approved by ann", ref="esc-bbbb"))
    assert "[esc-aaaa]\n  Human decision: pending" in second
    assert "- [x] CI-7 — flaky build\n  Loop action: escalated (breaker:stagnation) [esc-bbbb]\n  Human decision: approved by ann" in second
    first_open = set_human_decision(parse_state(second), "CI-7", "rejected")
    assert "[esc-aaaa]\n  Human decision: rejected" in render_state(first_open)


def test_add_high_priority_keeps_existing_live_entries() -> None:
    """The live file's link-style entries stay; the new entry follows them."""
    text = _read("STATE.md")
    out = render_state(add_high_priority(parse_state(text), "esc-9", "x", "y"))
    assert _changed_lines(text, out) == ["+- [ ] esc-9 — x", "+  Loop action: y", "+  Human decision: pending"]


def test_add_high_priority_creates_the_section_before_watch_list() -> None:
    """Without a High Priority section one is created ahead of Watch List."""
    doc = parse_state("# S\n\n## Watch List\n\n- w\n")
    doc = add_high_priority(doc, "E1", "x", "y")
    assert doc.titles() == [HIGH_PRIORITY, "Watch List"]
    assert render_state(doc) == (
        "# S\n\n## High Priority (loop is acting or waiting on human)\n\n- [ ] E1 — x\n  Loop action: y\n"
        "  Human decision: pending\n\n## Watch List\n\n- w\n"
    )


def test_template_comment_is_not_an_entry() -> None:
    """The template's commented format example ('- [ ] ID — ...') is neither listed nor replaced."""
    text = (
        "# Loop State — P\n\nLast run: (set by loop on each run)\n\n"
        "## High Priority (loop is acting or waiting on human)\n\n<!-- Format:\n- [ ] ID — one-line description\n"
        "  Loop action: what the loop did last\n  Human decision: (if any)\n-->\n\n## Watch List\n"
    )
    doc = parse_state(text)
    assert high_priority_ids(doc) == []
    doc = add_high_priority(doc, "ID", "real", "act")
    assert high_priority_ids(doc) == ["ID"]
    assert "- [ ] ID — one-line description" in render_state(doc)


def test_entry_moved_by_a_human_is_left_alone() -> None:
    """An entry a human moved to Watch List stays there; re-escalating adds a High Priority entry."""
    doc = parse_state(new_state_text("p"))
    doc = replace_section_items(doc, "Watch List", ["- [ ] E1 — parked by a human"])
    doc = add_high_priority(doc, "E1", "again", "retried")
    assert high_priority_ids(doc) == ["E1"]
    assert "## Watch List\n\n- [ ] E1 — parked by a human\n" in render_state(doc)


def test_set_human_decision_finds_moved_entries() -> None:
    """A decision is recorded even when the entry now lives in another section."""
    doc = parse_state("## Watch List\n\n- [ ] E3 — moved\n  Human decision: pending\n")
    assert render_state(set_human_decision(doc, "E3", "done")) == (
        "## Watch List\n\n- [x] E3 — moved\n  Human decision: done\n"
    )


def test_add_high_priority_rejects_ids_with_spaces() -> None:
    """Entry ids are single tokens so they can be found again."""
    with pytest.raises(ValueError):
        add_high_priority(parse_state(""), "two words", "x", "y")


def test_set_human_decision_ticks_and_rewrites() -> None:
    """Recording a decision rewrites the Human decision line and ticks the box."""
    doc = add_high_priority(parse_state(new_state_text("p")), "esc-1", "x", "y")
    doc = set_human_decision(doc, "esc-1", "approved by @maria")
    out = render_state(doc)
    assert "- [x] esc-1 — x\n  Loop action: y\n  Human decision: approved by @maria\n" in out
    assert high_priority_ids(doc) == ["esc-1"]


def test_set_human_decision_unresolved_keeps_box_open() -> None:
    """resolved=False records the decision but leaves the box unticked."""
    doc = add_high_priority(parse_state(new_state_text("p")), "esc-1", "x", "y")
    out = render_state(set_human_decision(doc, "esc-1", "need more info", resolved=False))
    assert "- [ ] esc-1 — x\n  Loop action: y\n  Human decision: need more info\n" in out


def test_set_human_decision_adds_missing_line() -> None:
    """A hand-written entry without a Human decision line gets one."""
    doc = parse_state("## High Priority\n\n- [ ] E7 — hand written\n  Loop action: none\n\n## Watch List\n")
    out = render_state(set_human_decision(doc, "E7", "rejected"))
    assert out == (
        "## High Priority\n\n- [x] E7 — hand written\n  Loop action: none\n  Human decision: rejected\n\n"
        "## Watch List\n"
    )


def test_set_human_decision_on_unknown_id_changes_nothing() -> None:
    """A human may have deleted the entry; then the document comes back unchanged."""
    doc = parse_state(_read("STATE.md"))
    assert set_human_decision(doc, "missing", "x") == doc


def test_replace_section_items_keeps_prose() -> None:
    """Watch List items are replaced each run; prose in the section stays."""
    doc = parse_state(
        "## Watch List\n\nSome prose.\n\n- old 1\n  continued\n- old 2\n\nTrailing note.\n\n---\nRun log: x\n"
    )
    out = render_state(replace_section_items(doc, "Watch List", ["- new 1", "new 2"]))
    assert out == "## Watch List\n\nSome prose.\n\n- new 1\n- new 2\n\nTrailing note.\n\n---\nRun log: x\n"


def test_replace_section_items_on_live_state() -> None:
    """Replacing the live Watch List and Recent Noise leaves other sections byte-identical."""
    text = _read("STATE.md")
    doc = replace_section_items(parse_state(text), "Watch List", ["- [#1] one"])
    doc = replace_section_items(doc, "Recent Noise", [])
    out = render_state(doc)
    assert out.split("## Watch List")[0] == text.split("## Watch List")[0]
    assert "## Watch List\n\n- [#1] one\n\n## Recent Noise (ignored this run)\n\n---\nRun log:" in out
    again = render_state(replace_section_items(parse_state(out), "Watch List", ["- [#1] one"]))
    assert again == out


def test_replace_section_items_ignores_commented_template_bullets() -> None:
    """Bullets inside an HTML comment are template text, not items."""
    doc = parse_state("## Watch List\n\n<!-- - example -->\n\n## Recent Noise\n")
    out = render_state(replace_section_items(doc, "Watch List", ["- a"]))
    assert out == "## Watch List\n\n<!-- - example -->\n- a\n\n## Recent Noise\n"


def test_replace_section_items_creates_missing_section() -> None:
    """A missing section is created at the end, before the footer, with the canonical title."""
    doc = parse_state("# S\n\n---\nRun log: x\n")
    out = render_state(replace_section_items(doc, "Recent Noise", ["- n"]))
    assert out == "# S\n\n## Recent Noise (ignored this run)\n\n- n\n\n---\nRun log: x\n"


def test_append_section_line_appends_and_creates() -> None:
    """append_section_line adds one line to an existing section, or creates it before the footer."""
    doc = parse_state(new_state_text("p"))
    doc = append_section_line(doc, "Watch List", "- one")
    doc = append_section_line(doc, "Watch List", "- two")
    doc = append_section_line(doc, "Human Inbox (ambiguous / cross-loop)", "- three")
    out = render_state(doc)
    assert "## Watch List\n\n- one\n- two\n\n## Recent Noise" in out
    assert out.endswith("## Human Inbox (ambiguous / cross-loop)\n\n- three\n\n---\nRun log: see loop-run-log.md\n")


def test_unknown_sections_and_subheadings_untouched() -> None:
    """Edits to High Priority leave the changelog state's custom sections byte-identical."""
    text = _read("starters__changelog-drafter__changelog-drafter-state.md.example")
    doc = ensure_canonical_sections(parse_state(text))
    doc = add_high_priority(doc, "rel-1", "breaking change needs review", "drafted notes")
    out = render_state(doc)
    assert out.startswith(text.rstrip("\n"))


def test_new_state_text_shape() -> None:
    """The template has H1, 'Last run: never', the three canonical sections and the footer."""
    text = new_state_text("My Project")
    assert text == (
        "# Loop State — My Project\n\nLast run: never\n\n## High Priority (loop is acting or waiting on human)\n\n"
        "## Watch List\n\n## Recent Noise (ignored this run)\n\n---\nRun log: see loop-run-log.md\n"
    )
    doc = parse_state(text)
    assert doc.titles() == list(CANONICAL_SECTIONS)
    assert doc.footer == ("---\n", "Run log: see loop-run-log.md\n")
    assert doc.last_run == "never"


def test_rule_inside_a_section_is_not_the_footer() -> None:
    """A '---' rule followed by more items stays in its section; only a trailing rule is the footer."""
    doc = parse_state("## Watch List\n\n- a\n\n---\n\n- b\n")
    assert doc.footer == ()
    assert doc.sections[0].body[-1] == "- b\n"


def test_headings_inside_code_fences_are_not_sections() -> None:
    """A '## ' line inside a fenced block does not start a section."""
    doc = parse_state("## Notes\n\n```\n## not a heading\n```\n")
    assert doc.titles() == ["Notes"]
