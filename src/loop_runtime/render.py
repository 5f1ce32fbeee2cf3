"""Human output of the CLI: plain text that reads well in a terminal and in CI logs.

Kept apart from the commands so the seed demo's exact wording lives in one place.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from .core.result import TickResult


def tick_report(results: Sequence[TickResult], *, pattern_name: str, level: str, backend: str, dry_run: bool,
                spent: int, cap: int | None) -> str:
    mode = " (dry-run)" if dry_run else ""
    out = [f"Ran {len(results)} tick(s) of {pattern_name} [{level}] via {backend} backend{mode}:"]
    for i, r in enumerate(results, 1):
        out.append(f"tick {i}: {r.headline}")
        out.extend(f"· {line}" for line in r.lines)
    if cap:
        out.append(f"Budget: {spent:,} / {cap:,} tokens spent today.")
    else:
        out.append(f"Budget: {spent:,} tokens spent today (cap unknown).")
    return "\n".join(out)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plan_text(plan_json: Mapping[str, Any]) -> str:
    p = plan_json
    rpd = p["runsPerDay"]
    lines = [
        f"{p['name']} ({p['pattern']})",
        f"  goal:        {p['goal']}",
        f"  level:       {p['level']}  [{p['levelSource']}]",
        f"               {p['levelRule']}",
        f"  cadence:     {p['cadence']}  [{p['cadenceSource']}] → every {_dur(p['intervalSeconds'])} "
        f"(runs/day: {rpd['default']} fast, {rpd['conservative']} conservative)",
        f"  daily cap:   {_num(p['dailyTokenCap'])} tokens  [{p['capSource']}]",
        f"  runs/day:    {p['maxRunsPerDay'] if p['maxRunsPerDay'] is not None else 'no cap'}",
        f"  attempts:    {p['maxAttempts']} per item",
        f"  early exit:  {'required' if p['earlyExitRequired'] else 'no'}",
        f"  state file:  {p['stateFile']}",
        f"  phases:      {' → '.join(p['phases'])}",
        f"  human gates: {', '.join(p['humanGates'])}",
    ]
    lines += [f"  warning:     {w}" for w in p["warnings"]]
    return "\n".join(lines)


def _num(v: int | None) -> str:
    return "unknown" if v is None else f"{v:,}"


def _dur(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
