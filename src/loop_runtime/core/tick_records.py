"""How a tick ends: report, draft, halt or finish, and the records every tick writes.

The STATE file (Last run + the pattern's sections), one run-log entry, and ``docs/last-run.json``
for triage loops. Every write is a ``state.update`` with a pure function of the file's current
text, so another tick writing the same file at the same moment loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..formats.lastrun import update_last_run
from ..formats.runlog import MARKER, RunLogEntry, append_entry
from ..formats.state import parse_state, render_state, with_last_run
from ..formats.state_layout import layout_for, new_layout_text, prepare, write_escalation, write_report
from ..formats.triage import TriageDecision
from .engine import LAST_RUN_JSON, RUN_LOG
from .redact import clip
from .result import TickResult
from .sanitize import inert
from .tick_start import FORCE_HINT, observe, triage_prompt

if TYPE_CHECKING:
    from datetime import datetime

    from .tick import Tick


async def report(t: Tick, decision: TriageDecision) -> TickResult:
    await t.enter("reporting")
    items = [f"- {inert(i.id, 40)} — {inert(i.title)}" for i in decision.items]
    layout = layout_for(t.plan.pattern_id, t.plan.state_file)

    def update(doc: Any) -> Any:
        return write_report(doc, layout, items)  # the pattern's own report section (Watch List for triage)

    note = decision.summary or f"{len(decision.items)} item(s) reported"
    return await finish(t, decision.decision, "report-only", note=note, items=len(decision.items),
                        state_update=update)


async def draft(t: Tick) -> TickResult:
    """L0 drafts the triage prompt for review; no agent runs and no project file is written."""
    from ..errors import DiscoveryUnavailable

    try:
        observation, _ = await observe(t)
    except DiscoveryUnavailable as e:
        observation = f"(discovery unavailable: {e})"
    prompt = await triage_prompt(t, observation)
    await t.record("draft", {"system": prompt.system, "prompt": prompt.user})
    t.lines.append(f"L0 draft: triage prompt of {len(prompt.user):,} characters (no agent called)")
    return await t.result("draft", "no-op", note="L0 draft")


def _halt_line(t: Tick, reason: str, note: str) -> str:
    if reason == "paused":
        return f"paused: kill switch {note.removeprefix('paused').strip(' ()') or note}"
    if reason == "budget":
        return (f"halted: {note} — `loop-runtime topup {t.plan.pattern_id} <tokens> --resume` "
                "raises today's cap and resumes this tick")
    if reason == "runs-cap":
        return f"halted: {note} ({FORCE_HINT})"
    return f"halted: {note}"


async def halted(t: Tick, reason: str, note: str) -> TickResult:
    t.lines.append(_halt_line(t, reason, note))
    t._advance("halted")
    await t.record("phase:halted", {"reason": reason, "note": note})
    if reason == "budget":
        st = await t.ports.budget.status(await t.now())
        await t.notify("budget-100", f"{t.plan.pattern.name}: budget exhausted",
                       f"{st.used:,} / {st.cap or 0:,} tokens today; tick halted")
    elif reason == "kill":
        await t.notify("kill", f"{t.plan.pattern.name}: stopped by kill switch", note)
    if reason != "runs-cap":  # blocked before any work: nothing happened worth a run-log entry
        await write_records(t, "no-op", note=f"{'paused' if reason == 'paused' else 'halted'}: {note}",
                            extras={"note": reason if reason == "paused" else f"halted: {reason}"})
    return await t.result("paused" if reason == "paused" else "halted", "halted", note=note, halt_reason=reason)


async def finish(t: Tick, decision: str, outcome: str, *, note: str, items: int = 0, actions: int = 0,
                 escalations: int = 0, extras: dict[str, Any] | None = None, state_update: Any = None,
                 refingerprint: bool = False, **kw: Any) -> TickResult:
    if t.phase in ("discovering", "triaging"):
        t._advance("reporting")
    await write_records(t, outcome, note=note, items=items, actions=actions, escalations=escalations,
                        extras=extras, state_update=state_update, refingerprint=refingerprint)
    t._advance("done")
    return await t.result(decision, outcome, note=note, items_found=items, actions_taken=actions,
                          escalations=escalations, **kw)


async def write_records(t: Tick, outcome: str, *, note: str, items: int = 0, actions: int = 0,
                        escalations: int = 0, extras: dict[str, Any] | None = None, state_update: Any = None,
                        refingerprint: bool = False) -> None:
    """STATE file (Last run + sections), one run-log entry, docs/last-run.json when present.

    With ``refingerprint`` (a no-op tick of an early-exit pattern) the observation is
    taken again *after* the state file is written, so the next tick compares against
    the world as this tick left it — the loop's own write is not news.
    """
    now = await t.now()
    name = t.plan.state_file
    new_state = _state_writer(t, now, f"{outcome}: {note}", state_update)
    # Each file is read, changed and replaced under its own lock (another tick may be
    # writing the same STATE.md / run log right now); the texts are first computed from
    # what is on disk, so a file we cannot parse stops us before anything is written.
    new_state(await t.ports.state.read(name))
    current_log = await t.ports.state.read(RUN_LOG)
    if current_log is not None and MARKER not in current_log:
        raise ConfigError(RUN_LOG, "marker", MARKER, message=f"marker line {MARKER!r} not found; add it "
                          "under '## Recent Runs'")
    await t.ports.state.update(name, new_state)
    if refingerprint:
        extras = {**(extras or {}), "fingerprint": (await observe(t))[1]}
    assert t.started is not None
    entry = RunLogEntry(
        run_id=t.run_id, pattern=t.plan.pattern_id,
        duration_s=int(round((now - t.started).total_seconds())), items_found=items,
        actions_taken=actions, escalations=escalations, tokens_estimate=t.tokens, outcome=outcome,
        extras={"level": t.effective, **(extras or {})},
    )
    project = t.deps.options.context.project_name
    await t.ports.state.update(RUN_LOG, lambda text: append_entry(text, entry, now=now, project=project))
    if "triage" in t.plan.pattern_id:
        await _badge(t, now)
    await t.record("logged", {"outcome": outcome, "tokens": t.tokens})


def _state_writer(t: Tick, now: datetime, last_run: str, state_update: Any) -> Any:
    """The state file's new text as a pure function of its current text (for ``state.update``)."""
    name = t.plan.state_file
    project = t.deps.options.context.project_name
    layout = layout_for(t.plan.pattern_id, name)

    def new_state(text: str | None) -> str:
        fresh = new_layout_text(layout, project)  # the pattern's starter shape
        doc = parse_state(text if text is not None else fresh, file=name)
        doc = prepare(with_last_run(doc, now, clip(last_run, 200)), layout)
        if state_update is not None:
            doc = state_update(doc)
        return render_state(doc)

    return new_state


async def _badge(t: Tick, now: datetime) -> None:
    """``docs/last-run.json``'s timestamp: optional, so a broken one is reported, never fatal.

    Checked on the text read first, so the warning is the tick's own (a function handed to the
    writer must stay pure); a file broken in between is left as it is.
    """
    text = await t.ports.state.read(LAST_RUN_JSON)
    if text is None:  # no badge file: nothing to update
        return
    try:
        update_last_run(text, now)
    except ConfigError as e:
        t.lines.append(f"warning: {e}")
        return

    def badge(text: str | None) -> str | None:
        try:
            return update_last_run(text, now)
        except ConfigError:
            return None

    await t.ports.state.update(LAST_RUN_JSON, badge)


def escalation_state(t: Tick, item_id: str, line: str, action: str) -> Any:
    layout = layout_for(t.plan.pattern_id, t.plan.state_file)

    def update(doc: Any) -> Any:
        return write_escalation(doc, layout, item_id, inert(line), action)  # a new entry per escalation

    return update
