"""The static path gate: loop-gate 1.0.0's ``check``, reproduced decision for decision (R13).

This is the L2/L3 write gate, so "close to loop-gate" is not good enough: a path that
loop-gate would escalate must escalate here too. Checks run in loop-gate's order and
the first hit wins: ``denylist`` (any action) → ``file-count`` (``maxFiles``) →
``not-allowlisted`` (auto-merge only) → ``ok``; reasons and the JSON shape are the
tool's, byte for byte.

Globs mean what ``minimatch(path, glob, {dot: true})`` says they mean. ``glob_match``
ports minimatch 10's matching algorithm (``!`` negation, ``#`` comments, brace
expansion, ``..`` folding, per-segment matching where ``*`` and ``**`` never match the
``.``/``..`` segments, trailing-slash rules) and compiles ordinary segments to the very
regular expressions minimatch builds. Brace expansion uses ``bracex`` and segments
holding an extglob (``@(a|b)``) are matched by ``wcmatch`` — wcmatch's own
``globmatch`` disagrees with minimatch on leading ``!`` (a whole-pattern negation in
minimatch), on ``.``/``..`` segments and on empty segments, which is why the structure
is ported rather than delegated. ``tests/test_parity_gate.py`` checks thousands of
paths against the real loop-gate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import ConfigError
from ..formats.gate_config import GatePolicy

VALID_ACTIONS = ("commit", "merge", "auto-merge")

# JavaScript's String.prototype.trim() / \s set (differs from Python's str.isspace()).
JS_WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                 "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


def js_trim(s: str) -> str:
    """``String.prototype.trim``: strips JS whitespace, not Python's (no ``\\x1c``, yes ``\\ufeff``)."""
    return s.strip(JS_WHITESPACE)


_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


def to_utf16(s: str) -> str:
    """Spell astral characters as surrogate pairs so lengths and regexes see JS code units."""
    if not _ASTRAL_RE.search(s):
        return s
    out: list[str] = []
    for c in s:
        o = ord(c)
        if o < 0x10000:
            out.append(c)
        else:
            o -= 0x10000
            out.append(chr(0xD800 + (o >> 10)) + chr(0xDC00 + (o & 0x3FF)))
    return "".join(out)


# ------------------------------------------------------------------ minimatch {dot: true}

_GLOBSTAR = object()  # a "**" path portion
Segment = object  # a literal str, the _GLOBSTAR sentinel, or a Callable[[str], bool] test

_BRACE_RE = re.compile("\\{(?:(?!\\{)[^\n\r\u2028\u2029])*\\}")
_RE_SPECIALS = set("().*{}+?[]^$\\!")
_REGEX_ESCAPE_RE = re.compile("([-\\[\\]{}()*+?.,\\\\^$|#" + JS_WHITESPACE + "])")
_STAR, _QMARK = "[^/]*?", "[^/]"
_NO_TRAVERSAL = r"(?!(?:^|/)\.\.?(?:\Z|/))"
_POSIX_CLASSES = ("[:alnum:]", "[:alpha:]", "[:ascii:]", "[:blank:]", "[:cntrl:]", "[:digit:]", "[:graph:]",
                  "[:lower:]", "[:print:]", "[:punct:]", "[:space:]", "[:upper:]", "[:word:]", "[:xdigit:]")
_EXTGLOB_RE = re.compile(r"(?<!\\)(?:\\\\)*[!?+*@]\(")
_NOT_LINE_END = "[^\n\r\u2028\u2029]"
_DOTS = (".", "..")


def _regex_escape(s: str) -> str:
    return _REGEX_ESCAPE_RE.sub(r"\\\1", s)


def _class_escape(c: str) -> str:
    # minimatch escapes [ ] \ -; & ~ | are escaped too so Python never sees a "nested set".
    return "\\" + c if c in "[]\\-&~|" else c


def _unescape(s: str) -> str:
    s = re.sub(f"((?!\\\\){_NOT_LINE_END}|^)\\[([^/\\\\])\\]", r"\1\2", s)
    return re.sub(r"\\([^/])", r"\1", s)


class _Unsupported(Exception):
    """A construct (POSIX class) Python's ``re`` cannot express; match the segment with wcmatch."""


