"""``loop-runtime mcp``: the project as a stdio MCP server (the official ``mcp`` SDK, extra ``[mcp]``).

Why a thin layer: an MCP client (an IDE, an agent) must not get more power than the
command line gives a human. Every tool therefore calls the very function the CLI
command calls (``commands``, ``actions``, ``runner``) and returns the same JSON document
as that command's ``--json``; no rule (levels, kill switch, budget, preflight, leases,
escalations) is re-derived here. This module only validates tool inputs into one-line
errors, redacts what it returns, and keeps stdout for the protocol alone (the SDK
diverts file descriptor 1 to stderr while it serves; logs go to stderr).

``run_tick`` is a dry run (in memory, nothing written) unless the caller passes
``confirm: true`` — an agent that lists tools and calls one "to see" must not spend the
budget or touch the repository by accident.

The project is re-read on every call (as a fresh CLI invocation would), so a kill switch,
an edited ``loop-runtime.toml`` or a new escalation is seen at once.
"""

# no `from __future__ import annotations`: the tools' annotations must be real objects (the SDK reads them)

import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import LoopError
from .formats.levels import LEVELS

COST_LEVELS = LEVELS[1:]  # L0 drafts prompts and calls no agent: it has no cost to estimate
RUN_LOG = "loop-run-log.md"
SERVER_NAME = "loop-runtime"


class ToolInputError(LoopError):
    """A tool argument the CLI would also refuse (one line, naming the argument and value)."""


def check_choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    """``value`` when it is one of ``valid``; else a one-line error with a "did you mean"."""
    if isinstance(value, str) and value in valid:
        return value
    close = [v for v in valid if isinstance(value, str) and v.lower() == value.strip().lower()]
    close = close or (difflib.get_close_matches(value, list(valid), n=1, cutoff=0.5) if isinstance(value, str) else [])
    hint = f" — did you mean {close[0]!r}?" if close else ""
    raise ToolInputError(f"{name} invalid: {value!r}{hint} (valid: {', '.join(valid)})")


