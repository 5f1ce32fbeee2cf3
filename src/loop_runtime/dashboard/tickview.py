"""The story of one tick, as plain data for ``tick.html`` — and one sentence per live event.

Everything comes from what the run store already journals for a tick (``phase:*``
lifecycle entries, ``reserve:<key>`` / ``agent:<key>`` for each agent call, ``triage``,
``diff``, ``tests``, ``verdict``, ``commit``, ``rejected``, ``escalation``), so the page
needs no table of its own and agrees with ``status`` and the timeline. Every string is
redacted here; the template autoescapes it.

The diff shown is the held diff of the tick's escalation, or — for a committed tick —
the commit itself, read from git by its journaled sha (validated as hex, run with the
runtime's git helper). Neither is shown when the store does not know it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ..formats.triage import parse_triage
from ..app.runtime import Project
from .views import JournalLine, _detail, diff_files, fmt_ts, safe, test_view, transcripts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store

__all__ = ["ROLES", "TICK_ID", "commit_diff", "event_sentence", "tick_view", "valid_tick_id"]

ROLES = ("triage", "implementer", "verifier")
TICK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
MAX_DIFF = 400_000
_IMPLIED = {"escalation": "escalated"}
VERDICT_WORDS = {"APPROVE": "approved", "REJECT": "rejected", "ESCALATE_HUMAN": "asked for a human"}


def valid_tick_id(tick_id: str) -> bool:
    """A tick id as the runtime makes them (``<pattern>-<hex>``): safe in a URL and a path."""
    return bool(TICK_ID.match(tick_id)) and ".." not in tick_id


def _num(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "—"


def _secs(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


def _dur(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s) // 60}m {int(s) % 60:02d}s"


def _usage_total(data: Mapping[str, Any]) -> int:
    usage = data.get("usage") or {}
    if not isinstance(usage, Mapping):
        return 0
    total = 0
    for k in ("input", "output", "cache_write", "cache_read"):
        try:
            total += int(usage.get(k) or 0)
        except (TypeError, ValueError):
            continue
    return total


def _timeline(phases: Sequence[Any], started: datetime, end: datetime) -> list[dict[str, Any]]:
    """Lifecycle phases as segments (start offset, duration, % of the tick) in order."""
    marks: list[tuple[datetime, str, Mapping[str, Any]]] = [(started, "preflight", {})]
    entered = {p.phase for p in phases}
    for p in phases:
        if p.phase.startswith("phase:"):
            marks.append((p.at, p.phase.removeprefix("phase:"), p.data))
        elif p.phase in _IMPLIED and f"phase:{_IMPLIED[p.phase]}" not in entered:
            marks.append((p.at, _IMPLIED[p.phase], p.data))  # a lifecycle step journaled only as a record
    total = max(_secs(started, end), 1e-6)
    out = []
    for i, (at, name, data) in enumerate(marks):
        until = marks[i + 1][0] if i + 1 < len(marks) else end
        if i == 0 and len(marks) > 1 and _secs(at, until) == 0:
            continue
        secs = _secs(at, until)
        attempt = data.get("attempt") if isinstance(data, Mapping) else None
        out.append({"name": name, "at": fmt_ts(at), "offset": _dur(_secs(started, at)), "seconds": secs,
                    "duration": _dur(secs), "left": round(100 * _secs(started, at) / total, 2),
                    "width": round(100 * secs / total, 2), "attempt": attempt})
    return out


def _roles(phases: Sequence[Any]) -> list[dict[str, Any]]:
    """Tokens used against tokens reserved, per role, summed over every call of that role."""
    rows: dict[str, dict[str, Any]] = {r: {"role": r, "reserved": 0, "used": 0, "calls": 0} for r in ROLES}
    for p in phases:
        if p.phase.startswith("reserve:"):
            role = p.phase.removeprefix("reserve:").split(":", 1)[0]
            row = rows.setdefault(role, {"role": role, "reserved": 0, "used": 0, "calls": 0})
            try:
                row["reserved"] += int(p.data.get("amount") or 0)
            except (TypeError, ValueError):
                pass
        elif p.phase.startswith("agent:"):
            role = p.phase.removeprefix("agent:").split(":", 1)[0]
            row = rows.setdefault(role, {"role": role, "reserved": 0, "used": 0, "calls": 0})
            row["used"] += _usage_total(p.data)
            row["calls"] += 1
    for row in rows.values():
        row["pct"] = round(100 * row["used"] / row["reserved"], 1) if row["reserved"] else None
        row["bar"] = min(100.0, row["pct"] or 0.0)
    return list(rows.values())


def _triage(phases: Sequence[Any], secrets: Sequence[str]) -> dict[str, Any] | None:
    rec = next((p.data for p in reversed(phases) if p.phase == "triage"), None)
    if rec is None:
        return None
    agent = next((p.data for p in reversed(phases) if p.phase == "agent:triage"), None)
    items = parse_triage(str(agent.get("text") or "")).items if agent else ()
    return {
        "decision": safe(rec.get("decision") or "", secrets, 20),
        "count": rec.get("items"),
        "summary": safe(rec.get("summary") or "", secrets, 600),
        "parsed": bool(rec.get("parsed", True)),
        "entries": [{"id": safe(i.id, secrets, 100), "title": safe(i.title, secrets, 300),
                   "detail": safe(i.detail, secrets, 600), "files": [safe(f, secrets, 200) for f in i.files[:20]]}
                  for i in items],
    }


def _attempts(phases: Sequence[Any], secrets: Sequence[str]) -> list[dict[str, Any]]:
    """Per attempt: touched paths, test result, verdict and reasons, how it ended."""
    by: dict[int, dict[str, Any]] = {}

    def slot(data: Mapping[str, Any]) -> dict[str, Any]:
        try:
            n = int(data.get("attempt") or 1)
        except (TypeError, ValueError):
            n = 1
        return by.setdefault(n, {"n": n, "paths": [], "tests": None, "verdict": None, "reasons": [],
                                 "rejected": "", "commit": None, "branch": ""})

    for p in phases:
        d = p.data if isinstance(p.data, Mapping) else {}
        if p.phase == "workspace":
            slot(d)["branch"] = safe(d.get("branch") or "", secrets, 200)
        elif p.phase == "diff":
            slot(d)["paths"] = [safe(x, secrets, 300) for x in (d.get("paths") or [])[:200]]
        elif p.phase == "tests":
            slot(d)["tests"] = test_view(d, secrets)
        elif p.phase == "verdict":
            s = slot(d)
            s["verdict"] = str(d.get("verdict") or "") or None
            s["reasons"] = [safe(r, secrets, 600) for r in (d.get("reasons") or [])[:10]]
        elif p.phase == "rejected":
            slot(d)["rejected"] = safe(d.get("error") or "", secrets, 2000)
        elif p.phase == "commit":
            sha = str(d.get("sha") or "")
            slot(d)["commit"] = {"sha": sha if _SHA.match(sha) else "", "merged": bool(d.get("merged")),
                                 "branch": safe(d.get("branch") or "", secrets, 200)}
    return [by[n] for n in sorted(by)]


def commit_diff(root: Path, sha: str, secrets: Sequence[str]) -> str | None:
    """The patch of a commit the tick made, redacted — None when git cannot show it (gone, not a repo)."""
    if not _SHA.match(sha):
        return None
    from ..adapters.git import run_git
    from ..errors import LoopError

    try:
        text = run_git(["show", "--no-color", "--no-ext-diff", "--format=", "--patch", sha, "--"], root,
                       timeout=20)
    except (LoopError, OSError):
        return None
    return safe(text, secrets, MAX_DIFF)


def tick_view(project: Project, store: Store, tick: Any, now: datetime, secrets: Sequence[str]) -> dict[str, Any]:
    """Everything the tick page shows."""
    phases = store.phases(tick.tick_id)
    end = tick.finished_at or now
    summary = tick.summary if isinstance(tick.summary, Mapping) else {}
    attempts = _attempts(phases, secrets)
    esc_id = summary.get("escalationId") or next(
        (p.data.get("id") for p in reversed(phases) if p.phase == "escalation" and p.data.get("id")), None)
    diff_title, diff_text, diff_note = "", "", ""
    esc = store.get_escalation(str(esc_id)) if esc_id else None
    commit = next((a["commit"] for a in reversed(attempts) if a["commit"]), None)
    if esc is not None:
        diff_title, diff_text = "Held diff", safe(esc.diff, secrets, MAX_DIFF)
        if not diff_text.strip():
            diff_note = "The escalation holds no change."
    elif commit and commit["sha"]:
        got = commit_diff(project.root, commit["sha"], secrets)
        diff_title = f"Committed diff ({commit['sha'][:10]})"
        if got is None:
            diff_note = f"Commit {commit['sha'][:10]} is not reachable from this repository any more."
        diff_text = got or ""
    level = next((p.data for p in phases if p.phase == "level"), {})
    role_rows = _roles(phases)
    return {
        "id": tick.tick_id, "pattern": tick.pattern, "runId": safe(tick.run_id, secrets, 60),
        "started": fmt_ts(tick.started_at), "finished": fmt_ts(tick.finished_at),
        "duration": _dur(_secs(tick.started_at, end)), "running": tick.finished_at is None,
        "status": tick.status, "outcome": tick.outcome or ("running" if tick.status == "running" else ""),
        "level": tick.level, "effective": summary.get("effectiveLevel") or level.get("effective") or tick.level,
        "levelReason": safe(level.get("reason") or "", secrets, 300),
        "backend": tick.backend, "tokens": int(tick.tokens or 0) if tick.finished_at else
        sum(r["used"] for r in role_rows),
        "note": safe(summary.get("note") or summary.get("error") or "", secrets, 600),
        "lines": [safe(x, secrets, 500) for x in (summary.get("lines") or [])[:60]],
        "timeline": _timeline(phases, tick.started_at, end),
        "roles": role_rows,
        "triage": _triage(phases, secrets),
        "attempts": attempts,
        "escalation": str(esc_id) if esc_id else None,
        "diffTitle": diff_title, "diff": diff_files(diff_text) if diff_text.strip() else [], "diffNote": diff_note,
        "transcripts": transcripts(project, tick.tick_id),
        "journal": [JournalLine(fmt_ts(p.at), p.phase, _detail(p.data, secrets)) for p in phases],
    }


# ---------------------------------------------------------------------------- live activity


def event_sentence(kind: str, pattern: str | None, payload: Mapping[str, Any], tokens: int | None = None) -> str | None:
    """What a person reads for one store event (``ci-sweeper · verifier approved · 5,000 tokens``).

    None for an event not worth its own line (token counters, reservations, bookkeeping
    records): their numbers show up in the next line instead. ``tokens`` is the tick's
    spend so far, when known. ``payload`` is already redacted.
    """
    who = pattern or "runtime"
    spent = f" · {_num(tokens)} tokens" if tokens else ""
    if kind == "tick.phase":
        return _phase_sentence(who, payload)
    if kind == "tick.record":
        return _record_sentence(who, payload, spent)
    if kind == "tick.agent":
        return f"{who} · {payload.get('role') or 'agent'} started · {_num(payload.get('reservation'))} tokens reserved"
    if kind == "tick.usage":
        return None
    if kind == "tick.end":
        return f"{who} · tick {payload.get('outcome') or 'ended'} · {_num(payload.get('tokens'))} tokens"
    if kind == "budget.topup":
        return f"{who} · cap topped up by {_num(payload.get('tokens'))} tokens"
    if kind == "kill":
        return f"{pattern or 'all loops'} · kill switch set"
    if kind == "resume":
        return f"{pattern or 'all loops'} · resumed"
    if kind.startswith("escalation."):
        ident = str(payload.get("id") or "")
        return f"{who} · escalation {ident + ' ' if ident else ''}{kind.split('.', 1)[1]}"
    if kind == "tick.recovered":
        return f"{who} · tick recovered after a crash · {_num(payload.get('tokens'))} tokens charged"
    if kind == "tick.error":
        return f"{who} · tick failed: {str(payload.get('error') or 'error')[:160]}"
    if kind.startswith("skip."):
        why = kind.removeprefix("skip.")
        return f"{who} · skipped: {'runs/day cap reached' if why == 'runs-cap' else why}"
    if kind.startswith("notify."):
        return f"{who} · notified: {str(payload.get('title') or kind.removeprefix('notify.'))[:160]}"
    return f"{who} · {kind.replace('.', ' ')}"


def _phase_sentence(who: str, payload: Mapping[str, Any]) -> str:
    """A phase change: its name, the attempt after the first, the commit or the halt reason."""
    name = str(payload.get("phase") or "").removeprefix("phase:")
    attempt = payload.get("attempt")
    extra = f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else ""
    if name == "committed":
        sha = str(payload.get("commit") or "")[:10]
        return f"{who} · committed{(' ' + sha) if sha else ''}{extra}"
    if name == "halted":
        return f"{who} · halted: {payload.get('reason') or 'stopped'}"
    return f"{who} · {name}{extra}"


def _record_sentence(who: str, payload: Mapping[str, Any], spent: str) -> str | None:
    """A phase's record: the verdict, triage's decision, the tests, an escalation or a rejected attempt."""
    phase = str(payload.get("phase") or "")
    if phase == "verdict":
        word = VERDICT_WORDS.get(str(payload.get("verdict")), str(payload.get("verdict") or "no verdict"))
        return f"{who} · verifier {word}{spent}"
    if phase == "triage":
        items = payload.get("items")
        n = f" · {items} item{'s' if items != 1 else ''}" if isinstance(items, int) else ""
        return f"{who} · triage decided {payload.get('decision') or '?'}{n}{spent}"
    if phase == "tests":
        if not payload.get("command"):
            return f"{who} · no tests found"
        return f"{who} · tests {'passed' if payload.get('passed') else 'failed'}"
    if phase == "escalation":
        return f"{who} · escalated: {payload.get('reason') or 'needs a human'}{spent}"
    if phase == "rejected":
        return f"{who} · attempt {payload.get('attempt') or '?'} rejected"
    return None