def _parse_class(glob: str, pos: int) -> tuple[str, int, bool]:
    """minimatch's ``parseClass``: (regex source, chars consumed, magic); consumed 0 = not a class."""
    ranges: list[str] = []
    i, saw_start, escaping, negate, end_pos, range_start = pos + 1, False, False, False, pos, ""
    while i < len(glob):
        c = glob[i]
        if c in "!^" and i == pos + 1:
            negate, i = True, i + 1
            continue
        if c == "]" and saw_start and not escaping:
            end_pos = i + 1
            break
        saw_start = True
        if c == "\\" and not escaping:
            escaping, i = True, i + 1
            continue
        if c == "[" and not escaping and any(glob.startswith(cls, i) for cls in _POSIX_CLASSES):
            raise _Unsupported
        escaping = False
        if range_start:
            if c > range_start:
                ranges.append(_class_escape(range_start) + "-" + _class_escape(c))
            elif c == range_start:
                ranges.append(_class_escape(c))
            range_start, i = "", i + 1
            continue
        if glob.startswith("-]", i + 1):
            ranges.append(_class_escape(c) + "\\-")
            i += 2
            continue
        if glob.startswith("-", i + 1):
            range_start, i = c, i + 2
            continue
        ranges.append(_class_escape(c))
        i += 1
    if end_pos < i:
        return "", 0, False
    if not ranges:  # minimatch emits "$." here: a class that can never match
        return "(?!)", len(glob) - pos, True
    if len(ranges) == 1 and re.fullmatch(f"\\\\?{_NOT_LINE_END}", ranges[0]) and not negate:
        return _regex_escape(ranges[0][-1]), end_pos - pos, False
    return "[" + ("^" if negate else "") + "".join(ranges) + "]", end_pos - pos, True


def _parse_glob(glob: str) -> tuple[str, bool]:
    """minimatch's ``AST.#parseGlob`` for an extglob-free segment: (regex source, magic)."""
    out, magic, escaping, in_star, i = [], False, False, False, 0
    while i < len(glob):
        c = glob[i]
        if escaping:
            escaping = False
            out.append(("\\" if c in _RE_SPECIALS else "") + c)
        elif c == "*":
            if not in_star:
                out.append(_STAR)
                magic = in_star = True
            i += 1
            continue
        elif c == "\\":
            if i == len(glob) - 1:
                out.append("\\\\")
            else:
                escaping = True
        elif c == "[" and (cls := _parse_class(glob, i))[1]:
            out.append(cls[0])
            magic = magic or cls[2]
            i += cls[1]
            in_star = False
            continue
        elif c == "?":
            out.append(_QMARK)
            magic = True
        else:
            out.append(_regex_escape(c))
        in_star = False
        i += 1
    return "".join(out), magic


def _fast_test(seg: str) -> Callable[[str], bool] | None:
    """minimatch's shortcuts for ``*``, ``*.ext``, ``??``, ``*.*`` and ``.*`` (dot mode)."""
    if re.fullmatch(r"\*+", seg):
        return lambda f: f != "" and f not in _DOTS
    m = re.fullmatch(r"\*+([^+@!?*\[(]*)", seg)
    if m:
        ext = m.group(1)
        return lambda f: f.endswith(ext)
    m = re.fullmatch(r"\?+([^+@!?*\[(]*)?", seg)
    if m:
        size, ext = len(m.group(0)), m.group(1) or ""
        return lambda f: len(f) == size and f not in _DOTS and f.endswith(ext)
    if re.fullmatch(r"\*+\.\*+", seg):
        return lambda f: f not in _DOTS and "." in f
    if re.fullmatch(r"\.\*+", seg):
        return lambda f: f not in _DOTS and f.startswith(".")
    return None


def _wcmatch_segment(seg: str) -> Callable[[str], bool]:
    from wcmatch import fnmatch as wc_fnmatch  # only extglob segments need it; keep start-up light

    flags = wc_fnmatch.DOTMATCH | wc_fnmatch.EXTMATCH | wc_fnmatch.FORCEUNIX
    return lambda f: bool(wc_fnmatch.fnmatch(f, seg, flags=flags))


def _parse_segment(seg: str) -> Segment:
    if seg == "**":
        return _GLOBSTAR
    if seg == "":
        return ""
    fast = _fast_test(seg)
    if fast is not None:
        return fast
    if _EXTGLOB_RE.search(seg):
        return _wcmatch_segment(seg)
    try:
        src, magic = _parse_glob(seg)
    except _Unsupported:
        return _wcmatch_segment(seg)
    if not magic:
        return _unescape(src)
    start = ""
    if seg not in _DOTS:
        guard = {"[", "."}
        if src[:1] in guard or (src.startswith("\\.") and src[2:3] in guard) or \
                (src.startswith("\\.\\.") and src[4:5] in guard):
            start = _NO_TRAVERSAL
    try:
        regex = re.compile("^" + start + src + r"\Z", re.DOTALL)
    except re.error:
        return _unescape(src)
    return lambda f: regex.search(f) is not None


