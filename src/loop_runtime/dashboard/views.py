"""What each dashboard page shows, as plain data for the templates (no HTTP here).

Every string that came from a file, the store or an agent is redacted here, before a
template sees it, and templates autoescape it: an agent's text can neither leak a
secret nor inject markup. Markdown (the state file) is rendered by markdown-it-py with
raw HTML disabled and sanitised by nh3 (``dashboard.markdown``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.redact import MARK, redact
from ..formats.runlog import parse_run_log
from ..app.runtime import Project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store

__all__ = [
    "DiffFile",
    "diff_files",
    "escalation_row",
    "escalation_view",
    "fmt_ts",
    "loop_view",
    "redact_tree",
    "render_markdown",
    "running_tick",
    "safe",
    "test_view",
    "tick_rows",
    "transcript_path",
]

TRANSCRIPTS = Path(".loop-runtime") / "transcripts"
MAX_TEXT = 20_000
TICKS_SHOWN = 30


def safe(text: Any, secrets: Sequence[str] = (), limit: int = MAX_TEXT) -> str:
    """Redacted, length-capped text (escaping is the template's job)."""
    # redact before the cap: a key cut short no longer matches any credential shape
    s = redact("" if text is None else str(text), extra_secrets=secrets)
    if len(s) > limit:
        s = s[:limit] + f"\n… ({len(s) - limit:,} more characters)"
    return s


_SECRET_KEY = re.compile(r"(?i)(password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
                         r"|private[_-]?key|credential|authorization)s?$")


def redact_tree(value: Any, secrets: Sequence[str] = ()) -> Any:
    """``redact`` every string inside a JSON-like value, keeping its shape (so it stays valid JSON).

    A string under a secret-named key (``password``, ``api_key``…) is hidden whole, since
    the key that would tell ``redact`` it is a secret is not part of the string.
    """
    if isinstance(value, str):
        return redact(value, extra_secrets=secrets)
    if isinstance(value, Mapping):
        return {str(k): MARK if isinstance(v, str) and v and _SECRET_KEY.search(str(k)) else redact_tree(v, secrets)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v, secrets) for v in value]
    return value


def fmt_ts(dt: datetime | None) -> str:
    return "" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(start: datetime, end: datetime | None, now: datetime) -> str:
    secs = int(((end or now) - start).total_seconds())
    return f"{secs}s" if secs < 120 else f"{secs // 60}m {secs % 60:02d}s"


# ---------------------------------------------------------------------------- ticks


@dataclass(frozen=True)
class JournalLine:
    at: str
    name: str
    detail: str


def _role_tokens(phases: Iterable[Any]) -> dict[str, int]:
    """Tokens per role (triage, implementer, verifier) from the tick's agent journal entries."""
    out: dict[str, int] = {}
    for p in phases:
        if not p.phase.startswith("agent:"):
            continue
        usage = p.data.get("usage") or {}
        total = sum(int(usage.get(k) or 0) for k in ("input", "output", "cache_write", "cache_read"))
        role = p.phase.removeprefix("agent:").split(":", 1)[0]
        out[role] = out.get(role, 0) + total
    return out


def running_tick(store: Store, tick_id: str) -> dict[str, Any]:
    """A running tick's lifecycle phase (last ``phase:*`` entry), last step and tokens so far."""
    phases = store.phases(tick_id)
    lifecycle = [p.phase.removeprefix("phase:") for p in phases if p.phase.startswith("phase:")]
    return {"tick": tick_id, "phase": lifecycle[-1] if lifecycle else "starting",
            "step": phases[-1].phase if phases else "", "tokens": sum(_role_tokens(phases).values())}


#: journal keys whose integer values are ids or counters, not quantities (no thousands separator)
_ID_KEYS = frozenset({"reservation", "attempt", "attempts", "pid", "id", "exit_code", "returncode", "code"})


