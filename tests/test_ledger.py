"""loop-ledger.json and daily-spend files (R15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from loop_runtime.formats.ledger import (
    Attempt,
    DailySpend,
    Ledger,
    append_attempt,
    new_ledger,
    next_iteration,
    parse_daily_spend,
    parse_ledger,
    render_daily_spend,
    render_ledger,
)
from tests.support import npm_tools

SEEDED = ('{\n  "goal": "Get failing CI back to green",\n  "pattern": "ci-sweeper",\n  "level": "L2",\n'
          '  "attempts": []\n}\n')


@pytest.mark.parity
def test_loop_init_seed_round_trips(tmp_path: Path) -> None:
    """What the real loop-init seeds for ci-sweeper parses and re-renders byte for byte."""
    proc = npm_tools.run_tool("loop-init", str(tmp_path), "--pattern", "ci-sweeper", "--tool", "claude")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "loop-ledger.json").read_text()
    assert text == SEEDED
    ledger = parse_ledger(text)
    assert (ledger.goal, ledger.pattern, ledger.level, ledger.started_at, ledger.attempts) == \
        ("Get failing CI back to green", "ci-sweeper", "L2", None, ())
    assert render_ledger(ledger) == text


def test_new_ledger_renders_like_the_seed() -> None:
    """new_ledger + render_ledger writes exactly loop-init's layout (plus startedAt when given)."""
    assert render_ledger(new_ledger("Get failing CI back to green", "ci-sweeper", "L2", None)) == SEEDED
    with_start = json.loads(render_ledger(new_ledger("g", "p", "L1", "2026-09-16T00:00:00Z")))
    assert list(with_start) == ["goal", "pattern", "level", "startedAt", "attempts"]


def test_append_attempt_and_render_camel_case() -> None:
    """Appended attempts use loop-context's camelCase keys and omit absent fields."""
    led = parse_ledger(SEEDED)
    led = append_attempt(led, Attempt(1, "patch flaky auth test", "failure", "AssertionError: 200 != 500", 1800,
                                      "2026-09-16T10:00:00Z"))
    led = append_attempt(led, Attempt(next_iteration(led), "rerun", "success"))
    data = json.loads(render_ledger(led))
    assert data["attempts"] == [
        {"iteration": 1, "timestamp": "2026-09-16T10:00:00Z", "action": "patch flaky auth test",
         "outcome": "failure", "error": "AssertionError: 200 != 500", "tokensUsed": 1800},
        {"iteration": 2, "action": "rerun", "outcome": "success"},
    ]
    assert parse_ledger(render_ledger(led)) == led


def test_unknown_keys_survive_a_round_trip() -> None:
    """Keys other tools add (top level and per attempt) are kept, after the known ones."""
    text = json.dumps({"goal": "g", "attempts": [{"iteration": 1, "action": "a", "outcome": "noop", "note": "x",
                                                  "repeated": 2}], "owner": "bot"})
    led = parse_ledger(text)
    assert led.pattern == "" and led.level == "" and led.extras == {"owner": "bot"}
    assert led.attempts[0].extras == {"note": "x"} and led.attempts[0].repeated == 2
    assert json.loads(render_ledger(led)) == json.loads(text)


def test_unicode_is_written_raw_and_lone_surrogates_escaped() -> None:
    """Like JSON.stringify: non-ASCII stays readable; a lone surrogate becomes \\udXXX."""
    led = Ledger("ünï 😀", "", "", None, (Attempt(1, "fix \ud800", "noop"),))
    text = render_ledger(led)
    assert "ünï 😀" in text and "\\ud800" in text
    text.encode("utf-8")  # writable


