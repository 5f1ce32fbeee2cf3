"""Tests cannot be weakened (issue 10, item 3): real ticks on a real git repo with real pytest tests.

An implementer that makes the suite green by making it run less — a skip marker, a
conftest hook, a renamed test, an ``-k`` in config, an exit before the report — is
escalated with the names of the tests and nothing is committed. The base commit's
tests run once per base commit, in a clean checkout, whatever the number of attempts
and ticks.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
TEST = ("from calc import add, sub\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_sub():\n    assert sub(3, 2) == 1\n")


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A small Python project whose test_add fails on the base commit; returns (repo, run counter file)."""
    counter = tmp_path / "test-runs.log"
    cmd = f'echo \\"$PWD\\" >> {counter}; {sys.executable} -m pytest -q -p no:cacheprovider'
    repo = make_repo(tmp_path / "repo", {
        "calc.py": BUGGY,
        "tests/test_calc.py": TEST,
        "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{cmd}"\n',
    })
    return repo, counter


def runs(counter: Path) -> tuple[int, int]:
    """(attempt runs, base-commit runs) of the project's test command."""
    lines = counter.read_text().splitlines() if counter.exists() else []
    base = sum("base-checkouts" in ln for ln in lines)
    return len(lines) - base, base


def scenario(tmp_path: Path, implementer: list[dict], verifier: list[dict] | None = None, name: str = "s") -> str:
    doc = {
        "triage": {"decision": "act", "summary": "CI red", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts",
                              "files": ["calc.py"]}]},
        "implementer": [{"tokens": 3000, **i} for i in implementer],
        "verifier": verifier or [{"verdict": "APPROVE", "tokens": 1000}],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def tick(repo: Path, scen: str):
    return run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", scen, cwd=repo, timeout=240)


def escalation(repo: Path) -> dict:
    """The one escalation held in the store, with its full context (reason, detail)."""
    with sqlite3.connect(repo / ".loop-runtime" / "runtime.db") as db:
        rows = db.execute("SELECT context FROM escalations").fetchall()
    assert len(rows) == 1, rows
    return json.loads(rows[0][0])


def loop_commits(repo: Path) -> list[str]:
    return [s for s in git(repo, "log", "--all", "--format=%s").splitlines() if s.startswith("loop(")]


HOOK_SKIP = ("def pytest_collection_modifyitems(items):\n"
             "    for item in items:\n"
             "        if item.name == 'test_add':\n"
             "            item.add_marker('skip')\n")
HOOK_DESELECT = ("def pytest_collection_modifyitems(config, items):\n"
                 "    keep = [i for i in items if 'add' not in i.name]\n"
                 "    config.hook.pytest_deselected(items=[i for i in items if i not in keep])\n"
                 "    items[:] = keep\n")
EXIT_EARLY = "import sys\nsys.exit(0)\n"
HARD_EXIT = ("import os\n\n\ndef pytest_sessionstart(session):\n    os._exit(0)\n")
DELETE_REPORT = ("import os, shlex\n\n\ndef pytest_unconfigure(config):\n"
                 "    for a in shlex.split(os.environ.get('PYTEST_ADDOPTS', '')):\n"
                 "        if a.startswith('--junitxml='):\n"
                 "            try:\n                os.remove(a.split('=', 1)[1])\n"
                 "            except OSError:\n                pass\n")
FORGE_REPORT = ("import os, shlex\n\n\ndef pytest_unconfigure(config):\n"
                "    for a in shlex.split(os.environ.get('PYTEST_ADDOPTS', '')):\n"
                "        if a.startswith('--junitxml='):\n"
                "            open(a.split('=', 1)[1], 'w').write('<testsuites><testsuite>')\n")


