"""The per-run call ledger behind the metering proxy: admit a model call, settle it, refuse when spent.

Why here, apart from the proxy: the policy (what a call costs, when the next one is refused,
what an unmetered call is charged) must be testable without sockets, and the proxy is only
plumbing around it. One ledger guards one agent run's reservation (``AgentRequest.token_limit``,
the amount the engine reserved from the store-backed budget for this run), so the run's
spend settles against exactly what was reserved.

Rules:
- A call is admitted while the settled spend is below the limit. Once it reached the limit,
  every further model call is refused with an API-shaped error (``refusal``) and counted in
  ``refused`` — the proxy's owner then stops the process group.
- A call is charged what the provider reported for it (``wire_usage.Reading``).
- Fail closed: a successful (2xx) model call whose final usage never arrived (a cut stream, a
  body without ``usage``) is charged what was seen plus all remaining headroom, booked as input.
- An error status (4xx/5xx) is charged what it reported, normally nothing (providers do not
  bill rejected calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ports import Usage
from .wire_usage import Dialect, Reading


@dataclass(frozen=True)
class CallRecord:
    """One model call as metered: what it was charged and why."""

    n: int
    dialect: Dialect
    status: int
    usage: Usage
    exact: bool  # the provider's final usage was read; False → charged fail-closed
    note: str = ""


@dataclass
class CallLedger:
    """Settled usage of one run's model calls against its reservation ``limit``."""

    limit: int
    calls: list[CallRecord] = field(default_factory=list)
    refused: int = 0
    in_flight: int = 0

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total

    @property
    def spent(self) -> int:
        return self.usage.total

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit

    @property
    def exact(self) -> bool:
        """Every call's usage was reported by the provider (nothing charged fail-closed)."""
        return all(c.exact for c in self.calls)

    def admit(self) -> bool:
        """True when the next model call may go out; a refusal is counted."""
        if self.exhausted:
            self.refused += 1
            return False
        self.in_flight += 1
        return True

    def settle(self, dialect: Dialect, status: int, reading: Reading | None) -> CallRecord:
        """Record an admitted call's outcome and return its record."""
        self.in_flight = max(0, self.in_flight - 1)
        seen = reading.usage if reading is not None else Usage()
        notes = [f"suspect usage values: {', '.join(reading.suspect)}"] if reading and reading.suspect else []
        exact = True
        usage = seen
        if 200 <= status < 300 and not (reading is not None and reading.complete):
            exact = False
            headroom = max(0, self.limit - self.spent - seen.total)
            usage = Usage(seen.input + headroom, seen.output, seen.cache_write, seen.cache_read)
            notes.append(f"no final usage reported; charged the remaining reservation ({headroom:,} tokens)")
        record = CallRecord(len(self.calls) + 1, dialect, status, usage, exact, "; ".join(notes))
        self.calls.append(record)
        return record

    def refusal_message(self) -> str:
        return (f"loop-runtime: this run's token reservation is spent ({self.spent:,} of {self.limit:,} tokens); "
                "no further model calls are allowed")


def refusal(dialect: Dialect | None, message: str) -> tuple[int, dict[str, object]]:
    """An error response the CLI of ``dialect`` understands and does not retry (HTTP 400).

    400 is the status providers use for a request that will not succeed when repeated; 429
    and 5xx would make the CLIs retry with back-off.
    """
    if dialect == "anthropic":
        return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    if dialect == "gemini":
        return 400, {"error": {"code": 400, "message": message, "status": "FAILED_PRECONDITION"}}
    return 400, {"error": {"message": message, "type": "insufficient_quota", "param": None,
                           "code": "insufficient_quota"}}


__all__ = ["CallLedger", "CallRecord", "refusal"]
