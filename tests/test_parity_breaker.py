"""Differential tests: core.breaker against the real loop-context 1.5.0 (R15).

Hundreds of generated ledgers (success/failure/noop runs; errors that repeat with
different timestamps, hex addresses, paths, line:col and numbers; similar and repeated
actions; unicode; multi-line traces) go through the installed package's own
``checkCircuitBreaker`` / ``summarizeAttempts`` / ``pruneLedger`` / ``buildContextInjection``
in one node process, and a sample goes through the real ``loop-context`` CLI with
threshold flags and the daily budget.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.core.breaker import (
    BreakerConfig,
    PruneConfig,
    build_context_injection,
    check,
    format_decision,
    prune_ledger,
    record_daily_spend,
    summarize_attempts,
)
from loop_runtime.core.cost import estimate
from loop_runtime.formats.ledger import DailySpend, parse_daily_spend, parse_ledger, render_daily_spend
from loop_runtime.formats.registry import find_pattern, parse_registry
from tests.support import npm_tools

pytestmark = pytest.mark.parity

WORDS = ["id", "user", "config", "auth", "db", "ünï", "日本", "x"]
ERRORS = [
    "TypeError: Cannot read properties of undefined (reading '{w}')",
    "Error: ENOENT: no such file or directory, open '/tmp/{r}/{w}.json'",
    "AssertionError [ERR_ASSERTION]: expected {n} to equal {m}\n    at Context.<anonymous> (test/{w}.test.js:{n}:{m})"
    "\n    at process.processImmediate (node:internal/timers:{n}:{m})",
    "{ts} ERROR connection refused 127.0.0.1:{n}",
    "Segmentation fault at 0x{hex} in lib{w}.so",
    "C:\\Users\\{w}\\app\\main.py:{n}: SyntaxError: invalid syntax",
    "\n\n   ModuleNotFoundError: No module named '{w}'  ",
    "Ошибка: файл {w} не найден 😀 (код {n})",
    "Fehler ٣٤٥ in {w} at ٢٠٢٦-٠١-٠٢ 10:00:00Z (retry {n})",  # non-ASCII digits are not JS \d
    "build failed with exit code {n}",
    "Test suite failed: {n} of {m} tests failed in {r}ms",
    "timeout after {n}s waiting for http://localhost:{m}/health",
    "   ",
    "",
]
ACTIONS = ["retry the failing test", "retry the failing test again", "Retry the failing test.",
           "patch flaky auth test (attempt {n})", "bump {w} to {n}.{m}", "rewrite the {w} module",
           "add a null check in {w}.ts", "revert the last change", "run the linter", "😀 fix {w}"]


def _fill(template: str, rng: random.Random) -> str:
    ts = f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}{rng.choice('T ')}0{rng.randint(0, 9)}:1{rng.randint(0, 9)}:00"
    return template.format(w=rng.choice(WORDS), r=rng.randint(0, 99999), n=rng.randint(0, 9999),
                           m=rng.randint(0, 99), hex=f"{rng.getrandbits(32):x}", ts=ts + rng.choice(["Z", ".123Z", ""]))


def _attempt(i: int, rng: random.Random, outcome: str, error: str | None, action: str) -> dict[str, Any]:
    a: dict[str, Any] = {"iteration": i, "action": action, "outcome": outcome}
    if rng.random() < 0.5:
        a["timestamp"] = f"2026-09-16T0{rng.randint(0, 9)}:00:00Z"
    if error is not None:
        a["error"] = error
    if rng.random() < 0.8:
        a["tokensUsed"] = rng.randint(0, 40_000)
    return a


def _ledger(seed: int) -> dict[str, Any]:
    """A random ledger; about half end in a stuck tail so every trigger gets exercised."""
    rng = random.Random(seed)
    attempts: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 8)):
        outcome = rng.choices(["failure", "success", "noop"], [5, 3, 2])[0]
        error = _fill(rng.choice(ERRORS), rng) if outcome == "failure" and rng.random() < 0.9 else None
        attempts.append(_attempt(len(attempts) + 1, rng, outcome, error, _fill(rng.choice(ACTIONS), rng)))
    if rng.random() < 0.6:  # a stuck tail: same error template and/or same action template
        err_t, act_t = rng.choice(ERRORS), rng.choice(ACTIONS)
        for _ in range(rng.randint(1, 7)):
            error = _fill(err_t if rng.random() < 0.8 else rng.choice(ERRORS), rng)
            action = _fill(act_t if rng.random() < 0.7 else rng.choice(ACTIONS), rng)
            attempts.append(_attempt(len(attempts) + 1, rng, "failure", error, action))
    ledger: dict[str, Any] = {"goal": _fill("Get {w} back to green", rng), "pattern": "ci-sweeper", "level": "L2",
                              "attempts": attempts}
    if rng.random() < 0.5:
        ledger["startedAt"] = "2026-09-16T00:00:00Z"
    return ledger


CONFIGS: list[dict[str, Any]] = [
    {}, {"maxIterations": 4}, {"stagnationThreshold": 2}, {"noProgressThreshold": 3}, {"tokenBudget": 60_000},
    {"similarityThreshold": 0.6}, {"similarityThreshold": 1}, {"frustrationThreshold": 2, "similarityThreshold": 0.5},
    {"stagnationThreshold": 5, "noProgressThreshold": 9, "maxIterations": 20, "tokenBudget": 1},
]
_OURS_KEYS = {"maxIterations": "max_iterations", "stagnationThreshold": "stagnation", "frustrationThreshold":
              "frustration", "noProgressThreshold": "no_progress", "tokenBudget": "token_budget",
              "similarityThreshold": "similarity_threshold"}

NODE_GRID = """
import { readFileSync } from 'node:fs';
const { module, ledgers, configs } = JSON.parse(readFileSync(0, 'utf8'));
const m = await import(module);
const out = ledgers.map((ledger) => ({
  checks: configs.map((c) => m.checkCircuitBreaker(ledger, { ...m.DEFAULT_BREAKER, ...c })),
  summary: m.summarizeAttempts(ledger),
  prune: m.pruneLedger(ledger, m.DEFAULT_PRUNE),
  pruneSmall: m.pruneLedger(ledger, { ...m.DEFAULT_PRUNE, window: 3, maxTraceLines: 1 }),
  inject: m.buildContextInjection(ledger, m.DEFAULT_BREAKER, m.DEFAULT_PRUNE),
}));
process.stdout.write(JSON.stringify(out));
"""


def _config(c: dict[str, Any], **extra: Any) -> BreakerConfig:
    return BreakerConfig(**{_OURS_KEYS[k]: v for k, v in c.items()}, **extra)


def test_breaker_summary_prune_and_inject_match_on_generated_ledgers() -> None:
    """600 ledgers × 9 configs through loop-context's own functions: identical decisions and outputs."""
    module = npm_tools.ensure_installed() / "node_modules/@cobusgreyling/loop-context/dist/context-manager.js"
    raw = [_ledger(seed) for seed in range(600)]
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run([node, "--input-type=module", "-e", NODE_GRID], capture_output=True, text=True, timeout=120,
                          input=json.dumps({"module": module.as_uri(), "ledgers": raw, "configs": CONFIGS}))
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    triggers: set[str] = set()
    for seed, (ledger_raw, t) in enumerate(zip(raw, theirs, strict=True)):
        ledger = parse_ledger(json.dumps(ledger_raw))
        for c, their_check in zip(CONFIGS, t["checks"], strict=True):
            ours = check(ledger, _config(c)).as_json()
            assert ours == their_check, (seed, c)
            assert list(ours) == list(their_check)
            triggers.add(ours["trigger"])
        assert summarize_attempts(ledger) == t["summary"], seed
        assert prune_ledger(ledger) == t["prune"], seed
        assert prune_ledger(ledger, PruneConfig(window=3, max_trace_lines=1)) == t["pruneSmall"], seed
        assert build_context_injection(ledger) == t["inject"], seed
    assert triggers == {"ok", "stagnation", "frustration", "no-progress", "token-budget", "max-iterations"}


