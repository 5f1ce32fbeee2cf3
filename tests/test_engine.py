"""The tick engine end to end with the public fakes: zero tokens, no files, every outcome."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, UTC


from loop_runtime import BudgetBreaker, LoopEngine, MemoryStateWriter, MockBackend, build_plan
from loop_runtime.adapters.clock import ManualClock
from loop_runtime.adapters.mock import MemoryWorkspace, load_scenario
from loop_runtime.adapters.project_files import load_registry
from loop_runtime.formats.registry import find_pattern
from loop_runtime.formats.runlog import parse_run_log

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def make(pattern: str = "daily-triage", level: str = "L2", scenario: str = "default", files=None, cap=None,
         spent: int = 0, **kw):
    p = find_pattern(load_registry(__import__("pathlib").Path("/nonexistent")), pattern)
    plan = build_plan(p, level)
    ws = MemoryWorkspace()
    backend = MockBackend(load_scenario(scenario), memory=ws)
    state = MemoryStateWriter(files or {})
    budget = BudgetBreaker(cap if cap is not None else plan.daily_token_cap, spent=spent, day=T0.date())
    engine = LoopEngine(plan, backend=backend, state=state, budget=budget, clock=ManualClock(T0), workspace=ws, **kw)
    return engine, backend, state, ws, budget


def tick(engine):
    return asyncio.run(engine.tick())


def log_entries(state):
    return parse_run_log(state.files["loop-run-log.md"]).entries


def test_default_scenario_acts_and_commits() -> None:
    """Triage act → implementer → verifier APPROVE → committed on the loop branch, 5000 tokens."""
    engine, backend, state, ws, _ = make()
    r = tick(engine)
    assert (r.decision, r.verdict, r.outcome, r.tokens) == ("act", "APPROVE", "fix-proposed", 5000)
    assert [c.role for c in backend.calls] == ["triage", "implementer", "verifier"]
    assert r.lines == ("triage decision: act", "proposed change touching src/example.ts", "verifier verdict: accept",
                       "committed: safe + allowlisted")
    (att,) = ws.attempts.values()
    assert att.status == "active" and att.commit
    (entry,) = log_entries(state)
    assert (entry.outcome, entry.tokens_estimate, entry.actions_taken) == ("fix-proposed", 5000, 1)
    assert "Last run: 2026-11-25T09:00:00Z" in state.files["STATE.md"]
    assert r.exit_code == 0


def test_implementer_and_verifier_are_separate_sessions() -> None:
    """The verifier gets a fresh read-only call; the implementer may edit only its worktree (R28)."""
    engine, backend, *_ = make()
    tick(engine)
    impl, ver = backend.calls[1], backend.calls[2]
    assert impl.permission.value == "edit-worktree" and ver.permission.value == "read-only"
    assert "Verdict" in ver.prompt and "## Verdict" not in impl.prompt


def test_noop_spawns_no_sub_agents() -> None:
    """A noop triage ends the tick: no implementer, no verifier (R18)."""
    engine, backend, state, *_ = make(scenario="noop")
    r = tick(engine)
    assert r.outcome == "no-op" and [c.role for c in backend.calls] == ["triage"]
    assert log_entries(state)[0].outcome == "no-op"


def test_report_only_writes_watch_list_inertly() -> None:
    """report → state Watch List gets the items as code spans; outcome report-only."""
    engine, backend, state, *_ = make(scenario="report-only")
    r = tick(engine)
    assert r.outcome == "report-only" and r.items_found == 2
    text = state.files["STATE.md"]
    watch = text.split("## Watch List", 1)[1]
    assert "`#12` — `Flaky test in the checkout suite`" in watch


def test_reject_then_accept_feeds_the_error_forward() -> None:
    """Attempt 1 rejected → discarded; attempt 2 gets the pruned error and is accepted."""
    engine, backend, state, ws, _ = make(scenario="reject-then-accept")
    r = tick(engine)
    assert r.outcome == "fix-proposed" and r.attempts == 2
    statuses = [a.status for a in ws.attempts.values()]
    assert statuses == ["rejected", "active"]
    second_impl = [c for c in backend.calls if c.role == "implementer"][1]
    assert "missing trailing newline" in second_impl.prompt
    ledger = json.loads(state.files["loop-ledger.json"])
    assert [a["outcome"] for a in ledger["attempts"]] == ["failure", "success"]


def test_escalate_holds_the_change_and_exits_2() -> None:
    """ESCALATE_HUMAN → High Priority entry, run log escalated/escalations=1, exit code 2 (R26)."""
    engine, backend, state, ws, _ = make(scenario="escalate")
    r = tick(engine)
    assert r.outcome == "escalated" and r.exit_code == 2
    high = state.files["STATE.md"].split("## High Priority (loop is acting or waiting on human)", 1)[1]
    high = high.split("## Watch List")[0]
    assert "- [ ] EX-3 — `Tighten session timeout`" in high
    assert "Loop action: escalated (verifier); attempts 1/3" in high and "Human decision: pending" in high
    (entry,) = log_entries(state)
    assert (entry.outcome, entry.escalations) == ("escalated", 1)
    assert [a.status for a in ws.attempts.values()] == ["escalated"]


def test_three_rejections_escalate(tmp_path) -> None:
    """Max attempts (3) of REJECT → escalated with the last error (R16)."""
    scen = tmp_path / "s.yaml"
    scen.write_text("triage: {decision: act, items: [{id: A, title: t}], tokens: 100}\n"
                    "implementer: [{files: {a.txt: x}, tokens: 100}]\n"
                    "verifier: [{verdict: REJECT, reasons: [wrong], tokens: 100}]\n")
    engine, backend, state, ws, _ = make(scenario=str(scen))
    r = tick(engine)
    assert r.outcome == "escalated"
    assert [c.role for c in backend.calls].count("implementer") == 3
    assert all(a.status == "rejected" for a in ws.attempts.values())


def test_l1_never_acts() -> None:
    """At L1 an act decision is reported only: no implementer, no writes outside state + run log (R9)."""
    engine, backend, state, ws, _ = make(level="L1")
    r = tick(engine)
    assert r.outcome == "report-only" and [c.role for c in backend.calls] == ["triage"]
    assert set(state.writes) <= {"STATE.md", "loop-run-log.md"} and not ws.attempts


def test_budget_at_80_percent_forces_l1() -> None:
    """≥80% of today's cap → effective L1 with the reason recorded."""
    engine, backend, *_ = make(spent=85_000)
    r = tick(engine)
    assert r.effective_level == "L1" and "80%" in r.level_reason
    assert [c.role for c in backend.calls] == ["triage"]


