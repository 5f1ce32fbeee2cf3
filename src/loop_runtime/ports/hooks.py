"""The tick's hooks as named ports: discovery, the stop signal, the issue tracker's pause labels,
the issue lease, promotion readiness and progress events.

Part of ``loop_runtime.ports`` (every name is importable from there). ``TickDeps`` once took
these as bare callables; a tick now reaches each through a ``core.effects.PortCall``
(``observer.observe``, ``stop.check`` …) like any other adapter, and ``core.hooks`` wraps a plain
callable into each, so ``TickDeps(observe=lambda: …)`` still works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .workspace import Diff


@runtime_checkable
class Observer(Protocol):
    """Discovery: what the loop sees now (probe output, open issues …), redacted; raises
    ``errors.DiscoveryUnavailable`` when it could not look (the tick is then report-only)."""

    def observe(self) -> str: ...


@runtime_checkable
class StopSignal(Protocol):
    """Polled before every agent call and by a backend while it runs: a reason (``kill``) to stop, else None."""

    def check(self) -> str | None: ...


@runtime_checkable
class RemotePause(Protocol):
    """The issue tracker's kill input (R12): ``(label, source)`` of open issues/PRs with a pause label."""

    def labels(self) -> Sequence[tuple[str, str]]: ...


@runtime_checkable
class IssueLease(Protocol):
    """issue-pr-repair (R32): the lock label on an item's issue, taken for one tick and released after."""

    def take(self, item_id: str) -> bool:
        """Take the lock; True when taken (and ``release`` is then owed), False when there is none to take."""
        ...

    def release(self, item_id: str) -> None: ...


@runtime_checkable
class PromotionCheck(Protocol):
    """L3: is the accepted change merge-ready by ``promotion.yaml``?"""

    def ready(self, diff: Diff) -> bool: ...


@runtime_checkable
class EventStream(Protocol):
    """Progress events (``kind``, payload) for live views (the dashboard, the CLI's progress line)."""

    def emit(self, kind: str, payload: Mapping[str, Any]) -> None: ...
