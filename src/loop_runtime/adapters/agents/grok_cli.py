"""Grok CLI backend: ``grok -d <cwd> --max-tool-rounds N -p <prompt>`` (``@vibe-kit/grok-cli`` 0.0.34).

Checked with the real CLI against a local Chat Completions stand-in
(tests/test_realcli_new_backends.py):

- key, endpoint and model come from ``GROK_API_KEY``, ``GROK_BASE_URL`` (the metering proxy;
  the environment wins over its settings files) and ``GROK_MODEL`` — never ``-k``/``-u``, which
  it saves to ``~/.grok/user-settings.json``; its HOME is private to the run;
- it sends non-streamed Chat Completions and prints one JSON line per message after the run,
  **with no usage at all**: the proxy's count is the only one, and is the bill;
- it **exits 0 even when the API fails** (the last message reads "Sorry, I encountered an
  error: …"): failure is read from the proxy (the last call's status) and from that text;
- headless it approves every tool, the shell included, and has no read-only mode. So a
  READ_ONLY request (L0/L1, and every verifier) is refused with a one-line reason unless the
  backend is told the agent runs in a sandbox that makes the file system read-only
  (``sandboxed=True``, ``[backends.grok] sandboxed = true``). Nor can it be confined at
  EDIT_WORKTREE: checked with the real CLI, ``create_file`` wrote ``/tmp/…/outside.txt`` and
  ``../outside2.txt`` from a worktree cwd — so it is refused there too unless sandboxed.
  ``sandboxed`` is the user's word that the whole runtime runs in a disposable sandbox
  (container, VM). Under loop-runtime's own active OS sandbox (``sandbox = "srt"``) it is
  refused (``UNREACHABLE_IN_SANDBOX``): checked with the real CLI inside srt, its API client
  (the ``openai`` package 5.x on Node 20) ignores ``HTTPS_PROXY`` — srt's proxy is the only
  way out of the sandbox's network namespace — and fails with "Connection error"; it has no
  proxy setting of its own. It is never run outside a sandbox the user asked for;
- it creates ``<cwd>/.grok/settings.json``; when the worktree had no ``.grok`` before the run,
  the folder is removed after it, so the diff holds only the agent's edits. ``MORPH_API_KEY``
  (which adds a tool calling another, unmetered API) is never passed.

xAI's API is OpenAI-compatible, so Grok models are also reachable through the ``openai``
backend: ``backend = "openai"``, ``openai_base_url = "https://api.x.ai/v1"``, a ``grok-…``
model and the key in ``OPENAI_API_KEY`` — that path has loop-runtime's own confined tools.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import AgentNotStarted
from ...ports import AgentRequest, EventSink, Permission
from ..metering_proxy import MeteringProxy
from .jsonl_cli import CliState, JsonLinesCliBackend, Prepared
from .process import emit, inside_root, summarize

READ_ONLY_REFUSED = ("grok has no read-only mode (headless it approves every tool, the shell included): "
                     "refused for a read-only role (L0/L1, verifier) unless the agent runs sandboxed")
UNCONFINED_REFUSED = ("grok cannot be confined to the worktree (its create_file and shell write anywhere): "
                      "refused unless the agent runs sandboxed ([backends.grok] sandboxed = true)")
UNREACHABLE_IN_SANDBOX = ("grok cannot run inside the OS sandbox: its API client ignores HTTPS_PROXY, the only "
                          "way out of srt to the metering proxy; use sandbox = \"none\" with [backends.grok] "
                          "sandboxed = true in a container, or the openai backend")
ERROR_PREFIX = "Sorry, I encountered an error"
EDIT_TOOLS = {"create_file": "path", "str_replace_editor": "path"}


@dataclass
class _State(CliState):
    def handle(self, event: dict[str, Any]) -> str | None:
        role = event.get("role")
        content = event.get("content")
        if role == "assistant":
            self.turns += 1
            if isinstance(content, str) and content:
                if content.startswith(ERROR_PREFIX):
                    self.errors.append(content)
                    emit(self.on_event, "agent.warning", {"message": content})
                else:
                    self.texts.append(content)
                    emit(self.on_event, "agent.text", {"text": content})
            for call in event.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(fn, Mapping):
                    emit(self.on_event, "agent.tool", {"name": fn.get("name"),
                                                       "input": summarize({"arguments": fn.get("arguments")})})
                    self._edit(fn)
        return None

    def _edit(self, fn: Mapping[str, Any]) -> None:
        import json

        key = EDIT_TOOLS.get(str(fn.get("name")))
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            return
        if key and isinstance(args, Mapping) and isinstance(args.get(key), str):
            rel = inside_root(self.request.cwd, args[key])
            if rel is not None:
                self.changed[rel] = None


class GrokCliBackend(JsonLinesCliBackend):
    """Runs one agent role through the Grok CLI, billed from the proxy alone (the CLI reports no usage)."""

    name = "grok"
    binary_name = "grok"
    install_hint = "install it with npm i -g @vibe-kit/grok-cli"
    key_vars = ("GROK_API_KEY", "XAI_API_KEY")
    base_url_var = "GROK_BASE_URL"
    default_base_url = "https://api.x.ai/v1"
    default_model = "grok-code-fast-1"
    drop_vars = ("MORPH_API_KEY", "GROK_BASE_URL", "GROK_API_KEY", "GROK_MODEL")
    unreachable_in_sandbox = UNREACHABLE_IN_SANDBOX

    def __init__(self, *, sandboxed: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.sandboxed = sandboxed
        self._had_grok_dir: bool | None = None

    def check(self, request: AgentRequest) -> None:
        if self.sandboxed:  # the user's word: the whole runtime runs in a disposable sandbox (container, VM)
            return
        raise AgentNotStarted(UNCONFINED_REFUSED if request.permission is Permission.EDIT_WORKTREE
                              else READ_ONLY_REFUSED)

    def prepare(self, request: AgentRequest, proxy: MeteringProxy, private: Path) -> Prepared:
        self._had_grok_dir = (Path(request.cwd) / ".grok").exists()
        prompt = "\n\n".join(p for p in (request.system_prompt, request.prompt) if p)
        argv = [self.binary, "-d", request.cwd, "--max-tool-rounds", str(max(1, request.max_turns)), "-p", prompt]
        return Prepared(argv, {"GROK_API_KEY": self.api_key or "", "GROK_BASE_URL": proxy.base_url,
                               "GROK_MODEL": request.model or self.model or self.default_model})

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> CliState:
        return _State(request, on_event)

    def after(self, request: AgentRequest, private: Path) -> None:
        folder = Path(request.cwd) / ".grok"
        if self._had_grok_dir is False and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)

    def failure(self, state: CliState, outcome: Any, proxy: MeteringProxy) -> str | None:
        if state.errors:
            return "grok reported an API error"
        return super().failure(state, outcome, proxy)


__all__ = ["READ_ONLY_REFUSED", "UNCONFINED_REFUSED", "UNREACHABLE_IN_SANDBOX", "GrokCliBackend"]
