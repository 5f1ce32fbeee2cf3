"""Refresh the ``docs/last-run.json`` shields.io badge after a run (R24).

The badge is optional: a project opts in by having the file, so nothing is created
when it is missing. Only ``message`` (the UTC date of the run) changes; the existing
label, colour, key order, indentation and trailing newline are kept, so a badge a
human restyled stays restyled and the git diff is one line.
"""

from __future__ import annotations

import json
from datetime import datetime, UTC
from typing import Any

from ..errors import ConfigError

DEFAULTS: dict[str, Any] = {"schemaVersion": 1, "label": "last triage", "message": "", "color": "3ee8c5"}


def update_last_run(text: str | None, when: datetime, *, file: str = "docs/last-run.json") -> str | None:
    """New badge text for a run at ``when``, or None when the badge file does not exist."""
    if text is None:
        return None
    try:
        data = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):
        raise ConfigError(file, "json", None, message="not valid JSON; fix or delete the badge file") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "json", None, message="badge must be a JSON object")
    for key, value in DEFAULTS.items():
        data.setdefault(key, value)
    data["message"] = _utc(when).strftime("%Y-%m-%d")
    indent = _indent(text)
    rendered = json.dumps(data, ensure_ascii=False, indent=indent, separators=(",", ":") if indent is None else None)
    return rendered + ("\n" if text.endswith("\n") or not text.strip() else "")


def _indent(text: str) -> str | None:
    """The indentation of the first nested line (``"  "`` in the fixture), None for compact JSON."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped != line:
            return line[: len(line) - len(stripped)]
    return None if text.strip() else "  "


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
