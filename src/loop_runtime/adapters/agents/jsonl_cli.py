"""The shared body of a JSON-lines agent CLI backend behind the metering proxy.

Why a base: every CLI backend does the same dance — find the binary, build the child's
environment from the scrubbed request env plus its credentials, start the metering proxy
with the run's reservation, point the CLI at it, run it as its own process group reading
one JSON object per stdout line, stop it on the proxy's word (budget spent, upstream down,
key rejected), the kill switch or the deadline, and bill what the proxy metered with the
CLI's own report as the cross-check. Only the command line, the private config files and
the event vocabulary differ; a subclass supplies those (``prepare``, ``new_state``,
``outcome``). ``gemini``, ``opencode`` and ``grok`` use it.

``claude`` and ``codex`` keep the user's own login (their config folder, an OAuth token), so
they get no private HOME: their shared body is ``UserLoginCliBackend`` — the credential
check, the child environment, the sandbox box, the metered run and the bill — and a
subclass supplies its parser state, its command line (``launch``) and how the stream
becomes a result (``result``); ``budget_halt`` is the result of a run the meter stopped.

Each run gets a private folder (mode 0700, removed after the run) for the CLI's HOME and
config, so a user's own settings, logins and saved keys are never read or written and the
worktree gets nothing but the agent's edits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ...errors import AgentNotStarted, BackendError
from ...ports import AgentRequest, AgentResult, EventSink, Sandbox, StopCheck, Usage
from ..metering_proxy import MeteringProxy
from .boxed import BoxedCommand, agent_scope
from .metered import MeteredRun, close_log, finish, run_metered
from .process import ProcessOutcome, child_env, emit, fail_closed, last_line


@dataclass
class CliState:
    """What a run's event stream said, filled by a subclass's ``handle``."""

    request: AgentRequest
    on_event: EventSink | None
    texts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changed: dict[str, None] = field(default_factory=dict)
    turns: int = 0
    reported: Usage | None = None  # the CLI's own usage report, when it gives one
    finished: bool = False  # the CLI said it completed (a final result event)

    def handle(self, event: dict[str, Any]) -> str | None:  # pragma: no cover - overridden
        return None


@dataclass(frozen=True)
class Prepared:
    """The command line and extra environment for one run."""

    argv: list[str]
    env: Mapping[str, str]


class JsonLinesCliBackend:
    """Base class: subclasses set ``name``, ``binary_name``, ``install_hint``, ``key_vars``,
    ``base_url_var``, ``default_base_url`` and implement ``prepare`` and ``new_state``."""

    name = "cli"
    binary_name = "cli"
    install_hint = ""
    key_vars: tuple[str, ...] = ()
    base_url_var = ""
    default_base_url = ""
    drop_vars: tuple[str, ...] = ()  # variables never passed to the child (other metered-elsewhere APIs)
    sandboxed_env: ClassVar[Mapping[str, str]] = {}  # defaults inside the OS sandbox: no call it would refuse
    unreachable_in_sandbox = ""  # why the CLI cannot reach the metering proxy from inside srt ("" = it can)

    def __init__(self, *, binary: str | None = None, model: str | None = None,
                 env: Mapping[str, str] | None = None, base_url: str | None = None,
                 api_key_env: str | None = None, sandbox: Sandbox | None = None) -> None:
        found = shutil.which(binary or self.binary_name)
        if found is None:
            where = f" at {binary!r}" if binary else ""
            raise AgentNotStarted(f"{self.name} CLI not found{where}: {self.install_hint}")
        self.binary = found
        self.model = model
        source = os.environ if env is None else env
        names = (api_key_env,) if api_key_env else self.key_vars
        self.api_key = next((source[k] for k in names if source.get(k)), None)
        self.key_var = next((k for k in names if source.get(k)), names[0] if names else "")
        self.upstream = source.get(self.base_url_var) or base_url or self.default_base_url
        self.sandbox = sandbox

    @property
    def in_sandbox(self) -> bool:
        """The CLI runs inside an active OS sandbox (``ports.Sandbox``)."""
        return self.sandbox is not None and self.sandbox.active

    # ------------------------------------------------------------------ subclass hooks

    def check(self, request: AgentRequest) -> None:
        """Refuse a request this CLI cannot run safely (raise ``AgentNotStarted``)."""

    def prepare(self, request: AgentRequest, proxy: MeteringProxy, private: Path) -> Prepared:
        raise NotImplementedError

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> CliState:
        return CliState(request, on_event)

    def after(self, request: AgentRequest, private: Path) -> None:
        """Clean-up after the run (e.g. files a CLI leaves in the worktree)."""

    # ------------------------------------------------------------------ the run

    async def run(self, request: AgentRequest, *, stop: StopCheck | None = None,
                  on_event: EventSink | None = None) -> AgentResult:
        if self.in_sandbox and self.unreachable_in_sandbox:
            # Never run it outside the sandbox the user asked for: refuse, saying why.
            raise AgentNotStarted(self.unreachable_in_sandbox)
        self.check(request)
        if not self.api_key:
            raise AgentNotStarted(f"{self.name} CLI has no API key: set {' or '.join(self.key_vars)}")
        if not os.path.isdir(request.cwd):
            raise AgentNotStarted(f"agent working directory not found: {request.cwd}")
        state = self.new_state(request, on_event)
        private = Path(tempfile.mkdtemp(prefix=f"loop-{self.name}-"))  # 0700
        box = BoxedCommand(self.sandbox, on_event)

        def command(proxy: MeteringProxy) -> tuple[list[str], dict[str, str]]:
            prepared = self.prepare(request, proxy, private)
            base = {k: v for k, v in child_env(request.env, {}).items() if k not in self.drop_vars}
            (private / "home").mkdir(exist_ok=True)
            emit(on_event, "agent.start", {"backend": self.name, "role": request.role,
                                           "model": request.model or self.model, "session": None})
            # Inside the sandbox: the proxy is its only network destination; its private HOME stays writable.
            scope = agent_scope(request, proxy.base_url, "", writable=(str(private),))
            extra = self.sandboxed_env if self.in_sandbox else {}
            return box.wrap(scope, prepared.argv, {**extra, **base, "HOME": str(private / "home"), **prepared.env})

        try:
            run = await run_metered(request, self.upstream, secrets=[self.api_key], command=command,
                                    handle=state.handle, stop=stop, on_event=on_event, before_close=box.collect)
        finally:
            self.after(request, private)
            shutil.rmtree(private, ignore_errors=True)
        result = self.outcome(request, state, run.outcome, run.proxy,
                              last_line(run.outcome.stderr_tail, run.secrets))
        result = replace(result, sandbox_denials=box.denials)
        return finish(result, run, state.reported, on_event=on_event, backend=self.name)

    def outcome(self, request: AgentRequest, state: CliState, outcome: ProcessOutcome, proxy: MeteringProxy,
                stderr: str) -> AgentResult:
        """Status from how the process ended and what it said; usage is settled by ``bill`` after."""
        text = "\n".join(state.texts)
        changed = tuple(state.changed)
        limit = request.token_limit
        usage = state.reported or Usage()
        if outcome.halted is not None:
            return AgentResult(text=text, usage=fail_closed(usage, limit) if not proxy.ledger.calls else usage,
                               status="halted", turns=state.turns, stop_reason=outcome.halted,
                               files_changed=changed, error=f"stopped ({outcome.halted})")
        failed = self.failure(state, outcome, proxy)
        if failed is None:
            return AgentResult(text=text, usage=usage, status="ok", turns=state.turns, files_changed=changed)
        detail = "; ".join(state.errors[-2:]) or stderr or f"{outcome.garbage} unparseable line(s)"
        return AgentResult(text=text, usage=usage, status="error", turns=state.turns, files_changed=changed,
                           error=f"{failed}: {detail}" if detail else failed)

    def failure(self, state: CliState, outcome: ProcessOutcome, proxy: MeteringProxy) -> str | None:
        """A one-line reason the run failed, or None for success."""
        if outcome.returncode != 0:
            return f"{self.name} exited with code {outcome.returncode}"
        if state.errors and not state.finished:
            return f"{self.name} reported an error"
        last = proxy.calls[-1].record.status if proxy.calls else None
        if last is not None and last >= 400:
            return f"{self.name}'s last model call failed (HTTP {last})"
        return None


def budget_halt(text: str, usage: Usage, turns: int, changed: tuple[str, ...], limit: int) -> AgentResult:
    """The result of a run the usage meter stopped: ``usage`` passed the reservation ``limit``."""
    return AgentResult(text=text, usage=usage, status="halted", turns=turns, stop_reason="budget",
                       files_changed=changed, error=f"stopped: usage passed the reservation of {limit:,} tokens")


@dataclass(frozen=True)
class Launch:
    """How one run starts: the real API behind the proxy, the command for a proxy, what to remove after."""

    upstream: str
    command: Callable[[MeteringProxy], tuple[list[str], dict[str, str]]]
    cleanup: Callable[[], None] | None = None


class UserLoginCliBackend:
    """Base of the CLI backends that run with the user's own login (``claude``, ``codex``).

    Subclasses set ``name``, ``credential_vars`` and ``credential_hint``, fill ``credentials``
    in ``__init__`` and implement ``credentials_known_missing``, ``new_state``, ``launch``,
    ``result`` and ``cli_usage``; ``run`` is the same for both.
    """

    name = "cli"
    credential_vars: tuple[str, ...] = ()
    credential_hint = ""
    credentials: dict[str, str]
    sandbox: Sandbox | None = None  # the class default keeps a bare instance unsandboxed

    @property
    def sandboxed(self) -> bool:
        return self.sandbox is not None and self.sandbox.active

    def credentials_known_missing(self, env: Mapping[str, str]) -> bool:
        """True only when it is certain the CLI cannot authenticate (cheap checks, no network)."""
        return False

    def run_env(self, env: dict[str, str]) -> dict[str, str]:
        """The child's environment after the credential check (e.g. sandbox defaults under it)."""
        return env

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> Any:
        raise NotImplementedError

    def launch(self, request: AgentRequest, env: dict[str, str], box: BoxedCommand) -> Launch:
        raise NotImplementedError

    def result(self, request: AgentRequest, state: Any, run: MeteredRun) -> AgentResult:
        raise NotImplementedError

    def cli_usage(self, state: Any) -> Usage | None:
        """The CLI's own usage report, the proxy's cross-check (None when it gave none)."""
        return None

    async def run(self, request: AgentRequest, *, stop: StopCheck | None = None,
                  on_event: EventSink | None = None) -> AgentResult:
        env = child_env(request.env, self.credentials)
        if self.credentials_known_missing(env):
            raise AgentNotStarted(self.credential_hint)
        env = self.run_env(env)
        secrets = [v for k, v in env.items() if k in self.credential_vars]
        state = self.new_state(request, on_event)
        box = BoxedCommand(self.sandbox, on_event)
        launch = self.launch(request, env, box)
        run = await run_metered(request, launch.upstream, secrets=secrets, command=launch.command,
                                handle=state.handle, stop=stop, on_event=on_event, cleanup=launch.cleanup,
                                before_close=box.collect)
        try:
            result = self.result(request, state, run)
        except BackendError:
            close_log(run.proxy)  # no bill() follows: close the call log here
            raise
        result = replace(result, sandbox_denials=box.denials)
        return finish(result, run, self.cli_usage(state), on_event=on_event, backend=self.name)


__all__ = ["CliState", "JsonLinesCliBackend", "Launch", "Prepared", "UserLoginCliBackend", "budget_halt"]
