"""Running an agent CLI inside the OS sandbox (``ports.Sandbox``): its scope and its denials.

Why shared: every CLI backend that runs inside the sandbox (``claude``, ``gemini``,
``opencode``, ``grok``) is confined the same way — its working directory (writable at
EDIT_WORKTREE), the metering proxy as its only network destination, its private config
folder writable — and reports what the sandbox refused the same way: on the result
(``sandbox_denials``), in the transcript (``loop_runtime.sandbox_denied`` lines) and as an
``agent.warning`` event. One implementation keeps the backends from drifting apart.

The proxy is on loopback, and inside srt the network namespace has no loopback to the host:
the CLI reaches the proxy through srt's own HTTP proxy (``HTTP_PROXY``/``HTTPS_PROXY``, set by
srt), which lets through only allowlisted hosts — so ``127.0.0.1:<port>`` is allowlisted and
taken out of ``NO_PROXY`` (``proxy_hosts``). A CLI that ignores the proxy variables cannot
reach its model from inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...ports import AgentRequest, Permission, Sandbox, SandboxedProcess, SandboxScope
from .process import emit


def agent_scope(request: AgentRequest, endpoint: str, default_host: str, *, extra_hosts: Sequence[str] = (),
                writable: Sequence[str] = ()) -> SandboxScope:
    """What an agent CLI may touch: ``request.cwd`` (writable at EDIT_WORKTREE), the model ``endpoint``
    (the metering proxy's URL: reached through srt's proxy, ``NO_PROXY`` notwithstanding, when on loopback),
    ``extra_hosts`` (e.g. a cloud provider it was switched to) and ``writable`` folders (its private config)."""
    from ..sandbox import endpoint_host

    hosts, loopback = endpoint_host(endpoint, default_host)
    names = tuple(h.rsplit(":", 1)[0].strip("[]") for h in hosts)
    return SandboxScope(cwd=request.cwd, writable=request.permission is Permission.EDIT_WORKTREE,
                        purpose="agent", hosts=(*hosts, *extra_hosts), level=request.level,
                        proxy_hosts=tuple(dict.fromkeys((*names, "localhost"))) if loopback else (),
                        extra_writable=tuple(writable))


class BoxedCommand:
    """One run's sandboxed process: ``wrap`` the command, then ``collect`` the denials before the
    transcript closes (``run_metered``'s ``before_close``); ``denials`` is what goes on the result."""

    def __init__(self, sandbox: Sandbox | None, on_event: Any) -> None:
        self.sandbox = sandbox
        self.on_event = on_event
        self.boxed: SandboxedProcess | None = None
        self.denials: tuple[str, ...] = ()

    def wrap(self, scope: SandboxScope, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """``argv`` and ``env`` as the sandbox runs them (unchanged without a sandbox)."""
        if self.sandbox is None:
            return argv, dict(env)
        self.boxed = self.sandbox.prepare(scope)
        return self.boxed.wrap(argv, dict(env))

    def collect(self, transcript: Any) -> None:
        """Read what the sandbox refused, close it, and report each refusal."""
        boxed = self.boxed
        if boxed is None:
            return
        self.boxed = None
        try:
            self.denials = boxed.denials()
        finally:
            boxed.close()
        for line in self.denials:
            transcript.write_json({"type": "loop_runtime.sandbox_denied", "detail": line})
            emit(self.on_event, "agent.warning", {"message": f"sandbox denied: {line}"})


__all__ = ["BoxedCommand", "agent_scope"]
