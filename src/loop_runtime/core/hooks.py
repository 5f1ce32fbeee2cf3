"""Plain callables as the tick's named hook ports (``ports.Observer``, ``StopSignal`` …).

Why wrappers: ``TickDeps`` took these as bare callables (``observe=lambda: …``, ``stop=…``),
and ~100 call sites still pass them so. A tick now reaches every effect through a
``core.effects.PortCall`` naming a port and a method, so each callable is wrapped into an
object with that method. A wrapper stays callable with the old signature, so code that
read ``deps.stop()`` or ``deps.observe()`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ports import Diff

__all__ = ["CallableEvents", "CallableLease", "CallableObserver", "CallablePromotion", "CallableRemotePause",
           "CallableStop", "as_hook"]


class _Wrapped:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fn!r})"


class CallableObserver(_Wrapped):
    def observe(self) -> str:
        return str(self.fn())


class CallableStop(_Wrapped):
    def check(self) -> str | None:
        return self.fn() or None


class CallableRemotePause(_Wrapped):
    def labels(self) -> Sequence[tuple[str, str]]:
        return tuple(self.fn())


class CallablePromotion(_Wrapped):
    def ready(self, diff: Diff) -> bool:
        return bool(self.fn(diff))


class CallableEvents(_Wrapped):
    def emit(self, kind: str, payload: Mapping[str, Any]) -> None:
        self.fn(kind, payload)


class CallableLease:
    """``lease(item_id) -> release | None`` as ``take``/``release``: the release function is kept by item."""

    __slots__ = ("fn", "_held")

    def __init__(self, fn: Callable[[str], Callable[[], None] | None]) -> None:
        self.fn = fn
        self._held: dict[str, Callable[[], None]] = {}

    def __call__(self, item_id: str) -> Callable[[], None] | None:
        return self.fn(item_id)

    def take(self, item_id: str) -> bool:
        release = self.fn(item_id)
        if release is None:
            return False
        self._held[item_id] = release
        return True

    def release(self, item_id: str) -> None:
        release = self._held.pop(item_id, None)
        if release is not None:
            release()


#: hook field → (the port's method, the wrapper for a bare callable)
_WRAPPERS: dict[str, tuple[str, type]] = {
    "observer": ("observe", CallableObserver),
    "stop": ("check", CallableStop),
    "remote_pause": ("labels", CallableRemotePause),
    "lease": ("take", CallableLease),
    "promotion": ("ready", CallablePromotion),
    "events": ("emit", CallableEvents),
}


def as_hook(field: str, value: Any) -> Any:
    """``value`` as the hook port ``field`` names: None stays None, an object with the port's method is
    used as it is, and a bare callable is wrapped."""
    if value is None:
        return None
    method, wrapper = _WRAPPERS[field]
    if callable(getattr(value, method, None)):
        return value
    if not callable(value):
        raise TypeError(f"TickDeps {field}: expected a callable or an object with .{method}(), got {value!r}")
    return wrapper(value)
