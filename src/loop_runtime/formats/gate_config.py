"""``gate.yaml``: the machine-readable path policy that loop-gate enforces (R13, R14).

    version: 1                 # required, exactly 1
    denylist: ["**/.env", ...] # required: any match escalates, whatever the action
    maxFiles: 10               # optional: more changed paths than this escalates
    autoMergeAllowlist: [...]  # optional: with action auto-merge every path must match

Validation follows loop-gate 1.0.0 (same checks, same wording after the field name).
Unknown keys are ignored, as loop-gate ignores them. YAML is read with the YAML 1.2
core schema that loop-gate's ``yaml`` package uses, so ``on``/``yes`` stay strings and
duplicate keys are an error, instead of PyYAML's YAML 1.1 readings.

A project without ``gate.yaml`` still gets a policy: docs/safety.md's default denylist
with auto-merge disabled (R14), and a warning saying so (``missing_gate_warning``; the file is
read by ``adapters.project_files.load_gate_policy``, this module only parses text).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ConfigError

GATE_FILE = "gate.yaml"
_SHAPE = "expected { version: 1, denylist: string[], ... }."


@dataclass(frozen=True)
class GatePolicy:
    """A validated path policy. ``auto_merge_allowlist=None`` means nothing may auto-merge."""

    denylist: tuple[str, ...]
    max_files: int | None
    auto_merge_allowlist: tuple[str, ...] | None
    source: str  # the file it came from, or "default"


DEFAULT_POLICY = GatePolicy(
    denylist=(
        ".env", ".env.*", "**/secrets/**", "**/credentials/**", "**/*_key*", "**/*_secret*",
        ".terraform/**", "k8s/production/**", "**/migrations/**", "auth/**", "payments/**", "billing/**",
    ),
    # docs/safety.md: "changes touching >N files (N=10)" always need a human.
    max_files=10,
    auto_merge_allowlist=None,
    source="default",
)

# ------------------------------------------------------------------ YAML 1.2 core schema


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate keys refused."""


def _strip_resolvers(tags: set[str]) -> None:
    resolvers = {k: [(tag, rx) for tag, rx in v if tag not in tags]
                 for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    _CoreLoader.yaml_implicit_resolvers = resolvers


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# YAML 1.1 extras that the 1.2 core schema reads as plain strings: dates, "=".
_strip_resolvers({_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"})
_CoreLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_CoreLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                  list("-+0123456789"))
_CoreLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key: let the normal constructor complain
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"Map keys must be unique: {key!r}",
                                                    key_node.start_mark)
    return loader.construct_mapping(node)


_CoreLoader.add_constructor(_INT, _construct_int)
_CoreLoader.add_constructor(_FLOAT, _construct_float)
_CoreLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def load_yaml(text: str, *, file: str) -> Any:
    """Parse YAML the way loop-gate does; syntax errors become a one-line ``ConfigError``."""
    from .yaml_guard import refuse_alias_bombs

    refuse_alias_bombs(text, file=file)
    try:
        return yaml.load(text, Loader=_CoreLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(file, "yaml", None, message=f"invalid YAML: {problem}{where}") from None
    except (ValueError, RecursionError) as err:
        raise ConfigError(file, "yaml", None, message=f"invalid YAML: {err}") from None


# ------------------------------------------------------------------ gate.yaml


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string_list(data: dict[str, Any], key: str, file: str) -> tuple[str, ...]:
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(file, key, value, message=f'{key} invalid: {value!r} — "{key}" must be an array of strings.')
    return tuple(value)


def _max_files(data: dict[str, Any], file: str) -> int | None:
    if "maxFiles" not in data:
        return None
    value = data["maxFiles"]
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(file, "maxFiles", value,
                          message=f'maxFiles invalid: {value!r} — "maxFiles" must be a number.')
    if value != int(value):
        # loop-gate would compare against 2.5; a file count is whole, so say so instead.
        raise ConfigError(file, "maxFiles", value,
                          message=f'maxFiles invalid: {value!r} — "maxFiles" must be a whole number.')
    return int(value)


def parse_gate_yaml(text: str, *, file: str = GATE_FILE) -> GatePolicy:
    """Validate ``gate.yaml`` text like loop-gate's ``loadGateConfig``; bad input → ``ConfigError``."""
    data = load_yaml(text, file=file)
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not _is_number(version) or version != 1:
        raise ConfigError(file, "version", version, message=f"version invalid: {version!r} — {_SHAPE}")
    denylist = _string_list(data, "denylist", file) if "denylist" in data else None
    if denylist is None:
        raise ConfigError(file, "denylist", None, message='denylist missing — "denylist" must be an array of strings.')
    allowlist = _string_list(data, "autoMergeAllowlist", file) if "autoMergeAllowlist" in data else None
    return GatePolicy(denylist=denylist, max_files=_max_files(data, file),
                      auto_merge_allowlist=allowlist, source=file)


def render_gate_yaml(policy: GatePolicy) -> str:
    """Write a policy as ``gate.yaml`` text (strings JSON-quoted, which is valid YAML)."""
    lines = ["version: 1", "denylist:"] + [f"  - {json.dumps(g)}" for g in policy.denylist]
    if not policy.denylist:
        lines[-1] = "denylist: []"
    if policy.max_files is not None:
        lines.append(f"maxFiles: {policy.max_files}")
    if policy.auto_merge_allowlist is not None:
        if policy.auto_merge_allowlist:
            lines.append("autoMergeAllowlist:")
            lines += [f"  - {json.dumps(g)}" for g in policy.auto_merge_allowlist]
        else:
            lines.append("autoMergeAllowlist: []")
    return "\n".join(lines) + "\n"


def missing_gate_warning(root: str) -> str:
    """The warning logged when ``root`` has no ``gate.yaml`` and ``DEFAULT_POLICY`` applies (R14)."""
    return (f"{GATE_FILE} not found in {root}: using the docs/safety.md default denylist "
            "(max 10 files); auto-merge is disabled")
