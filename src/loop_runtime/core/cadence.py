"""Cadence strings (``15m``, ``5m-15m``, ``1d-2h``) and what they mean in runs per day.

The registry, LOOP.md and the CLI all spell a cadence the same way: one interval, or a
band of two, in minutes, hours or days. loop-cost turns it into runs per day with
``floor(86400 / interval)`` and, for a band, takes the faster end unless asked to be
conservative; we reproduce that exactly so cost and budget numbers agree with the
ecosystem's own estimator (R6). For *scheduling* a band we pick the slower end (R7): a
new loop should start gently and a human can always tighten it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

# The registry schema's pattern; digits are ASCII only, as in the JS tools.
CADENCE_RE = re.compile(r"[0-9]+[mhd](-[0-9]+[mhd])?")
_INTERVAL_RE = re.compile(r"([0-9]+)([mhd])")
_UNIT_S = {"m": 60, "h": 3_600, "d": 86_400}
DAY_S = 86_400


@dataclass(frozen=True)
class Cadence:
    """A parsed cadence: the text as written and its band in seconds (``fast_s <= slow_s``)."""

    text: str
    fast_s: int
    slow_s: int

    @property
    def is_range(self) -> bool:
        return self.fast_s != self.slow_s


def _interval_s(token: str) -> int:
    m = _INTERVAL_RE.fullmatch(token)
    assert m is not None  # guaranteed by CADENCE_RE
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def parse_cadence(text: str, *, file: str = "", field: str = "cadence") -> Cadence:
    """Parse ``15m`` or ``5m-15m`` (either order); anything else is a ``ConfigError``.

    Zero intervals (``0m``) are refused too: they would mean "run continuously", which
    no pattern intends and which would divide by zero in runs-per-day.
    """
    if not isinstance(text, str) or CADENCE_RE.fullmatch(text) is None:
        raise ConfigError(file, field, text, message=f"{field} invalid: {text!r} (expected e.g. 15m, 1d, 5m-15m)")
    seconds = [_interval_s(part) for part in text.split("-")]
    if min(seconds) == 0:
        raise ConfigError(file, field, text, message=f"{field} invalid: {text!r} (intervals must be greater than zero)")
    return Cadence(text=text, fast_s=min(seconds), slow_s=max(seconds))


def loop_cost_runs(interval_s: int) -> int:
    """loop-cost's ``floor(86_400_000 / interval_ms)``, which is 0 for intervals over a day."""
    return DAY_S // interval_s


def runs_per_day(c: Cadence, conservative: bool = False) -> int:
    """Runs per day the way loop-cost counts them: the faster end of a band, or the slower one.

    Identical to loop-cost for every interval of a day or less. For longer intervals
    (``2d``) loop-cost says 0; we say 1, because a loop that runs at all runs on the
    days it runs and budgets divide by this number. ``core.cost.estimate`` keeps
    loop-cost's raw 0 so its output stays byte-for-byte comparable.
    """
    interval = c.slow_s if conservative else c.fast_s
    return max(1, loop_cost_runs(interval))


def schedule_interval_s(c: Cadence) -> int:
    """Seconds between scheduled ticks: the slower end of a band (R7's documented default)."""
    return c.slow_s
