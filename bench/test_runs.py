"""Benchmark: how many runs of the project's tests N attempts cost, with the base-commit comparison.

"Tests cannot be weakened" runs the project's tests on the base commit as well as on each
attempt. That must be paid once per base commit, not once per attempt or per tick. This
script builds a small real Python project (a failing test, real pytest), runs real ticks
with the mock backend — one tick of 3 attempts (the verifier rejects twice) and 2 more
ticks on the same base commit — and counts every run of the test command from a line
the command itself appends (the base run is the one inside ``.loop-runtime/base-checkouts``).

    python bench/test_runs.py [--ticks 2]

Expected: ``attempt runs = 3 + ticks``, ``base runs = 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def build(root: Path, counter: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for k, v in (("user.name", "bench"), ("user.email", "bench@example.com"), ("commit.gpgsign", "false")):
        _git(repo, "config", k, v)
    cmd = f'echo \\"$PWD\\" >> {counter}; {sys.executable} -m pytest -q -p no:cacheprovider'
    for rel, text in {"calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
                      "loop-runtime.toml": f'test_command = "{cmd}"\n'}.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench project")
    return repo


def scenario(root: Path, name: str, attempts: int, verdicts: list[str]) -> str:
    doc = {
        "triage": {"decision": "act", "summary": "CI red", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "add() subtracts"}]},
        "implementer": [{"tokens": 3000, "files": {"calc.py": FIXED}}] * attempts,
        "verifier": [{"verdict": v, "tokens": 1000, "reasons": ["style"]} for v in verdicts],
    }
    path = root / f"{name}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def tick(repo: Path, scen: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "LOOP_PROJECT_ROOT"}
    proc = subprocess.run([sys.executable, "-m", "loop_runtime", "run", "ci-sweeper", "--level", "L2",
                           "--scenario", scen], cwd=repo, capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"tick failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.returncode


def count(counter: Path) -> tuple[int, int]:
    lines = counter.read_text().splitlines() if counter.exists() else []
    base = sum("base-checkouts" in ln for ln in lines)
    return len(lines) - base, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=2, help="further ticks on the same base commit")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-test-runs-") as tmp:
        root = Path(tmp)
        counter = root / "runs.log"
        repo = build(root, counter)
        start = time.perf_counter()
        tick(repo, scenario(root, "first", 3, ["REJECT", "REJECT", "APPROVE"]))
        first = count(counter)
        for i in range(args.ticks):
            tick(repo, scenario(root, f"again{i}", 1, ["APPROVE"]))
        attempts, base = count(counter)
        elapsed = time.perf_counter() - start
    total_attempts = 3 + args.ticks
    print(f"tick 1: 3 attempts → {first[0]} attempt test runs + {first[1]} base-commit run(s)")
    print(f"+{args.ticks} tick(s) on the same base: {total_attempts} attempts → {attempts} attempt test runs "
          f"+ {base} base-commit run(s) ({elapsed:.1f}s)")
    ok = attempts == total_attempts and base == 1
    print("base run paid once per base commit: " + ("yes" if ok else "NO"))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
