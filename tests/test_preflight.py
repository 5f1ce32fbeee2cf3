"""Preflight: a bad file is found before any side effect — exit 1, one line, the tree byte-identical.

Each case breaks one kind of file a tick reads or writes, runs the real CLI, and checks
that nothing at all changed: every file under the project (``.git`` included) hashes the
same, no ``.loop-runtime/`` (so no store, no reservation, no spend), no branch, no worktree.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from loop_runtime.formats.runlog import MARKER
from tests.conftest import FIXTURES, run_cli

SCENARIO = "triage: {decision: act, tokens: 100, items: [{id: X-1, title: fix it}]}\n" \
           "implementer: {files: {src/a.py: 'x = 2\\n'}, tokens: 100}\nverifier: {verdict: APPROVE, tokens: 100}\n"


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under root (``.git`` too): content hash, mode, symlink target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[rel] = f"dir:{st.st_mode:o}"
            else:
                out[rel] = f"file:{st.st_mode:o}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed loop-engineering project whose files are all valid."""
    root = tmp_path / "proj"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "patterns").mkdir()
    shutil.copy(FIXTURES / "patterns__registry.yaml", root / "patterns" / "registry.yaml")
    (root / "STATE.md").write_text("# Loop State\n\nLast run: never\n")
    (root / "ci-sweeper-state.md").write_text("# CI Sweeper State\n")
    (root / "loop-run-log.md").write_text(f"# Run log\n\n## Recent Runs\n\n{MARKER}\n")
    (root / "gate.yaml").write_text("version: 1\ndenylist: ['.env']\nmaxFiles: 5\nautoMergeAllowlist: []\n")
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("x = 1\n")
    (root / "scenario.yaml").write_text(SCENARIO)
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@x", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def _corrupt_registry(root: Path) -> None:
    reg = root / "patterns" / "registry.yaml"
    reg.write_text(reg.read_text().replace("cadence: 5m-15m", "cadence: 15s", 1))


def _state_is_symlink_out(root: Path) -> None:
    outside = root.parent / "outside-state.md"
    outside.write_text("# elsewhere\n")
    (root / "ci-sweeper-state.md").unlink()
    (root / "ci-sweeper-state.md").symlink_to(outside)


def _read_only_run_log(root: Path) -> None:
    (root / "loop-run-log.md").chmod(0o444)


# (case id, how to break the project, extra CLI args, extra env, what the one line must name)
CASES: list[tuple[str, Callable[[Path], None], list[str], dict[str, str], list[str]]] = [
    ("run-log-without-marker", lambda r: (r / "loop-run-log.md").write_text("# my log\nno marker\n"), [], {},
     ["loop-run-log.md", "marker"]),
    ("state-file-is-a-directory", lambda r: ((r / "ci-sweeper-state.md").unlink(),
                                             (r / "ci-sweeper-state.md").mkdir(),
                                             (r / "ci-sweeper-state.md" / "x").write_text("x")), [], {},
     ["ci-sweeper-state.md", "directory"]),
    ("malformed-gate-yaml", lambda r: (r / "gate.yaml").write_text("version: 1\ndenylist: ['.env']\nmaxFiles: many\n"), [], {},
     ["gate.yaml"]),
    ("malformed-ledger", lambda r: (r / "loop-ledger.json").write_text('{"goal": "x", "attempts": "many"}'), [], {},
     ["loop-ledger.json", "attempts"]),
    ("malformed-scenario", lambda r: (r / "scenario.yaml").write_text("triage: {decision: act, tokens: -5}\n"), [],
     {}, ["scenario.yaml", "triage.tokens", "-5"]),
    ("scenario-wrong-shape", lambda r: (r / "scenario.yaml").write_text("triage: [1, 2]\n"), [], {},
     ["scenario.yaml", "triage[0]"]),
    ("malformed-loop-budget", lambda r: (r / "loop-budget.md").write_text(
        "## Daily limits\n\n| Loop | Max runs/day | Max tokens/day |\n|---|---|---|\n| CI Sweeper | 2 | lots |\n"),
     [], {}, ["loop-budget.md", "lots"]),
    ("loop-md-not-utf8", lambda r: (r / "LOOP.md").write_bytes(b"# LOOP\n\xff\xfe broken\n"), [], {},
     ["LOOP.md", "UTF-8"]),
    ("malformed-registry", _corrupt_registry, [], {}, ["patterns/registry.yaml", "cadence", "15s"]),
    ("bad-toml-value", lambda r: (r / "loop-runtime.toml").write_text("[patterns.ci-sweeper]\nlevel = \"L9\"\n"),
     [], {}, ["loop-runtime.toml", "level", "L9"]),
    ("bad-toml-top-value", lambda r: (r / "loop-runtime.toml").write_text("max_attempts = 0\n"), [], {},
     ["loop-runtime.toml", "max_attempts", "0"]),
    ("bad-env-backend", lambda r: None, [], {"LOOP_RUNTIME_BACKEND": "gpt-bogus"},
     ["LOOP_RUNTIME_BACKEND", "gpt-bogus"]),
    ("unwritable-run-log", _read_only_run_log, [], {}, ["loop-run-log.md", "not writable", "0o444"]),
    ("state-symlink-escapes", _state_is_symlink_out, [], {}, ["ci-sweeper-state.md", "outside the project"]),
]


