"""Concurrent ticks lose nothing: N real CLI processes × M ticks of different patterns on one project.

Before the per-file locks, six patterns ticked at once produced six store ticks but only
three to five run-log entries (each process read the log, appended, and wrote it back over
the others). Here every process starts at the same moment; afterwards the run log holds
exactly N×M entries, every shared file still parses, the ledger holds every attempt, and
git status shows no lock file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop_runtime.formats.ledger import parse_ledger
from loop_runtime.formats.runlog import parse_run_log
from loop_runtime.formats.state import parse_state
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

TICKS = 3
# L1 report ticks of five patterns (three of them share STATE.md) and one L2 pattern whose
# ticks each append two attempts (a reject, then an accept) to the shared loop-ledger.json
L1 = ["daily-triage", "issue-triage", "changelog-drafter", "pr-babysitter", "post-merge-cleanup"]
L2 = ["ci-sweeper"]
SHARED_STATE = ("daily-triage", "issue-triage", "changelog-drafter")

REPORT = "triage: {decision: report, tokens: 100, summary: watch, items: [{id: W-1, title: watch it}]}\n"
FIX = """triage: {decision: act, tokens: 100, items: [{id: F-1, title: fix a}]}
implementer:
  - {files: {src/a.py: "x = 2\\n"}, tokens: 100}
  - {files: {src/a.py: "x = 3\\n"}, tokens: 100}
verifier:
  - {verdict: REJECT, reasons: [not yet], tokens: 100}
  - {verdict: APPROVE, tokens: 100}
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def _project(root: Path) -> None:
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "patterns").mkdir()
    reg = (FIXTURES / "patterns__registry.yaml").read_text()
    for pid in SHARED_STATE[1:]:  # several loops, one STATE.md: the hardest case for a lost update
        reg = reg.replace(f"state: {pid}-state.md", "state: STATE.md")
    (root / "patterns" / "registry.yaml").write_text(reg)
    (root / "STATE.md").write_text("# Loop State\n\nLast run: never\n")
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("x = 1\n")
    (root / "report.yaml").write_text(REPORT)
    (root / "fix.yaml").write_text(FIX)
    (root / ".gitignore").write_text("report.yaml\nfix.yaml\n")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "init")


def test_n_processes_by_m_ticks_give_exactly_n_times_m_entries(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    _project(root)
    assert "STATE.md" in (root / "patterns" / "registry.yaml").read_text()
    env = {**os.environ, "LOOP_RUNTIME_BACKEND": "", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x", "LOOP_RUNTIME_LOCK_TIMEOUT_S": "120"}
    env.pop("LOOP_PROJECT_ROOT", None)
    go = tmp_path / "go"
    # each child waits for the go file so that all of them hit the files at the same moment
    starter = ("import os, sys, time, runpy\n"
               f"while not os.path.exists({str(go)!r}): time.sleep(0.005)\n"
               "sys.argv = ['loop-runtime', *sys.argv[1:]]\n"
               "runpy.run_module('loop_runtime', run_name='__main__')\n")
    procs = []
    for pid in L1 + L2:
        level, scenario = ("L2", "fix.yaml") if pid in L2 else ("L1", "report.yaml")
        args = ["--root", str(root), "run", pid, "--level", level, "--ticks", str(TICKS), "--scenario",
                str(root / scenario), "--log-format", "none", "--json"]
        procs.append((pid, subprocess.Popen([sys.executable, "-c", starter, *args], env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)))
    time.sleep(0.3)
    go.write_text("go")
    results = {}
    for pid, p in procs:
        out, err = p.communicate(timeout=280)
        assert p.returncode in (0, 2), (pid, p.returncode, err[-2000:])
        results[pid] = json.loads(out)
    n = len(L1) + len(L2)

    # the run log: exactly N×M entries, M per pattern, each tick's tokens as its process reported them
    log = parse_run_log((root / "loop-run-log.md").read_text())
    assert log.has_marker
    assert len(log.entries) == n * TICKS, [e.pattern for e in log.entries]
    for pid in L1 + L2:
        mine = [e for e in log.entries if e.pattern == pid]
        assert len(mine) == TICKS, pid
        assert sorted(e.tokens_estimate for e in mine) == sorted(t["tokens"] for t in results[pid]["ticks"])
    assert [e.outcome for e in log.entries if e.pattern in L1] == ["report-only"] * len(L1) * TICKS

    # every state file still parses and carries this run's Last run line
    for name in ("STATE.md", "pr-babysitter-state.md", "post-merge-state.md", "ci-sweeper-state.md"):
        text = (root / name).read_text()
        doc = parse_state(text, file=name)
        assert doc.sections, name
        assert "Last run:" in text and "never" not in text.split("Last run:")[1].splitlines()[0], name
    assert (root / "STATE.md").read_text().count("Last run:") == 1

    # the ledger: every attempt of every L2 tick (one reject + one accept each), numbered without gaps
    ledger = parse_ledger((root / "loop-ledger.json").read_text())
    l2 = [(t["outcome"], t.get("note")) for pid in L2 for t in results[pid]["ticks"]]
    assert [a.outcome for a in ledger.attempts] == ["failure", "success"] * (len(L2) * TICKS), (l2, ledger)
    assert [a.iteration for a in ledger.attempts] == list(range(1, 2 * len(L2) * TICKS + 1))

    # the store agrees: N×M finished ticks
    import sqlite3

    with sqlite3.connect(root / ".loop-runtime" / "runtime.db") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM ticks").fetchone()
    assert count == n * TICKS

    # no lock file anywhere in the user's tree or in git status
    status = _git(root, "status", "--porcelain", "--untracked-files=all")
    assert ".lock" not in status and ".loop-runtime" not in status
    assert not [p for p in root.rglob("*.lock") if ".loop-runtime" not in p.parts and ".git" not in p.parts]
    shutil.rmtree(root / ".loop-worktrees", ignore_errors=True)