@pytest.mark.parametrize(("text", "field"), [
    ("", "json"), ("{", "json"), ("[]", "goal/attempts"), ('{"goal": 1, "attempts": []}', "goal/attempts"),
    ('{"goal": "g"}', "goal/attempts"), ('{"goal": "g", "attempts": {}}', "goal/attempts"),
    ('{"goal": "g", "attempts": [1]}', "attempts[0]"),
    ('{"goal": "g", "attempts": [{"action": "a", "outcome": "noop"}]}', "attempts[0].iteration"),
    ('{"goal": "g", "attempts": [{"iteration": true, "action": "a", "outcome": "noop"}]}', "attempts[0].iteration"),
    ('{"goal": "g", "attempts": [{"iteration": 1, "outcome": "noop"}]}', "attempts[0].action"),
    ('{"goal": "g", "attempts": [{"iteration": 1, "action": "a", "outcome": "failed"}]}', "attempts[0].outcome"),
    ('{"goal": "g", "attempts": [{"iteration": 1, "action": "a", "outcome": "noop", "error": 3}]}',
     "attempts[0].error"),
    ('{"goal": "g", "attempts": [{"iteration": 1, "action": "a", "outcome": "noop", "tokensUsed": -1}]}',
     "attempts[0].tokensUsed"),
    ('{"goal": "g", "attempts": [{"iteration": 1, "action": "a", "outcome": "noop", "tokensUsed": "5"}]}',
     "attempts[0].tokensUsed"),
    ('{"goal": "g", "pattern": 7, "attempts": []}', "pattern"),
    ('{"goal": "g", "attempts": [], "x": NaN}', "json"),
])
def test_malformed_ledgers_name_the_field(text: str, field: str) -> None:
    """A malformed ledger is one ConfigError line naming file and field."""
    with pytest.raises(ConfigError) as err:
        parse_ledger(text, file="proj/loop-ledger.json")
    assert err.value.file == "proj/loop-ledger.json" and err.value.field == field
    assert "\n" not in str(err.value)


def test_whole_floats_are_accepted() -> None:
    """1.0 is a whole number in JSON's eyes (JS has one number type)."""
    led = parse_ledger('{"goal": "g", "attempts": [{"iteration": 1.0, "action": "a", "outcome": "noop", '
                       '"tokensUsed": 5.0}]}')
    assert led.attempts[0].iteration == 1 and led.attempts[0].tokens_used == 5


def test_daily_spend_file() -> None:
    """daily-spend.<id>.json: loop-context's layout; unreadable content counts as no spend."""
    spend = DailySpend("2026-09-16", 1234)
    assert render_daily_spend(spend) == '{\n  "date": "2026-09-16",\n  "tokensUsedToday": 1234\n}'
    assert parse_daily_spend(render_daily_spend(spend)) == spend
    for bad in ("", "{", "[]", '{"date": 1}', '{"date": "d", "tokensUsedToday": "x"}'):
        assert parse_daily_spend(bad) is None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                     max_size=4), max_leaves=12)
attempt_like = st.fixed_dictionaries({"iteration": st.integers() | st.text(max_size=3),
                                      "action": st.text(max_size=8) | st.none(),
                                      "outcome": st.sampled_from(["success", "failure", "noop", "x"])},
                                     optional={"error": json_values, "tokensUsed": json_values,
                                               "timestamp": json_values, "repeated": json_values})
ledger_like = st.fixed_dictionaries({"goal": st.text(max_size=8) | st.integers(),
                                     "attempts": st.lists(attempt_like, max_size=4) | json_values},
                                    optional={"pattern": json_values, "level": json_values, "startedAt": json_values})


# Invariant: the ledger parser raises ConfigError and nothing else, for any text at all
# and for any JSON shaped roughly like a ledger; what it accepts re-renders and re-parses
# to the same value.
@given(st.one_of(st.text(max_size=60), json_values.map(json.dumps), ledger_like.map(json.dumps)))
def test_parser_raises_only_config_error(text: str) -> None:
    """Property: parse_ledger either returns a Ledger that round-trips, or raises ConfigError."""
    try:
        led = parse_ledger(text)
    except ConfigError:
        return
    assert parse_ledger(render_ledger(led)) == led
