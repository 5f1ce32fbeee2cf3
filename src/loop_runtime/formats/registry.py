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

This module parses text (or an already-loaded document); which file is read — the
project's or the bundled copy and its JSON cache — is ``adapters.project_files.load_registry``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any, Literal

from ..errors import ConfigError
from .registry_types import CostModel, Pattern, Registry

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
    return registry_from_document(_load_yaml(text, file), file=file, source=source)


def registry_from_document(doc: Any, *, file: str = DEFAULT_FILE, source: str = "project") -> Registry:
    """Validate an already-loaded registry document (what ``yaml.safe_load`` gives) into a ``Registry``."""
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


def source_stamp(raw: bytes) -> dict[str, int]:
    """What identifies the YAML a cached document was loaded from: its length and CRC-32."""
    import zlib

    return {"bytes": len(raw), "crc32": zlib.crc32(raw)}


def bundled_document(raw: bytes, cache: Any) -> Any:
    """The bundled registry's document from its JSON cache, or None when the cache is not for ``raw``.

    ``data/registry.json`` holds ``yaml.safe_load(registry.yaml)`` as JSON (written by
    ``scripts/bundle_registry.py``, checked current by the tests), so ``list`` and
    ``status`` need not import PyYAML for the registry almost every project uses. The
    document still goes through the same validation; only the YAML reading is skipped,
    and only when the stamp matches the YAML byte for byte (an edited registry.yaml is
    read as YAML).
    """
    if not isinstance(cache, Mapping) or cache.get("source") != source_stamp(raw):
        return None
    return cache.get("document")


def find_pattern(registry: Registry, pattern_id: str) -> Pattern:
    """Resolve ``--pattern`` by id only (R5); an unknown id names the valid ones."""
    for pattern in registry.patterns:
        if pattern.id == pattern_id:
            return pattern
    from .pattern_names import explain_unknown, workflow_only

    message = explain_unknown(pattern_id, registry.ids(), {p.name: p.id for p in registry.patterns})
    file = "" if workflow_only(pattern_id) else registry.path  # not a registry problem: no file to blame
    raise ConfigError(file, "pattern", pattern_id, valid=registry.ids(), message=message)


def _load_yaml(text: str, file: str) -> Any:
    """The document, read by libyaml where PyYAML has it (ten times faster than the pure loader).

    libyaml is used for what a registry is — a mapping. Whatever else it meets (a
    syntax error, a top level that is not a mapping, where libyaml and the pure
    loader disagree on odd input such as a bare ``!`` or ``>#``) is decided by the
    pure-Python loader, so those error messages stay the pure loader's. Inside a
    mapping, libyaml's reading of malformed scalars or tags can still differ from the
    pure loader's (it is slightly more lenient); a registry that either loader reads
    as a registry passes the same validation below.
    """
    from .yaml_guard import refuse_alias_bombs

    refuse_alias_bombs(text, file=file)  # before either loader expands an alias bomb
    import yaml  # here, not at the top: the bundled registry (the usual case) needs no YAML reader

    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            doc = yaml.load(text, Loader=fast)  # noqa: S506 - CSafeLoader is the safe loader
        except Exception:  # the pure loader below gives the verdict and the message
            doc = None
        if isinstance(doc, Mapping):
            return doc
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
