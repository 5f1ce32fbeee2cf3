"""Sans-IO for the tick: every side effect is a ``PortCall`` the tick *yields*, and a driver performs.

Why: the same tick must run embedded (``LoopEngine``: the driver calls the adapters at once),
under a recorder (a test asserts that every effect was seen), from a recorded list of results
(a replay, which is what a Temporal workflow does after a worker dies), and as Temporal
activities (each ``PortCall`` one activity, its ``key`` the idempotency key). So the tick never
touches an adapter: it writes ``text = await t.ports.state.read(name)``, which builds a
``PortCall`` and hands it up through ``await``, out of the coroutine, to ``drive``:

    coroutine ──PortCall──▶ drive ──▶ execute(call) ──▶ adapter method
        ▲                                  │
        └──── send(result) / throw(exc) ◀──┘

``PortCall.__await__`` is a one-step generator (``return (yield self)``), so no event loop
is involved in the tick itself (core imports no ``asyncio``); the driver may be async
(``DirectExecutor`` awaits an adapter that returns an awaitable, such as ``AgentBackend.run``).

A PortCall's ``args`` are plain values (frozen dataclasses, strings, numbers) with one
exception: ``state.update(path, fn)`` carries ``fn``, a pure function of the file's current
text (``None`` if absent) to its new text. A driver that cannot ship a function (Temporal)
runs it itself: read the text, apply ``fn``, write back if the text is unchanged, else retry.
"""

from __future__ import annotations

import inspect
from types import GeneratorType
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import TickDeps

__all__ = ["ABSENT", "REQUIRED", "DirectExecutor", "Outcome", "PortCall", "PortMissing", "Recorder",
           "Replayer", "drive"]


class _Marker:
    """A named sentinel (prints as its name, compares by identity)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED: Any = _Marker("REQUIRED")
"""A PortCall's ``default`` when the method must exist: a missing port or method raises ``PortMissing``."""

ABSENT: Any = _Marker("ABSENT")
_NONE: Any = _Marker("NONE")  # DirectExecutor's cache: the adapter has no such method
"""What an optional call returns when the adapter does not offer the method (``default=ABSENT``)."""


@dataclass(frozen=True)
class PortCall:
    """One side effect of a tick: ``<port>.<method>(*args, **kwargs)``, awaited by the tick.

    ``key`` is deterministic for the tick (``<tick_id>:<seq>:<port>.<method>``, or
    ``<tick_id>:agent:<role-key>:<port>.<method>`` for the calls around one agent run, which a
    resumed tick must recognise whatever ran before it): a driver that may execute a call twice
    (a retried activity) uses it to make the second execution a no-op. ``default`` is what an
    *optional* method (an adapter capability such as ``workspace.merge``) yields when the adapter
    has no such method or the port is not wired; ``REQUIRED`` makes that an error.
    """

    port: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""
    default: Any = REQUIRED

    @property
    def name(self) -> str:
        return f"{self.port}.{self.method}"

    def __await__(self) -> Generator[PortCall, Any, Any]:
        return (yield self)


class PortMissing(LookupError):
    """A required PortCall named a port that is not wired or a method the adapter lacks (an engine bug)."""

    def __init__(self, call: PortCall) -> None:
        super().__init__(f"no adapter for required port call {call.name}")
        self.call = call


def _awaitable(value: Any) -> bool:
    """``inspect.isawaitable``, fast for the plain values most PortCalls return."""
    if hasattr(type(value), "__await__"):
        return True
    return type(value) is GeneratorType and inspect.isawaitable(value)  # a generator-based coroutine


Execute = Callable[[PortCall], Any]
"""Performs one PortCall: returns its result (or an awaitable of it) or raises."""


async def drive(coro: Coroutine[Any, Any, Any], execute: Execute) -> Any:
    """Run ``coro`` to its end, performing every PortCall it yields with ``execute``.

    A result is ``send``-ed back into the coroutine and an exception (including a
    cancellation of the driver while an agent runs) is ``throw``-n back in at the ``await``
    that asked for it, so the tick's own ``try``/``except`` around an effect works as if the
    call had been made in place. Awaiting anything but a PortCall inside the tick is a bug.
    """
    value: Any = None
    failed = False
    while True:
        try:
            call = coro.throw(value) if failed else coro.send(value)
        except StopIteration as stop:
            return stop.value
        if type(call) is not PortCall and not isinstance(call, PortCall):
            coro.close()
            raise TypeError(f"a tick awaited {call!r}; every side effect of a tick must be a PortCall")
        try:
            value = execute(call)
            if _awaitable(value):
                value = await value
            failed = False
        except BaseException as exc:  # noqa: BLE001 — handed back to the tick, which decides
            value, failed = exc, True


