"""Running an agent backend behind the metering proxy: start it, poll it, bill from it.

Every backend that talks HTTP to a model (``claude``, ``codex``, ``openai``, ``gemini``,
``opencode``, ``grok``) runs its CLI against ``MeteringProxy.base_url`` instead of the real
API. This module holds what they share:

- ``metered(...)``: the proxy for one run, with its call log written beside the transcript
  (``proxy-<role>-<stamp>.jsonl``, redacted like the transcript; closed by ``bill``, which
  appends the cross-check);
- ``stop_with(proxy, stop)``: the stop check a backend polls — the proxy's reasons (``budget``
  once a call was refused; an unreachable upstream; rejected credentials) come first;
- ``run_metered(...)`` / ``finish(...)``: the shared body of every CLI backend's ``run`` — the
  proxy, the transcript, the process group reading JSON lines, then the bill, the redaction and
  the ``agent.end`` event; a backend supplies only its command line, environment and parser;
- ``bill(result, proxy, cli_usage)``: the usage to settle. The proxy's ledger is the bill when
  every call's usage was read off the wire; the CLI's own report is a cross-check, and a
  disagreement is logged (``agent.warning`` and the call log); a CLI claiming more than the
  proxy saw is billed the more (never under-count). When the ledger is not exact (a cut stream,
  a call in flight at the stop) the larger of it and the backend's fail-closed figure is billed;
  with no call through the proxy at all, the backend's own figure stands.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ...ports import AgentRequest, AgentResult, EventSink, StopCheck, Usage
from ..metering_proxy import UPSTREAM_AUTH, UPSTREAM_DOWN, UPSTREAM_ERRORS, MeteringProxy
from .process import EventHandler, ProcessOutcome, Transcript, emit, larger, redact, run_json_lines

UPSTREAM_STOPS = (UPSTREAM_DOWN, UPSTREAM_AUTH, UPSTREAM_ERRORS)
FAIL_CLOSED_TEXT = re.compile(r";?\s*(no usage reported; )?charged the full reservation of [\d,]+ tokens")


@contextlib.asynccontextmanager
async def metered(request: AgentRequest, upstream: str, *, secrets: Sequence[str] = (),
                  on_event: EventSink | None = None) -> AsyncIterator[MeteringProxy]:
    """The metering proxy for ``request``'s run, its reservation ``request.token_limit``."""
    log = Transcript(request.transcript_dir, f"proxy-{request.role}", secrets)

    def write(event: Mapping[str, Any]) -> None:
        log.write_json(event)
        if event.get("type") == "proxy.refused":
            emit(on_event, "agent.warning", {"message": f"proxy refused a model call: reservation spent "
                                                        f"({event.get('spent'):,} of {event.get('limit'):,})"})

    ok = False
    try:
        async with MeteringProxy(upstream, request.token_limit, log=write,
                                 read_timeout_s=max(30.0, request.timeout_s)) as proxy:
            proxy.on_close = log.close  # type: ignore[attr-defined]
            yield proxy
        ok = True
    finally:
        if not ok:  # no bill() will follow: close the call log now
            log.close()


@dataclass(frozen=True)
class MeteredRun:
    """A finished CLI process run behind the proxy: how it ended, the proxy's ledger, the transcript."""

    outcome: ProcessOutcome
    proxy: MeteringProxy
    transcript: str | None
    secrets: tuple[str, ...]


async def run_metered(request: AgentRequest, upstream: str, *, secrets: Sequence[str],
                      command: Callable[[MeteringProxy], tuple[Sequence[str], Mapping[str, str]]],
                      handle: EventHandler, stop: StopCheck | None, on_event: EventSink | None,
                      cleanup: Callable[[], None] | None = None,
                      before_close: Callable[[Transcript], None] | None = None) -> MeteredRun:
    """Start the proxy, build the command for it (``command(proxy) -> (argv, env)``), run it as its own
    process group feeding each stdout JSON line to ``handle``, stopped by the proxy, ``stop`` or the deadline.

    ``before_close(transcript)`` may add its own lines (a sandbox's denials) before the transcript
    is closed; ``cleanup()`` runs last, whatever happened."""
    all_secrets = [s for s in secrets if s]
    async with metered(request, upstream, secrets=all_secrets, on_event=on_event) as proxy:
        all_secrets.append(proxy.secret)
        transcript = Transcript(request.transcript_dir, request.role, all_secrets)
        try:
            argv, env = command(proxy)
            outcome = await run_json_lines(argv, cwd=request.cwd, env=env, timeout_s=request.timeout_s,
                                           handle=handle, transcript=transcript, stop=stop_with(proxy, stop))
        except BaseException:
            close_log(proxy)
            raise
        finally:
            try:
                if before_close is not None:
                    before_close(transcript)
            finally:
                path = transcript.close()
                if cleanup is not None:
                    cleanup()
    return MeteredRun(outcome, proxy, path, tuple(all_secrets))


