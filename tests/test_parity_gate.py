"""Differential tests: core.gate.check against the real ``loop-gate check --json`` 1.0.0 (R13).

Thousands of generated paths (dot-files, ``..``/``.`` portions, deep nesting, unicode,
spaces, empty portions, leading/trailing slashes) are pushed through the real CLI in
batches (``--paths a,b,...``): a denylist-only and an allowlist-only variant of each
policy make one call report, per path, whether the policy's globs match; small change
sets then compare whole decisions for every action. About 120 node launches in all.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loop_runtime.core.gate import check, split_paths_arg
from loop_runtime.errors import ConfigError
from loop_runtime.formats.gate_config import DEFAULT_POLICY, GatePolicy, parse_gate_yaml, render_gate_yaml
from tests.support import npm_tools

pytestmark = pytest.mark.parity

FIXTURES = Path(__file__).parent / "fixtures"
ROOT_DENYLIST = ("**/.env", "**/.env.*", "**/secrets/**", "**/credentials/**", "**/*_key*", "**/*_secret*",
                 "**/.terraform/**", "**/k8s/production/**", "**/migrations/**", "**/auth/**", "**/payments/**",
                 "**/billing/**")
# §3.2: the repo's own gate.yaml reconstructed from loop-drill ids (its drills also exercised
# file-count and auto-merge, so it had both; the values are the audit template's).
ROOT_POLICY = GatePolicy(ROOT_DENYLIST, 10, ("docs/**", "**/*.md"), "root")
AUDIT_TEMPLATE = GatePolicy(DEFAULT_POLICY.denylist[:6], 10, ("docs/**", "**/*.md"), "audit-template")
# Glob features the ecosystem files do not use yet but a user's gate.yaml may.
EXOTIC = GatePolicy(("*.{pem,key}", "**/[Ss]ecret?/**", "src/**/[!a-m]*.ts", "!docs/**", "#comment",
                     "**/.*", "?", "a/*/b", "**/*.min.*", "x/**/y/**/z", "**/.git/**", "build/",
                     "{a,b}/../c", "deploy/**/*.{yml,yaml}", "[", "**/ü*"),
                    3, ("*", "**/*.md", "docs/**", "{src,test}/**/*.{ts,js}", "!**/*.lock"), "exotic")

SEGMENTS = ["a", "b", "c", "src", "docs", "test", "README.md", "x.md", ".env", ".env.local", ".envrc", "env",
            "secrets", ".secrets", "Secret1", "credentials", "aws_key", ".aws_key", "id_key.pem", "db_secret.json",
            ".terraform", "k8s", "production", "migrations", "auth", "authz.py", "payments", "billing", "..", ".",
            "", "foo bar", "ünïcödé", "ü1", "日本語.txt", "😀.md", "a.ts", "zeta.ts", "a.min.js", ".github",
            "workflows", "release.yml", "server", "app", "alembic", "deploy", "apps", "web", "desktop", "cli",
            "[x]", "*", "?", "{a}", "!x", "#c", "$HOME", "yarn.lock", "build", ".git", "y", "z", "file.key"]


def _paths(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        path = "/".join(rng.choice(SEGMENTS) for _ in range(rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 9])))
        r = rng.random()
        path = "/" + path if r < 0.04 else path + "/" if r < 0.08 else path.replace("/", "//", 1) if r < 0.1 else path
        path = path.strip()  # loop-gate trims each --paths entry; keep what it would see
        if path and "," not in path:
            out.add(path)
    return sorted(out)


def _gate_file(tmp_path: Path, policy: GatePolicy, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(render_gate_yaml(policy))
    assert parse_gate_yaml(path.read_text()) == GatePolicy(policy.denylist, policy.max_files,
                                                           policy.auto_merge_allowlist, "gate.yaml")
    return path


def _real(gate: Path, action: str, paths: Sequence[str]) -> tuple[int, dict[str, object]]:
    proc = npm_tools.run_tool("loop-gate", "check", "--action", action, "--paths", ",".join(paths),
                              "--gate-file", str(gate), "--json")
    assert proc.returncode in (0, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _compare(jobs: list[tuple[Path, GatePolicy, str, list[str]]]) -> list[object]:
    """Run every (gate file, policy, action, paths) through loop-gate and return the mismatches."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: _real(job[0], job[2], job[3]), jobs))
    diffs: list[object] = []
    for (_, policy, action, paths), (code, theirs) in zip(jobs, results, strict=True):
        ours = check(policy, paths, action)
        if ours.as_json() != theirs or ours.exit_code != code:
            diffs.append({"policy": policy.source, "action": action, "ours": ours.as_json(), "theirs": theirs})
    return diffs


