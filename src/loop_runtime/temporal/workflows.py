"""The tick and escalation workflows: deterministic orchestration, every effect an activity.

A tick is ``run_tick`` (the engine's phases in the worker's clone: kill switch and budget,
discovery, triage, act, verifier, gate, commit — every agent call journaled and replayed
on retry, see ``activities``), then ``push_spine`` (the state file, run log and ledger
committed and pushed, merged with concurrent pushes), then — for an escalation — an
``LoopEscalation`` child workflow that waits for a human's ``approve``/``reject`` signal.
That wait is a durable timer in Temporal: it holds no worker and no process, for days.
It outlives the tick (``ParentClosePolicy.ABANDON``), so the loop's next scheduled tick is
not held back by a pending human decision (schedules skip overlapping runs).

Only ``types`` (pure dataclasses) is imported, passed through the sandbox; activities are
referred to by name, so this module never imports the engine or any I/O module.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.exceptions import TimeoutError as ActivityTimeout

from .port_workflow import PortDriver

with workflow.unsafe.imports_passed_through():
    from .types import (
        ESCALATION_WORKFLOW,
        TICK_WORKFLOW,
        Decision,
        DecideInput,
        EscalationOutcome,
        EscalationWaitInput,
        PushInput,
        PushOutput,
        RunTickInput,
        RunTickOutput,
        TickCarry,
        TickInput,
        TickSummary,
        escalation_workflow_id,
    )

#: errors a retry cannot fix (a malformed project file, a missing extra): fail the tick at once
NON_RETRYABLE = ["ConfigError", "MissingDependency", "NonRetryable"]


def run_id_at(now: Any) -> str:
    """The run log's id form (``2026-06-09T08:15:00.123Z``) of the workflow's own clock."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def continue_due(limit: int) -> bool:
    """Temporal suggests it (history near its size limits), or the history reached the tick's own limit."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit


@workflow.defn(name=TICK_WORKFLOW)
class TickWorkflow:
    """One tick in phases — the engine's tick, the spine push, the escalation's start — each run at most once.

    Between two phases a long history continues as new (``continue_due``): the next run gets the tick's
    ids and what the phases done so far returned (``TickCarry``), so it picks up at the next phase with
    the same run id and idempotency keys, and the history a replay must read stays short. Never in the
    middle of a phase: a running ``run_tick`` keeps its heartbeat details (the calls it may replay).
    """

    def __init__(self) -> None:
        self.stop_reason: str | None = None
        self.phase = "starting"
        self.tick_id = ""
        self.pattern = ""
        self.escalation: str | None = None
        self.runs = 1

    @workflow.run
    async def run(self, inp: TickInput) -> TickSummary:
        self.pattern = inp.pattern
        carry = inp.resume or TickCarry(tick_id=f"{inp.pattern}-{workflow.uuid4().hex[:12]}",
                                        run_id=run_id_at(workflow.now()))
        self.tick_id, self.runs = carry.tick_id, carry.runs
        if carry.out is None:
            out = await self._tick(inp, carry)
            if isinstance(out, TickSummary):
                return out  # stopped by the kill switch
            carry = await self._phase_done(inp, replace(carry, out=out))
        out = carry.out
        assert out is not None
        if not carry.pushed:
            push = None
            if any(f.ours != f.base for f in out.spine):
                self.phase = "pushing"
                push = await self._push(inp, PushInput(
                    repo_url=inp.repo_url, project_key=inp.project_key, branch=inp.branch, run_id=carry.run_id,
                    pattern=inp.pattern, files=out.spine,
                    message=f"loop({inp.pattern}): {out.result.get('outcome')} {carry.run_id}"), out.worker_queue)
            carry = await self._phase_done(inp, replace(carry, push=push, pushed=True))
        if out.escalation is not None:
            self.phase = "escalated"
            self.escalation = out.escalation.escalation_id
            await workflow.start_child_workflow(
                ESCALATION_WORKFLOW,
                EscalationWaitInput(info=out.escalation, tick=replace(inp, resume=None),
                                    expiry_s=inp.escalation_expiry_s),
                id=escalation_workflow_id(out.escalation.escalation_id),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        self.phase = "done"
        result = out.result
        return TickSummary(tick_id=carry.tick_id, run_id=carry.run_id, pattern=inp.pattern,
                           outcome=str(result.get("outcome")), tokens=int(result.get("tokens") or 0),
                           exit_code=int(result.get("exitCode") or 0), push=carry.push, attempts=out.attempt,
                           replayed=list(out.replayed), note=str(result.get("note") or ""), runs=carry.runs)

    async def _tick(self, inp: TickInput, carry: TickCarry) -> RunTickOutput | TickSummary:
        """The engine's tick (one activity, retried on another worker); a kill switch cancels it."""
        self.phase = "ticking"
        if inp.per_port:  # the tick's state machine here, its effects as activities
            return await PortDriver(self, replace(inp, resume=None), carry.tick_id, carry.run_id).run()
        handle = workflow.start_activity(
            "run_tick", RunTickInput(tick=replace(inp, resume=None), tick_id=carry.tick_id, run_id=carry.run_id),
            result_type=RunTickOutput,
            start_to_close_timeout=timedelta(seconds=inp.agent_timeout_s * 8 + 900),
            heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_s),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5,
                                     non_retryable_error_types=NON_RETRYABLE),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(lambda: handle.done() or self.stop_reason is not None)
        if not handle.done():
            handle.cancel()  # delivered with the next heartbeat (≤ 1 s): the engine's stop check says "kill"
        try:
            return await handle
        except ActivityError as e:
            if isinstance(e.cause, CancelledError):
                self.phase = "stopped"
                return TickSummary(tick_id=carry.tick_id, run_id=carry.run_id, pattern=inp.pattern,
                                   outcome="halted", tokens=0, exit_code=0,
                                   note=f"stopped: {self.stop_reason or 'cancelled'}", runs=carry.runs)
            raise

    async def _phase_done(self, inp: TickInput, carry: TickCarry) -> TickCarry:
        """After a phase: continue as new when the history is long (this returns only when it is not)."""
        if continue_due(inp.max_history_events):
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(replace(inp, resume=replace(carry, runs=carry.runs + 1)))
        return carry

    async def _push(self, inp: TickInput, push: PushInput, worker_queue: str) -> PushOutput:
        """On the worker that ticked (its clone is current, and a push never waits behind other ticks for a
        slot); if that worker is gone, on any worker — the input carries the files, not the clone."""
        opts: dict[str, Any] = dict(
            result_type=PushOutput, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=max(inp.heartbeat_timeout_s * 2, 5)),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10,
                                     non_retryable_error_types=NON_RETRYABLE))
        if worker_queue:
            try:
                return await workflow.execute_activity(
                    "push_spine", push, task_queue=worker_queue,
                    schedule_to_start_timeout=timedelta(seconds=max(inp.heartbeat_timeout_s * 2, 5)), **opts)
            except ActivityError as e:
                if not isinstance(e.cause, ActivityTimeout):
                    raise
        return await workflow.execute_activity("push_spine", push, **opts)

    @workflow.signal
    def stop(self, reason: str) -> None:
        """The kill switch: the running tick's agent is stopped within one heartbeat."""
        if self.stop_reason is None:
            self.stop_reason = reason or "kill"

    @workflow.query
    def progress(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "tickId": self.tick_id, "phase": self.phase,
                "stopRequested": self.stop_reason, "escalation": self.escalation, "runs": self.runs}


