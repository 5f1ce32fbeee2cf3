"""Issue 12, attacked as a careless new user would: what the walkthrough tests did not cover.

Each test drives the real CLI on a real `loop-init` scaffold (or a bare folder) and checks
what a person sees, in a pipe, in CI and on a (pseudo-)terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.test_scaffold import scaffold


def on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal (as in an interactive shell or a CI `script`)."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "LOOP_PROJECT_ROOT")}
    full_env.update({"COLUMNS": "40", "TERM": "xterm", **env})
    proc = subprocess.Popen([sys.executable, "-m", "loop_runtime", *args], cwd=cwd, stdout=out_slave,
                            stderr=err_slave, stdin=subprocess.DEVNULL, env=full_env)
    os.close(out_slave)
    os.close(err_slave)
    chunks: dict[int, list[bytes]] = {out_master: [], err_master: []}
    open_fds = [out_master, err_master]
    import select

    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 60)
        assert ready, "the command hung"
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                data = b""
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
                os.close(fd)
    code = proc.wait(timeout=60)
    return (code, b"".join(chunks[out_master]).decode(errors="replace"),
            b"".join(chunks[err_master]).decode(errors="replace"))


# ---------------------------------------------------------------------------- numbers read the same everywhere


@pytest.mark.parity
def test_the_tick_headline_formats_tokens_like_the_budget_line(tmp_path: Path, cli) -> None:
    """`tick 1: report — 4,000 tokens` next to `Budget: 4,000 / …`: one number format in one output."""
    repo = scaffold(tmp_path, "ci-sweeper")
    proc = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "tick 1: report — 4,000 tokens" in proc.stdout
    assert not re.search(r"\b\d{4,} tokens", proc.stdout + proc.stderr)


def test_tick_result_headline_groups_thousands() -> None:
    from loop_runtime.core.result import TickResult

    r = TickResult(tick_id="t", run_id="r", pattern="p", pattern_name="P", level="L2", effective_level="L2",
                   level_reason="", decision="act", outcome="fix-proposed", tokens=1234567, verdict="APPROVE")
    assert r.headline == "act (accept) — 1,234,567 tokens"


# ---------------------------------------------------------------------------- output in CI and on a terminal


@pytest.mark.parity
def test_status_in_ci_is_plain_even_on_a_pseudo_terminal(tmp_path: Path) -> None:
    """CI runners often give jobs a pty: `status` is still one full line per loop, no folded rich table."""
    repo = scaffold(tmp_path, "ci-sweeper")
    code, out, _ = on_a_terminal(["status"], repo, {"CI": "true"})
    assert code == 0
    assert "\x1b[" not in out
    (row,) = [line for line in out.splitlines() if line.startswith("ci-sweeper ")]
    assert "0 / 1,000,000" in row and row.split()[-1] == "off"


@pytest.mark.parity
def test_status_on_a_terminal_outside_ci_keeps_every_value_whole(tmp_path: Path) -> None:
    """On a 40-column terminal the table may wrap, but no value is cut with an ellipsis."""
    repo = scaffold(tmp_path, "ci-sweeper")
    code, out, _ = on_a_terminal(["status"], repo, {})
    assert code == 0
    assert "…" not in out


@pytest.mark.parity
def test_progress_in_ci_on_a_pseudo_terminal_is_plain_lines(tmp_path: Path) -> None:
    """No spinner or carriage returns in a CI log: the plain `[pattern] phase` lines instead."""
    repo = scaffold(tmp_path, "ci-sweeper")
    code, out, err = on_a_terminal(["run", "ci-sweeper", "--level", "L1", "--scenario", "report-only"], repo,
                                   {"CI": "true"})
    assert code == 0, out + err
    assert "\x1b[" not in err and "[ci-sweeper] report-only in " in err
    assert "tick 1: report — 4,000 tokens" in out


@pytest.mark.parity
def test_progress_on_a_terminal_is_live_with_counter_and_tokens(tmp_path: Path) -> None:
    repo = scaffold(tmp_path, "ci-sweeper")
    code, out, err = on_a_terminal(["run", "ci-sweeper", "--level", "L1", "--scenario", "report-only",
                                    "--ticks", "2"], repo, {"COLUMNS": "120"})
    assert code == 0, out + err
    assert re.search(r"ci-sweeper 2/2: report-only in \d+\.\d s — 4,000 tokens", err), err


# ---------------------------------------------------------------------------- careless spellings


def test_level_and_backend_are_accepted_in_lower_or_upper_case(tmp_path: Path, cli) -> None:
    """`--level l2` is what people type; it means L2 (the plan says so), as `--backend MOCK` means mock."""
    plan = cli("plan", "daily-triage", "--level", "l3", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["level"] == "L3"
    run = cli("run", "daily-triage", "-l", "l2", "--backend", "MOCK", "--dry-run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Ran 1 tick(s) of Daily Triage [L2] via mock backend (dry-run):")


# ---------------------------------------------------------------------------- topup --resume


@pytest.mark.parity
def test_topup_resume_finishes_a_forced_tick_even_past_the_runs_cap(tmp_path: Path, cli) -> None:
    """A human forced a tick past runs/day, the budget halted it; `topup --resume` must finish it, not
    halt it again on the runs/day cap (and lose it)."""
    repo = scaffold(tmp_path, "ci-sweeper")
    budget = repo / "loop-budget.md"
    budget.write_text(budget.read_text().replace("| CI Sweeper | 96 |", "| CI Sweeper | 1 |"))
    assert cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo).returncode == 0
    (repo / "loop-runtime.toml").write_text("[patterns.ci-sweeper]\ndaily_cap = 5500\n")
    halted = cli("run", "ci-sweeper", "--level", "L2", "--force", cwd=repo)
    assert halted.returncode == 2 and "--resume" in halted.stdout, halted.stdout
    resumed = cli("topup", "ci-sweeper", "100000", "--resume", cwd=repo)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "runs/day" not in resumed.stdout
    assert "resumed tick: act (accept) — " in resumed.stdout
    assert git(repo, "branch", "--list", "loop/*")


# ---------------------------------------------------------------------------- the README is true


def _readme_command_rows() -> list[tuple[list[str], set[str]]]:
    """(command words, options) for every row of the README's command table."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cell = re.split(r"(?<!\\)\|", line)[1]  # `\|` inside a cell is not a column break
        for usage in re.findall(r"`([^`]+)`", cell):
            words = [w for w in re.findall(r"^[a-z][a-z ]*", usage)[0].split()]
            options = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", usage))
            rows.append((words, options))
    return rows


