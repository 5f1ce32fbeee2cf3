"""The circuit breaker over ``loop-ledger.json``: loop-context 1.5.0's ``--check``, reproduced (R15).

A fix loop that retries a problem it cannot solve burns tokens and trust. The breaker
reads the attempt ledger and stops the loop, most actionable reason first:

    stagnation → frustration → no-progress → token-budget → max-iterations

and only when none of those fired, ``daily-budget``. "The same error" is decided on a
normalised signature (timestamps, hex, paths, line:col and numbers blurred) compared
by trigram Jaccard similarity, exactly as loop-context does — including JavaScript's
UTF-16 view of strings and its notion of whitespace — so the runtime trips on the same
iteration the ecosystem's own guard would.

Thresholds are validated up front with the wording of upstream loop-context (newer
than 1.5.0, which silently accepted a similarity of 95 and so never tripped): a rule
that can never fire is a configuration error, not a quiet default.

The module also ports ``--prune``, ``--summary`` and ``--inject``: the compact
goal / attempts / last-error block is what an escalation hands to a human (R26).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ..errors import ConfigError
from ..formats.ledger import Attempt, DailySpend, Ledger, attempt_json
from .gate import JS_WHITESPACE, js_trim, to_utf16

_WS_CLASS = JS_WHITESPACE.replace("\\", "\\\\")
_TS_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ][\d:.]+Z?\b", re.ASCII)
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+")
_PATH_RE = re.compile(rf"[A-Za-z]:[\\/][^{_WS_CLASS}:]+|(?:[\\/][^{_WS_CLASS}:/\\]+)+")
_LINE_COL_RE = re.compile(r":\d+(:\d+)?", re.ASCII)
_NUMBER_RE = re.compile(r"\b\d+\b", re.ASCII)
_SPACES_RE = re.compile(f"[{_WS_CLASS}]+")


def js_number(x: float) -> str:
    """JavaScript's ``String(number)`` (``95`` not ``95.0``, ``1e-7`` not ``1e-07``)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    t = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, t.digits)).rstrip("0") or "0"
    n = int(t.exponent) + len(t.digits)  # value = 0.<digits> × 10^n
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + body


# ------------------------------------------------------------------ configuration

_LABELS = {"max_iterations": "maxIterations", "stagnation": "stagnationThreshold",
           "frustration": "frustrationThreshold", "no_progress": "noProgressThreshold",
           "token_budget": "tokenBudget", "daily_budget": "dailyBudget"}