CLI_FLAGS: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["--max-iterations", "6", "--stagnation", "2"], {"max_iterations": 6, "stagnation": 2}),
    (["--no-progress", "3", "--token-budget", "50000"], {"no_progress": 3, "token_budget": 50_000}),
    (["--similarity-threshold", "0.5"], {"similarity_threshold": 0.5}),
    (["--similarity-threshold", "1"], {"similarity_threshold": 1.0}),
]


def _cli(tmp_path: Path, seed: int, flags: list[str]) -> tuple[int, dict[str, Any], str]:
    file = tmp_path / f"ledger-{seed}.json"
    file.write_text(json.dumps(_ledger(seed), ensure_ascii=False, indent=1))
    proc = npm_tools.run_tool("loop-context", "--check", "--ledger", str(file), "--json", *flags)
    human = npm_tools.run_tool("loop-context", "--check", "--ledger", str(file), *flags) if seed % 5 == 0 else None
    return proc.returncode, json.loads(proc.stdout), human.stdout if human else ""


def test_cli_check_json_matches_with_threshold_flags(tmp_path: Path) -> None:
    """``loop-context --check --ledger f --json`` (plus flags): same JSON, same exit code, same human line."""
    jobs = [(seed, flags, kwargs) for i, (flags, kwargs) in enumerate(CLI_FLAGS) for seed in range(i, 40, 5)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: _cli(tmp_path, job[0], job[1]), jobs))
    for (seed, _, kwargs), (code, theirs, human) in zip(jobs, results, strict=True):
        ledger = parse_ledger((tmp_path / f"ledger-{seed}.json").read_text())
        ours = check(ledger, BreakerConfig(**kwargs))
        assert ours.as_json() == theirs and ours.exit_code == code, seed
        if human:
            assert human == format_decision(ours) + "\n"


