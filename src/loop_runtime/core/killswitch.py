"""Kill-switch rules (R12), as a pure function over file contents.

The ecosystem never standardised the flag, so we honour every form adopters use and
document them here (README repeats this list):

* all loops: a file ``loop-pause-all`` at the project root; or, in the pattern's state
  file, ``STATE.md`` or ``LOOP.md``, a line that is ``loop-pause-all`` (optionally as a
  list item or in backticks) or ``loop-pause-all: true|on|yes|1``;
* one loop: a file ``loop-pause-<pattern-id>`` at the root, or such a line
  (``loop-pause-<pattern-id>``, ``loop-pause-<pattern-id>: true``) in those files;
* ``paused: true`` or ``loop: paused`` in the pattern's own state file;
* with the GitHub connector on: an open issue or PR labelled with the pause label
  (``repair.yaml`` ``labels.pause``, default ``loop-pause-all``) or ``loop-pause-<pattern-id>``,
  compared without case (GitHub label names are case-insensitive).

A form with ``false``/``off``/``no``/``0`` does not pause. Prose that merely mentions the
switch ("set `loop-pause-all` to pause") does not pause either: the token must stand on
its own line. Resuming requires a human (or ``loop-runtime resume``) to clear it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

ALL = "loop-pause-all"

_TRUE = {"", "true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}


def pattern_switch(pattern_id: str) -> str:
    """The pattern-scoped switch name (file or line) for one loop."""
    return f"loop-pause-{pattern_id}"


def _line_re(token: str) -> re.Pattern[str]:
    return re.compile(
        r"^\s*(?:[-*+]\s+(?:\[[ xX]\]\s+)?)?[`*_]*" + re.escape(token) + r"[`*_]*\s*(?::\s*[`*_]*(\w*)[`*_]*)?\s*$",
        re.IGNORECASE | re.MULTILINE,
    )


def _flag_in(text: str, token: str) -> bool:
    if token.casefold() not in text.casefold():
        return False  # the line must hold the token itself: no need to build (and compile) its pattern
    for m in _line_re(token).finditer(text):
        value = (m.group(1) or "").lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            continue
    return False


_PAUSED_RE = re.compile(r"^\s*(?:[-*+]\s+)?(?:paused\s*:\s*true|loop\s*:\s*paused)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class KillState:
    """Whether the kill switch is engaged, for every loop or one, and which file says so (shown to the user)."""

    engaged: bool
    scope: str | None = None  # "all" | "pattern"
    source: str | None = None  # file that holds the flag

    @property
    def note(self) -> str:
        return f"paused ({self.source})" if self.engaged else ""


def evaluate(
    pattern_id: str,
    *,
    state_file: str,
    texts: Mapping[str, str | None],
    root_files: frozenset[str] | set[str],
    labels: Sequence[tuple[str, str]] = (),
    pause_label: str = ALL,
) -> KillState:
    """Decide whether ``pattern_id`` is paused.

    ``texts`` maps file names (the state file, ``STATE.md``, ``LOOP.md``) to their content
    (None when absent); ``root_files`` is the set of switch file names present at the root;
    ``labels`` are ``(label, source)`` pairs from open issues/PRs (the issue-tracker form).
    """
    scoped = pattern_switch(pattern_id)
    if ALL in root_files:
        return KillState(True, "all", ALL)
    if scoped in root_files:
        return KillState(True, "pattern", scoped)
    for name in dict.fromkeys([state_file, "STATE.md", "LOOP.md"]):
        text = texts.get(name)
        if not text:
            continue
        if _flag_in(text, ALL):
            return KillState(True, "all", name)
        if _flag_in(text, scoped):
            return KillState(True, "pattern", name)
        if name == state_file and _PAUSED_RE.search(text):
            return KillState(True, "pattern", name)
    wanted_all = {" ".join(pause_label.split()).casefold(), ALL}
    for label, source in labels:
        key = " ".join(str(label).split()).casefold()
        if key in wanted_all:
            return KillState(True, "all", source)
        if key == scoped.casefold():
            return KillState(True, "pattern", source)
    return KillState(False)


@dataclass(frozen=True)
class KillInputs:
    """Which files decide whether a loop is paused: every reader gathers exactly these."""

    texts: tuple[str, ...]  # files whose flag lines count (the loop's state file, STATE.md, LOOP.md)
    switches: tuple[str, ...]  # files whose mere presence engages the switch (project root)


def kill_inputs(pattern_id: str, state_file: str) -> KillInputs:
    """The files ``kill_state`` reads for ``pattern_id`` (one list, so no reader forgets one)."""
    return KillInputs(tuple(dict.fromkeys([state_file, "STATE.md", "LOOP.md"])), (ALL, pattern_switch(pattern_id)))


def kill_state(pattern_id: str, *, state_file: str, read: Callable[[str], str | None],
               exists: Callable[[str], bool] | None = None, labels: Sequence[tuple[str, str]] = (),
               pause_label: str = ALL) -> KillState:
    """Is ``pattern_id`` paused? Files through ``read`` (text or None) and ``exists`` (default: ``read`` is
    not None); issue-tracker ``labels`` only when no file engages it (they cost a network call)."""
    inputs = kill_inputs(pattern_id, state_file)
    present = exists if exists is not None else (lambda name: read(name) is not None)
    texts = {name: read(name) for name in inputs.texts}
    state = evaluate(pattern_id, state_file=state_file, texts=texts,
                     root_files={f for f in inputs.switches if present(f)})
    if state.engaged or not labels:
        return state
    return evaluate(pattern_id, state_file=state_file, texts={}, root_files=set(), labels=labels,
                    pause_label=pause_label)