def _positive_int(value: Any, label: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return
    raise ConfigError("", label, value, message=f"{label} must be a positive integer; got {_js_str(value)}. "
                      "An invalid value would switch this rule off.")


def _js_str(value: Any) -> str:
    return js_number(value) if isinstance(value, (int, float)) else str(value)


def check_similarity_threshold(value: Any, label: str = "similarityThreshold") -> None:
    """A similarity threshold is a fraction in (0, 1]; 95 (meant as 95%) would never match."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and 0 < value <= 1:
        return
    why = ""
    if number and value > 1:
        why = " Similarity is at most 1.0, so no two errors would ever match and the stagnation rule would never fire."
        if float(value).is_integer() and value <= 100:
            why += f" If you meant {js_number(value)}%, use {js_number(value / 100)}."
    raise ConfigError("", label, value, message=f"{label} must be a fraction greater than 0 and at most 1 "
                      f"(default 0.85); got {_js_str(value)}.{why}")


@dataclass(frozen=True)
class BreakerConfig:
    """loop-context's thresholds (defaults 10/3/3/5, similarity 0.85) plus the daily cap.

    ``daily_spent`` is today's total *after* recording the newest attempt — what
    loop-context keeps in ``.loop-context/daily-spend.<pattern>.json`` (see
    ``record_daily_spend``); ``daily_budget`` is that pattern's daily cap.
    """

    max_iterations: int = 10
    stagnation: int = 3
    frustration: int = 3
    no_progress: int = 5
    token_budget: int | None = None
    similarity_threshold: float = 0.85
    daily_budget: int | None = None
    daily_spent: int = 0

    def __post_init__(self) -> None:
        for name in ("max_iterations", "stagnation", "frustration", "no_progress"):
            _positive_int(getattr(self, name), _LABELS[name])
        for name in ("token_budget", "daily_budget"):
            if getattr(self, name) is not None:
                _positive_int(getattr(self, name), _LABELS[name])
        check_similarity_threshold(self.similarity_threshold)
        spent = self.daily_spent
        if not isinstance(spent, int) or isinstance(spent, bool) or spent < 0:
            raise ConfigError("", "dailySpent", spent,
                              message=f"dailySpent must be a whole number >= 0; got {spent!r}.")


@dataclass(frozen=True)
class PruneConfig:
    """loop-context's pruning knobs: attempts kept, trace lines kept, collapse similarity."""

    window: int = 5
    max_trace_lines: int = 8
    similarity_threshold: float = 0.85

    def __post_init__(self) -> None:
        _positive_int(self.max_trace_lines, "maxTraceLines")
        _positive_int(self.window, "window")
        check_similarity_threshold(self.similarity_threshold)


@dataclass(frozen=True)
class BreakerDecision:
    should_continue: bool
    escalate: bool
    trigger: str  # ok | stagnation | frustration | no-progress | token-budget | max-iterations | daily-budget
    reason: str
    iterations: int
    tokens_used: int

    def as_json(self) -> dict[str, Any]:
        """Exactly what ``loop-context --check --json`` prints (same key order)."""
        return {"iterations": self.iterations, "tokensUsed": self.tokens_used,
                "shouldContinue": self.should_continue, "escalate": self.escalate,
                "trigger": self.trigger, "reason": self.reason}

    @property
    def exit_code(self) -> int:
        """loop-context's exit code: 0 continue, 2 escalate."""
        return 2 if self.escalate else 0


def format_decision(d: BreakerDecision) -> str:
    """loop-context's human ``--check`` line."""
    return f"{'ESCALATE' if d.escalate else 'CONTINUE'} [{d.trigger}] — {d.reason}"


# ------------------------------------------------------------------ signatures and similarity


def error_signature(text: str) -> str:
    """Reduce an error to a stable signature so "the same error" survives volatile details."""
    first = next((line for line in text.split("\n") if js_trim(line)), "")
    sig = _TS_RE.sub("<ts>", js_trim(first))
    sig = _HEX_RE.sub("<addr>", sig)
    sig = _PATH_RE.sub(lambda m: re.split(r"[\\/]", m.group(0))[-1] or m.group(0), sig)
    sig = _LINE_COL_RE.sub("", sig)
    sig = _NUMBER_RE.sub("#", sig)
    return js_trim(_SPACES_RE.sub(" ", sig))


def _trigrams(s: str) -> set[str]:
    padded = to_utf16(f"  {s.lower()}  ")  # JS strings are UTF-16 code units
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def similarity(a: str, b: str) -> float:
    """Jaccard index of character trigrams of the lowercased, space-padded strings."""
    if a == b:
        return 1.0
    set_a, set_b = _trigrams(a), _trigrams(b)
    if not set_a and not set_b:
        return 1.0
    if not set_a or not set_b:
        return 0.0
    common = len(set_a & set_b)
    return common / (len(set_a) + len(set_b) - common)


# ------------------------------------------------------------------ the breaker


def total_tokens(ledger: Ledger) -> int:
    return sum(a.tokens_used or 0 for a in ledger.attempts)


def _trailing_failures(attempts: tuple[Attempt, ...]) -> list[Attempt]:
    run: list[Attempt] = []
    for a in reversed(attempts):
        if a.outcome != "failure":
            break
        run.insert(0, a)
    return run


def _similar_tail(values: list[str], threshold: float) -> int:
    """How many of the last values are similar to the very last one, counting backwards."""
    last, same = values[-1], 0
    for v in reversed(values):
        if similarity(v, last) < threshold:
            break
        same += 1
    return same


def _per_run_trigger(ledger: Ledger, config: BreakerConfig, tokens: int) -> tuple[str, str] | None:
    fails = _trailing_failures(ledger.attempts)
    if fails and len(fails) >= config.stagnation:
        sigs = [error_signature(a.error or "") for a in fails]
        same = _similar_tail(sigs, config.similarity_threshold)
        if same >= config.stagnation:
            return "stagnation", (f"Same error repeated {same}× in a row (threshold {config.stagnation}): "
                                  f"\"{sigs[-1]}\". Escalating instead of retrying.")
    if fails and len(fails) >= config.frustration:
        same = _similar_tail([a.action for a in fails], config.similarity_threshold)
        if same >= config.frustration:
            return "frustration", (f"Semantic looping detected: agent repeated highly similar action {same}× in a "
                                   f"row (threshold {config.frustration}): \"{fails[-1].action}\". Escalating.")
    if len(fails) >= config.no_progress:
        return "no-progress", (f"{len(fails)} consecutive failures with no progress "
                               f"(threshold {config.no_progress}). Escalating.")
    if config.token_budget is not None and tokens >= config.token_budget:
        return "token-budget", (f"Token budget reached ({tokens} ≥ {config.token_budget}). "
                                "Escalating to avoid cost blowup.")
    if len(ledger.attempts) >= config.max_iterations:
        return "max-iterations", (f"Iteration cap reached ({len(ledger.attempts)} ≥ {config.max_iterations}). "
                                  "Escalating.")
    return None


def check(ledger: Ledger, config: BreakerConfig = BreakerConfig()) -> BreakerDecision:
    """May the loop try again? Equal to ``loop-context --check --json`` on the same ledger."""
    tokens = total_tokens(ledger)
    hit = _per_run_trigger(ledger, config, tokens)
    if hit is None and config.daily_budget is not None and config.daily_spent >= config.daily_budget:
        hit = "daily-budget", (f"Daily token spend for pattern \"{ledger.pattern}\" reached {config.daily_spent} "
                               f"(cap {config.daily_budget}). Escalating to avoid cost blowup.")
    if hit is None:
        return BreakerDecision(True, False, "ok", "Within limits — cleared to continue.", len(ledger.attempts), tokens)
    return BreakerDecision(False, True, hit[0], hit[1], len(ledger.attempts), tokens)


def record_daily_spend(previous: DailySpend | None, ledger: Ledger, today: str) -> DailySpend:
    """Add the newest attempt's tokens to today's total (a stale date starts from zero)."""
    carry = previous.tokens_used_today if previous is not None and previous.date == today else 0
    latest = ledger.attempts[-1].tokens_used if ledger.attempts else None
    return DailySpend(date=today, tokens_used_today=carry + (latest or 0))


# ------------------------------------------------------------------ prune, summary, inject


def prune_stack_trace(trace: str, max_lines: int) -> str:
    lines = trace.split("\n")
    if len(lines) <= max_lines:
        return js_trim(trace)
    kept = "\n".join(lines[:max_lines]).rstrip(JS_WHITESPACE)
    omitted = len(lines) - max_lines
    return f"{kept}\n  … ({omitted} more line{'' if omitted == 1 else 's'} pruned)"


def prune_ledger(ledger: Ledger, prune: PruneConfig = PruneConfig()) -> dict[str, Any]:
    """``loop-context --prune``: recent window, trimmed traces, identical failures collapsed."""
    collapsed: list[Attempt] = []
    for attempt in ledger.attempts[-prune.window:]:
        if attempt.error is not None:
            attempt = replace(attempt, error=prune_stack_trace(attempt.error, prune.max_trace_lines))
        prev = collapsed[-1] if collapsed else None
        if (prev is not None and prev.outcome == "failure" and attempt.outcome == "failure"
                and similarity(error_signature(prev.error or ""), error_signature(attempt.error or ""))
                >= prune.similarity_threshold):
            count = (prev.repeated if prev.repeated is not None else 1) + 1
            collapsed[-1] = replace(prev, repeated=int(count), iteration=attempt.iteration)
        else:
            collapsed.append(attempt)
    out: dict[str, Any] = {"goal": ledger.goal}
    if ledger.started_at is not None:
        out["startedAt"] = ledger.started_at
    out["attempts"] = [attempt_json(a) for a in collapsed]
    return out


def summarize_attempts(ledger: Ledger, similarity_threshold: float = 0.85) -> dict[str, Any]:
    """``loop-context --summary --json``: counts, distinct error groups, actions tried."""
    check_similarity_threshold(similarity_threshold)
    groups: list[dict[str, Any]] = []
    actions: dict[str, None] = {}
    counts = {"success": 0, "noop": 0, "failure": 0}
    for a in ledger.attempts:
        actions.setdefault(a.action)
        counts[a.outcome if a.outcome in counts else "failure"] += 1
        if a.outcome in ("success", "noop") or not a.error:
            continue
        sig = error_signature(a.error)
        group = next((g for g in groups if similarity(g["signature"], sig) >= similarity_threshold), None)
        if group is not None:
            group["count"] += 1
        else:
            groups.append({"signature": sig, "count": 1, "sample": js_trim(a.error.split("\n")[0])})
    return {"totalAttempts": len(ledger.attempts), "successes": counts["success"], "failures": counts["failure"],
            "noops": counts["noop"], "tokensUsed": total_tokens(ledger),
            "distinctErrors": sorted(groups, key=lambda g: -g["count"]), "actionsTried": list(actions)}


def build_context_injection(ledger: Ledger, config: BreakerConfig = BreakerConfig(),
                            prune: PruneConfig = PruneConfig()) -> str:
    """``loop-context --inject``: the compact block a human (or the next prompt) gets."""
    summary = summarize_attempts(ledger, config.similarity_threshold)
    decision = check(ledger, replace(config, daily_budget=None))  # --inject never applies the daily cap
    pruned = prune_ledger(ledger, prune)
    tokens = f" · {summary['tokensUsed']} tokens" if summary["tokensUsed"] else ""
    lines = ["## Loop Context (managed)", "", f"**Goal:** {ledger.goal}",
             f"**Progress:** iteration {summary['totalAttempts']} · {summary['successes']} ok · "
             f"{summary['failures']} failed{tokens}", ""]
    if summary["actionsTried"]:
        lines += ["**Already tried (do NOT repeat):**"] + [f"- {a}" for a in summary["actionsTried"]] + [""]
    if summary["distinctErrors"]:
        lines += ["**Failure patterns:**"] + [f"- ({g['count']}×) {g['sample']}" for g in summary["distinctErrors"]]
        lines.append("")
    last_fail = next((a for a in reversed(pruned["attempts"]) if a["outcome"] == "failure"), None)
    if last_fail is not None and last_fail.get("error"):
        lines += ["**Most recent error (pruned):**", "```", last_fail["error"], "```", ""]
    if decision.escalate:
        lines.append(f"> STOP — circuit breaker tripped ({decision.trigger}). {decision.reason}")
    else:
        lines.append(f"> Circuit breaker: OK ({decision.iterations}/{config.max_iterations} iterations used).")
    return "\n".join(lines)
