"""Live progress of ticks on stderr: a live line on a TTY, plain lines otherwise, JSON on request.

stdout stays reserved for the command's result (the tick report or ``--json``), so
scripts that parse it are never confused by progress.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

_SHOWN = {"tick.phase", "tick.agent", "tick.usage", "tick.end", "agent.start", "agent.end", "agent.tool"}


class PlainProgress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = ""

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        if kind not in _SHOWN:
            return
        line = _describe(kind, payload)
        if line and line != self._last:
            self._last = line
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class JsonProgress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        doc = {"ts": round(time.time(), 3), "event": kind, **{k: v for k, v in payload.items() if _jsonable(v)}}
        print(json.dumps(doc, default=str), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveProgress:
    """A single status line (rich) showing the phase and tokens so far vs the reservation."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.status import Status

        self.console = Console(file=stream)
        self.status: Status = self.console.status("starting…")
        self.status.start()
        self.reservation = 0
        self.tokens = 0
        self.phase = "starting"

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        if kind == "tick.agent":
            self.reservation = int(payload.get("reservation", 0))
            self.phase = f"{payload.get('role')} agent"
        elif kind == "tick.usage":
            self.tokens = int(payload.get("tokens", 0))
        elif kind == "tick.phase":
            self.phase = str(payload.get("phase", "")).removeprefix("phase:")
        elif kind == "tick.end":
            self.console.print(f"[dim]{payload.get('pattern')}: {payload.get('outcome')} — "
                               f"{payload.get('tokens', 0):,} tokens[/dim]")
        res = f" / reserved {self.reservation:,}" if self.reservation else ""
        self.status.update(f"{payload.get('pattern', '')}: {self.phase} — {self.tokens:,} tokens{res}")

    def close(self) -> None:
        self.status.stop()


def _describe(kind: str, p: Mapping[str, Any]) -> str:
    pat = p.get("pattern", "")
    if kind == "tick.phase":
        return f"[{pat}] {str(p.get('phase', '')).removeprefix('phase:')}"
    if kind == "tick.agent":
        return f"[{pat}] {p.get('role')} agent (reserved {int(p.get('reservation', 0)):,} tokens)"
    if kind == "tick.usage":
        return f"[{pat}] tokens so far: {int(p.get('tokens', 0)):,}"
    if kind == "tick.end":
        return f"[{pat}] {p.get('outcome')} — {int(p.get('tokens', 0)):,} tokens"
    return ""


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict)) or v is None


def make_progress(fmt: str, stream: TextIO | None = None) -> Any:
    stream = stream or sys.stderr
    if fmt == "none":
        return None
    if fmt == "json":
        return JsonProgress(stream)
    if fmt == "plain" or not stream.isatty():
        return PlainProgress(stream)
    return LiveProgress(stream)
