"""The seed demo, word for word, and the promise that --dry-run writes nothing."""

from __future__ import annotations

from pathlib import Path

DEMO = """\
Ran 1 tick(s) of Daily Triage [L2] via mock backend (dry-run):
tick 1: act (accept) — 5,000 tokens
· triage decision: act
· proposed change touching src/example.ts
· verifier verdict: accept
· committed: safe + allowlisted
Budget: 5,000 / 100,000 tokens spent today.
"""


def test_seed_demo_prints_exactly_the_seed_output(tmp_path: Path, cli) -> None:
    """In an empty folder the demo tick prints the seed's seven lines and exits 0."""
    proc = cli("run", "daily-triage", "--level", "L2", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DEMO


def test_dry_run_writes_nothing(tmp_path: Path, cli) -> None:
    """--dry-run leaves an empty project empty (no state, no run log, no .loop-runtime)."""
    cli("run", "daily-triage", "--level", "L2", "--dry-run", cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dry_run_leaves_existing_files_byte_identical(tmp_path: Path, cli, fixtures: Path) -> None:
    """A dry run in a project with a state file and run log changes neither."""
    for name in ("STATE.md", "loop-run-log.md", "LOOP.md"):
        (tmp_path / name).write_bytes((fixtures / name).read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = cli("run", "daily-triage", "--level", "L2", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_demo_uses_the_bundled_registry_and_says_so(tmp_path: Path, cli) -> None:
    """With no patterns/registry.yaml, plan reports the bundled registry (R1)."""
    proc = cli("plan", "daily-triage", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert doc["registry"]["source"] == "bundled"
    assert doc["level"] == "L1" and doc["levelSource"] == "registry week_one_mode"