def check_text(name: str, value: Any, *, required: bool = True) -> str | None:
    """A non-empty single-line string (or None when optional and absent)."""
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise ToolInputError(f"{name} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ToolInputError(f"{name} invalid: {value!r} (a non-empty string)")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ToolInputError(f"{name} invalid: {value!r} (one line, no control characters)")
    return value


def check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ToolInputError(f"{name} invalid: {value!r} (an integer from {low} to {high})")
    return value


class Tools:
    """The MCP tools as plain methods (so they are testable without a transport).

    Each loads the project afresh, validates its arguments, calls the CLI's function and
    returns the CLI's ``--json`` document, redacted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- plumbing
    def project(self) -> Any:
        from .app.runtime import load_project

        return load_project(self.root)

    def secrets(self) -> list[str]:
        from .adapters.environment import secret_values

        return secret_values(self.root, os.environ)

    def redacted(self, doc: Any) -> Any:
        """Every string in ``doc`` with secrets (the project's .env values, tokens, keys) masked."""
        from .core.redact import redact

        secrets = self.secrets()

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return redact(v, extra_secrets=secrets)
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [walk(x) for x in v]
            return v

        return walk(doc)

    def _pattern(self, project: Any, pattern: Any) -> str:
        pid = check_text("pattern", pattern)
        assert pid is not None
        project.pattern(pid)  # unknown ids: "did you mean" with the valid list (formats.pattern_names)
        return pid

    # -- read tools
    def list_patterns(self) -> dict[str, Any]:
        from .app.commands import list_doc

        return self.redacted(list_doc(self.root))

    def plan(self, pattern: Any, level: Any = None, cadence: Any = None) -> dict[str, Any]:
        from .app.commands import plan_doc

        project = self.project()
        pid = self._pattern(project, pattern)
        lvl = None if level is None else check_choice("level", level, LEVELS)
        cad = check_text("cadence", cadence, required=False)
        return self.redacted(plan_doc(project, pid, lvl, cad))

    def status(self) -> dict[str, Any]:
        from .app.commands import status_doc

        return self.redacted(status_doc(self.project()))

    def cost(self, pattern: Any = "daily-triage", level: Any = "L1", cadence: Any = None,
             orchestration: Any = "single", conservative: Any = False, with_caching: Any = False) -> dict[str, Any]:
        from .app.commands import cost_doc

        project = self.project()
        pid = self._pattern(project, pattern)
        lvl = check_choice("level", level, COST_LEVELS)
        cad = check_text("cadence", cadence, required=False)
        orch = check_text("orchestration", orchestration)
        return self.redacted(cost_doc(self.root, pid, lvl, cad, orch or "single", _flag("conservative", conservative),
                                      _flag("with_caching", with_caching)))

    def escalations(self, all: Any = False) -> dict[str, Any]:  # noqa: A002 - the CLI's --all
        from .app.commands import escalations_doc

        return self.redacted(escalations_doc(self.project(), _flag("all", all)))

    # -- mutating tools (the CLI's functions; every rule applies there)
    def run_tick(self, pattern: Any, level: Any = None, backend: Any = None, scenario: Any = None,
                 model: Any = None, force: Any = False, confirm: Any = False) -> dict[str, Any]:
        from .app.run import notifier_for, run_ticks
        from .app.runner import RunOptions

        project = self.project()
        pid = self._pattern(project, pattern)
        real = _flag("confirm", confirm)
        from .app.runner import BACKENDS

        opts = RunOptions(
            level=None if level is None else check_choice("level", level, LEVELS),
            backend=None if backend is None else check_choice("backend", backend, tuple(BACKENDS)),
            scenario=check_text("scenario", scenario, required=False),
            model=check_text("model", model, required=False),
            dry_run=not real, force=_flag("force", force),
            notifier=notifier_for(project, lambda msg: print(f"notify: {msg}", file=sys.stderr)),
        )
        report = run_ticks(project, pid, opts, 1)
        doc = report.as_json()
        doc["exitCode"] = report.exit_code
        if not real:
            doc["note"] = "dry run: nothing was written; call run_tick with confirm: true to run the tick for real"
        return self.redacted(doc)

    def kill(self, pattern: Any = None, reason: Any = "") -> dict[str, Any]:
        from .app.actions import kill

        project = self.project()
        pid = None if pattern is None else self._pattern(project, pattern)
        why = check_text("reason", reason, required=False) or ""
        name = kill(project, pid, reason=why)
        return self.redacted({"file": name, "scope": pid or "all"})

    def resume(self, pattern: Any = None) -> dict[str, Any]:
        from .app.actions import resume

        project = self.project()
        pid = None if pattern is None else self._pattern(project, pattern)
        cleared, remaining = resume(project, pid)
        return self.redacted({"cleared": cleared, "remaining": remaining})

    def approve(self, escalation_id: Any, merge: Any = False) -> dict[str, Any]:
        from .app.actions import approve

        esc = check_text("escalation_id", escalation_id)
        return self.redacted(approve(self.project(), esc, merge=_flag("merge", merge)))

    def reject(self, escalation_id: Any, reason: Any, keep_branch: Any = False) -> dict[str, Any]:
        from .app.actions import reject

        esc = check_text("escalation_id", escalation_id)
        why = check_text("reason", reason)
        return self.redacted(reject(self.project(), esc, reason=why or "", keep_branch=_flag("keep_branch", keep_branch)))

    # -- resources
    def resource_text(self, rel: str) -> str:
        """A state file or the run log, redacted ("" when the file does not exist yet)."""
        from .core.redact import redact

        root = self.root.resolve()
        path = (root / rel).resolve()
        if path != root and root not in path.parents:  # a symlinked state file pointing out of the project
            raise ToolInputError(f"{rel}: resolves outside the project root ({path}); not served")
        return redact(self.project().read(rel) or "", extra_secrets=self.secrets())


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ToolInputError(f"{name} invalid: {value!r} (true or false)")
    return value


TOOL_DOCS: dict[str, str] = {
    "list_patterns": "List the registry's patterns (the same JSON as `loop-runtime list --json`).",
    "plan": "How a loop would run: level, cadence, caps, attempts, and where each came from (`plan --json`).",
    "status": "Every loop: level, cadence, next run, last outcome, spend, escalations (`status --json`).",
    "cost": "Estimate daily tokens exactly as loop-cost does (`cost --json`). level: L1, L2 or L3.",
    "run_tick": "Run one tick of a loop. A DRY RUN (in memory, nothing written) unless confirm is true; the kill "
                "switch, levels, budget, preflight and the loop's lease apply exactly as for `loop-runtime run`. "
                "exitCode: 0 done, 2 a human is needed.",
    "kill": "Pause every loop (no pattern) or one loop: writes the kill-switch file (`loop-runtime kill`).",
    "resume": "Clear the kill switch written by kill (`loop-runtime resume`); flags written by hand are reported.",
    "escalations": "Escalations held for a human (`escalations --json`); all: include decided ones.",
    "approve": "Apply a held change exactly as reviewed (`loop-runtime approve`); merge: also merge it.",
    "reject": "Discard a held change and record why (`loop-runtime reject --reason`).",
}


def build_server(root: Path) -> Any:
    """The ``MCPServer`` for the project at ``root`` (tools and resources registered)."""
    from .optional import require

    mcpserver = require("mcp.server.mcpserver", extra="mcp", feature="the MCP server (`loop-runtime mcp`)")
    exceptions = require("mcp.server.mcpserver.exceptions", extra="mcp", feature="the MCP server")
    tools = Tools(root)
    server = mcpserver.MCPServer(SERVER_NAME, instructions="loop-runtime: run and supervise loop-engineering loops "
                                 f"in {root}. run_tick is a dry run unless confirm is true.", log_level="WARNING")
    _register_tools(server, tools, lambda fn: _guarded(tools, fn, exceptions.ToolError))
    for uri, rel, title in resource_list(tools.project()):
        _add_text_resource(server, uri, rel, title, _guarded(tools, tools.resource_text, exceptions.ResourceError))
    return server


def _guarded(tools: Tools, fn: Callable[..., Any], error: type[Exception]) -> Callable[..., Any]:
    """``fn`` as an async tool body: run in a worker thread, every failure one redacted line as ``error``."""
    import anyio

    async def call(*args: Any, **kwargs: Any) -> Any:
        # blocking work (git, SQLite, agent processes, asyncio.run) off the server's event loop
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except LoopError as e:
            raise error(tools.redacted(str(e))) from None
        except SystemExit as e:  # never let a library's exit kill the server
            raise error(f"stopped with exit code {e.code}") from None
        except Exception as e:  # a bug: one line, never a traceback to the client
            from .optional import missing_message

            msg = missing_message(e) if isinstance(e, ImportError) else None
            raise error(tools.redacted(msg or f"internal error: {type(e).__name__}: {e}")) from None

    return call


def _register_tools(server: Any, tools: Tools, t: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """One MCP tool per ``Tools`` method, each with the CLI command's parameters and ``TOOL_DOCS`` text."""
    # The schema says string/boolean, but every value reaches our own checks untouched: the
    # SDK's pydantic validation would coerce "yes" or 1 into True (and `confirm: "yes"` must not
    # start a real tick), and its errors span several lines.
    from typing import Annotated

    from pydantic import WithJsonSchema

    Text = Annotated[Any, WithJsonSchema({"type": "string"})]  # noqa: N806
    Flag = Annotated[Any, WithJsonSchema({"type": "boolean"})]  # noqa: N806

    @server.tool(description=TOOL_DOCS["list_patterns"])
    async def list_patterns() -> dict[str, Any]:
        return await t(tools.list_patterns)()

    @server.tool(description=TOOL_DOCS["plan"])
    async def plan(pattern: Text, level: Text = None, cadence: Text = None) -> dict[str, Any]:
        return await t(tools.plan)(pattern, level, cadence)

    @server.tool(description=TOOL_DOCS["status"])
    async def status() -> dict[str, Any]:
        return await t(tools.status)()

    @server.tool(description=TOOL_DOCS["cost"])
    async def cost(pattern: Text = "daily-triage", level: Text = "L1", cadence: Text = None,
                   orchestration: Text = "single", conservative: Flag = False,
                   with_caching: Flag = False) -> dict[str, Any]:
        return await t(tools.cost)(pattern, level, cadence, orchestration, conservative, with_caching)

    @server.tool(description=TOOL_DOCS["run_tick"])
    async def run_tick(pattern: Text, level: Text = None, backend: Text = None,
                       scenario: Text = None, model: Text = None, force: Flag = False,
                       confirm: Flag = False) -> dict[str, Any]:
        return await t(tools.run_tick)(pattern, level, backend, scenario, model, force, confirm)

    @server.tool(description=TOOL_DOCS["kill"])
    async def kill(pattern: Text = None, reason: Text = "") -> dict[str, Any]:
        return await t(tools.kill)(pattern, reason)

    @server.tool(description=TOOL_DOCS["resume"])
    async def resume(pattern: Text = None) -> dict[str, Any]:
        return await t(tools.resume)(pattern)

    @server.tool(description=TOOL_DOCS["escalations"])
    async def escalations(all: Flag = False) -> dict[str, Any]:  # noqa: A002
        return await t(tools.escalations)(all)

    @server.tool(description=TOOL_DOCS["approve"])
    async def approve(escalation_id: Text, merge: Flag = False) -> dict[str, Any]:
        return await t(tools.approve)(escalation_id, merge)

    @server.tool(description=TOOL_DOCS["reject"])
    async def reject(escalation_id: Text, reason: Text, keep_branch: Flag = False) -> dict[str, Any]:
        return await t(tools.reject)(escalation_id, reason, keep_branch)


def resource_list(project: Any) -> list[tuple[str, str, str]]:
    """(uri, file, title) for every distinct state file of the registry's patterns, then the run log."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for p in project.registry.patterns:
        if p.state in seen:
            continue
        seen.add(p.state)
        out.append((f"loop-runtime://state/{p.id}", p.state, f"State file of {p.id} ({p.state})"))
    out.append(("loop-runtime://run-log", RUN_LOG, f"The run log ({RUN_LOG})"))
    return out


def _add_text_resource(server: Any, uri: str, rel: str, title: str, read: Callable[..., Any]) -> None:
    async def reader() -> str:
        return await read(rel)

    server.resource(uri, name=uri.rsplit("/", 1)[-1], title=title, description=f"{rel} (redacted)",
                    mime_type="text/markdown")(reader)


def serve(root: Path) -> None:
    """Serve over stdin/stdout until the client closes stdin."""
    server = build_server(root)
    print(f"loop-runtime mcp: serving {root} on stdio", file=sys.stderr)
    server.run("stdio")
