"""One agent call of a tick: reserve → run → settle, or replay a recorded result when resuming.

The three effects of a call carry keys derived from the call's own key (``triage``,
``implementer:2`` …), not from their place in the tick, so a durable driver recognises the
call that billed tokens however the tick got there (a resume skips earlier calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AgentNotStarted, BackendError, ConfigError
from ..ports import AgentRequest, AgentResult, Permission, Reservation, Usage
from .engine import Halt
from .redact import clip

if TYPE_CHECKING:
    from .tick import Tick


async def call_agent(t: Tick, role: str, key: str, prompt: Any, cwd: str, permission: Permission) -> AgentResult:
    """Reserve → run → settle one agent call; replay a recorded result when resuming."""
    recorded = t.deps.options.replay.get(key)
    if recorded is not None:
        res = result_from(recorded)
        await t.add_usage(role, res.usage)
        return res
    reason = await t.stop_reason()
    if reason:
        raise Halt(reason, f"stopped before the {role} call: {reason}")
    want = t.plan.call_tokens.get(role, 50_000)
    reservation = await t.effect("budget", "reserve", want, await t.now(), key=_key(t, key, "budget.reserve"))
    if reservation is None:
        raise Halt("budget", f"budget exhausted before {role} call")
    await t.record(f"reserve:{key}", {"reservation": reservation.id, "amount": reservation.amount})
    request = _request(t, role, prompt, cwd, permission, reservation)
    await t.emit("tick.agent", {"role": role, "key": key, "reservation": reservation.amount})
    result = await _run(t, role, key, request, reservation)
    await _settle(t, key, reservation, result.usage.total, result.usage.cost_usd)
    await t.add_usage(role, result.usage)
    await t.record(f"agent:{key}", result_to(result))
    if result.sandbox_denials:
        await t.record(f"sandbox-denied:{key}", {"denials": list(result.sandbox_denials[:50])})
        t.lines.extend(f"sandbox denied ({role}): {d}" for d in result.sandbox_denials[:20])
    if result.status == "halted":
        raise Halt(result.stop_reason or "halted", f"{role} stopped: {result.stop_reason}")
    return result


def _key(t: Tick, key: str, call: str) -> str:
    return f"{t.tick_id}:agent:{key}:{call}"


def _request(t: Tick, role: str, prompt: Any, cwd: str, permission: Permission,
             reservation: Reservation) -> AgentRequest:
    o = t.deps.options
    return AgentRequest(
        role=role,  # type: ignore[arg-type]
        prompt=prompt.user,
        system_prompt=prompt.system,
        cwd=cwd,
        permission=permission,
        token_limit=reservation.amount,
        max_turns=o.max_turns,
        timeout_s=o.agent_timeout_s,
        model=o.model,
        transcript_dir=o.transcript_dir,
        env=dict(o.env),
        mcp_servers=dict(t.deps.policy.mcp_servers.get(t.effective, {})),
        level=t.effective,
    )


async def _run(t: Tick, role: str, key: str, request: AgentRequest, reservation: Reservation) -> AgentResult:
    """The backend run; on failure the reservation is settled here (nothing, or all of it: fail closed)."""
    try:
        result: AgentResult = await t.effect("backend", "run", request, key=_key(t, key, "backend.run"))
        return result
    except (AgentNotStarted, ConfigError) as exc:  # no agent ran (configuration, spawn): nothing was spent
        await _settle(t, key, reservation, 0)
        await t.record(f"agent-not-started:{key}", {"reservation_id": reservation.id, "actual": 0,
                                                    "error": clip(str(exc), 300)})
        raise
    except BackendError:
        await _settle(t, key, reservation, reservation.amount)  # fail closed
        await t.add_usage(role, Usage(input=reservation.amount))
        raise
    except BaseException:
        # cancelled (shutdown) or crashed mid-call: we cannot know the usage → charge the reservation
        await _settle(t, key, reservation, reservation.amount)
        raise


async def _settle(t: Tick, key: str, reservation: Reservation, actual: int, cost_usd: float | None = None) -> None:
    """``budget.settle`` (through ``core.budget.settle_call``: the reported cost goes to ledgers that price it)."""
    now = await t.now()
    args = (reservation, actual, now) if cost_usd is None else (reservation, actual, now, cost_usd)
    await t.effect("budget", "settle", *args, key=_key(t, key, "budget.settle"))


def result_to(r: AgentResult) -> dict[str, Any]:
    return {
        "text": r.text, "status": r.status, "turns": r.turns, "duration_s": r.duration_s,
        "transcript": r.transcript, "stop_reason": r.stop_reason, "error": r.error,
        "sandbox_denials": list(r.sandbox_denials[:100]),
        "usage": {"input": r.usage.input, "output": r.usage.output, "cache_write": r.usage.cache_write,
                  "cache_read": r.usage.cache_read, "cost_usd": r.usage.cost_usd},
    }


def result_from(d: Mapping[str, Any]) -> AgentResult:
    u = d.get("usage") or {}
    return AgentResult(
        text=str(d.get("text", "")), status=d.get("status", "ok"), turns=int(d.get("turns", 0)),
        duration_s=float(d.get("duration_s", 0.0)), transcript=d.get("transcript"),
        stop_reason=d.get("stop_reason"), error=d.get("error"),
        sandbox_denials=tuple(str(x) for x in d.get("sandbox_denials") or () if isinstance(x, str)),
        usage=Usage(int(u.get("input", 0)), int(u.get("output", 0)), int(u.get("cache_write", 0)),
                    int(u.get("cache_read", 0)), u.get("cost_usd")),
    )
