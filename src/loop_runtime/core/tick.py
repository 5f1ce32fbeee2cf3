"""``Tick``: one tick of one loop, as a single state machine that performs no I/O.

One object, one state (``phase``, usage, lines, the effective level), its code split by phase:
``core.tick_start`` (files, kill switch, runs/day, level, discovery), ``core.tick_agents`` (one
agent call: reserve → run → settle), ``core.act`` (the act path) and ``core.tick_records``
(outcomes and the records every tick writes). Those modules take the ``Tick`` and import it for
annotations only, so no import circle runs through the tick.

Two rules hold everywhere:

* ``phase`` is read-only; ``lifecycle.advance`` is the only way it changes (``enter``/``_advance``).
* every side effect is a ``core.effects.PortCall``: ``await t.ports.state.read(name)`` builds one
  and yields it to the driver (``core.effects.drive``). The tick never holds an adapter.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..errors import DiscoveryUnavailable, LoopError
from ..formats.triage import parse_triage
from ..ports import Notification, Permission, Usage
from . import tick_agents, tick_records, tick_start
from .effects import REQUIRED, PortCall
from .engine import PORT_NAMES, Halt, TickDeps, TickSpec, new_run_id
from .levels import rank
from .lifecycle import advance
from .plan import Plan
from .redact import clip
from .result import TickResult
from .secrets import redact_json_text
from .tick_start import FORCE_HINT

__all__ = ["FORCE_HINT", "Tick"]


class _Port:
    """``t.ports.<port>.<method>(*args)`` → the PortCall ``<port>.<method>`` (awaitable).

    Each method's builder is made once and kept on the proxy (``__getattr__`` runs only on a miss).
    """

    def __init__(self, tick: Tick, port: str) -> None:
        self._tick, self._port = tick, port

    def __getattr__(self, method: str) -> Any:
        if method.startswith("__"):
            raise AttributeError(method)
        tick, port = self._tick, self._port

        def call(*args: Any, **kwargs: Any) -> PortCall:
            return tick.effect(port, method, *args, **kwargs)

        setattr(self, method, call)
        return call


class _Ports:
    """``t.ports``: one ``_Port`` per port name of ``TickDeps`` (an unknown name is an AttributeError)."""

    def __init__(self, tick: Tick) -> None:
        self._tick = tick

    def __getattr__(self, port: str) -> _Port:
        if port not in PORT_NAMES:
            raise AttributeError(f"no port {port!r} (ports: {', '.join(PORT_NAMES)})")
        proxy = _Port(self._tick, port)
        setattr(self, port, proxy)
        return proxy


class Tick:
    """One tick: preflight → discover → triage → report or act → records (see ``core.engine``).

    It reads only ``deps.options``, ``deps.policy`` and ``deps.wired()`` — a ``TickDeps`` or its
    ``TickSpec`` — and reaches every adapter through the PortCalls it yields.
    """

    def __init__(self, plan: Plan, deps: TickDeps | TickSpec, level: str) -> None:
        self.plan, self.deps, self.level = plan, deps, level
        self.tick_id = deps.options.tick_id or f"{plan.pattern_id}-{uuid.uuid4().hex[:12]}"
        self.run_id = deps.options.run_id or ""  # allocated from the clock when the tick starts
        self.started: datetime | None = None
        self.wired = deps.wired()  # which ports exist: a tick asks nothing of a missing one
        self.ports = _Ports(self)
        self.usage: dict[str, Usage] = {}
        self.lines: list[str] = []
        self.effective = level
        self.level_reason = "configured"
        self.attempt = 0
        self._phase = "idle"
        self._seq = 0

    # -- the state machine
    @property
    def phase(self) -> str:
        """Where the tick is (``core.lifecycle``); read-only: only ``lifecycle.advance`` moves it."""
        return self._phase

    def _advance(self, dst: str) -> None:
        self._phase = advance(self._phase, dst)

    async def enter(self, phase: str, **data: Any) -> None:
        """Move to ``phase`` and journal it (``phase:<name>``)."""
        self._advance(phase)
        await self.record(f"phase:{phase}", data)

    # -- effects
    def effect(self, port: str, method: str, *args: Any, default: Any = REQUIRED, key: str | None = None,
               **kwargs: Any) -> PortCall:
        """The PortCall for ``<port>.<method>(*args, **kwargs)``, with this tick's next deterministic key."""
        self._seq += 1
        return PortCall(port, method, args, kwargs, key or f"{self.tick_id}:{self._seq}:{port}.{method}", default)

    async def now(self) -> datetime:
        result: datetime = await self.ports.clock.now()
        return result

    async def record(self, phase: str, data: Mapping[str, Any]) -> None:
        if "journal" in self.wired:
            await self.ports.journal.record(self.tick_id, phase, dict(data), await self.now())
        kind = "tick.phase" if phase.startswith("phase:") else "tick.record"
        await self.emit(kind, {"phase": phase, **{k: v for k, v in data.items() if _small(v) and k != "phase"}})

    async def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        if "events" in self.wired:
            await self.ports.events.emit(kind, {"pattern": self.plan.pattern_id, "tick": self.tick_id, **payload})
        if "journal" in self.wired and kind.startswith("tick."):
            await self.ports.journal.event(kind, dict(payload), await self.now(), pattern=self.plan.pattern_id,
                                           tick_id=self.tick_id)

    async def notify(self, kind: str, title: str, body: str) -> None:
        if "notifier" not in self.wired:
            return
        try:
            await self.ports.notifier.notify(Notification(kind=kind, title=title, body=body,
                                                          pattern=self.plan.pattern_id))
        except Exception:  # a failing notifier never fails a tick
            pass

    async def stop_reason(self) -> str | None:
        """The stop signal's reason to stop now (a kill switch, a shutdown), else None."""
        if "stop" not in self.wired:
            return None
        reason: str | None = await self.ports.stop.check()
        return reason or None

    @property
    def tokens(self) -> int:
        return sum(u.total for u in self.usage.values())

    async def add_usage(self, role: str, usage: Usage) -> None:
        self.usage[role] = self.usage.get(role, Usage()) + usage
        await self.emit("tick.usage", {"role": role, "tokens": self.tokens})

    async def call_agent(self, role: str, key: str, prompt: Any, cwd: str, permission: Permission) -> Any:
        """Reserve → run → settle one agent call (``core.tick_agents``)."""
        return await tick_agents.call_agent(self, role, key, prompt, cwd, permission)

    async def result(self, decision: str, outcome: str, **kw: Any) -> TickResult:
        assert self.started is not None
        return TickResult(
            tick_id=self.tick_id, run_id=self.run_id, pattern=self.plan.pattern_id,
            pattern_name=self.plan.pattern.name, level=self.level, effective_level=self.effective,
            level_reason=self.level_reason, decision=decision, outcome=outcome, tokens=self.tokens,
            usage=dict(self.usage), lines=tuple(self.lines),
            duration_s=(await self.now() - self.started).total_seconds(), **kw,
        )

    # -- outcomes (``core.tick_records``), named here so the act path reads ``t.finish(…)``
    async def finish(self, decision: str, outcome: str, **kw: Any) -> TickResult:
        return await tick_records.finish(self, decision, outcome, **kw)

    def escalation_state(self, item_id: str, line: str, action: str) -> Any:
        return tick_records.escalation_state(self, item_id, line, action)

    # -- the tick
    async def run(self) -> TickResult:
        self.started = await self.now()
        self.run_id = self.run_id or new_run_id(self.started)
        if "journal" in self.wired:
            await self.ports.journal.begin(tick_id=self.tick_id, run_id=self.run_id, pattern=self.plan.pattern_id,
                                           level=self.level, backend=await self.ports.backend.name(default="?"),
                                           at=self.started)
        try:
            result = await self._run()
        except Halt as h:
            result = await tick_records.halted(self, h.reason, h.note)
        except LoopError as e:
            if "journal" in self.wired:
                await self.ports.journal.finish(self.tick_id, status="error", outcome="error", tokens=self.tokens,
                                                summary={"error": str(e), "phase": self.phase}, at=await self.now())
            raise
        if "journal" in self.wired:
            status = "halted" if result.outcome == "halted" else "finished"
            if result.outcome == "halted" and result.halt_reason in ("budget", "timeout", "kill"):
                status = "resumable" if result.halt_reason == "budget" and self.phase not in ("idle",) else status
            await self.ports.journal.finish(self.tick_id, status=status, outcome=result.outcome, tokens=result.tokens,
                                            summary=result.as_json(), at=await self.now())
        await self.emit("tick.end", {"outcome": result.outcome, "tokens": result.tokens,
                                     "decision": result.decision, "haltReason": result.halt_reason})
        return result

    async def _run(self) -> TickResult:
        kill = await tick_start.preflight(self)
        await tick_start.decide_level(self, kill)
        note = self.deps.options.sandbox_note
        if note:
            self.lines.append(note)
            await self.record("sandbox", {"note": note})
        if self.effective == "L0":
            return await tick_records.draft(self)
        await self.enter("discovering")
        try:
            observation, fp = await tick_start.observe(self)
        except DiscoveryUnavailable as e:  # never act (or spend tokens) on a world we could not see
            reason = clip(str(e), 300)
            self.lines.append(f"report-only: {reason}")
            return await self.finish("report", "report-only", note=reason,
                                     extras={"reason": "discovery-unavailable"})
        if (self.plan.early_exit_required and not self.deps.options.force
                and fp == await tick_start.last_noop_fingerprint(self)):
            self.lines.append(f"no change since the last no-op tick: exit early without calling an agent "
                              f"({FORCE_HINT})")
            return await self.finish("noop", "no-op", note="early exit: nothing changed", refingerprint=True)
        return await self._triage(observation)

    async def _triage(self, observation: str) -> TickResult:
        await self.enter("triaging")
        prompt = await tick_start.triage_prompt(self, observation)
        tri = await self.call_agent("triage", "triage", prompt, self.deps.options.root, Permission.READ_ONLY)
        # redacted before parsing: an id is reduced to ``[A-Za-z0-9#._:/-]`` and capped, which would
        # turn ``ghp_…`` into ``ghp-…`` (no credential shape left) before any writer could see it
        decision = parse_triage(redact_json_text(tri.text))
        await self.record("triage", {"decision": decision.decision, "items": len(decision.items),
                                     "summary": decision.summary, "parsed": decision.parsed})
        self.lines.append(f"triage decision: {decision.decision}")
        self.lines.extend(f"warning: {w}" for w in decision.warnings)
        if decision.decision == "noop" or (decision.decision == "act" and not decision.items):
            return await self.finish("noop", "no-op", note=decision.summary or "nothing actionable",
                                     refingerprint=self.plan.early_exit_required)
        if decision.decision == "act" and rank(self.effective) >= 2:
            from .act import act

            return await act(self, decision)
        if decision.decision == "act":
            self.lines.append(f"level {self.effective}: report only ({self.level_reason})")
        return await tick_records.report(self, decision)


def _small(v: Any) -> bool:
    return isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 200) or v is None
