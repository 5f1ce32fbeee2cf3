"""The CLI as a user meets it: exit codes (R27), one-line errors, --json, root resolution (R33)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_unknown_pattern_lists_valid_ids(tmp_path: Path) -> None:
    """An unknown id is one line naming the valid ids, exit 1, no traceback (R5)."""
    proc = run_cli("plan", "nope", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "nope" in proc.stderr and "daily-triage" in proc.stderr and "ci-sweeper" in proc.stderr


@pytest.mark.parametrize("bad,needle", [
    ("cadence: 15s", "patterns[0].cadence invalid: '15s'"),
    ("risk: extreme", "patterns[0].risk invalid: 'extreme'"),
])
def test_malformed_registry_is_one_line_and_untouched(tmp_path: Path, fixtures: Path, bad: str, needle: str) -> None:
    """A bad registry field → `patterns[i].<field> invalid: <value>`, exit 1, file byte-identical (R3)."""
    text = (fixtures / "patterns__registry.yaml").read_text()
    first = text.index("cadence:") if bad.startswith("cadence") else text.index("risk:")
    end = text.index("\n", first)
    broken = text[:first] + bad + text[end:]
    (tmp_path / "patterns").mkdir()
    reg = tmp_path / "patterns" / "registry.yaml"
    reg.write_text(broken)
    proc = run_cli("list", cwd=tmp_path)
    assert proc.returncode == 1 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert reg.read_text() == broken


@pytest.mark.parametrize("name,content", [
    ("loop-budget.md", "## Daily limits\n\n| Loop | Max runs/day | Max tokens/day |\n|---|---|---|\n| Daily Triage | 2 | lots |\n"),
    ("loop-runtime.toml", "[patterns.daily-triage]\nlevel = \"L9\"\n"),
    ("gate.yaml", "denylist: [a]\n"),
])
def test_malformed_project_files_fail_cleanly(tmp_path: Path, name: str, content: str) -> None:
    """A malformed budget table, config or gate file → one line naming the file, exit 1, file unchanged."""
    (tmp_path / name).write_text(content)
    args = ["gate", "check", "src/a.py"] if name == "gate.yaml" else ["plan", "daily-triage"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert name in proc.stderr and "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert (tmp_path / name).read_text() == content


def test_malformed_run_log_is_refused_and_kept(tmp_path: Path) -> None:
    """A run log without its marker stops the run with one line; the log and state stay byte-identical."""
    (tmp_path / "loop-run-log.md").write_text("# my log\nno marker here\n")
    (tmp_path / "STATE.md").write_text("# Loop State\nLast run: never\n")
    proc = run_cli("run", "daily-triage", "--scenario", "noop", cwd=tmp_path)
    assert proc.returncode == 1 and "loop-run-log.md" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "loop-run-log.md").read_text() == "# my log\nno marker here\n"


def test_root_resolution_flag_over_env_over_cwd(tmp_path: Path) -> None:
    """--root beats LOOP_PROJECT_ROOT, which beats the cwd (R33)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "patterns").mkdir(parents=True)
    (a / "patterns" / "registry.yaml").write_text((Path(__file__).parent / "fixtures" / "patterns__registry.f361c148.yaml").read_text())
    env = {"LOOP_PROJECT_ROOT": str(a)}
    by_env = json.loads(run_cli("list", "--json", cwd=b, env=env).stdout)
    assert by_env["registry"]["source"] == "project" and len(by_env["patterns"]) == 7
    by_flag = json.loads(run_cli("--root", str(tmp_path), "list", "--json", cwd=b, env=env).stdout)
    assert by_flag["registry"]["source"] == "bundled"


def test_gate_check_exit_codes_and_json(tmp_path: Path) -> None:
    """gate check: 0 allowed, 2 denied, with loop-gate's JSON shape."""
    ok = run_cli("gate", "check", "src/app.py", "--json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["allowed"] is True
    bad = run_cli("gate", "check", "src/app.py,.env", "--json", cwd=tmp_path)
    assert bad.returncode == 2
    doc = json.loads(bad.stdout)
    assert doc["trigger"] == "denylist" and ".env" in doc["matchedPaths"]


def test_cost_json_matches_the_reference_vector(tmp_path: Path) -> None:
    """cost ci-sweeper L2 15m: 96 runs/day, 19250/run, 1848000/day (R31)."""
    doc = json.loads(run_cli("cost", "ci-sweeper", "--level", "L2", "--cadence", "15m", "--json", cwd=tmp_path).stdout)
    assert doc["runsPerDay"] == 96
    assert doc["scenarios"]["realistic"]["tokensPerRun"] == 19250
    assert doc["scenarios"]["realistic"]["tokensPerDay"] == 1848000


def test_kill_and_resume_round_trip(tmp_path: Path) -> None:
    """kill writes loop-pause-all, a run is paused (exit 0), resume clears it."""
    assert run_cli("kill", cwd=tmp_path).returncode == 0
    assert (tmp_path / "loop-pause-all").exists()
    paused = run_cli("run", "daily-triage", "--scenario", "noop", cwd=tmp_path)
    assert paused.returncode == 0 and "tick 1: paused" in paused.stdout
    assert run_cli("resume", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "loop-pause-all").exists()
    ran = run_cli("run", "daily-triage", "--scenario", "noop", cwd=tmp_path)
    assert ran.returncode == 0 and "tick 1: noop" in ran.stdout


def test_kill_one_pattern_leaves_others_running(tmp_path: Path) -> None:
    """kill <pattern> writes loop-pause-<pattern>; another loop still runs."""
    assert run_cli("kill", "ci-sweeper", cwd=tmp_path).returncode == 0
    assert (tmp_path / "loop-pause-ci-sweeper").exists()
    other = run_cli("run", "daily-triage", "--scenario", "noop", cwd=tmp_path)
    assert "tick 1: noop" in other.stdout


def test_status_json_is_stable(tmp_path: Path) -> None:
    """status --json lists loops with level, cadence, budget, runs, escalations and kill state."""
    run_cli("run", "daily-triage", "--scenario", "report-only", cwd=tmp_path)
    doc = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    (loop,) = [lp for lp in doc["loops"] if lp["pattern"] == "daily-triage"]
    assert set(loop) >= {"pattern", "name", "level", "cadence", "nextRun", "lastRun", "budget", "runs",
                         "openEscalations", "killSwitch"}
    assert loop["budget"]["spent"] == 4000 and loop["budget"]["cap"] == 100_000
    assert loop["lastRun"]["outcome"] == "report-only" and loop["runs"]["today"] == 1


def test_every_read_command_has_json(tmp_path: Path) -> None:
    """list, plan, cost, gate check, status, escalations all accept --json and print JSON."""
    for args in (["list"], ["plan", "ci-sweeper"], ["cost", "ci-sweeper"], ["gate", "check", "a.py"], ["status"],
                 ["escalations"]):
        proc = run_cli(*args, "--json", cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        json.loads(proc.stdout)


def test_malformed_ledger_stops_an_l2_run_before_any_token(tmp_path: Path) -> None:
    """A broken loop-ledger.json at L2: one line naming the file, exit 1, nothing written."""
    import subprocess

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "loop-ledger.json").write_text('{"goal": "x", "attempts": "many"}')
    proc = run_cli("run", "ci-sweeper", "--level", "L2", cwd=tmp_path)
    assert proc.returncode == 1 and "loop-ledger.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "loop-run-log.md").exists() and not (tmp_path / "ci-sweeper-state.md").exists()
    assert (tmp_path / "loop-ledger.json").read_text() == '{"goal": "x", "attempts": "many"}'