def test_cli_daily_budget_matches(tmp_path: Path) -> None:
    """--daily-budget-from-pattern: same carried total, same state file, same daily-budget decision."""
    registry_text = (npm_tools.ensure_installed() / "node_modules/@cobusgreyling/loop-cost/registry.json").read_text()
    cap = estimate(find_pattern(parse_registry(registry_text, file="registry.json"), "ci-sweeper"),
                   "L2")["suggestedDailyCap"]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    ledger_raw = {"goal": "g", "pattern": "ci-sweeper", "level": "L2",
                  "attempts": [{"iteration": 1, "action": "a", "outcome": "success", "tokensUsed": 7_000}]}
    (tmp_path / "ledger.json").write_text(json.dumps(ledger_raw))
    ledger = parse_ledger(json.dumps(ledger_raw))
    befores = [None, DailySpend(today, cap - 10_000), DailySpend(today, cap - 5_000), DailySpend("2000-01-01", cap)]
    for before in befores:
        state_dir = tmp_path / f"state-{before.tokens_used_today if before else 'none'}-{before and before.date}"
        state_dir.mkdir()
        state_file = state_dir / "daily-spend.ci-sweeper.json"
        if before is not None:
            state_file.write_text(render_daily_spend(before))
        proc = npm_tools.run_tool("loop-context", "--check", "--ledger", str(tmp_path / "ledger.json"), "--json",
                                  "--daily-budget-from-pattern", "ci-sweeper", "--budget-level", "L2",
                                  "--daily-state-dir", str(state_dir))
        after = record_daily_spend(before, ledger, today)
        assert parse_daily_spend(state_file.read_text()) == after
        assert state_file.read_text() == render_daily_spend(after)
        ours = check(ledger, BreakerConfig(daily_budget=cap, daily_spent=after.tokens_used_today))
        assert json.loads(proc.stdout) == ours.as_json() and proc.returncode == ours.exit_code
