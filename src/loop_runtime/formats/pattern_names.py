"""Names a user may type for a pattern that are not ids in the registry, and what to say instead.

Users arrive from ``npx @cobusgreyling/loop-init``, whose vocabulary is wider than the
registry's: ``thin-loop`` is a loop-init pattern that *is* a GitHub workflow (the Action
is the loop; there is no STATE.md and nothing for a runtime to tick), and the starters
have folder names of their own (``minimal-loop`` is daily-triage's starter,
``ci-sweeper-opencode`` a per-tool variant). Answering "pattern invalid" to any of them
reads as a bug, so an id that is not found is explained by kind, in one line:

* a workflow-only loop-init pattern → say so and what to do with it;
* a starter or per-tool starter name → the registry id it scaffolds;
* a different spelling of an id (case, spaces, the pattern's display name) → that id;
* anything else → "did you mean" with the closest ids (difflib, like an unknown command).

Pure: values in, a sentence out (loop-init 1.7.0's lists, copied; no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: loop-init patterns that scaffold a GitHub workflow instead of a runtime loop
WORKFLOW_ONLY: dict[str, str] = {
    "thin-loop": ".github/workflows/thin-loop.yml",
}

#: loop-init starter folders whose name differs from the pattern they scaffold
STARTER_OF: dict[str, str] = {
    "minimal-loop": "daily-triage",
}

#: loop-init's per-tool starter suffixes (``ci-sweeper-opencode``, ``minimal-loop-claude``)
TOOL_SUFFIXES = ("-claude", "-codex", "-opencode", "-grok")


def workflow_only(pattern_id: str) -> bool:
    """True for a loop-init pattern (or its per-tool starter) that is a GitHub workflow, not a runtime loop."""
    key = _normal(pattern_id)
    return key in WORKFLOW_ONLY or any(key == w + s for w in WORKFLOW_ONLY for s in TOOL_SUFFIXES)


def _normal(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def explain_unknown(pattern_id: str, ids: Sequence[str], names: dict[str, str] | None = None) -> str:
    """The one-line reason ``pattern_id`` is not runnable here, with the way forward.

    ``ids`` are the registry's ids; ``names`` maps a pattern's display name to its id.
    """
    valid = ", ".join(ids)
    key = _normal(pattern_id)
    base = key
    for suffix in TOOL_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    if base in WORKFLOW_ONLY:
        return (f"{pattern_id!r} is a loop-init pattern that runs as a GitHub workflow "
                f"({WORKFLOW_ONLY[base]}), not a registry pattern: there is nothing for loop-runtime to plan or "
                f"run — commit the workflow instead (registry patterns: {valid})")
    target = STARTER_OF.get(base, base)
    if (base in STARTER_OF or base != key) and target in ids:
        return (f"pattern invalid: {pattern_id!r} is loop-init's starter for {target!r}; "
                f"use the pattern id: {target}")
    if key != pattern_id and key in ids:
        return f"pattern invalid: {pattern_id!r} — did you mean {key!r}? (ids are lower-case; valid: {valid})"
    for name, pid in (names or {}).items():
        if _normal(name) == key and pid in ids:
            return f"pattern invalid: {pattern_id!r} is a pattern's name; use its id {pid!r}"
    import difflib  # only for an unknown id: `status`, `list` and every tick import this module

    close = difflib.get_close_matches(key, list(ids), n=3, cutoff=0.6)
    hint = f" — did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"pattern invalid: {pattern_id!r}{hint} (valid: {valid})"
