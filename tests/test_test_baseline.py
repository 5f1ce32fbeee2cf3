"""The runner side of "tests cannot be weakened": per-test reports from real pytest runs, the
base commit's run in a clean detached checkout, cached per (base commit, command)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from loop_runtime.adapters.git_workspace import GitWorkspace
from loop_runtime.adapters.test_runner import ProjectTestRunner, read_report, run_tests
from tests.support.gitrepo import git, make_repo

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
PYTEST = f"{sys.executable} -m pytest -q -p no:cacheprovider"
TESTS = ("import pytest\n\n\ndef test_a():\n    pass\n\n\ndef test_b():\n    assert 0\n\n\n"
         "@pytest.mark.skip\ndef test_c():\n    pass\n")


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_pytest_run_reports_every_test_by_name(tmp_path: Path) -> None:
    """Whatever the command, pytest is asked for JUnit XML through PYTEST_ADDOPTS; deselected come from its summary."""
    _write(tmp_path, {"tests/test_x.py": TESTS + "\n\ndef test_d():\n    pass\n"})
    run = run_tests(tmp_path, f"{PYTEST} -k 'not test_d'", timeout_s=120, env=ENV)
    assert run.report is not None and run.report.source == "junit"
    assert {c.name: c.outcome for c in run.report.cases or ()} == {
        "tests.test_x::test_a": "passed", "tests.test_x::test_b": "failed", "tests.test_x::test_c": "skipped"}
    assert run.report.deselected == 1
    assert "SKIPPED [1] tests/test_x.py" in run.output  # -ra: the verifier sees what did not pass, and why
    assert "PASSED" not in run.output  # and the failures are not pushed out of the tail by passing tests


def test_the_users_pytest_addopts_are_kept(tmp_path: Path) -> None:
    _write(tmp_path, {"tests/test_x.py": TESTS})
    run = run_tests(tmp_path, PYTEST, timeout_s=120, env={**ENV, "PYTEST_ADDOPTS": "-k test_a"})
    assert run.report is not None and run.report.collected == 1 and run.report.deselected == 2


def test_the_report_lives_outside_the_worktree_and_is_removed(tmp_path: Path) -> None:
    """The JUnit path is a fresh private temp dir (not in the worktree), gone after the run."""
    _write(tmp_path, {"tests/test_x.py": "import os\n\n\ndef test_where():\n"
                                         "    print('ADDOPTS=' + os.environ['PYTEST_ADDOPTS'])\n"})
    run = run_tests(tmp_path, f"{PYTEST} -s", timeout_s=120, env=ENV)
    line = next(ln for ln in run.output.splitlines() if "ADDOPTS=" in ln)
    junit = Path(line.split("--junitxml=", 1)[1].split()[0])
    assert not junit.is_relative_to(tmp_path) and not junit.parent.exists()
    assert len(junit.stem) == len("0123456789abcdef-pytest")  # an unguessable name in a private mkdtemp folder
    assert not any(p.suffix == ".xml" for p in tmp_path.rglob("*"))


def test_jest_and_mocha_junit_reporters_are_redirected_and_merged(tmp_path: Path) -> None:
    """A project that already uses jest-junit / mocha-junit-reporter: their XML goes to the private folder too,
    and one command running several runners gives one report of every test."""
    _write(tmp_path, {"tests/test_x.py": "def test_py():\n    pass\n"})
    fake_jest = ("cat > \"$JEST_JUNIT_OUTPUT_FILE\" <<'EOF'\n<testsuites><testsuite name='calc'>"
                 "<testcase classname='calc adds' name='adds'/><testcase classname='calc adds' name='later'>"
                 "<skipped/></testcase></testsuite></testsuites>\nEOF\n")
    run = run_tests(tmp_path, f"{fake_jest}{PYTEST}", timeout_s=120, env=ENV)
    assert run.passed and run.report is not None and run.report.source == "junit"
    assert {c.name: c.outcome for c in run.report.cases or ()} == {
        "calc adds::adds": "passed", "calc adds::later": "skipped", "tests.test_x::test_py": "passed"}
    assert not any(p.suffix == ".xml" for p in tmp_path.rglob("*"))


def test_a_symlinked_or_oversized_report_is_no_report(tmp_path: Path) -> None:
    """A report replaced by a symlink or folder is not followed, and a garbled one is not replaced by the summary;
    only a missing one falls back to the summary lines."""
    target = tmp_path / "forged.xml"
    target.write_text('<testsuite><testcase classname="m" name="t"/></testsuite>')
    link = tmp_path / "report.xml"
    link.symlink_to(target)
    assert read_report(link, "1 passed in 0.01s\n") is None
    assert read_report(tmp_path / "missing.xml", "1 passed in 0.01s\n").source == "pytest"  # type: ignore[union-attr]
    garbled = tmp_path / "garbled.xml"
    garbled.write_text("<testsuites>")
    assert read_report(garbled, "1 passed in 0.01s\n") is None
    (tmp_path / "dir.xml").mkdir()
    assert read_report(tmp_path / "dir.xml", "") is None


def _project(tmp_path: Path) -> tuple[Path, Path]:
    counter = tmp_path / "runs.log"
    repo = make_repo(tmp_path / "repo", {"tests/test_x.py": TESTS, "pytest.ini": "[pytest]\n"})
    return repo, counter


def test_baseline_runs_in_a_clean_checkout_once_per_base_commit(tmp_path: Path) -> None:
    """A clean detached worktree of the commit (the user's edits are not in it); cached across runners."""
    repo, counter = _project(tmp_path)
    (repo / "tests" / "test_x.py").write_text("def test_only_in_the_checkout():\n    pass\n")  # uncommitted
    base = git(repo, "rev-parse", "HEAD")
    ws = GitWorkspace(repo)
    cmd = f'echo "$PWD" >> {counter}; {PYTEST}'
    first = ProjectTestRunner(cmd, env=ENV, checkout=ws.base_checkout, cache_dir=repo / ".loop-runtime" / "tb")
    run = first.baseline(base)
    assert run is not None and run.report is not None
    assert {c.name for c in run.report.cases or ()} == {"tests.test_x::test_a", "tests.test_x::test_b",
                                                        "tests.test_x::test_c"}
    assert first.baseline(base) == run
    again = ProjectTestRunner(cmd, env=ENV, checkout=ws.base_checkout, cache_dir=repo / ".loop-runtime" / "tb")
    assert again.baseline(base).report == run.report  # type: ignore[union-attr]
    lines = counter.read_text().splitlines()
    assert len(lines) == 1 and "/.loop-runtime/base-checkouts/" in lines[0]
    assert not any((repo / ".loop-runtime" / "base-checkouts").iterdir())
    assert "base-checkouts" not in git(repo, "worktree", "list")
    assert git(repo, "status", "--porcelain") == "M tests/test_x.py"


def test_the_cache_is_per_command_and_a_broken_entry_is_run_again(tmp_path: Path) -> None:
    repo, counter = _project(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    ws = GitWorkspace(repo)
    cache = repo / ".loop-runtime" / "tb"

    def runner(extra: str = "") -> ProjectTestRunner:
        return ProjectTestRunner(f'echo x >> {counter}; {PYTEST}{extra}', env=ENV, checkout=ws.base_checkout,
                                 cache_dir=cache)

    runner().baseline(base)
    runner(" -k test_a").baseline(base)
    assert len(counter.read_text().splitlines()) == 2  # another command is another baseline
    for f in cache.glob("*.json"):
        doc = json.loads(f.read_text())
        doc["report"]["cases"] = "forged"
        f.write_text(json.dumps(doc))
    run = runner().baseline(base)
    assert len(counter.read_text().splitlines()) == 3 and run is not None and run.report is not None
    assert run.report.collected == 3


def test_no_checkout_no_baseline(tmp_path: Path) -> None:
    assert ProjectTestRunner(PYTEST, env=ENV).baseline("a" * 40) is None


@contextmanager
def _fake_checkout(path: Path):
    yield str(path)


def test_a_base_without_tests_is_no_baseline_to_compare(tmp_path: Path) -> None:
    run = ProjectTestRunner(None, env=ENV, checkout=lambda c: _fake_checkout(tmp_path)).baseline("a" * 40)
    assert run is not None and run.command is None and run.report is None


def _forging_tests(cache: Path, base: str, command: str) -> str:
    """A test file that writes a forged 'base commit ran nothing' result into the runtime's cache."""
    import hashlib

    key = hashlib.sha256(f"{base}\0{command}".encode()).hexdigest()[:32]
    forged = {"version": 1, "base_commit": base, "configured": command, "command": command, "exit_code": 0,
              "passed": True, "output": "", "report": {"source": "junit", "passed": 0, "failed": 0, "errors": 0,
                                                       "skipped": 0, "xfailed": 0, "deselected": 0, "cases": []}}
    return (f"import json, pathlib\n\n\ndef test_forge():\n    p = pathlib.Path({str(cache / (key + '.json'))!r})\n"
            f"    p.parent.mkdir(parents=True, exist_ok=True)\n    p.write_text(json.dumps({forged!r}))\n")


def test_an_attempts_tests_cannot_forge_the_cached_base_result(tmp_path: Path) -> None:
    """Whatever an attempt's tests write into the cache — before or after the base ran, in this tick or for
    the next — the base result believed is the one the runtime computed."""
    repo, counter = _project(tmp_path)
    base = git(repo, "rev-parse", "HEAD")
    ws = GitWorkspace(repo)
    cache = repo / ".loop-runtime" / "tb"
    cmd = f'echo x >> {counter}; {PYTEST}'

    def runner() -> ProjectTestRunner:
        return ProjectTestRunner(cmd, env=ENV, checkout=ws.base_checkout, cache_dir=cache)

    def attempt(n: int) -> str:
        handle = ws.prepare(f"run-{n}", "p")
        (Path(handle.path) / "tests" / "test_forge.py").write_text(_forging_tests(cache, base, cmd))
        return handle.path

    # 1. forged before the base ran, in the same tick: not believed, the base runs
    r = runner()
    r.run(attempt(1))
    assert r.baseline(base).report.collected == 3  # type: ignore[union-attr]
    # 2. forged after the base ran: the next tick still sees the real result, without a new base run
    r.run(attempt(2))
    runs_so_far = len(counter.read_text().splitlines())
    assert runner().baseline(base).report.collected == 3  # type: ignore[union-attr]
    assert len(counter.read_text().splitlines()) == runs_so_far
    # 3. forged by an attempt whose tick never ran the base: removed, the next tick runs the base itself
    for f in cache.glob("*.json"):
        f.unlink()
    runner().run(attempt(3))
    assert not list(cache.glob("*.json"))
    assert runner().baseline(base).report.collected == 3  # type: ignore[union-attr]