def _level_one(parts: list[str]) -> list[str]:
    """Drop repeated ``**`` and fold ``x/..`` inside the pattern, as minimatch does."""
    out: list[str] = []
    for part in parts:
        prev = out[-1] if out else None
        if part == "**" and prev == "**":
            continue
        if part == ".." and prev and prev not in ("..", ".", "**"):
            out.pop()
            continue
        out.append(part)
    return out or [""]


def _brace_expand(pattern: str) -> list[str]:
    if not _BRACE_RE.search(pattern):
        return [pattern]
    import bracex  # only brace patterns need it; keep start-up light

    try:
        expanded = bracex.expand(pattern, keep_escapes=True, limit=100_000)
    except Exception:
        return [pattern]
    return list(dict.fromkeys(expanded)) or [pattern]


@dataclass(frozen=True)
class _Matcher:
    kind: str  # "comment" | "empty" | "normal"
    negate: bool
    sets: tuple[tuple[Segment, ...], ...]

    def match(self, path: str, file: list[str] | None = None) -> bool:
        """Match a path (already in UTF-16 form); ``file`` is its split, when the caller has it."""
        if self.kind == "comment":
            return False
        if self.kind == "empty":
            return path == ""
        if file is None:
            file = _split_path(path)
        for pattern in self.sets:
            if _match_parts(file, pattern):
                return not self.negate
        return self.negate


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> _Matcher:
    if pattern.startswith("#"):
        return _Matcher("comment", False, ())
    if pattern == "":
        return _Matcher("empty", False, ())
    bangs = len(pattern) - len(pattern.lstrip("!"))
    pattern = pattern[bangs:]
    sets = tuple(tuple(_parse_segment(s) for s in _level_one(re.split("/+", g))) for g in _brace_expand(pattern))
    return _Matcher("normal", bangs % 2 == 1, sets)


def _split_path(path: str) -> list[str]:
    return re.split("/+", path)


def _match_parts(file: list[str], pattern: tuple[Segment, ...]) -> bool:
    if _GLOBSTAR in pattern:
        return _match_globstar(file, pattern)
    return _match_one(file, pattern, 0, 0)


def _segment_hit(p: Segment, f: str) -> bool:
    return f == p if isinstance(p, str) else bool(p(f))  # type: ignore[operator]


def _match_one(file: Sequence[str], pattern: Sequence[Segment], fi: int, pi: int) -> bool:
    fl, pl = len(file), len(pattern)
    while fi < fl and pi < pl:
        p = pattern[pi]
        if p is _GLOBSTAR or not _segment_hit(p, file[fi]):
            return False
        fi, pi = fi + 1, pi + 1
    if fi == fl and pi == pl:
        return True
    if fi == fl:
        return False
    return fi == fl - 1 and file[fi] == ""  # a/* matches a/b/


def _match_globstar(file: list[str], pattern: tuple[Segment, ...]) -> bool:
    first = pattern.index(_GLOBSTAR)
    last = len(pattern) - 1 - pattern[::-1].index(_GLOBSTAR)
    head, body, tail = pattern[:first], pattern[first + 1:last], pattern[last + 1:]
    fi = 0
    if head:
        if not _match_one(file[:len(head)], head, 0, 0):
            return False
        fi = len(head)
    tail_match = 0
    if tail:
        if len(tail) + fi > len(file):
            return False
        start = len(file) - len(tail)
        if _match_one(file, tail, start, 0):
            tail_match = len(tail)
        else:  # a/**/* matches a/b/: retry without the trailing empty portion
            if file[-1] != "" or fi + len(tail) == len(file) or not _match_one(file, tail, start - 1, 0):
                return False
            tail_match = len(tail) + 1
    if not body:
        saw_some = bool(tail_match)
        for f in file[fi:len(file) - tail_match]:
            saw_some = True
            if f in _DOTS:
                return False
        return saw_some
    return _match_body(file, body, fi, tail_match)


