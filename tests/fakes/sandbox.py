"""A test double for ``ports.Sandbox`` that reports itself active but confines nothing.

For unit tests of what a backend does *when* it believes it is sandboxed (which tools it
offers, how it runs a command); the real confinement is tested with real srt in
tests/test_sandbox_srt.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from loop_runtime.ports import SandboxScope


class PassthroughSandbox:
    name = "passthrough"
    active = True
    reason = "test double"

    def __init__(self, denials: tuple[str, ...] = ()) -> None:
        self.scopes: list[SandboxScope] = []
        self._denials = denials

    def prepare(self, scope: SandboxScope) -> _Prepared:
        self.scopes.append(scope)
        return _Prepared(self._denials)


class _Prepared:
    def __init__(self, denials: tuple[str, ...]) -> None:
        self._denials = denials
        self.closed = False

    def wrap(self, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        return list(argv), dict(env)

    def denials(self) -> tuple[str, ...]:
        return self._denials

    def close(self) -> None:
        self.closed = True
