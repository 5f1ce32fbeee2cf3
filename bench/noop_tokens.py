"""No-op tokens: 10 ticks of daily-triage-like early-exit on an unchanged scaffold.

A fake backend charges what the registry says a no-op run costs (`tokens_noop`), the
way a real agent would for "nothing to do". loop-runtime's fingerprint makes only the
first tick call the backend. Printed: our tokens vs `tokens_noop × ticks` (target
ratio ≤ 0.1). The pattern must require early exit (the registry's daily-triage does
not, so it is enabled for it in loop-runtime.toml, the documented way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--pattern", default="daily-triage")
    args = ap.parse_args()
    from loop_runtime.adapters.project_files import load_registry
    from loop_runtime.formats.registry import find_pattern
    from loop_runtime.app.runner import LoopRunner, RunOptions
    from loop_runtime.app.runtime import load_project
    from tests.support.npm_tools import run_tool

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
        run_tool("loop-init", ".", "--pattern", args.pattern, "--tool", "claude", cwd=root)
        (root / "loop-runtime.toml").write_text(f"[patterns.{args.pattern}]\nearly_exit = true\n")
        budget = root / "loop-budget.md"  # allow the 10 runs today (the scaffold's row says 2/day)
        budget.write_text(budget.read_text().replace("| 2 | 100k |", "| 48 | 100k |"))
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        subprocess.run(["git", "-c", "user.email=b@x", "-c", "user.name=b", "commit", "-qm", "scaffold"],
                       cwd=root, check=True)
        noop = find_pattern(load_registry(root), args.pattern).cost.tokens_noop  # type: ignore[union-attr]
        scenario = root / ".scenario.json"
        scenario.write_text(json.dumps({"triage": {"decision": "noop", "summary": "nothing", "tokens": noop}}))
        subprocess.run(["git", "update-index", "--assume-unchanged", "--", "loop-runtime.toml"], cwd=root)
        (root / ".git" / "info" / "exclude").write_text(".scenario.json\n")
        project = load_project(root)
        runner = LoopRunner(project, project.plan(args.pattern), RunOptions(scenario=str(scenario)))
        results = [asyncio.run(runner.tick()) for _ in range(args.ticks)]
        runner.store.close()
    ours = sum(r.tokens for r in results)
    calls = sum(1 for r in results if r.tokens)
    outcomes = sorted({(r.outcome, r.note.split(":")[0]) for r in results})
    assert all(r.outcome == "no-op" for r in results), outcomes
    baseline = noop * args.ticks
    print(f"{args.ticks} ticks of {args.pattern} on an unchanged scaffold: {ours:,} tokens "
          f"({calls} backend call(s), outcomes {outcomes}); registry tokens_noop × {args.ticks} = {baseline:,}")
    print(f"ratio {ours / baseline:.2f} (target ≤ 0.1)")


if __name__ == "__main__":
    main()