def finish(result: AgentResult, run: MeteredRun, cli_usage: Usage | None, *, on_event: EventSink | None,
           backend: str) -> AgentResult:
    """Bill ``result`` from the proxy, redact its error, stamp duration and transcript, emit ``agent.end``."""
    result = bill(result, run.proxy, cli_usage, on_event=on_event, backend=backend)
    if result.error:
        result = replace(result, error=redact(result.error, run.secrets))
    result = replace(result, duration_s=run.outcome.duration_s, transcript=run.transcript)
    emit(on_event, "agent.end", {"status": result.status, "stop_reason": result.stop_reason,
                                 "usage": result.usage.as_dict(), "error": result.error})
    return result


def close_log(proxy: MeteringProxy) -> None:
    """Close the run's call log (``bill`` does; call it on a path that raises instead of billing)."""
    close = getattr(proxy, "on_close", None)
    if close is not None:
        close()


def stop_with(proxy: MeteringProxy, stop: StopCheck | None) -> StopCheck:
    """Poll the proxy first (budget spent, upstream down), then the caller's own stop check."""

    def check() -> str | None:
        return proxy.stop_reason() or (stop() if stop is not None else None)

    return check


def bill(result: AgentResult, proxy: MeteringProxy, cli_usage: Usage | None, *,
         on_event: EventSink | None = None, backend: str = "") -> AgentResult:
    """``result`` with the usage to settle and, for a proxy stop, the status and error to report."""
    ledger = proxy.ledger
    metered_usage = ledger.usage
    if not ledger.calls:
        usage = result.usage  # no model call went through us: the backend's own (fail-closed) figure
    elif ledger.exact and ledger.in_flight == 0:
        # Exact at the network; a CLI claiming more (calls around the proxy?) is billed the more.
        usage = larger(metered_usage, cli_usage) if cli_usage is not None else metered_usage
    else:
        usage = larger(metered_usage, result.usage)
    if cli_usage is not None and cli_usage.total != metered_usage.total:
        note = (f"{backend} reported {cli_usage.total:,} tokens, the proxy metered {metered_usage.total:,} "
                f"over {len(ledger.calls)} call(s); billing {usage.total:,}")
        proxy._emit({"type": "proxy.disagreement", "cli": cli_usage.as_dict(), "metered": metered_usage.as_dict()})
        emit(on_event, "agent.warning", {"message": note})
    cost = cli_usage.cost_usd if cli_usage is not None else result.usage.cost_usd
    if ledger.calls and usage.total != result.usage.total and result.error:
        # The backend's fail-closed wording no longer holds: say what was actually billed.
        error = FAIL_CLOSED_TEXT.sub("", result.error).rstrip("; ")
        result = replace(result, error=f"{error}; the proxy metered {usage.total:,} tokens over "
                                       f"{len(ledger.calls)} model call(s)")
    result = replace(result, usage=replace(usage, cost_usd=cost))
    close_log(proxy)  # the call log stayed open for the cross-check
    reason = proxy.stop_reason()
    if reason == "budget":
        return replace(result, status="halted", stop_reason="budget",
                       error=f"stopped: the run's reservation of {ledger.limit:,} tokens is spent "
                             f"({ledger.spent:,} metered); the proxy refused the next model call")
    if reason in UPSTREAM_STOPS and result.status != "ok":
        detail = proxy.stop_detail() or reason
        own = result.error if result.error and not result.error.startswith("stopped (") else None
        return replace(result, status="error", stop_reason=None, error=f"{detail}: {own}" if own else detail)
    return result


__all__ = ["UPSTREAM_STOPS", "MeteredRun", "bill", "close_log", "finish", "metered", "run_metered", "stop_with"]
