"""Parse and validate ``patterns/registry.yaml``, the ecosystem's only machine-readable contract.

Validation follows ``scripts/validate-registry.mjs`` (R3) so a registry the ecosystem
rejects is rejected here with the same message shape (``patterns[2].cadence invalid: '15s'``),
with three deliberate relaxations a runtime needs:

* ``cost.stable_fraction`` is accepted (a number in [0, 1]) although the published
  schema rejects it, because the newest registry has it in every entry (R2);
* unknown keys and unknown tool names become warnings, not errors, so a newer
  registry still loads (R2);
* the pattern doc ``file`` and the ``starter`` path are not required to exist:
  adopter projects have neither.

A missing ``cost`` block is kept apart from a malformed one (R4): the former gives
``Pattern.cost = None``, the latter a ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from .registry_types import CostModel, Pattern, Registry

BUNDLED_REGISTRY = Path(__file__).resolve().parent.parent / "data" / "registry.yaml"

ID_RE = re.compile(r"^[a-z][a-z0-9-]*$")
CADENCE_RE = re.compile(r"^[0-9]+[mhd](-[0-9]+[mhd])?$")
FILE_RE = re.compile(r"^[A-Za-z0-9-]+\.md$")  # the validator's looser form (the schema is lower-case only)
RISKS = ("low", "medium", "high")
MODES = ("L1", "L2", "L3")
TOKEN_COSTS = ("low", "medium", "high", "very-high")
TOOLS = ("grok", "claude-code", "codex", "opencode", "openclaw", "github-actions", "cursor", "windsurf", "aider")
REQUIRED = ("id", "name", "file", "goal", "cadence", "risk", "tools", "skills", "state", "phases", "human_gates")
OPTIONAL = ("starter", "week_one_mode", "token_cost", "cost")
COST_REQUIRED = ("tokens_noop", "tokens_report", "tokens_action", "suggested_daily_cap", "early_exit_required")
COST_TOKENS = ("tokens_noop", "tokens_report", "tokens_action", "suggested_daily_cap")
MIN_TOKENS = 1000
DEFAULT_FILE = "patterns/registry.yaml"

_NAME_JUNK = re.compile(r"[\W_]+", re.UNICODE)


def normalise_name(text: str) -> str:
    """Fold a loop name or id to a comparable key: lower case, letters and digits only.

    Humans write "Daily Triage", "daily-triage" or "**Daily triage**" for the same loop
    in LOOP.md and loop-budget.md; all of them fold to ``dailytriage``.
    """
    return _NAME_JUNK.sub("", text).casefold()


def name_matches(name: str, pattern: Pattern) -> bool:
    """True when a free-text loop name refers to ``pattern`` (by id or by human name).

    A trailing parenthetical ("Daily Triage (L1)") is ignored, so table rows that carry
    a level note still match.
    """
    keys = {normalise_name(pattern.id), normalise_name(pattern.name)} - {""}
    candidates = {normalise_name(name), normalise_name(name.split("(", 1)[0])} - {""}
    return bool(keys & candidates)


def parse_registry(text: str, *, file: str = DEFAULT_FILE, source: str = "project") -> Registry:
    """Parse registry text into a ``Registry``; any problem is one ``ConfigError`` line."""
    doc = _load_yaml(text, file)
    if not isinstance(doc, Mapping):
        raise ConfigError(file, "patterns", None, message="top level must be a mapping with a 'patterns' list")
    warnings = [f"unknown top-level key {k!r} ignored" for k in doc if k != "patterns"]
    entries = doc.get("patterns")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(file, "patterns", entries, message="registry.yaml must have a non-empty patterns list")
    patterns: list[Pattern] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        pattern = _parse_pattern(entry, index, file, warnings)
        if pattern.id in seen:
            raise ConfigError(file, f"patterns[{index}].id", pattern.id, message=f"duplicate pattern id: {pattern.id}")
        seen.add(pattern.id)
        patterns.append(pattern)
    kind: Literal["project", "bundled"] = "bundled" if source == "bundled" else "project"
    return Registry(patterns=tuple(patterns), source=kind, path=file, warnings=tuple(warnings))


def load_registry(root: Path) -> Registry:
    """The project's ``patterns/registry.yaml`` when present, else the bundled copy (R1).

    Most adopter projects have no registry, so the bundled copy (identical to the
    newest known upstream registry) is the normal case; ``Registry.source`` records
    which one was used.
    """
    project = Path(root) / "patterns" / "registry.yaml"
    if project.is_file():
        return parse_registry(_read(project), file=str(project), source="project")
    bundled = BUNDLED_REGISTRY  # a plain path: importlib.resources costs start-up time for nothing here
    return parse_registry(bundled.read_text(encoding="utf-8"), file=str(bundled), source="bundled")


def find_pattern(registry: Registry, pattern_id: str) -> Pattern:
    """Resolve ``--pattern`` by id only (R5); an unknown id names the valid ones."""
    for pattern in registry.patterns:
        if pattern.id == pattern_id:
            return pattern
    from .pattern_names import explain_unknown, workflow_only

    message = explain_unknown(pattern_id, registry.ids(), {p.name: p.id for p in registry.patterns})
    file = "" if workflow_only(pattern_id) else registry.path  # not a registry problem: no file to blame
    raise ConfigError(file, "pattern", pattern_id, valid=registry.ids(), message=message)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "file", None, message=f"cannot read: {exc}") from None


def _load_yaml(text: str, file: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown line"
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise ConfigError(file, "yaml", None, message=f"YAML syntax error at {where}: {problem}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(file, "yaml", None, message=f"YAML syntax error: {detail}") from None


def _parse_pattern(entry: object, index: int, file: str, warnings: list[str]) -> Pattern:
    prefix = f"patterns[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(file, prefix, entry, message=f"{prefix} must be a mapping")
    for key in REQUIRED:
        if key not in entry:
            raise ConfigError(file, f"{prefix}.{key}", None, message=f"{prefix} missing required field: {key}")
    warnings.extend(f"{prefix}: unknown key {k!r} ignored" for k in entry if k not in REQUIRED + OPTIONAL)
    v = _Validator(entry, prefix, file)
    pattern_id = v.matching("id", ID_RE)
    tools = v.string_list("tools", min_items=1)
    warnings.extend(f"{prefix}.tools: unknown tool {t!r}" for t in tools if t not in TOOLS)
    return Pattern(
        id=pattern_id,
        name=v.text("name", min_len=3),
        file=v.matching("file", FILE_RE),
        goal=v.text("goal", min_len=10),
        cadence=v.matching("cadence", CADENCE_RE),
        risk=v.choice("risk", RISKS),
        tools=tools,
        skills=v.string_list("skills", min_items=1, min_len=2),
        state=v.matching("state", FILE_RE),
        phases=v.string_list("phases", min_items=2),
        human_gates=v.string_list("human_gates", min_items=1),
        starter=v.optional_text("starter"),
        week_one_mode=v.optional_choice("week_one_mode", MODES),
        token_cost=v.optional_choice("token_cost", TOKEN_COSTS),
        cost=_parse_cost(entry.get("cost"), f"{prefix}.cost", file, warnings) if "cost" in entry else None,
    )


def _parse_cost(raw: object, prefix: str, file: str, warnings: list[str]) -> CostModel:
    if not isinstance(raw, Mapping):
        raise ConfigError(file, prefix, raw)
    for key in COST_REQUIRED:
        if key not in raw:
            raise ConfigError(file, f"{prefix}.{key}", None, message=f"{prefix} missing field: {key}")
    known = (*COST_REQUIRED, "stable_fraction")
    warnings.extend(f"{prefix}: unknown key {k!r} ignored" for k in raw if k not in known)
    tokens = {}
    for key in COST_TOKENS:
        value = raw[key]
        if not _is_int(value) or value < MIN_TOKENS:
            raise ConfigError(file, f"{prefix}.{key}", value)
        tokens[key] = value
    early = raw["early_exit_required"]
    if not isinstance(early, bool):
        raise ConfigError(file, f"{prefix}.early_exit_required", early)
    fraction = raw.get("stable_fraction")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ConfigError(file, f"{prefix}.stable_fraction", fraction)
        fraction = float(fraction)
    return CostModel(**tokens, early_exit_required=early, stable_fraction=fraction)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    """Typed field access on one registry entry; every failure names ``patterns[i].field``."""

    def __init__(self, entry: Mapping[Any, Any], prefix: str, file: str) -> None:
        self.entry, self.prefix, self.file = entry, prefix, file

    def fail(self, key: str, value: object) -> ConfigError:
        return ConfigError(self.file, f"{self.prefix}.{key}", value)

    def text(self, key: str, *, min_len: int = 1) -> str:
        value = self.entry[key]
        if not isinstance(value, str) or len(value.strip()) < min_len:
            raise self.fail(key, value)
        return value

    def matching(self, key: str, regex: re.Pattern[str]) -> str:
        value = self.entry[key]
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise self.fail(key, value)
        return value

    def choice(self, key: str, valid: tuple[str, ...]) -> str:
        value = self.entry[key]
        if not isinstance(value, str) or value not in valid:
            raise ConfigError(self.file, f"{self.prefix}.{key}", value, valid=valid)
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.entry.get(key) is None else self.text(key)

    def optional_choice(self, key: str, valid: tuple[str, ...]) -> str | None:
        return None if self.entry.get(key) is None else self.choice(key, valid)

    def string_list(self, key: str, *, min_items: int, min_len: int = 1) -> tuple[str, ...]:
        value = self.entry[key]
        if not isinstance(value, list) or len(value) < min_items:
            raise self.fail(key, value)
        for i, item in enumerate(value):
            if not isinstance(item, str) or len(item.strip()) < min_len:
                raise self.fail(f"{key}[{i}]", item)
        return tuple(value)
