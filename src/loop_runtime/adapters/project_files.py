"""Loads a project's configuration files and environment into the values ``formats/`` parses.

``formats/`` turns text into values and never touches the file system or ``os.environ``
(issue 11); deciding which file is read, whether it exists and what the environment
says is this module's job. Each loader keeps the one-line ``ConfigError`` of the format
it feeds: a file that cannot be read names that file; a bad value names the file, the
field and the value, exactly as the parser reports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TYPE_CHECKING = False  # typing costs start-up time; type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

    from ..formats.gate_config import GatePolicy
    from ..formats.project_config import ProjectConfig
    from ..formats.registry_types import Registry

from ..errors import ConfigError

BUNDLED_REGISTRY = Path(__file__).resolve().parent.parent / "data" / "registry.yaml"
#: the same document, pre-read as JSON (see ``formats.registry.bundled_document``)
BUNDLED_CACHE = BUNDLED_REGISTRY.with_suffix(".json")
PROJECT_REGISTRY = "patterns/registry.yaml"


def read_config_text(path: Path, *, what: str = "") -> str:
    """``path`` as UTF-8 text; an unreadable file is one ``ConfigError`` naming it.

    ``what`` (e.g. ``"gate config"``) goes into the message: ``cannot read gate config: …``.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, what, exc) from None


def read_optional_text(path: Path, *, what: str = "") -> str | None:
    """Like ``read_config_text``, but None when the file does not exist (an optional file)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, what, exc) from None


def _unreadable(path: Path, what: str, exc: Exception) -> ConfigError:
    label = f"cannot read {what}" if what else "cannot read"
    return ConfigError(str(path), "file", None, message=f"{label}: {exc}")


def load_registry(root: Path) -> Registry:
    """The project's ``patterns/registry.yaml`` when present, else the bundled copy (R1).

    Most adopter projects have no registry, so the bundled copy (identical to the
    newest known upstream registry) is the normal case; ``Registry.source`` records
    which one was used.
    """
    from ..formats.registry import bundled_document, parse_registry, registry_from_document

    project = Path(root) / PROJECT_REGISTRY
    if project.is_file():
        return parse_registry(read_config_text(project), file=str(project), source="project")
    bundled = BUNDLED_REGISTRY  # a plain path: importlib.resources costs start-up time for nothing here
    raw = bundled.read_bytes()
    doc = bundled_document(raw, _read_bundled_cache())
    if doc is not None:
        return registry_from_document(doc, file=str(bundled), source="bundled")
    return parse_registry(raw.decode("utf-8"), file=str(bundled), source="bundled")


def _read_bundled_cache() -> Any:
    import json

    try:
        return json.loads(BUNDLED_CACHE.read_bytes())
    except (OSError, ValueError):
        return None  # no cache (or a broken one): the YAML is read instead


def load_gate_policy(root: Path) -> tuple[GatePolicy, str | None]:
    """``<root>/gate.yaml`` if present; else ``DEFAULT_POLICY`` and a warning to log (R14)."""
    from ..formats.gate_config import DEFAULT_POLICY, GATE_FILE, missing_gate_warning, parse_gate_yaml

    path = Path(root) / GATE_FILE
    text = read_optional_text(path, what="gate config")
    if text is None:
        return DEFAULT_POLICY, missing_gate_warning(str(root))
    return parse_gate_yaml(text, file=str(path)), None


def load_project_config(root: Path, env: Mapping[str, str] | None = None) -> ProjectConfig:
    """``<root>/loop-runtime.toml`` when present (else defaults), then environment overrides.

    ``env`` defaults to the process environment (read here, not in ``formats``); the
    ``.mcp.json`` beside the file is read only when ``[mcp]`` names a server.
    """
    from ..formats.project_config import (
        FILE_NAME,
        ProjectConfig,
        apply_env,
        mcp_names_listed,
        parse_project_config,
        with_mcp_servers,
    )

    root = Path(root)
    path = root / FILE_NAME
    config = ProjectConfig()
    if path.is_file():
        config = parse_project_config(read_config_text(path), file=str(path))
        if mcp_names_listed(config):
            from ..formats.mcp_json import FILE_NAME as MCP_FILE

            mcp = root / MCP_FILE
            config = with_mcp_servers(config, read_optional_text(mcp), file=str(path), mcp_file=str(mcp),
                                      root=str(root))
    return apply_env(config, os.environ if env is None else env)
