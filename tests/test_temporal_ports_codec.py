"""The strict JSON codec of the per-port path (``temporal.codec``): what a workflow history may hold.

Round trips for every shape a tick sends (property-tested), and refusals: a payload can never make a
worker (or a workflow) build an object of a class outside loop_runtime's value modules, call a function,
or build a mutable object — there is no pickle anywhere.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.errors import BackendError, ConfigError, LoopError
from loop_runtime.ports import (
    AgentRequest,
    AgentResult,
    Diff,
    FileChange,
    Permission,
    Reservation,
    Usage,
    WorkspaceHandle,
)
from loop_runtime.temporal.codec import CodecError, Opaque, PortCallError, decode, decode_error, encode, encode_error


def through_json(value: Any, **kw: Any) -> Any:
    return decode(json.loads(json.dumps(encode(value, **kw))))


text = st.text(max_size=40)
scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | text | st.floats(allow_nan=False)
stamps = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                      timezones=st.sampled_from([None, UTC]))
usage = st.builds(Usage, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**6),
                  st.integers(0, 10**6), st.none() | st.floats(0, 1000, allow_nan=False))
results = st.builds(AgentResult, text=text, status=st.sampled_from(["ok", "halted", "error"]), usage=usage,
                    turns=st.integers(0, 100), duration_s=st.floats(0, 1e6, allow_nan=False),
                    sandbox_denials=st.lists(text, max_size=3).map(tuple))
changes = st.builds(FileChange, path=text, kind=st.sampled_from(["added", "modified", "deleted"]),
                    added_lines=st.lists(text, max_size=3).map(tuple), is_binary=st.booleans())
values = st.recursive(
    scalars | stamps | st.dates().map(lambda d: d) | st.builds(Path, st.from_regex(r"[a-z/]{1,20}", fullmatch=True))
    | st.binary(max_size=30) | usage | results | st.sampled_from(list(Permission))
    | st.builds(Reservation, id=text, amount=st.integers(0, 10**6))
    | st.builds(Diff, base_commit=text, changes=st.lists(changes, max_size=3).map(tuple), patch=text),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(text | st.integers(), inner, max_size=4)
    | st.frozensets(st.integers() | text, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_value_a_tick_sends_round_trips_through_json(value: Any) -> None:
    assert through_json(value) == value
    assert type(through_json(value)) is type(value)


@settings(max_examples=100, deadline=None)
@given(st.builds(AgentRequest, role=st.sampled_from(["triage", "implementer", "verifier"]), prompt=text,
                 system_prompt=text, cwd=text, permission=st.sampled_from(list(Permission)),
                 token_limit=st.integers(0, 10**6), env=st.dictionaries(text, text, max_size=3)))
def test_an_agent_request_round_trips(request: AgentRequest) -> None:
    assert through_json(request) == request


def test_the_plan_and_a_workspace_handle_round_trip(tmp_path: Path) -> None:
    from loop_runtime.app.runtime import load_project

    (tmp_path / "loop-runtime.toml").write_text('[patterns.ci-sweeper]\nlevel = "L2"\n')
    plan = load_project(tmp_path).plan("ci-sweeper")
    assert through_json(plan) == plan
    handle = WorkspaceHandle(run_id="r", path="/w", branch="loop/r", base_branch="main", base_commit="abc")
    assert through_json(handle) == handle
    assert through_json({"at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=5)})["at"].microsecond == 5


# ---------------------------------------------------------------------------- refusals

@dataclass(frozen=True)
class Foreign:  # a frozen dataclass, but of the tests package
    x: int = 1


@dataclass
class Mutable:
    x: int = 1


Mutable.__module__ = "loop_runtime.core.fake"


class Colour(enum.Enum):
    RED = 1


@pytest.mark.parametrize("value", [lambda: 1, Foreign(), Mutable(), Colour.RED, {1, 2}, object(), bytearray(b"x"),
                                   timedelta(seconds=1), 1 + 2j, type, len])
def test_a_value_of_an_unknown_kind_is_refused_on_encode(value: Any) -> None:
    with pytest.raises(CodecError):
        encode(value)


HOSTILE_NAMES = ["os:system", "builtins:eval", "subprocess:Popen", "pickle:loads", "tests.test_temporal_ports_codec:Foreign",
                 "loop_runtime.adapters.guard.files:OutsideSnapshot", "loop_runtime.app.runner:LoopRunner",
                 "loop_runtime.temporal.activities:WorkerContext", "loop_runtime.core.effects:DirectExecutor",
                 "loop_runtime.core.effects:drive", "loop_runtime.core:effects", "loop_runtime.core.files:update_file",
                 "loop_runtime.core.engine:TickDeps", "loop_runtime.core._private:X", "loop_runtime.ports:Usage.__init__",
                 "loop_runtime.ports:<locals>.X", "loop_runtime.ports", "", 3, None]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_payload_naming_anything_but_a_loop_runtime_value_class_is_refused(name: Any) -> None:
    for tree in ({"$dc": name, "fields": {}}, {"$enum": name, "value": 1}, {"$error": name, "message": "m"}):
        with pytest.raises(CodecError):
            decode(tree)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z_.]{1,30}:[A-Za-z_.]{1,20}", fullmatch=True))
def test_no_generated_class_name_outside_the_value_modules_is_ever_resolved(name: str) -> None:
    module = name.split(":")[0]
    try:
        value = decode({"$dc": name, "fields": {}})
    except CodecError:
        return
    assert module.startswith(("loop_runtime.core.", "loop_runtime.ports", "loop_runtime.formats."))
    assert type(value).__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize("tree", [
    {"$dc": "loop_runtime.ports:Usage", "fields": {"input": 1}, "extra": 1},  # unknown key beside the tag
    {"$dc": "loop_runtime.ports:Usage", "fields": {"__class__": 1}},  # not a field
    {"$dc": "loop_runtime.ports:Usage", "fields": [1]},
    {"$dc": "loop_runtime.core.effects:PortCall", "fields": {"port": "x", "method": "y"}},  # frozen, not a value?
    {"$tuple": [1], "$map": []},
    {"$map": [[1]]}, {"$map": [[[1], 2]]}, {"$tuple": "ab"}, {"$dt": 5}, {"$dt": "yesterday"}, {"$bytes": "%%"},
    {"plain": "object"}, {"$enum": "loop_runtime.ports:Permission", "value": "root"},
    {"$enum": "loop_runtime.ports:Usage", "value": 1},  # not an enum
    {"$error": "loop_runtime.ports:Usage", "message": "m"},  # not an exception
    {"$opaque": 3},
])
def test_malformed_payloads_are_refused(tree: Any) -> None:
    if tree.get("$dc") == "loop_runtime.core.effects:PortCall":
        decode(tree)  # a PortCall is a frozen dataclass of core: a value like any other
        return
    with pytest.raises(CodecError):
        decode(tree)


def test_a_deeply_nested_payload_is_refused_not_a_crash() -> None:
    tree: Any = 1
    for _ in range(5000):
        tree = {"$tuple": [tree]}
    with pytest.raises(CodecError):
        decode(tree)


def test_errors_cross_as_their_value_class_or_as_a_port_call_error() -> None:
    assert isinstance(decode_error(encode_error(BackendError("agent died"))), BackendError)
    again = decode_error(json.loads(json.dumps(encode_error(ConfigError("f.toml", "x", 1, message="bad")))))
    assert isinstance(again, LoopError)  # its constructor wants more than a message: kept as a LoopError
    foreign = decode_error(encode_error(OSError("disk full")))
    assert isinstance(foreign, PortCallError) and "OSError: disk full" in str(foreign)


def test_a_worker_side_object_travels_as_a_reference_and_comes_back_as_itself() -> None:
    from loop_runtime.adapters.guard.files import OutsideSnapshot

    kept: dict[str, Any] = {}

    def keep(obj: Any) -> str:
        kept[str(len(kept))] = obj
        return str(len(kept) - 1)

    snap = object.__new__(OutsideSnapshot)
    tree = json.loads(json.dumps(encode((snap, 1), keep=keep)))
    assert decode(tree) == (Opaque("0"), 1)  # the workflow sees a reference only
    assert decode(tree, kept.get)[0] is snap  # the worker gets its object back
    with pytest.raises(CodecError):
        decode({"$opaque": "9"}, kept.get)
    with pytest.raises(CodecError):
        encode(snap)  # without a session to keep it, a worker-side object is refused


WORKFLOW_MODULES = ["loop_runtime.temporal.workflows", "loop_runtime.temporal.port_workflow",
                    "loop_runtime.temporal.budget_workflow", "loop_runtime.temporal.codec",
                    "loop_runtime.temporal.types", "loop_runtime.temporal.port_types"]
IO_MODULES = ["subprocess", "asyncio", "sqlite3", "socket", "os", "shutil", "tempfile", "loop_runtime.adapters",
              "loop_runtime.app", "loop_runtime.temporal.activities", "loop_runtime.temporal.port_activities",
              "loop_runtime.temporal.tick_session", "loop_runtime.temporal.clones", "loop_runtime.temporal.worker",
              "loop_runtime.temporal.client", "loop_runtime.temporal.budget_client"]


def test_workflow_code_reaches_no_io_module_by_any_chain_of_imports() -> None:
    """The sandbox replays workflow code: it (and the core it drives) imports no I/O, even lazily."""
    import grimp

    graph = grimp.build_graph("loop_runtime", include_external_packages=True)
    found = []
    for src in WORKFLOW_MODULES:
        for bad in IO_MODULES:
            if bad in graph.modules and graph.chain_exists(importer=src, imported=bad, as_packages=True):
                found.append(graph.find_shortest_chain(importer=src, imported=bad))
    assert not found, found