def _detail_value(key: str, value: Any) -> str:
    """One journal value for people: quantities as ``50,000`` like every other number on the page."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if key in _ID_KEYS else f"{value:,}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_detail_value(str(k), v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _detail(data: Mapping[str, Any], secrets: Sequence[str]) -> str:
    small = {k: v for k, v in data.items() if k not in ("text", "output", "system", "prompt")}
    text = " · ".join(f"{k}: {_detail_value(str(k), v)}" for k, v in sorted(small.items(), key=lambda kv: str(kv[0])))
    return safe(text, secrets, 400)


def tick_rows(project: Project, store: Store, pattern: str, now: datetime,
              secrets: Sequence[str]) -> list[dict[str, Any]]:
    """The loop page's timeline: newest tick first, with phases, tokens per role, verdict, outcome."""
    if store is None:
        return []
    rows = []
    for t in store.recent_ticks(pattern, TICKS_SHOWN):
        phases = store.phases(t.tick_id)
        verdicts = [p.data.get("verdict") for p in phases if p.phase == "verdict"]
        rows.append({
            "id": t.tick_id,
            "runId": t.run_id,
            "started": fmt_ts(t.started_at),
            "duration": _duration(t.started_at, t.finished_at, now),
            "status": t.status,
            "outcome": t.outcome or ("running" if t.status == "running" else ""),
            "level": t.level,
            "effective": t.summary.get("effectiveLevel") or t.level,
            "backend": t.backend,
            "tokens": t.tokens if t.finished_at else sum(_role_tokens(phases).values()),
            "roles": _role_tokens(phases),
            "phases": [p.phase.removeprefix("phase:") for p in phases if p.phase.startswith("phase:")],
            "verdict": t.summary.get("verdict") or (verdicts[-1] if verdicts else None),
            "note": safe(t.summary.get("note") or t.summary.get("error") or "", secrets, 300),
            "escalation": t.summary.get("escalationId"),
            "journal": [JournalLine(fmt_ts(p.at), p.phase, _detail(p.data, secrets)) for p in phases],
            "transcripts": transcripts(project, t.tick_id),
        })
    return rows


# ---------------------------------------------------------------------------- transcripts


def transcripts(project: Project, tick_id: str) -> list[str]:
    """File names of a tick's saved transcripts (only regular files directly in its folder)."""
    folder = transcript_path(project, tick_id, None)
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink())


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$")


def transcript_path(project: Project, tick_id: str, name: str | None) -> Path | None:
    """The transcript folder (or a file in it) — None for any name that could escape it."""
    if not _SAFE_NAME.match(tick_id) or (name is not None and (not _SAFE_NAME.match(name) or ".." in name)):
        return None
    base = (project.root / TRANSCRIPTS).resolve()
    path = base / tick_id if name is None else base / tick_id / name
    if path.is_symlink():
        return None
    try:
        resolved = path.resolve()
    except OSError:
        return None
    return resolved if resolved.is_relative_to(base) else None


# ---------------------------------------------------------------------------- loop page


def loop_view(project: Project, store: Store, loop: Mapping[str, Any], now: datetime,
              secrets: Sequence[str]) -> dict[str, Any]:
    """Everything the loop page shows besides the status row: ticks, state file, run log."""
    pattern = loop["pattern"]
    state_text = project.read(loop["stateFile"]) or ""
    log = parse_run_log(project.read("loop-run-log.md") or "")
    entries = [e for e in log.entries if e.pattern == pattern][-50:]
    runs = [{
        "runId": safe(e.run_id, secrets, 40), "outcome": safe(e.outcome, secrets, 40), "tokens": e.tokens_estimate,
        "found": e.items_found, "actions": e.actions_taken, "escalations": e.escalations,
        "duration": e.duration_s, "level": safe(e.extras.get("level", ""), secrets, 10),
        "note": safe(e.extras.get("note") or e.extras.get("reason") or e.extras.get("branch") or "", secrets, 160),
    } for e in reversed(entries)]
    return {
        "ticks": tick_rows(project, store, pattern, now, secrets),
        "stateHtml": render_markdown(safe(state_text, secrets)),
        "stateFile": loop["stateFile"],
        "runs": runs,
    }


# ---------------------------------------------------------------------------- escalations


@dataclass(frozen=True)
class DiffFile:
    name: str
    lines: tuple[tuple[str, str], ...]  # (css class, text)
    added: int
    removed: int


def _classify(line: str, in_hunk: bool) -> str:
    """A diff line's kind; inside a hunk, ``+++``/``---`` are content, not file headers."""
    if line.startswith("@@"):
        return "hunk"
    if in_hunk and line[:1] in ("+", "-", " ", "\\", ""):
        return {"+": "add", "-": "del"}.get(line[:1], "ctx")
    if line.startswith(("diff --git ", "+++ ", "--- ", "index ", "new file", "deleted file", "similarity",
                        "rename ", "old mode", "new mode", "Binary files", "copy ")):
        return "hdr"
    return {"+": "add", "-": "del"}.get(line[:1], "ctx")


