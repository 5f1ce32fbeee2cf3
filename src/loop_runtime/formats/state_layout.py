"""Each pattern's own state-file shape: which sections its starter has and where a tick writes.

loop-init scaffolds a different state file per pattern (``ci-sweeper-state.md`` has
*Active Failures / Watch (flakes / infra) / Resolved (last 7d)*, ``pr-babysitter-state.md``
has *Watched PRs / Escalated (human required) / Resolved*, …). A runtime that wrote the
daily-triage sections (*High Priority / Watch List / Recent Noise*) into every file left
the pattern's own sections empty and grew foreign ones. So a layout says, per pattern:

* the H1 and sections a fresh file gets (the starter's headings, loop-init 1.7.0);
* ``report``: where a report tick lists what triage found;
* ``escalate``: where an escalation entry (``- [ ] id — title`` + Loop action + Human
  decision) goes;
* ``placeholders``: the starter's "nothing yet" lines (``- (none yet — first run will
  populate)``, ``None.``), replaced by the first real entry.

Sections a human owns (denylists, overrides, allowlists) are never written. A pattern
without a layout (a project's own registry entry) gets the canonical triage layout, as
before. Pure: text/values in and out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .state import (
    CANONICAL_SECTIONS,
    HIGH_PRIORITY,
    RECENT_NOISE,
    WATCH_LIST,
    StateDoc,
    _comment_lines,
    _entry_spans,
    _find_section,
    _strip_eol,
    _with_body,
    add_high_priority,
    ensure_canonical_sections,
    replace_section_items,
)


@dataclass(frozen=True)
class StateLayout:
    title: str  # H1 of a fresh file; "{project}" is replaced by the project's name
    sections: tuple[str, ...]
    report: str
    escalate: str
    footer: bool = True

    @property
    def canonical(self) -> bool:
        return self.sections == CANONICAL_SECTIONS


TRIAGE = StateLayout("Loop State — {project}", CANONICAL_SECTIONS, WATCH_LIST, HIGH_PRIORITY)

#: by pattern id (loop-init 1.7.0's starters; issue-pr-repair from its starter in the ecosystem repo)
LAYOUTS: dict[str, StateLayout] = {
    "daily-triage": TRIAGE,
    "ci-sweeper": StateLayout("CI Sweeper State", ("Active Failures", "Watch (flakes / infra)", "Resolved (last 7d)"),
                              report="Active Failures", escalate="Active Failures"),
    "pr-babysitter": StateLayout("PR Babysitter State",
                                 ("Watched PRs", "Escalated (human required)", "Resolved (last 7d)"),
                                 report="Watched PRs", escalate="Escalated (human required)"),
    "dependency-sweeper": StateLayout("Dependency Sweeper State — {project}",
                                      ("Watched manifests", "In-flight / recent",
                                       "Human decisions & denylist (edit these)"),
                                      report="In-flight / recent", escalate="In-flight / recent", footer=False),
    "post-merge-cleanup": StateLayout("Post-Merge Cleanup State — {project}",
                                      ("Pending Cleanup (from recent merges)", "Completed (last 14d)",
                                       "Deferred (human decision)", "Denylist paths"),
                                      report="Pending Cleanup (from recent merges)",
                                      escalate="Deferred (human decision)", footer=False),
    "changelog-drafter": StateLayout("Changelog Drafter State — {project}",
                                     ("Pending Drafts", "Recently Published", "Post-Run Critique (from last run)",
                                      "Scan Window Notes"),
                                     report="Pending Drafts", escalate="Pending Drafts", footer=False),
    "issue-triage": StateLayout("Issue Triage State — {project}",
                                ("Top 5 (by loop score)", "Proposed Labels (not applied — L1)",
                                 "Possible Duplicates (human confirm)", "Noise / Ignored",
                                 "Allowlisted labels (L2 only)", "Denylist (always human)"),
                                report="Top 5 (by loop score)", escalate="Top 5 (by loop score)", footer=False),
    "issue-pr-repair": StateLayout("Issue + PR Repair State",
                                   ("Active lease", "Last selected target", "Human required", "Recent handoffs"),
                                   report="Recent handoffs", escalate="Human required", footer=False),
}

#: the starters' "nothing here yet" lines
_PLACEHOLDER = re.compile(r"^\s*(?:[-*+]\s+)?(?:\(\s*(?:none|n/?a|—)(?:\s+yet)?(?:\s*[—–-][^)]*)?\)|(?:none|n/?a|—)\.?)\s*$",
                          re.IGNORECASE)


def layout_for(pattern_id: str, state_file: str) -> StateLayout:
    """The pattern's layout; the canonical triage one for STATE.md and patterns we have no starter for."""
    if state_file == "STATE.md":
        return TRIAGE
    return LAYOUTS.get(pattern_id, TRIAGE)


def new_layout_text(layout: StateLayout, project: str) -> str:
    """A fresh state file with the pattern's starter headings (the starter's shape, none of its sample data)."""
    name = " ".join(project.split()) or "project"
    parts = [f"# {layout.title.replace('{project}', name)}", "", "Last run: never", ""]
    for title in layout.sections:
        parts += [f"## {title}", ""]
    if layout.footer:
        parts += ["---", "Run log: see loop-run-log.md", ""]
    return "\n".join(parts)


def prepare(doc: StateDoc, layout: StateLayout) -> StateDoc:
    """What every tick does to the sections: the canonical layout keeps its three sections present."""
    return ensure_canonical_sections(doc) if layout.canonical else doc


def drop_placeholders(doc: StateDoc, title: str) -> StateDoc:
    """Remove the starter's "(none yet …)" / "None." lines from a section about to get real entries."""
    index = _find_section(doc, title)
    if index is None:
        return doc
    body = list(doc.sections[index].body)
    hidden = _comment_lines(body)
    kept = [line for i, line in enumerate(body) if i in hidden or not _PLACEHOLDER.match(_strip_eol(line))
            or not _strip_eol(line).strip()]
    return doc if len(kept) == len(body) else _with_body(doc, index, kept)


def write_report(doc: StateDoc, layout: StateLayout, items: list[str]) -> StateDoc:
    """List a report tick's items in the pattern's report section, keeping escalation entries there."""
    if not items:
        return doc
    doc = drop_placeholders(doc, layout.report)
    index = _find_section(doc, layout.report)
    kept: list[str] = []
    if index is not None:
        body = doc.sections[index].body
        starts = {s: e for s, e in _all_entry_spans(body)}
        for start, stop in starts.items():
            kept += [_strip_eol(line) for line in body[start:stop]]
    return replace_section_items(doc, layout.report, [*kept, *items])


def write_escalation(doc: StateDoc, layout: StateLayout, item_id: str, line: str, action: str) -> StateDoc:
    """A new escalation entry in the pattern's escalation section (never merged with an earlier one)."""
    doc = drop_placeholders(doc, layout.escalate)
    return add_high_priority(doc, item_id, line, action, section=layout.escalate)


def _all_entry_spans(body: tuple[str, ...]) -> list[tuple[int, int]]:
    """Every checkbox entry (``- [ ] id — …`` with its indented lines) in a section body."""
    from .state import _CHECKBOX

    hidden = _comment_lines(list(body))
    ids = {m.group(2) for i, raw in enumerate(body) if i not in hidden
           for m in [_CHECKBOX.match(_strip_eol(raw))] if m}
    return sorted(span for item_id in ids for span in _entry_spans(body, item_id))


__all__ = ["LAYOUTS", "RECENT_NOISE", "TRIAGE", "StateLayout", "drop_placeholders", "layout_for", "new_layout_text",
           "prepare", "write_escalation", "write_report"]