@workflow.defn(name=ESCALATION_WORKFLOW)
class EscalationWorkflow:
    """Waits for ``approve`` or ``reject`` (or the expiry), then applies it on the worker holding the change."""

    def __init__(self) -> None:
        self.decision: str | None = None
        self.answer: Decision | None = None
        self.info: dict[str, Any] = {}
        self.state = "waiting"

    @workflow.run
    async def run(self, inp: EscalationWaitInput) -> EscalationOutcome:
        info = inp.info
        expires = (datetime.fromisoformat(inp.expires_at) if inp.expires_at
                   else workflow.now() + timedelta(seconds=inp.expiry_s))
        self.info = {"escalationId": info.escalation_id, "pattern": info.pattern, "item": info.item,
                     "title": info.title, "reason": info.reason, "expiresAt": expires.isoformat(),
                     "worker": info.worker_queue, "projectKey": inp.tick.project_key}
        await self._wait(inp, expires)
        answer = self.answer or Decision()
        self.state = "applying"
        try:
            result = await workflow.execute_activity(
                "decide_escalation",
                DecideInput(repo_url=inp.tick.repo_url, project_key=inp.tick.project_key, branch=inp.tick.branch,
                            local_id=info.local_id, decision=self.decision or "expired", by=answer.by,
                            reason=answer.reason, merge=answer.merge, keep_branch=answer.keep_branch),
                result_type=dict,
                task_queue=info.worker_queue,  # the clone holding the worktree and the held diff
                schedule_to_close_timeout=timedelta(hours=1),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=max(inp.tick.heartbeat_timeout_s * 2, 10)),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5,
                                         non_retryable_error_types=NON_RETRYABLE),
            )
        except ActivityError as e:
            self.state = "failed"
            return EscalationOutcome(escalation_id=info.escalation_id, decision=self.decision or "expired",
                                     by=answer.by, error=str(e.cause or e))
        self.state = self.decision or "expired"
        return EscalationOutcome(escalation_id=info.escalation_id, decision=self.decision or "expired",
                                 by=answer.by, result=result)

    async def _wait(self, inp: EscalationWaitInput, expires: datetime) -> None:
        """Days, holding nothing; a history grown long (Temporal's suggestion) continues as new with the
        same deadline. Nobody answered by then: the change is set aside, kept on its branch."""
        left = (expires - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(
                lambda: self.decision is not None or workflow.info().is_continue_as_new_suggested(),
                timeout=timedelta(seconds=max(left, 0.001)))
        except TimeoutError:
            self.decision, self.answer = "expired", Decision(by="expiry", reason=f"expired after {inp.expiry_s:g} s",
                                                             keep_branch=True)
            return
        if self.decision is None:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(replace(inp, expires_at=expires.isoformat()))

    @workflow.signal
    def approve(self, answer: Decision) -> None:
        if self.decision is None:  # the first answer wins; a second one is reported by the CLI, not applied
            self.decision, self.answer = "approved", answer

    @workflow.signal
    def reject(self, answer: Decision) -> None:
        if self.decision is None:
            self.decision, self.answer = "rejected", answer

    @workflow.query
    def pending(self) -> dict[str, Any]:
        return {**self.info, "state": self.state, "decision": self.decision,
                "by": self.answer.by if self.answer else None}
