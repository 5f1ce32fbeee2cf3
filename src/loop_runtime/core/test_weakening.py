"""Did an attempt's test run execute less than the base commit's? The rule, as plain data.

Why compare runs rather than scan for markers: there are endless ways to stop a test
from running (a marker, a conftest hook, a renamed function, an ``-k`` in some config,
a ``sys.exit(0)`` before the report is written). Each of them shows in what the run
executed, so the attempt's report is held against the base commit's report for the
same test command:

- fewer tests collected, or fewer executed;
- more tests skipped, expected-to-fail or deselected;
- a test that ran on the base (passed or failed) missing from the attempt, or now
  skipped — by name when both runs named their tests;
- no readable report from the attempt when the base produced one (a deleted, forged
  beyond parsing, or never-written report is not the benefit of the doubt).

Adding tests, or turning failures into passes, is never a weakening. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.test_report import TestReport

__all__ = ["Weakening", "compare_runs"]

RAN = frozenset({"passed", "failed", "error"})
NOT_RUN = frozenset({"skipped", "xfailed"})
MAX_NAMES = 20


@dataclass(frozen=True)
class Weakening:
    """Why the attempt's tests are weaker than the base's, and which tests (when known)."""

    reasons: tuple[str, ...]
    tests: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        """The tests first (an escalation line is cut short), then why."""
        text = "; ".join(self.reasons)
        if self.tests:
            shown = ", ".join(self.tests[:MAX_NAMES])
            more = f" (+{len(self.tests) - MAX_NAMES} more)" if len(self.tests) > MAX_NAMES else ""
            text = f"tests {shown}{more} — {text}"
        return text


def compare_runs(base: TestReport | None, attempt: TestReport | None) -> Weakening | None:
    """The weakening of ``attempt`` against ``base``, or None when it executed at least as much.

    ``base`` None means the base commit's run left nothing to compare with (no report, no
    summary): nothing can be said. ``attempt`` None against a base report is a weakening.
    """
    if base is None:
        return None
    if attempt is None:
        return Weakening((f"the attempt's test run left no readable report ({base.source} on the base commit: "
                          f"{base.collected} collected)",),
                         tuple(c.name for c in base.cases or () if c.outcome in RAN))
    reasons: list[str] = []
    names: list[str] = []
    if base.cases is not None:
        if attempt.cases is None:
            reasons.append(f"the attempt's run did not name its tests (the base commit's {base.source} report did)")
            names.extend(c.name for c in base.cases if c.outcome in RAN)
        else:
            now = {c.name: c.outcome for c in attempt.cases}
            gone = [c.name for c in base.cases if c.name not in now]
            skipped = [c.name for c in base.cases if c.outcome in RAN and now.get(c.name) in NOT_RUN]
            if gone:
                reasons.append(f"{len(gone)} test(s) of the base commit no longer collected")
                names.extend(gone)
            if skipped:
                reasons.append(f"{len(skipped)} test(s) that ran on the base commit now skipped")
                names.extend(skipped)
    if attempt.collected < base.collected:
        reasons.append(f"fewer tests collected ({attempt.collected} < {base.collected} on the base commit)")
    if attempt.executed < base.executed:
        reasons.append(f"fewer tests executed ({attempt.executed} < {base.executed} on the base commit)")
    if attempt.not_run > base.not_run:
        reasons.append(f"more tests skipped, xfailed or deselected ({attempt.not_run} > {base.not_run} on the "
                       "base commit)")
    if not reasons:
        return None
    return Weakening(tuple(reasons), tuple(dict.fromkeys(names)))
