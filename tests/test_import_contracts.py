"""The layers hold: `lint-imports` keeps every contract in pyproject.toml ([tool.importlinter]).

Three contracts: the layers (drivers → application → adapters → core → ports | formats),
no import circle between sibling modules at any depth, and "core and formats import no I/O
module". Lazy imports inside functions count (grimp reads every import statement), so a
circle hidden behind a function-level import is still one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_lint_imports_keeps_every_contract() -> None:
    proc = _lint(REPO, REPO / "src")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "0 broken" in proc.stdout


def test_the_io_contract_is_at_least_the_hand_written_one() -> None:
    """The I/O contract replaces the old hand-written import test (which blocked modules at import time only):
    it covers those modules and more, lazily imported ones too."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (io,) = [c for c in contracts if c["type"] == "forbidden"]
    assert {"loop_runtime.core", "loop_runtime.formats"} <= set(io["source_modules"])
    assert {"subprocess", "asyncio", "sqlite3", "httpx", "temporalio", "socket", "os", "shutil", "tempfile",
            "urllib", "http"} <= set(io["forbidden_modules"])
    assert not io.get("allow_indirect_imports")  # core → some module → subprocess is caught too


def test_a_lazy_io_import_or_a_lazy_circle_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package with three violations, all inside functions."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "loop_runtime", src / "loop_runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(src / "loop_runtime" / "core" / "budget.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _sneaky() -> None:\n    import subprocess  # noqa: F401\n")
    with open(src / "loop_runtime" / "core" / "engine.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _circle() -> None:\n    from .tick import Tick  # noqa: F401\n")
    with open(src / "loop_runtime" / "adapters" / "clock.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _upward() -> None:\n    from ..app.runner import RunOptions  # noqa: F401\n")
    proc = _lint(tmp_path, src)
    out = proc.stdout
    assert proc.returncode != 0, out
    assert "core and formats import no I/O module BROKEN" in out
    assert "loop_runtime.core.budget -> subprocess" in out
    assert "No import circle between sibling modules, at any depth (lazy imports count) BROKEN" in out
    assert "Layers: drivers → application → adapters → core → ports | formats BROKEN" in out
