"""The store's ports cannot drift from the SQLite adapter.

``ports.store`` declares one protocol per concern; ``adapters.store`` implements each in its own
mixin and ``RunStore`` composes them. These tests pin that: ``RunStore`` is an instance of every
protocol, every protocol method has the same parameters (names, kinds, defaults) on ``RunStore``,
and each concern's mixin offers exactly its protocol's methods — no more, no fewer.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from loop_runtime.adapters.store.escalations import Escalations
from loop_runtime.adapters.store.events import Events
from loop_runtime.adapters.store.leases import Leases
from loop_runtime.adapters.store.ledger import Ledger
from loop_runtime.adapters.store.retention import Retention
from loop_runtime.adapters.store.schedule import Schedule
from loop_runtime.adapters.store.sqlite import RunStore
from loop_runtime.adapters.store.ticks import Ticks
from loop_runtime.ports import store as ports

PROTOCOLS = (ports.LeaseStore, ports.TickStore, ports.EventStore, ports.LedgerStore, ports.EscalationStore,
             ports.ScheduleStore, ports.Store)
CONCERNS = ((Leases, ports.LeaseStore), (Ticks, ports.TickStore), (Events, ports.EventStore),
            (Ledger, ports.LedgerStore), (Escalations, ports.EscalationStore), (Schedule, ports.ScheduleStore))


def members(proto: type) -> dict[str, object]:
    """Public methods and properties a protocol declares, its parent protocols' included."""
    out: dict[str, object] = {}
    for cls in reversed(proto.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False) or cls.__module__ == "typing":
            continue
        out.update({k: v for k, v in vars(cls).items()
                    if not k.startswith("_") and (callable(v) or isinstance(v, property))})
    return out


def shape(fn: object) -> list[tuple[str, object, object]]:
    """What a caller relies on: each parameter's name, kind and default (annotations are strings here)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def drift(proto: type, impl: type) -> list[str]:
    """Every way ``impl`` does not offer ``proto``'s members with the same parameters."""
    problems: list[str] = []
    for name, declared in members(proto).items():
        actual = inspect.getattr_static(impl, name, None)
        if actual is None:
            problems.append(f"{proto.__name__}.{name}: missing")
        elif isinstance(declared, property) or isinstance(actual, property):
            if not (isinstance(declared, property) and isinstance(actual, property)):
                problems.append(f"{proto.__name__}.{name}: property on one side only")
        elif shape(declared) != shape(getattr(impl, name)):
            problems.append(f"{proto.__name__}.{name}: {shape(declared)} != {shape(getattr(impl, name))}")
    return problems


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore.open(tmp_path)
    yield s
    s.close()


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.__name__)
def test_run_store_is_an_instance_of_every_store_protocol(store: RunStore, proto: type) -> None:
    assert isinstance(store, proto)


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.__name__)
def test_run_store_methods_have_the_protocols_parameters(proto: type) -> None:
    """Same names, kinds (positional, keyword-only) and defaults: a caller typed against the port works."""
    assert members(proto), f"{proto.__name__} declares nothing?"
    assert drift(proto, RunStore) == []


@pytest.mark.parametrize(("mixin", "proto"), CONCERNS, ids=lambda x: x.__name__)
def test_each_concern_module_implements_exactly_its_protocol(mixin: type, proto: type) -> None:
    """One concern, one module: its public methods are its protocol's, with the protocol's parameters."""
    public = {k for k, v in vars(mixin).items() if not k.startswith("_") and callable(v)}
    assert public == set(members(proto))
    assert drift(proto, mixin) == []


def test_store_adds_only_secrets_close_and_prune_to_the_concerns() -> None:
    concerns = set().union(*(members(p) for _, p in CONCERNS))
    assert set(members(ports.Store)) - concerns == {"secrets", "close", "prune"}
    assert {k for k, v in vars(Retention).items() if not k.startswith("_") and callable(v)} == {"prune"}


def test_the_drift_check_catches_a_renamed_a_reordered_and_a_missing_parameter() -> None:
    """The check itself can fail: an implementation that drifted from the port is reported."""

    class Renamed:
        def acquire_lease(self, pattern: str, holder: str, ttl_s: float, now: object) -> bool: ...
        def renew_lease(self, pattern: str, owner: str, now: object, ttl_s: float) -> bool: ...
        def release_lease(self, pattern: str, *, owner: str) -> None: ...

    problems = drift(ports.LeaseStore, Renamed)
    assert [p.split(":")[0] for p in problems] == [
        "LeaseStore.acquire_lease", "LeaseStore.renew_lease", "LeaseStore.release_lease", "LeaseStore.lease_holder"]
    assert problems[-1].endswith("missing")

    class DefaultChanged:
        def recent_ticks(self, pattern: str | None = None, limit: int = 10) -> list[object]: ...

    assert any(p.startswith("TickStore.recent_ticks:") for p in drift(ports.TickStore, DefaultChanged))
