"""Ports: the small seams through which the core reaches the world.

Each port is a ``typing.Protocol`` with one to three methods, and every value that
crosses it is a frozen dataclass, so the core can be driven by real adapters
(``loop_runtime.adapters``) or by the public fakes (``MockBackend``,
``MemoryStateWriter``, ``ManualClock``) with no change. Nothing here does I/O.

The ports live in one module per concern (``agents``, ``workspace``, ``files``, ``notify``,
``budget``, ``hooks``, ``store``); every name is importable from ``loop_runtime.ports`` too. Those names are
loaded on first use (PEP 562): ``status`` needs two budget values, not forty dataclasses, and a
dataclass costs about half a millisecond to build at import.
"""

from __future__ import annotations

import importlib

_HOME: dict[str, str] = {
    "AgentBackend": "agents",
    "AgentRequest": "agents",
    "AgentResult": "agents",
    "AgentStatus": "agents",
    "BudgetLedger": "budget",
    "BudgetStatus": "records",
    "ChangeKind": "workspace",
    "ChangePublisher": "files",
    "Clock": "files",
    "Diff": "workspace",
    "EventSink": "agents",
    "EventStream": "hooks",
    "FileChange": "workspace",
    "IssueLease": "hooks",
    "Notification": "notify",
    "Notifier": "notify",
    "Observer": "hooks",
    "OutsideGuard": "workspace",
    "Permission": "agents",
    "PromotionCheck": "hooks",
    "READ_ONLY_WRITE": "agents",
    "RemotePause": "hooks",
    "Reservation": "records",
    "Role": "agents",
    "Sandbox": "agents",
    "SandboxScope": "agents",
    "SandboxedProcess": "agents",
    "StateWriter": "files",
    "StopCheck": "agents",
    "StopSignal": "hooks",
    "TestRun": "workspace",
    "TestRunner": "workspace",
    "TickJournal": "workspace",
    "Usage": "agents",
    "Workspace": "workspace",
    "WorkspaceHandle": "workspace",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:  # for type checkers and readers: where each name lives
    from typing import Any
    from .agents import (
        AgentBackend,
        AgentRequest,
        AgentResult,
        AgentStatus,
        EventSink,
        Permission,
        READ_ONLY_WRITE,
        Role,
        Sandbox,
        SandboxScope,
        SandboxedProcess,
        StopCheck,
        Usage,
    )
    from .workspace import (
        ChangeKind,
        Diff,
        FileChange,
        OutsideGuard,
        TestRun,
        TestRunner,
        TickJournal,
        Workspace,
        WorkspaceHandle,
    )
    from .files import (
        ChangePublisher,
        Clock,
        StateWriter,
    )
    from .notify import (
        Notification,
        Notifier,
    )
    from .budget import (
        BudgetLedger,
        BudgetStatus,
        Reservation,
    )
    from .hooks import (
        EventStream,
        IssueLease,
        Observer,
        PromotionCheck,
        RemotePause,
        StopSignal,
    )