def _run(root: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"LOOP_RUNTIME_BACKEND": "", "LOOP_RUNTIME_NOTIFY": "", "LOOP_RUNTIME_DASHBOARD_TOKEN": ""}
    return run_cli("--root", str(root), *args, env={**base, **env})


def _assert_untouched(root: Path, before: dict[str, str], proc: subprocess.CompletedProcess[str],
                      needles: list[str]) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (root / ".loop-runtime").exists()  # no store: no reservation, no spend, no lock files
    assert not (root / ".loop-worktrees").exists()
    assert tree_digest(root) == before  # .git included: no branch, no worktree metadata, no index change


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_file_stops_an_l2_tick_before_any_side_effect(project: Path, case: tuple) -> None:
    _name, breaks, args, env, needles = case
    breaks(project)
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--level", "L2", "--scenario", str(project / "scenario.yaml"),
                          "--log-format", "none", *args], env)
    _assert_untouched(project, before, proc, needles)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_dry_run_reports_the_same_problem_and_writes_nothing(project: Path, case: tuple) -> None:
    _name, breaks, args, env, needles = case
    if _name in ("unwritable-run-log", "state-symlink-escapes"):
        pytest.skip("a dry run writes nothing, so write targets are not its concern")
    breaks(project)
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--level", "L2", "--dry-run", "--scenario",
                          str(project / "scenario.yaml"), "--log-format", "none", *args], env)
    _assert_untouched(project, before, proc, needles)


def test_the_valid_project_really_runs_so_the_cases_above_can_fail(project: Path) -> None:
    """Control: the same command on the unbroken project ticks, writes and creates the store."""
    proc = _run(project, ["run", "ci-sweeper", "--level", "L2", "--scenario", str(project / "scenario.yaml"),
                          "--log-format", "none"], {"LOOP_RUNTIME_NOTIFY": " , , "})
    assert proc.returncode in (0, 2), proc.stderr
    assert (project / ".loop-runtime" / "runtime.db").exists()
    assert (project / "loop-run-log.md").read_text().count('"pattern":"ci-sweeper"') == 1


def test_a_parent_of_a_write_target_that_is_a_file_is_refused(project: Path) -> None:
    """`docs` is a file, so `docs/last-run.json` cannot exist; a registry state path under a file is refused."""
    reg = project / "patterns" / "registry.yaml"
    reg.write_text(reg.read_text().replace("state: ci-sweeper-state.md", "state: src/a.py/state.md"))
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--level", "L1", "--scenario", str(project / "scenario.yaml"),
                          "--log-format", "none"], {})
    _assert_untouched(project, before, proc, ["src/a.py/state.md"])


def test_start_checks_every_loop_before_the_store(project: Path) -> None:
    (project / "loop-run-log.md").write_text("no marker\n")
    before = tree_digest(project)
    proc = _run(project, ["start", "ci-sweeper", "daily-triage", "--log-format", "plain"], {})
    _assert_untouched(project, before, proc, ["loop-run-log.md", "marker"])


def test_a_short_dashboard_token_from_the_environment_names_the_variable(project: Path) -> None:
    before = tree_digest(project)
    proc = _run(project, ["start", "ci-sweeper", "--dashboard", "--port", "18999"],
                {"LOOP_RUNTIME_DASHBOARD_TOKEN": "zq9x1"})
    _assert_untouched(project, before, proc, ["LOOP_RUNTIME_DASHBOARD_TOKEN"])
    assert "loop-runtime.toml" not in proc.stderr and "zq9x1" not in proc.stderr  # a secret is never echoed


def test_a_short_dashboard_token_from_the_file_names_the_file(project: Path) -> None:
    (project / "loop-runtime.toml").write_text('dashboard_token = "short"\n')
    before = tree_digest(project)
    proc = _run(project, ["start", "ci-sweeper", "--dashboard", "--port", "18999"], {})
    _assert_untouched(project, before, proc, ["loop-runtime.toml"])
    assert "LOOP_RUNTIME_DASHBOARD_TOKEN" not in proc.stderr


def test_a_bad_env_value_names_the_variable_not_the_file(project: Path) -> None:
    (project / "loop-runtime.toml").write_text('model = "fine"\n')
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--log-format", "none"], {"LOOP_RUNTIME_BACKEND": "nope"})
    _assert_untouched(project, before, proc, ["LOOP_RUNTIME_BACKEND", "nope"])
    assert "loop-runtime.toml" not in proc.stderr


