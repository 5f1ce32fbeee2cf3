"""The circuit breaker (R15): triggers, their order, thresholds, signatures, daily budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.breaker import (
    BreakerConfig,
    BreakerDecision,
    PruneConfig,
    build_context_injection,
    check,
    error_signature,
    format_decision,
    js_number,
    prune_ledger,
    record_daily_spend,
    similarity,
    summarize_attempts,
)
from loop_runtime.errors import ConfigError
from loop_runtime.formats.ledger import Attempt, DailySpend, Ledger, new_ledger


def ledger_of(*attempts: Attempt, pattern: str = "ci-sweeper") -> Ledger:
    return Ledger("loop-drill synthetic run", pattern, "L2", None, tuple(attempts))


def fail(i: int, error: str | None = "boom", action: str | None = None, tokens: int | None = None) -> Attempt:
    return Attempt(i, action if action is not None else f"strategy {i} {'xyzw'[i % 4] * i}", "failure", error, tokens)


def ok(i: int, tokens: int | None = None) -> Attempt:
    return Attempt(i, f"step {i}", "success", tokens_used=tokens)


DISTINCT = ["TypeError: undefined is not a function", "ECONNREFUSED connecting to the database",
            "SyntaxError: unexpected token in JSON", "AssertionError: expected ok but got null",
            "Permission denied while writing the artifact", "OutOfMemoryError during the bundle step"]


def test_defaults_are_loop_contexts() -> None:
    """Defaults 10/3/3/5, similarity 0.85, no token budget, no daily budget."""
    c = BreakerConfig()
    assert (c.max_iterations, c.stagnation, c.frustration, c.no_progress, c.similarity_threshold) == (10, 3, 3, 5, 0.85)
    assert c.token_budget is None and c.daily_budget is None


def test_healthy_run_continues() -> None:
    """loop-drill breaker.healthy: two successes are not escalated."""
    d = check(ledger_of(ok(1), ok(2)))
    assert d == BreakerDecision(True, False, "ok", "Within limits — cleared to continue.", 2, 0)
    assert d.exit_code == 0 and format_decision(d) == "CONTINUE [ok] — Within limits — cleared to continue."


def test_same_error_trips_stagnation() -> None:
    """loop-drill breaker.stagnation: three identical failures → stagnation, with the signature quoted."""
    err = "TypeError: Cannot read properties of undefined (reading 'id')"
    d = check(ledger_of(*(fail(i, err, "retry the failing test") for i in (1, 2, 3))))
    assert (d.escalate, d.trigger, d.exit_code) == (True, "stagnation", 2)
    assert d.reason == (f"Same error repeated 3× in a row (threshold 3): \"{err}\". "
                        "Escalating instead of retrying.")


def test_volatile_details_do_not_hide_a_repeat() -> None:
    """Errors differing only in timestamps, ports, paths and line numbers are the same error."""
    errs = ["2026-09-16T10:00:00Z ECONNREFUSED 127.0.0.1:5432 at /srv/a/db.js:10:4",
            "2026-09-16T10:05:00.123Z ECONNREFUSED 127.0.0.1:5433 at /tmp/b/db.js:11:9",
            "2026-09-17T11:00:00Z ECONNREFUSED 127.0.0.1:6000 at /home/c/db.js:99:1"]
    assert len({error_signature(e) for e in errs}) == 1
    assert check(ledger_of(*(fail(i, e) for i, e in enumerate(errs, 1)))).trigger == "stagnation"


def test_similar_actions_trip_frustration() -> None:
    """Three near-identical actions with different errors → frustration."""
    d = check(ledger_of(*(fail(i, DISTINCT[i], "retry the failing auth test") for i in (1, 2, 3))))
    assert d.trigger == "frustration"
    assert d.reason.startswith("Semantic looping detected: agent repeated highly similar action 3× in a row")


def test_unrelated_failures_trip_no_progress() -> None:
    """loop-drill breaker.no-progress: five unrelated failures → no-progress."""
    d = check(ledger_of(*(fail(i + 1, DISTINCT[i]) for i in range(5))))
    assert d.trigger == "no-progress"
    assert d.reason == "5 consecutive failures with no progress (threshold 5). Escalating."


def test_a_success_resets_the_failure_run() -> None:
    """Only the trailing run of failures counts."""
    attempts = [fail(1, DISTINCT[0]), fail(2, DISTINCT[1]), fail(3, DISTINCT[2]), ok(4),
                fail(5, DISTINCT[3]), fail(6, DISTINCT[4])]
    assert check(ledger_of(*attempts)).trigger == "ok"


def test_token_budget_and_max_iterations() -> None:
    """loop-drill breaker.token-budget; then the iteration cap."""
    d = check(ledger_of(ok(1, tokens=60_001)), BreakerConfig(token_budget=60_000))
    assert d.trigger == "token-budget" and d.tokens_used == 60_001
    assert d.reason == "Token budget reached (60001 ≥ 60000). Escalating to avoid cost blowup."
    d = check(ledger_of(*(ok(i) for i in range(1, 11))))
    assert d.trigger == "max-iterations" and d.reason == "Iteration cap reached (10 ≥ 10). Escalating."


def test_trigger_order() -> None:
    """stagnation wins over frustration, no-progress, token budget and max iterations."""
    attempts = [fail(i, "same", "same action", tokens=10_000) for i in range(1, 11)]
    c = BreakerConfig(token_budget=1)
    assert check(ledger_of(*attempts), c).trigger == "stagnation"
    assert check(ledger_of(*attempts), BreakerConfig(token_budget=1, stagnation=11)).trigger == "frustration"
    assert check(ledger_of(*attempts), BreakerConfig(token_budget=1, stagnation=11, frustration=11)).trigger == \
        "no-progress"
    assert check(ledger_of(*attempts), BreakerConfig(token_budget=1, stagnation=11, frustration=11,
                                                     no_progress=11)).trigger == "token-budget"


def test_daily_budget_fires_only_when_nothing_else_did() -> None:
    """daily-budget comes last: a per-run trigger keeps its own reason."""
    healthy = ledger_of(ok(1, tokens=500))
    d = check(healthy, BreakerConfig(daily_budget=1_000, daily_spent=1_000))
    assert d.trigger == "daily-budget"
    assert d.reason == ('Daily token spend for pattern "ci-sweeper" reached 1000 (cap 1000). '
                        "Escalating to avoid cost blowup.")
    assert check(healthy, BreakerConfig(daily_budget=1_000, daily_spent=999)).trigger == "ok"
    stuck = ledger_of(*(fail(i, "same") for i in (1, 2, 3)))
    assert check(stuck, BreakerConfig(daily_budget=1, daily_spent=5)).trigger == "stagnation"


def test_record_daily_spend_rolls_over_at_a_new_date() -> None:
    """Today's total carries; yesterday's is discarded; the newest attempt's tokens are added."""
    led = ledger_of(ok(1, 100), ok(2, 250))
    assert record_daily_spend(None, led, "2026-09-16") == DailySpend("2026-09-16", 250)
    assert record_daily_spend(DailySpend("2026-09-16", 1_000), led, "2026-09-16").tokens_used_today == 1_250
    assert record_daily_spend(DailySpend("2026-09-15", 1_000), led, "2026-09-16").tokens_used_today == 250
    assert record_daily_spend(None, ledger_of(), "2026-09-16").tokens_used_today == 0


