"""Differential tests: core.cost against the real loop-cost 1.2.0 (R31).

The full grid (every pattern × level × cadence × conservative × caching × orchestration)
runs through the installed package's own ``estimateCost`` in ONE node process; a set of
real ``loop-cost`` CLI invocations then checks the CLI layer (bundled registry, flags,
JSON printing, human output, ``--list``, error messages) on top.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from loop_runtime.core.cost import estimate, format_estimate, list_patterns
from loop_runtime.errors import ConfigError
from loop_runtime.formats.registry import find_pattern, parse_registry
from loop_runtime.formats.registry_types import Registry
from tests.support import npm_tools

pytestmark = pytest.mark.parity

FIXTURES = Path(__file__).parent / "fixtures"
LEVELS = ("L1", "L2", "L3")
CADENCES = (None, "15m", "1h", "1d", "5m-15m", "6h-1d", "90m", "2d")
ORCHESTRATIONS = (None, "maker-checker", "parallel:3", "debate:2")

NODE_GRID = """
import { readFileSync } from 'node:fs';
const { estimator, patterns, cases } = JSON.parse(readFileSync(0, 'utf8'));
const { estimateCost } = await import(estimator);
const out = cases.map(([id, level, cadence, conservative, withCaching, orchestration]) => {
  const pattern = patterns.find((p) => p.id === id);
  try {
    return estimateCost({ pattern, level, cadence: cadence ?? undefined, conservative, withCaching,
                          orchestration: orchestration ?? undefined });
  } catch (err) { return { error: String(err.message) }; }
});
process.stdout.write(JSON.stringify(out));
"""


def _package(name: str) -> Path:
    return npm_tools.ensure_installed() / "node_modules" / "@cobusgreyling" / name


def _ordered(value: Any) -> Any:
    """Dicts as lists of pairs, so equality also checks key order (JSON.stringify's order)."""
    if isinstance(value, dict):
        return [(k, _ordered(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def _node_grid(raw_patterns: list[dict[str, Any]], cases: list[tuple[Any, ...]]) -> list[Any]:
    estimator = _package("loop-cost") / "dist" / "estimator.js"
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run([node, "--input-type=module", "-e", NODE_GRID], capture_output=True, text=True,
                          input=json.dumps({"estimator": estimator.as_uri(), "patterns": raw_patterns,
                                            "cases": cases}), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _grid(registry: Registry) -> list[tuple[Any, ...]]:
    return [(p.id, *rest) for p in registry.patterns
            for rest in itertools.product(LEVELS, CADENCES, (False, True), (False, True), ORCHESTRATIONS)]


def _ours(registry: Registry, case: tuple[Any, ...]) -> Any:
    pid, level, cadence, conservative, caching, orch = case
    try:
        return estimate(find_pattern(registry, pid), level, cadence, conservative, caching, orch)
    except ConfigError as err:
        return {"error": str(err)}


def _assert_grid_equal(registry: Registry, raw_patterns: list[dict[str, Any]]) -> int:
    cases = _grid(registry)
    theirs = _node_grid(raw_patterns, cases)
    diffs = [(case, _ours(registry, case), t) for case, t in zip(cases, theirs, strict=True)
             if _ordered(_ours(registry, case)) != _ordered(t)]
    assert not diffs, f"{len(diffs)} of {len(cases)} estimates differ; first: {diffs[:2]}"
    return len(cases)


def _bundled() -> tuple[Registry, list[dict[str, Any]]]:
    text = (_package("loop-cost") / "registry.json").read_text()
    return parse_registry(text, file="registry.json", source="bundled"), json.loads(text)["patterns"]


def test_full_grid_matches_loop_costs_estimator_on_its_bundled_registry() -> None:
    """Every bundled pattern × L1-L3 × 8 cadences × conservative × caching × 4 orchestrations."""
    registry, raw = _bundled()
    assert _assert_grid_equal(registry, raw) == len(registry.patterns) * 3 * 8 * 2 * 2 * 4


def test_full_grid_matches_on_the_newest_registry_fixture() -> None:
    """The same grid on the newest registry (8 patterns, stable_fraction everywhere)."""
    text = (FIXTURES / "patterns__registry.yaml").read_text()
    registry = parse_registry(text, file="patterns__registry.yaml")
    raw = yaml.safe_load(text)["patterns"]
    assert len(registry.patterns) == 8
    _assert_grid_equal(registry, raw)


CLI_CASES = [
    ("ci-sweeper", "L2", "15m", False, False, None),
    ("pr-babysitter", "L1", None, True, True, None),
    ("daily-triage", "L3", "1d-2h", False, True, "maker-checker"),
    ("dependency-sweeper", "L2", None, False, False, "debate:3"),
    ("changelog-drafter", "L1", "2d", True, False, "parallel:2"),
]


def _cli_args(case: tuple[Any, ...]) -> list[str]:
    pid, level, cadence, conservative, caching, orch = case
    args = ["--pattern", pid, "--level", level]
    args += ["--cadence", cadence] if cadence else []
    args += ["--conservative"] if conservative else []
    args += ["--with-caching"] if caching else []
    args += ["--orchestration", orch] if orch else []
    return args


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: "-".join(str(x) for x in c))
def test_cli_json_and_human_output_match(case: tuple[Any, ...]) -> None:
    """``loop-cost ... --json`` parses to our dict (same key order); the human output is identical."""
    registry, _ = _bundled()
    ours = _ours(registry, case)
    proc = npm_tools.run_tool("loop-cost", *_cli_args(case), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _ordered(json.loads(proc.stdout)) == _ordered(ours)
    human = npm_tools.run_tool("loop-cost", *_cli_args(case))
    assert human.stdout == format_estimate(ours) + "\n"


def test_cli_defaults_to_daily_triage_l1() -> None:
    """No flags at all: loop-cost estimates daily-triage at L1, and so do our defaults."""
    registry, _ = _bundled()
    proc = npm_tools.run_tool("loop-cost", "--json")
    assert _ordered(json.loads(proc.stdout)) == _ordered(estimate(find_pattern(registry, "daily-triage")))


def test_cli_list_matches() -> None:
    """``loop-cost --list`` prints our list_patterns lines."""
    registry, _ = _bundled()
    proc = npm_tools.run_tool("loop-cost", "--list")
    assert proc.stdout.splitlines() == list_patterns(registry)


@pytest.mark.parametrize(("args", "kwargs"), [
    (["--level", "L4"], {"level": "L4"}),
    (["--orchestration", "parallel:1"], {"orchestration": "parallel:1"}),
    (["--orchestration", "Swarm"], {"orchestration": "Swarm"}),
])
def test_cli_errors_match_our_messages(args: list[str], kwargs: dict[str, str]) -> None:
    """Bad flags: loop-cost exits 1 and prints the very message our ConfigError carries."""
    registry, _ = _bundled()
    proc = npm_tools.run_tool("loop-cost", "--pattern", "ci-sweeper", *args)
    assert proc.returncode == 1
    with pytest.raises(ConfigError) as err:
        estimate(find_pattern(registry, "ci-sweeper"), **kwargs)  # type: ignore[arg-type]
    assert proc.stderr.strip() == str(err.value)


# ---------------------------------------------------------------------------- our CLI speaks loop-cost's flags

def _project_with_npm_registry(tmp_path: Path) -> Path:
    """A project whose registry is loop-cost's bundled one, so both CLIs read the same patterns."""
    (tmp_path / "patterns").mkdir()
    raw = json.loads((_package("loop-cost") / "registry.json").read_text())
    (tmp_path / "patterns" / "registry.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp_path


def _npm_spelling(case: tuple[Any, ...]) -> list[str]:
    """loop-cost's short flags where it has them: -p, -l, -c, -o."""
    short = {"--pattern": "-p", "--level": "-l", "--cadence": "-c", "--orchestration": "-o"}
    args = _cli_args(case)
    return [short.get(a, a) if i % 2 == 0 or a.startswith("--") else a for i, a in enumerate(args)]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: "-".join(str(x) for x in c))
@pytest.mark.parametrize("short", [False, True], ids=["long", "short"])
def test_our_cost_command_prints_what_loop_cost_prints(tmp_path: Path, case: tuple[Any, ...], short: bool) -> None:
    """`loop-runtime cost <loop-cost's own flags>` prints loop-cost's bytes, orchestration included."""
    from tests.conftest import run_cli

    root = _project_with_npm_registry(tmp_path)
    args = _npm_spelling(case) if short else _cli_args(case)
    for extra in ([], ["--json"]):
        theirs = npm_tools.run_tool("loop-cost", *args, *extra)
        ours = run_cli("cost", *args, *extra, cwd=root)
        assert ours.returncode == theirs.returncode == 0, ours.stderr
        if extra:
            assert _ordered(json.loads(ours.stdout)) == _ordered(json.loads(theirs.stdout))
        else:
            assert ours.stdout == theirs.stdout


@pytest.mark.parametrize("orchestration", ["single", "maker-checker", "parallel:2", "parallel:7", "debate:1",
                                           "debate:4", "Debate:2", " parallel:3 "])
def test_orchestration_changes_the_estimate_exactly_as_loop_cost(tmp_path: Path, orchestration: str) -> None:
    """Every orchestration mode: same action multiplier, realistic blend and warnings as loop-cost."""
    from tests.conftest import run_cli

    root = _project_with_npm_registry(tmp_path)
    args = ["--pattern", "ci-sweeper", "--level", "L3", "--orchestration", orchestration, "--json"]
    theirs = json.loads(npm_tools.run_tool("loop-cost", *args).stdout)
    ours = json.loads(run_cli("cost", *args, cwd=root).stdout)
    assert _ordered(ours) == _ordered(theirs)
    if orchestration.strip().lower() != "single":
        assert ours["scenarios"]["action"]["tokensPerRun"] > ours["scenarios"]["report"]["tokensPerRun"]


def test_our_cost_list_and_default_pattern_match_loop_cost(tmp_path: Path) -> None:
    """`cost --list` prints loop-cost's list; bare `cost` estimates daily-triage at L1, like loop-cost."""
    from tests.conftest import run_cli

    root = _project_with_npm_registry(tmp_path)
    assert run_cli("cost", "--list", cwd=root).stdout == npm_tools.run_tool("loop-cost", "--list").stdout
    assert run_cli("cost", cwd=root).stdout == npm_tools.run_tool("loop-cost").stdout


@pytest.mark.parametrize("args", [["-o", "parallel:1"], ["--orchestration", "swarm"], ["-o", "debate:0"]])
def test_our_cost_command_rejects_bad_orchestration_with_loop_costs_words(tmp_path: Path, args: list[str]) -> None:
    from tests.conftest import run_cli

    root = _project_with_npm_registry(tmp_path)
    theirs = npm_tools.run_tool("loop-cost", "-p", "ci-sweeper", *args)
    ours = run_cli("cost", "-p", "ci-sweeper", *args, cwd=root)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr.strip() == f"loop-runtime: {theirs.stderr.strip()}"