def diff_files(patch: str) -> list[DiffFile]:
    """Split a unified diff into files of classified lines (hdr, hunk, add, del, ctx)."""
    chunks: list[list[tuple[str, str]]] = []
    in_hunk = False
    for line in patch.splitlines():
        if line.startswith("diff --git ") or not chunks:
            chunks.append([])
            in_hunk = False
        kind = _classify(line, in_hunk)
        in_hunk = in_hunk or kind == "hunk"
        chunks[-1].append((kind, line))
    return [DiffFile(_file_name(chunk), tuple(chunk), sum(c == "add" for c, _ in chunk),
                     sum(c == "del" for c, _ in chunk)) for chunk in chunks]


def _file_name(chunk: list[tuple[str, str]]) -> str:
    for kind, line in chunk:
        if kind == "hdr" and line.startswith("diff --git ") and " b/" in line:
            return line.split(" b/", 1)[1]
        if kind == "hdr" and line.startswith("+++ ") and line[4:] != "/dev/null":
            return line[4:].removeprefix("b/")
    return "(patch)"


def escalation_row(e: Any, secrets: Sequence[str]) -> dict[str, Any]:
    """One line of an escalation list, every agent-written field redacted."""
    return {
        "id": e.id, "pattern": e.pattern, "status": e.status, "item": safe(e.item_id, secrets, 80),
        "title": safe(e.title, secrets, 200), "reason": safe(e.context.get("reason") or "", secrets, 80),
        "created": fmt_ts(e.created_at), "decidedBy": safe(e.decided_by or "", secrets, 100),
        "decidedAt": fmt_ts(e.decided_at), "decision": safe(e.reason or "", secrets, 300),
    }


def _last(phases: Sequence[Any], name: str) -> Mapping[str, Any] | None:
    found = [p.data for p in phases if p.phase == name]
    return found[-1] if found else None


def escalation_view(project: Project, store: Store, esc: Any, secrets: Sequence[str]) -> dict[str, Any]:
    """The held diff, the verifier's verdict and reasons, the test output, and the decision so far."""
    phases = store.phases(esc.tick_id)
    verdict = _last(phases, "verdict") or {}
    tests = _last(phases, "tests")
    ctx = esc.context
    reasons = [safe(r, secrets, 500) for r in verdict.get("reasons") or []]
    if not reasons and ctx.get("detail"):
        reasons = [safe(ctx.get("detail"), secrets, 1000)]
    level = str(ctx.get("level") or project.plan(esc.pattern).level) if _known(project, esc.pattern) else "L2"
    return {
        "id": esc.id, "pattern": esc.pattern, "item": safe(esc.item_id, secrets, 80),
        "title": safe(esc.title, secrets, 300), "status": esc.status, "created": fmt_ts(esc.created_at),
        "reason": safe(ctx.get("reason") or "", secrets, 200), "branch": safe(ctx.get("branch") or "", secrets, 200),
        "attempts": ctx.get("attempts"), "level": level, "canMerge": level == "L3",
        "verdict": verdict.get("verdict") or ctx.get("verdict"), "reasons": reasons,
        "lastError": safe(ctx.get("lastError") or "", secrets, 2000),
        "tests": None if tests is None else test_view(tests, secrets),
        "diff": diff_files(safe(esc.diff, secrets, 400_000)),
        "diffEmpty": not esc.diff.strip(),
        "decidedBy": safe(esc.decided_by or "", secrets, 100), "decidedAt": fmt_ts(esc.decided_at),
        "decision": safe(esc.reason or "", secrets, 500),
        "result": {k: safe(v, secrets, 200) for k, v in (esc.result or {}).items()
                   if k in ("branch", "commit", "merge")},
        "tickId": esc.tick_id,
    }


def test_view(tests: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """A ``tests`` journal entry for a page: ``state`` is passed, failed or none (no test command found).

    "No tests" is its own neutral state, never a green "passed": nothing was checked.
    """
    command = tests.get("command")
    state = "none" if not command else ("passed" if tests.get("passed") else "failed")
    return {"state": state, "command": safe(command or "", secrets, 300), "passed": state == "passed",
            "exitCode": tests.get("exit_code"), "output": safe(tests.get("output") or "", secrets),
            "attempt": tests.get("attempt")}


def _known(project: Project, pattern: str) -> bool:
    return any(p.id == pattern for p in project.registry.patterns)


# ---------------------------------------------------------------------------- markdown


def render_markdown(text: str) -> str:
    """Sanitised HTML for Markdown (markdown-it-py, raw HTML off, then nh3): see ``dashboard.markdown``."""
    from .markdown import render_markdown as render

    return render(text)
