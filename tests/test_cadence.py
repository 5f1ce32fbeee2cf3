"""Cadence parsing and runs-per-day (R6, R7)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.cadence import Cadence, parse_cadence, runs_per_day, schedule_interval_s
from loop_runtime.errors import ConfigError

REGISTRY_RE = re.compile(r"^[0-9]+[mhd](-[0-9]+[mhd])?$")


@pytest.mark.parametrize(("text", "default", "conservative"), [
    ("1d-2h", 12, 1), ("5m-15m", 288, 96), ("6h-1d", 4, 1), ("15m", 96, 96), ("1d", 1, 1), ("90m", 16, 16),
])
def test_runs_per_day_vectors(text: str, default: int, conservative: int) -> None:
    """R6 vectors: a band counts its faster end, or its slower end when conservative."""
    c = parse_cadence(text)
    assert runs_per_day(c) == default
    assert runs_per_day(c, conservative=True) == conservative


def test_range_is_order_agnostic() -> None:
    """``5m-15m`` and ``15m-5m`` describe the same band of 300 s to 900 s."""
    assert parse_cadence("5m-15m") == Cadence("5m-15m", 300, 900)
    c = parse_cadence("15m-5m")
    assert (c.fast_s, c.slow_s, c.text) == (300, 900, "15m-5m")
    assert c.is_range and not parse_cadence("15m").is_range


def test_single_interval_has_equal_ends() -> None:
    """A single interval is a band of width zero."""
    assert parse_cadence("2h") == Cadence("2h", 7200, 7200)


def test_schedule_uses_the_slower_end() -> None:
    """R7: scheduling a band starts at its slower end."""
    assert schedule_interval_s(parse_cadence("1d-2h")) == 86_400
    assert schedule_interval_s(parse_cadence("5m-15m")) == 900
    assert schedule_interval_s(parse_cadence("10m")) == 600


def test_intervals_longer_than_a_day_still_run_once() -> None:
    """loop-cost floors 2d to 0 runs/day; the runtime counts the day it runs as one run."""
    assert runs_per_day(parse_cadence("2d")) == 1


@pytest.mark.parametrize("bad", ["15s", "1w", "5m-", "-5m", "", "5", "m", "5m-10m-15m", " 5m", "5m ", "5M",
                                 "0m", "0d-1h", "５m", "5m\n"])
def test_bad_cadence_is_a_config_error(bad: str) -> None:
    """Anything outside the registry regex (or a zero interval) is refused with the field named."""
    with pytest.raises(ConfigError) as err:
        parse_cadence(bad, file="LOOP.md", field="Daily Triage.cadence")
    assert err.value.file == "LOOP.md"
    assert err.value.field == "Daily Triage.cadence"
    assert "Daily Triage.cadence invalid" in str(err.value)


def test_non_string_cadence_is_a_config_error() -> None:
    """A number where a cadence belongs (YAML ``cadence: 15``) is a ConfigError, not a TypeError."""
    with pytest.raises(ConfigError):
        parse_cadence(15)  # type: ignore[arg-type]


# Invariant: parse_cadence accepts exactly the strings matching the registry regex with
# non-zero intervals, and raises ConfigError (nothing else) for every other string.
@given(st.one_of(st.text(max_size=12),
                 st.from_regex(r"\A[0-9]{1,4}[mhdsw](-[0-9]{1,4}[mhdsw])?\Z")))
def test_parse_cadence_accepts_exactly_the_regex(text: str) -> None:
    """Property: accept ⇔ regex match and no zero interval."""
    valid = bool(REGISTRY_RE.fullmatch(text)) and all(int(p[:-1]) > 0 for p in text.split("-"))
    try:
        c = parse_cadence(text)
    except ConfigError:
        assert not valid
    else:
        assert valid and c.text == text and 0 < c.fast_s <= c.slow_s


interval = st.tuples(st.integers(1, 10_000), st.sampled_from("mhd"))


# Invariant: runs/day is at least 1 and never increases when an interval gets longer.
@given(interval, interval)
def test_runs_per_day_is_positive_and_monotone(a: tuple[int, str], b: tuple[int, str]) -> None:
    """Property: ≥ 1 run/day, longer interval ⇒ no more runs; conservative ≤ default."""
    ca, cb = parse_cadence(f"{a[0]}{a[1]}"), parse_cadence(f"{b[0]}{b[1]}")
    ra, rb = runs_per_day(ca), runs_per_day(cb)
    assert ra >= 1 and rb >= 1
    if ca.fast_s <= cb.fast_s:
        assert ra >= rb
    band = parse_cadence(f"{a[0]}{a[1]}-{b[0]}{b[1]}")
    assert 1 <= runs_per_day(band, conservative=True) <= runs_per_day(band)


def test_parity_core_modules_do_no_io() -> None:
    """core/{cadence,cost,gate,breaker,promotion} import no I/O module and never call open()."""
    import ast
    from pathlib import Path

    import loop_runtime.core as core

    banned = {"subprocess", "asyncio", "sqlite3", "httpx", "socket", "os", "pathlib", "shutil", "io", "tempfile"}
    for name in ("cadence", "cost", "gate", "breaker", "promotion"):
        tree = ast.parse((Path(core.__file__).parent / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned, name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] not in banned, name
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("open", "exec", "eval", "input"), name
