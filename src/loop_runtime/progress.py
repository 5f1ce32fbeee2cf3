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


class TickTracker:
    """What a progress display needs to know about the current tick, reset when a new tick starts.

    Ticks are told apart by their ``tick`` id in every event, so nothing (tokens, the
    reservation, the phase) carries over from the previous tick of a ``--ticks N`` run.
    """

    def __init__(self, total: int = 1, clock: Any = time.monotonic) -> None:
        self.total, self.clock = total, clock
        self.index = 0
        self.tick_id: str | None = None
        self.pattern = ""
        self.started = clock()
        self.tokens = 0
        self.reservation = 0
        self.phase = "starting"

    def see(self, kind: str, payload: Mapping[str, Any]) -> None:
        tick = payload.get("tick")
        if tick is not None and tick != self.tick_id:
            self.tick_id, self.index = str(tick), self.index + 1
            self.started, self.tokens, self.reservation, self.phase = self.clock(), 0, 0, "starting"
        self.pattern = str(payload.get("pattern", self.pattern))
        if kind == "tick.agent":
            self.reservation = int(payload.get("reservation", 0))
            self.phase = f"{payload.get('role')} agent"
        elif kind == "tick.usage":
            self.tokens = int(payload.get("tokens", 0))
        elif kind == "tick.phase":
            self.phase = _phase_word(payload)
        elif kind == "tick.end":
            self.tokens = int(payload.get("tokens", self.tokens))

    @property
    def counter(self) -> str:
        return f"{max(self.index, 1)}/{self.total}"

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def line(self) -> str:
        """``ci-sweeper 2/3 · triage agent · 4.2 s · 1,000 tokens / reserved 50,000``"""
        res = f" / reserved {self.reservation:,}" if self.reservation else ""
        return (f"{self.pattern} {self.counter} · {self.phase} · {self.elapsed:.1f} s · "
                f"{self.tokens:,} tokens{res}")


class PlainProgress:
    """One line per step (CI logs, pipes); with several ticks each line names which (``[ci-sweeper 2/3]``)."""

    def __init__(self, stream: TextIO, total: int = 1) -> None:
        self.stream = stream
        self.tracker = TickTracker(total)
        self._last = ""

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        self.tracker.see(kind, payload)
        if kind not in _SHOWN:
            return
        line = _describe(kind, payload, self.tracker)
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
    """A single status line (rich): pattern, tick counter, phase, elapsed time, this tick's tokens vs reservation."""

    def __init__(self, stream: TextIO, total: int = 1) -> None:
        from rich.console import Console
        from rich.status import Status

        self.console = Console(file=stream, highlight=False)
        self.tracker = TickTracker(total)
        self.status: Status = self.console.status("starting…")
        self.status.start()

    def event(self, kind: str, payload: Mapping[str, Any]) -> None:
        from rich.text import Text

        self.tracker.see(kind, payload)
        if kind == "tick.end":
            t = self.tracker
            self.console.print(Text(f"{t.pattern} {t.counter}: {_outcome_word(payload)} in {t.elapsed:.1f} s — "
                                    f"{t.tokens:,} tokens", style="dim"))
        self.status.update(Text(self.tracker.line()))

    def close(self) -> None:
        self.status.stop()


def _phase_word(p: Mapping[str, Any]) -> str:
    phase = str(p.get("phase", "")).removeprefix("phase:")
    return "paused" if phase == "halted" and p.get("reason") == "paused" else phase


def _outcome_word(p: Mapping[str, Any]) -> str:
    """A paused tick says "paused" (its outcome in the store is ``halted``)."""
    if p.get("decision") == "paused" or p.get("haltReason") == "paused":
        return "paused"
    return str(p.get("outcome"))


def _describe(kind: str, p: Mapping[str, Any], tracker: TickTracker | None = None) -> str:
    pat = p.get("pattern", "")
    tag = f"[{pat} {tracker.counter}]" if tracker is not None and tracker.total > 1 else f"[{pat}]"
    if kind == "tick.phase":
        return f"{tag} {_phase_word(p)}"
    if kind == "tick.agent":
        return f"{tag} {p.get('role')} agent (reserved {int(p.get('reservation', 0)):,} tokens)"
    if kind == "tick.usage":
        return f"{tag} tokens so far: {int(p.get('tokens', 0)):,}"
    if kind == "tick.end":
        took = f" in {tracker.elapsed:.1f} s" if tracker is not None else ""
        return f"{tag} {_outcome_word(p)}{took} — {int(p.get('tokens', 0)):,} tokens"
    return ""


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, list, dict)) or v is None


def make_progress(fmt: str, stream: TextIO | None = None, total: int = 1) -> Any:
    """``total``: how many ticks this run makes (the ``2/3`` counter)."""
    stream = stream or sys.stderr
    if fmt == "none":
        return None
    if fmt == "json":
        return JsonProgress(stream)
    if fmt == "plain" or not stream.isatty():
        return PlainProgress(stream, total)
    return LiveProgress(stream, total)