class DirectExecutor:
    """Performs PortCalls on the adapters of a ``TickDeps`` at once: the embedded runtime's driver.

    Two calls need more than ``getattr(adapter, method)(*args)``: ``backend.run`` gets the tick's
    stop signal and event sink (the backend polls and streams while the agent runs), and
    ``state.update`` / ``budget.settle`` go through ``core.files.update_file`` /
    ``core.budget.settle_call``, which bridge writers without ``update`` and ledgers without
    dollar costs.
    """

    def __init__(self, deps: TickDeps) -> None:
        self.deps = deps
        self._specials: dict[tuple[str, str], Callable[..., Any]] = {
            ("backend", "run"): self._run_agent,
            ("state", "update"): self._update,
            ("budget", "settle"): self._settle,
        }
        self._methods: dict[tuple[str, str], Any] = {}

    def __call__(self, call: PortCall) -> Any:
        method = self._methods.get((call.port, call.method))
        if method is None:
            method = self._resolve(call.port, call.method)
        if method is _NONE:
            if call.default is REQUIRED:
                raise PortMissing(call)
            return call.default
        return method(*call.args, **call.kwargs)

    def _resolve(self, port: str, name: str) -> Any:
        """The callable for ``port.name`` (a special, the adapter's method, or ``_NONE``), cached.

        A plain attribute (``backend.name``, ``publisher.comment_escalations``: what the adapter is or
        offers) is read as a call without arguments, so the tick learns it as it learns everything.
        """
        method = self._specials.get((port, name))
        if method is None:
            adapter = self.deps.port(port)
            method = getattr(adapter, name, None) if adapter is not None else None
            if method is not None and not callable(method):
                value = method

                def method() -> Any:
                    return value
        self._methods[(port, name)] = method if method is not None else _NONE
        return self._methods[(port, name)]

    def _run_agent(self, *args: Any, **kwargs: Any) -> Any:
        hooks = self.deps.hooks
        stop = hooks.stop

        def check() -> str | None:
            return (stop.check() or None) if stop is not None else None

        sink = hooks.events.emit if hooks.events is not None else None
        return self.deps.ports.backend.run(*args, stop=check, on_event=sink, **kwargs)

    def _update(self, *args: Any, **kwargs: Any) -> Any:
        from .files import update_file

        return update_file(self.deps.ports.state, *args, **kwargs)

    def _settle(self, *args: Any, **kwargs: Any) -> Any:
        from .budget import settle_call

        return settle_call(self.deps.ports.budget, *args, **kwargs)


@dataclass(frozen=True)
class Outcome:
    """What one PortCall gave: its result, or the exception it raised."""

    call: PortCall
    result: Any = None
    error: BaseException | None = None


class Recorder:
    """Wraps an executor and keeps every PortCall with its outcome, in order (tests; a journal of effects)."""

    def __init__(self, execute: Execute) -> None:
        self.execute = execute
        self.outcomes: list[Outcome] = []

    async def __call__(self, call: PortCall) -> Any:
        try:
            result = self.execute(call)
            if _awaitable(result):
                result = await result
        except BaseException as exc:
            self.outcomes.append(Outcome(call, error=exc))
            raise
        self.outcomes.append(Outcome(call, result))
        return result

    @property
    def calls(self) -> list[PortCall]:
        return [o.call for o in self.outcomes]


class ReplayDiverged(RuntimeError):
    """A replayed tick asked for a different effect than the recording holds (non-determinism)."""


class Replayer:
    """Answers PortCalls from a recorded list, checking each asks for the recorded effect (port, method, key).

    This is what a durable driver does after a restart: the tick runs again from the start and
    every effect that already happened is answered from history instead of being performed again.
    """

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = list(outcomes)
        self.position = 0

    def __call__(self, call: PortCall) -> Any:
        if self.position >= len(self.outcomes):
            raise ReplayDiverged(f"replay ran past the recording at {call.name} ({call.key})")
        got = self.outcomes[self.position]
        if (got.call.port, got.call.method, got.call.key) != (call.port, call.method, call.key):
            raise ReplayDiverged(f"replay diverged at #{self.position}: recorded {got.call.key}, asked {call.key}")
        self.position += 1
        if got.error is not None:
            raise got.error
        return got.result