def test_topup_resume_checks_before_recording_the_topup(project: Path) -> None:
    (project / "loop-ledger.json").write_text("[not json")
    (project / "loop-runtime.toml").write_text('[patterns.ci-sweeper]\nlevel = "L2"\n')
    before = tree_digest(project)
    proc = _run(project, ["topup", "ci-sweeper", "1000", "--resume"], {})
    _assert_untouched(project, before, proc, ["loop-ledger.json"])


def test_topup_refuses_a_state_file_that_is_a_directory(project: Path) -> None:
    (project / "ci-sweeper-state.md").unlink()
    (project / "ci-sweeper-state.md").mkdir()
    before = tree_digest(project)
    proc = _run(project, ["topup", "ci-sweeper", "1000"], {})
    _assert_untouched(project, before, proc, ["ci-sweeper-state.md", "directory"])


def test_approve_without_a_store_creates_none(project: Path) -> None:
    before = tree_digest(project)
    proc = _run(project, ["approve", "esc-1"], {})
    _assert_untouched(project, before, proc, [".loop-runtime/runtime.db"])


def test_a_fifo_where_the_run_log_should_be_is_refused_without_blocking(project: Path) -> None:
    (project / "loop-run-log.md").unlink()
    os.mkfifo(project / "loop-run-log.md")
    before = tree_digest_no_fifo(project)
    proc = _run(project, ["run", "ci-sweeper", "--scenario", str(project / "scenario.yaml"), "--log-format",
                          "none"], {})
    assert proc.returncode == 1 and "loop-run-log.md" in proc.stderr and "regular file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (project / ".loop-runtime").exists() and tree_digest_no_fifo(project) == before


def test_loop_runtime_path_that_is_a_file_is_refused(project: Path) -> None:
    (project / ".loop-runtime").write_text("not a folder\n")
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--scenario", str(project / "scenario.yaml"), "--log-format",
                          "none"], {})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and ".loop-runtime" in lines[0] and "folder" in lines[0]
    assert tree_digest(project) == before


def tree_digest_no_fifo(root: Path) -> dict[str, str]:
    """As tree_digest, but a FIFO is recorded by its mode (reading it would block)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            import stat as _stat

            rel = p.relative_to(root).as_posix()
            if _stat.S_ISFIFO(st.st_mode) or p.is_dir():
                out[rel] = f"special:{st.st_mode:o}"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_approve_checks_the_state_file_before_committing_anything(project: Path) -> None:
    """A held change whose state file became a directory: approve fails first — no commit, no branch move."""
    proc = _run(project, ["run", "ci-sweeper", "--level", "L2", "--scenario", "escalate", "--log-format", "none"],
                {})
    assert proc.returncode == 2, proc.stderr
    esc = json.loads(_run(project, ["escalations", "--json"], {}).stdout)
    esc_id = (esc["escalations"] if isinstance(esc, dict) else esc)[0]["id"]
    (project / "ci-sweeper-state.md").rename(project / "kept-state.md")
    (project / "ci-sweeper-state.md").mkdir()
    refs_before = _git(project, "for-each-ref", "--format=%(refname) %(objectname)")
    before = {k: v for k, v in tree_digest(project).items() if not k.startswith(".loop-runtime")}
    proc = _run(project, ["approve", esc_id], {})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "ci-sweeper-state.md" in lines[0], proc.stderr
    assert _git(project, "for-each-ref", "--format=%(refname) %(objectname)") == refs_before
    assert {k: v for k, v in tree_digest(project).items() if not k.startswith(".loop-runtime")} == before
    still = json.loads(_run(project, ["escalations", "--json"], {}).stdout)
    assert [e["id"] for e in (still["escalations"] if isinstance(still, dict) else still)] == [esc_id]


@pytest.mark.parametrize("var,value", [("LOOP_RUNTIME_BACKEND", "gpt-bogus"),
                                       ("LOOP_RUNTIME_OPENAI_BASE_URL", "localhost:8000/v1"),
                                       ("LOOP_RUNTIME_LOCK_TIMEOUT_S", "soon")])
def test_every_bad_env_value_names_its_variable(project: Path, var: str, value: str) -> None:
    (project / "loop-runtime.toml").write_text('openai_base_url = "http://localhost:8000/v1"\n')
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--scenario", str(project / "scenario.yaml"), "--log-format", "none"],
                {var: value})
    _assert_untouched(project, before, proc, [var])
    assert "loop-runtime.toml" not in proc.stderr


def test_a_bad_file_value_names_the_file(project: Path) -> None:
    (project / "loop-runtime.toml").write_text('openai_base_url = "localhost:8000/v1"\n')
    before = tree_digest(project)
    proc = _run(project, ["run", "ci-sweeper", "--log-format", "none"], {})
    _assert_untouched(project, before, proc, ["loop-runtime.toml", "openai_base_url", "localhost:8000/v1"])
