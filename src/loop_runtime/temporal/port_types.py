"""Values that cross Temporal on the per-port path (``port_workflow``): one dataclass input per activity.

Pure data, no I/O and no ``temporalio`` import (the workflow sandbox passes it through). Everything
the tick itself sends or gets back (PortCall arguments and results, the plan, the tick's policy and
options) travels as a tree of ``codec`` (strict JSON: loop_runtime frozen dataclasses and plain
values only), never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .types import TickInput


@dataclass(frozen=True)
class OpenTickInput:
    """Open (or, after a lost worker, re-open) a tick on whichever worker takes it."""

    tick: TickInput
    tick_id: str
    run_id: str
    generation: int = 1  # 1, then 2, 3 … each time the tick is re-opened on another worker
    #: resumed tick: the core's replay map (``<role-key>`` → recorded agent result, ``workspace:<n>`` → its handle)
    replay: dict[str, Any] = field(default_factory=dict)
    #: attempt → {"run_id", "patch"}: the worktrees a replayed implementer left, rebuilt before the tick runs
    patches: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenTickOutput:
    worker_queue: str  # the worker's own queue: every port call of this tick goes there (its clone, its worktrees)
    worker: str
    level: str  # the level the tick runs at (the tick input's, else the plan's)
    #: codec tree of {"plan", "policy", "options", "wired"}: what the workflow builds the core ``Tick`` from
    setup: dict[str, Any] = field(default_factory=dict)
    unrebuilt: list[str] = field(default_factory=list)  # attempts whose worktree patch did not apply


@dataclass(frozen=True)
class PortCallInput:
    """One ``PortCall`` of the tick, on the worker holding the tick's session."""

    tick_id: str
    key: str  # the PortCall's deterministic key: a retried activity with it returns the recorded result
    port: str
    method: str
    payload: dict[str, Any] = field(default_factory=dict)  # codec tree of {"args", "kwargs"}
    optional: bool = False  # the PortCall has a default: a missing adapter method answers "absent"


@dataclass(frozen=True)
class PortCallOutput:
    """What the port gave: a codec tree of the result, or of the error it raised (handed back to the tick)."""

    result: Any = None
    error: dict[str, Any] | None = None
    absent: bool = False  # optional method the adapter lacks: the tick gets the PortCall's default


@dataclass(frozen=True)
class CloseTickInput:
    tick: TickInput
    tick_id: str
    result: dict[str, Any] = field(default_factory=dict)  # TickResult.as_json()
    generation: int = 1
    replayed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DropTickInput:
    """Release the tick's session on a worker if it is from ``generation`` or earlier (never a newer one that
    the same worker may have opened since)."""

    tick_id: str
    generation: int


@dataclass(frozen=True)
class PortBatchInput:
    """Go on with the worker's own run of the tick (``port_batch``): perform its next port calls, starting with
    the one the workflow's tick is waiting for (``head``) and up to, not including, the next call that heads
    an activity of its own (an agent run, discovery, the tests, the gate, the worktree, publishing)."""

    tick_id: str
    key: str  # deterministic per batch (the head call's key): a retried activity returns the recorded batch
    head: str  # ``port.method`` of the first call (what the batch is for; read in the history)
    stop: str | None = None  # the kill switch signal the workflow got: the worker's stop check answers it


@dataclass(frozen=True)
class BatchStep:
    """One port call the worker performed, in order: its key and name (the workflow checks both against its
    own tick's call) and what the port gave (as ``PortCallOutput``)."""

    key: str
    name: str
    result: Any = None
    error: dict[str, Any] | None = None
    absent: bool = False


@dataclass(frozen=True)
class PortBatchOutput:
    steps: list[BatchStep] = field(default_factory=list)
    ended: bool = False  # the worker's tick has returned (or raised): no call follows the last step


@dataclass(frozen=True)
class PortStopInput:
    """The kill switch signal, told to the worker running a batch of the tick: its stop check says ``reason``
    (the agent stops within a heartbeat and the batch answers with the halted run, as the embedded tick does)."""

    tick_id: str
    reason: str


def dropped_keys(unrebuilt: list[str]) -> set[str]:
    """The replay keys of attempts whose worktree could not be rebuilt: their agents run again (both the
    workflow's tick and the worker's run of it leave them out of the replay map)."""
    return {k for n in unrebuilt for k in (f"implementer:{n}", f"verifier:{n}", f"workspace:{n}")}