POLICIES = {
    "coaligne": lambda: parse_gate_yaml((FIXTURES / "examples__coaligne__gate.yaml").read_text(), file="coaligne"),
    "root": lambda: ROOT_POLICY,
    "audit-template": lambda: AUDIT_TEMPLATE,
    "default": lambda: DEFAULT_POLICY,
    "exotic": lambda: EXOTIC,
}


def _batches(policy: GatePolicy, action: str, paths: list[str]) -> list[list[str]]:
    """Pack paths into as few --paths arguments as loop-gate can answer in full.

    loop-gate exits before a piped stdout drains past 64 kB, so a batch closes when the
    decision we expect (each flagged path is printed twice) nears 50 kB, or when the
    argument itself nears the kernel's 128 kB limit.
    """
    flagged = set(check(policy, paths, action).matched_paths)
    batches: list[list[str]] = [[]]
    out = arg = 0
    for path in paths:
        size = len(path.encode()) + 1
        cost = 2 * size + 12 if path in flagged else 0
        if batches[-1] and (out + cost > 50_000 or arg + size > 100_000):
            batches.append([])
            out = arg = 0
        batches[-1].append(path)
        out, arg = out + cost, arg + size
    return batches


def test_glob_matching_matches_minimatch_on_thousands_of_paths(tmp_path: Path) -> None:
    """Per-path denylist and allowlist membership equals loop-gate's for 3000 paths × 5 policies."""
    paths = _paths(seed=13, count=3000)
    jobs = []
    for name, make in POLICIES.items():
        policy = make()
        deny_only = GatePolicy(policy.denylist, None, None, f"{name}:denylist")
        allow_only = GatePolicy((), None, policy.auto_merge_allowlist or (), f"{name}:allowlist")
        deny_file = _gate_file(tmp_path, deny_only, f"{name}-d")
        allow_file = _gate_file(tmp_path, allow_only, f"{name}-a")
        jobs += [(deny_file, deny_only, "commit", b) for b in _batches(deny_only, "commit", paths)]
        jobs += [(allow_file, allow_only, "auto-merge", b) for b in _batches(allow_only, "auto-merge", paths)]
    assert len(jobs) <= 60
    diffs = _compare(jobs)
    assert not diffs, f"{len(diffs)} batches differ; first: {diffs[0]}"
    denied = sum(len(check(GatePolicy(make().denylist, None, None, ""), paths).matched_paths)
                 for make in POLICIES.values())
    assert 0 < denied < 5 * len(paths)  # the generated paths exercise both outcomes


def test_whole_decisions_match_for_every_action(tmp_path: Path) -> None:
    """Small change sets × commit/merge/auto-merge: same trigger, reason, matchedPaths and exit code."""
    rng = random.Random(29)
    pool = _paths(seed=31, count=400)
    benign = ["docs/guide.md", "README.md", "apps/web/src/a.ts", "server/tests/t.py", "src/x.ts", "docs/a/b.md"]
    jobs = []
    for name, make in POLICIES.items():
        policy = make()
        file = _gate_file(tmp_path, policy, name)
        sets = [rng.sample(benign, rng.randint(1, 3)), rng.sample(pool, rng.randint(1, 4)),
                rng.sample(pool, rng.randint(5, 14)), [f"docs/p{i}.md" for i in range(12)]]
        # "merge" behaves like "commit" in loop-gate; one merge call per policy keeps that honest.
        jobs += [(file, policy, action, paths) for paths in sets for action in ("commit", "auto-merge")]
        jobs.append((file, policy, "merge", sets[0] + sets[1]))
    diffs = _compare(jobs)
    assert not diffs, f"{len(diffs)} decisions differ; first: {diffs[0]}"
    triggers = {check(p, paths, a).trigger for _, p, a, paths in jobs}
    assert triggers == {"ok", "denylist", "file-count", "not-allowlisted"}


