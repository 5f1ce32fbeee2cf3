"""The phases of one tick: preflight, discovery, triage, report, and the records every tick writes.

The act path (worktree → implementer → verifier → gate) lives in ``core.act``.
"""

from __future__ import annotations

from typing import Any

from ..formats.lastrun import update_last_run
from ..errors import ConfigError, DiscoveryUnavailable, LoopError
from ..formats.runlog import MARKER, RunLogEntry, append_entry, parse_run_log, runs_on_day
from ..formats.state import parse_state, render_state, with_last_run
from ..formats.state_layout import layout_for, new_layout_text, prepare, write_escalation, write_report
from ..formats.triage import TriageDecision, parse_triage
from ..ports import Permission
from .budget import utc_day
from .engine import LAST_RUN_JSON, RUN_LOG, Halt, TickBase
from .files import update_file
from .levels import rank
from .result import TickResult
from .sanitize import inert
from .redact import clip
from .secrets import redact_json_text

WATCH = "Watch List"
#: How a human gets past an early exit or the runs/day cap (budget and kill switch still apply).
FORCE_HINT = "run with --force to tick anyway"


class Tick(TickBase):
    async def run(self) -> TickResult:
        j = self.deps.journal
        if j is not None:
            j.begin(tick_id=self.tick_id, run_id=self.run_id, pattern=self.plan.pattern_id, level=self.level,
                    backend=getattr(self.deps.backend, "name", "?"), at=self.started)
        try:
            result = await self._run()
        except Halt as h:
            result = self.halted(h.reason, h.note)
        except LoopError as e:
            if j is not None:
                j.finish(self.tick_id, status="error", outcome="error", tokens=self.tokens,
                         summary={"error": str(e), "phase": self.phase}, at=self.deps.clock.now())
            raise
        if j is not None:
            status = "halted" if result.outcome == "halted" else "finished"
            if result.outcome == "halted" and result.halt_reason in ("budget", "timeout", "kill"):
                status = "resumable" if result.halt_reason == "budget" and self.phase not in ("idle",) else status
            j.finish(self.tick_id, status=status, outcome=result.outcome, tokens=result.tokens,
                     summary=result.as_json(), at=self.deps.clock.now())
        self.emit("tick.end", {"outcome": result.outcome, "tokens": result.tokens, "decision": result.decision,
                               "haltReason": result.halt_reason})
        return result

    async def _run(self) -> TickResult:
        self._validate_files()
        ks = self.kill_state()
        if ks.engaged:
            raise Halt("paused", ks.note)
        if not self.deps.force:
            self._check_runs_cap()
        self.decide_level()
        if self.deps.sandbox_note:
            self.lines.append(self.deps.sandbox_note)
            self.record("sandbox", {"note": self.deps.sandbox_note})
        if self.effective == "L0":
            return self._draft()
        self.enter("discovering")
        try:
            observation, fp = self.observe()
        except DiscoveryUnavailable as e:  # never act (or spend tokens) on a world we could not see
            reason = clip(str(e), 300)
            self.lines.append(f"report-only: {reason}")
            return self._finish("report", "report-only", note=reason, extras={"reason": "discovery-unavailable"})
        if self.plan.early_exit_required and not self.deps.force and fp == self._last_noop_fingerprint():
            self.lines.append(f"no change since the last no-op tick: exit early without calling an agent "
                              f"({FORCE_HINT})")
            return self._finish("noop", "no-op", note="early exit: nothing changed", refingerprint=True)
        self.enter("triaging")
        tri = await self.call_agent("triage", "triage", self.triage_prompt(observation), self.deps.root,
                                    Permission.READ_ONLY)
        # redacted before parsing: an id is reduced to ``[A-Za-z0-9#._:/-]`` and capped, which would
        # turn ``ghp_…`` into ``ghp-…`` (no credential shape left) before any writer could see it
        decision = parse_triage(redact_json_text(tri.text))
        self.record("triage", {"decision": decision.decision, "items": len(decision.items),
                               "summary": decision.summary, "parsed": decision.parsed})
        self.lines.append(f"triage decision: {decision.decision}")
        self.lines.extend(f"warning: {w}" for w in decision.warnings)
        if decision.decision == "noop" or (decision.decision != "noop" and not decision.items and
                                           decision.decision == "act"):
            return self._finish("noop", "no-op", note=decision.summary or "nothing actionable",
                                refingerprint=self.plan.early_exit_required)
        if decision.decision == "act" and rank(self.effective) >= 2:
            from .act import act

            return await act(self, decision)
        if decision.decision == "act":
            self.lines.append(f"level {self.effective}: report only ({self.level_reason})")
        return self._report(decision)

    # -- outcomes
    def _report(self, decision: TriageDecision) -> TickResult:
        self.enter("reporting")
        items = [f"- {inert(i.id, 40)} — {inert(i.title)}" for i in decision.items]

        layout = layout_for(self.plan.pattern_id, self.plan.state_file)

        def update(doc: Any) -> Any:
            return write_report(doc, layout, items)  # the pattern's own report section (Watch List for triage)

        note = decision.summary or f"{len(decision.items)} item(s) reported"
        return self._finish(decision.decision, "report-only", note=note, items=len(decision.items),
                            state_update=update)

    def _draft(self) -> TickResult:
        """L0 drafts the triage prompt for review; no agent runs and no project file is written."""
        try:
            observation, _ = self.observe()
        except DiscoveryUnavailable as e:
            observation = f"(discovery unavailable: {e})"
        prompt = self.triage_prompt(observation)
        self.record("draft", {"system": prompt.system, "prompt": prompt.user})
        self.lines.append(f"L0 draft: triage prompt of {len(prompt.user):,} characters (no agent called)")
        return self.result("draft", "no-op", note="L0 draft")

    def halted(self, reason: str, note: str) -> TickResult:
        if reason == "paused":
            self.lines.append(f"paused: kill switch {note.removeprefix('paused').strip(' ()') or note}")
        elif reason == "budget":
            self.lines.append(f"halted: {note} — `loop-runtime topup {self.plan.pattern_id} <tokens> --resume` "
                              "raises today's cap and resumes this tick")
        elif reason == "runs-cap":
            self.lines.append(f"halted: {note} ({FORCE_HINT})")
        else:
            self.lines.append(f"halted: {note}")
        self.phase = "halted"
        self.record("phase:halted", {"reason": reason, "note": note})
        if reason == "budget":
            st = self.deps.budget.status(self.deps.clock.now())
            self.notify("budget-100", f"{self.plan.pattern.name}: budget exhausted",
                        f"{st.used:,} / {st.cap or 0:,} tokens today; tick halted")
        elif reason == "kill":
            self.notify("kill", f"{self.plan.pattern.name}: stopped by kill switch", note)
        if reason != "runs-cap":  # blocked before any work: nothing happened worth a run-log entry
            self._write_records("no-op", note=f"{'paused' if reason == 'paused' else 'halted'}: {note}",
                                extras={"note": reason if reason == "paused" else f"halted: {reason}"})
        return self.result("paused" if reason == "paused" else "halted", "halted", note=note, halt_reason=reason)

    def _finish(self, decision: str, outcome: str, *, note: str, items: int = 0, actions: int = 0,
                escalations: int = 0, extras: dict[str, Any] | None = None, state_update: Any = None,
                refingerprint: bool = False, **kw: Any) -> TickResult:
        if self.phase not in ("reporting", "committed", "escalated"):
            self.phase = "reporting" if self.phase in ("discovering", "triaging") else self.phase
        self._write_records(outcome, note=note, items=items, actions=actions, escalations=escalations,
                            extras=extras, state_update=state_update, refingerprint=refingerprint)
        self.phase = "done"
        return self.result(decision, outcome, note=note, items_found=items, actions_taken=actions,
                           escalations=escalations, **kw)

    # -- records
    def _write_records(self, outcome: str, *, note: str, items: int = 0, actions: int = 0, escalations: int = 0,
                       extras: dict[str, Any] | None = None, state_update: Any = None,
                       refingerprint: bool = False) -> None:
        """STATE file (Last run + sections), one run-log entry, docs/last-run.json when present.

        With ``refingerprint`` (a no-op tick of an early-exit pattern) the observation is
        taken again *after* the state file is written, so the next tick compares against
        the world as this tick left it — the loop's own write is not news.
        """
        st, now = self.deps.state, self.deps.clock.now()
        name = self.plan.state_file
        project = self.deps.context.project_name
        layout = layout_for(self.plan.pattern_id, name)

        def new_state(text: str | None) -> str:
            fresh = new_layout_text(layout, project)  # the pattern's starter shape
            doc = parse_state(text if text is not None else fresh, file=name)
            doc = prepare(with_last_run(doc, now, clip(f"{outcome}: {note}", 200)), layout)
            if state_update is not None:
                doc = state_update(doc)
            return render_state(doc)

        # Each file is read, changed and replaced under its own lock (another tick may be
        # writing the same STATE.md / run log right now); the texts are first computed from
        # what is on disk, so a file we cannot parse stops us before anything is written.
        new_state(st.read(name))
        current_log = st.read(RUN_LOG)
        if current_log is not None and MARKER not in current_log:
            raise ConfigError(RUN_LOG, "marker", MARKER, message=f"marker line {MARKER!r} not found; add it "
                              "under '## Recent Runs'")
        update_file(st, name, new_state)
        if refingerprint:
            extras = {**(extras or {}), "fingerprint": self.observe()[1]}
        entry = RunLogEntry(
            run_id=self.run_id, pattern=self.plan.pattern_id,
            duration_s=int(round((now - self.started).total_seconds())), items_found=items,
            actions_taken=actions, escalations=escalations, tokens_estimate=self.tokens, outcome=outcome,
            extras={"level": self.effective, **(extras or {})},
        )
        update_file(st, RUN_LOG, lambda text: append_entry(text, entry, now=now, project=project))
        if "triage" in self.plan.pattern_id:
            def badge(text: str | None) -> str | None:
                try:
                    return update_last_run(text, now)
                except ConfigError as e:  # the badge is optional: a broken one is reported, never fatal
                    self.lines.append(f"warning: {e}")
                    return None

            update_file(st, LAST_RUN_JSON, badge)
        self.record("logged", {"outcome": outcome, "tokens": self.tokens})

    def escalation_state(self, item_id: str, line: str, action: str) -> Any:
        layout = layout_for(self.plan.pattern_id, self.plan.state_file)

        def update(doc: Any) -> Any:
            return write_escalation(doc, layout, item_id, inert(line), action)  # a new entry per escalation

        return update

    # -- preflight helpers
    def _validate_files(self) -> None:
        """Refuse to start (and spend tokens) when a file this tick reads or writes is malformed.

        The same check the drivers run before any side effect (``loop_runtime.app.preflight``),
        here over the engine's own state writer, so an embedded engine gets it too.
        """
        from .preflight import PreflightInput, check_texts, reads_for

        names = reads_for(self.level, self.plan.state_file)
        check_texts(PreflightInput(level=self.level, state_file=self.plan.state_file,
                                   texts={n: self.deps.state.read(n) for n in names}))

    def _check_runs_cap(self) -> None:
        cap = self.plan.max_runs_per_day
        if not cap:
            return
        log = parse_run_log(self.deps.state.read(RUN_LOG) or "")
        done = runs_on_day(log, self.plan.pattern_id, utc_day(self.deps.clock.now()))
        if done >= cap:
            raise Halt("runs-cap", f"runs/day cap reached ({done}/{cap} from loop-budget.md)")

    def _last_noop_fingerprint(self) -> str | None:
        log = parse_run_log(self.deps.state.read(RUN_LOG) or "")
        for e in reversed(log.entries):
            if e.pattern == self.plan.pattern_id:
                if e.outcome != "no-op":
                    return None
                fp = e.extras.get("fingerprint")
                if isinstance(fp, str):
                    return fp
                note = e.extras.get("note")
                if isinstance(note, str) and (note == "paused" or note.startswith("halted")):
                    continue  # a halted/paused tick says nothing about the observation
                return None
        return None
