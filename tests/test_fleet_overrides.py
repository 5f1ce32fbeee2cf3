"""Every per-repository override a fleet file supports reaches a loop identically in the embedded fleet
daemon (``start --fleet``, ``run --fleet``) and on a Temporal worker (from the schedule's ``FleetLink``).

No Temporal server needed: the worker's side is ``app.fleet.linked_project`` fed with the link exactly as
Temporal delivers it (through temporalio's JSON payload converter)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop_runtime.adapters.fleet import load_fleet
from loop_runtime.app.fleet import fleet_project, linked_project
from loop_runtime.app.runtime import load_project
from loop_runtime.errors import ConfigError
from loop_runtime.formats.project_config import PatternConfig
from tests.support.gitrepo import make_repo

pytest.importorskip("temporalio")

from loop_runtime.temporal.fleet import fleet_link  # noqa: E402
from loop_runtime.temporal.types import TickInput  # noqa: E402

OWN = ('global_daily_cap = 90000\n[patterns.ci-sweeper]\nlevel = "L1"\ncadence = "6h"\nmodel = "own-model"\n'
       'daily_cap = 70000\n[patterns.daily-triage]\nlevel = "L1"\n')

#: one value of every key `[repos.patterns.<id>]` accepts — the test fails when a key is added without it
EVERY_KEY = {"level": '"L2"', "cadence": '"2h"', "backend": '"codex"', "model": '"fleet-model"',
             "early_exit": "false", "discovery": '["tests", "ci"]', "enabled": "true", "daily_cap": "12345"}


def fleet(tmp: Path, table: dict[str, str], repo_cap: int | None = 50_000) -> Path:
    make_repo(tmp / "api", {"README.md": "x\n", "loop-runtime.toml": OWN})
    body = "portfolio_daily_cap = 800000\nportfolio_daily_usd = 12.5\nname = \"acme\"\n[[repos]]\npath = \"../api\"\n"
    if repo_cap is not None:
        body += f"daily_cap = {repo_cap}\n"
    body += "[repos.patterns.ci-sweeper]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
    (tmp / "fleet").mkdir(parents=True, exist_ok=True)
    f = tmp / "fleet" / "loop-fleet.toml"
    f.write_text(body)
    return f


def through_temporal(link: object) -> object:
    """The link as a worker receives it: the schedule's TickInput, JSON-encoded and decoded by temporalio."""
    from temporalio.converter import DataConverter

    conv = DataConverter.default.payload_converter
    inp = TickInput(repo_url="/x.git", project_key="x-1", pattern="ci-sweeper", fleet=link)  # type: ignore[arg-type]
    [back] = conv.from_payloads(conv.to_payloads([inp]), [TickInput])
    return back.fleet


def both_paths(f: Path, pattern: str = "ci-sweeper") -> tuple[object, object]:
    loaded = load_fleet(f)
    place = loaded.places[0]
    embedded = fleet_project(place)
    worker = linked_project(load_project(place.root), pattern, through_temporal(fleet_link(loaded, place, pattern)))
    return embedded, worker


def test_the_test_covers_every_key_a_fleet_override_may_set() -> None:
    assert set(EVERY_KEY) == {f.name for f in fields(PatternConfig)}


def test_every_override_gives_the_worker_the_same_plan_and_caps_as_the_embedded_fleet(tmp_path: Path) -> None:
    embedded, worker = both_paths(fleet(tmp_path, EVERY_KEY))
    assert worker.config.for_pattern("ci-sweeper") == embedded.config.for_pattern("ci-sweeper")
    assert worker.plan("ci-sweeper") == embedded.plan("ci-sweeper")
    plan = worker.plan("ci-sweeper")
    assert (plan.level, plan.daily_token_cap, plan.interval_s) == ("L2", 12345, 7200)
    cfg = worker.config.for_pattern("ci-sweeper")
    assert (cfg.backend, cfg.model, cfg.early_exit, cfg.discovery) == ("codex", "fleet-model", False, ("tests", "ci"))
    assert worker.config.global_daily_cap == embedded.config.global_daily_cap == 50_000  # the smaller cap wins
    # a loop the fleet does not override keeps the repository's own settings, on both paths
    e2, w2 = both_paths(fleet(tmp_path, EVERY_KEY), "daily-triage")
    assert w2.plan("daily-triage") == e2.plan("daily-triage")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.sets(st.sampled_from(sorted(EVERY_KEY))), repo_cap=st.one_of(st.none(), st.integers(1, 10**7)))
def test_any_subset_of_overrides_and_repository_cap_agrees_on_both_paths(tmp_path_factory, keys, repo_cap) -> None:
    tmp = tmp_path_factory.mktemp("fleet")
    embedded, worker = both_paths(fleet(tmp, {k: EVERY_KEY[k] for k in keys}, repo_cap))
    assert worker.plan("ci-sweeper") == embedded.plan("ci-sweeper")
    assert worker.config.global_daily_cap == embedded.config.global_daily_cap
    assert worker.config.for_pattern("ci-sweeper") == embedded.config.for_pattern("ci-sweeper")


def test_the_link_carries_the_portfolio_and_a_disabled_loop_gets_no_schedule(tmp_path: Path) -> None:
    from loop_runtime.temporal.connect import TemporalSettings
    from loop_runtime.temporal.schedules import Repo, wanted

    f = fleet(tmp_path, {"enabled": "false"})
    loaded = load_fleet(f)
    link = fleet_link(loaded, loaded.places[0], "ci-sweeper")
    assert (link.portfolio, link.portfolio_cap, link.portfolio_usd, link.repo) == ("fleet:acme", 800000, 12.5, "api")
    project = fleet_project(loaded.places[0])
    ws = wanted(project, Repo("/x.git", "main", "x-1"), TemporalSettings(),
                lambda pid: fleet_link(loaded, loaded.places[0], pid))
    assert [w.pattern for w in ws] == ["daily-triage"]  # ci-sweeper: enabled = false in the fleet file
    assert ws[0].tick.fleet is not None and ws[0].tick.fleet.portfolio == "fleet:acme"


@pytest.mark.parametrize("bad", [{"level": "L9"}, {"daily_cap": -1}, {"sneaky": 1}, {"discovery": [1, 2]},
                                 {"cadence": "whenever"}])
def test_a_tampered_link_is_refused_on_the_worker_as_the_fleet_file_would_be(tmp_path: Path, bad: dict) -> None:
    """The worker re-validates the table it receives (a schedule edited by hand, an older client)."""
    from loop_runtime.temporal.types import FleetLink

    make_repo(tmp_path / "api", {"README.md": "x\n", "loop-runtime.toml": OWN})
    with pytest.raises(ConfigError) as e:
        linked_project(load_project(tmp_path / "api"), "ci-sweeper", FleetLink("fleet:x", "api", overrides=bad))
    assert "ci-sweeper" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("caps", [{"repo_daily_cap": -1}, {"portfolio_cap": 0}, {"portfolio_usd": -2.0},
                                  {"repo_daily_cap": True}, {"portfolio_cap": 10**16}])
def test_a_tampered_cap_in_the_link_is_refused_on_the_worker(tmp_path: Path, caps: dict) -> None:
    from loop_runtime.temporal.types import FleetLink

    make_repo(tmp_path / "api", {"README.md": "x\n", "loop-runtime.toml": OWN})
    with pytest.raises(ConfigError) as e:
        linked_project(load_project(tmp_path / "api"), "ci-sweeper", FleetLink("fleet:x", "api", **caps))
    assert str(e.value).startswith("schedule input: ") and "\n" not in str(e.value)
