"""Run ids: the run log's ``run_id``, unique, and still the ecosystem's ISO-8601 UTC form.

The ecosystem writes ``run_id`` as an ISO timestamp (``2026-06-09T08:15:00Z``) and its
tools read it as one (loop-audit does ``new Date(row.run_id)`` to judge freshness; our
own run-log trimming parses it). Whole seconds are not unique: two ticks in one second
(``run --ticks 3`` on a fast no-op, two loops started together by ``start``) got the
same id, and a run id is how the store, the run log and the dashboard tell runs apart.

So ids carry milliseconds — exactly JavaScript's ``Date.prototype.toISOString`` form,
``2026-06-09T08:15:00.123Z``, which every ISO parser in the ecosystem accepts — and are
*allocated*, never just formatted: each id is strictly later than the last one issued
(bumped by a millisecond when the clock has not moved on). ``RunIdSequence`` does this
within a process; ``adapters.run_ids`` shares the last id through a locked file so two
processes on one project never issue the same id either.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from ..formats.runlog import parse_run_time

STEP = timedelta(milliseconds=1)


def format_run_id(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, milliseconds truncated), as ``toISOString`` prints it."""
    utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def next_run_id(now: datetime, last: str | None) -> str:
    """The id for a run starting at ``now``: ``now`` to the millisecond, or 1 ms after ``last`` if not later.

    ``last`` may be anything (a hand-edited file, a whole-second id of an older version):
    what does not parse as a time is ignored.
    """
    candidate = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    candidate = candidate.replace(microsecond=candidate.microsecond // 1000 * 1000)
    previous = parse_run_time(last) if last else None
    if previous is not None:
        previous = previous.replace(microsecond=previous.microsecond // 1000 * 1000)
        if candidate <= previous:
            candidate = previous + STEP
    return format_run_id(candidate)


class RunIdSequence:
    """Strictly increasing run ids within one process (thread-safe); no I/O."""

    def __init__(self) -> None:
        self._last: str | None = None
        self._lock = threading.Lock()

    def next(self, now: datetime, *, at_least_after: str | None = None) -> str:
        """The next id; also later than ``at_least_after`` (e.g. what another process issued)."""
        with self._lock:
            last = self._last
            if at_least_after and (last is None or (parse_run_time(at_least_after) or now) > (parse_run_time(last) or now)):
                last = at_least_after
            self._last = next_run_id(now, last)
            return self._last


#: the process-wide sequence every tick without an injected ``run_id`` draws from
PROCESS_SEQUENCE = RunIdSequence()
