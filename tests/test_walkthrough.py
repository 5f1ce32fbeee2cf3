"""The first hour on a fresh `loop-init` scaffold: every walkthrough of the README works (issue 12).

Each test drives the real CLI in a subprocess on a real scaffold (the npm `loop-init`,
unchanged) in a real git repository, and checks what a user sees and what lands in git.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.test_scaffold import scaffold

pytestmark = pytest.mark.parity

FIX = ("triage: {decision: act, tokens: 1000, items: [{id: CI-9, title: fix lint, files: [src/a.py]}]}\n"
       "implementer: [{files: {src/a.py: \"x = 1\\n\"}, tokens: 2000}]\n"
       "verifier: [{verdict: ESCALATE_HUMAN, reasons: [needs a human], tokens: 1000}]\n")


def dirty(repo: Path) -> set[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    return {line[3:] for line in out.splitlines()}


def escalate(tmp_path: Path, repo: Path, cli) -> str:
    """An escalating L2 tick on the scaffold; returns the escalation id."""
    scen = tmp_path / "esc.yaml"
    scen.write_text(FIX)
    proc = cli("run", "ci-sweeper", "--level", "L2", "--scenario", str(scen), "--log-format", "none", cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (esc,) = json.loads(cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    return str(esc["id"])


# ---------------------------------------------------------------------------- 1. which loops are enabled


def test_a_scaffold_without_loop_md_has_its_loop_enabled_by_its_state_file(tmp_path: Path) -> None:
    """loop-init writes ci-sweeper-state.md and no LOOP.md: that loop is set up, so it is enabled."""
    from loop_runtime.app.loops import project_loops
    from loop_runtime.app.runtime import load_project

    repo = scaffold(tmp_path, "ci-sweeper")
    assert not (repo / "LOOP.md").exists()
    loops = project_loops(load_project(repo))
    assert loops.enabled == ("ci-sweeper",)
    assert loops.reasons["ci-sweeper"] == "state file ci-sweeper-state.md"
    assert load_project(repo).enabled_patterns() == ["ci-sweeper"]


def test_start_runs_the_scaffolds_loop_and_logs_for_people(tmp_path: Path) -> None:
    """`loop-runtime start` (no pattern named) ticks ci-sweeper; its log lines are sentences."""
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = subprocess.Popen([sys.executable, "-m", "loop_runtime", "start", "--scenario", "noop"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and '"outcome":"no-op"' not in (repo / "loop-run-log.md").read_text():
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "loop-runtime: running ci-sweeper" in err
    assert re.search(r"^ci-sweeper: no-op in \d+\.\d\d s — 2,000 tokens$", err, re.M), err
    assert "loop-runtime: stopped" in err
    assert "tick.start" not in err and "pattern=" not in err  # no internal key=value noise


def test_start_json_log_format_is_one_object_per_line(tmp_path: Path) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = subprocess.Popen([sys.executable, "-m", "loop_runtime", "start", "--scenario", "noop", "--log-format",
                             "json"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and '"outcome":"no-op"' not in (repo / "loop-run-log.md").read_text():
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    (tick,) = [e for e in events if e["event"] == "tick"]
    assert tick["pattern"] == "ci-sweeper" and tick["outcome"] == "no-op" and tick["tokens"] == 2000
    assert isinstance(tick["duration_s"], float)


def test_start_with_no_loop_set_up_names_what_it_looked_for(tmp_path: Path, cli) -> None:
    proc = cli("start", cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    for looked_for in ("loop-runtime.toml", "LOOP.md", "state file"):
        assert looked_for in line
    assert "Traceback" not in proc.stderr


def test_a_loop_disabled_in_toml_is_not_enabled_by_its_state_file(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    (repo / "loop-runtime.toml").write_text("[patterns.ci-sweeper]\nenabled = false\n")
    proc = cli("start", cwd=repo)
    assert proc.returncode == 1 and "disabled in loop-runtime.toml: ci-sweeper" in proc.stderr


def test_status_lists_the_projects_loops_and_counts_the_others(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert [lp["pattern"] for lp in doc["loops"]] == ["ci-sweeper"]
    assert doc["loops"][0]["enabled"] is True
    assert doc["otherPatterns"] == 7
    text = cli("status", cwd=repo).stdout
    assert "7 other pattern(s) in the bundled registry" in text
    assert "daily-triage" not in text


# ---------------------------------------------------------------------------- 2. status in a pipe


def test_piped_status_is_never_cut_whatever_the_width(tmp_path: Path, cli) -> None:
    """Long ids, many columns, COLUMNS=20: every loop is one full line with every value whole."""
    repo = scaffold(tmp_path, "ci-sweeper")
    (repo / "loop-runtime.toml").write_text("[patterns.post-merge-cleanup]\n[patterns.dependency-sweeper]\n"
                                            "[patterns.issue-pr-repair]\ndaily_cap = 123456\n")
    proc = cli("status", cwd=repo, env={"COLUMNS": "20", "CI": "true"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("LOOP"))
    for col in ("LEVEL", "CADENCE", "NEXT RUN", "LAST", "TOKENS TODAY", "RUNS", "ESC", "KILL"):
        assert col in header
    for pid in ("post-merge-cleanup", "dependency-sweeper", "issue-pr-repair", "ci-sweeper"):
        (row,) = [line for line in lines if line.startswith(pid + " ")]
        assert row.split()[-1] == "off"  # the last column is on the same line
    (row,) = [line for line in lines if line.startswith("issue-pr-repair ")]
    assert "0 / 123,456 " in row


# ---------------------------------------------------------------------------- 3. approve --merge


def test_approve_merge_right_after_an_escalating_tick_carries_the_runtimes_files(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    spine = dirty(repo)
    assert spine and spine <= {"ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json"}
    proc = cli("approve", esc, "--merge", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "Merged loop/ci-sweeper-" in proc.stdout and "into main" in proc.stdout
    carried = re.search(r"Carried over loop-runtime's own uncommitted files \(still uncommitted\): (.*)\.",
                        proc.stdout)
    assert carried and set(carried.group(1).split(", ")) == spine
    assert (repo / "src" / "a.py").read_text() == "x = 1\n"  # the change is on main
    assert "loop(ci-sweeper): fix lint" in git(repo, "log", "-1", "--format=%s", "main")
    assert git(repo, "status", "--porcelain", "src/a.py") == ""
    assert not list((repo / ".loop-worktrees").glob("ci-sweeper-*"))  # the merged worktree is gone
    assert "Removed worktree .loop-worktrees/" in proc.stdout


def test_approve_merge_refuses_when_a_users_file_is_dirty_and_names_it(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    head = git(repo, "rev-parse", "HEAD")
    with (repo / "AGENTS.md").open("a") as f:
        f.write("\nmy edit in progress\n")
    proc = cli("approve", esc, "--merge", cwd=repo)
    assert proc.returncode == 1
    assert "AGENTS.md" in proc.stderr and "commit or stash" in proc.stderr
    assert "ci-sweeper-state.md" not in proc.stderr  # the runtime's own files are not the problem
    assert git(repo, "rev-parse", "HEAD") == head
    assert json.loads(cli("escalations", "--json", cwd=repo).stdout)["escalations"][0]["status"] == "open"
    assert "my edit in progress" in (repo / "AGENTS.md").read_text()


def test_an_approved_change_can_be_merged_later_once(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    first = cli("approve", esc, cwd=repo)
    assert first.returncode == 0, first.stderr
    assert f"`loop-runtime approve {esc} --merge` merges it later" in first.stdout
    assert not (repo / "src" / "a.py").exists()
    again = cli("approve", esc, cwd=repo)
    assert again.returncode == 1 and "--merge" in again.stderr
    later = cli("approve", esc, "--merge", cwd=repo)
    assert later.returncode == 0, later.stderr
    assert f"Merged {esc} (approved earlier)" in later.stdout
    assert re.search(r"Human decision: approved by .+ on \d{4}-\d\d-\d\d; merged on ",
                     (repo / "ci-sweeper-state.md").read_text())
    assert (repo / "src" / "a.py").read_text() == "x = 1\n"
    twice = cli("approve", esc, "--merge", cwd=repo)
    assert twice.returncode == 1 and "already merged" in twice.stderr


# ---------------------------------------------------------------------------- 4. reject


def test_reject_removes_the_worktree_branch_and_patch_and_says_so(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    (branch,) = git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)").splitlines()
    assert list((repo / ".loop-worktrees").glob("ci-sweeper-*"))
    proc = cli("reject", esc, "--reason", "not now", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert f"branch {branch}" in proc.stdout and "worktree .loop-worktrees/" in proc.stdout
    assert git(repo, "branch", "--list", "loop/*") == ""
    assert not list((repo / ".loop-worktrees").glob("ci-sweeper-*"))
    assert not list((repo / ".loop-runtime" / "patches").glob("*.patch"))
    assert str(repo / ".loop-worktrees") not in git(repo, "worktree", "list")


def test_reject_keep_branch_keeps_the_held_change_on_its_branch(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    proc = cli("reject", esc, "--reason", "later", "--keep-branch", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    (branch,) = git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)").splitlines()
    assert f"Kept branch {branch}" in proc.stdout
    assert git(repo, "show", f"{branch}:src/a.py") == "x = 1"
    assert not list((repo / ".loop-worktrees").glob("ci-sweeper-*"))


# ---------------------------------------------------------------------------- 5/6. forcing, halts


def test_run_force_ticks_again_after_an_early_exit(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    assert cli("run", "ci-sweeper", "--scenario", "noop", cwd=repo).returncode == 0
    skipped = cli("run", "ci-sweeper", "--scenario", "noop", cwd=repo)
    assert "exit early" in skipped.stdout and "(run with --force to tick anyway)" in skipped.stdout
    assert "— 0 tokens" in skipped.stdout
    forced = cli("run", "ci-sweeper", "--scenario", "noop", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert "triage decision: noop" in forced.stdout and "exit early" not in forced.stdout


def test_runs_per_day_halt_exits_2_says_how_to_force_and_force_runs(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    budget = repo / "loop-budget.md"
    budget.write_text(budget.read_text().replace("| CI Sweeper | 96 |", "| CI Sweeper | 1 |"))
    assert cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo).returncode == 0
    capped = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)
    assert capped.returncode == 2, capped.stdout
    assert "runs/day cap reached (1/1" in capped.stdout and "run with --force to tick anyway" in capped.stdout
    forced = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", "--force", cwd=repo)
    assert forced.returncode == 0 and "triage decision: report" in forced.stdout


def test_budget_halt_names_the_topup_command_and_force_does_not_bypass_it(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    (repo / "loop-runtime.toml").write_text("[patterns.ci-sweeper]\ndaily_cap = 1000\n")
    for extra in ((), ("--force",), ("--force",)):
        halted = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "noop", *extra, cwd=repo)
        assert halted.returncode == 2, halted.stdout
        assert "`loop-runtime topup ci-sweeper <tokens> --resume`" in halted.stdout


def test_kill_switch_still_applies_with_force_and_says_paused_everywhere(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    assert cli("kill", "ci-sweeper", cwd=repo).returncode == 0
    proc = cli("run", "ci-sweeper", "--force", "--log-format", "plain", cwd=repo)
    assert proc.returncode == 0
    assert "tick 1: paused — 0 tokens" in proc.stdout and "· paused: " in proc.stdout
    assert "halted" not in proc.stdout and "halted" not in proc.stderr
    assert "[ci-sweeper] paused" in proc.stderr
    last = (repo / "loop-run-log.md").read_text().strip().splitlines()[-1]
    assert json.loads(last)["note"] == "paused"


# ---------------------------------------------------------------------------- 10/11. words and progress


def test_an_l1_report_tick_is_headed_report_not_act(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = cli("run", "ci-sweeper", "--level", "L1", cwd=repo)  # the default scenario's triage says act
    assert proc.returncode == 0
    assert "tick 1: report — " in proc.stdout and "tick 1: act" not in proc.stdout


def test_plain_progress_counts_ticks_and_tokens_per_tick(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", "--ticks", "2",
               "--log-format", "plain", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    ends = [line for line in proc.stderr.splitlines() if "report-only in" in line]
    assert len(ends) == 2
    assert ends[0].startswith("[ci-sweeper 1/2] report-only in ") and ends[0].endswith("— 4,000 tokens")
    assert ends[1].startswith("[ci-sweeper 2/2] report-only in ") and ends[1].endswith("— 4,000 tokens")


def test_live_progress_line_has_pattern_counter_elapsed_and_this_ticks_tokens() -> None:
    """The tracker behind the live line: a new tick id resets tokens, reservation and phase."""
    from loop_runtime.progress import TickTracker

    now = [100.0]
    t = TickTracker(total=3, clock=lambda: now[0])
    t.see("tick.agent", {"pattern": "ci-sweeper", "tick": "a", "role": "triage", "reservation": 50_000})
    t.see("tick.usage", {"pattern": "ci-sweeper", "tick": "a", "tokens": 1_000})
    now[0] = 104.2
    assert t.line() == "ci-sweeper 1/3 · triage agent · 4.2 s · 1,000 tokens / reserved 50,000"
    t.see("tick.end", {"pattern": "ci-sweeper", "tick": "a", "outcome": "no-op", "tokens": 1_000})
    t.see("tick.phase", {"pattern": "ci-sweeper", "tick": "b", "phase": "phase:discovering"})
    now[0] = 105.0
    assert t.line() == "ci-sweeper 2/3 · discovering · 0.8 s · 0 tokens"


def test_live_progress_renders_on_a_terminal_stream() -> None:
    """LiveProgress prints each finished tick with its counter and its own tokens."""
    from loop_runtime.progress import LiveProgress

    out = io.StringIO()
    p = LiveProgress(out, total=2)
    for tick, tokens in (("a", 3_000), ("b", 1_000)):
        p.event("tick.usage", {"pattern": "ci-sweeper", "tick": tick, "tokens": tokens})
        p.event("tick.end", {"pattern": "ci-sweeper", "tick": tick, "outcome": "no-op", "tokens": tokens})
    p.close()
    text = out.getvalue()
    assert re.search(r"ci-sweeper 1/2: no-op in \d+\.\d s — 3,000 tokens", text)
    assert re.search(r"ci-sweeper 2/2: no-op in \d+\.\d s — 1,000 tokens", text)


def test_approve_merge_refuses_off_the_base_branch_before_committing_anything(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    git(repo, "switch", "-q", "-c", "elsewhere")
    before = git(repo, "for-each-ref", "refs/heads/loop/")
    proc = cli("approve", esc, "--merge", cwd=repo)
    assert proc.returncode == 1
    assert "on elsewhere, not main" in proc.stderr and "git switch main" in proc.stderr
    assert git(repo, "for-each-ref", "refs/heads/loop/") == before  # nothing committed on the branch


def test_only_the_runtimes_own_files_count_as_spine_files() -> None:
    """A user's file is never carried or committed as the runtime's: ``*`` does not cross ``/``."""
    from hypothesis import given
    from hypothesis import strategies as st

    from loop_runtime.app.actions import _is_spine

    spine = ("ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json", ".loop-context/*", "loop-pause-*")
    assert _is_spine("loop-pause-all", spine) and _is_spine(".loop-context/packet.md", spine)
    name = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12)

    @given(name, name)
    def nested_paths_never_match(a: str, b: str) -> None:
        assert not _is_spine(f"{a}/loop-pause-{b}/x", spine)
        assert not _is_spine(f"loop-pause-{a}/{b}", spine)
        assert not _is_spine(f"{a}/ci-sweeper-state.md", spine)

    nested_paths_never_match()


def test_daemon_log_lines_are_sentences_with_the_way_out() -> None:
    from loop_runtime.daemon import human_line

    tick = {"pattern": "ci-sweeper", "tokens": 0, "duration_s": 0.157}
    assert human_line("tick", {**tick, "outcome": "no-op"}) == "ci-sweeper: no-op in 0.16 s"
    assert human_line("tick", {**tick, "outcome": "paused", "haltReason": "paused"}) == "ci-sweeper: paused in 0.16 s"
    budget = human_line("tick", {**tick, "outcome": "halted", "tokens": 1500, "haltReason": "budget"})
    assert budget.startswith("ci-sweeper: halted in 0.16 s — 1,500 tokens")
    assert "`loop-runtime topup ci-sweeper <tokens> --resume`" in budget
    assert human_line("tick.start", {"pattern": "ci-sweeper"}) == ""  # bookkeeping stays in --log-format json


def test_approve_merge_that_conflicts_names_the_files_and_merges_nothing(tmp_path: Path, cli) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    (repo / "src").mkdir(exist_ok=True)
    (repo / "src" / "a.py").write_text("y = 2\n")  # a human commits the same file meanwhile
    git(repo, "add", "src/a.py")
    git(repo, "commit", "-q", "-m", "human change")
    head = git(repo, "rev-parse", "HEAD")
    proc = cli("approve", esc, "--merge", cwd=repo)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "conflicts in src/a.py" in line and "nothing was merged" in line and "git merge loop/" in line
    assert git(repo, "rev-parse", "HEAD") == head and (repo / "src" / "a.py").read_text() == "y = 2\n"
    assert not (repo / ".git" / "MERGE_HEAD").exists()


def test_merge_commits_the_runtimes_files_first_when_the_branch_changes_them_too(tmp_path: Path, cli) -> None:
    """Carrying is impossible when the branch edits a dirty state file: it is committed first, and said so."""
    repo = scaffold(tmp_path, "ci-sweeper")
    esc = escalate(tmp_path, repo, cli)
    assert cli("approve", esc, cwd=repo).returncode == 0
    (branch,) = git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)").splitlines()
    (wt,) = [Path(line.split()[0]) for line in git(repo, "worktree", "list").splitlines() if f"[{branch}]" in line]
    state = wt / "ci-sweeper-state.md"
    # a line away from the section the runtime itself writes (Active Failures), so the merge is clean
    state.write_text(state.read_text().replace("## Resolved (last 7d)", "## Resolved (last 14d)"))
    git(wt, "commit", "-q", "-am", "rename a section")
    assert "ci-sweeper-state.md" in dirty(repo)
    proc = cli("approve", esc, "--merge", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Committed loop-runtime's own files first \([0-9a-f]{12}\).*: ci-sweeper-state\.md\.",
                     proc.stdout), proc.stdout
    log = git(repo, "log", "--format=%s", "main").splitlines()
    assert f"loop-runtime: record loop state before merging {branch}" in log
    merged = (repo / "ci-sweeper-state.md").read_text()
    assert "## Resolved (last 14d)" in merged and "Last run: 20" in merged


def test_a_fix_proposed_tick_lists_the_item_and_its_branch_in_the_patterns_own_section(tmp_path: Path, cli) -> None:
    """Issue 12 item 12: an L2 fix is not only `Last run:` — the item and where its fix is go in the section
    the pattern's starter lists items in (ci-sweeper: Active Failures)."""
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = cli("run", "ci-sweeper", "--level", "L2", "--scenario", "default", "--force", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (repo / "ci-sweeper-state.md").read_text()
    active = text.split("## Active Failures", 1)[1].split("\n## ", 1)[0]
    (branch,) = git(repo, "branch", "--list", "loop/*", "--format=%(refname:short)").splitlines()
    assert re.search(rf"^- `EX-1` — `Export a typed greeting from src/example\.ts`: fix proposed on `{re.escape(branch)}` "
                     r"\([0-9a-f]{12}\)$", active, re.M), text
    assert "## Watch (flakes / infra)" in text and "## Resolved (last 7d)" in text
