"""Where the project's Temporal is: flags > ``[temporal]`` in loop-runtime.toml > defaults; and connecting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LoopError
from .types import DEFAULT_ADDRESS, DEFAULT_ESCALATION_EXPIRY_S, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE


@dataclass(frozen=True)
class TemporalSettings:
    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    escalation_expiry_s: float = DEFAULT_ESCALATION_EXPIRY_S
    configured: bool = False  # the project names a [temporal] table: approve/reject/kill go through Temporal


def settings(project: Any = None, *, address: str | None = None, namespace: str | None = None,
             task_queue: str | None = None, env: Any = None) -> TemporalSettings:
    """Flags > the environment (``TEMPORAL_ADDRESS``/``TEMPORAL_NAMESPACE``, as the ``temporal`` CLI and
    ``doctor`` read them) > ``[temporal]`` in loop-runtime.toml > defaults."""
    import os

    env = os.environ if env is None else env
    raw = dict(getattr(getattr(project, "config", None), "temporal", None) or {})
    return TemporalSettings(
        address=address or env.get("TEMPORAL_ADDRESS") or raw.get("address") or DEFAULT_ADDRESS,
        namespace=namespace or env.get("TEMPORAL_NAMESPACE") or raw.get("namespace") or DEFAULT_NAMESPACE,
        task_queue=task_queue or raw.get("task_queue") or DEFAULT_TASK_QUEUE,
        escalation_expiry_s=float(raw.get("escalation_expiry_s") or DEFAULT_ESCALATION_EXPIRY_S),
        configured=bool(raw),
    )


class TemporalUnavailable(LoopError):
    """The Temporal server cannot be reached (one line naming the address)."""


async def connect(s: TemporalSettings) -> Any:
    from ..optional import require

    require("temporalio", extra="temporal", feature="running loops on Temporal")
    from temporalio.client import Client

    from .encryption import data_converter

    converter = data_converter()  # a malformed key fails here, before any connection (one line)
    try:
        return await Client.connect(s.address, namespace=s.namespace, data_converter=converter)
    except Exception as e:  # RuntimeError from the core bridge: refused, DNS, TLS
        raise TemporalUnavailable(f"cannot reach Temporal at {s.address} (namespace {s.namespace}): "
                                  f"{' '.join(str(e).split())[:200]} — start one with "
                                  "`temporal server start-dev --headless`") from None