def test_budget_spent_halts_before_any_call() -> None:
    """≥100% → halted, no backend call, exit code 2, run log no-op with a note."""
    engine, backend, state, *_ = make(spent=100_000)
    r = tick(engine)
    assert r.outcome == "halted" and r.exit_code == 2 and backend.calls == []
    (entry,) = log_entries(state)
    assert entry.outcome == "no-op" and entry.extras["note"] == "halted: budget"


def test_kill_switch_pauses_before_work() -> None:
    """loop-pause-all in STATE.md → paused, no call, exit 0, note paused (R12)."""
    engine, backend, state, *_ = make(files={"STATE.md": "# Loop State\nloop-pause-all\n"})
    r = tick(engine)
    assert r.decision == "paused" and r.exit_code == 0 and backend.calls == []
    assert log_entries(state)[0].extras["note"] == "paused"


def test_early_exit_fingerprint_skips_the_backend() -> None:
    """Unchanged observation after a no-op → 0 tokens, no backend call; a change → called again."""
    obs = {"text": "HEAD abc\n"}
    p = find_pattern(load_registry(__import__("pathlib").Path("/nonexistent")), "ci-sweeper")
    plan = build_plan(p, "L2")
    backend = MockBackend(load_scenario("noop"))
    state = MemoryStateWriter()
    engine = LoopEngine(plan, backend=backend, state=state, budget=BudgetBreaker(plan.daily_token_cap),
                        clock=ManualClock(T0),
                        observe=lambda: obs["text"] + (state.read("ci-sweeper-state.md") or ""))
    first = tick(engine)
    second = tick(engine)
    assert first.tokens == 2000 and second.tokens == 0 and len(backend.calls) == 1
    obs["text"] = "HEAD def\n"
    third = tick(engine)
    assert third.tokens == 2000 and len(backend.calls) == 2


def test_runaway_mock_is_stopped_at_its_reservation(tmp_path) -> None:
    """A call wanting more than its reservation is halted and charged the reservation only."""
    scen = tmp_path / "s.yaml"
    scen.write_text("triage: {decision: noop, tokens: 999999}\n")
    engine, backend, state, ws, budget = make(scenario=str(scen), cap=10_000)
    r = tick(engine)
    assert r.outcome == "halted" and r.tokens == 10_000
    assert budget.status(T0).spent == 10_000


def test_l0_drafts_prompts_only() -> None:
    """L0 calls no agent and writes nothing."""
    engine, backend, state, *_ = make(level="L0")
    r = tick(engine)
    assert r.decision == "draft" and backend.calls == [] and state.writes == []


def test_budget_80_notifies_and_last_run_badge_is_updated() -> None:
    """≥80% sends one budget-80 notification; docs/last-run.json (when present) gets today's date (R24)."""
    from loop_runtime.adapters.notify import RecordingNotifier

    notes = RecordingNotifier()
    badge = '{"schemaVersion":1,"label":"last triage","message":"2026-09-15","color":"3ee8c5"}\n'
    engine, backend, state, *_ = make(spent=85_000, files={"docs/last-run.json": badge}, notifier=notes)
    tick(engine)
    assert [n.kind for n in notes.notes] == ["budget-80"]
    assert '"message":"2026-11-25"' in state.files["docs/last-run.json"].replace(" ", "")
