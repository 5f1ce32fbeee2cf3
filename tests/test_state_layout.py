"""State files keep each pattern's own shape, record every escalation, and keep the user's umask."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.formats.state import parse_state, render_state
from loop_runtime.formats.state_layout import (
    LAYOUTS,
    TRIAGE,
    drop_placeholders,
    layout_for,
    new_layout_text,
    write_escalation,
    write_report,
)
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
ITEMS = ["- `#12` — Flaky test in the checkout suite", "- `#15` — Docs link to the old API"]


def _starter(name: str) -> str:
    return (FIXTURES / f"loop-init-starters__{name}").read_text()


def _section(text: str, title: str) -> str:
    body = text.split(f"## {title}", 1)[1]
    return re.split(r"^## |^---$", body, maxsplit=1, flags=re.M)[0]


# ---------------------------------------------------------------------------- pure layouts


@pytest.mark.parametrize(("pattern", "starter"), [
    ("ci-sweeper", "ci-sweeper-state.md.example"), ("pr-babysitter", "pr-babysitter-state.md.example"),
    ("dependency-sweeper", "dependency-sweeper-state.md.example"),
    ("post-merge-cleanup", "post-merge-state.md.example"), ("issue-triage", "issue-triage-state.md.example"),
])
def test_a_fresh_file_has_the_starters_sections_in_order(pattern: str, starter: str) -> None:
    ours = parse_state(new_layout_text(LAYOUTS[pattern], "acme")).titles()
    assert ours == parse_state(_starter(starter)).titles()


def test_ci_sweeper_report_fills_active_failures_not_a_foreign_watch_list() -> None:
    layout = layout_for("ci-sweeper", "ci-sweeper-state.md")
    out = render_state(write_report(parse_state(_starter("ci-sweeper-state.md.example")), layout, ITEMS))
    assert "Flaky test in the checkout suite" in _section(out, "Active Failures")
    assert "## Watch List" not in out and "## High Priority" not in out
    assert out.endswith("---\nRun log: —")


def test_placeholders_give_way_and_human_sections_are_untouched() -> None:
    text = _starter("dependency-sweeper-state.md.example")
    layout = layout_for("dependency-sweeper", "dependency-sweeper-state.md")
    out = render_state(write_report(parse_state(text), layout, ITEMS))
    inflight = _section(out, "In-flight / recent")
    assert "first run will populate" not in inflight and "Docs link to the old API" in inflight
    assert "<!-- Example entries the loop will maintain -->" in inflight  # the starter's comment stays
    assert _section(out, "Human decisions & denylist (edit these)") == _section(
        text, "Human decisions & denylist (edit these)")


def test_pr_babysitter_escalation_goes_to_escalated_and_the_example_comment_stays() -> None:
    text = _starter("pr-babysitter-state.md.example")
    layout = layout_for("pr-babysitter", "pr-babysitter-state.md")
    out = render_state(write_escalation(parse_state(text), layout, "#1234", "CI red on feature-x", "escalated"))
    assert "- [ ] #1234 — CI red on feature-x" in _section(out, "Escalated (human required)")
    assert "<!-- - #1234 (branch-name)" in _section(out, "Watched PRs")


def test_issue_pr_repair_replaces_none_with_the_escalation(tmp_path: Path) -> None:
    text = (FIXTURES / "starters__issue-pr-repair__repair-loop-state.md.example").read_text()
    out = render_state(write_escalation(parse_state(text), LAYOUTS["issue-pr-repair"], "PR-9", "needs review", "x"))
    human = _section(out, "Human required")
    assert "None." not in human and "- [ ] PR-9 — needs review" in human
    assert "None." in _section(out, "Recent handoffs")


def test_a_report_keeps_escalation_entries_in_a_shared_section() -> None:
    """ci-sweeper reports and escalates into Active Failures: a later report must not wipe an open escalation."""
    layout = LAYOUTS["ci-sweeper"]
    doc = write_escalation(parse_state(_starter("ci-sweeper-state.md.example")), layout, "CI-1", "red", "escalated")
    out = render_state(write_report(doc, layout, ITEMS))
    active = _section(out, "Active Failures")
    assert "- [ ] CI-1 — red\n  Loop action: escalated\n  Human decision: pending" in active
    assert "Docs link to the old API" in active


def test_two_escalations_of_one_item_stay_two_entries() -> None:
    layout = LAYOUTS["ci-sweeper"]
    doc = parse_state(_starter("ci-sweeper-state.md.example"))
    doc = write_escalation(doc, layout, "CI-1", "red", "escalated (max-attempts) [esc-1]")
    doc = write_escalation(doc, layout, "CI-1", "red", "escalated (breaker:stagnation) [esc-2]")
    active = _section(render_state(doc), "Active Failures")
    assert active.count("- [ ] CI-1 — red") == 2 and "[esc-1]" in active and "[esc-2]" in active


def test_unknown_patterns_and_state_md_use_the_triage_layout() -> None:
    assert layout_for("my-own-loop", "my-state.md") is TRIAGE
    assert layout_for("ci-sweeper", "STATE.md") is TRIAGE


@given(st.sampled_from(sorted(LAYOUTS)), st.text(max_size=300),
       st.lists(st.text(alphabet="abc xyz-#", min_size=1, max_size=20), max_size=4))
def test_writes_never_lose_lines_outside_the_written_section(pattern: str, text: str, items: list[str]) -> None:
    layout = LAYOUTS[pattern]
    before = parse_state(text)
    after = write_report(before, layout, [f"- {i}" for i in items])
    for section in before.sections:
        if section.title != layout.report and after.section(section.title) is not None:
            assert after.section(section.title) == section or section.title.split("(")[0].strip().casefold() == \
                layout.report.split("(")[0].strip().casefold()
    assert render_state(parse_state(render_state(after))) == render_state(after)


def test_drop_placeholders_only_touches_placeholder_lines() -> None:
    doc = parse_state("# X\n\n## A\n\n- (none)\n- real item\nNone.\nNone of these matter\n")
    out = render_state(drop_placeholders(doc, "A"))
    assert "- (none)" not in out and "\nNone.\n" not in out
    assert "- real item" in out and "None of these matter" in out


# ---------------------------------------------------------------------------- through the CLI


def test_a_ci_sweeper_report_tick_writes_the_starters_shape(tmp_path: Path) -> None:
    proc = run_cli("run", "ci-sweeper", "--scenario", "report-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "ci-sweeper-state.md").read_text()
    assert text.startswith("# CI Sweeper State\n")
    assert parse_state(text).titles() == ["Active Failures", "Watch (flakes / infra)", "Resolved (last 7d)"]
    assert "Flaky test in the checkout suite" in _section(text, "Active Failures")


def test_a_loop_init_scaffolded_file_is_filled_in_place(tmp_path: Path) -> None:
    (tmp_path / "issue-triage-state.md").write_text(_starter("issue-triage-state.md.example"))
    proc = run_cli("run", "issue-triage", "--scenario", "report-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "issue-triage-state.md").read_text()
    top = _section(text, "Top 5 (by loop score)")
    assert "Flaky test in the checkout suite" in top and "first run will populate" not in top
    assert "## High Priority" not in text and "## Watch List" not in text
    assert "auth, payments, security" in _section(text, "Denylist (always human)")


def _run_with_umask(mask: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (f"import os, sys; os.umask({mask:#o})\n"
            "from loop_runtime.cli import main\nmain(sys.argv[1:])\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_files_the_runtime_creates_keep_the_users_umask(tmp_path: Path, mask: int) -> None:
    proc = _run_with_umask(mask, "run", "ci-sweeper", "--scenario", "report-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = 0o666 & ~mask
    for rel in ("ci-sweeper-state.md", "loop-run-log.md", ".loop-runtime/.gitignore", ".loop-runtime/last-run-id"):
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == expected, rel


def test_an_existing_files_mode_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "ci-sweeper-state.md"
    state.write_text(_starter("ci-sweeper-state.md.example"))
    os.chmod(state, 0o640)
    proc = _run_with_umask(0o000, "run", "ci-sweeper", "--scenario", "report-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o640