def test_the_readme_command_table_is_parsed() -> None:
    names = {" ".join(words) for words, _ in _readme_command_rows()}
    assert {"list", "plan", "run", "cost", "gate check", "status", "kill", "resume", "escalations", "approve",
            "reject", "topup", "start", "dashboard"} <= names


@pytest.mark.parametrize("words,options", _readme_command_rows(), ids=lambda v: " ".join(v) if isinstance(v, list)
                         else ",".join(sorted(v)))
def test_every_option_of_the_readme_command_table_is_in_that_commands_help(words: list[str], options: set[str],
                                                                            tmp_path: Path, cli) -> None:
    proc = cli(*words, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", proc.stdout))
    assert options <= listed, f"`{' '.join(words)}`: README names {sorted(options - listed)} but --help does not"


def test_the_dashboard_journal_reads_numbers_like_the_rest_of_the_page() -> None:
    """A journal line shows `amount: 50,000 · reservation: 12`, not raw JSON with `50000`."""
    from loop_runtime.dashboard.views import _detail

    text = _detail({"amount": 50000, "reservation": 12, "usage": {"input": 2400, "output": 600},
                    "ok": True, "prompt": "not shown"}, [])
    assert text == "amount: 50,000 · ok: true · reservation: 12 · usage: {input: 2,400, output: 600}"


# ---------------------------------------------------------------------------- approve of an escalation with no change

REJECTED_THRICE = ("triage: {decision: act, tokens: 1000, items: [{id: CI-9, title: fix lint, files: [src/a.py]}]}\n"
                   "implementer: [{files: {src/a.py: \"x = 1\\n\"}, tokens: 1000}]\n"
                   "verifier: [{verdict: REJECT, reasons: [wrong], tokens: 500}]\n")


@pytest.mark.parity
def test_approving_an_escalation_that_held_no_change_does_not_claim_a_commit_or_merge(tmp_path: Path, cli) -> None:
    """A max-attempts escalation holds no diff: `approve --merge` must not say "committed" nor record "(merged)"."""
    repo = scaffold(tmp_path, "ci-sweeper")
    scen = tmp_path / "reject.yaml"
    scen.write_text(REJECTED_THRICE)
    proc = cli("run", "ci-sweeper", "--level", "L2", "--scenario", str(scen), cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (esc,) = json.loads(cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    head = git(repo, "rev-parse", "HEAD")
    approved = cli("approve", esc["id"], "--merge", cwd=repo)
    assert approved.returncode == 0, approved.stderr
    assert ": committed" not in approved.stdout and "Merged" not in approved.stdout
    assert "nothing was committed or merged" in approved.stdout
    assert git(repo, "rev-parse", "HEAD") == head
    state = (repo / "ci-sweeper-state.md").read_text()
    assert "approved by " in state and "(merged)" not in state


# ---------------------------------------------------------------------------- a tick that died is not "running"


@pytest.mark.parity
def test_status_does_not_show_a_tick_that_stopped_on_an_error_as_running(tmp_path: Path, cli) -> None:
    """The state file is a folder (a careless `mkdir`): the tick fails at its write. `status` afterwards must
    not claim it is still running (no process is), and the next run recovers and ticks."""
    repo = scaffold(tmp_path, "ci-sweeper")
    state = repo / "ci-sweeper-state.md"
    state.unlink()
    state.mkdir()
    failed = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("loop-runtime: ") and "ci-sweeper-state.md: " in last and ".tmp" not in last, last
    # preflight refuses the folder before anything starts, so no tick row can be left "running"
    doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert all(lp["running"] is None for lp in doc["loops"])
    assert "running:" not in cli("status", cwd=repo).stdout
    state.rmdir()
    again = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", "--force", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr


# ---------------------------------------------------------------------------- bytes that are not UTF-8


@pytest.mark.parametrize("name", ["STATE.md", "loop-run-log.md", "LOOP.md", "loop-budget.md"])
def test_a_file_with_non_utf8_bytes_is_one_line_naming_the_file_and_where(tmp_path: Path, cli, fixtures: Path,
                                                                          name: str) -> None:
    for f in ("STATE.md", "loop-run-log.md", "LOOP.md"):
        (tmp_path / f).write_bytes((fixtures / f).read_bytes())
    target = tmp_path / name
    text = target.read_bytes() if target.exists() else b""
    target.write_bytes(text + b"\n- caf\xe9 (latin-1)\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    lines = (text + b"\n").count(b"\n") + 1
    for args in (("status",), ("run", "daily-triage", "--force")):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr == (f"loop-runtime: {name}: not UTF-8 text: byte 0xe9 at line {lines}, column 6 "
                               "(save it as UTF-8)\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


# ---------------------------------------------------------------------------- a thin-loop scaffold


@pytest.mark.parity
def test_a_thin_loop_scaffold_says_its_loop_is_a_github_workflow_in_status_and_start(tmp_path: Path, cli) -> None:
    """loop-init's thin-loop writes LOOP.md and a workflow, no state file: `status` and `start` must not just
    say "no loops" — they say the loop is a GitHub workflow that runs in Actions."""
    repo = scaffold(tmp_path, "thin-loop")
    status = cli("status", cwd=repo)
    assert status.returncode == 0, status.stderr
    assert "thin-loop is set up here as a GitHub workflow (.github/workflows/thin-loop.yml)" in status.stdout
    doc = json.loads(cli("status", "--json", cwd=repo).stdout)
    assert doc["workflowLoops"] == [{"pattern": "thin-loop", "workflow": ".github/workflows/thin-loop.yml"}]
    start = cli("start", cwd=repo)
    assert start.returncode == 1
    assert len(start.stderr.strip().splitlines()) == 1
    assert "thin-loop is set up here as a GitHub workflow" in start.stderr


# ---------------------------------------------------------------------------- paused ticks


@pytest.mark.parity
def test_paused_ticks_read_paused_in_status_and_do_not_use_up_the_days_runs(tmp_path: Path, cli) -> None:
    """A kill switch over lunch must not eat runs/day: after `resume` the loop still ticks; `status` calls the
    paused tick "paused" (as stdout and the run log do), not "halted"."""
    repo = scaffold(tmp_path, "ci-sweeper")
    budget = repo / "loop-budget.md"
    budget.write_text(budget.read_text().replace("| CI Sweeper | 96 |", "| CI Sweeper | 1 |"))
    assert cli("kill", "ci-sweeper", "--reason", "lunch", cwd=repo).returncode == 0
    for _ in range(2):
        paused = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)
        assert paused.returncode == 0, paused.stdout
        assert "tick 1: paused — 0 tokens" in paused.stdout
        assert "· paused: kill switch loop-pause-ci-sweeper" in paused.stdout
    (lp,) = json.loads(cli("status", "--json", cwd=repo).stdout)["loops"]
    assert lp["lastRun"]["outcome"] == "paused" and lp["runs"]["today"] == 0
    (row,) = [line for line in cli("status", cwd=repo).stdout.splitlines() if line.startswith("ci-sweeper ")]
    assert " paused " in row and "halted" not in row
    assert cli("resume", "ci-sweeper", cwd=repo).returncode == 0
    ran = cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo)
    assert ran.returncode == 0 and "tick 1: report — 4,000 tokens" in ran.stdout, ran.stdout


def test_a_resumed_tick_is_one_run_and_paused_entries_are_none() -> None:
    from datetime import date

    from loop_runtime.formats.runlog import MARKER, parse_run_log, runs_on_day

    def line(run_id: str, **extra: object) -> str:
        return json.dumps({"run_id": run_id, "pattern": "p", "tokens_estimate": 1, "outcome": "no-op", **extra})

    log = parse_run_log("\n".join([MARKER,
                                   line("2026-06-09T08:00:00.000Z", note="halted: budget"),
                                   line("2026-06-09T08:00:00.000Z"),  # the same run, resumed after a top-up
                                   line("2026-06-09T09:00:00.000Z", note="paused"),
                                   line("2026-06-09T10:00:00.000Z")]))
    assert runs_on_day(log, "p", date(2026, 6, 9)) == 2
