"""``loops.project_loops``: the one rule for which loops a project has enabled (start, status, dashboard)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.app.loops import project_loops
from loop_runtime.app.runtime import load_project

IDS = ["issue-pr-repair", "pr-babysitter", "daily-triage", "ci-sweeper", "post-merge-cleanup",
       "dependency-sweeper", "changelog-drafter", "issue-triage"]
subsets = st.sets(st.sampled_from(IDS))


@settings(max_examples=40)
@given(with_state=subsets, in_toml=subsets, disabled=subsets)
def test_a_loop_is_enabled_exactly_when_the_project_set_it_up_and_did_not_turn_it_off(
        with_state: set[str], in_toml: set[str], disabled: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = load_project(root)
        state_of = {p.id: p.state for p in project.registry.patterns}
        for pid in with_state:
            (root / state_of[pid]).write_text("# state\n")
        toml = "".join(f"[patterns.{pid}]\n" + ("enabled = false\n" if pid in disabled else "")
                       for pid in sorted(in_toml | disabled))
        (root / "loop-runtime.toml").write_text(toml)
        loops = project_loops(load_project(root))
        specific = {pid for pid in with_state if state_of[pid] != "STATE.md"} | in_toml | disabled
        expected = specific - disabled
        if not specific and "daily-triage" in with_state:
            expected = {"daily-triage"}  # STATE.md counts only when nothing more specific names a loop
        assert set(loops.enabled) == expected
        assert not set(loops.enabled) & set(loops.disabled)
        assert list(loops.enabled) == [i for i in IDS if i in expected]  # registry order, no duplicates
        assert loops.others == len(IDS) - len(loops.shown) >= 0
        assert all(loops.reasons[pid] for pid in loops.enabled)


def test_loop_md_names_enable_and_the_message_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "LOOP.md").write_text("# LOOP\n\n## Active Loops\n\n| Loop | Level | Cadence |\n|---|---|---|\n"
                                      "| Issue Triage | L1 | 1d |\n")
    loops = project_loops(load_project(tmp_path))
    assert loops.enabled == ("issue-triage",) and loops.reasons["issue-triage"] == "LOOP.md"
    empty = tmp_path / "empty"
    empty.mkdir()
    project = load_project(empty)
    message = project_loops(project).none_message(project)
    assert "loop-runtime.toml" in message and "LOOP.md" in message and "state file" in message