def _match_body(file: list[str], body: tuple[Segment, ...], fi: int, tail_match: int) -> bool:
    sections: list[list[Any]] = [[[], 0]]
    non_gs, sums = 0, [0]
    for b in body:
        if b is _GLOBSTAR:
            sums.append(non_gs)
            sections.append([[], 0])
        else:
            sections[-1][0].append(b)
            non_gs += 1
    file_length = len(file) - tail_match
    for offset, section in enumerate(sections):
        section[1] = file_length - (sums[len(sections) - 1 - offset] + len(section[0]))
    return bool(_match_sections(file, sections, fi, 0, 0, bool(tail_match)))


def _match_sections(file: list[str], sections: list[list[Any]], fi: int, bi: int, depth: int,
                    saw_tail: bool) -> bool | None:
    """minimatch's ``#matchGlobStarBodySections``: False = no, None = stop trying."""
    if bi >= len(sections):
        for f in file[fi:]:
            saw_tail = True
            if f in _DOTS:
                return False
        return saw_tail
    body, after = sections[bi]
    while fi <= after:
        hit = _match_one(file[:fi + len(body)], body, fi, 0)
        if hit and depth < 200:
            sub = _match_sections(file, sections, fi + len(body), bi + 1, depth + 1, saw_tail)
            if sub is not False:
                return sub
        if fi < len(file) and file[fi] in _DOTS:
            return False
        fi += 1
    return None


def glob_match(path: str, pattern: str) -> bool:
    """``minimatch(path, pattern, {dot: true})`` — the matcher loop-gate uses for every glob."""
    return _compile(to_utf16(pattern)).match(to_utf16(path))


# ------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class GateDecision:
    """loop-gate's decision. ``matched_paths`` are the offending paths (all paths for file-count)."""

    allowed: bool
    trigger: str  # ok | denylist | file-count | not-allowlisted
    reason: str
    matched_paths: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """Exactly what ``loop-gate check --json`` prints (same keys, same order)."""
        return {"allowed": self.allowed, "trigger": self.trigger, "reason": self.reason,
                "matchedPaths": list(self.matched_paths)}

    @property
    def exit_code(self) -> int:
        """loop-gate's exit code: 0 allowed, 2 escalate to a human."""
        return 0 if self.allowed else 2


def _matches_any(path: str, globs: Sequence[str]) -> bool:
    unit_path = to_utf16(path)
    file = _split_path(unit_path)
    return any(_compile(to_utf16(g)).match(unit_path, file) for g in globs)


def check(policy: GatePolicy, paths: Sequence[str], action: str = "commit") -> GateDecision:
    """Evaluate changed ``paths`` for ``action`` (commit | merge | auto-merge) against ``policy``."""
    if action not in VALID_ACTIONS:
        raise ConfigError("", "action", action, valid=VALID_ACTIONS,
                          message=f"Invalid --action: {action}. Use one of: {', '.join(VALID_ACTIONS)}.")
    paths = [str(p) for p in paths]
    denied = [p for p in paths if _matches_any(p, policy.denylist)]
    if denied:
        return GateDecision(False, "denylist", f"{len(denied)} path(s) match the denylist: {', '.join(denied)}. "
                            "Escalating for human review.", tuple(denied))
    if policy.max_files is not None and len(paths) > policy.max_files:
        return GateDecision(False, "file-count", f"{len(paths)} changed file(s) exceeds the max-files threshold "
                            f"({policy.max_files}). Escalating for human review.", tuple(paths))
    if action == "auto-merge":
        allowlist = policy.auto_merge_allowlist or ()
        outside = [p for p in paths if not _matches_any(p, allowlist)]
        if outside:
            return GateDecision(False, "not-allowlisted", f"{len(outside)} path(s) are not on the auto-merge "
                                f"allowlist: {', '.join(outside)}. Escalating for human review.", tuple(outside))
    return GateDecision(True, "ok", "Within policy — cleared to proceed.", ())


def format_decision(d: GateDecision) -> str:
    """loop-gate's human output line: ``ALLOWED [ok] — …`` or ``ESCALATE [denylist] — …``."""
    return f"{'ALLOWED' if d.allowed else 'ESCALATE'} [{d.trigger}] — {d.reason}"


def split_paths_arg(value: str) -> list[str]:
    """loop-gate's ``--paths a,b``: split on commas, trim (JS whitespace), drop empties."""
    return [p for p in (js_trim(part) for part in value.split(",")) if p]
