"""Lossless model of ``STATE.md`` and the per-pattern state files (R20, R21).

A state file is committed and read by humans, so the runtime edits it like a careful
person would: it changes only the lines it means to change and leaves every other
byte alone. ``parse_state`` therefore keeps the raw lines (with their own line
endings) split into three parts:

* ``preamble``: everything before the first ``## `` heading (H1, ``Last run:``,
  blockquotes, ``Repository:`` lines ...);
* ``sections``: one ``StateSection`` per ``## `` heading, holding the heading line
  and its raw body lines (``### `` sub-headings stay inside the body);
* ``footer``: the trailing ``---`` rule followed by ``Run log: ...`` (or nothing).

``render_state(parse_state(t)) == t`` for every text. Each edit function returns a
new ``StateDoc``; ``Last run:`` is the only line ``with_last_run`` touches.

Section lookup is lenient because adopters' files vary ("High priority (loop acting /
waiting on human)" in the quant starter): a title matches when its text before any
``(`` equals the wanted title's, ignoring case and spacing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, UTC

HIGH_PRIORITY = "High Priority (loop is acting or waiting on human)"
WATCH_LIST = "Watch List"
RECENT_NOISE = "Recent Noise (ignored this run)"
CANONICAL_SECTIONS = (HIGH_PRIORITY, WATCH_LIST, RECENT_NOISE)

_H2 = re.compile(r"^##(?!#)[ \t]*(.*?)[ \t]*#*[ \t]*$")
_H1 = re.compile(r"^#(?!#)[ \t]")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LAST_RUN = re.compile(r"^\s*(?:\*\*)?last run(?:\*\*)?\s*:", re.IGNORECASE)
_LAST_UPDATED = re.compile(r"^\s*(?:\*\*)?last updated(?:\*\*)?\s*:", re.IGNORECASE)
_RULE = re.compile(r"^\s*---+\s*$")
_RUN_LOG = re.compile(r"^\s*(?:\*\*)?run log", re.IGNORECASE)
_CHECKBOX = re.compile(r"^[-*+] \[([ xX])\] (\S+)")
_BULLET = re.compile(r"^[-*+](?:\s|$)")
_HUMAN_DECISION = re.compile(r"^(\s+)Human decision:", re.IGNORECASE)


@dataclass(frozen=True)
class StateSection:
    """One ``## `` section: the heading line and the raw body lines (endings kept)."""

    heading: str
    body: tuple[str, ...]

    @property
    def title(self) -> str:
        match = _H2.match(_strip_eol(self.heading))
        return match.group(1) if match else _strip_eol(self.heading)


@dataclass(frozen=True)
class StateDoc:
    preamble: tuple[str, ...]
    sections: tuple[StateSection, ...]
    footer: tuple[str, ...]
    file: str = "STATE.md"

    @property
    def newline(self) -> str:
        """The file's own line ending, reused for every line the runtime adds."""
        lines = self.lines()
        for line in lines:
            if line.endswith("\n"):
                return "\r\n" if line.endswith("\r\n") else "\n"
        # No terminated line yet: a trailing "\r" means "\n" would complete a CRLF
        # and change the file's style on the next edit, so use CRLF from the start.
        return "\r\n" if lines and lines[-1].endswith("\r") else "\n"

    def lines(self) -> tuple[str, ...]:
        body = tuple(line for s in self.sections for line in (s.heading, *s.body))
        return self.preamble + body + self.footer

    def titles(self) -> list[str]:
        return [s.title for s in self.sections]

    def section(self, title: str) -> StateSection | None:
        index = _find_section(self, title)
        return None if index is None else self.sections[index]

    @property
    def last_run(self) -> str | None:
        """The raw value after ``Last run:`` (``never``, an ISO time ...), or None when absent."""
        for line in self.preamble:
            if _LAST_RUN.match(line):
                return _strip_eol(line).split(":", 1)[1].strip()
        return None