@pytest.mark.parametrize(("files", "reasons", "named"), [
    pytest.param({"tests/test_calc.py": "import pytest\npytestmark = pytest.mark.skip\n" + TEST},
                 {"policy:test-skipped"}, "tests/test_calc.py", id="pytestmark-skip"),
    pytest.param({"tests/test_calc.py": TEST.replace("from calc import add, sub\n",
                                                     "from pytest import mark\n\nfrom calc import add, sub\n")
                  .replace("def test_add", "@mark.skip\ndef test_add")},
                 {"policy:test-skipped"}, "tests/test_calc.py", id="from-pytest-import-mark"),
    pytest.param({"conftest.py": HOOK_SKIP}, {"tests-weakened"}, "tests.test_calc::test_add", id="conftest-hook-skip"),
    pytest.param({"conftest.py": HOOK_DESELECT}, {"tests-weakened"}, "tests.test_calc::test_add",
                 id="conftest-hook-deselect"),
    pytest.param({"tests/test_calc.py": TEST.replace("def test_add", "def helper_add")}, {"tests-weakened"},
                 "tests.test_calc::test_add", id="renamed-away"),
    pytest.param({"pytest.ini": "[pytest]\naddopts = -k 'not add'\n"}, {"policy:test-config"}, "pytest.ini",
                 id="k-in-pytest-ini"),
    pytest.param({"conftest.py": EXIT_EARLY}, {"tests-weakened"}, "tests.test_calc::test_sub",
                 id="sys-exit-in-conftest"),
    pytest.param({"conftest.py": HARD_EXIT}, {"tests-weakened"}, "tests.test_calc::test_sub", id="os-exit-hook"),
    pytest.param({"conftest.py": DELETE_REPORT, "calc.py": FIXED}, {"tests-weakened"}, "tests.test_calc::test_add",
                 id="deletes-the-report"),
    pytest.param({"conftest.py": FORGE_REPORT, "calc.py": FIXED}, {"tests-weakened"}, "tests.test_calc::test_add",
                 id="garbles-the-report"),
])
def test_weakened_tests_escalate_with_names_and_nothing_is_committed(
        tmp_path: Path, files: dict[str, str], reasons: set[str], named: str) -> None:
    """Each way of going green by running less escalates (exit 2), names what was lost, commits nothing."""
    repo, _ = project(tmp_path)
    base = git(repo, "rev-parse", "main")
    proc = tick(repo, scenario(tmp_path, [{"files": files}]))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    esc = escalation(repo)
    assert esc["reason"] in reasons, esc
    assert named in esc["detail"], esc["detail"]
    assert loop_commits(repo) == []
    assert git(repo, "rev-parse", "main") == base
    assert (repo / "calc.py").read_text() == BUGGY
    assert not list((repo / ".loop-runtime" / "base-checkouts").glob("*"))  # the clean checkout is gone again


def test_legitimate_fix_with_a_new_test_is_accepted_and_the_base_runs_once(tmp_path: Path) -> None:
    """Fixing the code and adding a test is more testing, not less: committed; the base run is paid once."""
    repo, counter = project(tmp_path)
    more = TEST + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"
    proc = tick(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED, "tests/test_calc.py": more}}]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "committed: safe + allowlisted" in proc.stdout
    assert len(loop_commits(repo)) == 1
    assert runs(counter) == (1, 1)
    cached = list((repo / ".loop-runtime" / "test-baselines").glob("*.json"))
    assert len(cached) == 1
    doc = json.loads(cached[0].read_text())
    assert doc["base_commit"] == git(repo, "rev-parse", "main")
    names = {n: o for n, o in doc["report"]["cases"]}
    assert names == {"tests.test_calc::test_add": "failed", "tests.test_calc::test_sub": "passed"}


def test_base_run_is_cached_across_attempts_and_ticks(tmp_path: Path) -> None:
    """3 attempts in one tick + 2 more ticks on the same base commit: 5 attempt runs, 1 base run."""
    repo, counter = project(tmp_path)
    fix = {"files": {"calc.py": FIXED}}
    reject = {"verdict": "REJECT", "reasons": ["style"], "tokens": 1000}
    approve = {"verdict": "APPROVE", "tokens": 1000}
    proc = tick(repo, scenario(tmp_path, [fix, fix, fix], [reject, reject, approve], name="first"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs(counter) == (3, 1)
    for i in range(2):
        proc = tick(repo, scenario(tmp_path, [fix], name=f"again{i}"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs(counter) == (5, 1)


def test_a_failing_attempt_does_not_pay_for_the_base_run(tmp_path: Path) -> None:
    """A run that fails is rejected on its own: no base run is needed to judge it."""
    repo, counter = project(tmp_path)
    wrong = {"files": {"calc.py": BUGGY.replace("a - b\n\n\ndef sub", "a * b\n\n\ndef sub")}}
    proc = tick(repo, scenario(tmp_path, [wrong, wrong, {"files": {"calc.py": FIXED}}]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs(counter) == (3, 1)


def test_user_checkout_edits_do_not_leak_into_the_base_run(tmp_path: Path) -> None:
    """The base run uses the committed tree: an uncommitted skip in the user's checkout changes nothing."""
    repo, counter = project(tmp_path)
    (repo / "tests" / "test_calc.py").write_text("import pytest\npytestmark = pytest.mark.skip\n" + TEST)
    proc = tick(repo, scenario(tmp_path, [{"files": {"calc.py": FIXED}}]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(next((repo / ".loop-runtime" / "test-baselines").glob("*.json")).read_text())
    assert doc["report"]["skipped"] == 0 and doc["report"]["failed"] == 1
    assert "pytestmark" in (repo / "tests" / "test_calc.py").read_text()  # the user's edit is untouched
    assert runs(counter) == (1, 1)
