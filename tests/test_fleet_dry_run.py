"""`run --dry-run --fleet FILE` shows the portfolio — its state and the level the loop would get from it —
and simulates the tick at that level (status's own rule), writing nothing (not even the ledger)."""

from __future__ import annotations

import json
from pathlib import Path

from loop_runtime.adapters.fleet import load_fleet, open_portfolio
from loop_runtime.adapters.store.budget import PORTFOLIO
from loop_runtime.app.runtime import now_utc
from loop_runtime.core.budget import utc_day
from tests.conftest import run_cli
from tests.test_fleet import three_repos

L2 = '[patterns.issue-triage]\nlevel = "L2"\n'


def spend(f: Path, tokens: int) -> None:
    """Other repositories' loops spent ``tokens`` of the portfolio today."""
    ledger = open_portfolio(load_fleet(f))
    try:
        now = now_utc()
        r = ledger.store.reserve(pattern=PORTFOLIO, day=utc_day(now), amount=tokens, cap=10**15, tick_id="ops/x",
                                 now=now)
        ledger.store.settle(r.id, tokens, now)
    finally:
        ledger.store.close()


def dry(f: Path, *extra: str) -> tuple[int, dict, str]:
    r = run_cli("run", "issue-triage", "--dry-run", "--fleet", str(f), *extra, cwd=f.parent.parent / "web")
    j = run_cli("run", "issue-triage", "--dry-run", "--fleet", str(f), "--json", *extra, cwd=f.parent.parent / "web")
    assert "Traceback" not in r.stderr + j.stderr, r.stderr + j.stderr
    return r.returncode, json.loads(j.stdout), r.stdout


def test_a_dry_run_in_a_fleet_shows_the_portfolio_and_writes_no_ledger(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 10_000, L2)
    code, doc, text = dry(f)
    assert code == 0
    assert doc["portfolio"]["state"] == "ok" and doc["portfolio"]["cap"] == 10_000
    assert doc["portfolio"]["loopLevel"]["effective"] == "L2"
    assert "portfolio (loop-fleet.toml): 0 / 10,000 tokens today, ok — issue-triage would run at L2" in text
    assert not load_fleet(f).ledger_path.exists()  # a dry run writes nothing


def test_a_portfolio_at_80_percent_makes_the_dry_run_tick_at_l1_and_a_spent_one_exits_2(tmp_path: Path) -> None:
    f = three_repos(tmp_path, 10_000, L2)
    spend(f, 8_500)
    code, doc, text = dry(f)
    assert code == 0 and doc["portfolio"]["state"] == "L1"
    assert doc["portfolio"]["loopLevel"]["effective"] == "L1" and "portfolio" in doc["portfolio"]["loopLevel"]["reason"]
    assert all(t["level"] == "L1" for t in doc["ticks"]), doc["ticks"]
    assert "would run at L1" in text
    spend(f, 1_500)
    code, doc, text = dry(f)
    assert code == 2 and doc["portfolio"]["state"] == "halted" and "issue-triage would not run: halted (portfolio" in text
    # --level cannot lift the portfolio's cap (the real tick would not run above it either)
    spend_free = three_repos(tmp_path / "again", 10_000, L2)
    spend(spend_free, 9_000)
    _code, doc, _ = dry(spend_free, "--level", "L3")
    assert all(t["level"] == "L1" for t in doc["ticks"])