def parse_state(text: str, *, file: str = "STATE.md") -> StateDoc:
    """Split a state file into preamble, sections and footer; never fails, loses nothing."""
    lines = _split_lines(text)
    starts = _heading_indexes(lines)
    tail_from = starts[-1] + 1 if starts else 0
    footer_at = _footer_index(lines, tail_from)
    end = footer_at if footer_at is not None else len(lines)
    first = starts[0] if starts else end
    sections = []
    for n, start in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else end
        sections.append(StateSection(heading=lines[start], body=tuple(lines[start + 1:stop])))
    return StateDoc(
        preamble=tuple(lines[:first]),
        sections=tuple(sections),
        footer=tuple(lines[end:]),
        file=file,
    )


def render_state(doc: StateDoc) -> str:
    return "".join(doc.lines())


def new_state_text(project: str) -> str:
    """A fresh state file in the canonical triage shape (the loop-init / audit template)."""
    name = " ".join(project.split()) or "project"
    parts = [f"# Loop State — {name}", "", "Last run: never", ""]
    for title in CANONICAL_SECTIONS:
        parts += [f"## {title}", ""]
    parts += ["---", "Run log: see loop-run-log.md", ""]
    return "\n".join(parts)


def format_time(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC; a naive time is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_last_run(doc: StateDoc, when: datetime, note: str) -> StateDoc:
    """Set ``Last run: <UTC time> (<note>)``, replacing the existing line or adding one.

    A ``Last updated:`` line (quant starter) is human prose and stays; the new
    ``Last run:`` line goes right after it, else after the H1, else at the top.
    """
    nl = doc.newline
    note = _one_line(note)
    line = f"Last run: {format_time(when)}" + (f" ({note})" if note else "") + nl
    pre = list(doc.preamble)
    for i, existing in enumerate(pre):
        if _LAST_RUN.match(existing):
            pre[i] = line if existing.endswith("\n") else line.rstrip("\r\n")
            return replace(doc, preamble=tuple(pre))
    anchor = next((i for i, s in enumerate(pre) if _LAST_UPDATED.match(s)), None)
    if anchor is None:
        anchor = next((i for i, s in enumerate(pre) if _H1.match(s)), None)
    if anchor is None:
        return replace(doc, preamble=(line, nl, *pre))
    if not pre[anchor].endswith("\n"):
        pre[anchor] += nl
    insert = [line] if _LAST_UPDATED.match(pre[anchor]) else [nl, line]
    pre[anchor + 1:anchor + 1] = insert
    return replace(doc, preamble=tuple(pre))


def ensure_canonical_sections(doc: StateDoc) -> StateDoc:
    """Add whichever of the three canonical sections is missing, in order, before the footer."""
    for title in CANONICAL_SECTIONS:
        if _find_section(doc, title) is None:
            doc = _add_section(doc, title, len(doc.sections))
    return doc


def add_high_priority(
    doc: StateDoc, item_id: str, line: str, loop_action: str, human_decision: str = "pending", *,
    section: str = HIGH_PRIORITY,
) -> StateDoc:
    """Record an escalation as a new entry under High Priority (or the pattern's own ``section``).

    Each escalation is its own entry: a second escalation of the same item is a second
    entry (a human decides each one), never merged into the first. Recording the very
    same escalation again (same id, title and loop action — a resumed tick replaying
    it) changes nothing. An entry a human moved to another section is left there.
    """
    _check_id(item_id)
    nl = doc.newline
    entry = [
        f"- [ ] {item_id} — {_one_line(line)}{nl}",
        f"  Loop action: {_one_line(loop_action)}{nl}",
        f"  Human decision: {_one_line(human_decision)}{nl}",
    ]
    target = _find_section(doc, section)
    if target is not None:
        body = doc.sections[target].body
        for start, stop in _entry_spans(body, item_id):
            if [_strip_eol(x) for x in body[start:start + 2]] == [_strip_eol(x) for x in entry[:2]]:
                new_body = list(body)
                new_body[start:stop] = entry
                return _with_body(doc, target, new_body)
    else:
        before = None
        if _key(section) == _key(HIGH_PRIORITY):
            before = _find_section(doc, WATCH_LIST)
            if before is None:
                before = _find_section(doc, RECENT_NOISE)
        target = len(doc.sections) if before is None else before
        doc = _add_section(doc, section, target)
    return _with_body(doc, target, _append_lines(doc, target, entry))


def set_human_decision(doc: StateDoc, item_id: str, decision: str, *, resolved: bool = True,
                       ref: str | None = None) -> StateDoc:
    """Rewrite an entry's ``Human decision:`` line and tick its box when resolved.

    The entry is looked for in every section (a human may have moved it). With several
    entries for one item (it escalated more than once) the one mentioning ``ref`` (the
    escalation id) wins, else the first still open, else the first. A human may also
    have removed it; then there is nothing to record and the document comes back
    unchanged.
    """
    nl = doc.newline
    candidates = [(i, span) for i, sec in enumerate(doc.sections) for span in _entry_spans(sec.body, item_id)]

    def rank(c: tuple[int, tuple[int, int]]) -> int:
        lines = doc.sections[c[0]].body[c[1][0]:c[1][1]]
        if ref and any(ref in line for line in lines):
            return 0
        return 1 if _CHECKBOX.match(_strip_eol(lines[0])).group(1) == " " else 2  # type: ignore[union-attr]

    for index, span in sorted(candidates, key=rank)[:1]:
        section = doc.sections[index]
        body = list(section.body)
        start, stop = span
        if resolved:
            body[start] = re.sub(r"^([-*+] )\[ \]", r"\1[x]", body[start], count=1)
        new_line = f"Human decision: {_one_line(decision)}"
        for i in range(start + 1, stop):
            match = _HUMAN_DECISION.match(body[i])
            if match:
                body[i] = f"{match.group(1)}{new_line}{_eol(body[i]) or nl}"
                break
        else:
            if not body[stop - 1].endswith("\n"):
                body[stop - 1] += nl
            body.insert(stop, f"  {new_line}{nl}")
        return _with_body(doc, index, body)
    return doc


def replace_section_items(doc: StateDoc, title: str, lines: list[str]) -> StateDoc:
    """Replace a section's bullet items (with their indented continuation lines).

    Non-bullet prose in the section stays where it is; the new items go where the
    first old item was, and runs of blank lines the old items leave behind shrink to
    one. A line given without a bullet marker gets ``- `` so the next run can find and
    replace it again.
    """
    nl = doc.newline
    new: list[str] = []
    for line in lines:
        new.append(_as_item(line, continuation=bool(new)) + nl)
    index = _find_section(doc, title)
    if index is None:
        index = len(doc.sections)
        doc = _add_section(doc, title, index)
        return _with_body(doc, index, _append_lines(doc, index, new)) if new else doc
    body = list(doc.sections[index].body)
    hidden = _comment_lines(body)
    kept: list[str] = []
    insert_at: int | None = None
    in_item = False
    for i, raw in enumerate(body):
        text = _strip_eol(raw)
        if i not in hidden and _BULLET.match(text):
            in_item = True
            insert_at = len(kept) if insert_at is None else insert_at
            continue
        if in_item and text.strip() and text[:1] in (" ", "\t"):
            continue
        in_item = False
        kept.append(raw)
    if insert_at is None:
        doc = _with_body(doc, index, kept)
        return _with_body(doc, index, _append_lines(doc, index, new)) if new else doc
    if insert_at > 0 and not kept[insert_at - 1].endswith("\n"):
        kept[insert_at - 1] += nl
    head, rest = kept[:insert_at], _collapse_blank_runs(kept[insert_at:])
    if not new and head and rest and not _strip_eol(head[-1]).strip() and not _strip_eol(rest[0]).strip():
        rest = rest[1:]
    return _with_body(doc, index, head + new + rest)


def append_section_line(doc: StateDoc, title: str, line: str) -> StateDoc:
    """Append one line to a section, creating the section at the end (before the footer)."""
    index = _find_section(doc, title)
    if index is None:
        index = len(doc.sections)
        doc = _add_section(doc, title, index)
    return _with_body(doc, index, _append_lines(doc, index, [_one_line(line) + doc.newline]))


def high_priority_ids(doc: StateDoc) -> list[str]:
    """Ids of the checkbox entries (``- [ ] <id> — ...``) under High Priority, in order."""
    index = _find_section(doc, HIGH_PRIORITY)
    if index is None:
        return []
    body = doc.sections[index].body
    hidden = _comment_lines(list(body))
    ids = []
    for i, raw in enumerate(body):
        match = _CHECKBOX.match(_strip_eol(raw))
        if match and i not in hidden:
            ids.append(match.group(2))
    return ids


# ── helpers ────────────────────────────────────────────────────────────────


def _split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping each line's ending (so ``\\r\\n`` survives)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _strip_eol(line: str) -> str:
    return line[:-len(_eol(line))] if _eol(line) else line


def _eol(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


def _heading_indexes(lines: list[str]) -> list[int]:
    starts = []
    fenced = False
    for i, line in enumerate(lines):
        text = _strip_eol(line)
        if _FENCE.match(text):
            fenced = not fenced
        elif not fenced and _H2.match(text):
            starts.append(i)
    return starts


def _unclosed_fence(lines: list[str]) -> str | None:
    """The marker (```` ``` ```` or ``~~~``) of a code fence still open after ``lines``, else None."""
    marker = None
    for line in lines:
        match = _FENCE.match(_strip_eol(line))
        if match:
            marker = None if marker else match.group(1)
    return marker


def _footer_index(lines: list[str], start: int) -> int | None:
    """The last ``---`` rule after ``start`` that is followed only by a ``Run log`` line or nothing."""
    fenced = False
    candidate = None
    for i in range(start, len(lines)):
        text = _strip_eol(lines[i])
        if _FENCE.match(text):
            fenced = not fenced
        elif not fenced and _RULE.match(text):
            rest = [_strip_eol(s) for s in lines[i + 1:] if _strip_eol(s).strip()]
            if not rest or _RUN_LOG.match(rest[0]):
                candidate = i
    return candidate


def _key(title: str) -> str:
    text = title.strip().lstrip("#").split("(", 1)[0]
    return " ".join(text.split()).casefold()


def _find_section(doc: StateDoc, title: str) -> int | None:
    wanted = _strip_eol(title).strip().lstrip("#").strip()
    for i, s in enumerate(doc.sections):
        if s.title == wanted:
            return i
    key = _key(wanted)
    for i, s in enumerate(doc.sections):
        if key and _key(s.title) == key:
            return i
    return None


def _canonical_title(title: str) -> str:
    wanted = " ".join(_strip_eol(title).strip().lstrip("#").split())
    return next((t for t in CANONICAL_SECTIONS if _key(t) == _key(wanted)), wanted)


def _add_section(doc: StateDoc, title: str, position: int) -> StateDoc:
    """Insert an empty ``## title`` section at ``position``, keeping a blank line before it."""
    nl = doc.newline
    sections = list(doc.sections)
    preamble = tuple(doc.preamble)
    before = list(preamble) + [line for s in sections[:position] for line in (s.heading, *s.body)]
    closers = _closers(before)  # a heading inside an open fence or comment would not show
    if position > 0:
        prev = sections[position - 1]
        lines = _end_with_blank([prev.heading, *prev.body], nl, closers)
        sections[position - 1] = StateSection(heading=lines[0], body=tuple(lines[1:]))
    else:
        preamble = tuple(_end_with_blank(list(preamble), nl, closers))
    sections.insert(position, StateSection(heading=f"## {_canonical_title(title)}{nl}", body=(nl,)))
    return replace(doc, preamble=preamble, sections=tuple(sections))


def _end_with_blank(lines: list[str], nl: str, closers: Sequence[str] = ()) -> list[str]:
    """``lines`` terminated by a newline (and ``closers``) and followed by one blank line."""
    lines = list(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += nl
    lines.extend(c + nl for c in closers)
    if lines and _strip_eol(lines[-1]).strip():
        lines.append(nl)
    return lines


def _with_body(doc: StateDoc, index: int, body: list[str]) -> StateDoc:
    sections = list(doc.sections)
    heading = sections[index].heading
    if body and not heading.endswith("\n"):
        heading += doc.newline  # the heading was the file's last line, without an ending
    sections[index] = StateSection(heading=heading, body=tuple(body))
    return replace(doc, sections=tuple(sections))


def _append_lines(doc: StateDoc, index: int, new: list[str]) -> list[str]:
    """Body of section ``index`` with ``new`` after its last non-blank line.

    Keeps one blank line between the heading and the items, and exactly one after them
    when something (another section or the footer) follows.
    """
    nl = doc.newline
    body = list(doc.sections[index].body)
    end = len(body)
    while end > 0 and not _strip_eol(body[end - 1]).strip():
        end -= 1
    content, trailing = body[:end], body[end:]
    if content and not content[-1].endswith("\n"):
        content[-1] += nl
    content.extend(c + nl for c in _closers(content))
    if not content:
        content = [nl]
    followed = index + 1 < len(doc.sections) or bool(doc.footer)
    trailing = trailing[:1] if trailing or not followed else [nl]
    return content + new + trailing


def _entry_span(body: tuple[str, ...], item_id: str) -> tuple[int, int] | None:
    """[start, stop) of the first checkbox entry for ``item_id`` and its indented lines."""
    spans = _entry_spans(body, item_id)
    return spans[0] if spans else None


def _entry_spans(body: tuple[str, ...], item_id: str) -> list[tuple[int, int]]:
    """[start, stop) of every checkbox entry for ``item_id`` (with its indented lines), in order."""
    hidden = _comment_lines(list(body))
    spans = []
    for i, raw in enumerate(body):
        match = _CHECKBOX.match(_strip_eol(raw))
        if match and match.group(2) == item_id and i not in hidden:
            stop = i + 1
            while stop < len(body):
                text = _strip_eol(body[stop])
                if not text.strip() or text[:1] not in (" ", "\t"):
                    break
                stop += 1
            spans.append((i, stop))
    return spans


def _comment_lines(body: list[str]) -> set[int]:
    """Indexes of lines inside ``<!-- ... -->`` or a code fence: examples, not entries.

    (The template's commented format example ``- [ ] ID — ...`` lives in such a comment.)
    """
    hidden: set[int] = set()
    inside = fenced = False
    for i, raw in enumerate(body):
        text = _strip_eol(raw)
        if _FENCE.match(text):
            fenced = not fenced
            hidden.add(i)
            continue
        starts = "<!--" in text
        if inside or starts or fenced:
            hidden.add(i)
        if starts:
            inside = "-->" not in text.split("<!--")[-1]
        elif inside and "-->" in text:
            inside = False
    return hidden


def _closers(lines: list[str]) -> list[str]:
    """Lines that close an HTML comment or code fence left open at the end of ``lines``.

    New content appended after them would otherwise be invisible (or not a heading).
    """
    inside = False
    for raw in lines:
        text = _strip_eol(raw)
        if "<!--" in text:
            inside = "-->" not in text.split("<!--")[-1]
        elif inside and "-->" in text:
            inside = False
    fence = _unclosed_fence(lines)
    return (["-->"] if inside else []) + ([fence] if fence else [])


def _collapse_blank_runs(body: list[str]) -> list[str]:
    """Removed items leave the blank lines that separated them; keep one of each run."""
    out: list[str] = []
    for raw in body:
        if not _strip_eol(raw).strip() and out and not _strip_eol(out[-1]).strip():
            continue
        out.append(raw)
    return out


def _one_line(text: str) -> str:
    """Text for one line: no line breaks, and no comment markers that would hide what follows."""
    return _defuse(" ".join(str(text).split()))


def _defuse(text: str) -> str:
    """``<!--`` / ``-->`` as entities: they render the same but cannot open or close a comment."""
    return text.replace("<!--", "&lt;!--").replace("-->", "--&gt;")


def _as_item(line: str, *, continuation: bool) -> str:
    """A bullet line; an indented line is kept as a continuation only after an item."""
    text = _defuse(str(line).replace("\r", " ").replace("\n", " ").rstrip())
    if _BULLET.match(text) or (continuation and text[:1] in (" ", "\t") and text.strip()):
        return text
    return f"- {text.strip()}"


def _check_id(item_id: str) -> None:
    if not item_id or any(c.isspace() for c in item_id) or "<!--" in item_id or "-->" in item_id:
        raise ValueError(f"state item id must be one token without comment markers: {item_id!r}")