def test_similarity_threshold_95_is_refused_with_a_hint() -> None:
    """A percentage where a fraction belongs is a ConfigError saying 'use 0.95'."""
    with pytest.raises(ConfigError) as err:
        BreakerConfig(similarity_threshold=95)
    assert err.value.field == "similarityThreshold"
    assert str(err.value).endswith("If you meant 95%, use 0.95.")
    with pytest.raises(ConfigError, match="got 0"):
        BreakerConfig(similarity_threshold=0)


@pytest.mark.parametrize(("kwargs", "label"), [
    ({"max_iterations": 0}, "maxIterations"), ({"stagnation": -1}, "stagnationThreshold"),
    ({"frustration": 2.5}, "frustrationThreshold"), ({"no_progress": True}, "noProgressThreshold"),
    ({"token_budget": 0}, "tokenBudget"), ({"daily_budget": 0}, "dailyBudget"), ({"daily_spent": -1}, "dailySpent"),
])
def test_invalid_thresholds_are_refused(kwargs: dict[str, object], label: str) -> None:
    """A threshold that would switch a rule off is a ConfigError naming the field."""
    with pytest.raises(ConfigError) as err:
        BreakerConfig(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == label


@pytest.mark.parametrize(("raw", "sig"), [
    ("\n\n  Error at 2026-09-16T10:00:00.5Z: boom  \nstack", "Error at <ts>: boom"),
    ("segfault at 0xDEADbeef", "segfault at <addr>"),
    ("failed in /home/u/project/src/app.ts:12:7", "failed in app.ts"),
    ("C:\\Users\\me\\x.py:3: bad", "x.py: bad"),
    ("port 8080 refused 3 times", "port # refused # times"),
    ("   ", ""),
    ("tabs\tand\u00a0nbsp", "tabs and nbsp"),
])
def test_error_signature(raw: str, sig: str) -> None:
    """First non-empty line with volatile details blurred."""
    assert error_signature(raw) == sig


def test_similarity_is_trigram_jaccard() -> None:
    """Identical → 1.0; case-insensitive; unrelated strings score low."""
    assert similarity("abc", "abc") == 1.0
    assert similarity("ABC", "abc") == 1.0
    assert similarity("abc", "abd") == 2 / 8  # "  a", " ab" shared of 8 distinct trigrams
    assert similarity("retry the test", "completely different") < 0.2


def test_js_number_formatting() -> None:
    """Numbers print as JavaScript's String() would."""
    assert [js_number(x) for x in (95, 95.0, 0.95, 1e-7, 1e21, 0.000001, 123.5)] == \
        ["95", "95", "0.95", "1e-7", "1e+21", "0.000001", "123.5"]


def test_inject_summary_and_prune() -> None:
    """--inject lists goal, actions, failure patterns, the pruned last error and the breaker state."""
    trace = "\n".join(["Error: boom"] + [f"  at f{i} (a.js:{i}:1)" for i in range(12)])
    led = ledger_of(fail(1, trace, "a", 100), fail(2, trace, "a", 100), ok(3, 50))
    summary = summarize_attempts(led)
    assert summary["distinctErrors"] == [{"signature": "Error: boom", "count": 2, "sample": "Error: boom"}]
    pruned = prune_ledger(led, PruneConfig(max_trace_lines=2))
    assert pruned["attempts"][0]["repeated"] == 2 and pruned["attempts"][0]["iteration"] == 2
    assert pruned["attempts"][0]["error"].endswith("… (11 more lines pruned)")
    text = build_context_injection(led)
    assert text.startswith("## Loop Context (managed)\n\n**Goal:** loop-drill synthetic run\n")
    assert "**Progress:** iteration 3 · 1 ok · 2 failed · 250 tokens" in text
    assert text.endswith("> Circuit breaker: OK (3/10 iterations used).")


outcomes = st.sampled_from(["success", "failure", "noop"])
attempts = st.builds(Attempt, iteration=st.integers(0, 10**6), action=st.text(max_size=40), outcome=outcomes,
                     error=st.one_of(st.none(), st.text(max_size=80)),
                     tokens_used=st.one_of(st.none(), st.integers(0, 10**9)),
                     timestamp=st.one_of(st.none(), st.text(max_size=25)))


# Invariant: for any valid ledger and any valid config the breaker returns a decision and
# never raises; escalate ⇔ not should_continue ⇔ trigger != "ok"; counts are the ledger's.
@given(st.lists(attempts, max_size=14), st.integers(1, 6), st.floats(0.01, 1.0),
       st.one_of(st.none(), st.integers(1, 10**6)))
def test_breaker_never_raises_on_a_valid_ledger(items: list[Attempt], n: int, sim: float, budget: int | None) -> None:
    """Property: a decision for every valid ledger, internally consistent."""
    led = new_ledger("g", "p", "L2", None)
    led = Ledger(led.goal, led.pattern, led.level, None, tuple(items))
    config = BreakerConfig(stagnation=n, frustration=n, no_progress=n + 1, similarity_threshold=sim,
                           token_budget=budget)
    d = check(led, config)
    assert d.escalate == (not d.should_continue) == (d.trigger != "ok")
    assert d.iterations == len(items) and d.tokens_used == sum(a.tokens_used or 0 for a in items)
    assert build_context_injection(led, config)