def test_the_fixture_gate_file_itself(tmp_path: Path) -> None:
    """loop-gate reading the coaligne fixture verbatim agrees with our parse of it."""
    gate = FIXTURES / "examples__coaligne__gate.yaml"
    policy = parse_gate_yaml(gate.read_text())
    for action, paths in [("auto-merge", ["apps/web/src/a.ts", "server/app/x/authz.py"]),
                          ("commit", ["deploy/k8s.yml"]), ("auto-merge", ["docs/readme.md"])]:
        code, theirs = _real(gate, action, paths)
        ours = check(policy, paths, action)
        assert ours.as_json() == theirs and ours.exit_code == code


def test_human_output_and_paths_argument(tmp_path: Path) -> None:
    """Without --json loop-gate prints our format_decision line; --paths is split and trimmed alike."""
    from loop_runtime.core.gate import format_decision

    gate = _gate_file(tmp_path, ROOT_POLICY, "root")
    raw = " docs/a.md ,, .env.prod,\u00a0src/x.ts\ufeff"
    proc = npm_tools.run_tool("loop-gate", "check", "--action", "commit", "--paths", raw, "--gate-file", str(gate))
    assert proc.returncode == 2
    assert proc.stdout == format_decision(check(ROOT_POLICY, split_paths_arg(raw), "commit")) + "\n"


@pytest.mark.parametrize(("text", "accepted"), [
    ("version: 1\ndenylist: [on, yes, 2024-01-01]\n", True),
    ("version: 1.0\ndenylist: []\nmaxFiles: 0x10\n", True),
    ("version: 2\ndenylist: []\n", False),
    ("version: '1'\ndenylist: []\n", False),
    ("version: true\ndenylist: []\n", False),
    ("version: 1\n", False),
    ("version: 1\ndenylist: .env\n", False),
    ("version: 1\ndenylist: [1]\n", False),
    ("version: 1\ndenylist: []\nmaxFiles: ten\n", False),
    ("version: 1\ndenylist: []\nmaxFiles:\n", False),
    ("version: 1\ndenylist: []\nautoMergeAllowlist: docs/**\n", False),
    ("version: 1\ndenylist: []\ndenylist: [a]\n", False),
    ("- version: 1\n", False),
    ("", False),
])
def test_gate_yaml_validation_agrees(tmp_path: Path, text: str, accepted: bool) -> None:
    """loop-gate and parse_gate_yaml accept and refuse the same files; refusals share the wording."""
    gate = tmp_path / "gate.yaml"
    gate.write_text(text)
    proc = npm_tools.run_tool("loop-gate", "check", "--action", "commit", "--paths", "on", "--gate-file", str(gate))
    assert (proc.returncode != 1) is accepted, proc.stderr
    if accepted:
        policy = parse_gate_yaml(text)
        assert proc.returncode == check(policy, ["on"]).exit_code
        return
    with pytest.raises(ConfigError) as err:
        parse_gate_yaml(text)
    theirs = proc.stderr.strip()
    prefix = f"Invalid gate config at {gate}: "
    if theirs.startswith(prefix):
        assert str(err.value).endswith(theirs[len(prefix):])
    else:
        assert theirs.startswith(f"Invalid YAML in {gate}") and "invalid YAML" in str(err.value)


def test_invalid_action_matches(tmp_path: Path) -> None:
    """An unknown --action is refused by both with loop-gate's message."""
    gate = _gate_file(tmp_path, ROOT_POLICY, "root")
    proc = npm_tools.run_tool("loop-gate", "check", "--action", "push", "--paths", "a", "--gate-file", str(gate))
    with pytest.raises(ConfigError) as err:
        check(ROOT_POLICY, ["a"], "push")
    assert proc.returncode == 1 and proc.stderr.strip() == str(err.value)
